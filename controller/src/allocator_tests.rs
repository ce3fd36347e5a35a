use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use rand::{RngExt as _, SeedableRng as _, rngs::StdRng};

use super::*;
use herald_kube::crd::{IPAddressPoolSpec, ServiceAllocation};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pool(name: &str, addresses: &[&str]) -> Pool {
    let spec = IPAddressPoolSpec {
        addresses: addresses.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    };
    Pool::from_spec(name, &spec).unwrap()
}

fn svc(name: &str) -> Request {
    Request { namespace: "default".into(), name: name.into(), ..Default::default() }
}

fn port(p: u16) -> Port {
    Port { protocol: "TCP".into(), port: p }
}

fn ips(a: &Assignment) -> Vec<String> {
    a.ips.iter().map(ToString::to_string).collect()
}

#[test]
fn first_free_address_of_the_first_pool() {
    let mut a = Allocator::new(vec![pool("a", &["192.0.2.0/30"])]);
    assert_eq!(ips(&a.allocate(&svc("one"), &[]).unwrap()), ["192.0.2.0"]);
    assert_eq!(ips(&a.allocate(&svc("two"), &[]).unwrap()), ["192.0.2.1"]);
    a.release("default/one");
    assert_eq!(ips(&a.allocate(&svc("three"), &[]).unwrap()), ["192.0.2.0"], "freed addresses are reused");
    assert_eq!(a.counts("a"), [(2, 4), (0, 0)]);
}

#[test]
fn pool_full() {
    let mut a = Allocator::new(vec![pool("a", &["192.0.2.7/32"])]);
    a.allocate(&svc("one"), &[]).unwrap();
    assert_eq!(
        a.allocate(&svc("two"), &[]).unwrap_err().to_string(),
        "no pool has a free address for this Service (every admitting pool is full for its IP families)"
    );
    assert!(a.assignment("default/two").is_none());
}

#[test]
fn priority_then_name() {
    let mut low = pool("z-low", &["198.51.100.0/30"]);
    low.priority = Some(10);
    let mut high = pool("y-high", &["203.0.113.0/30"]);
    high.priority = Some(1);
    let unranked = pool("a-none", &["192.0.2.0/30"]);
    let mut a = Allocator::new(vec![unranked, low, high]);
    assert_eq!(a.allocate(&svc("one"), &[]).unwrap().pool, "y-high");
}

#[test]
fn auto_assign_false_only_on_request() {
    let mut manual = pool("manual", &["198.51.100.0/30"]);
    manual.auto_assign = false;
    let mut a = Allocator::new(vec![manual, pool("auto", &["192.0.2.0/30"])]);
    assert_eq!(a.allocate(&svc("one"), &[]).unwrap().pool, "auto");
    let by_pool = Request { pool: Some("manual".into()), ..svc("two") };
    assert_eq!(a.allocate(&by_pool, &[]).unwrap().pool, "manual");
    let by_ip = Request { requested: vec![ip("198.51.100.3")], ..svc("three") };
    assert_eq!(ips(&a.allocate(&by_ip, &[]).unwrap()), ["198.51.100.3"]);
}

#[test]
fn requested_addresses() {
    let mut a = Allocator::new(vec![pool("a", &["192.0.2.0/29"]), pool("b", &["198.51.100.0/29"])]);
    let want = |name: &str, addr: &str| Request { requested: vec![ip(addr)], ..svc(name) };
    assert_eq!(ips(&a.allocate(&want("one", "192.0.2.5"), &[]).unwrap()), ["192.0.2.5"]);
    assert_eq!(
        a.allocate(&want("two", "203.0.113.1"), &[]).unwrap_err(),
        AllocError::NotInAnyPool(ip("203.0.113.1"))
    );
    assert_eq!(
        a.allocate(&want("three", "192.0.2.5"), &[]).unwrap_err().to_string(),
        "192.0.2.5 is in use by default/one, and may not be shared with it (no common sharing key)"
    );
    let wrong_pool = Request { pool: Some("b".into()), ..want("four", "192.0.2.6") };
    assert_eq!(a.allocate(&wrong_pool, &[]).unwrap_err().to_string(), "192.0.2.6 is not in pool \"b\"");
    let unknown = Request { pool: Some("nope".into()), ..svc("five") };
    assert_eq!(a.allocate(&unknown, &[]).unwrap_err(), AllocError::UnknownPool("nope".into()));
    let mut buggy = pool("c", &["203.0.113.0/24"]);
    buggy.avoid_buggy_ips = true;
    let mut a = Allocator::new(vec![buggy]);
    assert_eq!(
        a.allocate(&want("six", "203.0.113.255"), &[]).unwrap_err(),
        AllocError::Buggy(ip("203.0.113.255"))
    );
    assert_eq!(ips(&a.allocate(&svc("seven"), &[]).unwrap()), ["203.0.113.1"], ".0 is skipped");
}

