//! The customer admin's auto-attendant menus: a greeting that asks callers
//! to key an option, a select per key (`1`–`9`, `0`, `*`, `#`, in the order
//! of a phone's keypad) of where that key leads, where a caller goes who
//! keys nothing, how long to wait and how often to ask, whether callers may
//! dial an extension directly, and the greeting uploaded (through
//! [`super::uploads`]).

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use pbx_store::ivr_menus::{IvrMenu, MenuOption, MenuSettings};
use pbx_store::{CustomerId, IvrMenuId};
use serde_json::{json, Value};

use super::choices::{Choices, For};
use super::i18n::Texts;
use super::pages::{admin_customer, field_messages};
use super::visit::{Confirm, Failure, Form, Visit};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/customers/{id}/ivr-menus", get(menus).post(create_menu))
        .route("/ivr-menus/{id}", get(menu).post(update_menu))
        .route("/ivr-menus/{id}/delete", post(delete_menu))
}

/// The keys in the order of a phone's keypad.
const KEYPAD: [&str; 12] = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0", "*", "#"];

/// The form field of a key's select (`*` and `#` spelled out, for ids and
/// names that need no escaping).
fn field_of(key: &str) -> String {
    match key {
        "*" => "key_star".to_owned(),
        "#" => "key_hash".to_owned(),
        digit => format!("key_{digit}"),
    }
}

/// A menu as its form holds it: each select's `kind:id`, numbers as typed.
#[derive(Default)]
struct MenuForm {
    name: String,
    timeout_s: String,
    tries: String,
    direct_dial: bool,
    /// Per key of [`KEYPAD`], what was chosen (empty for nothing).
    keys: Vec<String>,
    on_timeout: String,
    version: Option<i64>,
}

impl MenuForm {
    fn blank() -> MenuForm {
        MenuForm {
            timeout_s: "5".into(),
            tries: "3".into(),
            keys: vec![String::new(); KEYPAD.len()],
            ..MenuForm::default()
        }
    }

    fn of(m: &IvrMenu) -> MenuForm {
        let keys = KEYPAD
            .iter()
            .map(|k| {
                m.options
                    .iter()
                    .find(|o| o.key == *k)
                    .map(|o| super::choices::value(o.destination))
                    .unwrap_or_default()
            })
            .collect();
        MenuForm {
            name: m.name.clone(),
            timeout_s: m.timeout_s.to_string(),
            tries: m.tries.to_string(),
            direct_dial: m.direct_dial,
            keys,
            on_timeout: m.on_timeout.map(super::choices::value).unwrap_or_default(),
            version: Some(m.version),
        }
    }

    fn posted(mut fields: HashMap<String, String>) -> MenuForm {
        let mut take = |name: &str| fields.remove(name).unwrap_or_default();
        MenuForm {
            name: take("name"),
            timeout_s: take("timeout_s"),
            tries: take("tries"),
            direct_dial: !take("direct_dial").is_empty(),
            keys: KEYPAD.iter().map(|k| take(&field_of(k))).collect(),
            on_timeout: take("on_timeout"),
            version: take("version").parse().ok(),
        }
    }

    /// The settings the form asks for, or the messages to show with it.
    fn settings(&self, choices: &Choices) -> Result<MenuSettings, Vec<String>> {
        let mut errors = Vec::new();
        let mut number = |field: &str, text: &str, default: i64| match text.trim() {
            "" => default,
            t => t.parse().unwrap_or_else(|_| {
                errors.push(format!("{field}: {t}"));
                default
            }),
        };
        let timeout_s = number("timeout_s", &self.timeout_s, 5);
        let tries = number("tries", &self.tries, 3);
        let mut options = Vec::new();
        for (key, chosen) in KEYPAD.iter().zip(&self.keys) {
            match choices.read(chosen) {
                Ok(Some(destination)) => options.push(MenuOption {
                    key: (*key).to_owned(),
                    destination,
                }),
                Ok(None) => {}
                Err(text) => errors.push(format!("options: {key} → {text}")),
            }
        }
        let on_timeout = choices.read(&self.on_timeout).unwrap_or_else(|text| {
            errors.push(format!("on_timeout: {text}"));
            None
        });
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(MenuSettings {
            name: self.name.trim().to_owned(),
            timeout_s,
            tries,
            direct_dial: self.direct_dial,
            options,
            on_timeout,
        })
    }

    /// What the fields template shows: each key with its select.
    fn view(&self, texts: &Texts, choices: &Choices) -> Value {
        let none = texts.get("menu_key_unused");
        let keys: Vec<Value> = KEYPAD
            .iter()
            .zip(&self.keys)
            .map(|(key, chosen)| {
                let current = choices.read(chosen).ok().flatten();
                json!({ "key": key, "field": field_of(key), "select": choices.select(texts, current, none) })
            })
            .collect();
        let on_timeout = choices.read(&self.on_timeout).ok().flatten();
        json!({
            "name": self.name,
            "timeout_s": self.timeout_s,
            "tries": self.tries,
            "direct_dial": self.direct_dial,
            "keys": keys,
            "on_timeout": choices.select(texts, on_timeout, texts.get("menu_goodbye")),
        })
    }
}

