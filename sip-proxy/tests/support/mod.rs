//! A node without storage on loopback, and a small scriptable UA that speaks
//! raw SIP over UDP (digest included), for tests that need exact control of
//! every message and of time.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use md5::{Digest, Md5};
use pbx_sip_message::auth::DigestParams;
use pbx_sip_message::{Header, HeaderName, Limits, Message};
use pbx_sip_proxy::digest::Algorithm;
use pbx_sip_proxy::directory::{Directory, Tenant};
use pbx_sip_proxy::{SipConfig, SipProxy};
use pbx_store::{CustomerId, ResellerId};
use sha2::Sha256;
use tokio::net::UdpSocket;

pub const ACME: &str = "acme.test";
pub const BOLT: &str = "bolt.test";

/// Customer 1 (acme.test): 101, 102 (devices 102 and 102-2), 103.
/// Customer 2 (bolt.test): 101.
pub fn directory() -> Arc<Directory> {
    let dir = Arc::new(Directory::default());
    dir.replace(
        CustomerId(1),
        Some(Tenant::build(
            CustomerId(1),
            ResellerId(1),
            ACME,
            &[
                ("101", &[("101", "pw-101-xxxxxx")]),
                (
                    "102",
                    &[("102", "pw-102-xxxxxx"), ("102-2", "pw-1022-xxxxx")],
                ),
                ("103", &[("103", "pw-103-xxxxxx")]),
            ],
        )),
    );
    dir.replace(
        CustomerId(2),
        Some(Tenant::build(
            CustomerId(2),
            ResellerId(2),
            BOLT,
            &[("101", &[("101", "pw-b101-xxxxx")])],
        )),
    );
    dir
}

