//! A TCP byte stream cut at arbitrary points: the framer never panics, never
//! holds more than the size limit, and yields the same frames however the
//! stream is split.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pbx_sip_message::framing::{Frame, StreamFramer};
use pbx_sip_message::Limits;

fn frames(data: &[u8], chunk: usize, limits: Limits) -> (Vec<Frame>, bool) {
    let mut framer = StreamFramer::new(limits);
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        framer.buffer().extend_from_slice(piece);
        loop {
            match framer.next_frame() {
                Ok(Some(f)) => out.push(f),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
        assert!(framer.buffer().len() <= limits.max_message + piece.len());
    }
    (out, false)
}

fuzz_target!(|input: (u8, &[u8])| {
    let (split, data) = input;
    let limits = Limits { max_message: 4096, ..Limits::default() };
    let (whole, whole_err) = frames(data, data.len(), limits);
    let (pieces, pieces_err) = frames(data, usize::from(split), limits);
    if !whole_err && !pieces_err {
        assert_eq!(whole, pieces, "framing depends on how the stream was split");
    }
});
