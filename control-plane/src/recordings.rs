//! Voicemail recordings over HTTP, for the API and the console alike: the
//! file read off the async threads, and the WAV answer.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use pbx_store::{Principal, StoreError};

use crate::AppState;

/// What became of a message's recording.
pub enum Recording {
    /// The WAV file, 8 kHz, 16-bit, mono.
    Found(Vec<u8>),
    /// The message exists, its file does not (logged).
    Missing,
}

/// Message `id`'s recording, as `by` may see it (the store's scope decides).
pub async fn of_message(s: &AppState, by: &Principal, id: i64) -> Result<Recording, StoreError> {
    let (_, key) = s.store.voicemail().get(by, id).await?;
    let files = s.audio.clone();
    let read = tokio::task::spawn_blocking(move || files.read(&key)).await;
    Ok(match read {
        Ok(Ok(bytes)) => Recording::Found(bytes),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, message = id, "voicemail audio missing");
            Recording::Missing
        }
        Err(e) => {
            tracing::warn!(error = %e, message = id, "voicemail audio not read");
            Recording::Missing
        }
    })
}

/// The answer carrying a recording, never cached by the way.
pub fn wav(bytes: Vec<u8>) -> Response {
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    response
}
