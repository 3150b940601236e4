//! Throughput of the message layer on typical desk-phone messages: parse,
//! print, and heap allocations per message (counted by a wrapping allocator).
//!
//!     cargo bench -p pbx-sip-message

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use pbx_sip_message::{Limits, Message};

struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarding to the system allocator with the same layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the pointer came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const REGISTER: &str = "REGISTER sip:bench.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5110;branch=z9hG4bK-27896-1-2;rport\r\nMax-Forwards: 70\r\nFrom: <sip:100000@bench.example>;tag=27896SIPpTag001\r\nTo: <sip:100000@bench.example>\r\nCall-ID: 1-27896@127.0.0.1\r\nCSeq: 2 REGISTER\r\nContact: <sip:100000@127.0.0.1:5110>\r\nExpires: 3600\r\nAuthorization: Digest username=\"100000\",realm=\"bench.example\",cnonce=\"6b8b4567\",nc=00000001,qop=auth,uri=\"sip:bench.example\",nonce=\"AAAAAGsI-QMAAAAAzCD5hY86kGNff65N1yREOw\",response=\"4c3fefc9e4ece542d648b7a178400e04\",algorithm=MD5\r\nUser-Agent: sipp-bench\r\nContent-Length: 0\r\n\r\n";

const INVITE: &str = "INVITE sip:102@127.0.0.1:5120 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK89c4d7fd.a91d55ed;rport\r\nVia: SIP/2.0/UDP 127.0.0.1:5130;branch=z9hG4bK-3638-1-4;rport=5130;received=127.0.0.1\r\nMax-Forwards: 69\r\nFrom: <sip:101@bench.example>;tag=3638SIPpTag001\r\nTo: <sip:102@bench.example>\r\nCall-ID: 1-3638@127.0.0.1\r\nCSeq: 2 INVITE\r\nContact: <sip:101@127.0.0.1:5130;transport=UDP>\r\nUser-Agent: sipp-bench\r\nContent-Type: application/sdp\r\nRecord-Route: <sip:127.0.0.1:5080;lr;r=89c4d7fdf79b>\r\nContent-Length: 130\r\n\r\nv=0\r\no=caller 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6004 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

fn measure(name: &str, iterations: u32, mut f: impl FnMut()) {
    for _ in 0..1000 {
        f();
    }
    let allocs_before = ALLOCATIONS.load(Ordering::Relaxed);
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let elapsed = start.elapsed();
    let allocs = ALLOCATIONS.load(Ordering::Relaxed) - allocs_before;
    println!(
        "{name:<28} {:>8.0} ns/op {:>10.0} ops/s {:>6.1} allocations/op",
        elapsed.as_nanos() as f64 / f64::from(iterations),
        f64::from(iterations) / elapsed.as_secs_f64(),
        allocs as f64 / f64::from(iterations)
    );
}

fn main() {
    let limits = Limits::default();
    let n = 200_000;
    for (name, text) in [("REGISTER", REGISTER), ("INVITE", INVITE)] {
        let raw = Bytes::from_static(text.as_bytes());
        measure(&format!("parse {name}"), n, || {
            black_box(Message::parse_datagram(black_box(raw.clone()), &limits).ok());
        });
        let Ok(msg) = Message::parse_datagram(raw.clone(), &limits) else {
            panic!("{name} must parse");
        };
        measure(&format!("print {name}"), n, || {
            black_box(black_box(&msg).to_bytes());
        });
        measure(&format!("contacts of {name}"), n, || {
            black_box(black_box(&msg).contacts().ok());
        });
        measure(&format!("response to {name}"), n, || {
            black_box(Message::response(black_box(&msg), 200, "OK", Some("tag1")).to_bytes());
        });
    }
}
