//! The customer admin's business hours: opening times written as lines
//! (`Mo-Fr 08:00-17:30`, English or German day names, or 1–7), holidays as
//! dated lines, and where calls go while open and while closed (an
//! extension or ring group number of the customer).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use pbx_store::business_hours::{is_open, BusinessHours, BusinessHoursSettings, Holiday, Interval};
use pbx_store::numbers::Destination;
use pbx_store::{BusinessHoursId, CustomerId};
use serde::Deserialize;
use serde_json::{json, Value};

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

/// Extension, ring group and room numbers of a customer, to and from
/// destinations; `*102` is extension 102's voicemail box (as phones of
/// other PBXs dial it).
struct Targets {
    extensions: Vec<(pbx_store::ExtensionId, String)>,
    groups: Vec<(pbx_store::RingGroupId, String)>,
    rooms: Vec<(pbx_store::ConferenceRoomId, String)>,
}

impl Targets {
    async fn of(s: &AppState, visit: &Visit, customer: CustomerId) -> Result<Targets, Failure> {
        let by = visit.principal()?;
        Ok(Targets {
            extensions: s
                .store
                .extensions()
                .list(by, customer)
                .await?
                .into_iter()
                .filter(|e| e.deleted_at.is_none())
                .map(|e| (e.id, e.number))
                .collect(),
            groups: s
                .store
                .ring_groups()
                .list(by, customer)
                .await?
                .into_iter()
                .map(|g| (g.id, g.number))
                .collect(),
            rooms: s
                .store
                .conference_rooms()
                .list(by, customer)
                .await?
                .into_iter()
                .map(|r| (r.id, r.number))
                .collect(),
        })
    }

    fn number(&self, d: Option<Destination>) -> String {
        match d {
            Some(Destination::Extension(e)) => self
                .extensions
                .iter()
                .find(|(id, _)| *id == e)
                .map(|(_, n)| n.clone()),
            Some(Destination::RingGroup(g)) => self
                .groups
                .iter()
                .find(|(id, _)| *id == g)
                .map(|(_, n)| n.clone()),
            Some(Destination::ConferenceRoom(r)) => self
                .rooms
                .iter()
                .find(|(id, _)| *id == r)
                .map(|(_, n)| n.clone()),
            Some(Destination::Voicemail(e)) => self
                .extensions
                .iter()
                .find(|(id, _)| *id == e)
                .map(|(_, n)| format!("*{n}")),
            _ => None,
        }
        .unwrap_or_default()
    }

    fn destination(&self, number: &str) -> Result<Option<Destination>, ()> {
        let number = number.trim();
        if number.is_empty() {
            return Ok(None);
        }
        if let Some((id, _)) = self.extensions.iter().find(|(_, n)| n == number) {
            return Ok(Some(Destination::Extension(*id)));
        }
        if let Some((id, _)) = self.groups.iter().find(|(_, n)| n == number) {
            return Ok(Some(Destination::RingGroup(*id)));
        }
        if let Some((id, _)) = self.rooms.iter().find(|(_, n)| n == number) {
            return Ok(Some(Destination::ConferenceRoom(*id)));
        }
        if let Some(boxed) = number.strip_prefix('*') {
            if let Some((id, _)) = self.extensions.iter().find(|(_, n)| n == boxed) {
                return Ok(Some(Destination::Voicemail(*id)));
            }
        }
        Err(())
    }
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
    fn of(r: &BusinessHours, t: &Targets) -> RuleForm {
        RuleForm {
            name: r.name.clone(),
            weekly: weekly_text(&r.weekly),
            holidays: holidays_text(&r.holidays),
            open_to: t.number(r.open_destination),
            closed_to: t.number(r.closed_destination),
            version: Some(r.version),
        }
    }

    fn echo(&self) -> Value {
        json!({ "name": self.name, "weekly": self.weekly, "holidays": self.holidays,
                "open_to": self.open_to, "closed_to": self.closed_to })
    }

    fn settings(&self, t: &Targets) -> Result<BusinessHoursSettings, Vec<String>> {
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
            .destination(&self.open_to)
            .map_err(|()| format!("open_to: {}", self.open_to));
        let closed = t
            .destination(&self.closed_to)
            .map_err(|()| format!("closed_to: {}", self.closed_to));
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
    let blank = RuleForm {
        weekly: "Mo-Fr 08:00-17:00".into(),
        ..RuleForm::default()
    };
    rules_page(&s, &visit, &customer, blank.echo(), Vec::new()).await
}

async fn rules_page(
    s: &AppState,
    visit: &Visit,
    customer: &pbx_store::customers::Customer,
    form: Value,
    errors: Vec<String>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let targets = Targets::of(s, visit, customer.id).await?;
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
                "open_to": targets.number(r.open_destination),
                "closed_to": targets.number(r.closed_destination),
                "open": is_open(&r.weekly, &r.holidays, tz, now),
            })
        })
        .collect();
    let texts = visit.texts(s);
    visit.form_page(
        s,
        "hours",
        texts.get("business_hours"),
        json!({ "customer_id": customer.id, "rules": list, "can_create": !by.read_only, "form": form }),
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
    let targets = Targets::of(&s, &visit, customer.id).await?;
    let settings = match form.settings(&targets) {
        Ok(settings) => settings,
        Err(errors) => return rules_page(&s, &visit, &customer, form.echo(), errors).await,
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
            rules_page(&s, &visit, &customer, form.echo(), errors).await
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
    let targets = Targets::of(&s, &visit, r.customer_id).await?;
    let form = RuleForm::of(&r, &targets);
    rule_page(&s, &visit, &r, form.echo(), Vec::new()).await
}

async fn rule_page(
    s: &AppState,
    visit: &Visit,
    r: &BusinessHours,
    form: Value,
    errors: Vec<String>,
) -> Result<Response, Failure> {
    let by = visit.principal()?;
    let customer = s.store.customers().get(by, r.customer_id).await?;
    let tz = visit.time_zone(&customer.time_zone);
    let open = is_open(&r.weekly, &r.holidays, tz, pbx_store::now_ms());
    let title = r.name.clone();
    visit.form_page(
        s,
        "hours_rule",
        &title,
        json!({ "id": r.id, "customer_id": r.customer_id, "version": r.version, "open": open, "form": form }),
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
    let targets = Targets::of(&s, &visit, r.customer_id).await?;
    let settings = match form.settings(&targets) {
        Ok(settings) => settings,
        Err(errors) => return rule_page(&s, &visit, &r, form.echo(), errors).await,
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
            rule_page(&s, &visit, &r, form.echo(), errors).await
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
