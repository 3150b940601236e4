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
        (prefix <= max).then_some(Block { addr, prefix })
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
/// trusted proxy (the ones to its left could be made up by the client).
pub fn address(peer: Option<SocketAddr>, headers: &HeaderMap, trusted: &[Block]) -> Option<IpAddr> {
    let mut client = canonical(peer?.ip());
    if !trusted.iter().any(|b| b.contains(client)) {
        return Some(client);
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .collect();
    for hop in forwarded.into_iter().rev() {
        client = canonical(hop);
        if !trusted.iter().any(|b| b.contains(client)) {
            break;
        }
    }
    Some(client)
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
        // A proxy with no header: itself.
        assert_eq!(
            address(Some(proxy), &HeaderMap::new(), &trusted),
            Some("127.0.0.1".parse().expect("ip"))
        );
    }
}
