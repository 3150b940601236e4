//! Statements: what a customer owes its reseller (retail prices) and what a
//! reseller owes the operator (wholesale prices) for a period, built from the
//! stored call records and the lifetimes of extensions and number
//! assignments, so the same inputs always give the same statement.
//!
//! A period is a calendar month in the reseller's time zone or any range of
//! instants. A call belongs to the period in which it was set up (its INVITE),
//! even when it ends after the period. Lines are rounded to the currency's
//! minor unit (see [`crate::rating`]), the net total is their sum, VAT is taken
//! at the reseller's rate on the net total.

use std::collections::HashMap;

use chrono_tz::Tz;
use serde::Serialize;
use sqlx::Row;

use crate::call_records::{CallDirection, CallRecord, RecordFilter};
use crate::principal::Level;
use crate::rating::{self, RateRule};
use crate::usage;
use crate::{CustomerId, Millis, PlanId, Principal, ResellerId, Result, Store, StoreError};

/// The time a statement covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// A calendar month in the reseller's time zone.
    Month { year: i32, month: u32 },
    /// [from, to) in UTC milliseconds.
    Range { from: Millis, to: Millis },
}

/// Who is billed: a customer by its reseller, or a reseller by the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum StatementKind {
    Customer,
    Reseller,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    Seats,
    Numbers,
    Calls,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Line {
    pub kind: LineKind,
    pub description: String,
    /// Extension-days, number-days, or calls.
    pub quantity: i64,
    /// Talk time of the calls on the line (0 for seats and numbers).
    pub billable_ms: i64,
    /// Calls on the line that had no rate in the plan (priced at 0: see the note).
    pub unrated: i64,
    /// Rounded to the currency's minor unit, in micro-units.
    pub amount_micros: i64,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Party {
    pub name: String,
    /// The product name the issuer sells under (the reseller's brand on a
    /// customer's statement).
    pub product_name: Option<String>,
    pub support_email: Option<String>,
    pub support_phone: Option<String>,
    pub support_url: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Statement {
    pub kind: StatementKind,
    pub issuer: Party,
    pub billed_to: Party,
    pub reseller_id: ResellerId,
    pub customer_id: Option<CustomerId>,
    pub time_zone: String,
    pub currency: String,
    pub from: Millis,
    pub to: Millis,
    /// `2026-11` for a month, else `2026-11-03..2026-11-17` (local days).
    pub period_label: String,
    pub plan_id: Option<PlanId>,
    pub lines: Vec<Line>,
    pub net_micros: i64,
    pub vat_rate_bp: i64,
    pub vat_micros: i64,
    pub gross_micros: i64,
}

pub struct Statements<'s>(pub(crate) &'s Store);

struct Context {
    reseller: crate::resellers::Reseller,
    tz: Tz,
    from: Millis,
    to: Millis,
    label: String,
}

fn resolve(reseller: crate::resellers::Reseller, period: Period) -> Result<Context> {
    let tz: Tz = reseller
        .time_zone
        .parse()
        .map_err(|_| StoreError::invalid("time_zone", "unknown time zone"))?;
    let (from, to, label) = match period {
        Period::Month { year, month } => {
            let (from, to) = rating::month_bounds(year, month, tz)
                .ok_or_else(|| StoreError::invalid("period", "no such month"))?;
            (from, to, format!("{year:04}-{month:02}"))
        }
        Period::Range { from, to } => {
            if to <= from {
                return Err(StoreError::invalid("period", "must end after it begins"));
            }
            let last = rating::local_day(to - 1, tz);
            (
                from,
                to,
                format!("{}..{}", rating::local_day(from, tz), last),
            )
        }
    };
    Ok(Context {
        reseller,
        tz,
        from,
        to,
        label,
    })
}

impl Statements<'_> {
    /// A customer's statement at its retail prices, issued under its
    /// reseller's brand. Readable by the customer's admins, its reseller and
    /// the operator.
    pub async fn customer(
        &self,
        by: &Principal,
        customer: CustomerId,
        period: Period,
    ) -> Result<Statement> {
        by.may_read(Level::Customer)?;
        let customer = self.0.customers().get(by, customer).await?;
        let reseller = self
            .0
            .resellers()
            .get(&Principal::system(), customer.reseller_id)
            .await?;
        let ctx = resolve(reseller, period)?;
        let (plan, rates) = self.plan_with_rates(customer.retail_plan_id).await?;
        let mut lines = Vec::new();
        let (ext_month, num_month) = plan
            .as_ref()
            .map(|p| (p.extension_month_micros, p.number_month_micros))
            .unwrap_or((0, 0));
        lines.extend(self.seats(&ctx, Some(customer.id), ext_month, None).await?);
        lines.extend(
            self.numbers(&ctx, Some(customer.id), num_month, None)
                .await?,
        );
        lines.extend(
            self.calls(&ctx, Some(customer.id), Tier::Retail, &rates)
                .await?,
        );
        let brand = &ctx.reseller.brand;
        let issuer = Party {
            name: ctx.reseller.name.clone(),
            product_name: Some(brand.product_name.clone()),
            support_email: brand.support_email.clone(),
            support_phone: brand.support_phone.clone(),
            support_url: brand.support_url.clone(),
        };
        let billed_to = Party {
            name: customer.name.clone(),
            product_name: None,
            support_email: None,
            support_phone: None,
            support_url: None,
        };
        Ok(finish(
            StatementKind::Customer,
            ctx,
            issuer,
            billed_to,
            Some(customer.id),
            plan.map(|p| p.id),
            lines,
        ))
    }

    /// A reseller's statement at wholesale prices over all its customers, for
    /// the operator to invoice. Readable by the reseller and the operator.
    pub async fn reseller(
        &self,
        by: &Principal,
        reseller: ResellerId,
        period: Period,
    ) -> Result<Statement> {
        by.may_read(Level::Reseller)?;
        let reseller = self.0.resellers().get(by, reseller).await?;
        let operator = self
            .0
            .operator()
            .get(&Principal::system())
            .await?
            .map(|o| o.name)
            .unwrap_or_default();
        let (plan, rates) = self.plan_with_rates(reseller.wholesale_plan_id).await?;
        let ctx = resolve(reseller, period)?;
        let (ext_month, num_month) = plan
            .as_ref()
            .map(|p| (p.extension_month_micros, p.number_month_micros))
            .unwrap_or((0, 0));
        let mut lines = Vec::new();
        let customers = self.customer_names(ctx.reseller.id).await?;
        lines.extend(self.seats(&ctx, None, ext_month, Some(&customers)).await?);
        lines.extend(
            self.numbers(&ctx, None, num_month, Some(&customers))
                .await?,
        );
        lines.extend(self.calls(&ctx, None, Tier::Wholesale, &rates).await?);
        let issuer = Party {
            name: operator,
            product_name: None,
            support_email: None,
            support_phone: None,
            support_url: None,
        };
        let billed_to = Party {
            name: ctx.reseller.name.clone(),
            product_name: Some(ctx.reseller.brand.product_name.clone()),
            support_email: None,
            support_phone: None,
            support_url: None,
        };
        Ok(finish(
            StatementKind::Reseller,
            ctx,
            issuer,
            billed_to,
            None,
            plan.map(|p| p.id),
            lines,
        ))
    }

    /// The plan a statement prices by, with its rates (none when no plan is set).
    async fn plan_with_rates(
        &self,
        plan: Option<PlanId>,
    ) -> Result<(Option<crate::price_plans::PricePlan>, Vec<RateRule>)> {
        let Some(id) = plan else {
            return Ok((None, Vec::new()));
        };
        let system = Principal::system();
        let plan = self.0.price_plans().get(&system, id).await?;
        let rates = self.0.price_plans().rates(&system, id).await?;
        Ok((Some(plan), rates))
    }

    async fn customer_names(&self, reseller: ResellerId) -> Result<HashMap<i64, String>> {
        let rows = sqlx::query("SELECT id, name FROM customers WHERE reseller_id = $1")
            .bind(reseller.0)
            .fetch_all(self.0.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("name")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Extension-days: one line per customer (or one for the customer).
    /// A closed customer's extensions stop counting when it closed.
    async fn seats(
        &self,
        ctx: &Context,
        customer: Option<CustomerId>,
        month_micros: i64,
        names: Option<&HashMap<i64, String>>,
    ) -> Result<Vec<Line>> {
        let rows = sqlx::query(
            "SELECT e.customer_id, e.created_at, e.deleted_at, c.closed_at FROM extensions e \
             JOIN customers c ON c.id = e.customer_id \
             WHERE c.reseller_id = $1 AND ($2 IS NULL OR e.customer_id = $2) \
             AND e.created_at < $3 AND (e.deleted_at IS NULL OR e.deleted_at > $4) \
             ORDER BY e.customer_id",
        )
        .bind(ctx.reseller.id.0)
        .bind(customer.map(|c| c.0))
        .bind(ctx.to)
        .bind(ctx.from)
        .fetch_all(self.0.pool())
        .await?;
        let spans = rows
            .iter()
            .map(|r| {
                let deleted: Option<Millis> = r.try_get("deleted_at")?;
                let closed: Option<Millis> = r.try_get("closed_at")?;
                let end = match (deleted, closed) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                Ok((r.try_get("customer_id")?, r.try_get("created_at")?, end))
            })
            .collect::<Result<Vec<(i64, Millis, Option<Millis>)>, sqlx::Error>>()?;
        Ok(self.prorated(
            ctx,
            &spans,
            month_micros,
            names,
            LineKind::Seats,
            "Extensions",
        ))
    }

    /// Number-days, from the history of number assignments.
    async fn numbers(
        &self,
        ctx: &Context,
        customer: Option<CustomerId>,
        month_micros: i64,
        names: Option<&HashMap<i64, String>>,
    ) -> Result<Vec<Line>> {
        let rows = sqlx::query(
            "SELECT customer_id, assigned_at, released_at FROM number_assignments \
             WHERE reseller_id = $1 AND ($2 IS NULL OR customer_id = $2) \
             AND assigned_at < $3 AND (released_at IS NULL OR released_at > $4) \
             ORDER BY customer_id",
        )
        .bind(ctx.reseller.id.0)
        .bind(customer.map(|c| c.0))
        .bind(ctx.to)
        .bind(ctx.from)
        .fetch_all(self.0.pool())
        .await?;
        let spans = rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("customer_id")?,
                    r.try_get("assigned_at")?,
                    r.try_get("released_at")?,
                ))
            })
            .collect::<Result<Vec<(i64, Millis, Option<Millis>)>, sqlx::Error>>()?;
        Ok(self.prorated(
            ctx,
            &spans,
            month_micros,
            names,
            LineKind::Numbers,
            "Phone numbers",
        ))
    }

    /// Sums prorated lifetimes into one line per customer.
    fn prorated(
        &self,
        ctx: &Context,
        spans: &[(i64, Millis, Option<Millis>)],
        month_micros: i64,
        names: Option<&HashMap<i64, String>>,
        kind: LineKind,
        what: &str,
    ) -> Vec<Line> {
        let mut per_customer: Vec<(i64, i64, i64)> = Vec::new();
        for &(customer, start, end) in spans {
            let (days, micros) =
                rating::prorate(start, end, ctx.from, ctx.to, month_micros, ctx.tz);
            if days == 0 {
                continue;
            }
            match per_customer.last_mut() {
                Some(last) if last.0 == customer => {
                    last.1 += days;
                    last.2 += micros;
                }
                _ => per_customer.push((customer, days, micros)),
            }
        }
        per_customer
            .into_iter()
            .map(|(customer, days, micros)| Line {
                kind,
                description: match names {
                    Some(names) => format!(
                        "{what}: {}",
                        names.get(&customer).map(String::as_str).unwrap_or("?")
                    ),
                    None => what.to_owned(),
                },
                quantity: days,
                billable_ms: 0,
                unrated: 0,
                amount_micros: rating::round_to_minor(micros, &ctx.reseller.currency),
            })
            .collect()
    }

    /// Calls grouped by direction and the rate that priced them.
    async fn calls(
        &self,
        ctx: &Context,
        customer: Option<CustomerId>,
        tier: Tier,
        rates: &[RateRule],
    ) -> Result<Vec<Line>> {
        let (scope_col, scope_id) = match customer {
            Some(c) => ("customer_id", c.0),
            None => ("reseller_id", ctx.reseller.id.0),
        };
        let t = tier.column_prefix();
        // Whole quarter hours (every month): the usage sums. Otherwise the
        // records themselves, through their covering index. PostgreSQL sums
        // BIGINTs as NUMERIC, which the Any driver cannot read: cast back.
        let sql = if usage::aligned(ctx.from, ctx.to) {
            format!(
                "SELECT direction, {t}_prefix AS prefix, CAST(SUM(calls) AS BIGINT) AS calls, \
                 CAST(SUM(billable_ms) AS BIGINT) AS billable_ms, \
                 CAST(SUM({t}_micros) AS BIGINT) AS micros, \
                 CAST(SUM({t}_unrated) AS BIGINT) AS unrated \
                 FROM call_usage WHERE {scope_col} = $1 AND bucket >= $2 AND bucket < $3 \
                 GROUP BY direction, {t}_prefix"
            )
        } else {
            format!(
                "SELECT direction, COALESCE({t}_prefix, '{none}') AS prefix, COUNT(*) AS calls, \
                 CAST(SUM(billable_ms) AS BIGINT) AS billable_ms, \
                 CAST(SUM(COALESCE({t}_micros, 0)) AS BIGINT) AS micros, \
                 CAST(SUM(CASE WHEN {t}_micros IS NULL THEN 1 ELSE 0 END) AS BIGINT) AS unrated \
                 FROM call_records WHERE {scope_col} = $1 AND invite_at >= $2 AND invite_at < $3 \
                 AND billable_ms > 0 GROUP BY direction, {t}_prefix",
                none = usage::prefix_key(None)
            )
        };
        let rows = sqlx::query(&sql)
            .bind(scope_id)
            .bind(ctx.from)
            .bind(ctx.to)
            .fetch_all(self.0.pool())
            .await?;
        let by_prefix: HashMap<&str, &RateRule> =
            rates.iter().map(|r| (r.prefix.as_str(), r)).collect();
        let mut lines = rows
            .iter()
            .map(|r| {
                let direction: String = r.try_get("direction")?;
                let prefix = usage::prefix_from_key(r.try_get("prefix")?);
                let order = (direction.clone(), prefix.clone());
                let direction_word = CallDirection::parse(&direction)
                    .map(|d| match d {
                        CallDirection::Internal => "Internal calls",
                        CallDirection::Outbound => "Calls",
                        CallDirection::Inbound => "Incoming calls",
                    })
                    .unwrap_or("Calls");
                let description = match prefix.as_deref() {
                    Some(p) => {
                        let name = by_prefix
                            .get(p)
                            .map(|r| r.description.as_str())
                            .filter(|d| !d.is_empty());
                        match (name, p.is_empty()) {
                            (Some(name), _) => format!("{direction_word} to {name} (+{p})"),
                            (None, true) => format!("{direction_word} (default rate)"),
                            (None, false) => format!("{direction_word} to +{p}"),
                        }
                    }
                    None => direction_word.to_owned(),
                };
                let line = Line {
                    kind: LineKind::Calls,
                    description,
                    quantity: r.try_get("calls")?,
                    billable_ms: r.try_get("billable_ms")?,
                    unrated: r.try_get("unrated")?,
                    amount_micros: rating::round_to_minor(
                        r.try_get("micros")?,
                        &ctx.reseller.currency,
                    ),
                };
                Ok((order, line))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        // The same order on both engines (they sort NULL differently).
        lines.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(lines.into_iter().map(|(_, line)| line).collect())
    }

    /// Every call of a statement's period, for the per-call CSV.
    pub async fn call_detail(
        &self,
        by: &Principal,
        statement: &Statement,
    ) -> Result<Vec<CallRecord>> {
        let mut out = Vec::new();
        let mut before = None;
        loop {
            let page = self
                .0
                .call_records()
                .list(
                    by,
                    &RecordFilter {
                        from: Some(statement.from),
                        to: Some(statement.to),
                        customer: statement.customer_id,
                        before_id: before,
                        limit: 1000,
                        ..RecordFilter::default()
                    },
                )
                .await?;
            let Some(last) = page.last() else { break };
            before = Some(last.id);
            let full = page.len() == 1000;
            out.extend(page);
            if !full {
                break;
            }
        }
        // The reseller statement covers all of one reseller's customers only.
        out.retain(|r| r.call.reseller_id == statement.reseller_id);
        out.reverse();
        Ok(out)
    }
}

#[derive(Debug, Clone, Copy)]
enum Tier {
    Wholesale,
    Retail,
}

impl Tier {
    fn column_prefix(self) -> &'static str {
        match self {
            Tier::Wholesale => "wholesale",
            Tier::Retail => "retail",
        }
    }
}

