//! Which addresses each LoadBalancer Service gets, by MetalLB's rules. Pure: plain data in,
//! decisions out; the reconciler reads Services and pools into it and writes the results back.
//!
//! Invariants: an address is held by several Services only when they may share it (same sharing
//! key, no clashing port, compatible traffic policies); a Service given an address from a pool
//! keeps it through any change of the pools (it is only "stranded", and said so), and loses it
//! only when the Service itself asks for something else.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use herald_kube::{pool::Pool, selector::Labels};

/// What a Service asks for, as the allocator needs to see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    pub namespace_labels: Labels,
    /// Addresses asked for (`metallb.io/loadBalancerIPs` or `spec.loadBalancerIP`).
    pub requested: Vec<IpAddr>,
    /// Pool asked for (`metallb.io/address-pool`).
    pub pool: Option<String>,
    /// The pool its current addresses were given from (`metallb.io/ip-allocated-from-pool`, which
    /// the controller writes): set only on a Service that was given addresses.
    pub allocated_from: Option<String>,
    /// `metallb.io/allow-shared-ip`.
    pub sharing_key: Option<String>,
    pub families: Families,
    pub ports: Vec<Port>,
    /// externalTrafficPolicy: Local, with the Service's pod selector.
    pub local_traffic: Option<Labels>,
}

impl Request {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    #[default]
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }
}

/// `spec.ipFamilies` and `spec.ipFamilyPolicy`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Families {
    /// In order of preference; the first is the primary family.
    pub order: Vec<Family>,
    pub policy: FamilyPolicy,
}

impl Default for Families {
    fn default() -> Self {
        Self { order: vec![Family::V4], policy: FamilyPolicy::SingleStack }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FamilyPolicy {
    #[default]
    SingleStack,
    PreferDualStack,
    RequireDualStack,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Port {
    pub protocol: String,
    pub port: u16,
}

/// Addresses given to a Service, all from one pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub pool: String,
    pub ips: Vec<IpAddr>,
    /// Set when the pools in force no longer give these addresses (the pool was deleted, refused,
    /// shrunk, or covers a node's address now): the Service keeps them, and this says why they
    /// would not be given today.
    pub stranded: Option<AllocError>,
}

/// Why a Service got no address; the text goes into an AllocationFailed Event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("no pool named {0:?}")]
    UnknownPool(String),
    #[error("{0} is in no pool")]
    NotInAnyPool(IpAddr),
    #[error("{ip} is not in pool {pool:?}")]
    NotInPool { ip: IpAddr, pool: String },
    #[error("{0} may not be given out (avoidBuggyIPs)")]
    Buggy(IpAddr),
    #[error("{ip} is an address of node {node}")]
    NodeAddress { ip: IpAddr, node: String },
    #[error("{ip} is in use by {by}, and may not be shared with it ({why})")]
    InUse { ip: IpAddr, by: String, why: String },
    #[error("the requested addresses are not from one pool")]
    SeveralPools,
    #[error("the requested addresses do not fit the Service's IP families")]
    Families,
    #[error("no pool has a free address for this Service ({0})")]
    NoAddress(String),
}

impl AllocError {
    /// Whether the error is about the pools in force, not about what the Service asks: a held
    /// address that fails only this way stays with its Service.
    fn is_about_pools(&self) -> bool {
        matches!(
            self,
            AllocError::UnknownPool(_)
                | AllocError::NotInAnyPool(_)
                | AllocError::NotInPool { .. }
                | AllocError::Buggy(_)
                | AllocError::NodeAddress { .. }
        )
    }
}

/// One Service holding an address, with what sharing depends on.
#[derive(Clone, Debug)]
struct Holder {
    service: String,
    sharing_key: Option<String>,
    ports: Vec<Port>,
    local_traffic: Option<Labels>,
}

impl Holder {
    fn of(svc: &Request) -> Self {
        Self {
            service: svc.key(),
            sharing_key: svc.sharing_key.clone(),
            ports: svc.ports.clone(),
            local_traffic: svc.local_traffic.clone(),
        }
    }

