//! Live heap per registered device, counted exactly by a wrapping allocator
//! while 10,000 devices register through the real registrar. Allocation
//! counts do not depend on the machine's speed, so the bound is a test of
//! behaviour (no binding grows without reason), not of performance.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

use pbx_sip_proxy::directory::{Directory, Tenant};
use pbx_sip_proxy::SipProxy;
use pbx_store::{CustomerId, ResellerId};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarding to the system allocator with the same layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the pointer came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[tokio::test]
async fn ten_thousand_registrations_fit_in_a_kilobyte_each() {
    const N: usize = 10_000;
    let users: Vec<(String, String)> = (0..N)
        .map(|i| (format!("{}", 100_000 + i), format!("password-{i:06}")))
        .collect();
    let extensions: Vec<(String, Vec<(String, String)>)> = users
        .iter()
        .map(|(u, p)| (u.clone(), vec![(u.clone(), p.clone())]))
        .collect();
    let refs: Vec<(&str, Vec<(&str, &str)>)> = extensions
        .iter()
        .map(|(n, d)| {
            (
                n.as_str(),
                d.iter().map(|(u, p)| (u.as_str(), p.as_str())).collect(),
            )
        })
        .collect();
    let slices: Vec<(&str, &[(&str, &str)])> =
        refs.iter().map(|(n, d)| (*n, d.as_slice())).collect();
    let directory = Arc::new(Directory::default());
    let before_directory = LIVE.load(Ordering::Relaxed);
    directory.replace(
        CustomerId(9),
        Some(Tenant::build(
            CustomerId(9),
            ResellerId(9),
            "bench.example",
            &slices,
        )),
    );
    let directory_bytes = LIVE.load(Ordering::Relaxed) - before_directory;
    let proxy = SipProxy::start_without_store(support::config(), directory)
        .await
        .expect("start");
    let udp = proxy.udp_addrs()[0];
    let before = LIVE.load(Ordering::Relaxed);
    for (i, (user, password)) in users.iter().enumerate() {
        // Each phone from its own address, as phones behind their own NAT
        // are: the abuse guard's record of each source is part of the cost.
        let from = std::net::Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250) as u8 + 1);
        let phone = support::Ua::new_from(from.into(), udp, user, password, "bench.example").await;
        let ok = phone.register_here(3600).await;
        assert_eq!(ok.status(), Some(200));
    }
    let with_cache = LIVE.load(Ordering::Relaxed) - before;
    // The answers kept for retransmissions go after 64*T1; sweep them now,
    // and let housekeeping run once.
    proxy.registrar().sweep(std::time::Duration::ZERO);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let settled = LIVE.load(Ordering::Relaxed) - before;
    eprintln!(
        "directory: {} B per device; registrations: {} B each with the retransmission cache, {} B settled",
        directory_bytes / N as isize,
        with_cache / N as isize,
        settled / N as isize
    );
    assert!(
        // About 870 B in release and debug builds (the abuse guard's record
        // of each phone's own address included): a phone costs under 1 KiB.
        settled / (N as isize) < 1024,
        "a binding takes {} bytes",
        settled / N as isize
    );
    assert!(
        directory_bytes / (N as isize) < 1024,
        "a directory entry takes {} bytes",
        directory_bytes / N as isize
    );
}
