//! Optimistic concurrency: every object carries a version; its ETag is that
//! version, and a change must name the version it was based on in
//! `If-Match`, so that two administrators cannot silently overwrite each
//! other. A change without `If-Match` is refused (428).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::problem::Problem;

pub fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// A JSON object answered with its ETag.
pub struct Tagged<T>(pub StatusCode, pub i64, pub T);

impl<T: Serialize> IntoResponse for Tagged<T> {
    fn into_response(self) -> Response {
        let Tagged(status, version, body) = self;
        let mut response = (status, axum::Json(body)).into_response();
        response.headers_mut().insert(header::ETAG, etag(version));
        response
    }
}

/// The version named by `If-Match`; `*` means "whatever is stored".
#[derive(Debug, Clone, Copy)]
pub struct IfMatch(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let Some(value) = parts.headers.get(header::IF_MATCH) else {
            return Err(Problem::new(
                StatusCode::PRECONDITION_REQUIRED,
                "if-match-required",
                "If-Match is required",
            )
            .detail("send the ETag of the object you changed in If-Match (or * to overwrite)"));
        };
        parse(value.to_str().unwrap_or(""))
            .map(IfMatch)
            .ok_or_else(|| {
                Problem::bad_request("If-Match must be an ETag such as \"3\", or *")
                    .field("If-Match", "must be an ETag such as \"3\", or *")
            })
    }
}

/// `If-Match` where it is optional (actions on an object: status changes,
/// rate tables, routing): when sent, the object must still have that version.
#[derive(Debug, Clone, Copy)]
pub struct OptionalIfMatch(pub Option<i64>);

impl OptionalIfMatch {
    /// 412 unless `current` is the version the caller named (or none was named).
    pub fn check(self, current: i64) -> Result<(), Problem> {
        match self.0 {
            Some(v) if v != current => Err(pbx_store::StoreError::VersionMismatch.into()),
            _ => Ok(()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for OptionalIfMatch {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        if parts.headers.get(header::IF_MATCH).is_none() {
            return Ok(OptionalIfMatch(None));
        }
        IfMatch::from_request_parts(parts, state)
            .await
            .map(|IfMatch(v)| OptionalIfMatch(v))
    }
}

fn parse(value: &str) -> Option<Option<i64>> {
    let value = value.trim();
    if value == "*" {
        return Some(None);
    }
    let inner = value.strip_prefix("W/").unwrap_or(value);
    let digits = inner.strip_prefix('"')?.strip_suffix('"')?;
    digits.parse::<i64>().ok().filter(|v| *v >= 0).map(Some)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_strong_weak_and_star() {
        assert_eq!(super::parse("\"3\""), Some(Some(3)));
        assert_eq!(super::parse("W/\"12\""), Some(Some(12)));
        assert_eq!(super::parse("*"), Some(None));
        assert_eq!(super::parse("3"), None);
        assert_eq!(super::parse("\"-1\""), None);
        assert_eq!(super::parse("\"x\""), None);
    }
}
