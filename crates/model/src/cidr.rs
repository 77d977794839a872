//! IPv4 networks (`a.b.c.d/len`): pod and Service CIDRs, their
//! addresses, overlaps.

use std::net::Ipv4Addr;

/// An IPv4 network, `a.b.c.d/len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub net: Ipv4Addr,
    pub len: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (a.b.c.d/len)"))?;
        let net: Ipv4Addr = a.parse().map_err(|_| format!("{s:?}: bad address"))?;
        let len: u8 = l.parse().map_err(|_| format!("{s:?}: bad prefix length"))?;
        if len > 32 {
            return Err(format!("{s:?}: prefix length over 32"));
        }
        let c = Cidr { net, len };
        if c.network() != net {
            return Err(format!("{s:?} has host bits set"));
        }
        Ok(c)
    }

    fn mask(&self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - self.len)
        }
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.net) & self.mask())
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.net) & self.mask()
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        let m = self.mask() & other.mask();
        u32::from(self.net) & m == u32::from(other.net) & m
    }

    /// The `i`th address of the network (0: the network address).
    pub fn nth(&self, i: u32) -> Option<Ipv4Addr> {
        let size = 1u64 << (32 - u32::from(self.len));
        (u64::from(i) < size).then(|| Ipv4Addr::from(u32::from(self.net) + i))
    }

    /// The `i`th subnet of prefix length `len` (None past the last, or for
    /// a `len` shorter than this network's).
    pub fn subnet(&self, len: u8, i: u32) -> Option<Cidr> {
        if len < self.len || len > 32 {
            return None;
        }
        let count = 1u64 << (len - self.len);
        if u64::from(i) >= count {
            return None;
        }
        let step = 1u64 << (32 - u32::from(len));
        let net = u64::from(u32::from(self.network())) + u64::from(i) * step;
        Some(Cidr {
            net: Ipv4Addr::from(u32::try_from(net).ok()?),
            len,
        })
    }

    /// The gateway: the first host address.
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        self.nth(1)
    }

    /// Pod addresses: every host address but the gateway's, in order.
    pub fn pod_addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let size = 1u64 << (32 - u32::from(self.len));
        (2..size.saturating_sub(1)).filter_map(|i| u32::try_from(i).ok().and_then(|i| self.nth(i)))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.244.3.0/24").unwrap();
        assert_eq!(c.gateway(), Some(Ipv4Addr::new(10, 244, 3, 1)));
        let pods: Vec<Ipv4Addr> = c.pod_addresses().collect();
        assert_eq!(pods.len(), 253);
        assert_eq!(pods[0], Ipv4Addr::new(10, 244, 3, 2));
        assert_eq!(pods[252], Ipv4Addr::new(10, 244, 3, 254));
        assert!(c.contains(Ipv4Addr::new(10, 244, 3, 77)));
        assert!(!c.contains(Ipv4Addr::new(10, 244, 4, 1)));
        let cluster = Cidr::parse("10.244.0.0/16").unwrap();
        assert!(cluster.overlaps(&c) && c.overlaps(&cluster));
        assert!(!c.overlaps(&Cidr::parse("10.244.4.0/24").unwrap()));
        for bad in ["10.244.3.1/24", "10.244.0.0", "10.244.0.0/33", "x/8"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(c.to_string(), "10.244.3.0/24");
        assert_eq!(
            cluster.subnet(24, 0),
            Some(Cidr::parse("10.244.0.0/24").unwrap())
        );
        assert_eq!(
            cluster.subnet(24, 255),
            Some(Cidr::parse("10.244.255.0/24").unwrap())
        );
        assert_eq!(cluster.subnet(24, 256), None);
        assert_eq!(cluster.subnet(8, 0), None);
    }
}
