//! Internet addresses as the platform reasons about them: address blocks
//! (`10.0.0.0/8`, a carrier's source range, an allow-listed office), and the
//! [`Source`] a client is counted as — its IPv4 address, or its IPv6 /64,
//! since one subscriber holds a whole /64 and can rotate through it freely.
//! IPv4-mapped IPv6 addresses are the IPv4 address they carry, everywhere.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address block, e.g. `10.0.0.0/8` or `2001:db8::/32`; one address is a
/// block of its full length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
        match (addr, canonical(addr)) {
            (IpAddr::V6(_), IpAddr::V4(v4)) if prefix >= 96 => Some(Block {
                addr: IpAddr::V4(v4),
                prefix: prefix - 96,
            }),
            (IpAddr::V6(_), IpAddr::V4(_)) => None,
            _ => Some(Block { addr, prefix }),
        }
        .map(Block::normalised)
    }

    /// The block of one address.
    pub fn single(ip: IpAddr) -> Block {
        let ip = canonical(ip);
        Block {
            addr: ip,
            prefix: if ip.is_ipv4() { 32 } else { 128 },
        }
    }

    /// The host bits cleared, so that equal blocks compare and print equal.
    fn normalised(self) -> Block {
        let addr = match self.addr {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask32(self.prefix))),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask128(self.prefix))),
        };
        Block { addr, ..self }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask32(self.prefix);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask128(self.prefix);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// The block's first address.
    pub fn network(&self) -> IpAddr {
        self.addr
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// IPv4-mapped IPv6 addresses compare as the IPv4 address they carry.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whom traffic is counted against: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    V4(u32),
    /// The upper 64 bits of the address.
    V6(u64),
}

impl Source {
    pub fn of(ip: IpAddr) -> Source {
        match canonical(ip) {
            IpAddr::V4(v4) => Source::V4(u32::from(v4)),
            IpAddr::V6(v6) => Source::V6((u128::from(v6) >> 64) as u64),
        }
    }

    /// Reads what [`Source`]'s `Display` writes (`192.0.2.1`,
    /// `2001:db8:1:2::/64`), or any address (counted as its source).
    pub fn parse(text: &str) -> Option<Source> {
        let text = text.trim();
        match text.strip_suffix("/64") {
            Some(net) => match net.parse::<IpAddr>().ok()? {
                IpAddr::V6(v6) => Some(Source::of(IpAddr::V6(v6))),
                IpAddr::V4(_) => None,
            },
            None => text.parse::<IpAddr>().ok().map(Source::of),
        }
    }

    /// The addresses this source stands for.
    pub fn block(&self) -> Block {
        match *self {
            Source::V4(v4) => Block::single(IpAddr::V4(Ipv4Addr::from(v4))),
            Source::V6(net) => Block {
                addr: IpAddr::V6(Ipv6Addr::from(u128::from(net) << 64)),
                prefix: 64,
            },
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Source::V4(v4) => write!(f, "{}", Ipv4Addr::from(v4)),
            Source::V6(net) => {
                let s = Ipv6Addr::from(u128::from(net) << 64).segments();
                write!(f, "{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn blocks_parse_match_and_print() {
        let net = Block::parse("10.1.0.0/16").expect("block");
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")));
        assert!(Block::parse("::1").expect("block").contains(ip("::1")));
        assert!(Block::parse("0.0.0.0/0")
            .expect("block")
            .contains(ip("8.8.8.8")));
        assert!(!Block::parse("0.0.0.0/0")
            .expect("block")
            .contains(ip("::2")));
        assert_eq!(Block::parse("10.0.0.0/33"), None);
        assert_eq!(Block::parse("example.net"), None);
        assert_eq!(
            Block::parse("::ffff:10.0.0.0/104"),
            Block::parse("10.0.0.0/8")
        );
        assert_eq!(
            Block::parse("10.1.2.3/16").expect("block").to_string(),
            "10.1.0.0/16",
            "host bits are cleared"
        );
        assert_eq!(
            Block::parse("2001:db8::1/32").expect("block").to_string(),
            "2001:db8::/32"
        );
    }

    #[test]
    fn sources_are_addresses_or_ipv6_slash_64s() {
        let a = Source::of(ip("2001:db8:1:2:3:4:5:6"));
        assert_eq!(a, Source::of(ip("2001:db8:1:2:ffff::1")), "same /64");
        assert_ne!(a, Source::of(ip("2001:db8:1:3::1")));
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        assert_eq!(Source::parse(&a.to_string()), Some(a));
        assert!(a.block().contains(ip("2001:db8:1:2::9")));
        let v4 = Source::of(ip("::ffff:192.0.2.7"));
        assert_eq!(v4.to_string(), "192.0.2.7");
        assert_eq!(Source::parse("192.0.2.7"), Some(v4));
        assert!(v4.block().contains(ip("192.0.2.7")));
        assert!(!v4.block().contains(ip("192.0.2.8")));
        assert_eq!(Source::parse("192.0.2.0/64"), None);
    }
}