pub fn config() -> SipConfig {
    let mut c = SipConfig::new(
        "test-node",
        [7; 32],
        vec!["127.0.0.1:0".parse().expect("addr")],
        vec!["127.0.0.1:0".parse().expect("addr")],
    );
    c.transports.udp_receivers = 1;
    // Each node its own call-record spool, removed with the temp directory.
    static SPOOLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    c.spool_dir = std::env::temp_dir().join(format!(
        "pbx-sip-test-{}-{}/spool",
        std::process::id(),
        SPOOLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    c
}

/// [`config`] for tests on paused time: UDP is received on the runtime, so
/// that the runtime sees each message before it moves its clock.
pub fn config_on_paused_time() -> SipConfig {
    let mut c = config();
    c.transports.udp_receive_on = pbx_sip_proxy::transport::ReceiveOn::Runtime;
    c
}

pub struct Node {
    pub proxy: SipProxy,
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub directory: Arc<Directory>,
}

pub async fn start(config: SipConfig) -> Node {
    let directory = directory();
    let proxy = SipProxy::start_without_store(config, directory.clone())
        .await
        .expect("start node");
    Node {
        udp: proxy.udp_addrs()[0],
        tcp: proxy.tcp_addrs()[0],
        proxy,
        directory,
    }
}

/// A phone: a UDP socket, an identity and a password.
pub struct Ua {
    pub sock: UdpSocket,
    pub local: SocketAddr,
    pub target: SocketAddr,
    pub user: String,
    pub password: String,
    pub domain: String,
    n: AtomicU32,
}

pub fn hash(algorithm: Algorithm, text: &str) -> String {
    match algorithm {
        Algorithm::Md5 => pbx_store::secrets::hex(&Md5::digest(text.as_bytes())),
        Algorithm::Sha256 => pbx_store::secrets::hex(&Sha256::digest(text.as_bytes())),
    }
}

impl Ua {
    pub async fn new(target: SocketAddr, user: &str, password: &str, domain: &str) -> Ua {
        let from: std::net::IpAddr = if target.is_ipv6() {
            std::net::Ipv6Addr::LOCALHOST.into()
        } else {
            std::net::Ipv4Addr::LOCALHOST.into()
        };
        Ua::new_from(from, target, user, password, domain).await
    }

    /// A phone sending from `from` (any 127.0.0.0/8 address is this
    /// machine's: each phone its own source, as behind its own NAT).
    pub async fn new_from(
        from: std::net::IpAddr,
        target: SocketAddr,
        user: &str,
        password: &str,
        domain: &str,
    ) -> Ua {
        let sock = UdpSocket::bind(SocketAddr::new(from, 0))
            .await
            .expect("bind ua");
        Ua {
            local: sock.local_addr().expect("addr"),
            sock,
            target,
            user: user.into(),
            password: password.into(),
            domain: domain.into(),
            n: AtomicU32::new(1),
        }
    }

    pub fn next(&self) -> u32 {
        self.n.fetch_add(1, Ordering::Relaxed)
    }

    /// A new branch for a new transaction.
    pub fn branch(&self) -> String {
        format!("z9hG4bKua{}x{}", self.local.port(), self.next())
    }

    /// Sends `head` (lines separated by \n, no blank line) and `body`,
    /// adding Content-Length.
    pub async fn send(&self, head: &str, body: &str) {
        let text = format!(
            "{}\r\nContent-Length: {}\r\n\r\n{body}",
            head.trim_end().replace('\n', "\r\n"),
            body.len()
        );
        self.sock
            .send_to(text.as_bytes(), self.target)
            .await
            .expect("send");
    }

    pub async fn send_raw(&self, bytes: &[u8]) {
        self.sock.send_to(bytes, self.target).await.expect("send");
    }

    /// The next message, or None after `wait` of (possibly paused) time.
    pub async fn recv_within(&self, wait: Duration) -> Option<Message> {
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, _) = tokio::time::timeout(wait, self.sock.recv_from(&mut buf))
                .await
                .ok()?
                .ok()?;
            if let Ok(m) =
                Message::parse_datagram(Bytes::copy_from_slice(&buf[..n]), &Limits::default())
            {
                return Some(m);
            }
        }
    }

    pub async fn recv(&self) -> Message {
        self.recv_within(Duration::from_secs(100))
            .await
            .expect("a message")
    }

    /// The next response, skipping 100 Trying.
    pub async fn final_or_provisional(&self) -> Message {
        loop {
            let m = self.recv().await;
            if m.status() != Some(100) {
                return m;
            }
        }
    }

    /// The digest header value answering the first challenge of `header` in `resp`.
    pub fn answer(&self, resp: &Message, header: &HeaderName, method: &str, uri: &str) -> String {
        let challenges: Vec<DigestParams> = resp
            .values(header)
            .filter_map(|h| h.text().and_then(|t| DigestParams::parse(&t).ok()))
            .collect();
        let pick = challenges
            .iter()
            .find(|c| Algorithm::parse(c.get("algorithm")).is_some())
            .expect("a challenge we can answer");
        self.answer_challenge(pick, method, uri, 1)
    }

    pub fn answer_challenge(&self, c: &DigestParams, method: &str, uri: &str, nc: u32) -> String {
        let algorithm = Algorithm::parse(c.get("algorithm")).expect("algorithm");
        let realm = c.get("realm").expect("realm");
        let nonce = c.get("nonce").expect("nonce");
        let ha1 = hash(
            algorithm,
            &format!("{}:{realm}:{}", self.user, self.password),
        );
        let ha2 = hash(algorithm, &format!("{method}:{uri}"));
        let nc = format!("{nc:08x}");
        let response = hash(algorithm, &format!("{ha1}:{nonce}:{nc}:c0ffee:auth:{ha2}"));
        format!(
            "Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm={}, qop=auth, nc={nc}, cnonce=\"c0ffee\"",
            self.user,
            algorithm.name()
        )
    }

    pub fn register_head(
        &self,
        call_id: &str,
        cseq: u32,
        contacts: &str,
        expires: Option<u32>,
        extra: &str,
    ) -> String {
        let expires = expires
            .map(|e| format!("Expires: {e}\n"))
            .unwrap_or_default();
        format!(
            "REGISTER sip:{d} SIP/2.0\nVia: SIP/2.0/UDP {l};branch={b};rport\nMax-Forwards: 70\nFrom: <sip:{u}@{d}>;tag=r{p}\nTo: <sip:{u}@{d}>\nCall-ID: {call_id}\nCSeq: {cseq} REGISTER\n{contacts}{expires}{extra}",
            d = self.domain,
            l = self.local,
            b = self.branch(),
            u = self.user,
            p = self.local.port(),
        )
    }

    /// REGISTER with the 401 round trip; returns the final response.
    pub async fn register(&self, contacts: &str, expires: Option<u32>, extra: &str) -> Message {
        let call_id = format!("reg-{}-{}", self.local.port(), self.next());
        self.send(
            &self.register_head(&call_id, 1, contacts, expires, extra),
            "",
        )
        .await;
        let challenge = self.recv().await;
        if challenge.status() != Some(401) {
            return challenge;
        }
        let auth = self.answer(
            &challenge,
            &HeaderName::WwwAuthenticate,
            "REGISTER",
            &format!("sip:{}", self.domain),
        );
        let head = self.register_head(
            &call_id,
            2,
            contacts,
            expires,
            &format!("{extra}Authorization: {auth}\n"),
        );
        self.send(&head, "").await;
        self.recv().await
    }

    /// Registers this UA's own address for `expires` seconds.
    pub async fn register_here(&self, expires: u32) -> Message {
        let contact = format!("Contact: <sip:{}@{}>\n", self.user, self.local);
        self.register(&contact, Some(expires), "").await
    }

    pub fn invite_head(
        &self,
        callee: &str,
        call_id: &str,
        cseq: u32,
        branch: &str,
        extra: &str,
    ) -> String {
        format!(
            "INVITE sip:{callee}@{d} SIP/2.0\nVia: SIP/2.0/UDP {l};branch={branch};rport\nMax-Forwards: 70\nFrom: <sip:{u}@{d}>;tag=c{p}\nTo: <sip:{callee}@{d}>\nCall-ID: {call_id}\nCSeq: {cseq} INVITE\nContact: <sip:{u}@{l}>\nContent-Type: application/sdp\n{extra}",
            d = self.domain,
            l = self.local,
            u = self.user,
            p = self.local.port(),
        )
    }

    /// Sends an INVITE to `callee`, answers the 407, and returns the
    /// Call-ID, branch and the head of the authenticated INVITE.
    pub async fn invite(&self, callee: &str) -> (String, String, String) {
        self.invite_with(callee, SDP).await
    }

    /// Like [`Ua::invite`] with `body` as the offer ("" for a late offer).
    pub async fn invite_with(&self, callee: &str, body: &str) -> (String, String, String) {
        let call_id = format!("call-{}-{}", self.local.port(), self.next());
        let branch = self.branch();
        self.send(&self.invite_head(callee, &call_id, 1, &branch, ""), body)
            .await;
        let challenge = self.final_or_provisional().await;
        assert_eq!(challenge.status(), Some(407), "expected a proxy challenge");
        let ack = format!(
            "ACK sip:{callee}@{d} SIP/2.0\nVia: SIP/2.0/UDP {l};branch={branch};rport\nMax-Forwards: 70\nFrom: <sip:{u}@{d}>;tag=c{p}\nTo: {to}\nCall-ID: {call_id}\nCSeq: 1 ACK",
            d = self.domain,
            l = self.local,
            u = self.user,
            p = self.local.port(),
            to = challenge.value_text(&HeaderName::To).unwrap_or_default()
        );
        self.send(&ack, "").await;
        let uri = format!("sip:{callee}@{}", self.domain);
        let auth = self.answer(&challenge, &HeaderName::ProxyAuthenticate, "INVITE", &uri);
        let branch = self.branch();
        let head = self.invite_head(
            callee,
            &call_id,
            2,
            &branch,
            &format!("Proxy-Authorization: {auth}\n"),
        );
        self.send(&head, body).await;
        (call_id, branch, head)
    }

    /// Answers request `req` with `code` (To tag added when `tag` is given).
    pub async fn respond(&self, req: &Message, code: u16, reason: &str, tag: Option<&str>) {
        let mut resp = Message::response(req, code, reason, tag);
        if (200..300).contains(&code) {
            for rr in req.values(&HeaderName::RecordRoute) {
                resp.push(rr.clone());
            }
            resp.push(pbx_sip_message::Header::new(
                HeaderName::Contact,
                format!("<sip:{}@{}>", self.user, self.local),
            ));
        }
        self.sock
            .send_to(&resp.to_bytes(), self.target)
            .await
            .expect("send");
    }
}

