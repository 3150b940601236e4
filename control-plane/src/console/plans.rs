//! Price plans in the console: a reseller admin's retail plans (what its
//! customers pay), the operator's wholesale plans (what resellers pay).
//! Rates are edited as lines of text; prices are decimal numbers in the
//! plan's currency, read exactly into millionths (never through a float).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use pbx_store::price_plans::{PlanSettings, PricePlan, Tier};
use pbx_store::rating::RateRule;
use pbx_store::{PlanId, ResellerId, Scope};
use serde::Deserialize;
use serde_json::{json, Value};

use super::pages::field_messages;
use super::visit::{Failure, Form, Visit};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/plans", get(plans).post(create_plan))
        .route("/plans/{id}", get(plan))
        .route("/plans/{id}/rates", post(set_rates))
}

/// Whose plans the signed-in admin manages: None for the operator
/// (wholesale), the reseller for its admin (retail); others get a 404.
fn owner(visit: &Visit) -> Result<Option<ResellerId>, Failure> {
    let session = visit.signed_in()?;
    match session.principal.scope {
        Scope::Operator => Ok(None),
        Scope::Reseller { reseller } => Ok(Some(reseller)),
        _ => Err(Failure::NotFound),
    }
}

/// The plans this admin manages (a reseller also sees the wholesale plan it
/// is billed on, but does not manage it).
fn manages(plan: &PricePlan, owner: Option<ResellerId>) -> bool {
    match owner {
        None => plan.tier == Tier::Wholesale,
        Some(r) => plan.tier == Tier::Retail && plan.reseller_id == Some(r),
    }
}

/// Millionths of a currency unit as a decimal: 19000 → "0.019", 2500000 → "2.50".
pub(super) fn decimal(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    let fraction = format!("{:06}", m % 1_000_000);
    let fraction = fraction.trim_end_matches('0');
    let fraction = if fraction.len() < 2 {
        format!("{fraction:0<2}")
    } else {
        fraction.to_owned()
    };
    format!("{sign}{}.{fraction}", m / 1_000_000)
}

