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
//!
//! The media engine of the applications (voicemail and the others) lives
//! here too: `g711` (PCMU/PCMA), `dtmf` (RFC 4733 events, SIP INFO),
//! `audio` (8 kHz PCM clips, WAV in and out, conversion of uploads) and
//! `jitter` (a received stream back in order for recording and mixing),
//! `music` (music on hold: the default tune, played by the relay to a
//! held party), `recording` (calls recorded by the relay, both sides to a
//! stereo WAV file).

#![forbid(unsafe_code)]

pub mod audio;
pub mod dtmf;
pub mod g711;
pub mod jitter;
pub mod music;
pub mod ng;
pub mod ports;
pub mod recording;
pub mod relay;
pub mod rtp;
pub mod sdp;
pub mod session;

pub use relay::{CallKey, Idle, MediaError, MediaReport, Relay, RelayConfig, RelayStats};
pub use session::{Party, SideReport};
