//! The platform's domain model and its storage: the only code that speaks SQL.
//!
//! One API over both engines: SQLite (embedded, the default) and PostgreSQL
//! (scale-out). Queries are written once in the SQL both engines share and run
//! through sqlx's `Any` driver; only the migrations (`migrations/sqlite`,
//! `migrations/postgres`) and change notification differ per engine.
//!
//! Every operation takes the [`Principal`] it runs for, and every query filters
//! by its [`Scope`], so tenant isolation is enforced here, once: an object outside
//! the caller's scope is [`StoreError::NotFound`], never a different answer.
//!
//! Layout: one module per aggregate (`resellers`, `customers`, `extensions`
//! with their `forwards`, `ring_groups`,
//! `devices`, `numbers`, `logins`, `api_tokens`, `audit`), reached through
//! [`Store`] (`store.customers().get(&principal, id)`); `directory` loads what
//! the SIP proxy keeps in memory; `changes` tells every node what changed.
//! Billing: `price_plans` (wholesale and retail rate tables), `rating` (the
//! pricing rules, pure functions), `call_records` (idempotent, rated batches),
//! `statements` (per customer and per reseller, with CSV and JSON export).
//! API support: `idempotency` (Idempotency-Key answers), `webhooks`
//! (endpoints and their delivery queue and log), `sessions` (console
//! sign-ins). Abuse: `abuse` (SIP bans, the allow list, account
//! protections, resellers' thresholds), `limits` (fraud and cost limits),
//! `fraud_alarms` (toll-fraud alarms and devices' known destinations);
//! `net` (address blocks and the sources bans are kept by). Media
//! applications: `voicemail` (boxes and messages), with their audio in
//! `audio_files` (files under the data directory); `conference_rooms`;
//! `call_recordings` (who is recorded, for how long, the recordings);
//! `custom_audio` (uploaded greetings and music on hold).

#![forbid(unsafe_code)]

pub mod abuse;
pub mod api_tokens;
pub mod audio_files;
pub mod audit;
pub mod business_hours;
pub mod call_recordings;
pub mod call_records;
pub mod changes;
pub mod conference_rooms;
pub mod custom_audio;
pub mod customers;
mod db;
pub mod destinations;
pub mod devices;
pub mod directory;
mod error;
pub mod extensions;
pub mod forwards;
pub mod fraud_alarms;
pub mod idempotency;
mod ids;
pub mod ivr_menus;
pub mod limits;
pub mod logins;
pub mod media;
pub mod net;
pub mod numbering;
pub mod numbers;
pub mod operator;
pub mod password_resets;
pub mod price_plans;
mod principal;
pub mod rating;
pub mod registrations;
pub mod resellers;
pub mod ring_groups;
mod rows;
pub mod secrets;
pub mod sessions;
pub mod statements;
#[cfg(feature = "testing")]
pub mod testing;
mod time;
pub mod totp;
pub mod trunks;
pub mod unrouted;
mod usage;
mod validate;
pub mod voicemail;
pub mod webhooks;

pub use db::{Engine, Store, StoreConfig};
pub use error::{FieldError, StoreError};
pub use ids::*;
pub use principal::{Actor, Principal, Scope};
pub use time::{now_ms, Millis};

/// Result alias for storage operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod testing_assets {
    /// A harmless SVG with a gradient, text and a path.
    pub const SAFE_SVG: &[u8] = br##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><defs><linearGradient id="g"><stop offset="0" stop-color="#000"/></linearGradient></defs><rect fill="url(#g)" width="10" height="10"/><text x="1" y="5">Logo online</text></svg>"##;
}