pub const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

/// Contacts in a 200 OK to REGISTER, with their granted expiry.
pub fn bindings(resp: &Message) -> Vec<(String, u32)> {
    resp.contacts()
        .expect("contacts")
        .into_iter()
        .filter_map(|c| match c {
            pbx_sip_message::Contact::Addr(a) => {
                let expires = a
                    .params
                    .get("expires")
                    .and_then(|e| e.parse().ok())
                    .unwrap_or(0);
                Some((a.uri.to_string(), expires))
            }
            pbx_sip_message::Contact::Star => None,
        })
        .collect()
}

impl Ua {
    /// Sends an out-of-dialog `method` request to `callee` with the 407
    /// round trip (no ACK: not an INVITE); returns (Call-ID, branch, head).
    pub async fn request(
        &self,
        method: &str,
        callee: &str,
        body: &str,
    ) -> (String, String, String) {
        self.request_with(method, callee, "Content-Type: text/plain\n", body)
            .await
    }

    /// [`Ua::request`] with header lines of its own (each ending in `\n`).
    pub async fn request_with(
        &self,
        method: &str,
        callee: &str,
        headers: &str,
        body: &str,
    ) -> (String, String, String) {
        let call_id = format!("{method}-{}-{}", self.local.port(), self.next());
        let make = |cseq: u32, branch: &str, extra: &str| {
            format!(
                "{method} sip:{callee}@{d} SIP/2.0\nVia: SIP/2.0/UDP {l};branch={branch};rport\nMax-Forwards: 70\nFrom: <sip:{u}@{d}>;tag=m{p}\nTo: <sip:{callee}@{d}>\nCall-ID: {call_id}\nCSeq: {cseq} {method}\nContact: <sip:{u}@{l}>\n{headers}{extra}",
                d = self.domain,
                l = self.local,
                u = self.user,
                p = self.local.port(),
            )
        };
        self.send(&make(1, &self.branch(), ""), body).await;
        let challenge = self.recv().await;
        assert_eq!(challenge.status(), Some(407));
        let uri = format!("sip:{callee}@{}", self.domain);
        let auth = self.answer(&challenge, &HeaderName::ProxyAuthenticate, method, &uri);
        let branch = self.branch();
        let head = make(2, &branch, &format!("Proxy-Authorization: {auth}\n"));
        self.send(&head, body).await;
        (call_id, branch, head)
    }

