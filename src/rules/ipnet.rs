//! IP networks for the `innet` operator: `10.0.0.0/8`, `fd00::/8`, or a
//! bare address (a network of one). Parsed once at load time.

use std::net::IpAddr;

/// An address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// `None` when `text` is not an address or `address/prefix`.
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(IpNet { addr, prefix })
    }

    /// Whether `text` is an address inside this network. An IPv4-mapped
    /// IPv6 address (`::ffff:10.0.0.1`) counts as its IPv4 address.
    pub fn contains(&self, text: &str) -> bool {
        let Ok(addr) = text.trim().parse::<IpAddr>() else {
            return false;
        };
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, addr) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(
                u128::from(u32::from(n)) << 96,
                u128::from(u32::from(a)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(u128::from(n), u128::from(a), self.prefix),
            _ => false,
        }
    }
}

/// The first `prefix` bits of `a` and `b` (left-aligned) are equal.
fn prefix_eq(a: u128, b: u128, prefix: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let mask = u128::MAX << (128 - u32::from(prefix));
    a & mask == b & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let n = IpNet::parse("172.16.0.0/12").unwrap();
        assert!(n.contains("172.31.255.1"));
        assert!(!n.contains("172.32.0.1"));
        assert!(n.contains("::ffff:172.16.0.9"));
        assert!(!n.contains("not an address"));
        let one = IpNet::parse("10.1.2.3").unwrap();
        assert!(one.contains("10.1.2.3") && !one.contains("10.1.2.4"));
        let v6 = IpNet::parse("fc00::/7").unwrap();
        assert!(v6.contains("fd12:3456::1") && !v6.contains("2001:db8::1"));
        assert!(!v6.contains("10.0.0.1"));
        assert!(IpNet::parse("0.0.0.0/0").unwrap().contains("8.8.8.8"));
        assert_eq!(IpNet::parse("10.0.0.0/33"), None);
        assert_eq!(IpNet::parse("10.0.0/8"), None);
    }
}
