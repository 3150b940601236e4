//! The customer admin's conference rooms: a number the customer's phones
//! dial to meet, an optional PIN the participants key in, and how many
//! may be in at once.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use pbx_store::conference_rooms::{ConferenceRoom, RoomSettings};
use pbx_store::{ConferenceRoomId, CustomerId};
use serde::Deserialize;
use serde_json::{json, Value};

use super::pages::{admin_customer, field_messages};
use super::visit::{Confirm, Failure, Form, Visit};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/customers/{id}/conference-rooms",
            get(rooms).post(create_room),
        )
        .route("/conference-rooms/{id}", get(room).post(update_room))
        .route("/conference-rooms/{id}/delete", post(delete_room))
}

/// A room as its form shows it.
fn form_of(r: &ConferenceRoom) -> Value {
    json!({
        "number": r.number,
        "name": r.name,
        "pin": r.pin,
        "max_participants": r.max_participants,
    })
}

async fn rooms(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
) -> Result<Response, Failure> {
    let customer = admin_customer(&s, &visit, id).await?;
    let blank = json!({ "max_participants": 10 });
    rooms_page(&s, &visit, customer.id, blank, Vec::new()).await
}

async fn rooms_page(
    s: &AppState,
    visit: &Visit,
    customer: CustomerId,
    form: Value,
    errors: Vec<String>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let texts = visit.texts(s);
    let list: Vec<Value> = s
        .store
        .conference_rooms()
        .list(by, customer)
        .await?
        .iter()
        .map(|r| {
            let mut row = form_of(r);
            row["id"] = json!(r.id);
            row
        })
        .collect();
    visit.form_page(
        s,
        "conference_rooms",
        texts.get("conference_rooms"),
        json!({ "customer_id": customer, "rooms": list, "can_create": !by.read_only, "form": form }),
        errors,
    )
}

#[derive(Deserialize)]
struct RoomForm {
    #[serde(default)]
    number: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    pin: String,
    max_participants: Option<String>,
    version: Option<i64>,
}

impl RoomForm {
    /// The settings the form asks for, or the message to show with it.
    fn settings(&self) -> Result<RoomSettings, Vec<String>> {
        let max_participants = match self.max_participants.as_deref().map(str::trim) {
            None | Some("") => 10,
            Some(m) => m
                .parse()
                .map_err(|_| vec![format!("max_participants: {m}")])?,
        };
        let pin = self.pin.trim();
        Ok(RoomSettings {
            number: self.number.trim().to_owned(),
            name: self.name.trim().to_owned(),
            pin: (!pin.is_empty()).then(|| pin.to_owned()),
            max_participants,
        })
    }

    /// What the form showed, to show it again with its messages.
    fn echo(&self) -> Value {
        json!({
            "number": self.number, "name": self.name, "pin": self.pin,
            "max_participants": self.max_participants,
        })
    }
}

async fn create_room(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<RoomForm>,
) -> Result<Response, Failure> {
    let customer = admin_customer(&s, &visit, id).await?;
    let by = visit.principal()?;
    let settings = match form.settings() {
        Ok(settings) => settings,
        Err(errors) => return rooms_page(&s, &visit, customer.id, form.echo(), errors).await,
    };
    match s
        .store
        .conference_rooms()
        .create(by, customer.id, &settings)
        .await
    {
        Ok(r) => Ok(Redirect::to(&format!(
            "/conference-rooms/{}?done=conference_room_created",
            r.id
        ))
        .into_response()),
        Err(e) => {
            let errors = field_messages(e)?;
            rooms_page(&s, &visit, customer.id, form.echo(), errors).await
        }
    }
}

async fn room(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let r = s
        .store
        .conference_rooms()
        .get(by, ConferenceRoomId(id))
        .await?;
    room_page(&s, &visit, &r, form_of(&r), Vec::new())
}

fn room_page(
    s: &AppState,
    visit: &Visit,
    r: &ConferenceRoom,
    form: Value,
    errors: Vec<String>,
) -> Result<Response, Failure> {
    let texts = visit.texts(s);
    let title = format!("{} {}", texts.get("conference_room"), r.number);
    visit.form_page(
        s,
        "conference_room",
        &title,
        json!({ "id": r.id, "customer_id": r.customer_id, "version": r.version, "form": form }),
        errors,
    )
}

async fn update_room(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<RoomForm>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let r = s
        .store
        .conference_rooms()
        .get(by, ConferenceRoomId(id))
        .await?;
    let settings = match form.settings() {
        Ok(settings) => settings,
        Err(errors) => return room_page(&s, &visit, &r, form.echo(), errors),
    };
    match s
        .store
        .conference_rooms()
        .update(by, r.id, form.version, &settings)
        .await
    {
        Ok(_) => {
            Ok(Redirect::to(&format!("/conference-rooms/{}?done=saved", r.id)).into_response())
        }
        Err(e) => {
            let errors = field_messages(e)?;
            room_page(&s, &visit, &r, form.echo(), errors)
        }
    }
}

async fn delete_room(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<Confirm>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    form.required()?;
    let r = s
        .store
        .conference_rooms()
        .get(by, ConferenceRoomId(id))
        .await?;
    s.store.conference_rooms().delete(by, r.id).await?;
    Ok(Redirect::to(&format!(
        "/customers/{}/conference-rooms?done=conference_room_deleted",
        r.customer_id
    ))
    .into_response())
}
