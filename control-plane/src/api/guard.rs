//! The SIP abuse defence: banned sources (and lifting a ban), the allow
//! list, accounts protected against a distributed password guess (and
//! lifting a protection), and a reseller's own thresholds. Each tenant sees
//! what concerns it; the SIP nodes take every change within moments.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as JsonOut;
use pbx_store::abuse::{AccountProtection, AllowedSource, GuardSettings, NewAllowedSource, SipBan};
use pbx_store::{CustomerId, ResellerId};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::input::{Json, Path, Query};
use super::problem::ApiResult;
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_bans))
        .routes(routes!(get_ban))
        .routes(routes!(lift_ban))
        .routes(routes!(list_allowed, add_allowed))
        .routes(routes!(remove_allowed))
        .routes(routes!(list_protections))
        .routes(routes!(lift_protection))
        .routes(routes!(guard_settings, set_guard_settings))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only those in force now (default true); false includes lifted and
    /// expired ones of the last 90 days.
    pub active: Option<bool>,
    /// Most returned, newest first (1 to 1000; 100 if absent).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

impl ListQuery {
    fn limit(&self) -> Result<i64, pbx_store::StoreError> {
        match self.limit {
            Some(l) if !(1..=1000).contains(&l) => {
                Err(pbx_store::StoreError::invalid("limit", "must be 1 to 1000"))
            }
            l => Ok(l.unwrap_or(100)),
        }
    }
}

/// Sources (an IPv4 address or an IPv6 /64) the SIP nodes drop: after
/// repeated wrong passwords, as scanners or extension enumerators, or for
/// flooding. The operator sees all; a reseller the bans of sources that
/// guessed at its customers' accounts; a customer its own.
#[utoipa::path(get, path = "/api/v1/sip-bans", tag = "sip-security", params(ListQuery),
    responses((status = 200, body = Vec<SipBan>)))]
async fn list_bans(
    State(s): State<AppState>,
    Caller(by): Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<JsonOut<Vec<SipBan>>> {
    let limit = q.limit()?;
    Ok(JsonOut(
        s.store
            .sip_bans()
            .list(&by, q.active.unwrap_or(true), limit)
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/sip-bans/{id}", tag = "sip-security",
    params(("id" = i64, Path)), responses((status = 200, body = SipBan)))]
async fn get_ban(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<JsonOut<SipBan>> {
    Ok(JsonOut(s.store.sip_bans().get(&by, id).await?))
}

/// Lifts a ban in force (unban): the source is answered again on every SIP
/// node within moments, and its next ban starts at the first step. 409 when
/// the ban is over already.
#[utoipa::path(post, path = "/api/v1/sip-bans/{id}/lift", tag = "sip-security",
    params(("id" = i64, Path)), responses((status = 200, body = SipBan)))]
async fn lift_ban(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<JsonOut<SipBan>> {
    Ok(JsonOut(s.store.sip_bans().lift(&by, id).await?))
}

/// Addresses never banned: the operator's (exempt from every check, for
/// its monitoring) and each customer's office addresses (never banned for
/// what they do to that customer's accounts).
#[utoipa::path(get, path = "/api/v1/sip-allow-list", tag = "sip-security",
    responses((status = 200, body = Vec<AllowedSource>)))]
async fn list_allowed(
    State(s): State<AppState>,
    Caller(by): Caller,
) -> ApiResult<JsonOut<Vec<AllowedSource>>> {
    Ok(JsonOut(s.store.sip_allow_list().list(&by).await?))
}

/// Adds an address or block: with `customer_id`, a customer's office (its
/// administrators, its reseller; at most a /24 or IPv6 /48); without, the
/// operator's own. Bans of the address are lifted.
#[utoipa::path(post, path = "/api/v1/sip-allow-list", tag = "sip-security",
    request_body = NewAllowedSource, responses((status = 201, body = AllowedSource)))]
async fn add_allowed(
    State(s): State<AppState>,
    Caller(by): Caller,
    Json(new): Json<NewAllowedSource>,
) -> ApiResult<(StatusCode, JsonOut<AllowedSource>)> {
    Ok((
        StatusCode::CREATED,
        JsonOut(s.store.sip_allow_list().add(&by, &new).await?),
    ))
}

#[utoipa::path(delete, path = "/api/v1/sip-allow-list/{id}", tag = "sip-security",
    params(("id" = i64, Path)), responses((status = 204)))]
async fn remove_allowed(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    s.store.sip_allow_list().remove(&by, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProtectionQuery {
    /// Only this customer's.
    pub customer_id: Option<i64>,
    /// Only those in force now (default true).
    pub active: Option<bool>,
    /// Most returned, newest first (1 to 1000; 100 if absent).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// Accounts (a device's SIP user name) under a password guess from many
/// addresses: while protected, an account authenticates only from
/// addresses it registered from before, so its phones keep working and the
/// guessers get nothing. What to do: check the device's password is strong
/// (set a new one), then lift the protection or let it run out.
#[utoipa::path(get, path = "/api/v1/account-protections", tag = "sip-security",
    params(ProtectionQuery), responses((status = 200, body = Vec<AccountProtection>)))]
async fn list_protections(
    State(s): State<AppState>,
    Caller(by): Caller,
    Query(q): Query<ProtectionQuery>,
) -> ApiResult<JsonOut<Vec<AccountProtection>>> {
    let limit = ListQuery {
        active: None,
        limit: q.limit,
    }
    .limit()?;
    Ok(JsonOut(
        s.store
            .account_protections()
            .list(
                &by,
                q.customer_id.map(CustomerId),
                q.active.unwrap_or(true),
                limit,
            )
            .await?,
    ))
}

/// Ends a protection early: the account registers from anywhere again.
#[utoipa::path(post, path = "/api/v1/account-protections/{id}/lift", tag = "sip-security",
    params(("id" = i64, Path)), responses((status = 200, body = AccountProtection)))]
async fn lift_protection(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<JsonOut<AccountProtection>> {
    Ok(JsonOut(s.store.account_protections().lift(&by, id).await?))
}

/// The reseller's own thresholds (null: the SIP nodes' defaults, 5 wrong
/// passwords per address within 10 minutes, 10 per account within the hour).
#[utoipa::path(get, path = "/api/v1/resellers/{id}/sip-guard", tag = "sip-security",
    params(("id" = i64, Path)), responses((status = 200, body = GuardSettings)))]
async fn guard_settings(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<JsonOut<GuardSettings>> {
    Ok(JsonOut(
        s.store.guard_settings().get(&by, ResellerId(id)).await?,
    ))
}

/// Sets the reseller's thresholds (the reseller or the operator).
#[utoipa::path(put, path = "/api/v1/resellers/{id}/sip-guard", tag = "sip-security",
    request_body = GuardSettings, params(("id" = i64, Path)),
    responses((status = 200, body = GuardSettings)))]
async fn set_guard_settings(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Json(settings): Json<GuardSettings>,
) -> ApiResult<JsonOut<GuardSettings>> {
    Ok(JsonOut(
        s.store
            .guard_settings()
            .set(&by, ResellerId(id), &settings)
            .await?,
    ))
}
