//! Voicemail: an extension's box (where new messages are mailed, its
//! limits) and the messages in it, with their audio as WAV. The box's own
//! user sees and deletes its messages; the customer's administrators (and
//! those above them) too. Deleting or hearing a message updates the lamps
//! of the box's phones.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Json as JsonOut;
use pbx_store::voicemail::{BoxSettings, VoicemailBox, VoicemailMessage};
use pbx_store::ExtensionId;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::input::{Json, Path};
use super::problem::{ApiResult, Problem};
use crate::recordings::Recording;
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_box, set_box))
        .routes(routes!(list_messages))
        .routes(routes!(get_message, mark_message, delete_message))
        .routes(routes!(message_audio))
}

/// An extension's voicemail box.
#[utoipa::path(get, path = "/api/v1/extensions/{id}/voicemail", tag = "voicemail",
    params(("id" = i64, Path)), responses((status = 200, body = VoicemailBox)))]
async fn get_box(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<JsonOut<VoicemailBox>> {
    Ok(JsonOut(
        s.store.voicemail().get_box(&by, ExtensionId(id)).await?,
    ))
}

/// Sets where new messages are mailed (the box's user may) and its limits
/// (the customer's administrators).
#[utoipa::path(put, path = "/api/v1/extensions/{id}/voicemail", tag = "voicemail",
    request_body = BoxSettings, params(("id" = i64, Path)),
    responses((status = 200, body = VoicemailBox)))]
async fn set_box(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Json(settings): Json<BoxSettings>,
) -> ApiResult<JsonOut<VoicemailBox>> {
    Ok(JsonOut(
        s.store
            .voicemail()
            .set_box(&by, ExtensionId(id), &settings)
            .await?,
    ))
}

/// The messages in an extension's box, newest first.
#[utoipa::path(get, path = "/api/v1/extensions/{id}/voicemail/messages", tag = "voicemail",
    params(("id" = i64, Path)), responses((status = 200, body = Vec<VoicemailMessage>)))]
async fn list_messages(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<JsonOut<Vec<VoicemailMessage>>> {
    Ok(JsonOut(
        s.store.voicemail().list(&by, ExtensionId(id)).await?,
    ))
}

/// One message.
#[utoipa::path(get, path = "/api/v1/voicemail/messages/{id}", tag = "voicemail",
    params(("id" = i64, Path)), responses((status = 200, body = VoicemailMessage)))]
async fn get_message(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<JsonOut<VoicemailMessage>> {
    Ok(JsonOut(s.store.voicemail().get(&by, id).await?.0))
}

/// Whether a message was heard.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Heard {
    pub heard: bool,
}

/// Marks a message heard, or new again.
#[utoipa::path(patch, path = "/api/v1/voicemail/messages/{id}", tag = "voicemail",
    request_body = Heard, params(("id" = i64, Path)),
    responses((status = 200, body = VoicemailMessage)))]
async fn mark_message(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Json(h): Json<Heard>,
) -> ApiResult<JsonOut<VoicemailMessage>> {
    Ok(JsonOut(
        s.store
            .voicemail()
            .set_heard(&by, id, h.heard, pbx_store::now_ms())
            .await?,
    ))
}

/// Deletes a message and its audio.
#[utoipa::path(delete, path = "/api/v1/voicemail/messages/{id}", tag = "voicemail",
    params(("id" = i64, Path)), responses((status = 204)))]
async fn delete_message(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let audio = s.store.voicemail().delete(&by, id).await?;
    crate::recordings::remove(&s, audio, "voicemail message", id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// A message's audio: WAV, 8 kHz, 16-bit, mono.
#[utoipa::path(get, path = "/api/v1/voicemail/messages/{id}/audio", tag = "voicemail",
    params(("id" = i64, Path)),
    responses((status = 200, description = "The recording", content_type = "audio/wav")))]
async fn message_audio(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let bytes = match crate::recordings::of_message(&s, &by, id).await? {
        Recording::Found(bytes) => bytes,
        Recording::Missing => {
            return Err(Problem::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "The recording of this message is missing",
            ))
        }
    };
    let mut response = crate::recordings::wav(bytes);
    response.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"voicemail-{id}.wav\""))
            .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
    );
    Ok(response)
}
