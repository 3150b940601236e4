//! Phone numbers (DIDs): added by the operator, held by a reseller, assigned
//! to a customer, and routed to an extension or a ring group.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as JsonOut;
use pbx_store::numbers::{Destination, PhoneNumber};
use pbx_store::{CustomerId, NumberId, ResellerId};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::etag::{OptionalIfMatch, Tagged};
use super::input::{Json, Path, Query};
use super::page::{paginate, Page, PageQuery};
use super::problem::ApiResult;
use super::Created;
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_numbers, create_number))
        .routes(routes!(get_number))
        .routes(routes!(assign_number, release_number))
        .routes(routes!(set_destination))
}

#[utoipa::path(get, path = "/api/v1/numbers", tag = "numbers", params(PageQuery),
    responses((status = 200, body = Page<PhoneNumber>)))]
async fn list_numbers(
    State(s): State<AppState>,
    Caller(by): Caller,
    Query(q): Query<PageQuery>,
) -> ApiResult<JsonOut<Page<PhoneNumber>>> {
    let all = s.store.numbers().list(&by).await?;
    Ok(JsonOut(paginate(all, |n| n.id.0, &q)?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewNumber {
    /// E.164 with '+', such as +4930123456.
    pub e164: String,
    /// The reseller that holds it; absent keeps it in the operator's pool.
    pub reseller_id: Option<ResellerId>,
}

/// Adds a number to the platform (operator only).
#[utoipa::path(post, path = "/api/v1/numbers", tag = "numbers", request_body = NewNumber,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried create safe")),
    responses((status = 201, body = PhoneNumber, headers(("Location" = String), ("ETag" = String)))))]
async fn create_number(
    State(s): State<AppState>,
    Caller(by): Caller,
    Json(new): Json<NewNumber>,
) -> ApiResult<Created<PhoneNumber>> {
    let n = s
        .store
        .numbers()
        .create(&by, &new.e164, new.reseller_id)
        .await?;
    Ok(Created(format!("/api/v1/numbers/{}", n.id), n.version, n))
}

#[utoipa::path(get, path = "/api/v1/numbers/{id}", tag = "numbers",
    params(("id" = i64, Path)), responses((status = 200, body = PhoneNumber, headers(("ETag" = String)))))]
async fn get_number(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<Tagged<PhoneNumber>> {
    let n = s.store.numbers().get(&by, NumberId(id)).await?;
    Ok(Tagged(StatusCode::OK, n.version, n))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Assignment {
    pub customer_id: CustomerId,
}

/// Assigns a number the reseller holds to one of its customers.
#[utoipa::path(put, path = "/api/v1/numbers/{id}/customer", tag = "numbers", request_body = Assignment,
    params(("id" = i64, Path)), responses((status = 200, body = PhoneNumber, headers(("ETag" = String)))))]
async fn assign_number(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Json(a): Json<Assignment>,
) -> ApiResult<Tagged<PhoneNumber>> {
    let n = s
        .store
        .numbers()
        .assign(&by, NumberId(id), a.customer_id)
        .await?;
    Ok(Tagged(StatusCode::OK, n.version, n))
}

/// Takes a number back from its customer (it stays with the reseller).
#[utoipa::path(delete, path = "/api/v1/numbers/{id}/customer", tag = "numbers",
    params(("id" = i64, Path)), responses((status = 200, body = PhoneNumber, headers(("ETag" = String)))))]
async fn release_number(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<Tagged<PhoneNumber>> {
    let n = s.store.numbers().release(&by, NumberId(id)).await?;
    Ok(Tagged(StatusCode::OK, n.version, n))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Routing {
    /// Where calls to the number go; null leaves it unrouted.
    pub destination: Option<Destination>,
}

#[utoipa::path(put, path = "/api/v1/numbers/{id}/destination", tag = "numbers", request_body = Routing,
    params(("id" = i64, Path), ("If-Match" = Option<String>, Header, description = "The number's ETag")), responses((status = 200, body = PhoneNumber, headers(("ETag" = String)))))]
async fn set_destination(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    if_match: OptionalIfMatch,
    Json(r): Json<Routing>,
) -> ApiResult<Tagged<PhoneNumber>> {
    if if_match.0.is_some() {
        if_match.check(s.store.numbers().get(&by, NumberId(id)).await?.version)?;
    }
    let n = s
        .store
        .numbers()
        .set_destination(&by, NumberId(id), r.destination)
        .await?;
    Ok(Tagged(StatusCode::OK, n.version, n))
}