/// A decimal amount (`.` or `,` before at most six decimals) in millionths.
pub(super) fn parse_decimal(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() {
        return Some(0);
    }
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = match digits.split_once(['.', ',']) {
        // "1,500" is 1.5 in German and 1500 in English: refused, not guessed.
        Some((_, f)) if digits.contains(',') && f.len() == 3 => return None,
        Some((w, f)) => (w, f),
        None => (digits, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty())
        || !all_digits(whole)
        || !all_digits(fraction)
        || fraction.len() > 6
        || whole.len() > 9
    {
        return None;
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let fraction: i64 = format!("{fraction:0<6}").parse().ok()?;
    let value = whole * 1_000_000 + fraction;
    Some(if negative { -value } else { value })
}

async fn plans(State(s): State<AppState>, visit: Visit) -> Result<Response, Failure> {
    let owner = owner(&visit)?;
    let blank = json!({ "currency": "EUR", "extension_month": "0.00", "number_month": "0.00" });
    plans_page(&s, &visit, owner, blank, Vec::new()).await
}

async fn plans_page(
    s: &AppState,
    visit: &Visit,
    owner: Option<ResellerId>,
    form: Value,
    errors: Vec<String>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let list: Vec<Value> = s
        .store
        .price_plans()
        .list(by)
        .await?
        .into_iter()
        .filter(|p| manages(p, owner))
        .map(|p| {
            json!({
                "id": p.id, "name": p.name, "currency": p.currency,
                "extension_month": decimal(p.extension_month_micros),
                "number_month": decimal(p.number_month_micros),
                "internal_calls_free": p.internal_calls_free,
            })
        })
        .collect();
    let texts = visit.texts(s);
    visit.form_page(
        s,
        "plans",
        texts.get("price_plans"),
        json!({ "plans": list, "can_create": !by.read_only, "form": form }),
        errors,
    )
}

#[derive(Deserialize)]
struct NewPlanForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    extension_month: String,
    #[serde(default)]
    number_month: String,
    internal_calls_free: Option<String>,
}

async fn create_plan(
    State(s): State<AppState>,
    visit: Visit,
    Form(form): Form<NewPlanForm>,
) -> Result<Response, Failure> {
    let owner = owner(&visit)?;
    let by = visit.principal()?;
    let echo = json!({
        "name": form.name, "currency": form.currency,
        "extension_month": form.extension_month, "number_month": form.number_month,
    });
    let (Some(extension), Some(number)) = (
        parse_decimal(&form.extension_month),
        parse_decimal(&form.number_month),
    ) else {
        let error = format!(
            "{}: {}",
            visit.texts(&s).get("extension_month"),
            form.extension_month
        );
        return plans_page(&s, &visit, owner, echo, vec![error]).await;
    };
    let settings = PlanSettings {
        name: form.name.trim().to_owned(),
        currency: form.currency.trim().to_ascii_uppercase(),
        extension_month_micros: extension,
        number_month_micros: number,
        internal_calls_free: form.internal_calls_free.is_some(),
    };
    match s.store.price_plans().create(by, owner, &settings).await {
        Ok(p) => Ok(Redirect::to(&format!("/plans/{}?done=plan_created", p.id)).into_response()),
        Err(e) => {
            let errors = field_messages(e)?;
            plans_page(&s, &visit, owner, echo, errors).await
        }
    }
}

async fn plan(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
) -> Result<Response, Failure> {
    plan_page(&s, &visit, PlanId(id), None, Vec::new()).await
}

fn rates_text(rates: &[RateRule]) -> String {
    rates
        .iter()
        .map(|r| {
            format!(
                "{}; {}; {}; {}; {}; {}; {}",
                r.prefix,
                r.description.replace([';', '\n', '\r'], " "),
                decimal(r.minute_micros),
                decimal(r.connection_micros),
                r.first_increment_s,
                r.next_increment_s,
                decimal(r.minimum_micros)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn plan_page(
    s: &AppState,
    visit: &Visit,
    id: PlanId,
    typed: Option<&str>,
    errors: Vec<String>,
) -> Result<Response, Failure> {
    let owner = owner(visit)?;
    let by = visit.principal()?;
    let plan = s.store.price_plans().get(by, id).await?;
    if !manages(&plan, owner) {
        return Err(Failure::NotFound);
    }
    let rates = s.store.price_plans().rates(by, plan.id).await?;
    let rows: Vec<Value> = rates
        .iter()
        .map(|r| {
            json!({
                "prefix": r.prefix, "description": r.description,
                "minute": decimal(r.minute_micros), "connection": decimal(r.connection_micros),
                "increments": format!("{}/{}", r.first_increment_s, r.next_increment_s),
                "minimum": decimal(r.minimum_micros),
            })
        })
        .collect();
    let text = typed.map_or_else(|| rates_text(&rates), str::to_owned);
    let title = plan.name.clone();
    visit.form_page(
        s,
        "plan",
        &title,
        json!({
            "extension_month": decimal(plan.extension_month_micros),
            "number_month": decimal(plan.number_month_micros),
            "plan": plan,
            "rates": rows,
            "rates_text": text,
            "can_edit": !by.read_only,
        }),
        errors,
    )
}

/// Reads the rate lines; the messages name the lines that are wrong.
fn parse_rates(text: &str) -> Result<Vec<RateRule>, Vec<String>> {
    let mut rates = Vec::new();
    let mut errors = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(';').map(str::trim).collect();
        // Every price of a rate is written out: an empty one is a mistake,
        // not a free destination.
        let money = |i: usize| {
            fields
                .get(i)
                .filter(|f| !f.is_empty())
                .and_then(|f| parse_decimal(f))
        };
        let seconds = |i: usize| fields.get(i).and_then(|f| f.parse::<i64>().ok());
        match (
            fields.len() == 7,
            money(2),
            money(3),
            seconds(4),
            seconds(5),
            money(6),
        ) {
            (true, Some(minute), Some(connection), Some(first), Some(next), Some(minimum)) => rates
                .push(RateRule {
                    prefix: fields[0].to_owned(),
                    description: fields[1].to_owned(),
                    minute_micros: minute,
                    connection_micros: connection,
                    first_increment_s: first,
                    next_increment_s: next,
                    minimum_micros: minimum,
                }),
            _ => errors.push(format!(
                "{}: {}",
                n + 1,
                line.chars().take(80).collect::<String>()
            )),
        }
    }
    if errors.is_empty() {
        Ok(rates)
    } else {
        Err(errors)
    }
}

#[derive(Deserialize)]
struct RatesForm {
    #[serde(default)]
    rates: String,
}

async fn set_rates(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<RatesForm>,
) -> Result<Response, Failure> {
    let owner = owner(&visit)?;
    let by = visit.principal()?;
    let plan = s.store.price_plans().get(by, PlanId(id)).await?;
    if !manages(&plan, owner) {
        return Err(Failure::NotFound);
    }
    let rates = match parse_rates(&form.rates) {
        Ok(rates) => rates,
        Err(errors) => return plan_page(&s, &visit, plan.id, Some(&form.rates), errors).await,
    };
    match s.store.price_plans().set_rates(by, plan.id, &rates).await {
        Ok(()) => Ok(Redirect::to(&format!("/plans/{}?done=saved", plan.id)).into_response()),
        Err(e) => {
            let errors = field_messages(e)?;
            plan_page(&s, &visit, plan.id, Some(&form.rates), errors).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_read_and_written_exactly() {
        assert_eq!(parse_decimal("0.019"), Some(19_000));
        assert_eq!(parse_decimal("1,5"), Some(1_500_000));
        assert_eq!(parse_decimal(" 12 "), Some(12_000_000));
        assert_eq!(parse_decimal(".25"), Some(250_000));
        assert_eq!(parse_decimal("0.0000001"), None, "finer than a millionth");
        assert_eq!(parse_decimal("1e3"), None);
        assert_eq!(parse_decimal("1.2.3"), None);
        assert_eq!(parse_decimal("9999999999"), None);
        assert_eq!(parse_decimal("-0.5"), Some(-500_000));
        assert_eq!(parse_decimal("1,500"), None, "ambiguous");
        assert_eq!(parse_decimal("1,50"), Some(1_500_000));
        assert_eq!(decimal(19_000), "0.019");
        assert_eq!(decimal(2_500_000), "2.50");
        assert_eq!(decimal(0), "0.00");
        assert_eq!(decimal(-1_234_567), "-1.234567");
        for micros in [0, 1, 19_000, 2_500_000, 123_456_789] {
            assert_eq!(parse_decimal(&decimal(micros)), Some(micros));
        }
    }

    #[test]
    fn rate_lines_are_read_or_named() {
        let rates =
            parse_rates("49; Germany; 0.019; 0; 60; 60; 0\n\n; Default; 0.05; 0.01; 1; 1; 0.02")
                .expect("valid");
        assert_eq!(rates.len(), 2);
        assert_eq!(rates[0].minute_micros, 19_000);
        assert_eq!(rates[1].prefix, "");
        assert_eq!(rates[1].minimum_micros, 20_000);
        let errors =
            parse_rates("49; Germany; 0.019\n1; US; x; 0; 1; 1; 0\n2; Free?; ; ; 60; 60; ")
                .expect_err("invalid");
        assert_eq!(errors.len(), 3);
        assert!(errors[0].starts_with("1:") && errors[1].starts_with("2:"));
    }
}
