//! The REST API under `/api/v1`: every resource of the model, for resellers'
//! and customers' own systems, under the same authorisation as the console.
//!
//! Conventions (one module each): API tokens and rate limits (`auth`),
//! `application/problem+json` errors (`problem`), JSON bodies that name the
//! wrong field (`body`), ETag / If-Match (`etag`), cursor pagination (`page`),
//! `Idempotency-Key` on creates (`idempotency`). Handlers are thin: the store
//! decides scope, so an id of another tenant is a 404 like a missing one.
//!
//! The OpenAPI 3.1 document is generated from the handlers' annotations and
//! served at `/api/v1/openapi.json`; routes and document come from the same
//! list, so neither can lack what the other has.

pub mod access;
pub mod auth;
pub mod billing;
pub mod etag;
pub mod events;
pub mod groups;
pub mod guard;
pub mod hours;
pub mod idempotency;
pub mod input;
pub mod ivr_menus;
pub mod limits;
pub mod media;
pub mod numbers;
pub mod page;
pub mod phones;
pub mod problem;
pub mod recordings;
pub mod rooms;
pub mod session;
pub mod tenants;
pub mod trunks;
pub mod uploads;
pub mod voicemail;
pub mod webhooks;

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as OpenApiDoc, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;
use auth::RateLimit;
use events::EventHub;
use problem::Problem;

/// The API's own state, shared by all its handlers.
#[derive(Debug)]
pub struct ApiState {
    pub rate_limit: RateLimit,
    /// Sign-in attempts per e-mail address.
    pub login_limit: RateLimit,
    /// Sign-in attempts per source address (looser: offices share one).
    pub source_limit: RateLimit,
    /// Password checks running at once (argon2 is slow on purpose).
    pub login_gate: tokio::sync::Semaphore,
    pub events: Arc<EventHub>,
    /// Reverse proxies whose X-Forwarded-For names the client.
    pub trusted_proxies: Vec<crate::client::Block>,
}

impl ApiState {
    pub fn new(rate_limit: RateLimit, events: Arc<EventHub>) -> ApiState {
        ApiState {
            rate_limit,
            // Ten at once, then one every six seconds.
            login_limit: RateLimit::per_minute(10, 10),
            source_limit: RateLimit::per_minute(30, 30),
            login_gate: tokio::sync::Semaphore::new(2),
            events,
            trusted_proxies: Vec::new(),
        }
    }

    /// Takes the client's address from X-Forwarded-For when a request comes
    /// through one of these proxies.
    pub fn with_trusted_proxies(mut self, proxies: Vec<crate::client::Block>) -> ApiState {
        self.trusted_proxies = proxies;
        self
    }

    /// Counts a sign-in (or reset) attempt against the client's address;
    /// Err with the seconds to wait when there were too many.
    pub fn admit_source(
        &self,
        peer: Option<std::net::SocketAddr>,
        headers: &axum::http::HeaderMap,
    ) -> Result<(), u64> {
        match crate::client::address(peer, headers, &self.trusted_proxies) {
            Some(ip) => self.source_limit.admit(&crate::client::throttle_key(ip)),
            None => Ok(()),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "PBX platform API",
        description = "Provisioning, billing and live events of the hosted PBX. \
            Authenticate with an API token: `Authorization: Bearer pbx_…`. \
            Errors are application/problem+json (RFC 9457).",
    ),
    components(schemas(Problem, problem::ProblemField)),
    security(("bearer" = [])),
    tags(
        (name = "resellers"), (name = "customers"), (name = "extensions"), (name = "devices"), (name = "ring-groups"), (name = "conference-rooms"), (name = "ivr-menus"), (name = "business-hours"),
        (name = "numbers"), (name = "trunks"), (name = "price-plans"), (name = "logins"), (name = "tokens"),
        (name = "live"), (name = "call-records"), (name = "statements"), (name = "webhooks"), (name = "session"), (name = "sip-security"), (name = "media"), (name = "voicemail"), (name = "call-recording"),
    )
)]
struct ApiDoc;

/// Adds what every operation shares: the bearer scheme and the problem
/// answers. Applied to the finished document (derive-time modifiers run
/// before the routes are merged in).
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut OpenApiDoc) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        let problem = ResponseBuilder::new()
            .description("A problem (RFC 9457): validation errors name their fields")
            .content(
                problem::CONTENT_TYPE,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build();
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                op.responses
                    .responses
                    .entry("default".to_owned())
                    .or_insert_with(|| problem.clone().into());
            }
        }
    }
}

/// The routes of the API with their document. Authentication, rate limits
/// and idempotency wrap all of them except the document itself.
pub fn router(state: &AppState) -> (Router<AppState>, OpenApiDoc) {
    let (routes, mut doc) = documented().split_for_parts();
    Conventions.modify(&mut doc);
    let routes = routes
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            idempotency::idempotent,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(input::MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    let served = Arc::new(doc.clone());
    let routes = routes
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = served.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        // Unknown API paths answer problem+json; every other unknown path
        // is the console's (a branded page).
        .route("/api", any(not_found))
        .route("/api/{*rest}", any(not_found));
    (routes, doc)
}

/// The document alone, for tests and `pbx openapi`.
pub fn openapi() -> OpenApiDoc {
    let mut doc = documented().into_openapi();
    Conventions.modify(&mut doc);
    doc
}

/// Every documented route: the single list both the router and the document
/// are made from.
fn documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(tenants::routes())
        .merge(phones::routes())
        .merge(groups::routes())
        .merge(rooms::routes())
        .merge(ivr_menus::routes())
        .merge(trunks::routes())
        .merge(hours::routes())
        .merge(limits::routes())
        .merge(guard::routes())
        .merge(media::routes())
        .merge(voicemail::routes())
        .merge(recordings::routes())
        .merge(uploads::routes())
        .merge(numbers::routes())
        .merge(billing::routes())
        .merge(access::routes())
        .merge(events::routes())
        .merge(webhooks::routes())
        .merge(session::routes())
}

/// No such route (as opposed to no such object, which is `not-found`).
async fn not_found() -> Response {
    Problem::new(
        axum::http::StatusCode::NOT_FOUND,
        "no-route",
        "No such endpoint",
    )
    .into_response()
}

/// A created object: 201 with its Location and ETag.
pub struct Created<T>(pub String, pub i64, pub T);

impl<T: serde::Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        let Created(location, version, body) = self;
        let mut response =
            etag::Tagged(axum::http::StatusCode::CREATED, version, body).into_response();
        if let Ok(v) = axum::http::HeaderValue::from_str(&location) {
            response
                .headers_mut()
                .insert(axum::http::header::LOCATION, v);
        }
        response
    }
}