#[test]
fn sharing() {
    let mut a = Allocator::new(vec![pool("a", &["192.0.2.0/30"])]);
    let shared = |name: &str, key: &str, p: u16| Request {
        sharing_key: Some(key.into()),
        ports: vec![port(p)],
        ..svc(name)
    };
    let first = a.allocate(&shared("web", "k", 80), &[]).unwrap();
    assert_eq!(
        a.allocate(&shared("dns", "k", 53), &[]).unwrap().ips,
        first.ips,
        "same key, other port: shared"
    );
    let other_key = a.allocate(&shared("mail", "other", 25), &[]).unwrap();
    assert_ne!(other_key.ips, first.ips, "another key gets its own address");
    let clash = Request { requested: first.ips.clone(), ..shared("web2", "k", 80) };
    assert_eq!(
        a.allocate(&clash, &[]).unwrap_err().to_string(),
        "192.0.2.0 is in use by default/web, and may not be shared with it (both use TCP/80)"
    );
    let local = Request {
        requested: first.ips.clone(),
        local_traffic: Some(Labels::new()),
        ..shared("x", "k", 8080)
    };
    assert!(matches!(a.allocate(&local, &[]).unwrap_err(), AllocError::InUse { .. }), "Local beside Cluster");
}

#[test]
fn dual_stack() {
    let mut a = Allocator::new(vec![
        pool("v4", &["192.0.2.0/30"]),
        pool("dual", &["198.51.100.0/30", "2001:db8::/126"]),
    ]);
    let require = Families { order: vec![Family::V6, Family::V4], policy: FamilyPolicy::RequireDualStack };
    let both = a.allocate(&Request { families: require.clone(), ..svc("both") }, &[]).unwrap();
    assert_eq!((both.pool.as_str(), ips(&both)), ("dual", vec!["2001:db8::".into(), "198.51.100.0".into()]));
    // Pools go in name order ("dual" before "v4"); the first that serves the primary family wins,
    // with the other family too where it has it.
    let prefer = Families { order: vec![Family::V4, Family::V6], policy: FamilyPolicy::PreferDualStack };
    let got = a.allocate(&Request { families: prefer.clone(), ..svc("prefer") }, &[]).unwrap();
    assert_eq!((got.pool.as_str(), ips(&got)), ("dual", vec!["198.51.100.1".into(), "2001:db8::1".into()]));
    let mut v4_only = Allocator::new(vec![pool("v4", &["192.0.2.0/30"])]);
    let got = v4_only.allocate(&Request { families: prefer, ..svc("prefer") }, &[]).unwrap();
    assert_eq!(ips(&got), ["192.0.2.0"], "PreferDualStack settles for one family");
    let v6 = Families { order: vec![Family::V6], policy: FamilyPolicy::SingleStack };
    assert_eq!(ips(&a.allocate(&Request { families: v6, ..svc("six") }, &[]).unwrap()), ["2001:db8::2"]);
    let mut only_v4 = Allocator::new(vec![pool("v4", &["192.0.2.0/30"])]);
    assert!(matches!(
        only_v4.allocate(&Request { families: require, ..svc("x") }, &[]),
        Err(AllocError::NoAddress(_))
    ));
    let two_v4 = Request { requested: vec![ip("192.0.2.1"), ip("192.0.2.2")], ..svc("y") };
    assert_eq!(only_v4.allocate(&two_v4, &[]).unwrap_err(), AllocError::Families);
}

