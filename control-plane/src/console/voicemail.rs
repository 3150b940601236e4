//! An extension's voicemail in the console: its messages are listed on the
//! extension's page (see `pages`), played in the browser from here, and
//! deleted from here; the box's e-mail address and PIN are set from here. The extension's own user and its customer's admins
//! reach them; the store's scope decides, as for the API.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::visit::{Failure, Form, Nothing, Visit};
use crate::recordings::Recording;
use crate::AppState;
use pbx_store::voicemail::BoxSettings;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/voicemail/messages/{id}/audio", get(audio))
        .route("/voicemail/messages/{id}/delete", post(delete))
        .route("/extensions/{id}/voicemail", post(set_box))
}

#[derive(serde::Deserialize)]
struct BoxForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    pin: String,
    remove_pin: Option<String>,
}

/// The box's e-mail address and PIN (an empty PIN field keeps the PIN).
async fn set_box(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<BoxForm>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let extension = pbx_store::ExtensionId(id);
    let email = form.email.trim();
    let pin = form.pin.trim();
    let settings = BoxSettings {
        email: (!email.is_empty()).then(|| email.to_owned()),
        pin: match (form.remove_pin.is_some(), pin.is_empty()) {
            (true, _) => Some(String::new()),
            (false, true) => None,
            (false, false) => Some(pin.to_owned()),
        },
        ..BoxSettings::default()
    };
    match s.store.voicemail().set_box(by, extension, &settings).await {
        Ok(_) => Ok(Redirect::to(&format!("/extensions/{id}?done=saved")).into_response()),
        Err(e) => {
            let errors = super::pages::field_messages(e)?;
            super::pages::extension_page(&s, &visit, extension, errors).await
        }
    }
}

/// The messages of `extension` as its page lists them, newest first.
pub async fn listed(
    s: &AppState,
    visit: &Visit,
    extension: pbx_store::ExtensionId,
    zone: &str,
) -> Result<Vec<Value>, Failure> {
    let by = visit.principal()?;
    let tz = visit.time_zone(zone);
    let format = visit.format();
    let messages = s.store.voicemail().list(by, extension).await?;
    Ok(messages
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "caller": m.caller,
                "received": format.date_time(m.received_at, tz),
                "seconds": (m.duration_ms + 500) / 1000,
                "new": m.heard_at.is_none(),
            })
        })
        .collect())
}

/// A message's recording, for the page's audio player.
async fn audio(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    match crate::recordings::of_message(&s, by, id).await? {
        Recording::Found(bytes) => Ok(crate::recordings::wav(bytes)),
        Recording::Missing => Err(Failure::NotFound),
    }
}

/// Deletes a message and its recording; back to the extension's page.
async fn delete(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(_): Form<Nothing>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let (message, _) = s.store.voicemail().get(by, id).await?;
    let key = s.store.voicemail().delete(by, id).await?;
    crate::recordings::remove(&s, key, "voicemail message", id).await;
    Ok(Redirect::to(&format!(
        "/extensions/{}?done=voicemail_deleted",
        message.extension_id
    ))
    .into_response())
}
