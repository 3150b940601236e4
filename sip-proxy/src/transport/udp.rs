//! SIP over UDP: receivers on each socket handle every datagram to the end
//! on the receiver that read it; sending is a plain `sendto` that never waits.
//!
//! Receivers are threads of their own by default, each blocked in `recvfrom`
//! on the shared socket, as Kamailio's workers are: the kernel wakes exactly
//! one of them per datagram, with no event loop, task wake-up or hand-over
//! between threads in the way. Tokio tasks on the same socket were each
//! woken for every datagram (one found it, the others found the socket
//! empty), and a datagram waited for a worker to be woken and scheduled: the
//! per-hop p99 latencies were longer than Kamailio's (BENCHMARKS.md, issue
//! 16, has the figures before and after). Tests that run on paused
//! time receive on the runtime instead ([`ReceiveOn::Runtime`]), because the
//! runtime must see the work it waits for before it moves its clock.
//!
//! Either way a receiver first reads without waiting and notes when it finds
//! its socket empty: that is what tells whether it has fallen behind
//! (`backlog`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use rustix::net::{RecvFlags, SendFlags};

use super::backlog::{Backlog, Receiver};
use super::{Flow, Inbound, Protocol, SendError};

/// Where UDP receivers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveOn {
    /// Threads of their own, blocked in `recvfrom` (production).
    Threads,
    /// Tasks of the async runtime (tests with paused time).
    Runtime,
}

pub(super) struct UdpTransport {
    pub local: SocketAddr,
    socket: Arc<std::net::UdpSocket>,
    /// Set when the node stops: receiver threads end at their next wake-up.
    stopped: Arc<AtomicBool>,
}

impl UdpTransport {
    pub fn bind(addr: SocketAddr, receive_buffer: usize) -> std::io::Result<UdpTransport> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        if addr.is_ipv6() {
            // So that 0.0.0.0:5060 and [::]:5060 can both be bound.
            socket.set_only_v6(true)?;
        }
        socket.set_reuse_address(true)?;
        // The kernel caps these at net.core.[rw]mem_max; best effort.
        let _ = socket.set_recv_buffer_size(receive_buffer);
        let _ = socket.set_send_buffer_size(receive_buffer);
        socket.bind(&addr.into())?;
        let socket: std::net::UdpSocket = socket.into();
        let local = socket.local_addr()?;
        Ok(UdpTransport {
            local,
            socket: Arc::new(socket),
            stopped: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Starts `receivers` receivers. Threads hold the inbound side weakly:
    /// once the node is gone they end (dropping the node stops them too).
    pub fn start(
        &self,
        inbound: &Arc<dyn Inbound>,
        receivers: usize,
        on: ReceiveOn,
        max_message: usize,
        backlog: Arc<Backlog>,
    ) -> std::io::Result<()> {
        if on == ReceiveOn::Runtime {
            // Shared by every copy of the descriptor; tokio needs it.
            self.socket.set_nonblocking(true)?;
        }
        for i in 0..receivers {
            let receiver = Receive {
                local: self.local,
                socket: self.socket.clone(),
                stopped: self.stopped.clone(),
                // One byte more than the limit, so an oversized datagram is seen as such.
                buf: vec![0u8; max_message + 1],
                count: Receiver::new(backlog.clone()),
            };
            match on {
                ReceiveOn::Threads => {
                    let inbound = Arc::downgrade(inbound);
                    let runtime = tokio::runtime::Handle::current();
                    std::thread::Builder::new()
                        .name(format!("sip-udp-{}-{i}", self.local.port()))
                        .spawn(move || {
                            // Handlers start timers and tasks on the runtime.
                            let _runtime = runtime.enter();
                            receiver.run_blocking(&inbound);
                        })?;
                }
                ReceiveOn::Runtime => {
                    let socket = tokio::net::UdpSocket::from_std(self.socket.try_clone()?)?;
                    tokio::spawn(receiver.run_on_runtime(socket, inbound.clone()));
                }
            }
        }
        Ok(())
    }

    /// Sends a datagram. A full send buffer drops it, as a congested network would.
    pub fn send(&self, data: Bytes, to: SocketAddr) -> Result<(), SendError> {
        rustix::net::sendto(&*self.socket, &data, SendFlags::DONTWAIT, &to)
            .map(|_| ())
            .map_err(|e| SendError::Io(e.into()))
    }

    /// Ends the receivers: blocked threads are woken by shutting the socket
    /// for reading (Linux wakes `recvfrom` even on an unconnected socket);
    /// sending still works.
    pub fn stop(&self) {
        if !self.stopped.swap(true, Ordering::SeqCst) {
            let _ = rustix::net::shutdown(&*self.socket, rustix::net::Shutdown::Read);
        }
    }
}

impl Drop for UdpTransport {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One receiver's state.
struct Receive {
    local: SocketAddr,
    socket: Arc<std::net::UdpSocket>,
    stopped: Arc<AtomicBool>,
    buf: Vec<u8>,
    count: Receiver,
}

impl Receive {
    /// Reads without waiting, then waits in `recvfrom` once the socket was
    /// found empty.
    fn run_blocking(mut self, inbound: &Weak<dyn Inbound>) {
        let mut flags = RecvFlags::DONTWAIT;
        loop {
            let got = rustix::net::recvfrom(&*self.socket, &mut self.buf[..], flags);
            if self.stopped.load(Ordering::Relaxed) {
                return;
            }
            let (n, remote) = match got {
                Ok((_, n, Some(addr))) => match SocketAddr::try_from(addr) {
                    Ok(remote) => (n, remote),
                    Err(_) => continue,
                },
                // Shut for reading: the node stops.
                Ok((_, _, None)) => return,
                Err(rustix::io::Errno::AGAIN) => {
                    self.count.emptied();
                    flags = RecvFlags::empty();
                    continue;
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, local = %self.local, "udp receive error");
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
            };
            flags = RecvFlags::DONTWAIT;
            let Some(inbound) = inbound.upgrade() else {
                return;
            };
            self.handle(&*inbound, n, remote);
        }
    }

    async fn run_on_runtime(mut self, socket: tokio::net::UdpSocket, inbound: Arc<dyn Inbound>) {
        loop {
            let got = match socket.try_recv_from(&mut self.buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.count.emptied();
                    if let Err(e) = socket.readable().await {
                        // The runtime's I/O driver is gone: the node stops.
                        tracing::debug!(error = %e, local = %self.local, "udp receiver ends");
                        return;
                    }
                    continue;
                }
                got => got,
            };
            // Other tasks on this worker (timers) get their turn.
            tokio::task::consume_budget().await;
            match got {
                Ok((n, remote)) => self.handle(&*inbound, n, remote),
                Err(e) => {
                    tracing::debug!(error = %e, local = %self.local, "udp receive error");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }

    fn handle(&mut self, inbound: &dyn Inbound, n: usize, remote: SocketAddr) {
        // Banned sources cost next to nothing: only what is handled counts
        // toward falling behind.
        if !inbound.admits(remote.ip()) {
            return;
        }
        self.count.handled();
        let flow = Flow {
            protocol: Protocol::Udp,
            local: self.local,
            remote,
            conn: None,
        };
        let n = n.min(self.buf.len());
        inbound.on_datagram(Bytes::copy_from_slice(&self.buf[..n]), flow);
    }
}
