//! This node as the handlers see it: its identity (the tokens in its
//! branches, tags and Record-Routes), its own addresses (Via, Record-Route,
//! "is this us") and its way out (sending, local and stateless responses).
//! It sits below the dispatcher and every handler, so that they all build
//! on it and none of them on each other.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use pbx_sip_message::{Header, HeaderName, Host, Message, NameAddr, Uri, Via};

use crate::config::SipConfig;
use crate::stats::Stats;
use crate::transport::{Flow, Protocol, Transports};

pub struct Node {
    pub transports: Arc<Transports>,
    stats: Arc<Stats>,
    /// The address this node gives out instead of its sockets' (behind NAT).
    advertise: Option<String>,
    /// The Server header of local responses (none by default: no product name).
    server_header: Option<String>,
    /// To tag of responses sent without a transaction (their ACKs are dropped).
    pub sl_tag: String,
    /// Marks this node's Record-Route entries (`;r=` parameter).
    pub node_token: String,
    /// How every branch this node creates starts.
    branch_prefix: String,
    branch_counter: AtomicU64,
    local_ips: Mutex<HashMap<IpAddr, IpAddr>>,
}

impl Node {
    pub fn new(config: &SipConfig, transports: Arc<Transports>, stats: Arc<Stats>) -> Node {
        let token = pbx_store::secrets::sha256_hex(&format!(
            "{}:{}",
            config.node_id,
            pbx_store::secrets::hex(&config.secret)
        ));
        Node {
            transports,
            stats,
            advertise: config.advertise.clone(),
            server_header: config.server_header.clone(),
            sl_tag: format!("sl{}", &token[..10]),
            node_token: token[..12].to_owned(),
            branch_prefix: format!("{}{}", pbx_sip_message::VIA_BRANCH_COOKIE, &token[..8]),
            branch_counter: AtomicU64::new(rand::random::<u32>() as u64),
            local_ips: Mutex::new(HashMap::new()),
        }
    }

    pub fn send(&self, flow: &Flow, data: Bytes) {
        match self.transports.send(flow, data) {
            Ok(()) => Stats::inc(&self.stats.sent),
            Err(e) => {
                Stats::inc(&self.stats.send_errors);
                tracing::debug!(remote = %flow.remote, error = %e, "send failed");
            }
        }
    }

    /// Sends a response with no transaction (challenges, errors a
    /// retransmission may safely trigger again).
    pub fn reply_stateless(&self, req: &Message, flow: Flow, resp: Message) {
        let target = response_flow(req.top_via(), flow);
        self.send(&target, resp.to_bytes());
    }

    /// A response to `req` from this node, with the tenant's Server header if
    /// it has one (never a product name by default).
    pub fn local_response(
        &self,
        req: &Message,
        code: u16,
        reason: &str,
        server_header: Option<&str>,
    ) -> Message {
        let tag = (code > 100).then_some(self.sl_tag.as_str());
        let mut resp = Message::response(req, code, reason, tag);
        if let Some(server) = server_header.or(self.server_header.as_deref()) {
            resp.push(Header::new(HeaderName::Server, server.to_owned()));
        }
        resp
    }

    /// The first option tag of `header` this node does not support, if any.
    pub fn unsupported(&self, req: &Message, header: &HeaderName) -> Option<String> {
        let unknown: Vec<String> = req
            .option_tags(header)
            .into_iter()
            .filter(|t| !SUPPORTED.iter().any(|s| t.eq_ignore_ascii_case(s)))
            .collect();
        (!unknown.is_empty()).then(|| unknown.join(", "))
    }

    /// True when a request comes back carrying one of this node's own Vias
    /// (RFC 3261 §16.3 step 4). This proxy never routes through itself, so
    /// any such request is a loop, e.g. a contact registered to point here.
    pub fn looped(&self, req: &Message) -> bool {
        let marker = self.branch_prefix.as_bytes();
        req.values(&HeaderName::Via)
            .any(|h| h.value.windows(marker.len()).any(|w| w == marker))
    }

