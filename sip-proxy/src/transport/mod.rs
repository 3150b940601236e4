//! Transports (RFC 3261 §18): UDP and TCP listeners on configured addresses,
//! IPv4 and IPv6, with message size limits, TCP framing by Content-Length and
//! RFC 5626 CRLF keep-alive answers.
//!
//! A [`Flow`] names the path a message came in on or goes out on: protocol,
//! local socket, remote address and, for TCP, the connection. Responses and
//! calls to a registered phone go back down the flow it used, which is what
//! gets them through NAT.
//!
//! Ingress is bounded: UDP by the socket buffer, each TCP connection by its
//! read buffer (at most one message) and a bounded write queue; a connection
//! that cannot keep up is closed rather than buffered without end.

mod backlog;
mod tcp;
mod udp;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

pub use tcp::TcpConnections;
pub use udp::ReceiveOn;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Udp,
    Tcp,
}

impl Protocol {
    /// The Via transport token.
    pub fn via_name(self) -> &'static str {
        match self {
            Protocol::Udp => "UDP",
            Protocol::Tcp => "TCP",
        }
    }

    /// The name stored with registrations and used in URI `transport=`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
        }
    }

    /// Reliable transports need no retransmissions (§17.1.1.2).
    pub fn is_reliable(self) -> bool {
        matches!(self, Protocol::Tcp)
    }
}

/// One path between this node and a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    pub protocol: Protocol,
    /// Our socket's address.
    pub local: SocketAddr,
    /// The peer's address as seen by us (after NAT).
    pub remote: SocketAddr,
    /// The TCP connection, if the flow is one.
    pub conn: Option<u64>,
}

/// Where received messages go. The dispatcher implements it.
pub trait Inbound: Send + Sync + 'static {
    /// Whether anything from `remote` is read at all (false: a banned
    /// source, dropped before parsing; its TCP connections are closed).
    fn admits(&self, remote: std::net::IpAddr) -> bool;
    /// A UDP datagram.
    fn on_datagram(&self, data: Bytes, flow: Flow);
    /// One complete message framed from a stream.
    fn on_stream_message(&self, data: Bytes, flow: Flow);
    /// A stream that broke framing (the connection is closed after this):
    /// the raw bytes seen, for an error response if possible.
    fn on_stream_error(&self, error: &pbx_sip_message::ParseError, data: Bytes, flow: Flow);
}

/// Size limits and buffer settings of the transports.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    pub limits: pbx_sip_message::Limits,
    /// Kernel receive buffer per UDP socket.
    pub udp_receive_buffer: usize,
    pub max_tcp_connections: usize,
    /// A TCP connection with no traffic this long is closed.
    pub tcp_idle_timeout: std::time::Duration,
    /// Messages waiting to be written per TCP connection before it is closed.
    pub tcp_write_queue: usize,
    /// Receivers on each UDP socket (one per core is a good start).
    pub udp_receivers: usize,
    /// Where they run: threads of their own, or the runtime (paused time).
    pub udp_receive_on: ReceiveOn,
}

/// Why a message could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("no {0:?} socket for {1}")]
    NoSocket(Protocol, SocketAddr),
    #[error("connection is gone or overloaded")]
    Connection,
    #[error("send failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Every socket of this node.
pub struct Transports {
    udp: Vec<udp::UdpTransport>,
    pub tcp: Arc<TcpConnections>,
    config: TransportConfig,
    /// Whether the UDP receivers have fallen behind.
    backlog: Arc<backlog::Backlog>,
}

impl Transports {
    /// Binds every configured address; the error names the address.
    pub async fn bind(config: TransportConfig) -> Result<Transports, String> {
        let mut udp = Vec::new();
        for addr in &config.udp {
            udp.push(
                udp::UdpTransport::bind(*addr, config.udp_receive_buffer)
                    .map_err(|e| format!("cannot listen for SIP on udp {addr}: {e}"))?,
            );
        }
        let tcp = TcpConnections::bind(&config).await?;
        Ok(Transports {
            udp,
            tcp: Arc::new(tcp),
            config,
            backlog: Arc::new(backlog::Backlog::default()),
        })
    }

    /// True while a UDP receiver has fallen behind (and shortly after).
    pub fn behind(&self) -> bool {
        self.backlog.is_behind()
    }

