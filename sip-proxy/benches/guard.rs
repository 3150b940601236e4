//! What the abuse guard costs each packet and request on the good path, and
//! what a banned source's packet costs: the guard's own work, without
//! sockets or parsing (the SIP benchmark measures the whole node).
//!
//!     cargo bench -p pbx-sip-proxy --bench guard

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use pbx_sip_proxy::directory::Tenant;
use pbx_sip_proxy::guard::{Guard, GuardConfig};
use pbx_sip_proxy::stats::Stats;
use pbx_store::directory::CustomerDirectory;
use pbx_store::{CustomerId, DeviceId, ResellerId};

fn measure(name: &str, iterations: u32, mut f: impl FnMut(u32)) {
    for i in 0..10_000 {
        f(i);
    }
    let start = Instant::now();
    for i in 0..iterations {
        f(i);
    }
    let elapsed = start.elapsed();
    println!(
        "{name:<52} {:>7.0} ns/op {:>12.0} ops/s",
        elapsed.as_nanos() as f64 / f64::from(iterations),
        f64::from(iterations) / elapsed.as_secs_f64(),
    );
}

/// One of 10,000 phones, each on its own address (the worst case for the
/// guard's tables; phones behind one office NAT share an entry).
fn phone(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i % 10_000)))
}

fn main() {
    let n = 1_000_000;
    let stats = Arc::new(Stats::default());
    let guard = Guard::new(GuardConfig::default(), stats.clone());
    let tenant = Tenant::from_store(CustomerDirectory::empty(
        CustomerId(1),
        ResellerId(1),
        "bench.example",
    ));
    let now = pbx_store::now_ms();
    let ua = Some("Yealink SIP-T54W 96.86.0.70");

    measure("packet from an address not banned (pre-parse)", n, |i| {
        black_box(guard.drops(phone(i), now, || false));
    });
    measure("request outside a dialog (User-Agent, budget)", n, |i| {
        black_box(guard.screen(
            phone(i),
            ua,
            true,
            now + i64::from(i / 1000),
            || None,
            || false,
        ));
    });
    measure("request inside a dialog", n, |i| {
        black_box(guard.screen(phone(i), ua, false, now, || None, || false));
    });
    measure("challenge for a request without credentials", n, |i| {
        black_box(guard.challenging(phone(i), &tenant, now));
    });
    measure("right password of a registering device", n, |i| {
        black_box(guard.right_digest(
            phone(i),
            &tenant,
            DeviceId(i64::from(i % 10_000)),
            true,
            now,
        ));
    });

    // A scanner bans itself; each of its packets is then dropped.
    let scanner = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 66));
    guard.screen(
        scanner,
        Some("friendly-scanner"),
        true,
        now,
        || None,
        || false,
    );
    assert!(guard.drops(scanner, now, || false), "the scanner is banned");
    measure("packet from a banned address (pre-parse)", n, |_| {
        black_box(guard.drops(scanner, now, || false));
    });
}
