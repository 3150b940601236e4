//! Call recording: a customer's policy (which extensions' and numbers'
//! calls are recorded, how long recordings are kept) and the recordings,
//! with their audio as WAV (stereo: the caller left, the callee right).
//! The customer's administrators (and those above them) set the policy and
//! delete recordings; a customer's user lists and hears those of its own
//! extension's calls.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Json as JsonOut;
use pbx_store::call_recordings::{CallRecording, RecordingPolicy};
use pbx_store::CustomerId;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::input::{Json, Path, Query};
use super::page::{self, Page, PageQuery};
use super::problem::{ApiResult, Problem};
use crate::recordings::Recording;
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_policy, set_policy))
        .routes(routes!(list_recordings))
        .routes(routes!(get_recording, delete_recording))
        .routes(routes!(recording_audio))
}

/// A customer's recording policy (nothing is recorded by default).
#[utoipa::path(get, path = "/api/v1/customers/{id}/call-recording", tag = "call-recording",
    params(("id" = i64, Path)), responses((status = 200, body = RecordingPolicy)))]
async fn get_policy(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<JsonOut<RecordingPolicy>> {
    Ok(JsonOut(
        s.store
            .call_recordings()
            .policy(&by, CustomerId(id))
            .await?,
    ))
}

/// Replaces a customer's recording policy: the calls of the extensions
/// named (made or answered) and to the numbers named are recorded, after
/// an announcement both parties hear; recordings are kept
/// `retention_days` after the call.
#[utoipa::path(put, path = "/api/v1/customers/{id}/call-recording", tag = "call-recording",
    request_body = RecordingPolicy, params(("id" = i64, Path)),
    responses((status = 200, body = RecordingPolicy)))]
async fn set_policy(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Json(policy): Json<RecordingPolicy>,
) -> ApiResult<JsonOut<RecordingPolicy>> {
    Ok(JsonOut(
        s.store
            .call_recordings()
            .set_policy(&by, CustomerId(id), &policy)
            .await?,
    ))
}

/// A customer's recorded calls, newest first.
#[utoipa::path(get, path = "/api/v1/customers/{id}/call-recordings", tag = "call-recording",
    params(("id" = i64, Path), PageQuery), responses((status = 200, body = Page<CallRecording>)))]
async fn list_recordings(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Query(q): Query<PageQuery>,
) -> ApiResult<JsonOut<Page<CallRecording>>> {
    let limit = q.limit()?;
    let mut items = s
        .store
        .call_recordings()
        .list(&by, CustomerId(id), q.after()?, limit + 1)
        .await?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = more
        .then(|| items.last().map(|r| page::encode(r.id)))
        .flatten();
    Ok(JsonOut(Page { items, next_cursor }))
}

/// One recorded call.
#[utoipa::path(get, path = "/api/v1/call-recordings/{id}", tag = "call-recording",
    params(("id" = i64, Path)), responses((status = 200, body = CallRecording)))]
async fn get_recording(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<JsonOut<CallRecording>> {
    Ok(JsonOut(s.store.call_recordings().get(&by, id).await?.0))
}

/// Deletes a recording and its audio (the call's record stays).
#[utoipa::path(delete, path = "/api/v1/call-recordings/{id}", tag = "call-recording",
    params(("id" = i64, Path)), responses((status = 204)))]
async fn delete_recording(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    let audio = s.store.call_recordings().delete(&by, id).await?;
    crate::recordings::remove(&s, audio, "call recording", id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// A recorded call's audio: WAV, 8 kHz, 16-bit, stereo (caller left,
/// callee right).
#[utoipa::path(get, path = "/api/v1/call-recordings/{id}/audio", tag = "call-recording",
    params(("id" = i64, Path)),
    responses((status = 200, description = "The recording", content_type = "audio/wav")))]
async fn recording_audio(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let bytes = match crate::recordings::of_call(&s, &by, id).await? {
        Recording::Found(bytes) => bytes,
        Recording::Missing => {
            return Err(Problem::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "The audio of this recording is missing",
            ))
        }
    };
    let mut response = crate::recordings::wav(bytes);
    response.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"call-{id}.wav\""))
            .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
    );
    Ok(response)
}
