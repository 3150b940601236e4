//! Carrier trunks in the console: the operator's (for every reseller) on the
//! operator's host, a reseller's own on its host. Settings and the
//! destinations a trunk carries; the registration secret is write-only.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use pbx_store::numbering::NumberFormat;
use pbx_store::trunks::{AuthMode, RegistrationState, Route, Transport, Trunk, TrunkSettings};
use pbx_store::{ResellerId, Scope, TrunkId};
use serde::Deserialize;
use serde_json::{json, Value};

use super::i18n::Texts;
use super::pages::field_messages;
use super::visit::{Confirm, Failure, Form, Visit};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/trunks", get(trunks).post(create_trunk))
        .route("/trunks/{id}", get(trunk).post(update_trunk))
        .route("/trunks/{id}/routes", post(set_routes))
        .route("/trunks/{id}/delete", post(delete_trunk))
}

/// None for the operator, the reseller for its admin; others get a 404.
fn owner(visit: &Visit) -> Result<Option<ResellerId>, Failure> {
    match visit.signed_in()?.principal.scope {
        Scope::Operator => Ok(None),
        Scope::Reseller { reseller } => Ok(Some(reseller)),
        _ => Err(Failure::NotFound),
    }
}

/// A form's view of settings (a trunk's, or what was typed).
fn form_of(t: &TrunkForm, texts: &Texts, secret_kept: bool) -> Value {
    let options = |values: &[(&str, &str)], current: &str| -> Vec<Value> {
        values
            .iter()
            .map(|(value, label)| json!({ "value": value, "label": texts.get(label), "selected": *value == current }))
            .collect()
    };
    json!({
        "name": t.name, "host": t.host, "port": t.port, "username": t.username, "realm": t.realm,
        "max_channels": t.max_channels, "priority": t.priority, "enabled": t.enabled.is_some(),
        "inbound_sources": t.inbound_sources, "country": t.country,
        "secret_hint": if secret_kept { texts.get("trunk_secret_keep") } else { "" },
        "transports": options(&[("udp", "udp"), ("tcp", "tcp")], &t.transport),
        "auth_modes": options(&[("ip", "trunk_auth_ip"), ("register", "trunk_auth_register")], &t.auth_mode),
        "formats": options(
            &[("e164_plus", "trunk_format_e164_plus"), ("e164", "trunk_format_e164"), ("national", "trunk_format_national")],
            &t.number_format,
        ),
    })
}

#[derive(Debug, Default, Deserialize)]
struct TrunkForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    port: String,
    #[serde(default)]
    transport: String,
    #[serde(default)]
    auth_mode: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    realm: String,
    #[serde(default)]
    number_format: String,
    #[serde(default)]
    country: String,
    #[serde(default)]
    max_channels: String,
    #[serde(default)]
    priority: String,
    enabled: Option<String>,
    #[serde(default)]
    inbound_sources: String,
    version: Option<i64>,
}

impl TrunkForm {
    fn of(t: &Trunk) -> TrunkForm {
        TrunkForm {
            name: t.name.clone(),
            host: t.host.clone(),
            port: t.port.to_string(),
            transport: t.transport.as_str().into(),
            auth_mode: t.auth_mode.as_str().into(),
            username: t.username.clone().unwrap_or_default(),
            secret: String::new(),
            realm: t.realm.clone().unwrap_or_default(),
            number_format: t.number_format.as_str().into(),
            country: t.country.clone(),
            max_channels: t.max_channels.map(|m| m.to_string()).unwrap_or_default(),
            priority: t.priority.to_string(),
            enabled: t.enabled.then(|| "1".into()),
            inbound_sources: t.inbound_sources.join(", "),
            version: Some(t.version),
        }
    }

    fn blank() -> TrunkForm {
        TrunkForm {
            port: "5060".into(),
            transport: "udp".into(),
            auth_mode: "ip".into(),
            number_format: "e164_plus".into(),
            country: "DE".into(),
            priority: "100".into(),
            enabled: Some("1".into()),
            ..TrunkForm::default()
        }
    }

