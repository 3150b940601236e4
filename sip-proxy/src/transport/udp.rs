//! SIP over UDP: receive tasks sharing one socket per address; sending never waits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;

use super::{Flow, Inbound, Protocol, SendError};

pub(super) struct UdpTransport {
    pub local: SocketAddr,
    socket: Arc<UdpSocket>,
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
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        let std_socket: std::net::UdpSocket = socket.into();
        let socket = UdpSocket::from_std(std_socket)?;
        let local = socket.local_addr()?;
        Ok(UdpTransport {
            local,
            socket: Arc::new(socket),
        })
    }

    pub fn start(&self, inbound: Arc<dyn Inbound>, receivers: usize, max_message: usize) {
        for _ in 0..receivers {
            let socket = self.socket.clone();
            let inbound = inbound.clone();
            let local = self.local;
            tokio::spawn(async move {
                // One byte more than the limit, so an oversized datagram is seen as such.
                let mut buf = vec![0u8; max_message + 1];
                loop {
                    match socket.recv_from(&mut buf).await {
                        Ok((n, remote)) => {
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
    }

    pub fn send(&self, data: Bytes, to: SocketAddr) -> Result<(), SendError> {
        match self.socket.try_send_to(&data, to) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // The send buffer is full: wait for room off the hot path.
                let socket = self.socket.clone();
                tokio::spawn(async move {
                    let _ = socket.send_to(&data, to).await;
                });
                Ok(())
            }
            Err(e) => Err(SendError::Io(e)),
        }
    }
}
