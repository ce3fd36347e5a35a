//! Address pools, validated from `IPAddressPool` specs into plain data.

use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::{crd::IPAddressPoolSpec, selector};

/// An inclusive range of addresses of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Range {
    pub first: IpAddr,
    pub last: IpAddr,
}

impl Range {
    /// A CIDR (`192.0.2.0/28`) or an inclusive range (`192.0.2.10-192.0.2.20`). A CIDR with
    /// host bits set (`198.51.100.10/24`) stands for its network, as in MetalLB (Go's
    /// `net.ParseCIDR`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some((a, b)) = text.split_once('-') {
            let first: IpAddr = a.trim().parse().map_err(|_| format!("{a:?} is not an IP address"))?;
            let last: IpAddr = b.trim().parse().map_err(|_| format!("{b:?} is not an IP address"))?;
            if first.is_ipv4() != last.is_ipv4() {
                return Err("a range cannot mix IPv4 and IPv6".into());
            }
            if first > last {
                return Err(format!("{first} comes after {last}"));
            }
            return Ok(Self { first, last });
        }
        let net: IpNet = text.parse().map_err(|_| "neither a CIDR nor a first-last range".to_owned())?;
        Ok(Self { first: net.network(), last: net.broadcast() })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.first <= ip && ip <= self.last
    }

    pub fn overlaps(&self, other: &Range) -> bool {
        self.first <= other.last && other.first <= self.last
    }

    pub fn is_ipv4(&self) -> bool {
        self.first.is_ipv4()
    }

    /// How many addresses it holds.
    pub fn size(&self) -> u128 {
        to_u128(self.last) - to_u128(self.first) + 1
    }

    /// How many of its addresses end in .0 or .255 (IPv4), counted without walking them: a /8
    /// holds 16 million.
    pub fn buggy(&self) -> u128 {
        if !self.is_ipv4() {
            return 0;
        }
        // Addresses n in 0..=x with n % 256 == r.
        let upto = |x: Option<u128>, r: u128| x.filter(|x| *x >= r).map_or(0, |x| (x - r) / 256 + 1);
        let (first, last) = (to_u128(self.first), to_u128(self.last));
        [0, 255].iter().map(|&r| upto(Some(last), r) - upto(first.checked_sub(1), r)).sum()
    }

    /// The addresses from the first on.
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + '_ {
        (to_u128(self.first)..=to_u128(self.last)).map(|n| from_u128(n, self.is_ipv4()))
    }
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a).into(),
        IpAddr::V6(a) => a.into(),
    }
}

fn from_u128(n: u128, v4: bool) -> IpAddr {
    if v4 { IpAddr::V4((n as u32).into()) } else { IpAddr::V6(n.into()) }
}

/// A valid pool.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    pub name: String,
    pub ranges: Vec<Range>,
    pub auto_assign: bool,
    pub avoid_buggy_ips: bool,
    pub priority: Option<i32>,
    pub namespaces: Vec<String>,
    pub namespace_selectors: Vec<LabelSelector>,
    pub service_selectors: Vec<LabelSelector>,
}

