//! Price plans and their rate tables, call records, and statements with CSV
//! and JSON export.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json as JsonOut;
use pbx_store::call_records::{CallDirection, CallRecord, RecordFilter};
use pbx_store::price_plans::{PlanSettings, PricePlan};
use pbx_store::rating::RateRule;
use pbx_store::statements::{Period, Statement};
use pbx_store::{CustomerId, ExtensionId, FieldError, Millis, PlanId, ResellerId, Scope};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::etag::{OptionalIfMatch, Tagged};
use super::input::{Json, Path, Query};
use super::page::{self, paginate, Page, PageQuery};
use super::problem::{ApiResult, Problem};
use super::Created;
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_plans, create_plan))
        .routes(routes!(get_plan))
        .routes(routes!(get_rates, set_rates))
        .routes(routes!(list_records))
        .routes(routes!(customer_statement))
        .routes(routes!(reseller_statement))
}

#[utoipa::path(get, path = "/api/v1/price-plans", tag = "price-plans", params(PageQuery),
    responses((status = 200, body = Page<PricePlan>)))]
async fn list_plans(
    State(s): State<AppState>,
    Caller(by): Caller,
    Query(q): Query<PageQuery>,
) -> ApiResult<JsonOut<Page<PricePlan>>> {
    let all = s.store.price_plans().list(&by).await?;
    Ok(JsonOut(paginate(all, |p| p.id.0, &q)?))
}

/// A new plan: the operator's wholesale plan, or a reseller's retail plan.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewPlan {
    /// The reseller whose retail plan this is; absent for the operator's
    /// wholesale plans. A reseller's token may leave it out.
    pub reseller_id: Option<ResellerId>,
    #[serde(flatten)]
    pub settings: PlanSettings,
}

#[utoipa::path(post, path = "/api/v1/price-plans", tag = "price-plans", request_body = NewPlan,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried create safe")),
    responses((status = 201, body = PricePlan, headers(("Location" = String), ("ETag" = String)))))]
async fn create_plan(
    State(s): State<AppState>,
    Caller(by): Caller,
    Json(new): Json<NewPlan>,
) -> ApiResult<Created<PricePlan>> {
    let owner = new.reseller_id.or(match by.scope {
        Scope::Reseller { reseller } => Some(reseller),
        _ => None,
    });
    let p = s
        .store
        .price_plans()
        .create(&by, owner, &new.settings)
        .await?;
    Ok(Created(
        format!("/api/v1/price-plans/{}", p.id),
        p.version,
        p,
    ))
}

#[utoipa::path(get, path = "/api/v1/price-plans/{id}", tag = "price-plans",
    params(("id" = i64, Path)), responses((status = 200, body = PricePlan, headers(("ETag" = String)))))]
async fn get_plan(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<Tagged<PricePlan>> {
    let p = s.store.price_plans().get(&by, PlanId(id)).await?;
    Ok(Tagged(StatusCode::OK, p.version, p))
}

#[utoipa::path(get, path = "/api/v1/price-plans/{id}/rates", tag = "price-plans",
    params(("id" = i64, Path)), responses((status = 200, body = [RateRule])))]
async fn get_rates(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<JsonOut<Vec<RateRule>>> {
    Ok(JsonOut(s.store.price_plans().rates(&by, PlanId(id)).await?))
}

/// Replaces the plan's whole rate table. Calls already rated keep their
/// prices until re-rated. Send the plan's ETag in If-Match to be sure nobody
/// changed it meanwhile.
#[utoipa::path(put, path = "/api/v1/price-plans/{id}/rates", tag = "price-plans", request_body = [RateRule],
    params(("id" = i64, Path), ("If-Match" = Option<String>, Header, description = "The plan's ETag")),
    responses((status = 200, body = [RateRule])))]
