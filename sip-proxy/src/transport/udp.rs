//! SIP over UDP: a few tokio tasks receive on each socket and handle every
//! datagram to the end on the task that read it; sending is a plain
//! non-blocking `sendto`. (Blocking OS threads per socket, as Kamailio's
//! workers do, were measured too: no difference in CPU per operation, so the
//! simpler design stays.)
//!
//! Reads are non-blocking so that each receiver sees when its socket is
//! empty: that is what tells whether it has fallen behind (`backlog`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::backlog::{Backlog, Receiver};
use super::{Flow, Inbound, Protocol, SendError};

pub(super) struct UdpTransport {
    pub local: SocketAddr,
    socket: Arc<std::net::UdpSocket>,
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
        })
    }

    /// Starts `receivers` receive tasks on the current runtime.
    pub fn start(
        &self,
        inbound: Arc<dyn Inbound>,
        receivers: usize,
        max_message: usize,
        backlog: Arc<Backlog>,
    ) -> std::io::Result<()> {
        let local = self.local;
        self.socket.set_nonblocking(true)?;
        for _ in 0..receivers {
            let socket = tokio::net::UdpSocket::from_std(self.socket.try_clone()?)?;
            let inbound = inbound.clone();
            let backlog = backlog.clone();
            tokio::spawn(async move {
                // One byte more than the limit, so an oversized datagram is seen as such.
                let mut buf = vec![0u8; max_message + 1];
                let mut count = Receiver::new(backlog);
                loop {
                    // Non-blocking reads, so that an empty socket is seen.
                    let got = match socket.try_recv_from(&mut buf) {
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            count.emptied();
                            if let Err(e) = socket.readable().await {
                                // The runtime's I/O driver is gone: the node stops.
                                tracing::debug!(error = %e, %local, "udp receiver ends");
                                return;
                            }
                            continue;
                        }
                        got => got,
                    };
                    // Other tasks on this worker (timers) get their turn.
                    tokio::task::consume_budget().await;
                    match got {
                        Ok((n, remote)) => {
                            // Banned sources cost next to nothing: only what
                            // is handled counts toward falling behind.
                            if !inbound.admits(remote.ip()) {
                                continue;
                            }
                            count.handled();
                            let flow = Flow {
                                protocol: Protocol::Udp,
                                local,
                                remote,
                                conn: None,
                            };
                            inbound.on_datagram(Bytes::copy_from_slice(&buf[..n]), flow);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, %local, "udp receive error");
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                }
            });
        }
        Ok(())
    }

    /// Sends a datagram. A full send buffer drops it, as a congested network would.
    pub fn send(&self, data: Bytes, to: SocketAddr) -> Result<(), SendError> {
        self.socket
            .send_to(&data, to)
            .map(|_| ())
            .map_err(SendError::Io)
    }
}