impl Pool {
    /// Validates `spec`: every address entry parses, none overlaps another, selectors are valid.
    pub fn from_spec(name: &str, spec: &IPAddressPoolSpec) -> Result<Self, String> {
        if spec.addresses.is_empty() {
            return Err("spec.addresses is empty".into());
        }
        let mut ranges: Vec<Range> = Vec::new();
        for (i, text) in spec.addresses.iter().enumerate() {
            let range = Range::parse(text).map_err(|e| format!("spec.addresses[{i}] = {text:?}: {e}"))?;
            if let Some(j) = ranges.iter().position(|r| r.overlaps(&range)) {
                return Err(format!("spec.addresses[{i}] = {text:?} overlaps spec.addresses[{j}]"));
            }
            ranges.push(range);
        }
        let allocation = spec.service_allocation.clone().unwrap_or_default();
        for (what, selectors) in [
            ("namespaceSelectors", &allocation.namespace_selectors),
            ("serviceSelectors", &allocation.service_selectors),
        ] {
            for (i, s) in selectors.iter().enumerate() {
                selector::validate(s).map_err(|e| format!("spec.serviceAllocation.{what}[{i}]: {e}"))?;
            }
        }
        Ok(Self {
            name: name.to_owned(),
            ranges,
            auto_assign: spec.auto_assign,
            avoid_buggy_ips: spec.avoid_buggy_ips,
            // MetalLB's priority is a plain int: 0 is "none set".
            priority: allocation.priority.filter(|p| *p != 0),
            namespaces: allocation.namespaces,
            namespace_selectors: allocation.namespace_selectors,
            service_selectors: allocation.service_selectors,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
    }

    /// Whether `ip` may be given out: in the pool, and not a .0/.255 IPv4 address when the pool
    /// avoids those.
    pub fn usable(&self, ip: IpAddr) -> bool {
        self.contains(ip)
            && !(self.avoid_buggy_ips && matches!(ip, IpAddr::V4(a) if matches!(a.octets()[3], 0 | 255)))
    }

    /// The usable addresses of one family, in order.
    pub fn addresses(&self, v4: bool) -> impl Iterator<Item = IpAddr> + '_ {
        self.addresses_from(v4, None)
    }

    /// The usable addresses of one family from `start` on (all of them for `None`), in order.
    pub fn addresses_from(&self, v4: bool, start: Option<IpAddr>) -> impl Iterator<Item = IpAddr> + '_ {
        let mut ranges: Vec<Range> = self.ranges.iter().filter(|r| r.is_ipv4() == v4).copied().collect();
        ranges.sort();
        ranges
            .into_iter()
            .filter(move |r| start.is_none_or(|s| r.last >= s))
            .map(move |r| Range { first: start.map_or(r.first, |s| s.max(r.first)), ..r })
            .flat_map(move |r| (to_u128(r.first)..=to_u128(r.last)).map(move |n| from_u128(n, v4)))
            .filter(|ip| self.usable(*ip))
    }

    /// How many usable addresses of one family it has (IPv4 exactly; IPv6 ranges, which can be
    /// astronomically large, by size).
    pub fn capacity(&self, v4: bool) -> u128 {
        self.ranges
            .iter()
            .filter(|r| r.is_ipv4() == v4)
            .map(|r| if v4 && self.avoid_buggy_ips { r.size() - r.buggy() } else { r.size() })
            .sum()
    }