async fn menus(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
) -> Result<Response, Failure> {
    let customer = admin_customer(&s, &visit, id).await?;
    menus_page(&s, &visit, customer.id, &MenuForm::blank(), Vec::new()).await
}

async fn menus_page(
    s: &AppState,
    visit: &Visit,
    customer: CustomerId,
    form: &MenuForm,
    errors: Vec<String>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let texts = visit.texts(s);
    let choices = Choices::of(s, visit, customer, For::Menu(None)).await?;
    let list: Vec<Value> = s
        .store
        .ivr_menus()
        .list(by, customer)
        .await?
        .iter()
        .map(|m| {
            let options: Vec<Value> = m
                .options
                .iter()
                .map(|o| json!({ "key": o.key, "to": choices.label(Some(o.destination)) }))
                .collect();
            json!({
                "id": m.id, "name": m.name, "options": options,
                "on_timeout": choices.label(m.on_timeout),
                "has_greeting": m.has_greeting,
            })
        })
        .collect();
    visit.form_page(
        s,
        "ivr_menus",
        texts.get("ivr_menus"),
        json!({ "customer_id": customer, "menus": list, "can_create": !by.read_only,
                "form": form.view(texts, &choices) }),
        errors,
    )
}

async fn create_menu(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(fields): Form<HashMap<String, String>>,
) -> Result<Response, Failure> {
    let customer = admin_customer(&s, &visit, id).await?;
    let by = visit.principal()?;
    let form = MenuForm::posted(fields);
    let choices = Choices::of(&s, &visit, customer.id, For::Menu(None)).await?;
    let settings = match form.settings(&choices) {
        Ok(settings) => settings,
        Err(errors) => return menus_page(&s, &visit, customer.id, &form, errors).await,
    };
    match s.store.ivr_menus().create(by, customer.id, &settings).await {
        Ok(m) => {
            Ok(Redirect::to(&format!("/ivr-menus/{}?done=ivr_menu_created", m.id)).into_response())
        }
        Err(e) => {
            let errors = field_messages(e)?;
            menus_page(&s, &visit, customer.id, &form, errors).await
        }
    }
}

async fn menu(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let m = s.store.ivr_menus().get(by, IvrMenuId(id)).await?;
    menu_page(&s, &visit, &m, &MenuForm::of(&m), Vec::new()).await
}

/// A menu's page: its form, its greeting, and its removal.
pub(super) async fn menu_page_of(
    s: &AppState,
    visit: &Visit,
    id: IvrMenuId,
    errors: Vec<String>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let m = s.store.ivr_menus().get(by, id).await?;
    menu_page(s, visit, &m, &MenuForm::of(&m), errors).await
}

async fn menu_page(
    s: &AppState,
    visit: &Visit,
    m: &IvrMenu,
    form: &MenuForm,
    errors: Vec<String>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let texts = visit.texts(s);
    let choices = Choices::of(s, visit, m.customer_id, For::Menu(Some(m.id))).await?;
    let title = format!("{} {}", texts.get("ivr_menu"), m.name);
    visit.form_page(
        s,
        "ivr_menu",
        &title,
        json!({ "id": m.id, "customer_id": m.customer_id, "version": m.version,
                "name": m.name, "greeting": m.has_greeting, "can_change": !by.read_only,
                "form": form.view(texts, &choices) }),
        errors,
    )
}

async fn update_menu(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(fields): Form<HashMap<String, String>>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let m = s.store.ivr_menus().get(by, IvrMenuId(id)).await?;
    let form = MenuForm::posted(fields);
    let choices = Choices::of(&s, &visit, m.customer_id, For::Menu(Some(m.id))).await?;
    let settings = match form.settings(&choices) {
        Ok(settings) => settings,
        Err(errors) => return menu_page(&s, &visit, &m, &form, errors).await,
    };
    match s
        .store
        .ivr_menus()
        .update(by, m.id, form.version, &settings)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/ivr-menus/{}?done=saved", m.id)).into_response()),
        Err(e) => {
            let errors = field_messages(e)?;
            menu_page(&s, &visit, &m, &form, errors).await
        }
    }
}

async fn delete_menu(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<Confirm>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    form.required()?;
    let m = s.store.ivr_menus().get(by, IvrMenuId(id)).await?;
    crate::uploads::delete_menu(&s, by, m.id).await?;
    Ok(Redirect::to(&format!(
        "/customers/{}/ivr-menus?done=ivr_menu_deleted",
        m.customer_id
    ))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_a_field_of_its_own() {
        let fields: std::collections::HashSet<String> =
            KEYPAD.iter().map(|k| field_of(k)).collect();
        assert_eq!(fields.len(), 12);
        assert!(KEYPAD.iter().all(|k| pbx_store::ivr_menus::is_key(k)));
        let posted = MenuForm::posted(HashMap::from([
            ("key_star".to_owned(), "extension:5".to_owned()),
            ("direct_dial".to_owned(), "1".to_owned()),
            ("version".to_owned(), "3".to_owned()),
        ]));
        assert_eq!(posted.keys[10], "extension:5");
        assert!(posted.direct_dial && posted.version == Some(3));
    }
}
