//! Which hook runs the responder on an interface: a pure choice from what the kernel says about
//! the interface, with the rule in one place.
//!
//! The responder must know each request's 802.1Q tag, and most NICs strip it (rx VLAN offload,
//! on by default) before XDP runs. Then, in the lab and on real NICs alike: native XDP sees the
//! frame untagged, and its reply leaves untagged; generic XDP sees it untagged too, and its
//! reply leaves re-tagged by the stack. Either way a request from VLAN 42 is answered for an
//! address configured untagged. So XDP runs only where it can know the tag:
//! - the driver reports a tag it stripped to a program bound to it (the RX-metadata kfunc,
//!   Linux >= 6.8: veth, mlx5, ice), or
//! - the device sits on a bus and its rx VLAN offload can be off: a NIC then leaves the tag in
//!   the frame (the speaker turns the offload off, and back on when it stops).
//!
//! Elsewhere the responder runs at TC ingress, where the kernel shows a stripped tag in
//! `__sk_buff`. Generic XDP is never used: it runs on the same socket buffers as TC and cannot
//! see a stripped tag.
//!
//! A veth gets TC ingress too unless XDP is asked for (`--datapath xdp`): a reply sent with
//! XDP_TX on a veth reaches the other end only if that end runs an XDP program (or GRO), and the
//! other end is in a namespace the speaker cannot see. A node that is a container (kind, k3d,
//! minikube's docker driver, containerlab, LXD) has such an eth0, its other end in a bridge with
//! no program: native XDP there answers nobody.

use crate::{ethtool::Driver, netlink::XdpFeatures};

/// How the user wants the responder run (`--datapath`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// XDP in the driver where it can know every request's VLAN, TC ingress elsewhere.
    Auto,
    /// XDP in the driver only; an interface where it cannot know every VLAN is an error.
    Xdp,
    /// TC ingress only.
    Tc,
}

/// Where the responder runs on one interface, and why there if a better hook was passed over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    pub hook: Hook,
    pub why: Option<String>,
}

impl std::fmt::Display for Placed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.why {
            Some(why) => write!(f, "{} ({why})", self.hook),
            None => write!(f, "{}", self.hook),
        }
    }
}

/// What the kernel says about one interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// From the `netdev` netlink family; `None` where the kernel has none (Linux < 6.3).
    pub xdp: Option<XdpFeatures>,
    /// From ethtool; `None` where the device answers no ethtool request.
    pub driver: Option<Driver>,
    /// Whether rx VLAN offload is on; `None` where ethtool cannot say.
    pub rx_vlan_offload: Option<bool>,
    /// Another loader's program at the interface's XDP hook.
    pub foreign_xdp: Option<Foreign>,
}

/// A program of another loader, at a hook the responder would use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Foreign {
    pub id: u32,
    /// Its name as the kernel keeps it (at most 15 bytes; empty where it was loaded unnamed).
    pub name: String,
}

impl Foreign {
    /// Why the responder is not at XDP, in the words the log, `status` and `check` share.
    pub fn holding_xdp(&self) -> String {
        format!("another program, {self}, holds the XDP hook")
    }
}

impl std::fmt::Display for Foreign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name.as_str() {
            "" => write!(f, "program id {}", self.id),
            name => write!(f, "{name} (program id {})", self.id),
        }
    }
}

/// A way to run the responder on one interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hook {
    /// `herald_xdp_meta`: XDP in the driver, bound to the device, which reports stripped tags.
    XdpBound,
    /// `herald_xdp`: XDP in the driver, rx VLAN offload off, so tags stay in the frames.
    XdpInFrame,
    /// `herald_tc`: TC ingress.
    Tc,
}

impl Hook {
    /// Its name in metric labels: the program's, without `herald_`.
    pub fn label(self) -> &'static str {
        match self {
            Hook::XdpBound => "xdp_meta",
            Hook::XdpInFrame => "xdp",
            Hook::Tc => "tc",
        }
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Hook::XdpBound => "XDP (native, the driver reports stripped VLAN tags)",
            Hook::XdpInFrame => "XDP (native, rx VLAN offload off)",
            Hook::Tc => "TC ingress",
        })
    }
}

/// The hooks to try on an interface, best first, or why `--datapath xdp` cannot have one.
pub fn plan(mode: Mode, facts: &Facts) -> Result<Vec<Hook>, String> {
    let veth = facts.driver.as_ref().is_some_and(Driver::is_veth);
    if mode == Mode::Tc || (mode == Mode::Auto && veth) {
        return Ok(vec![Hook::Tc]);
    }
    // Without the netdev family the kernel cannot say; attaching will tell.
    let native = facts.xdp.is_none_or(|x| x.native);
    let reports_tags = facts.xdp.is_some_and(|x| x.native && x.vlan_tag);
    let on_a_bus = facts.driver.as_ref().is_some_and(Driver::on_a_bus);
    let mut hooks = Vec::new();
    if facts.foreign_xdp.is_some() {
        // Never replaced: TC ingress, which its passed frames reach.
    } else if reports_tags {
        hooks.push(Hook::XdpBound);
    } else if native && on_a_bus && facts.rx_vlan_offload.is_some() {
        hooks.push(Hook::XdpInFrame);
    }
    match mode {
        Mode::Xdp if hooks.is_empty() => Err(why_not_xdp(facts, native, on_a_bus)),
        Mode::Xdp => Ok(hooks),
        _ => {
            hooks.push(Hook::Tc);
            Ok(hooks)
        }
    }
}

