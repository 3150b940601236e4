//! SDP from anyone on the way through anchoring: parsing and rewriting
//! never panic, and a rewritten body parses again with as many streams.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbx_media::sdp::{Anchor, Sdp};

fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = Sdp::parse(data) else { return };
    let anchor = Anchor {
        address: std::net::Ipv4Addr::new(203, 0, 113, 5).into(),
        rtp_port: 30000,
        rtcp_port: 30001,
    };
    let anchors: Vec<Option<Anchor>> = sdp.streams.iter().map(|_| Some(anchor)).collect();
    let out = sdp.rewrite(&anchors);
    let again = Sdp::parse(&out).expect("a rewritten body parses");
    assert_eq!(again.streams.len(), sdp.streams.len());
});