    /// Why `self` and `other` may not share an address, if they may not.
    fn conflict(&self, other: &Holder) -> Option<String> {
        match (&self.sharing_key, &other.sharing_key) {
            (Some(a), Some(b)) if a == b => {}
            _ => return Some("no common sharing key".into()),
        }
        if let Some(p) = self.ports.iter().find(|p| other.ports.contains(p)) {
            return Some(format!("both use {}/{}", p.protocol, p.port));
        }
        if self.local_traffic != other.local_traffic {
            return Some("traffic policies or pod selectors differ".into());
        }
        None
    }
}

#[derive(Default)]
pub struct Allocator {
    /// In the order auto-assignment tries them.
    pools: Vec<Pool>,
    holders: BTreeMap<IpAddr, Vec<Holder>>,
    assigned: BTreeMap<String, Assignment>,
    /// Per pool and family (IPv4?): every usable address below it is held. Searches for a free
    /// address start there, so filling a pool costs O(1) per address, not O(pool).
    cursors: BTreeMap<(String, bool), IpAddr>,
    /// The nodes' own addresses (InternalIP, ExternalIP), never given out: a pool that covers
    /// one stays in force without it.
    node_addresses: BTreeMap<IpAddr, String>,
}

impl Allocator {
    pub fn new(mut pools: Vec<Pool>) -> Self {
        // Lower priority numbers first, pools without one last; by name within.
        pools.sort_by(|a, b| {
            (a.priority.is_none(), a.priority, &a.name).cmp(&(b.priority.is_none(), b.priority, &b.name))
        });
        Self { pools, ..Default::default() }
    }

    /// Never gives out these addresses, each a node's (by name).
    pub fn with_node_addresses(self, node_addresses: BTreeMap<IpAddr, String>) -> Self {
        Self { node_addresses, ..self }
    }

    pub fn assignment(&self, service: &str) -> Option<&Assignment> {
        self.assigned.get(service)
    }

    /// Gives `svc` its addresses. Its `current` ones (from its status) are kept while it asks
    /// for nothing else, so a restart changes nothing: when the pools in force still give them,
    /// and when they do not but a pool gave them before (stranded); otherwise it gets what it
    /// asks for, or what the pools give it. On error it holds nothing.
    pub fn allocate(&mut self, svc: &Request, current: &[IpAddr]) -> Result<Assignment, AllocError> {
        self.release(&svc.key());
        let keep = !current.is_empty() && (svc.requested.is_empty() || same_set(current, &svc.requested));
        if keep {
            match self.check(svc, current) {
                Ok(a) => return Ok(self.record(svc, a)),
                Err(why) if let Some(pool) = self.strandable(svc, current, &why) => {
                    let a = Assignment { pool, ips: current.to_vec(), stranded: Some(why) };
                    return Ok(self.record(svc, a));
                }
                Err(_) => {}
            }
        }
        let assignment =
            if svc.requested.is_empty() { self.pick(svc)? } else { self.check(svc, &svc.requested)? };
        Ok(self.record(svc, assignment))
    }

    /// Frees `service`'s addresses.
    pub fn release(&mut self, service: &str) {
        if let Some(old) = self.assigned.remove(service) {
            for ip in old.ips {
                if let Some(holders) = self.holders.get_mut(&ip) {
                    holders.retain(|h| h.service != service);
                    if holders.is_empty() {
                        self.holders.remove(&ip);
                        if let Some(cursor) = self.cursors.get_mut(&(old.pool.clone(), ip.is_ipv4()))
                            && ip < *cursor
                        {
                            *cursor = ip;
                        }
                    }
                }
            }
        }
    }

    /// (assigned, usable) addresses of `pool` for IPv4 and IPv6.
    pub fn counts(&self, pool: &str) -> [(u128, u128); 2] {
        let Some(p) = self.pools.iter().find(|p| p.name == pool) else { return [(0, 0); 2] };
        [true, false].map(|v4| {
            let used = self.holders.keys().filter(|ip| ip.is_ipv4() == v4 && p.usable(**ip)).count() as u128;
            (used, p.capacity(v4))
        })
    }

    /// The pool `svc` keeps its `current` addresses under though the pools in force would not
    /// give them (`why`): the pool that gave them, if a pool gave them, the Service still asks
    /// for that pool (or none), and no holder of the addresses objects to sharing them.
    fn strandable(&self, svc: &Request, current: &[IpAddr], why: &AllocError) -> Option<String> {
        let from = svc.allocated_from.as_ref()?;
        let asks_the_same = svc.pool.as_ref().is_none_or(|p| p == from);
        let shareable = current.iter().all(|ip| self.shareable(svc, *ip).is_ok());
        (why.is_about_pools() && asks_the_same && shareable).then(|| from.clone())
    }

