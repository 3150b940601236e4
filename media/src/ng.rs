//! The relay as a media node for others: the subset of rtpengine's "ng"
//! control protocol (bencoded dictionaries over UDP, each prefixed by a
//! cookie) that offer/answer anchoring needs: `ping`, `offer`, `answer`,
//! `delete`. It lets a SIP proxy elsewhere (or a benchmark driving
//! rtpengine the same way) use this relay.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use crate::relay::{CallKey, Relay};
use crate::session::Party;

/// A bencoded value (BEP 3): byte strings, integers, lists, dictionaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Bytes(Vec<u8>),
    Int(i64),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

/// Nesting a message may have; deeper is refused (a stack guard).
const MAX_DEPTH: usize = 16;

pub fn decode(input: &[u8]) -> Option<Value> {
    let (v, rest) = decode_at(input, 0)?;
    rest.is_empty().then_some(v)
}

fn decode_at(input: &[u8], depth: usize) -> Option<(Value, &[u8])> {
    if depth > MAX_DEPTH {
        return None;
    }
    match *input.first()? {
        b'i' => {
            let end = input.iter().position(|&b| b == b'e')?;
            let n = std::str::from_utf8(&input[1..end]).ok()?.parse().ok()?;
            Some((Value::Int(n), &input[end + 1..]))
        }
        b'l' => {
            let mut rest = &input[1..];
            let mut items = Vec::new();
            while *rest.first()? != b'e' {
                let (v, r) = decode_at(rest, depth + 1)?;
                items.push(v);
                rest = r;
            }
            Some((Value::List(items), &rest[1..]))
        }
        b'd' => {
            let mut rest = &input[1..];
            let mut map = BTreeMap::new();
            while *rest.first()? != b'e' {
                let (k, r) = decode_at(rest, depth + 1)?;
                let Value::Bytes(k) = k else { return None };
                let (v, r) = decode_at(r, depth + 1)?;
                map.insert(k, v);
                rest = r;
            }
            Some((Value::Dict(map), &rest[1..]))
        }
        b'0'..=b'9' => {
            let colon = input.iter().position(|&b| b == b':')?;
            let len: usize = std::str::from_utf8(&input[..colon]).ok()?.parse().ok()?;
            let start = colon + 1;
            let bytes = input.get(start..start.checked_add(len)?)?;
            Some((Value::Bytes(bytes.to_vec()), &input[start + len..]))
        }
        _ => None,
    }
}

pub fn encode(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Bytes(b) => {
            out.extend_from_slice(b.len().to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(b);
        }
        Value::Int(n) => out.extend_from_slice(format!("i{n}e").as_bytes()),
        Value::List(items) => {
            out.push(b'l');
            for i in items {
                encode(i, out);
            }
            out.push(b'e');
        }
        Value::Dict(map) => {
            out.push(b'd');
            for (k, v) in map {
                encode(&Value::Bytes(k.clone()), out);
                encode(v, out);
            }
            out.push(b'e');
        }
    }
}

fn text(d: &BTreeMap<Vec<u8>, Value>, key: &str) -> Option<String> {
    match d.get(key.as_bytes())? {
        Value::Bytes(b) => String::from_utf8(b.clone()).ok(),
        _ => None,
    }
}

fn reply(pairs: Vec<(&str, Value)>) -> Value {
    Value::Dict(
        pairs
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    )
}

fn error(reason: &str) -> Value {
    reply(vec![
        ("result", Value::Bytes(b"error".to_vec())),
        ("error-reason", Value::Bytes(reason.as_bytes().to_vec())),
    ])
}

/// The `received-from` of a command: `[family, address]`, the address the
/// requester received the party's SIP message from.
fn received_from(d: &BTreeMap<Vec<u8>, Value>) -> Option<IpAddr> {
    let Value::List(pair) = d.get(b"received-from".as_slice())? else {
        return None;
    };
    match pair.as_slice() {
        [_, Value::Bytes(address)] => std::str::from_utf8(address).ok()?.parse().ok(),
        _ => None,
    }
}

