//! `/metrics` in the Prometheus text format (version 0.0.4).
//!
//! The control plane counts its own requests; other parts of the node (the SIP
//! proxy) register a [`Source`] that writes their figures when scraped, so no
//! part depends on another to be measured.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::AppState;

/// Writes metric families in the text exposition format.
pub struct Writer {
    out: String,
}

impl Writer {
    /// One metric family with its samples: `kind` is `counter` or `gauge`;
    /// each sample is (labels, value) with labels as `key="value"` pairs.
    pub fn family(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        samples: &[(&[(&str, &str)], f64)],
    ) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            self.out.push_str(name);
            if !labels.is_empty() {
                self.out.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    let escaped = v
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n");
                    let _ = write!(self.out, "{k}=\"{escaped}\"");
                }
                self.out.push('}');
            }
            let _ = writeln!(self.out, " {value}");
        }
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help, &[(&[], value)]);
    }
}

/// Something that reports metrics when scraped.
pub type Source = Arc<dyn Fn(&mut Writer) + Send + Sync>;

/// The node's metrics: HTTP counters plus registered sources.
pub struct Registry {
    started: Instant,
    http_requests: [AtomicU64; 5],
    sources: RwLock<Vec<Source>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            started: Instant::now(),
            http_requests: Default::default(),
            sources: RwLock::new(Vec::new()),
        }
    }
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl Registry {
    pub fn add_source(&self, source: Source) {
        if let Ok(mut sources) = self.sources.write() {
            sources.push(source);
        }
    }

    fn count(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.http_requests[class].fetch_add(1, Ordering::Relaxed);
    }

    /// The whole exposition text.
    pub fn render(&self) -> String {
        let mut w = Writer { out: String::new() };
        w.single(
            "pbx_uptime_seconds",
            "gauge",
            "Seconds since this process started.",
            self.started.elapsed().as_secs_f64().floor(),
        );
        let counts: Vec<([(&str, &str); 1], f64)> = CLASSES
            .iter()
            .zip(&self.http_requests)
            .map(|(class, n)| ([("class", *class)], n.load(Ordering::Relaxed) as f64))
            .collect();
        let samples: Vec<(&[(&str, &str)], f64)> =
            counts.iter().map(|(l, v)| (&l[..], *v)).collect();
        w.family(
            "pbx_http_requests_total",
            "counter",
            "HTTP requests answered, by status class.",
            &samples,
        );
        if let Ok(sources) = self.sources.read() {
            for source in sources.iter() {
                source(&mut w);
            }
        }
        w.out
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// Platform-wide counters: not on a reseller's console host, where anyone
/// on the internet could read them under the reseller's name.
async fn metrics(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> Response {
    let host = crate::console::look::request_host(&uri, &headers);
    if let Some(host) = host {
        match state.store.console_host_owner(&host).await {
            Ok(Some(pbx_store::operator::HostOwner::Reseller(_))) => {
                return axum::http::StatusCode::NOT_FOUND.into_response();
            }
            Ok(_) => {}
            // Monitoring matters most while the database is away.
            Err(e) => tracing::warn!(error = %e, "metrics: console hosts unavailable"),
        }
    }
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}

/// Middleware: counts every answered request by status class.
pub async fn count_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    state.metrics.count(response.status().as_u16());
    response
}
