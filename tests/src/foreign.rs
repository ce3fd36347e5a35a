//! Other loaders' programs on a node's interface, as real nodes carry them: a DDoS filter or
//! Cilium's acceleration at XDP, Calico's or Cilium's programs at TC ingress, one of which ends
//! the chain for every frame. Each is two instructions (`r0 = verdict; exit`) loaded through
//! bpf() under a name of its own, pinned, and attached the way its kind of loader does: `ip link
//! set xdp` (netlink), a TCX link, or a clsact filter through `tc`.
//!
//! Their run counts (while [`Stats`] is held) show that they still run.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use aya_obj::generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_insn, bpf_prog_type};

use crate::lab::Host;

/// TC verdicts.
pub const TC_ACT_OK: i32 = 0;
/// "Not mine": on to the next program (TCX_NEXT), or the next filter.
pub const TC_ACT_UNSPEC: i32 = -1;
pub const XDP_PASS: i32 = 2;

/// Where a foreign program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    /// Native XDP, through netlink (`ip link set dev eth0 xdpdrv pinned ...`).
    Xdp,
    /// A TCX ingress link (Linux 6.6), attached last, as loaders do by default.
    Tcx,
    /// A clsact ingress filter at this priority and handle (`tc filter add ... bpf da`).
    Filter { priority: u16, handle: u32 },
}

/// A foreign program, pinned under the lab's bpffs and attached to a host's eth0.
pub struct Foreign {
    pub name: String,
    pub id: u32,
    pub at: At,
    pin: PathBuf,
    link_pin: Option<PathBuf>,
}

impl Foreign {
    /// Loads a program named `name` that returns `verdict` and attaches it to `host`'s eth0 at
    /// `at`; its pins go under `dir` (on a bpffs).
    pub fn attach(host: &Host, dir: &Path, name: &str, verdict: i32, at: At) -> anyhow::Result<Self> {
        let prog_type = match at {
            At::Xdp => bpf_prog_type::BPF_PROG_TYPE_XDP,
            At::Tcx | At::Filter { .. } => bpf_prog_type::BPF_PROG_TYPE_SCHED_CLS,
        };
        let expected = match at {
            At::Xdp => bpf_attach_type::BPF_XDP,
            At::Tcx => bpf_attach_type::BPF_TCX_INGRESS,
            At::Filter { .. } => bpf_attach_type::BPF_CGROUP_INET_INGRESS, // 0: none
        };
        let program = load(prog_type, expected, name, verdict).with_context(|| format!("loading {name}"))?;
        let pin = dir.join(name);
        obj_pin(&program, &pin)?;
        let id = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .find(|p| p.name_as_str() == Some(name))
            .map(|p| p.id())
            .context("the loaded program is not listed")?;
        let pin_str = pin.to_str().context("pin path")?;
        let mut link_pin = None;
        match at {
            At::Xdp => {
                host.run("ip", &["link", "set", "dev", "eth0", "xdpdrv", "pinned", pin_str])?;
            }
            At::Tcx => {
                let ifindex = host.ifindex()?;
                let path = dir.join(format!("{name}-link"));
                let raw = program.as_raw_fd() as u32;
                let link = host.in_netns(move || Ok(tcx_link(raw, ifindex)?))?;
                obj_pin(&link, &path)?;
                link_pin = Some(path);
            }
            At::Filter { priority, handle } => {
                // The qdisc may be there already (another loader's, or Herald's).
                let _ = host.output("tc", &["qdisc", "add", "dev", "eth0", "clsact"]);
                let (priority, handle) = (priority.to_string(), format!("{handle:#x}"));
                host.run(
                    "tc",
                    &[
                        "filter",
                        "add",
                        "dev",
                        "eth0",
                        "ingress",
                        "prio",
                        &priority,
                        "handle",
                        &handle,
                        "bpf",
                        "object-pinned",
                        pin_str,
                        "direct-action",
                    ],
                )?;
            }
        }
        Ok(Self { name: name.into(), id, at, pin, link_pin })
    }

    /// How often the kernel has run it (counted while a [`Stats`] is held).
    pub fn runs(&self) -> anyhow::Result<u64> {
        aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .find(|p| p.id() == self.id)
            .map(|p| p.run_count())
            .with_context(|| format!("{} (id {}) is no longer loaded", self.name, self.id))
    }

    /// Whether `host`'s eth0 still runs it where it was put.
    pub fn is_attached(&self, host: &Host) -> anyhow::Result<bool> {
        let id = self.id;
        Ok(match self.at {
            At::Xdp => {
                host.run("ip", &["-d", "link", "show", "dev", "eth0"])?.contains(&format!(" id {id} "))
            }
            At::Tcx => host.in_netns(move || {
                use aya::programs::{SchedClassifier, TcAttachType};
                let (_, programs) = SchedClassifier::query_tcx(c"eth0", TcAttachType::Ingress)?;
                Ok(programs.iter().any(|p| p.id() == id))
            })?,
            At::Filter { priority, handle } => {
                let filters = host.run("tc", &["filter", "show", "dev", "eth0", "ingress"])?;
                filters.lines().any(|l| {
                    l.contains(&format!(" pref {priority} "))
                        && l.contains(&format!(" handle {handle:#x} "))
                        && l.contains(&format!(" id {id} "))
                })
            }
        })
    }

