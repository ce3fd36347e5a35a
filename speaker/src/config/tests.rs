use super::*;

fn err(text: &str) -> String {
    parse(text).expect_err("config should be rejected").to_string()
}

#[test]
fn minimal_file_has_defaults() {
    let c = parse("node = \"node-a\"\n").unwrap();
    assert_eq!(c.node, "node-a");
    assert!(c.vips.is_empty());
    assert_eq!(c.gratuitous, Gratuitous::default());
}

#[test]
fn full_file() {
    let c = parse(
        r#"
        node = "node-a"
        [gratuitous]
        count = 5
        interval_ms = 50
        [[vip]]
        address = "192.0.2.10"
        interface = "eth0"
        [[vip]]
        address = " 192.0.2.11 "
        [[vip]]
        address = "192.0.2.12"
        interface = "eth1"
        vlan = 42
        "#,
    )
    .unwrap();
    assert_eq!(c.gratuitous, Gratuitous { count: 5, interval: Duration::from_millis(50), refresh: None });
    assert_eq!(
        c.vips,
        vec![
            Vip { address: [192, 0, 2, 10].into(), interface: Some("eth0".into()), vlan: 0, nodes: vec![] },
            Vip { address: [192, 0, 2, 11].into(), interface: None, vlan: 0, nodes: vec![] },
            Vip { address: [192, 0, 2, 12].into(), interface: Some("eth1".into()), vlan: 42, nodes: vec![] },
        ]
    );
}

#[test]
fn syntax_error_names_the_line() {
    let e = err("node = \"a\"\n[[vip]\naddress = \"192.0.2.1\"\n");
    assert!(e.contains("line 2"), "{e}");
}

#[test]
fn unknown_key_is_named() {
    let e = err("node = \"a\"\n[[vip]]\naddress = \"192.0.2.1\"\nintreface = \"eth0\"\n");
    assert!(e.contains("unknown field `intreface`"), "{e}");
    let e = err("node = \"a\"\ncolour = 1\n");
    assert!(e.contains("unknown field `colour`"), "{e}");
}