async fn set_rates(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    if_match: OptionalIfMatch,
    Json(rates): Json<Vec<RateRule>>,
) -> ApiResult<JsonOut<Vec<RateRule>>> {
    let plans = s.store.price_plans();
    if if_match.0.is_some() {
        if_match.check(plans.get(&by, PlanId(id)).await?.version)?;
    }
    plans.set_rates(&by, PlanId(id), &rates).await?;
    Ok(JsonOut(plans.rates(&by, PlanId(id)).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordQuery {
    /// Calls set up at or after this time (UTC milliseconds).
    pub from: Option<Millis>,
    /// Calls set up before this time (UTC milliseconds).
    pub to: Option<Millis>,
    pub customer_id: Option<i64>,
    /// Calls from or to this extension.
    pub extension_id: Option<i64>,
    pub direction: Option<CallDirection>,
    /// Items per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,18}$")]
    pub cursor: Option<String>,
}

/// Call records, newest first. Customers see their retail prices only.
#[utoipa::path(get, path = "/api/v1/call-records", tag = "call-records", params(RecordQuery),
    responses((status = 200, body = Page<CallRecord>)))]
async fn list_records(
    State(s): State<AppState>,
    Caller(by): Caller,
    Query(q): Query<RecordQuery>,
) -> ApiResult<JsonOut<Page<CallRecord>>> {
    let paging = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = paging.limit()?;
    let filter = RecordFilter {
        from: q.from,
        to: q.to,
        customer: q.customer_id.map(CustomerId),
        extension: q.extension_id.map(ExtensionId),
        direction: q.direction,
        before_id: paging.after()?,
        limit: limit + 1,
    };
    let mut items = s.store.call_records().list(&by, &filter).await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|r| page::encode(r.id))
    } else {
        None
    };
    Ok(JsonOut(Page { items, next_cursor }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatementQuery {
    /// A calendar month in the reseller's time zone, `2026-11`.
    #[param(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$")]
    pub month: Option<String>,
    /// With `to`, an arbitrary range instead (UTC milliseconds, `to` excluded).
    pub from: Option<Millis>,
    pub to: Option<Millis>,
    /// `json` (default), `csv` (the statement's lines) or `calls.csv` (every call).
    #[param(inline)]
    pub format: Option<ExportFormat>,
}

impl StatementQuery {
    fn period(&self) -> Result<Period, Problem> {
        match (&self.month, self.from, self.to) {
            (Some(month), None, None) => parse_month(month).ok_or_else(|| {
                Problem::invalid(vec![FieldError::new(
                    "month",
                    "must be a month such as 2026-11",
                )])
            }),
            (None, Some(from), Some(to)) => {
                // Bounded so that one request cannot ask for centuries of proration.
                if from < 0 || to <= from || to - from > MAX_RANGE_MS {
                    return Err(Problem::invalid(vec![FieldError::new(
                        "to",
                        "the range must end after it begins, after 1970, and span at most 366 days",
                    )]));
                }
                Ok(Period::Range { from, to })
            }
            _ => Err(Problem::invalid(vec![FieldError::new(
                "month",
                "give either month, or both from and to",
            )])),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
pub enum ExportFormat {
    #[serde(rename = "json")]
    Json,
    #[serde(rename = "csv")]
    Csv,
    #[serde(rename = "calls.csv")]
    CallsCsv,
}

const MAX_RANGE_MS: i64 = 366 * 86_400_000;

fn parse_month(text: &str) -> Option<Period> {
    let (y, m) = text.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let (year, month) = (y.parse().ok()?, m.parse().ok()?);
    (1..=12)
        .contains(&month)
        .then_some(Period::Month { year, month })
}

/// A customer's statement at its retail prices, under its reseller's brand.
#[utoipa::path(get, path = "/api/v1/customers/{id}/statement", tag = "statements",
    params(("id" = i64, Path), StatementQuery),
    responses((status = 200, description = "JSON, or CSV with format=csv / calls.csv",
        content((Statement = "application/json"), (String = "text/csv")))))]
async fn customer_statement(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Query(q): Query<StatementQuery>,
) -> ApiResult<Response> {
    let period = q.period()?;
    let statement = s
        .store
        .statements()
        .customer(&by, CustomerId(id), period)
        .await?;
    export(&s, &by, statement, q.format.unwrap_or(ExportFormat::Json)).await
}

/// A reseller's statement at the operator's wholesale prices.
#[utoipa::path(get, path = "/api/v1/resellers/{id}/statement", tag = "statements",
    params(("id" = i64, Path), StatementQuery),
    responses((status = 200, description = "JSON, or CSV with format=csv / calls.csv",
        content((Statement = "application/json"), (String = "text/csv")))))]
async fn reseller_statement(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Query(q): Query<StatementQuery>,
) -> ApiResult<Response> {
    let period = q.period()?;
    let statement = s
        .store
        .statements()
        .reseller(&by, ResellerId(id), period)
        .await?;
    export(&s, &by, statement, q.format.unwrap_or(ExportFormat::Json)).await
}

async fn export(
    s: &AppState,
    by: &pbx_store::Principal,
    statement: Statement,
    format: ExportFormat,
) -> ApiResult<Response> {
    let name = match statement.customer_id {
        Some(c) => format!("statement-customer-{c}-{}", statement.period_label),
        None => format!(
            "statement-reseller-{}-{}",
            statement.reseller_id, statement.period_label
        ),
    };
    let csv = |body: String, file: String| {
        let mut response = body.into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
            headers.insert(header::CONTENT_DISPOSITION, v);
        }
        response
    };
    match format {
        ExportFormat::Json => Ok(JsonOut(statement.to_json()).into_response()),
        ExportFormat::Csv => Ok(csv(statement.to_csv(), format!("{name}.csv"))),
        ExportFormat::CallsCsv => {
            let records = s.store.statements().call_detail(by, &statement).await?;
            Ok(csv(
                statement.detail_csv(&records),
                format!("{name}-calls.csv"),
            ))
        }
    }
}