    /// Detaches it from `host` and removes its pins.
    pub fn remove(self, host: &Host) {
        match self.at {
            At::Xdp => {
                let _ = host.output("ip", &["link", "set", "dev", "eth0", "xdpdrv", "off"]);
            }
            At::Tcx => {}
            At::Filter { priority, handle } => {
                let (priority, handle) = (priority.to_string(), format!("{handle:#x}"));
                let _ = host.output(
                    "tc",
                    &["filter", "del", "dev", "eth0", "ingress", "prio", &priority, "handle", &handle, "bpf"],
                );
            }
        }
        if let Some(link) = &self.link_pin {
            let _ = std::fs::remove_file(link);
        }
        let _ = std::fs::remove_file(&self.pin);
    }
}

/// A TC program named `name` that returns `verdict`, pinned at `dir/name`, attached nowhere.
pub fn pinned_tc_program(dir: &Path, name: &str, verdict: i32) -> anyhow::Result<PathBuf> {
    let program = load(
        bpf_prog_type::BPF_PROG_TYPE_SCHED_CLS,
        bpf_attach_type::BPF_CGROUP_INET_INGRESS,
        name,
        verdict,
    )?;
    let pin = dir.join(name);
    obj_pin(&program, &pin)?;
    Ok(pin)
}

/// The kernel counts programs' runs while this is held.
pub struct Stats(#[allow(dead_code, reason = "held")] OwnedFd);

impl Stats {
    pub fn enable() -> anyhow::Result<Self> {
        Ok(Self(aya::sys::enable_stats(aya::sys::Stats::RunTime).context("BPF_ENABLE_STATS")?))
    }
}

/// `r0 = verdict; exit`.
fn instructions(verdict: i32) -> [bpf_insn; 2] {
    // SAFETY: bpf_insn is plain data; all zeroes is a valid value.
    let mut mov: bpf_insn = unsafe { std::mem::zeroed() };
    mov.code = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K, into r0
    mov.imm = verdict;
    // SAFETY: as above.
    let mut exit: bpf_insn = unsafe { std::mem::zeroed() };
    exit.code = 0x95; // BPF_JMP | BPF_EXIT
    [mov, exit]
}

fn load(
    prog_type: bpf_prog_type,
    expected: bpf_attach_type,
    name: &str,
    verdict: i32,
) -> anyhow::Result<OwnedFd> {
    let insns = instructions(verdict);
    let license = c"GPL";
    if name.len() > 15 {
        bail!("{name}: the kernel keeps 15 bytes of a name");
    }
    // SAFETY: zeroed bpf_attr is valid; the fields for BPF_PROG_LOAD, pointing at buffers that
    // outlive the call.
    unsafe {
        let mut attr = std::mem::zeroed::<bpf_attr>();
        let u = &mut attr.__bindgen_anon_3;
        u.prog_type = prog_type as u32;
        u.expected_attach_type = expected as u32;
        u.insns = insns.as_ptr() as u64;
        u.insn_cnt = insns.len() as u32;
        u.license = license.as_ptr() as u64;
        for (dst, src) in u.prog_name.iter_mut().zip(name.as_bytes()) {
            *dst = *src as _;
        }
        Ok(bpf_fd(bpf_cmd::BPF_PROG_LOAD, &mut attr)?)
    }
}

/// A TCX ingress link of program `program` on `ifindex` (in the caller's network namespace).
fn tcx_link(program: u32, ifindex: u32) -> io::Result<OwnedFd> {
    // SAFETY: zeroed bpf_attr is valid; the fields for BPF_LINK_CREATE.
    unsafe {
        let mut attr = std::mem::zeroed::<bpf_attr>();
        attr.link_create.__bindgen_anon_1.prog_fd = program;
        attr.link_create.__bindgen_anon_2.target_ifindex = ifindex;
        attr.link_create.attach_type = bpf_attach_type::BPF_TCX_INGRESS as u32;
        bpf_fd(bpf_cmd::BPF_LINK_CREATE, &mut attr)
    }
}

fn obj_pin(fd: &OwnedFd, path: &Path) -> anyhow::Result<()> {
    let path_c = CString::new(path.to_str().context("pin path")?)?;
    // SAFETY: zeroed bpf_attr is valid; the fields for BPF_OBJ_PIN.
    unsafe {
        let mut attr = std::mem::zeroed::<bpf_attr>();
        attr.__bindgen_anon_4.pathname = path_c.as_ptr() as u64;
        attr.__bindgen_anon_4.bpf_fd = fd.as_raw_fd() as u32;
        bpf(bpf_cmd::BPF_OBJ_PIN, &mut attr).with_context(|| format!("pinning at {}", path.display()))?;
    }
    Ok(())
}

/// # Safety
/// `attr` must hold valid fields for `cmd`, pointing at live buffers.
unsafe fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<i64> {
    // SAFETY: the caller vouches for `attr`.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            &raw mut *attr,
            size_of::<bpf_attr>() as libc::c_long,
        )
    };
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// # Safety
/// As [`bpf`]; `cmd` must return a new descriptor.
unsafe fn bpf_fd(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<OwnedFd> {
    // SAFETY: as the caller vouches; the descriptor is new and nothing else owns it.
    unsafe { bpf(cmd, attr).map(|fd| OwnedFd::from_raw_fd(fd as i32)) }
}
