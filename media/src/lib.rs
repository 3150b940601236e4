//! The media plane: everything a call's audio passes through on its way
//! between phones, carriers and (later) media applications.
//!
//! Owns: `sdp` (what anchoring reads and rewrites in SDP), `rtp` (RTP/RTCP
//! headers, loss and jitter), `session` (one call's media: latching,
//! forking, where each packet goes, without sockets), `ports` (the port
//! range) and `relay` (sockets and the `reserve`/`update`/`choose`/`delete` interface
//! the SIP proxy drives); `ng` serves that interface over rtpengine's control
//! protocol, for a relay on a node of its own. The proxy decides *whether* a call is anchored;
//! this crate does the anchoring.

#![forbid(unsafe_code)]

pub mod ng;
pub mod ports;
pub mod relay;
pub mod rtp;
pub mod sdp;
pub mod session;

pub use relay::{CallKey, Idle, MediaError, MediaReport, Relay, RelayConfig, RelayStats};
pub use session::{Party, SideReport};