/// Why XDP cannot know every request's VLAN on this interface.
fn why_not_xdp(facts: &Facts, native: bool, on_a_bus: bool) -> String {
    let driver = facts.driver.as_ref().map_or("unknown".into(), |d| d.name.clone());
    const USE: &str = "use --datapath auto (TC ingress here) or tc";
    if let Some(foreign) = &facts.foreign_xdp {
        return format!(
            "the XDP hook here is taken: another program, {foreign}, holds it, and Herald never replaces one; {USE}"
        );
    }
    let reason = if !native {
        format!("its driver ({driver}) has no native XDP")
    } else if facts.xdp.is_none() {
        "the kernel does not say whether its driver reports stripped VLAN tags to XDP (Linux >= 6.8 does)"
            .into()
    } else if on_a_bus {
        format!(
            "its driver ({driver}) reports no stripped VLAN tags to XDP, and its rx VLAN offload cannot be read"
        )
    } else {
        format!(
            "its driver ({driver}) reports no stripped VLAN tags to XDP, and it is no device on a bus, \
             where turning rx VLAN offload off would keep them in the frames"
        )
    };
    format!("XDP cannot know the VLAN of every request here: {reason}; {USE}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(native: Option<bool>, vlan_tag: bool, bus: &str, offload: Option<bool>) -> Facts {
        Facts {
            xdp: native.map(|native| XdpFeatures { native, vlan_tag }),
            driver: Some(Driver { name: "drv".into(), bus_info: bus.into() }),
            rx_vlan_offload: offload,
            foreign_xdp: None,
        }
    }

    fn held(facts: Facts) -> Facts {
        Facts { foreign_xdp: Some(Foreign { id: 41, name: "xdp_ddos".into() }), ..facts }
    }

    fn veth(native: Option<bool>, vlan_tag: bool) -> Facts {
        Facts {
            driver: Some(Driver { name: "veth".into(), bus_info: String::new() }),
            ..facts(native, vlan_tag, "", Some(true))
        }
    }

    /// What, the facts, the mode, and the hooks or the start of the error.
    type Row = (&'static str, Facts, Mode, Result<Vec<Hook>, &'static str>);

    #[test]
    fn table() {
        use Hook::*;
        let rows: Vec<Row> = vec![
            (
                "a software device that reports tags, 6.8+",
                facts(Some(true), true, "", Some(true)),
                Mode::Auto,
                Ok(vec![XdpBound, Tc]),
            ),
            ("veth on 6.8+: its peer may run no XDP", veth(Some(true), true), Mode::Auto, Ok(vec![Tc])),
            ("veth on 6.8+, XDP asked for", veth(Some(true), true), Mode::Xdp, Ok(vec![XdpBound])),
            (
                "mlx5 on 6.8+",
                facts(Some(true), true, "0000:03:00.0", Some(true)),
                Mode::Auto,
                Ok(vec![XdpBound, Tc]),
            ),
            (
                "ixgbe on 6.8+",
                facts(Some(true), false, "0000:03:00.0", Some(true)),
                Mode::Auto,
                Ok(vec![XdpInFrame, Tc]),
            ),
            (
                "ixgbe on 6.1",
                facts(None, false, "0000:03:00.0", Some(true)),
                Mode::Auto,
                Ok(vec![XdpInFrame, Tc]),
            ),
            ("veth on 6.1", veth(None, false), Mode::Auto, Ok(vec![Tc])),
            ("veth on 6.3 to 6.7", veth(Some(true), false), Mode::Auto, Ok(vec![Tc])),
            (
                "no native XDP",
                facts(Some(false), false, "0000:00:1f.6", Some(true)),
                Mode::Auto,
                Ok(vec![Tc]),
            ),
            ("offload unreadable", facts(Some(true), false, "0000:03:00.0", None), Mode::Auto, Ok(vec![Tc])),
            ("TC asked for", facts(Some(true), true, "", Some(true)), Mode::Tc, Ok(vec![Tc])),
            (
                "mlx5 on 6.8+, another program at XDP",
                held(facts(Some(true), true, "0000:03:00.0", Some(true))),
                Mode::Auto,
                Ok(vec![Tc]),
            ),
            (
                "ixgbe on 6.1, another program at XDP",
                held(facts(None, false, "0000:03:00.0", Some(true))),
                Mode::Auto,
                Ok(vec![Tc]),
            ),
            (
                "XDP asked for, another program at XDP",
                held(facts(Some(true), true, "", Some(true))),
                Mode::Xdp,
                Err("the XDP hook here is taken: another program, xdp_ddos (program id 41), holds it"),
            ),
            ("XDP asked for, bound", facts(Some(true), true, "", Some(true)), Mode::Xdp, Ok(vec![XdpBound])),
            (
                "XDP asked for, on a bus",
                facts(None, false, "0000:03:00.0", Some(false)),
                Mode::Xdp,
                Ok(vec![XdpInFrame]),
            ),
            (
                "XDP asked for, veth on 6.1",
                facts(None, false, "", Some(true)),
                Mode::Xdp,
                Err("XDP cannot know the VLAN of every request here: the kernel does not say"),
            ),
            (
                "XDP asked for, veth on 6.5",
                facts(Some(true), false, "", Some(true)),
                Mode::Xdp,
                Err(
                    "XDP cannot know the VLAN of every request here: its driver (drv) reports no stripped VLAN tags to XDP, and it is no device on a bus",
                ),
            ),
            (
                "XDP asked for, no native XDP",
                facts(Some(false), false, "", None),
                Mode::Xdp,
                Err("XDP cannot know the VLAN of every request here: its driver (drv) has no native XDP"),
            ),
        ];
        for (what, facts, mode, want) in rows {
            match (plan(mode, &facts), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{what}"),
                (Err(got), Err(want)) => {
                    assert!(got.starts_with(want), "{what}: {got}");
                    assert!(got.ends_with("use --datapath auto (TC ingress here) or tc"), "{what}: {got}");
                }
                (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
            }
        }
    }
}
