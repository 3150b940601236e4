//! The customer admin's business hours: opening times written as lines
//! (`Mo-Fr 08:00-17:30`, English or German day names, or 1–7), holidays as
//! dated lines, and where calls go while open and while closed (chosen
//! from the customer's extensions, ring groups, rooms, voicemail boxes and
//! menus).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use pbx_store::business_hours::{is_open, BusinessHours, BusinessHoursSettings, Holiday, Interval};
use pbx_store::BusinessHoursId;
use serde::Deserialize;
use serde_json::{json, Value};

use super::choices::{self, Choices, For};
use super::i18n::Texts;
use super::pages::{admin_customer, field_messages};
use super::visit::{Confirm, Failure, Form, Visit};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/customers/{id}/business-hours",
            get(rules).post(create_rule),
        )
        .route("/business-hours/{id}", get(rule).post(update_rule))
        .route("/business-hours/{id}/delete", post(delete_rule))
}

const DAYS_EN: [&str; 7] = ["mo", "tu", "we", "th", "fr", "sa", "su"];
const DAYS_DE: [&str; 7] = ["mo", "di", "mi", "do", "fr", "sa", "so"];

/// 1 (Monday) … 7 from `Mo`, `Di`, `Tue`, `Montag`, `3`…
fn day(text: &str) -> Option<u8> {
    let t = text.trim().to_lowercase();
    if let Ok(n) = t.parse::<u8>() {
        return (1..=7).contains(&n).then_some(n);
    }
    let short: String = t.chars().take(2).collect();
    DAYS_EN
        .iter()
        .position(|d| *d == short)
        .or_else(|| DAYS_DE.iter().position(|d| *d == short))
        .map(|i| i as u8 + 1)
}

/// `Mo-Fr 08:00-17:30`, `Sa,So 10:00-12:00` → intervals; None if unreadable.
fn read_line(line: &str) -> Option<Vec<Interval>> {
    let (days, hours) = line.trim().split_once(char::is_whitespace)?;
    let (open, close) = hours.trim().split_once('-')?;
    let mut out = Vec::new();
    for part in days.split(',') {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (day(a)?, day(b)?),
            None => (day(part)?, day(part)?),
        };
        if first > last {
            return None;
        }
        for d in first..=last {
            out.push(Interval {
                day: d,
                open: open.trim().to_owned(),
                close: close.trim().to_owned(),
            });
        }
    }
    Some(out)
}