    /// Whether `ips` (asked for, or held from before) can be `svc`'s.
    fn check(&self, svc: &Request, ips: &[IpAddr]) -> Result<Assignment, AllocError> {
        let pool = match &svc.pool {
            Some(name) => self.pool(name)?,
            None => {
                let first = *ips.first().ok_or(AllocError::Families)?;
                self.pools.iter().find(|p| p.contains(first)).ok_or(AllocError::NotInAnyPool(first))?
            }
        };
        for &ip in ips {
            if !pool.contains(ip) {
                return Err(match svc.pool {
                    Some(_) => AllocError::NotInPool { ip, pool: pool.name.clone() },
                    None if self.pools.iter().any(|p| p.contains(ip)) => AllocError::SeveralPools,
                    None => AllocError::NotInAnyPool(ip),
                });
            }
            if !pool.usable(ip) {
                return Err(AllocError::Buggy(ip));
            }
            if let Some(node) = self.node_addresses.get(&ip) {
                return Err(AllocError::NodeAddress { ip, node: node.clone() });
            }
            self.shareable(svc, ip)?;
        }
        let families: BTreeSet<Family> = ips.iter().map(|ip| Family::of(*ip)).collect();
        let fits = families.len() == ips.len()
            && match svc.families.policy {
                FamilyPolicy::SingleStack => ips.len() == 1,
                FamilyPolicy::PreferDualStack => families.iter().all(|f| svc.families.order.contains(f)),
                FamilyPolicy::RequireDualStack => families.len() == 2,
            };
        if !fits {
            return Err(AllocError::Families);
        }
        Ok(Assignment { pool: pool.name.clone(), ips: ips.to_vec(), stranded: None })
    }

    /// Picks addresses from the pools that admit `svc`, in order; within a pool, an address
    /// already shared under `svc`'s sharing key first, then the first free one.
    fn pick(&self, svc: &Request) -> Result<Assignment, AllocError> {
        let candidates: Vec<&Pool> = match &svc.pool {
            Some(name) => vec![self.pool(name)?],
            None => self
                .pools
                .iter()
                .filter(|p| p.auto_assign && p.admits(&svc.namespace, &svc.namespace_labels, &svc.labels))
                .collect(),
        };
        if candidates.is_empty() {
            return Err(AllocError::NoAddress("no pool admits it".into()));
        }
        let wanted: Vec<Family> = match svc.families.policy {
            FamilyPolicy::SingleStack => svc.families.order.iter().take(1).copied().collect(),
            _ => svc.families.order.clone(),
        };
        for pool in candidates {
            let found: Vec<IpAddr> = wanted.iter().filter_map(|f| self.free_in(pool, *f, svc)).collect();
            let enough = match svc.families.policy {
                FamilyPolicy::RequireDualStack => found.len() == 2,
                FamilyPolicy::PreferDualStack => !found.is_empty() && Family::of(found[0]) == wanted[0],
                FamilyPolicy::SingleStack => found.len() == 1,
            };
            if enough {
                return Ok(Assignment { pool: pool.name.clone(), ips: found, stranded: None });
            }
        }
        Err(AllocError::NoAddress("every admitting pool is full for its IP families".into()))
    }

    fn free_in(&self, pool: &Pool, family: Family, svc: &Request) -> Option<IpAddr> {
        let v4 = family == Family::V4;
        if svc.sharing_key.is_some() {
            let shared = self.holders.keys().filter(|ip| {
                ip.is_ipv4() == v4 && pool.usable(**ip) && !self.node_addresses.contains_key(ip)
            });
            if let Some(ip) = shared.copied().find(|ip| self.shareable(svc, *ip).is_ok()) {
                return Some(ip);
            }
        }
        let from = self.cursors.get(&(pool.name.clone(), v4)).copied();
        pool.addresses_from(v4, from).find(|ip| !self.taken(ip))
    }

    /// Held by a Service, or a node's own.
    fn taken(&self, ip: &IpAddr) -> bool {
        self.holders.contains_key(ip) || self.node_addresses.contains_key(ip)
    }

    fn shareable(&self, svc: &Request, ip: IpAddr) -> Result<(), AllocError> {
        let me = Holder::of(svc);
        for h in self.holders.get(&ip).into_iter().flatten() {
            if let Some(why) = me.conflict(h) {
                return Err(AllocError::InUse { ip, by: h.service.clone(), why });
            }
        }
        Ok(())
    }

    fn pool(&self, name: &str) -> Result<&Pool, AllocError> {
        self.pools.iter().find(|p| p.name == name).ok_or_else(|| AllocError::UnknownPool(name.to_owned()))
    }

    fn record(&mut self, svc: &Request, assignment: Assignment) -> Assignment {
        for ip in &assignment.ips {
            self.holders.entry(*ip).or_default().push(Holder::of(svc));
        }
        // Move the cursors past what is now held.
        if let Some(pool) = self.pools.iter().find(|p| p.name == assignment.pool) {
            for v4 in [true, false] {
                let key = (pool.name.clone(), v4);
                let from = self.cursors.get(&key).copied();
                if let Some(next) = pool.addresses_from(v4, from).find(|ip| !self.taken(ip)) {
                    self.cursors.insert(key, next);
                }
            }
        }
        self.assigned.insert(svc.key(), assignment.clone());
        assignment
    }
}

fn same_set(a: &[IpAddr], b: &[IpAddr]) -> bool {
    a.iter().collect::<BTreeSet<_>>() == b.iter().collect::<BTreeSet<_>>()
}

#[cfg(test)]
#[path = "allocator_tests.rs"]
mod tests;