    /// CANCEL for the INVITE whose head (as sent) is `invite_head`.
    pub async fn cancel(&self, invite_head: &str) {
        let cancel: Vec<String> = invite_head
            .lines()
            .filter(|l| {
                !l.starts_with("Proxy-Authorization")
                    && !l.starts_with("Contact")
                    && !l.starts_with("Content-Type")
            })
            .map(|l| {
                l.replacen("INVITE sip:", "CANCEL sip:", 1)
                    .replace(" INVITE", " CANCEL")
            })
            .collect();
        self.send(&cancel.join("\n"), "").await;
    }
}

/// A response to `req` carrying `sdp` (none when empty).
pub async fn respond_sdp(ua: &Ua, req: &Message, code: u16, tag: &str, sdp: &str) {
    let mut resp = Message::response(req, code, "OK", Some(tag));
    for rr in req.values(&HeaderName::RecordRoute) {
        resp.push(rr.clone());
    }
    resp.push(Header::new(
        HeaderName::Contact,
        format!("<sip:{}@{}>", ua.user, ua.local),
    ));
    if !sdp.is_empty() {
        resp.push(Header::new(HeaderName::ContentType, "application/sdp"));
        resp.body = sdp.as_bytes().to_vec().into();
    }
    ua.sock
        .send_to(&resp.to_bytes(), ua.target)
        .await
        .expect("send");
}

/// The caller's in-dialog request after `ok` (the 200 it got).
pub fn caller_request(caller: &Ua, ok: &Message, method: &str, cseq: u32, branch: &str) -> String {
    let route: Vec<String> = ok
        .values(&HeaderName::RecordRoute)
        .filter_map(|h| h.text().map(|t| t.into_owned()))
        .collect();
    let contact = match ok.contacts().ok().and_then(|c| c.into_iter().next()) {
        Some(pbx_sip_message::Contact::Addr(a)) => a.uri.to_string(),
        _ => panic!("no contact"),
    };
    format!(
        "{method} {contact} SIP/2.0\nVia: SIP/2.0/UDP {l};branch={branch};rport\nMax-Forwards: 70\n\
         Route: {route}\nFrom: <sip:{u}@{d}>;tag=c{p}\nTo: {to}\nCall-ID: {cid}\nCSeq: {cseq} {method}\n\
         Contact: <sip:{u}@{l}>\nContent-Type: application/sdp",
        route = route.join(", "),
        l = caller.local,
        u = caller.user,
        d = ACME,
        p = caller.local.port(),
        to = ok.value_text(&HeaderName::To).unwrap_or_default(),
        cid = ok.call_id(),
    )
}

pub async fn next_request(ua: &Ua, method: &str) -> Message {
    loop {
        let m = ua.recv().await;
        if m.method().map(|x| x.as_str()) == Some(method) {
            return m;
        }
    }
}

pub async fn next_status(ua: &Ua, status: u16) -> Message {
    loop {
        let m = ua.recv().await;
        if m.status() == Some(status) {
            return m;
        }
    }
}
