//! Webhook delivery: POSTs each queued event (see `pbx_store::webhooks`) to
//! its HTTPS endpoint, signed, and records how it went; failures are retried
//! with backoff by the queue. Every control-plane node runs a deliverer; the
//! queue's leases keep two nodes from sending the same delivery.
//!
//! Signature: `Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` over
//! `<t>.<body>` with the webhook's secret, so that receivers can check both
//! origin and freshness. Endpoints on private, loopback or link-local
//! addresses are refused (no requests into the operator's own network)
//! unless `allow_private_targets` is set; redirects are not followed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pbx_store::webhooks::{Attempt, Due};
use pbx_store::{Principal, Store};
use reqwest::dns::{Name, Resolve, Resolving};
use tokio::sync::watch;

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Allow endpoints on private, loopback and link-local addresses.
    pub allow_private_targets: bool,
    /// Extra trusted root certificates (PEM), beside the public web's roots.
    pub extra_roots_pem: Vec<u8>,
    /// How often the queue is looked at.
    pub poll: Duration,
    /// How long one delivery may take.
    pub timeout: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            allow_private_targets: false,
            extra_roots_pem: Vec::new(),
            poll: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Ports endpoints may use (unless private targets are allowed, for tests
/// and closed installations).
const ALLOWED_PORTS: [u16; 2] = [443, 8443];
/// Deliveries claimed per look at the queue.
const BATCH: u32 = 20;
/// How often closed months are checked for statements to announce.
const STATEMENTS_EVERY: Duration = Duration::from_secs(60);

pub struct Deliverer {
    store: Store,
    client: reqwest::Client,
    config: WebhookConfig,
}

impl Deliverer {
    pub fn new(store: Store, config: WebhookConfig) -> Result<Deliverer, String> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(true)
            // A proxy would resolve names itself, past the address check.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .user_agent("webhook-delivery/1")
            .dns_resolver(Arc::new(Resolver {
                allow_private: config.allow_private_targets,
            }));
        if !config.extra_roots_pem.is_empty() {
            for cert in reqwest::Certificate::from_pem_bundle(&config.extra_roots_pem)
                .map_err(|e| format!("the webhook CA file holds no usable certificate: {e}"))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot set up the webhook HTTP client: {e}"))?;
        Ok(Deliverer {
            store,
            client,
            config,
        })
    }

    /// Delivers until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut statements_at: Option<Instant> = None;
        loop {
            if statements_at.is_none_or(|t| t.elapsed() >= STATEMENTS_EVERY) {
                statements_at = Some(Instant::now());
                if let Err(e) = self.announce_statements(pbx_store::now_ms()).await {
                    tracing::warn!(error = %e, "statement webhooks not queued");
                }
            }
            match self.deliver_due(pbx_store::now_ms()).await {
                // A full batch: there may be more waiting.
                Ok(n) if n == BATCH as usize => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "webhook queue unavailable"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.poll) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Queues `statement_ready` for months that have closed, and forgets
    /// old deliveries and sessions.
    pub async fn announce_statements(&self, now: pbx_store::Millis) -> pbx_store::Result<u64> {
        let system = Principal::system();
        self.store.webhooks().forget_old(&system, now).await?;
        self.store.sessions().forget_expired(now).await?;
        self.store.webhooks().enqueue_statements(&system, now).await
    }

    /// Sends what is due now; returns how many deliveries it attempted.
    pub async fn deliver_due(&self, now: pbx_store::Millis) -> pbx_store::Result<usize> {
        let system = Principal::system();
        let due = self.store.webhooks().claim_due(&system, now, BATCH).await?;
        let mut sends = tokio::task::JoinSet::new();
        for delivery in due.iter().cloned() {
            let client = self.client.clone();
            let allow_private = self.config.allow_private_targets;
            sends.spawn(async move {
                let attempt = send(&client, &delivery, allow_private).await;
                (delivery, attempt)
            });
        }
        while let Some(done) = sends.join_next().await {
            let Ok((delivery, attempt)) = done else {
                continue;
            };
            match &attempt {
                Attempt::Delivered { status } => tracing::debug!(
                    delivery = delivery.id,
                    webhook = delivery.webhook_id,
                    status,
                    "webhook delivered"
                ),
                Attempt::Failed { status, error } => tracing::info!(
                    delivery = delivery.id, webhook = delivery.webhook_id, ?status, error = %error,
                    attempt = delivery.attempts + 1, "webhook delivery failed; it will be retried"
                ),
            }
            // Keep going on an error: the other sends must be recorded too.
            if let Err(e) = self
                .store
                .webhooks()
                .record_attempt(&system, &delivery, &attempt, pbx_store::now_ms())
                .await
            {
                tracing::warn!(error = %e, delivery = delivery.id, "webhook attempt not recorded; it is sent again after its lease");
            }
        }
        Ok(due.len())
    }
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub fn signature(secret: &str, unix_s: i64, body: &str) -> String {
    let signed = format!("{unix_s}.{body}");
    let mac = pbx_store::secrets::hmac_sha256_hex(secret.as_bytes(), signed.as_bytes());
    format!("t={unix_s},v1={mac}")
}

async fn send(client: &reqwest::Client, delivery: &Due, allow_private: bool) -> Attempt {
    let url = match reqwest::Url::parse(&delivery.url) {
        Ok(url) => url,
        Err(e) => {
            return Attempt::Failed {
                status: None,
                error: format!("invalid URL: {e}"),
            }
        }
    };
    // Names are checked by the resolver; addresses written in the URL here.
    let literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    };
    if literal.is_some_and(|ip| !allow_private && !is_public(ip)) {
        return Attempt::Failed {
            status: None,
            error: "the address is not a public one".to_owned(),
        };
    }
    // Web servers only: no probing of other services by port.
    let port = url.port_or_known_default().unwrap_or(0);
    if !allow_private && !ALLOWED_PORTS.contains(&port) {
        return Attempt::Failed {
            status: None,
            error: format!("port {port} is not allowed (443 or 8443)"),
        };
    }
    let unix_s = pbx_store::now_ms() / 1000;
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", delivery.id.to_string())
        .header("webhook-event", delivery.event_type.as_str())
        .header(
            "webhook-signature",
            signature(&delivery.secret, unix_s, &delivery.payload),
        )
        .body(delivery.payload.clone())
        .send()
        .await;
    match response {
        Ok(r) if r.status().is_success() => Attempt::Delivered {
            status: r.status().as_u16(),
        },
        Ok(r) => Attempt::Failed {
            status: Some(r.status().as_u16()),
            error: format!("the endpoint answered {}", r.status()),
        },
        Err(e) => Attempt::Failed {
            status: None,
            error: describe(&e),
        },
    }
}

/// A coarse reason: the tenant sees it in the delivery log, so it must not
/// tell more about the network than whether the endpoint could be reached.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect (no public address, refused, or TLS failed)".to_owned()
    } else {
        "the request failed".to_owned()
    }
}

/// Resolves endpoint names and keeps only addresses a webhook may reach.
struct Resolver {
    allow_private: bool,
}

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err("the name has no public address".into());
            }
            let addrs: Box<dyn Iterator<Item = SocketAddr> + Send> = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// Whether `ip` is an address of the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (18..20).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            let first = seg[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                || first == 0x2001 && seg[1] == 0x0db8
                // NAT64 (64:ff9b::/96, 64:ff9b:1::/48) and IPv4-compatible
                // (::/96) forms reach IPv4 addresses.
                || (first == 0x0064 && seg[1] == 0xff9b)
                || seg[..6].iter().all(|s| *s == 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "192.0.2.1",
            "255.255.255.255",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "2a00:1450::1", "185.1.2.3"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn signatures_cover_time_and_body() {
        let s = signature("whsec_a", 1_700_000_000, "{}");
        assert!(s.starts_with("t=1700000000,v1="));
        assert_ne!(s, signature("whsec_a", 1_700_000_001, "{}"));
        assert_ne!(s, signature("whsec_a", 1_700_000_000, "{ }"));
        assert_ne!(s, signature("whsec_b", 1_700_000_000, "{}"));
    }
}
