//! Who a request really comes from. Behind a reverse proxy (TLS termination,
//! load balancer) every connection comes from the proxy; the client is in
//! `X-Forwarded-For`, which only proxies the operator trusts may set. Used by
//! the per-source sign-in and password-reset throttles.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

/// An address block, e.g. `10.0.0.0/8` or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    addr: IpAddr,
    prefix: u8,
}

impl Block {
    /// Parses `ADDR` or `ADDR/PREFIX`; None if it is neither.
    pub fn parse(text: &str) -> Option<Block> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let addr = text.trim().parse::<IpAddr>().ok()?;
                (addr, if addr.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return None;
        }
        // An IPv4-mapped block is the IPv4 block it carries.
        match (addr, canonical(addr)) {
            (IpAddr::V6(_), IpAddr::V4(v4)) if prefix >= 96 => Some(Block {
                addr: IpAddr::V4(v4),
                prefix: prefix - 96,
            }),
            (IpAddr::V6(_), IpAddr::V4(_)) => None,
            _ => Some(Block { addr, prefix }),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses compare as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address: the peer's, unless the peer is a trusted proxy,
/// then the right-most address of `X-Forwarded-For` that is not itself a
/// trusted proxy (the ones to its left could be made up by the client). An
/// entry that cannot be read stops the walk at the last trusted hop, so a
/// proxy writing `ip:port` or `unknown` cannot make a client-written entry
/// count.
pub fn address(peer: Option<SocketAddr>, headers: &HeaderMap, trusted: &[Block]) -> Option<IpAddr> {
    let mut client = canonical(peer?.ip());
    if !trusted.iter().any(|b| b.contains(client)) {
        return Some(client);
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for entry in entries.into_iter().rev() {
        let Some(hop) = hop_address(entry) else {
            break;
        };
        client = canonical(hop);
        if !trusted.iter().any(|b| b.contains(client)) {
            break;
        }
    }
    Some(client)
}

/// `ip`, `ip:port` or `[v6]:port`.
fn hop_address(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    entry.parse::<SocketAddr>().ok().map(|a| a.ip())
}

/// The key a client is throttled by: its IPv4 address, or its IPv6 /64
/// (one subscriber's whole block, which it can rotate through freely).
pub fn throttle_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn blocks_parse_and_match() {
        let net = Block::parse("10.1.0.0/16").expect("block");
        assert!(net.contains("10.1.200.3".parse().expect("ip")));
        assert!(!net.contains("10.2.0.1".parse().expect("ip")));
        assert!(net.contains("::ffff:10.1.0.9".parse().expect("ip")));
        assert!(Block::parse("::1")
            .expect("block")
            .contains("::1".parse().expect("ip")));
        assert!(Block::parse("0.0.0.0/0")
            .expect("block")
            .contains("8.8.8.8".parse().expect("ip")));
        assert_eq!(Block::parse("10.0.0.0/33"), None);
        assert_eq!(Block::parse("example.net"), None);
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let trusted = [Block::parse("127.0.0.1").expect("block")];
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.7"),
        );
        let proxy: SocketAddr = "127.0.0.1:4000".parse().expect("addr");
        let direct: SocketAddr = "198.51.100.2:4000".parse().expect("addr");
        // Behind the proxy: the right-most hop it added, not what the client wrote.
        assert_eq!(
            address(Some(proxy), &headers, &trusted),
            Some("203.0.113.7".parse().expect("ip"))
        );
        // Straight from a client, its header is ignored.
        assert_eq!(
            address(Some(direct), &headers, &trusted),
            Some("198.51.100.2".parse().expect("ip"))
        );
        // Nobody trusted: the peer.
        assert_eq!(
            address(Some(proxy), &headers, &[]),
            Some("127.0.0.1".parse().expect("ip"))
        );
        // An entry the proxy wrote as ip:port still counts; an unreadable
        // one stops at the proxy instead of believing what lies left of it.
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.7:5555"),
        );
        assert_eq!(
            address(Some(proxy), &headers, &trusted),
            Some("203.0.113.7".parse().expect("ip"))
        );
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, unknown"),
        );
        assert_eq!(
            address(Some(proxy), &headers, &trusted),
            Some("127.0.0.1".parse().expect("ip"))
        );
        assert_eq!(
            throttle_key("2001:db8:1:2:3:4:5:6".parse().expect("ip")),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            Block::parse("::ffff:10.0.0.0/104"),
            Block::parse("10.0.0.0/8"),
            "mapped blocks are IPv4 blocks"
        );
        // A proxy with no header: itself.
        assert_eq!(
            address(Some(proxy), &HeaderMap::new(), &trusted),
            Some("127.0.0.1".parse().expect("ip"))
        );
    }
}
