//! Any bytes: the parser never panics, every typed view of a parsed message
//! is safe to ask for, an unparsable request yields at most an error response,
//! and parse → print → parse → print is stable.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pbx_sip_message::{HeaderName, Limits, Message};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let raw = Bytes::copy_from_slice(data);
    match Message::parse_datagram(raw.clone(), &limits) {
        Ok(msg) => {
            let _ = msg.contacts();
            let _ = msg.vias();
            let _ = msg.name_addrs(&HeaderName::Route);
            let _ = msg.name_addrs(&HeaderName::RecordRoute);
            let _ = msg.expires();
            let _ = msg.max_forwards();
            let _ = msg.option_tags(&HeaderName::Require);
            for h in msg.values(&HeaderName::Authorization) {
                if let Some(t) = h.text() {
                    let _ = pbx_sip_message::auth::DigestParams::parse(&t);
                }
            }
            let printed = msg.to_bytes();
            let again = match Message::parse_datagram(printed.clone(), &limits) {
                Ok(m) => m,
                Err(e) => panic!("a printed message must parse again: {e}\n{}", String::from_utf8_lossy(&printed)),
            };
            assert_eq!(again.to_bytes(), printed, "printing is stable");
            assert_eq!(again.body, msg.body, "the body is kept byte-exact");
            if msg.is_request() {
                let _ = Message::response(&msg, 200, "OK", Some("t")).to_bytes();
            }
        }
        Err(e) => {
            let _ = Message::error_response(&raw, &e, &limits);
        }
    }
});