fn finish(
    kind: StatementKind,
    ctx: Context,
    issuer: Party,
    billed_to: Party,
    customer: Option<CustomerId>,
    plan_id: Option<PlanId>,
    lines: Vec<Line>,
) -> Statement {
    let currency = ctx.reseller.currency.clone();
    let net: i64 = lines.iter().map(|l| l.amount_micros).sum();
    let vat = rating::vat(net, ctx.reseller.vat_rate_bp, &currency);
    Statement {
        kind,
        issuer,
        billed_to,
        reseller_id: ctx.reseller.id,
        customer_id: customer,
        time_zone: ctx.reseller.time_zone.clone(),
        currency,
        from: ctx.from,
        to: ctx.to,
        period_label: ctx.label,
        plan_id,
        lines,
        net_micros: net,
        vat_rate_bp: ctx.reseller.vat_rate_bp,
        vat_micros: vat,
        gross_micros: net + vat,
    }
}

/// One CSV field, quoted when it must be, with spreadsheet formula
/// characters defused (a caller name like `=HYPERLINK(…)`).
fn csv_field(value: &str) -> String {
    let mut chars = value.chars();
    let risky = match chars.next() {
        Some('=' | '@' | '\t' | '\r') => true,
        // A phone number (+4930…) or an amount (-0.05) is data, not a formula.
        Some('+' | '-') => !chars.all(|c| c.is_ascii_digit() || c == '.'),
        _ => false,
    };
    let value = if risky {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

fn csv_row(fields: &[String]) -> String {
    let mut row = fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",");
    row.push_str("\r\n");
    row
}

impl Statement {
    /// The statement as CSV: one row per line, then net, VAT and gross.
    pub fn to_csv(&self) -> String {
        let amount = |m: i64| rating::format_amount(m, &self.currency);
        let mut out = csv_row(&[
            "kind".into(),
            "description".into(),
            "quantity".into(),
            "billable_seconds".into(),
            "amount".into(),
            "currency".into(),
        ]);
        for l in &self.lines {
            let kind = match l.kind {
                LineKind::Seats => "seats",
                LineKind::Numbers => "numbers",
                LineKind::Calls => "calls",
            };
            out.push_str(&csv_row(&[
                kind.into(),
                l.description.clone(),
                l.quantity.to_string(),
                ((l.billable_ms + 999) / 1000).to_string(),
                amount(l.amount_micros),
                self.currency.clone(),
            ]));
        }
        for (label, value) in [
            ("net", self.net_micros),
            ("vat", self.vat_micros),
            ("gross", self.gross_micros),
        ] {
            out.push_str(&csv_row(&[
                label.into(),
                String::new(),
                String::new(),
                String::new(),
                amount(value),
                self.currency.clone(),
            ]));
        }
        out
    }

    /// The statement as JSON, with amounts as decimal strings beside the
    /// exact micro-units.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(obj) = value.as_object_mut() {
            for (key, micros) in [
                ("net", self.net_micros),
                ("vat", self.vat_micros),
                ("gross", self.gross_micros),
            ] {
                obj.insert(
                    key.to_owned(),
                    serde_json::Value::String(rating::format_amount(micros, &self.currency)),
                );
            }
        }
        value
    }

    /// Per-call detail as CSV. A customer's copy carries retail prices only;
    /// the reseller's carries wholesale and retail side by side (its margin).
    pub fn detail_csv(&self, records: &[CallRecord]) -> String {
        let reseller_copy = self.kind == StatementKind::Reseller;
        let mut header: Vec<String> = [
            "call_id",
            "customer_id",
            "direction",
            "caller",
            "callee",
            "destination",
            "invite_at",
            "answer_at",
            "end_at",
            "billable_ms",
            "disposition",
            "sip_status",
            "hangup_side",
            "recovered",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        if reseller_copy {
            header.push("wholesale".into());
        }
        header.push("retail".into());
        let mut out = csv_row(&header);
        let time = |ms: Millis| {
            chrono::DateTime::from_timestamp_millis(ms)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
                .unwrap_or_default()
        };
        let price = |p: &Option<crate::call_records::Price>| {
            p.as_ref()
                .and_then(|p| p.micros)
                .map(rating::format_micros)
                .unwrap_or_default()
        };
        for r in records {
            let c = &r.call;
            let mut row = vec![
                c.call_id.clone(),
                c.customer_id.to_string(),
                c.direction.as_str().to_owned(),
                c.caller.clone(),
                c.callee.clone(),
                c.destination.clone().unwrap_or_default(),
                time(c.invite_at),
                c.answer_at.map(time).unwrap_or_default(),
                time(c.end_at),
                r.billable_ms.to_string(),
                c.disposition.as_str().to_owned(),
                c.sip_status.map(|s| s.to_string()).unwrap_or_default(),
                c.hangup_side
                    .map(|h| h.as_str().to_owned())
                    .unwrap_or_default(),
                u8::from(c.recovered).to_string(),
            ];
            if reseller_copy {
                row.push(price(&r.wholesale));
            }
            row.push(price(&r.retail));
            out.push_str(&csv_row(&row));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("+4930123456"), "+4930123456");
        assert_eq!(csv_field("-0.05"), "-0.05");
        assert_eq!(csv_field("+1+cmd|' /C calc'!A0"), "'+1+cmd|' /C calc'!A0");
    }
}
