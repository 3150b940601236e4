//! Request input: JSON bodies, path ids and query strings, read through our
//! own extractors so that every way they can be wrong is answered as a
//! problem naming the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::problem::Problem;

/// Largest JSON body accepted.
pub const MAX_BODY: usize = 1 << 20;

/// A JSON request body of type `T`.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                let m = m.trim();
                m.eq_ignore_ascii_case("application/json")
                    || (m.starts_with("application/") && m.ends_with("+json"))
            });
        if !is_json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "The body must be JSON",
            )
            .detail("send Content-Type: application/json"));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|_| {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "The body is too large",
            )
            .detail(format!("at most {MAX_BODY} bytes"))
        })?;
        parse(&bytes).map(Json)
    }
}

/// Largest audio upload accepted (a five-minute WAV at 16-bit 8 kHz is
/// 4.8 MB; at CD quality about 50 MB, so such files are to be made smaller
/// first).
pub const MAX_AUDIO: usize = 16 << 20;

/// An uploaded WAV file: the body of a request with `Content-Type:
/// audio/wav` (or its older names), at most [`MAX_AUDIO`] bytes. What it
/// holds is checked when it is converted.
pub struct Wav(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Wav {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let is_wav = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                ["audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"]
                    .iter()
                    .any(|t| m.trim().eq_ignore_ascii_case(t))
            });
        if !is_wav {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "The body must be a WAV file",
            )
            .detail("send Content-Type: audio/wav"));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|_| {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "The audio file is too large",
            )
            .detail(format!("at most {MAX_AUDIO} bytes"))
        })?;
        Ok(Wav(bytes))
    }
}

/// A path parameter (an id).
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| Problem::bad_request(e.body_text()))
    }
}

/// A query string of type `T`.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| {
                let field = e.path().to_string();
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "bad-query",
                    "The query string has invalid parameters",
                )
                .field(field, e.into_inner().to_string())
            })
    }
}

/// Parses `bytes` as a `T`; a syntax error is a 400, a value of the wrong
/// shape a 422 naming the field.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() || inner.is_io() {
            Problem::bad_request(format!("the body is not valid JSON: {inner}"))
        } else {
            let field = if path == "." { String::new() } else { path };
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "The request has invalid fields",
            )
            .field(field, strip_position(&inner.to_string()))
        }
    })?;
    de.end()
        .map_err(|_| Problem::bad_request("the body has data after the JSON value"))?;
    Ok(value)
}

/// serde_json appends " at line 1 column 9", which means nothing to a user.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        inner: Inner,
    }
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Inner {
        n: u8,
    }

    #[test]
    fn names_the_field_that_is_wrong() {
        let p = parse::<Sample>(br#"{"name":"a","inner":{"n":300}}"#).unwrap_err();
        assert_eq!(p.status, 422);
        assert_eq!(p.errors[0].field, "inner.n");
        assert!(!p.errors[0].message.contains("line"));
        let p = parse::<Sample>(br#"{"inner":{"n":1}}"#).unwrap_err();
        assert_eq!(p.status, 422);
        assert!(p.errors[0].message.contains("name"));
        assert_eq!(parse::<Sample>(b"{\"name\":").unwrap_err().status, 400);
        assert_eq!(parse::<Sample>(b"\xff\xfe").unwrap_err().status, 400);
        assert_eq!(
            parse::<Sample>(br#"{"name":"a","inner":{"n":1}} x"#)
                .unwrap_err()
                .status,
            400
        );
    }
}