#[test]
fn the_node_is_the_host_without_a_name() {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_owned();
    assert_eq!(parse("[[vip]]\naddress = \"192.0.2.1\"\n").unwrap().node, host);
    assert_eq!(err("node = \"  \""), r#"node = "  ": must not be empty"#);
}

/// The Debian package's /etc/herald/herald.toml: valid as shipped, and announcing nothing
/// until an address is written into it; each commented example valid once uncommented.
#[test]
fn the_packaged_example_is_valid_and_announces_nothing() {
    let shipped = include_str!("../../debian/herald.toml");
    let config = parse(shipped).unwrap();
    assert!(config.vips.is_empty() && config.cluster.is_none());
    let uncommented: String = shipped
        .lines()
        .map(|line| line.strip_prefix('#').filter(|l| !l.starts_with([' ', '#'])).unwrap_or(line))
        .map(|line| line.to_owned() + "\n")
        .collect();
    let config = parse_with(&uncommented, &|_| Ok(b"0123456789abcdef".to_vec())).unwrap();
    assert!(!config.vips.is_empty() && config.cluster.is_some(), "{uncommented}");
}

#[test]
fn wrong_type_is_named_on_one_line() {
    assert_eq!(
        err("node = \"a\"\n[[vip]]\naddress = 10\n"),
        "line 3, column 11 (`address = 10`): invalid type: integer `10`, expected a string"
    );
}

#[test]
fn bad_address_names_field_and_value() {
    assert_eq!(
        err("node = \"a\"\n[[vip]]\naddress = \"192.0.2.1\"\n[[vip]]\naddress = \"192.0.2.300\"\n"),
        r#"vip[1].address = "192.0.2.300": not an IP address"#
    );
    for bad in [
        "0.0.0.0",
        "127.0.0.1",
        "224.0.0.1",
        "255.255.255.255",
        "169.254.1.1",
        "::",
        "::1",
        "ff02::1",
        "fe80::1",
        "::ffff:192.0.2.1",
    ] {
        let e = err(&format!("node = \"a\"\n[[vip]]\naddress = \"{bad}\"\n"));
        assert!(e.contains("not a unicast address"), "{bad}: {e}");
    }
}

#[test]
fn ipv6_addresses_are_announced_beside_ipv4() {
    let text = "node = \"a\"\n[[vip]]\naddress = \"192.0.2.1\"\n[[vip]]\naddress = \" 2001:db8::1 \"\n";
    let vips = parse(text).unwrap().vips;
    assert_eq!(vips[1].address, "2001:db8::1".parse::<std::net::IpAddr>().unwrap());
    // The same address written twice, however it is written, is one.
    let twice = "node = \"a\"\n[[vip]]\naddress = \"2001:db8::1\"\n[[vip]]\naddress = \"2001:0db8:0::1\"\n";
    assert_eq!(err(twice), "vip[1].address = 2001:db8::1: already listed as vip[0]");
}

#[test]
fn duplicate_vip_is_refused() {
    assert_eq!(
        err("node = \"a\"\n[[vip]]\naddress = \"192.0.2.1\"\n[[vip]]\naddress = \"192.0.2.1\"\n"),
        "vip[1].address = 192.0.2.1: already listed as vip[0]"
    );
    // The same address on two interfaces is two announcements, not a duplicate.
    let text = "node = \"a\"\n[[vip]]\naddress = \"192.0.2.1\"\ninterface = \"a\"\n\
                [[vip]]\naddress = \"192.0.2.1\"\ninterface = \"b\"\n";
    assert_eq!(parse(text).unwrap().vips.len(), 2);
}

#[test]
fn bad_interface_name() {
    assert_eq!(
        err("node = \"a\"\n[[vip]]\naddress = \"192.0.2.1\"\ninterface = \"a-very-long-interface\"\n"),
        r#"vip[0].interface = "a-very-long-interface": not an interface name"#
    );
}

#[test]
fn vlan_rules() {
    assert_eq!(
        err("node = \"a\"\n[[vip]]\naddress = \"192.0.2.1\"\ninterface = \"e\"\nvlan = 4095\n"),
        "vip[0].vlan = 4095: must be 1 to 4094"
    );
    assert_eq!(
        err("node = \"a\"\n[[vip]]\naddress = \"192.0.2.1\"\nvlan = 7\n"),
        "vip[0].vlan = 7: a tagged address needs `interface`, the device that carries the VLAN"
    );
    let e = err("node = \"a\"\n[[vip]]\naddress = \"192.0.2.1\"\ninterface = \"e\"\nvlan = -1\n");
    assert!(e.contains("vlan"), "{e}");
}

#[test]
fn gratuitous_bounds() {
    assert_eq!(err("node = \"a\"\n[gratuitous]\ncount = 1000\n"), "gratuitous.count = 1000: at most 100");
    assert_eq!(
        err("node = \"a\"\n[gratuitous]\ninterval_ms = 1\n"),
        "gratuitous.interval_ms = 1: must be 10 to 60000"
    );
    let c = parse("node = \"a\"\n[gratuitous]\ncount = 0\n").unwrap();
    assert_eq!(c.gratuitous.count, 0);
}

#[test]
fn load_names_the_file() {
    let dir = std::env::temp_dir().join(format!("herald-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "node = \"a\"\n[[vip]]\naddress = \"nope\"\n").unwrap();
    let e = load(&path).unwrap_err().to_string();
    assert_eq!(e, format!("config file {}: vip[0].address = \"nope\": not an IP address", path.display()));
    let e = load(&dir.join("missing.toml")).unwrap_err().to_string();
    assert!(e.starts_with("cannot read config file") && e.contains("missing.toml"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

const CLUSTER: &str = "node = \"a\"\n[cluster]\nbind = \"192.0.2.1:7946\"\n";

fn cluster_err(extra: &str) -> String {
    err(&format!("{CLUSTER}{extra}"))
}

#[test]
fn cluster_section() {
    let text = format!(
        "{CLUSTER}peers = [\"192.0.2.2:7946\", \"192.0.2.3:7946\"]\nkey = \"0123456789abcdef\"\nquorum = true\n\
         probe_period_ms = 200\n[[vip]]\naddress = \"192.0.2.10\"\nnodes = [\"b\", \"c\"]\n"
    );
    let c = parse(&text).unwrap();
    let cluster = c.cluster.unwrap();
    assert_eq!(cluster.bind, "192.0.2.1:7946".parse().unwrap());
    assert_eq!(cluster.peers.len(), 2);
    assert_eq!(cluster.configured_members(), 3);
    assert_eq!(cluster.key.bytes(), b"0123456789abcdef");
    assert!(cluster.quorum);
    assert_eq!(cluster.timers.probe_period, Duration::from_millis(200));
    assert_eq!(cluster.timers.suspect, Timers::default().suspect);
    assert_eq!(c.vips[0].nodes, ["b", "c"]);
    assert!(parse("node = \"a\"\n").unwrap().cluster.is_none());
}

#[test]
fn quorum_is_on_by_default_from_three_members() {
    let quorum = |peers: &str, extra: &str| {
        let text = format!("{CLUSTER}peers = [{peers}]\nkey = \"0123456789abcdef\"\n{extra}");
        parse(&text).unwrap().cluster.unwrap().quorum
    };
    let (two, three) = ("\"192.0.2.2:7946\"", "\"192.0.2.2:7946\", \"192.0.2.3:7946\"");
    assert!(quorum(three, ""), "three: a member cut off withdraws");
    assert!(!quorum(two, ""), "two: the survivor of a failure takes over");
    assert!(!quorum(three, "quorum = false\n"));
    assert!(quorum(two, "quorum = true\n"));
}

#[test]
fn cluster_key_file() {
    let read = |p: &Path| {
        if p == Path::new("/etc/herald/cluster.key") {
            Ok(b"  a-long-enough-shared-secret\n".to_vec())
        } else {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        }
    };
    let text = format!("{CLUSTER}key_file = \"/etc/herald/cluster.key\"\n");
    assert_eq!(
        parse_with(&text, &read).unwrap().cluster.unwrap().key.bytes(),
        b"a-long-enough-shared-secret"
    );
    // A binary key (`head -c 32 /dev/urandom`, MetalLB's Secret) is taken byte for byte.
    let binary = |_: &Path| Ok((0..32u8).map(|b| b.wrapping_mul(37) | 0x80).collect());
    let key = parse_with(&text, &binary).unwrap().cluster.unwrap().key;
    assert_eq!(key.bytes(), (0..32u8).map(|b| b.wrapping_mul(37) | 0x80).collect::<Vec<_>>());
    let short = |_: &Path| Ok(b"short\n".to_vec());
    let e = parse_with(&text, &short).unwrap_err().to_string();
    assert_eq!(e, "cluster.key_file = \"/etc/herald/cluster.key\": 5 bytes; at least 16 are needed");
    let text = format!("{CLUSTER}key_file = \"/nope\"\n");
    let e = parse_with(&text, &read).unwrap_err().to_string();
    assert!(e.starts_with("cluster.key_file = \"/nope\": cannot read:"), "{e}");
}

#[test]
fn cluster_errors() {
    assert_eq!(cluster_err("key = \"short\"\n"), "cluster.key = (hidden): 5 bytes; at least 16 are needed");
    assert_eq!(cluster_err(""), "cluster.key = (missing): membership messages must be authenticated");
    assert_eq!(
        cluster_err("key = \"0123456789abcdef\"\nkey_file = \"/k\"\n"),
        "cluster.key = (set): give `key` or `key_file`, not both"
    );
    let key = "key = \"0123456789abcdef\"\n";
    assert_eq!(
        cluster_err(&format!("{key}peers = [\"192.0.2.2\"]\n")),
        "cluster.peers[0] = \"192.0.2.2\": not an address:port (e.g. 192.0.2.1:7946)"
    );
    assert_eq!(
        cluster_err(&format!("{key}peers = [\"192.0.2.1:7946\"]\n")),
        "cluster.peers[0] = \"192.0.2.1:7946\": is this node's own bind address"
    );
    assert_eq!(
        cluster_err(&format!("{key}peers = [\"192.0.2.2:1\", \"192.0.2.2:1\"]\n")),
        "cluster.peers[1] = \"192.0.2.2:1\": is listed twice"
    );
    assert_eq!(
        cluster_err(&format!("{key}probe_rtt_ms = 100\n")),
        "cluster.probe_rtt_ms = 100: must be shorter than probe_period_ms"
    );
    assert_eq!(
        cluster_err(&format!("{key}probe_period_ms = 5\n")),
        "cluster.probe_period_ms = 5: must be 20 to 10000"
    );
    let e = cluster_err(&format!("{key}gossip = 1\n"));
    assert!(e.contains("unknown field `gossip`"), "{e}");
    assert_eq!(
        err("node = \"a\"\n[cluster]\nbind = \"0.0.0.0:7946\"\nkey = \"0123456789abcdef\"\n"),
        "cluster.bind = \"0.0.0.0:7946\": must be this node's own address, which peers reach"
    );
}

#[test]
fn refresh_and_nodes() {
    let c = parse("node = \"a\"\n[gratuitous]\nrefresh_ms = 5000\n").unwrap();
    assert_eq!(c.gratuitous.refresh, Some(Duration::from_secs(5)));
    assert_eq!(
        err("node = \"a\"\n[gratuitous]\nrefresh_ms = 10\n"),
        "gratuitous.refresh_ms = 10: must be 1000 to 3600000"
    );
    assert_eq!(
        err("node = \"a\"\n[[vip]]\naddress = \"192.0.2.1\"\nnodes = [\"\"]\n"),
        "vip[0].nodes = \"\": node names must not be empty"
    );
}