    /// The addresses actually bound (ports resolved when 0 was asked for).
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.udp.iter().map(|u| u.local).collect()
    }

    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.tcp.listen_addrs()
    }

    /// Starts receiving; messages go to `inbound`.
    pub fn start(&self, inbound: Arc<dyn Inbound>) -> Result<(), String> {
        for u in &self.udp {
            u.start(
                &inbound,
                self.config.udp_receivers.max(1),
                self.config.udp_receive_on,
                self.config.limits.max_message,
                self.backlog.clone(),
            )
            .map_err(|e| format!("cannot receive on udp {}: {e}", u.local))?;
        }
        self.tcp.start(inbound);
        Ok(())
    }

    /// Stops receiving on UDP (the node stops); sending still works.
    pub fn stop_receiving(&self) {
        for u in &self.udp {
            u.stop();
        }
    }

    /// Sends `data` down `flow`. UDP never waits; TCP queues on the connection
    /// (opening one if the flow has none).
    pub fn send(&self, flow: &Flow, data: Bytes) -> Result<(), SendError> {
        match flow.protocol {
            Protocol::Udp => {
                let socket = self
                    .udp
                    .iter()
                    .find(|u| u.local == flow.local)
                    .or_else(|| {
                        self.udp
                            .iter()
                            .find(|u| u.local.is_ipv4() == flow.remote.is_ipv4())
                    })
                    .ok_or(SendError::NoSocket(Protocol::Udp, flow.remote))?;
                socket.send(data, flow.remote)
            }
            Protocol::Tcp => self.tcp.send(flow, data),
        }
    }

    /// A flow for sending a new request to `remote` over `protocol`.
    pub fn flow_to(&self, protocol: Protocol, remote: SocketAddr) -> Option<Flow> {
        match protocol {
            Protocol::Udp => self
                .udp
                .iter()
                .find(|u| u.local.is_ipv4() == remote.is_ipv4())
                .map(|u| Flow {
                    protocol,
                    local: u.local,
                    remote,
                    conn: None,
                }),
            Protocol::Tcp => self.tcp.flow_to(remote),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    /// Takes a millisecond per datagram, and notes whether the transports
    /// said they were behind while it worked.
    struct Slow {
        handled: AtomicUsize,
        saw_behind: AtomicBool,
        transports: std::sync::OnceLock<Arc<Transports>>,
    }

    impl Inbound for Slow {
        fn admits(&self, _: std::net::IpAddr) -> bool {
            true
        }
        fn on_datagram(&self, _: Bytes, _: Flow) {
            std::thread::sleep(Duration::from_millis(1));
            self.handled.fetch_add(1, Ordering::Relaxed);
            if self.transports.get().is_some_and(|t| t.behind()) {
                self.saw_behind.store(true, Ordering::Relaxed);
            }
        }
        fn on_stream_message(&self, _: Bytes, _: Flow) {}
        fn on_stream_error(&self, _: &pbx_sip_message::ParseError, _: Bytes, _: Flow) {}
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_receiver_that_falls_behind_says_so_until_it_catches_up() {
        let config = TransportConfig {
            udp: vec!["127.0.0.1:0".parse().expect("address")],
            tcp: Vec::new(),
            limits: pbx_sip_message::Limits::default(),
            udp_receive_buffer: 1 << 20,
            max_tcp_connections: 10,
            tcp_idle_timeout: Duration::from_secs(60),
            tcp_write_queue: 10,
            udp_receivers: 1,
            udp_receive_on: ReceiveOn::Threads,
        };
        let transports = Arc::new(Transports::bind(config).await.expect("bind"));
        let slow = Arc::new(Slow {
            handled: AtomicUsize::new(0),
            saw_behind: AtomicBool::new(false),
            transports: std::sync::OnceLock::new(),
        });
        let _ = slow.transports.set(transports.clone());
        transports.start(slow.clone()).expect("start");
        let to = transports.udp_addrs()[0];
        // The sender is a thread of its own: the receiver's blocking work
        // must not slow it down.
        let send = |pace: Duration, burst: usize, until: Arc<Slow>| {
            std::thread::spawn(move || {
                let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("sender");
                let mut sent = 0;
                while sent < 300 || (burst > 1 && !until.saw_behind.load(Ordering::Relaxed)) {
                    for _ in 0..burst {
                        let _ = sender.send_to(b"OPTIONS sip:x SIP/2.0\r\n\r\n", to);
                    }
                    sent += burst;
                    if sent >= 100_000 {
                        break;
                    }
                    std::thread::sleep(pace);
                }
                sent
            })
        };
        // Slower than the receiver: the socket keeps running empty.
        send(Duration::from_millis(3), 1, slow.clone())
            .join()
            .expect("sender");
        assert!(
            !slow.saw_behind.load(Ordering::Relaxed),
            "not behind at a pace it keeps"
        );
        // Ten datagrams a millisecond to a receiver that takes one: it never
        // finds the socket empty, whatever the kernel drops.
        let sent = send(Duration::from_millis(10), 100, slow.clone())
            .join()
            .expect("sender");
        assert!(
            slow.saw_behind.load(Ordering::Relaxed),
            "behind after {sent} sent"
        );
        assert!(slow.handled.load(Ordering::Relaxed) >= backlog::BACKLOG as usize);
        // Nothing more comes: once the socket is empty, the flag is down.
        for _ in 0..1000 {
            if !transports.behind() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!transports.behind());
    }
}
