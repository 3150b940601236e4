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
            // The party's own address: its SDP's (the requester is a proxy).
            let source = crate::sdp::Sdp::parse(sdp)
                .ok()
                .and_then(|s| s.streams.iter().find_map(|s| s.address))
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
                let answer = match decode(body) {
                    Some(cmd) => handle(&relay, &cmd, from, local),
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
