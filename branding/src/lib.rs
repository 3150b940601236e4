//! The default theme of the console: handlebars templates and static assets
//! compiled into the binary. Each reseller's overrides (logo, favicon,
//! colours, texts) live in the database; this crate holds only what every
//! brand starts from, and must itself name no one: no operator or product
//! name appears in any file here.

#![forbid(unsafe_code)]

/// The logo of the demo reseller that `pbx serve --demo` creates.
pub const DEMO_RESELLER_LOGO_SVG: &[u8] = include_bytes!("../assets/demo-reseller-logo.svg");