    /// Whether the pool's service allocation rules admit a Service in `namespace` with these
    /// labels.
    pub fn admits(
        &self,
        namespace: &str,
        namespace_labels: &selector::Labels,
        service_labels: &selector::Labels,
    ) -> bool {
        (self.namespaces.is_empty() && self.namespace_selectors.is_empty()
            || self.namespaces.iter().any(|n| n == namespace)
            || self.namespace_selectors.iter().any(|s| selector::matches(s, namespace_labels)))
            && (self.service_selectors.is_empty()
                || self.service_selectors.iter().any(|s| selector::matches(s, service_labels)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_cidrs_and_ranges() {
        assert_eq!(
            Range::parse("192.0.2.0/30").unwrap(),
            Range { first: ip("192.0.2.0"), last: ip("192.0.2.3") }
        );
        assert_eq!(Range::parse(" 192.0.2.10 - 192.0.2.12 ").unwrap().size(), 3);
        assert_eq!(Range::parse("192.0.2.7/32").unwrap().size(), 1);
        assert_eq!(Range::parse("2001:db8::/126").unwrap().iter().count(), 4);
        assert_eq!(Range::parse("2001:db8::/64").unwrap().size(), 1 << 64);
        // Host bits set: the network, as MetalLB reads it.
        assert_eq!(Range::parse("198.51.100.10/24").unwrap(), Range::parse("198.51.100.0/24").unwrap());
        assert_eq!(Range::parse("2001:db8::5/126").unwrap(), Range::parse("2001:db8::4/126").unwrap());
    }

    #[test]
    fn refuses_bad_entries() {
        assert_eq!(Range::parse("192.0.2.9-192.0.2.1").unwrap_err(), "192.0.2.9 comes after 192.0.2.1");
        assert_eq!(Range::parse("192.0.2.1-2001:db8::1").unwrap_err(), "a range cannot mix IPv4 and IPv6");
        assert_eq!(Range::parse("192.0.2.300/32").unwrap_err(), "neither a CIDR nor a first-last range");
        assert_eq!(Range::parse("x-192.0.2.1").unwrap_err(), "\"x\" is not an IP address");
        let spec = |addresses: &[&str]| IPAddressPoolSpec {
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        };
        assert_eq!(
            Pool::from_spec("p", &spec(&["192.0.2.0/28", "192.0.2.10-192.0.2.20"])).unwrap_err(),
            "spec.addresses[1] = \"192.0.2.10-192.0.2.20\" overlaps spec.addresses[0]"
        );
        assert_eq!(Pool::from_spec("p", &spec(&[])).unwrap_err(), "spec.addresses is empty");
    }

    #[test]
    fn priority_zero_is_none_as_in_metallb() {
        let with = |priority| IPAddressPoolSpec {
            addresses: vec!["192.0.2.0/30".into()],
            service_allocation: Some(crate::crd::ServiceAllocation { priority, ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(Pool::from_spec("p", &with(Some(0))).unwrap().priority, None);
        assert_eq!(Pool::from_spec("p", &with(None)).unwrap().priority, None);
        assert_eq!(Pool::from_spec("p", &with(Some(-3))).unwrap().priority, Some(-3));
        assert_eq!(Pool::from_spec("p", &with(Some(5))).unwrap().priority, Some(5));
    }

    #[test]
    fn avoids_buggy_ips() {
        let spec = IPAddressPoolSpec {
            addresses: vec!["192.0.2.254-192.0.3.1".into()],
            avoid_buggy_ips: true,
            ..Default::default()
        };
        let pool = Pool::from_spec("p", &spec).unwrap();
        assert_eq!(pool.addresses(true).collect::<Vec<_>>(), [ip("192.0.2.254"), ip("192.0.3.1")]);
        assert_eq!(pool.addresses_from(true, Some(ip("192.0.2.255"))).collect::<Vec<_>>(), [ip("192.0.3.1")]);
        assert_eq!(pool.addresses_from(true, Some(ip("192.0.4.0"))).count(), 0);
        assert_eq!(pool.capacity(true), 2);
        assert!(!pool.usable(ip("192.0.3.0")) && pool.contains(ip("192.0.3.0")));
        let plain = Pool::from_spec("p", &IPAddressPoolSpec { avoid_buggy_ips: false, ..spec }).unwrap();
        assert_eq!(plain.capacity(true), 4);
    }

    #[test]
    fn buggy_addresses_are_counted_as_a_walk_would_count_them() {
        for text in [
            "192.0.2.0/24",
            "192.0.2.1-192.0.2.254",
            "192.0.2.255-192.0.3.0",
            "192.0.2.17-192.0.5.3",
            "0.0.0.0/30",
            "255.255.255.250-255.255.255.255",
            "192.0.2.77/32",
            "2001:db8::/120",
        ] {
            let r = Range::parse(text).unwrap();
            let walked =
                r.iter().filter(|ip| matches!(ip, IpAddr::V4(a) if matches!(a.octets()[3], 0 | 255)));
            assert_eq!(r.buggy(), walked.count() as u128, "{text}");
        }
        // The whole IPv4 space, at once.
        assert_eq!(Range::parse("0.0.0.0/0").unwrap().buggy(), 2 << 24);
    }
}
