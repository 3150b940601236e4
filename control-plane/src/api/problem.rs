//! Errors as `application/problem+json` (RFC 9457), the only error format the
//! API speaks. Internal errors are logged with an id and answered with that id,
//! never with their text.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pbx_store::{FieldError, StoreError};
use serde::Serialize;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// A problem detail. `type` is a stable URN per kind of problem, so that
/// clients can branch on it without parsing `title`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Field-level validation messages.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
    #[serde(skip)]
    retry_after_s: Option<u64>,
    #[serde(skip)]
    www_authenticate: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProblemField {
    /// The field, as a JSON path (`brand.primary_color`), or a header name.
    pub field: String,
    pub message: String,
}

impl From<FieldError> for ProblemField {
    fn from(e: FieldError) -> Self {
        ProblemField {
            field: e.field,
            message: e.message,
        }
    }
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, title: &str) -> Problem {
        Problem {
            kind: format!("urn:pbx:problem:{kind}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: None,
            errors: Vec::new(),
            retry_after_s: None,
            www_authenticate: false,
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Problem {
        self.detail = Some(detail.into());
        self
    }

    pub fn field(mut self, field: impl Into<String>, message: impl Into<String>) -> Problem {
        self.errors.push(ProblemField {
            field: field.into(),
            message: message.into(),
        });
        self
    }

    pub fn not_found() -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found")
    }

    pub fn unauthorized() -> Problem {
        let mut p = Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "A valid API token is required",
        )
        .detail("send Authorization: Bearer <token>");
        p.www_authenticate = true;
        p
    }

    pub fn forbidden(detail: &str) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", "Not permitted").detail(detail)
    }

    pub fn invalid(errors: Vec<FieldError>) -> Problem {
        let mut p = Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "The request has invalid fields",
        );
        p.errors = errors.into_iter().map(ProblemField::from).collect();
        p
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "bad-request", "Malformed request").detail(detail)
    }

    pub fn too_many_requests(retry_after_s: u64) -> Problem {
        let mut p = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
        )
        .detail(format!(
            "this credential's request rate is limited; retry in {retry_after_s} s"
        ));
        p.retry_after_s = Some(retry_after_s);
        p
    }

    /// An error the caller cannot act on: logged here with an id the answer carries.
    pub fn internal(error: &dyn std::fmt::Display) -> Problem {
        let id = pbx_store::secrets::random_token(8);
        tracing::error!(error = %error, error_id = %id, "API request failed");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
        )
        .detail(format!("the error was logged as {id}"))
    }

    pub fn unavailable(error: &dyn std::fmt::Display) -> Problem {
        tracing::warn!(error = %error, "API request: database unavailable");
        let mut p = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Temporarily unavailable",
        )
        .detail("the database cannot be reached; retry shortly");
        p.retry_after_s = Some(5);
        p
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Problem {
        match e {
            StoreError::NotFound => Problem::not_found(),
            StoreError::Forbidden(why) => Problem::forbidden(why),
            StoreError::Invalid(errors) => Problem::invalid(errors),
            StoreError::Conflict(why) => {
                Problem::new(StatusCode::CONFLICT, "conflict", "Conflict").detail(why)
            }
            StoreError::InUse(why) => {
                Problem::new(StatusCode::CONFLICT, "in-use", "Still in use").detail(why)
            }
            StoreError::VersionMismatch => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "version-mismatch",
                "Changed by someone else",
            )
            .detail("fetch the object again and repeat the change with its new ETag in If-Match"),
            e if e.is_unavailable() => Problem::unavailable(&e),
            e => Problem::internal(&e),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(s) = self.retry_after_s {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.www_authenticate {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"api\""),
            );
        }
        response
    }
}

/// What API handlers return.
pub type ApiResult<T> = Result<T, Problem>;
