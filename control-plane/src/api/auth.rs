//! Who is calling: the API token in `Authorization: Bearer …` becomes the
//! [`Principal`] every store call takes, so that authorisation is decided in
//! one place (the store's scope filters). Each credential's request rate is
//! limited here too.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pbx_store::Principal;

use super::problem::Problem;
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

/// Resolves the bearer token, applies the rate limit, and hands the caller on.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(token) = bearer(&req) else {
        return Problem::unauthorized().into_response();
    };
    let principal = match state.store.api_tokens().authenticate(token).await {
        Ok(Some(p)) => p,
        Ok(None) => return Problem::unauthorized().into_response(),
        Err(e) => return Problem::from(e).into_response(),
    };
    if let Err(retry_after_s) = state.api.rate_limit.admit(&principal.actor.label()) {
        return Problem::too_many_requests(retry_after_s).into_response();
    }
    tracing::debug!(credential = %principal.actor.label(), method = %req.method(), path = %req.uri().path(), "API request");
    req.extensions_mut().insert(Caller(principal));
    next.run(req).await
}

fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
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
        RateLimit {
            per_second: f64::from(per_second.max(1)),
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
