//! SIP over TCP: listeners, one task per connection (framing, keep-alive
//! pongs, idle timeout, bounded write queue), and outbound connections opened
//! on demand.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use pbx_sip_message::framing::{Frame, StreamFramer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::{Flow, Inbound, Protocol, SendError, TransportConfig};

struct Conn {
    tx: mpsc::Sender<Bytes>,
    local: SocketAddr,
    remote: SocketAddr,
}

/// The TCP listeners and every open connection.
pub struct TcpConnections {
    listeners: Mutex<Vec<TcpListener>>,
    listen_addrs: Vec<SocketAddr>,
    conns: Mutex<HashMap<u64, Conn>>,
    by_remote: Mutex<HashMap<SocketAddr, u64>>,
    next_id: AtomicU64,
    open: AtomicUsize,
    config: TransportConfig,
    inbound: Mutex<Option<Arc<dyn Inbound>>>,
    /// The runtime connection tasks run on (sends may come from UDP threads).
    runtime: Mutex<Option<tokio::runtime::Handle>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave them inconsistent
    // (single inserts and removes), so poisoning is ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TcpConnections {
    pub(super) async fn bind(config: &TransportConfig) -> Result<TcpConnections, String> {
        let mut listeners = Vec::new();
        let mut listen_addrs = Vec::new();
        for addr in &config.tcp {
            let listener = bind_listener(*addr)
                .map_err(|e| format!("cannot listen for SIP on tcp {addr}: {e}"))?;
            listen_addrs.push(listener.local_addr().map_err(|e| e.to_string())?);
            listeners.push(listener);
        }
        Ok(TcpConnections {
            listeners: Mutex::new(listeners),
            listen_addrs,
            conns: Mutex::new(HashMap::new()),
            by_remote: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            open: AtomicUsize::new(0),
            config: config.clone(),
            inbound: Mutex::new(None),
            runtime: Mutex::new(None),
        })
    }

    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.listen_addrs.clone()
    }

    /// Whether connection `id` is still open.
    pub fn is_open(&self, id: u64) -> bool {
        lock(&self.conns).contains_key(&id)
    }

    /// Open connections right now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub(super) fn start(self: &Arc<Self>, inbound: Arc<dyn Inbound>) {
        *lock(&self.inbound) = Some(inbound.clone());
        *lock(&self.runtime) = Some(tokio::runtime::Handle::current());
        for listener in std::mem::take(&mut *lock(&self.listeners)) {
            let this = self.clone();
            let inbound = inbound.clone();
            tokio::spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((stream, remote)) => {
                            if !inbound.admits(remote.ip()) {
                                continue;
                            }
                            if this.open.load(Ordering::Relaxed) >= this.config.max_tcp_connections
                            {
                                tracing::warn!(%remote, "tcp connection refused: connection limit reached");
                                continue;
                            }
                            let _ = stream.set_nodelay(true);
                            let Ok(local) = stream.local_addr() else {
                                continue;
                            };
                            let (id, rx) = this.register(local, remote);
                            tokio::spawn(this.clone().run(
                                stream,
                                id,
                                local,
                                remote,
                                rx,
                                inbound.clone(),
                            ));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "tcp accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    }
                }
            });
        }
    }

    fn register(&self, local: SocketAddr, remote: SocketAddr) -> (u64, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(self.config.tcp_write_queue.max(1));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        lock(&self.conns).insert(id, Conn { tx, local, remote });
        lock(&self.by_remote).insert(remote, id);
        (id, rx)
    }

    fn unregister(&self, id: u64) {
        if let Some(conn) = lock(&self.conns).remove(&id) {
            self.open.fetch_sub(1, Ordering::Relaxed);
            let mut by_remote = lock(&self.by_remote);
            if by_remote.get(&conn.remote) == Some(&id) {
                by_remote.remove(&conn.remote);
            }
        }
    }

    /// A flow to `remote`: its open connection if there is one.
    pub(super) fn flow_to(&self, remote: SocketAddr) -> Option<Flow> {
        if let Some(id) = lock(&self.by_remote).get(&remote).copied() {
            if let Some(conn) = lock(&self.conns).get(&id) {
                return Some(Flow {
                    protocol: Protocol::Tcp,
                    local: conn.local,
                    remote,
                    conn: Some(id),
                });
            }
        }
        let local = self
            .listen_addrs
            .iter()
            .find(|a| a.is_ipv4() == remote.is_ipv4())
            .copied()?;
        Some(Flow {
            protocol: Protocol::Tcp,
            local,
            remote,
            conn: None,
        })
    }

    pub(super) fn send(self: &Arc<Self>, flow: &Flow, data: Bytes) -> Result<(), SendError> {
        let id = flow
            .conn
            .filter(|id| lock(&self.conns).contains_key(id))
            .or_else(|| lock(&self.by_remote).get(&flow.remote).copied());
        if let Some(id) = id {
            let sender = lock(&self.conns).get(&id).map(|c| c.tx.clone());
            return match sender.map(|tx| tx.try_send(data)) {
                Some(Ok(())) => Ok(()),
                Some(Err(mpsc::error::TrySendError::Full(_))) => {
                    // A peer that does not read is cut off, not buffered for.
                    tracing::warn!(remote = %flow.remote, "tcp write queue full: closing the connection");
                    self.unregister(id);
                    Err(SendError::Connection)
                }
                _ => Err(SendError::Connection),
            };
        }
        self.connect(flow.remote, data)
    }

    /// Opens a connection to `remote` and sends `first` on it.
    fn connect(self: &Arc<Self>, remote: SocketAddr, first: Bytes) -> Result<(), SendError> {
        if self.open.load(Ordering::Relaxed) >= self.config.max_tcp_connections {
            return Err(SendError::Connection);
        }
        let (Some(inbound), Some(runtime)) =
            (lock(&self.inbound).clone(), lock(&self.runtime).clone())
        else {
            return Err(SendError::Connection);
        };
        let local = self
            .listen_addrs
            .iter()
            .find(|a| a.is_ipv4() == remote.is_ipv4())
            .copied()
            .ok_or(SendError::NoSocket(Protocol::Tcp, remote))?;
        let (id, rx) = self.register(local, remote);
        let _ = lock(&self.conns).get(&id).map(|c| c.tx.try_send(first));
        let this = self.clone();
        runtime.spawn(async move {
            let connected = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                TcpStream::connect(remote),
            )
            .await;
            match connected {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    let local = stream.local_addr().unwrap_or(local);
                    this.run(stream, id, local, remote, rx, inbound).await;
                }
                _ => {
                    tracing::debug!(%remote, "tcp connect failed");
                    this.unregister(id);
                }
            }
        });
        Ok(())
    }

    async fn run(
        self: Arc<Self>,
        stream: TcpStream,
        id: u64,
        local: SocketAddr,
        remote: SocketAddr,
        mut rx: mpsc::Receiver<Bytes>,
        inbound: Arc<dyn Inbound>,
    ) {
        let flow = Flow {
            protocol: Protocol::Tcp,
            local,
            remote,
            conn: Some(id),
        };
        let (mut rd, mut wr) = stream.into_split();
        let mut framer = StreamFramer::new(self.config.limits);
        let idle = self.config.tcp_idle_timeout;
        'conn: loop {
            tokio::select! {
                read = tokio::time::timeout(idle, async {
                    framer.buffer().reserve(4096);
                    rd.read_buf(framer.buffer()).await
                }) => {
                    match read {
                        Ok(Ok(n)) if n > 0 => {}
                        _ => break 'conn,
                    }
                    if !inbound.admits(remote.ip()) {
                        break 'conn;
                    }
                    loop {
                        match framer.next_frame() {
                            Ok(Some(Frame::Message(data))) => inbound.on_stream_message(data, flow),
                            Ok(Some(Frame::Ping)) => {
                                if wr.write_all(b"\r\n").await.is_err() {
                                    break 'conn;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                let seen = framer.buffer().split().freeze();
                                inbound.on_stream_error(&e, seen, flow);
                                // Give the error response a moment to be queued and written.
                                while let Ok(data) = rx.try_recv() {
                                    let _ = wr.write_all(&data).await;
                                }
                                break 'conn;
                            }
                        }
                    }
                }
                out = rx.recv() => match out {
                    Some(data) => {
                        if wr.write_all(&data).await.is_err() {
                            break 'conn;
                        }
                    }
                    None => break 'conn,
                },
            }
        }
        let _ = wr.shutdown().await;
        self.unregister(id);
    }
}

fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}
