//! Audio a customer uploads: an extension's voicemail greeting (its user
//! or the customer's administrators), the customer's music on hold and an
//! auto-attendant menu's greeting (its administrators). `PUT` a WAV file (`Content-Type: audio/wav`, at most
//! 16 MB and five minutes; any sample rate, mono or stereo: it is
//! converted to 8 kHz mono), `GET` it back as kept, `DELETE` it to go back
//! to the platform's.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json as JsonOut;
use pbx_store::{CustomerId, ExtensionId, IvrMenuId};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::input::{Path, Wav, MAX_AUDIO};
use super::problem::{ApiResult, Problem};
use crate::recordings::Recording;
use crate::uploads::{self, Target};
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_greeting, put_greeting, delete_greeting))
        .routes(routes!(get_music, put_music, delete_music))
        .routes(routes!(
            get_menu_greeting,
            put_menu_greeting,
            delete_menu_greeting
        ))
        // Audio files are larger than the API's JSON bodies.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_AUDIO))
}

/// An upload as kept.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Uploaded {
    /// Its length, in ms.
    pub duration_ms: u64,
}

async fn save(
    s: &AppState,
    by: &pbx_store::Principal,
    target: Target,
    wav: Wav,
) -> ApiResult<JsonOut<Uploaded>> {
    let duration_ms = uploads::save(s, by, target, wav.0.to_vec())
        .await
        .map_err(|e| match e {
            uploads::UploadError::Files(e) => {
                tracing::warn!(error = %e, "an upload could not be kept");
                Problem::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "not-stored",
                    "The audio could not be kept",
                )
            }
            other => Problem::from(other.into_store()),
        })?;
    Ok(JsonOut(Uploaded { duration_ms }))
}

async fn fetch(s: &AppState, by: &pbx_store::Principal, target: Target) -> ApiResult<Response> {
    match uploads::read(s, by, target).await? {
        Some(Recording::Found(bytes)) => Ok(crate::recordings::wav(bytes).into_response()),
        Some(Recording::Missing) | None => Err(Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Nothing was uploaded here: the platform's audio plays",
        )),
    }
}

/// An extension's uploaded voicemail greeting, as kept (WAV, 8 kHz mono).
#[utoipa::path(get, path = "/api/v1/extensions/{id}/voicemail/greeting", tag = "voicemail",
    params(("id" = i64, Path)),
    responses((status = 200, description = "The greeting", content_type = "audio/wav")))]
async fn get_greeting(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    fetch(&s, &by, Target::Greeting(ExtensionId(id))).await
}

/// Uploads an extension's voicemail greeting (callers hear it instead of
/// the default).
#[utoipa::path(put, path = "/api/v1/extensions/{id}/voicemail/greeting", tag = "voicemail",
    params(("id" = i64, Path)),
    request_body(content = Vec<u8>, content_type = "audio/wav", description = "A WAV file, at most 16 MB and five minutes"),
    responses((status = 200, body = Uploaded)))]
async fn put_greeting(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    wav: Wav,
) -> ApiResult<JsonOut<Uploaded>> {
    save(&s, &by, Target::Greeting(ExtensionId(id)), wav).await
}

/// Removes an extension's greeting: callers hear the default again.
#[utoipa::path(delete, path = "/api/v1/extensions/{id}/voicemail/greeting", tag = "voicemail",
    params(("id" = i64, Path)), responses((status = 204)))]
async fn delete_greeting(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    uploads::remove(&s, &by, Target::Greeting(ExtensionId(id))).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A customer's uploaded music on hold, as kept (WAV, 8 kHz mono).
#[utoipa::path(get, path = "/api/v1/customers/{id}/music-on-hold", tag = "media",
    params(("id" = i64, Path)),
    responses((status = 200, description = "The music", content_type = "audio/wav")))]
async fn get_music(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    fetch(&s, &by, Target::MusicOnHold(CustomerId(id))).await
}

/// Uploads a customer's music on hold (held callers hear it, looped,
/// instead of the platform's tune).
#[utoipa::path(put, path = "/api/v1/customers/{id}/music-on-hold", tag = "media",
    params(("id" = i64, Path)),
    request_body(content = Vec<u8>, content_type = "audio/wav", description = "A WAV file, at most 16 MB and five minutes"),
    responses((status = 200, body = Uploaded)))]
async fn put_music(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    wav: Wav,
) -> ApiResult<JsonOut<Uploaded>> {
    save(&s, &by, Target::MusicOnHold(CustomerId(id)), wav).await
}

/// Removes a customer's music: held callers hear the platform's tune again.
#[utoipa::path(delete, path = "/api/v1/customers/{id}/music-on-hold", tag = "media",
    params(("id" = i64, Path)), responses((status = 204)))]
async fn delete_music(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    uploads::remove(&s, &by, Target::MusicOnHold(CustomerId(id))).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A menu's uploaded greeting, as kept (WAV, 8 kHz mono).
#[utoipa::path(get, path = "/api/v1/ivr-menus/{id}/greeting", tag = "ivr-menus",
    params(("id" = i64, Path)),
    responses((status = 200, description = "The greeting", content_type = "audio/wav")))]
async fn get_menu_greeting(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    fetch(&s, &by, Target::MenuGreeting(IvrMenuId(id))).await
}

/// Uploads a menu's greeting (callers hear it instead of the platform's
/// default, which only asks them to choose).
#[utoipa::path(put, path = "/api/v1/ivr-menus/{id}/greeting", tag = "ivr-menus",
    params(("id" = i64, Path)),
    request_body(content = Vec<u8>, content_type = "audio/wav", description = "A WAV file, at most 16 MB and five minutes"),
    responses((status = 200, body = Uploaded)))]
async fn put_menu_greeting(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    wav: Wav,
) -> ApiResult<JsonOut<Uploaded>> {
    save(&s, &by, Target::MenuGreeting(IvrMenuId(id)), wav).await
}

/// Removes a menu's greeting: callers hear the default again.
#[utoipa::path(delete, path = "/api/v1/ivr-menus/{id}/greeting", tag = "ivr-menus",
    params(("id" = i64, Path)), responses((status = 204)))]
async fn delete_menu_greeting(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    uploads::remove(&s, &by, Target::MenuGreeting(IvrMenuId(id))).await?;
    Ok(StatusCode::NO_CONTENT)
}
