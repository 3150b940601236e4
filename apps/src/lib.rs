//! The media application server: what answers a call itself instead of
//! ringing a phone. Voicemail (a caller leaves a message after the
//! greeting; the box's phones are told, RFC 3842), conference rooms and
//! auto-attendant menus, which transfer callers by placing a call of their
//! own and joining the two.
//!
//! It is a SIP user agent on a loopback socket of its own, in the same
//! process as the proxy: the proxy routes calls to it like to any other
//! target (`sip:vm-<extension>@<its address>`, anchored through the media
//! relay), and it serves nobody but the proxy. Owns `server` (the socket,
//! answering, retransmitting, BYE), `dialog` (one call's dialog and the
//! requests it sends), `media` (one call's RTP: play, record, keys),
//! `prompts` (the announcements shipped, per language), `voicemail` (the
//! deposit), `mailbox` (a phone listening to a box, `*97`/`*98`), `keys`
//! (what callers key), `subscriptions` (phones watching an extension:
//! RFC 6665), `mwi` (the voicemail lamp), `blf` (busy lamps: an
//! extension's calls), `conference` (rooms and their mixers), `ivr`
//! (auto-attendant menus), `originate` (a call the server places for a
//! caller, through the proxy), `bridge` (a caller joined to it) and
//! `pickup` (a colleague's ringing call taken over).

#![forbid(unsafe_code)]

pub mod blf;
pub mod bridge;
pub mod conference;
mod dialog;
mod ivr;
mod keys;
mod mailbox;
pub mod media;
mod mwi;
mod originate;
mod pickup;
pub mod prompts;
pub mod server;
pub mod subscriptions;
mod voicemail;

use std::sync::Arc;

pub use server::{App, AppConfig, AppServer, PickUp};

/// One call an application runs: its media, the caller's keys and hang-up,
/// and who calls.
pub(crate) struct Run {
    pub inner: Arc<server::Inner>,
    pub media: Arc<media::CallMedia>,
    pub events: tokio::sync::mpsc::Receiver<media::CallEvent>,
    /// The caller's user part (a number, an extension).
    pub caller: String,
    pub call_id: String,
}