#[test]
fn namespaces_and_selectors() {
    let allocation = ServiceAllocation {
        priority: Some(1),
        namespaces: vec!["team".into()],
        service_selectors: vec![LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let spec = IPAddressPoolSpec {
        addresses: vec!["198.51.100.0/30".into()],
        service_allocation: Some(allocation),
        ..Default::default()
    };
    let restricted = Pool::from_spec("team", &spec).unwrap();
    let mut a = Allocator::new(vec![restricted, pool("rest", &["192.0.2.0/30"])]);
    let web = Labels::from([("app".to_string(), "web".to_string())]);
    let in_team = |name: &str, labels: Labels| Request { namespace: "team".into(), labels, ..svc(name) };
    assert_eq!(a.allocate(&in_team("web", web.clone()), &[]).unwrap().pool, "team");
    assert_eq!(
        a.allocate(&in_team("db", Labels::new()), &[]).unwrap().pool,
        "rest",
        "selector does not match"
    );
    assert_eq!(
        a.allocate(&Request { labels: web, ..svc("elsewhere") }, &[]).unwrap().pool,
        "rest",
        "other namespace"
    );
}

#[test]
fn keeps_valid_current_addresses_and_replaces_invalid_ones() {
    let mut a = Allocator::new(vec![pool("a", &["192.0.2.0/29"])]);
    assert_eq!(
        ips(&a.allocate(&svc("one"), &[ip("192.0.2.6")]).unwrap()),
        ["192.0.2.6"],
        "a restart keeps it"
    );
    // An address left outside every pool (the pool was edited) is replaced.
    assert_eq!(ips(&a.allocate(&svc("two"), &[ip("203.0.113.9")]).unwrap()), ["192.0.2.0"]);
    // A request that changed wins over the current address.
    let moved = Request { requested: vec![ip("192.0.2.3")], ..svc("one") };
    assert_eq!(ips(&a.allocate(&moved, &[ip("192.0.2.6")]).unwrap()), ["192.0.2.3"]);
    assert_eq!(ips(&a.allocate(&svc("three"), &[]).unwrap()), ["192.0.2.1"]);
}

/// Seeded cases: a failure reproduces.
struct Gen(StdRng);

impl Gen {
    fn below(&mut self, n: u64) -> u64 {
        self.0.random_range(0..n)
    }
}

/// A random Service among 12 names: maybe a sharing key, a port, a requested address.
fn random_service(g: &mut Gen) -> Request {
    let mut s = svc(&format!("s{}", g.below(12)));
    if g.below(3) == 0 {
        s.sharing_key = Some(format!("k{}", g.below(2)));
    }
    s.ports = vec![port(80 + g.below(3) as u16)];
    if g.below(4) == 0 {
        s.requested = vec![ip(&format!("192.0.2.{}", g.below(10)))];
    }
    if g.below(5) == 0 {
        s.local_traffic = Some(Labels::new());
    }
    s
}

/// MetalLB's sharing rule, restated independently of `Holder::conflict`.
fn may_share(x: &Holder, y: &Holder) -> bool {
    x.sharing_key.is_some()
        && x.sharing_key == y.sharing_key
        && x.ports.iter().all(|p| !y.ports.contains(p))
        && x.local_traffic == y.local_traffic
}

/// Never two holders of one address unless they may share it; holders and assignments agree.
fn assert_invariants(a: &Allocator) {
    for (ip, holders) in &a.holders {
        for (i, x) in holders.iter().enumerate() {
            for y in &holders[i + 1..] {
                assert!(may_share(x, y), "{ip} held by {} and {}", x.service, y.service);
            }
            assert!(a.assigned[&x.service].ips.contains(ip));
        }
    }
    for (service, assignment) in &a.assigned {
        let pool = a.pools.iter().find(|p| p.name == assignment.pool).unwrap();
        for ip in &assignment.ips {
            assert!(pool.usable(*ip), "{service} holds {ip}, not usable in {}", pool.name);
            assert!(a.holders[ip].iter().any(|h| h.service == *service));
        }
    }
}

#[test]
fn property_never_two_owners_and_stable_across_restarts() {
    let mut g = Gen(StdRng::seed_from_u64(0x0a11_0ca7));
    for _ in 0..300 {
        let pools = vec![pool("a", &["192.0.2.0-192.0.2.5"]), pool("b", &["192.0.2.6-192.0.2.9"])];
        let mut a = Allocator::new(pools.clone());
        let mut services: BTreeMap<String, Request> = BTreeMap::new();
        for _ in 0..40 {
            let s = random_service(&mut g);
            if g.below(5) == 0 {
                a.release(&s.key());
                services.remove(&s.key());
            } else {
                let current = a.assignment(&s.key()).map(|x| x.ips.clone()).unwrap_or_default();
                match a.allocate(&s, &current) {
                    Ok(_) => drop(services.insert(s.key(), s)),
                    Err(_) => drop(services.remove(&s.key())),
                }
            }
            assert_invariants(&a);
        }
        // A restart: a new allocator rebuilt from the statuses, in another order, keeps every
        // address as it was.
        let mut order: Vec<&Request> = services.values().collect();
        order.reverse();
        let mut restarted = Allocator::new(pools);
        for s in order {
            let before = a.assignment(&s.key()).unwrap().clone();
            assert_eq!(restarted.allocate(s, &before.ips).unwrap(), before, "{} moved on restart", s.key());
        }
        assert_invariants(&restarted);
    }
}