    /// A fresh RFC 3261 branch.
    pub fn new_branch(&self) -> String {
        let n = self.branch_counter.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}{}.{n:x}",
            pbx_sip_message::VIA_BRANCH_COOKIE,
            &self.node_token[..8]
        )
    }

    /// The host and port this node is reached at on a flow.
    pub fn advertised(&self, flow: &Flow) -> (Host, u16) {
        let listen_port = match flow.protocol {
            Protocol::Udp => flow.local.port(),
            Protocol::Tcp => self
                .transports
                .tcp_addrs()
                .iter()
                .find(|a| a.is_ipv4() == flow.remote.is_ipv4())
                .map(|a| a.port())
                .unwrap_or(flow.local.port()),
        };
        if let Some(adv) = &self.advertise {
            if let Ok((host, port)) = split_advertise(adv) {
                return (host, port.unwrap_or(listen_port));
            }
        }
        let ip = if flow.local.ip().is_unspecified() {
            self.local_ip_toward(flow.remote.ip())
        } else {
            flow.local.ip()
        };
        (Host::from(ip), listen_port)
    }

    /// Our own address on a flow (the kernel's choice toward its peer when
    /// the socket listens on all addresses).
    pub fn local_ip_for(&self, flow: &Flow) -> IpAddr {
        if flow.local.ip().is_unspecified() {
            self.local_ip_toward(flow.remote.ip())
        } else {
            flow.local.ip()
        }
    }

    /// The local address the kernel uses toward `remote` (no packet is sent).
    fn local_ip_toward(&self, remote: IpAddr) -> IpAddr {
        if let Some(ip) = self
            .local_ips
            .lock()
            .ok()
            .and_then(|m| m.get(&remote).copied())
        {
            return ip;
        }
        let unspecified: SocketAddr = if remote.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let ip = std::net::UdpSocket::bind(unspecified)
            .and_then(|s| s.connect((remote, 9)).map(|()| s))
            .and_then(|s| s.local_addr())
            .map(|a| a.ip())
            .unwrap_or(unspecified.ip());
        if let Ok(mut m) = self.local_ips.lock() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(remote, ip);
        }
        ip
    }

    /// The Via this node puts on a request it sends down `flow`.
    pub fn our_via(&self, flow: &Flow, branch: &str) -> Via {
        let (host, port) = self.advertised(flow);
        let mut via = Via::new(flow.protocol.via_name(), host, Some(port), branch);
        via.params.set("rport", None);
        via
    }

    /// This node's Record-Route / Route URI on `flow`.
    pub fn route_uri(&self, flow: &Flow) -> Uri {
        let (host, port) = self.advertised(flow);
        let mut uri = pbx_sip_message::SipUri::new(None, host, Some(port));
        if flow.protocol == Protocol::Tcp {
            uri.set_param("transport", Some("tcp"));
        }
        uri.set_param("lr", None);
        uri.set_param("r", Some(&self.node_token));
        Uri::Sip(uri)
    }

    /// Record-Route values for a request arriving on `inbound` and leaving on
    /// `outbound`: two when the sides differ (RFC 5658), so each side gets
    /// the address it can reach.
    pub fn record_route(&self, inbound: &Flow, outbound: &Flow) -> Vec<String> {
        let out_uri = self.route_uri(outbound);
        let in_uri = self.route_uri(inbound);
        if out_uri == in_uri {
            vec![NameAddr::new(out_uri).to_string()]
        } else {
            vec![
                NameAddr::new(out_uri).to_string(),
                NameAddr::new(in_uri).to_string(),
            ]
        }
    }

    /// True for a Route/Record-Route URI this node put there.
    pub fn is_our_route(&self, uri: &Uri) -> bool {
        uri.as_sip().and_then(|u| u.param("r").flatten()) == Some(self.node_token.as_str())
    }

    /// Whether `name` is the host name this node advertises.
    pub fn advertises_name(&self, name: &str) -> bool {
        self.advertise
            .as_deref()
            .is_some_and(|a| split_advertise(a).is_ok_and(|(h, _)| h.is_name(name)))
    }

    /// Whether `host:port` (port 5060 when absent) is one of this node's
    /// listening sockets for `protocol` (any protocol when None), or its
    /// advertised address.
    pub fn is_us(&self, host: &Host, port: Option<u16>, protocol: Option<Protocol>) -> bool {
        let port = port.unwrap_or(5060);
        if let Some(adv) = self.advertise.as_deref() {
            if let Ok((h, p)) = split_advertise(adv) {
                let adv_port = p.or_else(|| self.transports.udp_addrs().first().map(|a| a.port()));
                if &h == host && adv_port == Some(port) {
                    return true;
                }
            }
        }
        let Some(ip) = host.ip() else { return false };
        let learned = |ip: IpAddr| {
            self.local_ips
                .lock()
                .map(|m| m.values().any(|v| *v == ip))
                .unwrap_or(false)
        };
        let udp = if protocol == Some(Protocol::Tcp) {
            Vec::new()
        } else {
            self.transports.udp_addrs()
        };
        let tcp = if protocol == Some(Protocol::Udp) {
            Vec::new()
        } else {
            self.transports.tcp_addrs()
        };
        udp.into_iter().chain(tcp).any(|a| {
            a.port() == port
                && (a.ip() == ip || (a.ip().is_unspecified() && (ip.is_loopback() || learned(ip))))
        })
    }
}

/// Methods this node handles or forwards.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, UPDATE, PRACK, INFO, MESSAGE, REFER, SUBSCRIBE, NOTIFY";
/// Option tags this node supports (RFC 5626 outbound, RFC 3327 path).
pub const SUPPORTED: &[&str] = &["outbound", "path"];

/// Where responses to a request go (RFC 3261 §18.2.2 with RFC 3581): the
/// connection it came on, or the received address and rport. Never a name
/// that would need DNS: `received` is stamped whenever sent-by is not the
/// source address.
pub fn response_flow(via: &Via, flow: Flow) -> Flow {
    if flow.protocol.is_reliable() {
        return flow;
    }
    let ip = via.received().or(via.host.ip()).unwrap_or(flow.remote.ip());
    let port = match via.rport() {
        Some(Some(p)) => p,
        _ => via.port.unwrap_or(5060),
    };
    Flow {
        remote: SocketAddr::new(ip, port),
        ..flow
    }
}

/// Splits the advertised address into host and optional port.
pub fn split_advertise(text: &str) -> Result<(Host, Option<u16>), &'static str> {
    if text.starts_with('[') || text.matches(':').count() <= 1 {
        let (h, p) = pbx_sip_message::Uri::parse(&format!("sip:{text}"))
            .ok()
            .and_then(|u| u.as_sip().map(|s| (s.host.clone(), s.port)))
            .ok_or("bad advertised address")?;
        Ok((h, p))
    } else {
        // A bare IPv6 address.
        text.parse::<IpAddr>()
            .map(|ip| (Host::from(ip), None))
            .map_err(|_| "bad advertised address")
    }
}
