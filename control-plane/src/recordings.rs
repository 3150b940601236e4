//! Recorded audio over HTTP (voicemail messages, recorded calls), for the
//! API and the console alike: the file read off the async threads, and the
//! WAV answer.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use pbx_store::{Principal, StoreError};

use crate::AppState;

/// What became of a message's recording.
pub enum Recording {
    /// The WAV file, 8 kHz, 16-bit (a message mono, a call stereo).
    Found(Vec<u8>),
    /// The message exists, its file does not (logged).
    Missing,
}

/// Message `id`'s recording, as `by` may see it (the store's scope decides).
pub async fn of_message(s: &AppState, by: &Principal, id: i64) -> Result<Recording, StoreError> {
    let (_, key) = s.store.voicemail().get(by, id).await?;
    Ok(read(s, key, "voicemail message", id).await)
}

/// Recorded call `id`'s audio, as `by` may see it.
pub async fn of_call(s: &AppState, by: &Principal, id: i64) -> Result<Recording, StoreError> {
    let (_, key) = s.store.call_recordings().get(by, id).await?;
    Ok(read(s, key, "call recording", id).await)
}

pub async fn read(s: &AppState, key: String, what: &'static str, id: i64) -> Recording {
    let files = s.audio.clone();
    match tokio::task::spawn_blocking(move || files.read(&key)).await {
        Ok(Ok(bytes)) => Recording::Found(bytes),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, id, "{what}: audio missing");
            Recording::Missing
        }
        Err(e) => {
            tracing::warn!(error = %e, id, "{what}: audio not read");
            Recording::Missing
        }
    }
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

/// Removes the audio of a deleted recording (`what` `id`, for the log).
/// The row is gone already; a file left behind is only disk space, and the
/// log says so.
pub async fn remove(s: &AppState, key: String, what: &'static str, id: i64) {
    let files = s.audio.clone();
    match tokio::task::spawn_blocking(move || files.remove(&key)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, id, "{what}: audio not removed"),
        Err(e) => tracing::warn!(error = %e, id, "{what}: audio not removed"),
    }
}

/// How often recordings past their customer's retention are looked for.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// Recordings removed per transaction.
const SWEEP_BATCH: u32 = 500;

/// Removes recorded calls past their customer's retention, with their
/// audio, until `stop`. Every control-plane node may run it: a recording
/// two nodes both remove is removed once.
pub async fn sweep(
    store: pbx_store::Store,
    audio: pbx_store::audio_files::AudioFiles,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let sys = Principal::system();
    loop {
        loop {
            let keys = match store
                .call_recordings()
                .remove_expired(&sys, pbx_store::now_ms(), SWEEP_BATCH)
                .await
            {
                Ok(keys) => keys,
                Err(e) => {
                    tracing::warn!(error = %e, "expired call recordings not removed; will retry");
                    break;
                }
            };
            let done = keys.len() < SWEEP_BATCH as usize;
            let files = audio.clone();
            let removed = tokio::task::spawn_blocking(move || {
                keys.iter().filter(|k| files.remove(k).is_ok()).count()
            })
            .await
            .unwrap_or(0);
            if removed > 0 {
                tracing::info!(removed, "call recordings past their retention removed");
            }
            if done {
                break;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
