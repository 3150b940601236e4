//! Who is calling: the API token in `Authorization: Bearer …`, or a console
//! session cookie (with its CSRF token on state-changing requests), becomes
//! the [`Principal`] every store call takes, so that authorisation is decided
//! in one place (the store's scope filters). Each credential's request rate
//! is limited here too.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pbx_store::Principal;

use super::problem::Problem;
use super::session;
use crate::AppState;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(Problem::unauthorized)
    }
}

/// Resolves the bearer token or session, applies the rate limit, and hands
/// the caller on.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    // The request's body is not Sync: only its head is looked at across awaits.
    let (method, headers) = (req.method().clone(), req.headers().clone());
    let principal = match resolve(&state, &method, &headers).await {
        Ok(Some(p)) => p,
        // Signing in is the one thing done without a credential.
        Ok(None) if req.method() == Method::POST && req.uri().path() == "/api/v1/session" => {
            return next.run(req).await
        }
        Ok(None) => return Problem::unauthorized().into_response(),
        Err(problem) => return problem.into_response(),
    };
    if let Err(retry_after_s) = state.api.rate_limit.admit(&principal.actor.label()) {
        return Problem::too_many_requests(retry_after_s).into_response();
    }
    tracing::debug!(credential = %principal.actor.label(), method = %req.method(), path = %req.uri().path(), "API request");
    req.extensions_mut().insert(Caller(principal));
    next.run(req).await
}

async fn resolve(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Option<Principal>, Problem> {
    if let Some(token) = bearer(headers) {
        return Ok(state.store.api_tokens().authenticate(token).await?);
    }
    let Some(id) = session::cookie(headers) else {
        return Ok(None);
    };
    let Some(session) = state.store.sessions().resume(id).await? else {
        return Ok(None);
    };
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let echoed = headers
            .get(session::CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !constant_time_eq(echoed.as_bytes(), session.csrf_token.as_bytes()) {
            return Err(Problem::forbidden(
                "send the session's CSRF token in X-CSRF-Token",
            ));
        }
    }
    Ok(Some(session.principal))
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A token bucket per credential: `per_second` requests on average, bursts
/// of up to `burst`. Per node: with several control-plane nodes behind a
/// balancer a credential gets each node's allowance.
#[derive(Debug)]
pub struct RateLimit {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets kept before idle full ones are forgotten.
const MAX_BUCKETS: usize = 10_000;

impl RateLimit {
    pub fn new(per_second: u32, burst: u32) -> RateLimit {
        RateLimit::per_minute(per_second.max(1).saturating_mul(60), burst)
    }

    /// `per_minute` requests a minute on average: for slow things like sign-ins.
    pub fn per_minute(per_minute: u32, burst: u32) -> RateLimit {
        RateLimit {
            per_second: f64::from(per_minute.max(1)) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Admits one request of `credential`, or says in how many seconds it
    /// would be admitted.
    pub fn admit(&self, credential: &str) -> Result<(), u64> {
        self.admit_at(credential, Instant::now())
    }

    fn admit_at(&self, credential: &str, now: Instant) -> Result<(), u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(credential) {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
            if buckets.len() >= MAX_BUCKETS {
                // Many keys in use at once (someone trying many): the least
                // recently seen half go, so the map stays bounded.
                let mut ages: Vec<Instant> = buckets.values().map(|b| b.at).collect();
                ages.sort_unstable();
                let cutoff = ages[ages.len() / 2];
                buckets.retain(|_, b| b.at > cutoff);
            }
        }
        let bucket = buckets.entry(credential.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.per_second;
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_paces_each_credential_alone() {
        let limit = RateLimit::new(2, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limit.admit_at("a", t0).is_ok());
        }
        assert_eq!(limit.admit_at("a", t0), Err(1));
        // Another credential is not affected.
        assert!(limit.admit_at("b", t0).is_ok());
        // Half a second at 2/s refills one request.
        assert!(limit.admit_at("a", t0 + Duration::from_millis(500)).is_ok());
        assert!(limit
            .admit_at("a", t0 + Duration::from_millis(500))
            .is_err());
    }
}