    /// The settings asked for, or the fields that are not numbers or choices.
    /// What the form does not show (the registration interval) is kept.
    fn settings(&self, register_expires_s: i64) -> Result<TrunkSettings, Vec<String>> {
        let mut errors = Vec::new();
        let mut number = |field: &str, text: &str, default: Option<i64>| -> Option<i64> {
            match text.trim() {
                "" => default,
                t => t.parse().map_or_else(
                    |_| {
                        errors.push(format!("{field}: {t}"));
                        None
                    },
                    Some,
                ),
            }
        };
        let port = number("port", &self.port, Some(5060)).unwrap_or(0);
        let priority = number("priority", &self.priority, Some(100)).unwrap_or(0);
        let max_channels = number("max_channels", &self.max_channels, None);
        let optional = |t: &str| Some(t.trim().to_owned()).filter(|t| !t.is_empty());
        let (Some(transport), Some(auth_mode), Some(number_format)) = (
            Transport::parse(&self.transport),
            AuthMode::parse(&self.auth_mode),
            NumberFormat::parse(&self.number_format),
        ) else {
            errors.push("transport / auth_mode / number_format".into());
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(TrunkSettings {
            name: self.name.trim().to_owned(),
            host: self.host.trim().to_ascii_lowercase(),
            port,
            transport,
            auth_mode,
            username: optional(&self.username),
            secret: optional(&self.secret),
            realm: optional(&self.realm),
            register_expires_s,
            inbound_sources: self
                .inbound_sources
                .split([',', ' ', '\n'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            number_format,
            country: self.country.trim().to_ascii_uppercase(),
            max_channels,
            priority,
            enabled: self.enabled.is_some(),
        })
    }
}

async fn trunks(State(s): State<AppState>, visit: Visit) -> Result<Response, Failure> {
    owner(&visit)?;
    trunks_page(&s, &visit, &TrunkForm::blank(), Vec::new()).await
}

async fn trunks_page(
    s: &AppState,
    visit: &Visit,
    form: &TrunkForm,
    errors: Vec<String>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let texts = visit.texts(s);
    let mut list = Vec::new();
    for t in s.store.trunks().list(by).await? {
        let routes = s.store.trunks().routes(by, t.id).await?;
        let shown: Vec<String> = routes
            .iter()
            .map(|r| {
                if r.prefix.is_empty() {
                    "*".into()
                } else {
                    format!("+{}", r.prefix)
                }
            })
            .collect();
        list.push(json!({
            "id": t.id, "name": t.name,
            "address": format!("{}:{} ({})", t.host, t.port, t.transport.as_str()),
            "auth": texts.get(&format!("trunk_auth_{}", t.auth_mode.as_str())),
            "routes": shown.join(", "), "priority": t.priority, "enabled": t.enabled,
            "registration": t.registration.as_ref().map(|r| match (r.state, r.status) {
                (RegistrationState::Registered, _) => texts.get("trunk_registered").to_owned(),
                (RegistrationState::Failed, Some(code)) => {
                    format!("{} ({code})", texts.get("trunk_registration_failed"))
                }
                (RegistrationState::Failed, None) => texts.get("trunk_registration_failed").to_owned(),
            }),
            "registered": t.registration.as_ref().is_some_and(|r| r.state == RegistrationState::Registered),
        }));
    }
    visit.form_page(
        s,
        "trunks",
        texts.get("trunks"),
        json!({ "trunks": list, "can_create": !by.read_only, "form": form_of(form, texts, false) }),
        errors,
    )
}

async fn create_trunk(
    State(s): State<AppState>,
    visit: Visit,
    Form(form): Form<TrunkForm>,
) -> Result<Response, Failure> {
    let owner = owner(&visit)?;
    let by = visit.principal()?;
    let settings = match form.settings(600) {
        Ok(settings) => settings,
        Err(errors) => return trunks_page(&s, &visit, &form, errors).await,
    };
    match s.store.trunks().create(by, owner, &settings).await {
        Ok(t) => Ok(Redirect::to(&format!("/trunks/{}?done=trunk_created", t.id)).into_response()),
        Err(e) => {
            let errors = field_messages(e)?;
            trunks_page(&s, &visit, &form, errors).await
        }
    }
}

async fn trunk(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
) -> Result<Response, Failure> {
    owner(&visit)?;
    let by = visit.principal()?;
    let t = s.store.trunks().get(by, TrunkId(id)).await?;
    trunk_page(&s, &visit, &t, &TrunkForm::of(&t), None, Vec::new()).await
}

fn routes_text(routes: &[Route]) -> String {
    routes
        .iter()
        .map(|r| {
            let prefix = if r.prefix.is_empty() {
                "*"
            } else {
                r.prefix.as_str()
            };
            format!("{prefix}; {}", r.priority)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn trunk_page(
    s: &AppState,
    visit: &Visit,
    t: &Trunk,
    form: &TrunkForm,
    typed_routes: Option<&str>,
    errors: Vec<String>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let texts = visit.texts(s);
    let routes = match typed_routes {
        Some(text) => text.to_owned(),
        None => routes_text(&s.store.trunks().routes(by, t.id).await?),
    };
    let title = format!("{} {}", texts.get("trunk"), t.name);
    visit.form_page(
        s,
        "trunk",
        &title,
        json!({
            "id": t.id, "version": t.version, "routes_text": routes,
            "form": form_of(form, texts, t.auth_mode == AuthMode::Register),
        }),
        errors,
    )
}

async fn update_trunk(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<TrunkForm>,
) -> Result<Response, Failure> {
    owner(&visit)?;
    let by = visit.principal()?;
    let t = s.store.trunks().get(by, TrunkId(id)).await?;
    let settings = match form.settings(t.register_expires_s) {
        Ok(settings) => settings,
        Err(errors) => return trunk_page(&s, &visit, &t, &form, None, errors).await,
    };
    match s
        .store
        .trunks()
        .update(by, t.id, form.version, &settings)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/trunks/{}?done=saved", t.id)).into_response()),
        Err(e) => {
            let errors = field_messages(e)?;
            trunk_page(&s, &visit, &t, &form, None, errors).await
        }
    }
}

/// `prefix[; priority]` per line, `*` for every destination.
fn parse_routes(text: &str) -> Result<Vec<Route>, Vec<String>> {
    let mut routes = Vec::new();
    let mut errors = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (prefix, priority) = match line.split_once(';') {
            Some((p, prio)) => (p.trim(), prio.trim().parse::<i64>().ok()),
            None => (line, Some(100)),
        };
        let prefix = prefix.trim_start_matches('+');
        match priority {
            Some(priority) => routes.push(Route {
                prefix: if prefix == "*" {
                    String::new()
                } else {
                    prefix.to_owned()
                },
                priority,
            }),
            None => errors.push(format!(
                "{}: {}",
                n + 1,
                line.chars().take(40).collect::<String>()
            )),
        }
    }
    if errors.is_empty() {
        Ok(routes)
    } else {
        Err(errors)
    }
}

#[derive(Deserialize)]
struct RoutesForm {
    #[serde(default)]
    routes: String,
}

async fn set_routes(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<RoutesForm>,
) -> Result<Response, Failure> {
    owner(&visit)?;
    let by = visit.principal()?;
    let t = s.store.trunks().get(by, TrunkId(id)).await?;
    let routes = match parse_routes(&form.routes) {
        Ok(routes) => routes,
        Err(errors) => {
            return trunk_page(
                &s,
                &visit,
                &t,
                &TrunkForm::of(&t),
                Some(&form.routes),
                errors,
            )
            .await
        }
    };
    match s.store.trunks().set_routes(by, t.id, &routes).await {
        Ok(_) => Ok(Redirect::to(&format!("/trunks/{}?done=saved", t.id)).into_response()),
        Err(e) => {
            let errors = field_messages(e)?;
            trunk_page(
                &s,
                &visit,
                &t,
                &TrunkForm::of(&t),
                Some(&form.routes),
                errors,
            )
            .await
        }
    }
}

async fn delete_trunk(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<Confirm>,
) -> Result<Response, Failure> {
    owner(&visit)?;
    form.required()?;
    let by = visit.principal()?;
    let t = s.store.trunks().get(by, TrunkId(id)).await?;
    s.store.trunks().delete(by, t.id).await?;
    Ok(Redirect::to("/trunks?done=trunk_deleted").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_lines_are_read() {
        let routes = parse_routes("+49; 10\n4930\n\n*; 500").expect("valid");
        assert_eq!(
            routes,
            vec![
                Route {
                    prefix: "49".into(),
                    priority: 10
                },
                Route {
                    prefix: "4930".into(),
                    priority: 100
                },
                Route {
                    prefix: String::new(),
                    priority: 500
                },
            ]
        );
        assert_eq!(parse_routes("49; high").expect_err("invalid").len(), 1);
    }
}