/// Intervals written back as lines, one per interval.
fn weekly_text(weekly: &[Interval]) -> String {
    weekly
        .iter()
        .map(|i| {
            let name =
                DAYS_EN
                    .get(usize::from(i.day.saturating_sub(1)))
                    .map_or("?".to_owned(), |d| {
                        let mut c = d.chars();
                        c.next()
                            .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                            .unwrap_or_default()
                    });
            format!("{name} {}-{}", i.open, i.close)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn holidays_text(holidays: &[Holiday]) -> String {
    holidays
        .iter()
        .map(|h| format!("{} {}", h.date, h.name).trim().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Deserialize, Default)]
struct RuleForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    weekly: String,
    #[serde(default)]
    holidays: String,
    #[serde(default)]
    open_to: String,
    #[serde(default)]
    closed_to: String,
    version: Option<i64>,
}

impl RuleForm {
    fn of(r: &BusinessHours) -> RuleForm {
        RuleForm {
            name: r.name.clone(),
            weekly: weekly_text(&r.weekly),
            holidays: holidays_text(&r.holidays),
            open_to: r.open_destination.map(choices::value).unwrap_or_default(),
            closed_to: r.closed_destination.map(choices::value).unwrap_or_default(),
            version: Some(r.version),
        }
    }

    /// What the form showed, with a select of the customer's destinations
    /// for open and for closed.
    fn echo(&self, texts: &Texts, c: &Choices) -> Value {
        let none = texts.get("not_routed");
        let select = |text: &str| c.select(texts, c.read(text).ok().flatten(), none);
        json!({ "name": self.name, "weekly": self.weekly, "holidays": self.holidays,
                "open_to": select(&self.open_to), "closed_to": select(&self.closed_to) })
    }

    fn settings(&self, t: &Choices) -> Result<BusinessHoursSettings, Vec<String>> {
        let mut errors = Vec::new();
        let mut weekly = Vec::new();
        for line in self.weekly.lines().filter(|l| !l.trim().is_empty()) {
            match read_line(line) {
                Some(mut intervals) => weekly.append(&mut intervals),
                None => errors.push(format!(
                    "weekly: {}",
                    line.chars().take(40).collect::<String>()
                )),
            }
        }
        let holidays: Vec<Holiday> = self
            .holidays
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (date, name) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
                Holiday {
                    date: date.to_owned(),
                    name: name.trim().to_owned(),
                }
            })
            .collect();
        let open = t
            .read(&self.open_to)
            .map_err(|text| format!("open_to: {text}"));
        let closed = t
            .read(&self.closed_to)
            .map_err(|text| format!("closed_to: {text}"));
        let (open, closed) = match (open, closed) {
            (Ok(o), Ok(c)) => (o, c),
            (o, c) => {
                errors.extend(o.err());
                errors.extend(c.err());
                (None, None)
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(BusinessHoursSettings {
            name: self.name.trim().to_owned(),
            weekly,
            holidays,
            open_destination: open,
            closed_destination: closed,
        })
    }
}

async fn rules(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
) -> Result<Response, Failure> {
    let customer = admin_customer(&s, &visit, id).await?;
    let choices = Choices::of(&s, &visit, customer.id, For::Rule).await?;
    let blank = RuleForm {
        weekly: "Mo-Fr 08:00-17:00".into(),
        ..RuleForm::default()
    };
    rules_page(&s, &visit, &customer, &choices, &blank, Vec::new()).await
}

async fn rules_page(
    s: &AppState,
    visit: &Visit,
    customer: &pbx_store::customers::Customer,
    choices: &Choices,
    form: &RuleForm,
    errors: Vec<String>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let tz = visit.time_zone(&customer.time_zone);
    let now = pbx_store::now_ms();
    let list: Vec<Value> = s
        .store
        .business_hours()
        .list(by, customer.id)
        .await?
        .iter()
        .map(|r| {
            json!({
                "id": r.id, "name": r.name,
                "weekly": weekly_text(&r.weekly).replace('\n', ", "),
                "open_to": choices.label(r.open_destination),
                "closed_to": choices.label(r.closed_destination),
                "open": is_open(&r.weekly, &r.holidays, tz, now),
            })
        })
        .collect();
    let texts = visit.texts(s);
    visit.form_page(
        s,
        "hours",
        texts.get("business_hours"),
        json!({ "customer_id": customer.id, "rules": list, "can_create": !by.read_only,
                "form": form.echo(texts, choices) }),
        errors,
    )
}

async fn create_rule(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<RuleForm>,
) -> Result<Response, Failure> {
    let customer = admin_customer(&s, &visit, id).await?;
    let by = visit.principal()?;
    let choices = Choices::of(&s, &visit, customer.id, For::Rule).await?;
    let settings = match form.settings(&choices) {
        Ok(settings) => settings,
        Err(errors) => return rules_page(&s, &visit, &customer, &choices, &form, errors).await,
    };
    match s
        .store
        .business_hours()
        .create(by, customer.id, &settings)
        .await
    {
        Ok(r) => Ok(Redirect::to(&format!(
            "/business-hours/{}?done=business_hours_created",
            r.id
        ))
        .into_response()),
        Err(e) => {
            let errors = field_messages(e)?;
            rules_page(&s, &visit, &customer, &choices, &form, errors).await
        }
    }
}

async fn rule(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let r = s
        .store
        .business_hours()
        .get(by, BusinessHoursId(id))
        .await?;
    let choices = Choices::of(&s, &visit, r.customer_id, For::Rule).await?;
    rule_page(&s, &visit, &r, &choices, &RuleForm::of(&r), Vec::new()).await
}

async fn rule_page(
    s: &AppState,
    visit: &Visit,
    r: &BusinessHours,
    choices: &Choices,
    form: &RuleForm,
    errors: Vec<String>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let customer = s.store.customers().get(by, r.customer_id).await?;
    let tz = visit.time_zone(&customer.time_zone);
    let open = is_open(&r.weekly, &r.holidays, tz, pbx_store::now_ms());
    let title = r.name.clone();
    let texts = visit.texts(s);
    visit.form_page(
        s,
        "hours_rule",
        &title,
        json!({ "id": r.id, "customer_id": r.customer_id, "version": r.version, "open": open,
                "form": form.echo(texts, choices) }),
        errors,
    )
}

async fn update_rule(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<RuleForm>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let r = s
        .store
        .business_hours()
        .get(by, BusinessHoursId(id))
        .await?;
    let choices = Choices::of(&s, &visit, r.customer_id, For::Rule).await?;
    let settings = match form.settings(&choices) {
        Ok(settings) => settings,
        Err(errors) => return rule_page(&s, &visit, &r, &choices, &form, errors).await,
    };
    match s
        .store
        .business_hours()
        .update(by, r.id, form.version, &settings)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/business-hours/{}?done=saved", r.id)).into_response()),
        Err(e) => {
            let errors = field_messages(e)?;
            rule_page(&s, &visit, &r, &choices, &form, errors).await
        }
    }
}

async fn delete_rule(
    State(s): State<AppState>,
    visit: Visit,
    Path(id): Path<i64>,
    Form(form): Form<Confirm>,
) -> Result<Response, Failure> {
    form.required()?;
    let by = visit.principal()?;
    let r = s
        .store
        .business_hours()
        .get(by, BusinessHoursId(id))
        .await?;
    s.store.business_hours().delete(by, r.id).await?;
    Ok(Redirect::to(&format!(
        "/customers/{}/business-hours?done=business_hours_deleted",
        r.customer_id
    ))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_lines_read_in_english_german_and_numbers() {
        let mo_fr = read_line("Mo-Fr 08:00-17:30").expect("line");
        assert_eq!(mo_fr.len(), 5);
        assert_eq!((mo_fr[0].day, mo_fr[4].day), (1, 5));
        let weekend = read_line("Sa,So 10:00-12:00").expect("line");
        assert_eq!(
            weekend.iter().map(|i| i.day).collect::<Vec<_>>(),
            vec![6, 7]
        );
        assert_eq!(read_line("Di 09:00-24:00").expect("line")[0].day, 2);
        assert_eq!(read_line("3 09:00-10:00").expect("line")[0].day, 3);
        assert_eq!(read_line("Fr-Mo 09:00-10:00"), None);
        assert_eq!(read_line("Xx 09:00-10:00"), None);
        assert_eq!(read_line("Mo"), None);
        assert_eq!(weekly_text(&mo_fr[..1]), "Mo 08:00-17:30");
    }
}
