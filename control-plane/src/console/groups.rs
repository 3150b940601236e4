//! The customer admin's ring groups: a number that rings several extensions
//! at once or one after another, then an extension when nobody answers.
//! Members are entered as extension numbers in ringing order.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use pbx_store::ring_groups::{RingGroup, RingGroupSettings, Strategy};
use pbx_store::{CustomerId, ExtensionId, RingGroupId};
use serde::Deserialize;
use serde_json::{json, Value};

use super::pages::{admin_customer, field_messages};
use super::visit::{Confirm, Failure, Form, Visit};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/customers/{id}/ring-groups",
            get(groups).post(create_group),
        )
        .route("/ring-groups/{id}", get(group).post(update_group))
        .route("/ring-groups/{id}/delete", post(delete_group))
}

/// Extension numbers of a customer, both ways.
struct Numbers {
    by_id: HashMap<ExtensionId, String>,
    by_number: HashMap<String, ExtensionId>,
}

async fn numbers(s: &AppState, visit: &Visit, customer: CustomerId) -> Result<Numbers, Failure> {
    let by = visit.principal()?;
    let live: Vec<_> = s
        .store
        .extensions()
        .list(by, customer)
        .await?
        .into_iter()
        .filter(|e| e.deleted_at.is_none())
        .collect();
    Ok(Numbers {
        by_id: live.iter().map(|e| (e.id, e.number.clone())).collect(),
        by_number: live.into_iter().map(|e| (e.number, e.id)).collect(),
    })
}

/// A group as its form shows it.
fn form_of(g: &RingGroup, n: &Numbers) -> Value {
    let number = |id: &ExtensionId| n.by_id.get(id).cloned().unwrap_or_default();
    json!({
        "number": g.number,
        "name": g.name,
        "sequential": g.strategy == Strategy::Sequential,
        "member_timeout_s": g.member_timeout_s,
        "members": g.members.iter().map(number).collect::<Vec<_>>().join(", "),
        "no_answer": g.no_answer_extension_id.as_ref().map(number),
    })
}

async fn groups(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
) -> Result<Response, Failure> {
    let customer = admin_customer(&s, &visit, id).await?;
    let blank = json!({ "member_timeout_s": 20 });
    groups_page(&s, &visit, customer.id, blank, Vec::new()).await
}

async fn groups_page(
    s: &AppState,
    visit: &Visit,
    customer: CustomerId,
    form: Value,
    errors: Vec<String>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let n = numbers(s, visit, customer).await?;
    let texts = visit.texts(s);
    let list: Vec<Value> = s
        .store
        .ring_groups()
        .list(by, customer)
        .await?
        .iter()
        .map(|g| {
            let mut row = form_of(g, &n);
            row["id"] = json!(g.id);
            row["strategy"] = json!(texts.get(&format!("strategy_{}", g.strategy.as_str())));
            row
        })
        .collect();
    visit.form_page(
        s,
        "ring_groups",
        texts.get("ring_groups"),
        json!({ "customer_id": customer, "groups": list, "can_create": !by.read_only, "form": form }),
        errors,
    )
}

#[derive(Deserialize)]
struct GroupForm {
    #[serde(default)]
    number: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    strategy: String,
    member_timeout_s: Option<String>,
    #[serde(default)]
    members: String,
    no_answer: Option<String>,
    version: Option<i64>,
}

impl GroupForm {
    /// The settings the form asks for, or the messages to show with it.
    fn settings(
        &self,
        n: &Numbers,
        texts: &super::i18n::Texts,
    ) -> Result<RingGroupSettings, Vec<String>> {
        let mut unknown = Vec::new();
        let mut lookup = |number: &str| match n.by_number.get(number) {
            Some(id) => Some(*id),
            None => {
                unknown.push(number.to_owned());
                None
            }
        };
        let members: Vec<ExtensionId> = self
            .members
            .split([',', ' ', ';'])
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .filter_map(&mut lookup)
            .collect();
        let no_answer = self
            .no_answer
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .and_then(&mut lookup);
        let timeout = match self.member_timeout_s.as_deref().map(str::trim) {
            None | Some("") => 20,
            Some(t) => t
                .parse()
                .map_err(|_| vec![format!("member_timeout_s: {t}")])?,
        };
        if !unknown.is_empty() {
            return Err(vec![format!(
                "{} {}",
                texts.get("unknown_members"),
                unknown.join(", ")
            )]);
        }
        let strategy =
            Strategy::parse(&self.strategy).ok_or_else(|| vec!["strategy".to_owned()])?;
        Ok(RingGroupSettings {
            number: self.number.trim().to_owned(),
            name: self.name.trim().to_owned(),
            strategy,
            member_timeout_s: timeout,
            members,
            no_answer_extension_id: no_answer,
        })
    }

    /// What the form showed, to show it again with its messages.
    fn echo(&self) -> Value {
        json!({
            "number": self.number, "name": self.name,
            "sequential": self.strategy == "sequential",
            "member_timeout_s": self.member_timeout_s, "members": self.members,
            "no_answer": self.no_answer,
        })
    }
}

async fn create_group(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<GroupForm>,
) -> Result<Response, Failure> {
    let customer = admin_customer(&s, &visit, id).await?;
    let by = visit.principal()?;
    let n = numbers(&s, &visit, customer.id).await?;
    let settings = match form.settings(&n, visit.texts(&s)) {
        Ok(settings) => settings,
        Err(errors) => return groups_page(&s, &visit, customer.id, form.echo(), errors).await,
    };
    match s
        .store
        .ring_groups()
        .create(by, customer.id, &settings)
        .await
    {
        Ok(g) => Ok(
            Redirect::to(&format!("/ring-groups/{}?done=ring_group_created", g.id)).into_response(),
        ),
        Err(e) => {
            let errors = field_messages(e)?;
            groups_page(&s, &visit, customer.id, form.echo(), errors).await
        }
    }
}

async fn group(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let g = s.store.ring_groups().get(by, RingGroupId(id)).await?;
    let n = numbers(&s, &visit, g.customer_id).await?;
    group_page(&s, &visit, &g, form_of(&g, &n), Vec::new())
}

fn group_page(
    s: &AppState,
    visit: &Visit,
    g: &RingGroup,
    form: Value,
    errors: Vec<String>,
) -> Result<Response, Failure> {
    let texts = visit.texts(s);
    let title = format!("{} {}", texts.get("ring_group"), g.number);
    visit.form_page(
        s,
        "ring_group",
        &title,
        json!({ "id": g.id, "customer_id": g.customer_id, "version": g.version, "form": form }),
        errors,
    )
}

async fn update_group(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<GroupForm>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let g = s.store.ring_groups().get(by, RingGroupId(id)).await?;
    let n = numbers(&s, &visit, g.customer_id).await?;
    let settings = match form.settings(&n, visit.texts(&s)) {
        Ok(settings) => settings,
        Err(errors) => return group_page(&s, &visit, &g, form.echo(), errors),
    };
    match s
        .store
        .ring_groups()
        .update(by, g.id, form.version, &settings)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/ring-groups/{}?done=saved", g.id)).into_response()),
        Err(e) => {
            let errors = field_messages(e)?;
            group_page(&s, &visit, &g, form.echo(), errors)
        }
    }
}

async fn delete_group(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<Confirm>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    form.required()?;
    let g = s.store.ring_groups().get(by, RingGroupId(id)).await?;
    s.store.ring_groups().delete(by, g.id).await?;
    Ok(Redirect::to(&format!(
        "/customers/{}/ring-groups?done=ring_group_deleted",
        g.customer_id
    ))
    .into_response())
}
