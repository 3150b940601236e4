//! Uploaded audio in the console: an extension's greeting (on the
//! extension's page: its user and the customer's admins), the customer's
//! music on hold (on the customer's dashboard: its admins) and a menu's
//! greeting (on the menu's page: the customer's admins).
//! Played back in the browser, replaced by an upload, removed to go back
//! to the platform's; the conversion and its checks are the API's
//! ([`crate::uploads`]).

use axum::extract::{Multipart, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use pbx_store::{CustomerId, ExtensionId, IvrMenuId};

use super::visit::{Failure, Form, Nothing, Visit};
use crate::recordings::Recording;
use crate::uploads::Target;
use crate::AppState;

/// Largest upload form (the API's limit, and room for the form).
const UPLOAD_BODY: usize = crate::api::input::MAX_AUDIO + 64 * 1024;

pub fn routes() -> Router<AppState> {
    let big = || axum::extract::DefaultBodyLimit::max(UPLOAD_BODY);
    Router::new()
        .route("/extensions/{id}/greeting/audio", get(greeting))
        .route("/extensions/{id}/greeting/delete", post(remove_greeting))
        .route(
            "/extensions/{id}/greeting",
            post(upload_greeting).layer(big()),
        )
        .route("/customers/{id}/music-on-hold/audio", get(music))
        .route("/customers/{id}/music-on-hold/delete", post(remove_music))
        .route(
            "/customers/{id}/music-on-hold",
            post(upload_music).layer(big()),
        )
        .route("/ivr-menus/{id}/greeting/audio", get(menu_greeting))
        .route(
            "/ivr-menus/{id}/greeting/delete",
            post(remove_menu_greeting),
        )
        .route(
            "/ivr-menus/{id}/greeting",
            post(upload_menu_greeting).layer(big()),
        )
}

/// Where each target's page is.
fn page_of(target: Target) -> String {
    match target {
        Target::Greeting(e) => format!("/extensions/{}", e.0),
        Target::MusicOnHold(c) => format!("/customers/{}", c.0),
        Target::MenuGreeting(m) => format!("/ivr-menus/{}", m.0),
    }
}

async fn play(s: &AppState, visit: &Visit, target: Target) -> Result<Response, Failure> {
    let by = visit.principal()?;
    match crate::uploads::read(s, by, target).await? {
        Some(Recording::Found(bytes)) => Ok(crate::recordings::wav(bytes)),
        _ => Err(Failure::NotFound),
    }
}

/// Takes an upload; back to its page, or the page again saying what was
/// wrong with the file.
async fn upload(
    s: &AppState,
    visit: &Visit,
    target: Target,
    form: Multipart,
    done: &str,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let bytes = super::visit::uploaded_file(visit, form, "audio").await?;
    match crate::uploads::save(s, by, target, bytes.to_vec()).await {
        Ok(_) => Ok(Redirect::to(&format!("{}?done={done}", page_of(target))).into_response()),
        Err(e) => {
            let errors = super::pages::field_messages(e.into_store())?;
            match target {
                Target::Greeting(ext) => super::pages::extension_page(s, visit, ext, errors).await,
                Target::MusicOnHold(c) => super::pages::dashboard_page(s, visit, c, errors).await,
                Target::MenuGreeting(m) => super::menus::menu_page_of(s, visit, m, errors).await,
            }
        }
    }
}

async fn remove(s: &AppState, visit: &Visit, target: Target) -> Result<Response, Failure> {
    let by = visit.principal()?;
    crate::uploads::remove(s, by, target).await?;
    Ok(Redirect::to(&format!("{}?done=saved", page_of(target))).into_response())
}

async fn greeting(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
) -> Result<Response, Failure> {
    play(&s, &visit, Target::Greeting(ExtensionId(id))).await
}

async fn upload_greeting(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    form: Multipart,
) -> Result<Response, Failure> {
    upload(
        &s,
        &visit,
        Target::Greeting(ExtensionId(id)),
        form,
        "greeting_saved",
    )
    .await
}

async fn remove_greeting(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(_): Form<Nothing>,
) -> Result<Response, Failure> {
    remove(&s, &visit, Target::Greeting(ExtensionId(id))).await
}

async fn music(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
) -> Result<Response, Failure> {
    play(&s, &visit, Target::MusicOnHold(CustomerId(id))).await
}

async fn upload_music(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    form: Multipart,
) -> Result<Response, Failure> {
    upload(
        &s,
        &visit,
        Target::MusicOnHold(CustomerId(id)),
        form,
        "music_saved",
    )
    .await
}

async fn remove_music(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(_): Form<Nothing>,
) -> Result<Response, Failure> {
    remove(&s, &visit, Target::MusicOnHold(CustomerId(id))).await
}

async fn menu_greeting(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
) -> Result<Response, Failure> {
    play(&s, &visit, Target::MenuGreeting(IvrMenuId(id))).await
}

async fn upload_menu_greeting(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    form: Multipart,
) -> Result<Response, Failure> {
    upload(
        &s,
        &visit,
        Target::MenuGreeting(IvrMenuId(id)),
        form,
        "greeting_saved",
    )
    .await
}

async fn remove_menu_greeting(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(_): Form<Nothing>,
) -> Result<Response, Failure> {
    remove(&s, &visit, Target::MenuGreeting(IvrMenuId(id))).await
}
