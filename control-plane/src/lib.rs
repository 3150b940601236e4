//! The control plane: everything spoken over HTTP. Operations endpoints
//! (`/healthz`, `/metrics`), the REST API with its live event stream
//! (`/api/v1`, see [`api`]), outgoing webhook deliveries ([`webhooks`]),
//! and the branded console for people ([`console`]: every other path).
//!
//! Handlers are thin: they turn HTTP into calls on `pbx-store` (which decides
//! tenant scope) and results back into HTTP.

#![forbid(unsafe_code)]

pub mod api;
pub mod client;
pub mod console;
pub mod health;
pub mod mail;
pub mod metrics;
pub mod notices;
pub mod recordings;
pub mod uploads;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use pbx_store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: Arc<metrics::Registry>,
    /// This node's name, reported by `/healthz`.
    pub node_id: Arc<str>,
    pub api: Arc<api::ApiState>,
    pub console: Arc<console::Console>,
    /// Where recordings (voicemail) are kept.
    pub audio: pbx_store::audio_files::AudioFiles,
}

/// All routes of the control plane.
pub fn router(state: AppState) -> Router {
    let (api, _) = api::router(&state);
    Router::new()
        .merge(health::router())
        .merge(api)
        .merge(metrics::router())
        .merge(console::router(&state))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::count_requests,
        ))
        .with_state(state)
}

/// Serves the control plane on `listener` until `shutdown` completes; then
/// stops accepting and lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The peer's address is known to handlers that limit by source (sign-in).
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
