//! Who a request really comes from. Behind a reverse proxy (TLS termination,
//! load balancer) every connection comes from the proxy; the client is in
//! `X-Forwarded-For`, which only proxies the operator trusts may set. Used by
//! the per-source sign-in and password-reset throttles.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

pub use pbx_store::net::{canonical, Block};

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
    pbx_store::net::Source::of(ip).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

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