/// The address this host uses toward `remote` (the kernel's route; no
/// packet is sent).
fn local_toward(remote: IpAddr) -> Option<IpAddr> {
    let any: SocketAddr = match remote {
        IpAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = std::net::UdpSocket::bind(any).ok()?;
    socket.connect((remote, 9)).ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

/// Handles one command from `from`; the relay's address toward the
/// requester's parties is `local` (the control socket's own address).
pub fn handle(relay: &Relay, command: &Value, from: SocketAddr, local: IpAddr) -> Value {
    let Value::Dict(d) = command else {
        return error("not a dictionary");
    };
    let Some(cmd) = text(d, "command") else {
        return error("no command");
    };
    if cmd == "ping" {
        return reply(vec![("result", Value::Bytes(b"pong".to_vec()))]);
    }
    let (Some(call_id), Some(from_tag)) = (text(d, "call-id"), text(d, "from-tag")) else {
        return error("call-id and from-tag are required");
    };
    let key: CallKey = (call_id, from_tag);
    match cmd.as_str() {
        "offer" | "answer" => {
            let Some(Value::Bytes(sdp)) = d.get(b"sdp".as_slice()) else {
                return error("no sdp");
            };
            // The party's own address: where its signalling came from, as
            // the requesting proxy saw it (behind NAT, its SDP names a private
            // address that its media never comes from); else its SDP's.
            let source = received_from(d)
                .or_else(|| {
                    crate::sdp::Sdp::parse(sdp)
                        .ok()
                        .and_then(|s| s.streams.iter().find_map(|s| s.address))
                })
                .unwrap_or(from.ip());
            let result = if cmd == "offer" {
                if let Err(e) = relay.reserve(&key, Party::Callee(0), local) {
                    return error(&e.to_string());
                }
                relay.update(&key, Party::Caller, Party::Callee(0), sdp, source, local)
            } else {
                let r = relay.update(&key, Party::Callee(0), Party::Caller, sdp, source, local);
                relay.choose(&key, 0);
                relay.established(&key);
                r
            };
            match result {
                Ok(sdp) => reply(vec![
                    ("result", Value::Bytes(b"ok".to_vec())),
                    ("sdp", Value::Bytes(sdp)),
                ]),
                Err(e) => error(&e.to_string()),
            }
        }
        "delete" => {
            relay.delete(&key);
            reply(vec![("result", Value::Bytes(b"ok".to_vec()))])
        }
        _ => error("unsupported command"),
    }
}

/// Serves the ng protocol on `socket` until the task is dropped, ending
/// calls whose media stopped.
pub async fn serve(relay: Relay, socket: tokio::net::UdpSocket) -> std::io::Result<()> {
    let local = socket.local_addr()?.ip();
    let mut buf = vec![0u8; 65536];
    let mut sweep = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            got = socket.recv_from(&mut buf) => {
                let (n, from) = got?;
                let msg = &buf[..n];
                let Some(space) = msg.iter().position(|&b| b == b' ') else { continue };
                let (cookie, body) = (&msg[..space], &msg[space + 1..]);
                // Listening on all addresses: SDP names the one the
                // requester reaches this host at, never 0.0.0.0.
                let toward = if local.is_unspecified() {
                    local_toward(from.ip()).unwrap_or(local)
                } else {
                    local
                };
                let answer = match decode(body) {
                    Some(cmd) => handle(&relay, &cmd, from, toward),
                    None => error("not bencode"),
                };
                let mut out = cookie.to_vec();
                out.push(b' ');
                encode(&answer, &mut out);
                let _ = socket.send_to(&out, from).await;
            }
            _ = sweep.tick() => {
                for idle in relay.idle() {
                    relay.delete(&idle.call);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::RelayConfig;
    use std::net::Ipv4Addr;
    use tokio::net::UdpSocket;

    fn command(pairs: Vec<(&str, Value)>) -> Value {
        reply(pairs)
    }

    fn bytes(text: &str) -> Value {
        Value::Bytes(text.as_bytes().to_vec())
    }

    fn sdp(ip: &str, port: u16) -> Value {
        bytes(&format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n"
        ))
    }

    /// The port the SDP of a reply names.
    fn port_in(answer: &Value) -> u16 {
        let Value::Dict(d) = answer else {
            panic!("not a dict")
        };
        let Some(Value::Bytes(sdp)) = d.get(b"sdp".as_slice()) else {
            panic!("no sdp: {answer:?}")
        };
        let text = String::from_utf8_lossy(sdp);
        assert!(!text.contains("0.0.0.0"), "{text}");
        let m = text.lines().find(|l| l.starts_with("m=audio ")).unwrap();
        m.split(' ').nth(1).unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn a_party_behind_nat_is_latched_from_where_its_signalling_came() {
        let relay = Relay::new(RelayConfig {
            ports: (41200, 41209),
            bind_v4: Ipv4Addr::LOCALHOST,
            ..RelayConfig::default()
        });
        let lo: IpAddr = Ipv4Addr::LOCALHOST.into();
        let proxy: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        // The caller's router is 127.0.0.9; its SDP names its private address.
        let caller = UdpSocket::bind("127.0.0.9:0").await.unwrap();
        let callee = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let callee_port = callee.local_addr().unwrap().port();
        let key = |cmd: &str, sdp: Value, from: &str| {
            command(vec![
                ("command", bytes(cmd)),
                ("call-id", bytes("nat-call")),
                ("from-tag", bytes("t1")),
                ("sdp", sdp),
                (
                    "received-from",
                    Value::List(vec![bytes("IP4"), bytes(from)]),
                ),
            ])
        };
        let offer = handle(
            &relay,
            &key("offer", sdp("192.168.1.10", 4000), "127.0.0.9"),
            proxy,
            lo,
        );
        let to_callee = port_in(&offer);
        let answer = handle(
            &relay,
            &key("answer", sdp("127.0.0.1", callee_port), "127.0.0.1"),
            proxy,
            lo,
        );
        let to_caller = port_in(&answer);
        let packet = [0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xd5];
        caller.send_to(&packet, (lo, to_caller)).await.unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            callee.recv_from(&mut buf),
        )
        .await
        .expect("the caller's audio reaches the callee")
        .unwrap();
        assert_eq!(&buf[..n], &packet);
        // And back, to where the caller's packets really came from.
        callee.send_to(&packet, (lo, to_callee)).await.unwrap();
        let (n, _) = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            caller.recv_from(&mut buf),
        )
        .await
        .expect("the callee's audio reaches the caller behind NAT")
        .unwrap();
        assert_eq!(&buf[..n], &packet);
        handle(&relay, &key("delete", bytes(""), "127.0.0.1"), proxy, lo);
        assert_eq!(relay.active_calls(), 0);
    }

    #[test]
    fn the_address_toward_a_peer_is_a_real_one() {
        let ip = local_toward(Ipv4Addr::LOCALHOST.into()).unwrap();
        assert!(ip.is_loopback());
    }

    #[test]
    fn bencode_round_trip_and_hostile_input() {
        let msg = b"d7:call-id3:abc7:command5:offer8:from-tag1:t3:sdp4:v=0\ne";
        let v = decode(msg).unwrap();
        let mut out = Vec::new();
        encode(&v, &mut out);
        assert_eq!(out, msg);
        for bad in [
            &b""[..],
            b"d",
            b"i12",
            b"99999999999999999999:x",
            b"5:abc",
            b"di1ei2ee",
            b"x",
            b"d7:commande",
        ] {
            assert_eq!(decode(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = "l".repeat(100) + &"e".repeat(100);
        assert_eq!(decode(deep.as_bytes()), None);
    }
}
