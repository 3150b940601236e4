//! SIP messages as they travel on the wire (RFC 3261 §7, §20, §25), with no I/O.
//!
//! This crate owns framing and header lists, so no layer above it re-parses a
//! header by hand:
//! - [`Message::parse`] reads a datagram or a framed stream message: start
//!   line, headers (folding, compact names, whitespace before the colon,
//!   comma-separated lists split into one [`Header`] per value), and the body
//!   byte-exact by Content-Length.
//! - Typed views ([`Uri`], [`NameAddr`], [`Via`], [`CSeq`], [`Contact`],
//!   [`auth::DigestParams`]) are parsed from a header's text when asked for.
//! - [`Message::to_bytes`] prints a message. Headers nobody edited are printed
//!   with their original value bytes, so a proxy forwards what it does not
//!   understand verbatim; bodies are never touched.
//! - [`framing::StreamFramer`] cuts a TCP byte stream into messages and
//!   recognises RFC 5626 CRLF keep-alives.
//!
//! Errors carry the status a server should answer with (400, 413, 505, …).

#![forbid(unsafe_code)]

pub mod auth;
mod error;
pub mod framing;
mod header;
mod message;
mod method;
mod name_addr;
mod params;
mod scan;
mod uri;
mod via;

pub use error::ParseError;
pub use header::{Header, HeaderName};
pub use message::{CSeq, Contact, Limits, Message, RequestLine, StartLine, StatusLine};
pub use method::Method;
pub use name_addr::NameAddr;
pub use params::Params;
pub use uri::{Host, SipUri, TelUri, Uri};
pub use via::{Via, VIA_BRANCH_COOKIE};
