//! Webhooks of resellers and customers, and their delivery logs. The signing
//! secret is shown once, when the webhook is created.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json as JsonOut;
use pbx_store::webhooks::{Delivery, NewWebhook, Webhook};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::input::{Json, Path, Query};
use super::page::{self, Page, PageQuery};
use super::problem::ApiResult;
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(get_webhook, delete_webhook))
        .routes(routes!(list_deliveries))
}

#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", params(PageQuery),
    responses((status = 200, body = Page<Webhook>)))]
async fn list_webhooks(
    State(s): State<AppState>,
    Caller(by): Caller,
    Query(q): Query<PageQuery>,
) -> ApiResult<JsonOut<Page<Webhook>>> {
    let all = s.store.webhooks().list(&by).await?;
    Ok(JsonOut(page::paginate(all, |w| w.id, &q)?))
}

/// A new webhook and its signing secret, shown only here.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedWebhook {
    pub webhook: Webhook,
    /// Verifies `Webhook-Signature: t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
    pub secret: String,
}

/// Creates a webhook of a customer (`customer_id`) or of a reseller (for all
/// its customers). Events: `call_ended` (each stored call, with its retail
/// price) and `statement_ready` (each closed month's statements).
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = NewWebhook,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried create safe")),
    responses((status = 201, body = CreatedWebhook, headers(("Location" = String)))))]
async fn create_webhook(
    State(s): State<AppState>,
    Caller(by): Caller,
    Json(new): Json<NewWebhook>,
) -> ApiResult<Response> {
    let (webhook, secret) = s.store.webhooks().create(&by, &new).await?;
    let location = format!("/api/v1/webhooks/{}", webhook.id);
    let mut response = (
        StatusCode::CREATED,
        JsonOut(CreatedWebhook { webhook, secret }),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, v);
    }
    Ok(response)
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = i64, Path)), responses((status = 200, body = Webhook)))]
async fn get_webhook(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<JsonOut<Webhook>> {
    Ok(JsonOut(s.store.webhooks().get(&by, id).await?))
}

/// Deletes a webhook with its delivery log; queued deliveries are dropped.
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = i64, Path)), responses((status = 204)))]
async fn delete_webhook(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    s.store.webhooks().delete(&by, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The delivery log, newest first: each event, its attempts, the last
/// answer or error, and when it will be tried again.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = i64, Path), PageQuery), responses((status = 200, body = Page<Delivery>)))]
async fn list_deliveries(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Query(q): Query<PageQuery>,
) -> ApiResult<JsonOut<Page<Delivery>>> {
    let limit = q.limit()?;
    let mut items = s
        .store
        .webhooks()
        .deliveries(&by, id, q.after()?, limit + 1)
        .await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|d| page::encode(d.id))
    } else {
        None
    };
    Ok(JsonOut(Page { items, next_cursor }))
}
