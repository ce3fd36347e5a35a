//! `herald_xdp_meta`, loaded bound to one device and attached to it in native mode: the
//! responder that asks the driver for 802.1Q tags it stripped (`bpf_xdp_metadata_rx_vlan_tag`,
//! kernel >= 6.8). Two things aya 0.16 cannot do yet are done here: load a program bound to a
//! device (its BPF_PROG_LOAD sets no `prog_ifindex`), and resolve a kfunc that the object's BTF
//! does not describe (bpf-linker 0.13 emits no BTF for an extern declaration). Everything else
//! comes from aya-obj: the object is parsed, its globals set, and its map references pointed at
//! the maps the main object created, so both programs share them.

use std::{
    collections::{HashMap, HashSet},
    ffi::CString,
    io,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd, RawFd},
    path::Path,
};

use aya::maps::MapData;
use aya_obj::{
    EbpfSectionKind, Object,
    btf::{Btf, BtfKind},
    generated::{
        BPF_F_XDP_DEV_BOUND_ONLY, BPF_PSEUDO_KFUNC_CALL, XDP_FLAGS_DRV_MODE, bpf_attach_type, bpf_attr,
        bpf_cmd, bpf_insn, bpf_prog_type,
    },
};
use object::{Object as _, ObjectSection as _, ObjectSymbol as _, RelocationTarget};
use speaker_common::XDP_META_PROGRAM;

/// The kfunc `herald_xdp_meta` calls.
const KFUNC: &str = "bpf_xdp_metadata_rx_vlan_tag";
const BPF_JMP_CALL: u8 = 0x85;

#[derive(Debug, thiserror::Error)]
pub enum BoundError {
    #[error("parsing the object: {0}")]
    Parse(#[from] aya_obj::ParseError),
    #[error("reading the kernel's BTF: {0}")]
    KernelBtf(#[from] aya_obj::btf::BtfError),
    #[error("the kernel has no {KFUNC} (it came with Linux 6.8)")]
    NoKfunc,
    #[error("relocating: {0}")]
    Relocation(#[from] aya_obj::relocation::EbpfRelocationError),
    #[error("the object's map {0} has no counterpart in the main object")]
    UnknownMap(String),
    #[error("the object has no program {XDP_META_PROGRAM}")]
    NoProgram,
    #[error("creating its read-only data: {0}")]
    Rodata(#[from] aya::maps::MapError),
    #[error("{call}: {source}")]
    Syscall { call: &'static str, source: io::Error },
    #[error("the verifier refused it: {source}\n{log}")]
    Verifier { source: io::Error, log: String },
}

/// The program attached to one device; dropping it detaches it, unless the link is pinned.
#[derive(Debug)]
pub struct Link {
    link: OwnedFd,
    _program: OwnedFd,
}

impl Link {
    /// `program` (from [`prepare`]) attached to `ifindex` anew, in native mode.
    pub fn attach(program: OwnedFd, ifindex: u32) -> Result<Self, BoundError> {
        Ok(Self { link: link(program.as_fd(), ifindex)?, _program: program })
    }

    /// `program` in `link`, a link [`take_over`] took.
    pub fn taken(link: OwnedFd, program: OwnedFd) -> Self {
        Self { link, _program: program }
    }

    /// Pins the link at `path` (on a bpffs): it stays attached after this process.
    pub fn pin(&self, path: &Path) -> Result<(), BoundError> {
        let path = c_path(path, "BPF_OBJ_PIN")?;
        // SAFETY: zeroed bpf_attr is valid; the fields for BPF_OBJ_PIN, pointing at a live path.
        unsafe {
            let mut attr = std::mem::zeroed::<bpf_attr>();
            attr.__bindgen_anon_4.pathname = path.as_ptr().expose_provenance() as u64;
            attr.__bindgen_anon_4.bpf_fd = self.link.as_raw_fd() as u32;
            bpf(bpf_cmd::BPF_OBJ_PIN, &mut attr, "BPF_OBJ_PIN")?;
        }
        Ok(())
    }
}

/// The link pinned at `pin` (a stopped speaker left it attached), running `program` from now
/// on in place of its own; `None` where it does not open or take it.
pub fn take_over(pin: &Path, program: BorrowedFd<'_>) -> Option<OwnedFd> {
    let link = pinned(pin).ok()?;
    update(link.as_fd(), program).ok().map(|()| link)
}

/// The link pinned at `path`.
fn pinned(path: &Path) -> Result<OwnedFd, BoundError> {
    let path = c_path(path, "BPF_OBJ_GET")?;
    // SAFETY: zeroed bpf_attr is valid; the fields for BPF_OBJ_GET, pointing at a live path.
    unsafe {
        let mut attr = std::mem::zeroed::<bpf_attr>();
        attr.__bindgen_anon_4.pathname = path.as_ptr().expose_provenance() as u64;
        bpf_fd(bpf_cmd::BPF_OBJ_GET, &mut attr, "BPF_OBJ_GET")
    }
}

/// `path` for `call`, which takes a C string.
fn c_path(path: &Path, call: &'static str) -> Result<CString, BoundError> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| BoundError::Syscall { call, source: io::Error::new(io::ErrorKind::InvalidInput, e) })
}

/// Loads `herald_xdp_meta` from `object` bound to `ifindex`, with its maps pointed at `maps`
/// (name -> the main object's map) and `globals` set: the program, for [`Link::attach`] or
/// [`take_over`].
pub fn prepare(
    object: &[u8],
    ifindex: u32,
    maps: &HashMap<&str, BorrowedFd<'_>>,
    globals: &[(&str, &[u8])],
) -> Result<OwnedFd, BoundError> {
    let mut obj = Object::parse(object)?;
    obj.patch_map_data(globals.iter().map(|(name, value)| (*name, (*value, true))).collect())?;
    let kfunc =
        Btf::from_sys_fs()?.id_by_type_name_kind(KFUNC, BtfKind::Func).map_err(|_| BoundError::NoKfunc)?;
    patch_kfunc_calls(object, &mut obj, kfunc)?;

    // The object's own read-only data (globals, log formats) gets a map of its own; every other
    // map is the main object's.
    let own: Vec<(String, aya_obj::Map)> = obj.maps.drain().collect();
    let mut rodata = Vec::new();
    let mut fds: Vec<(&str, RawFd, &aya_obj::Map)> = Vec::new();
    for (name, map) in &own {
        if map.section_kind() == EbpfSectionKind::Rodata {
            rodata.push(frozen(name, map)?);
            fds.push((name, rodata.last().expect("pushed").fd().as_fd().as_raw_fd(), map));
        } else {
            let fd = maps.get(name.as_str()).ok_or_else(|| BoundError::UnknownMap(name.clone()))?;
            fds.push((name, fd.as_raw_fd(), map));
        }
    }
    let text: HashSet<usize> = obj.functions.keys().map(|(section, _)| *section).collect();
    obj.relocate_maps(fds.into_iter(), &text)?;
    obj.relocate_calls(&text)?;

    let program = obj.programs.get(XDP_META_PROGRAM).ok_or(BoundError::NoProgram)?;
    let function = obj.functions.get(&program.function_key()).ok_or(BoundError::NoProgram)?;
    let program = load(&function.instructions, &obj.license, ifindex)?;
    // The program holds its maps; the read-only data map can go.
    drop(rodata);
    Ok(program)
}

/// BPF_LINK_UPDATE: `link` runs `program` from now on, in place of its own.
fn update(link: BorrowedFd<'_>, program: BorrowedFd<'_>) -> Result<(), BoundError> {
    // SAFETY: zeroed bpf_attr is valid; the fields for BPF_LINK_UPDATE.
    unsafe {
        let mut attr = std::mem::zeroed::<bpf_attr>();
        attr.link_update.link_fd = link.as_raw_fd() as u32;
        attr.link_update.__bindgen_anon_1.new_prog_fd = program.as_raw_fd() as u32;
        bpf(bpf_cmd::BPF_LINK_UPDATE, &mut attr, "BPF_LINK_UPDATE")?;
    }
    Ok(())
}

/// Points every call of [`KFUNC`] at the kernel's function `btf_id`, as a loader does for a
/// kfunc: the call sites are the relocations against its (undefined) symbol.
fn patch_kfunc_calls(elf: &[u8], obj: &mut Object, btf_id: u32) -> Result<(), BoundError> {
    let file = object::File::parse(elf).map_err(|e| BoundError::Syscall {
        call: "reading the ELF",
        source: io::Error::new(io::ErrorKind::InvalidData, e),
    })?;
    let mut patched = 0;
    for section in file.sections() {
        for (offset, relocation) in section.relocations() {
            let RelocationTarget::Symbol(symbol) = relocation.target() else { continue };
            if file.symbol_by_index(symbol).ok().and_then(|s| s.name().ok()) != Some(KFUNC) {
                continue;
            }
            let Some(function) = obj.functions.values_mut().find(|f| {
                f.section_index.0 == section.index().0
                    && (f.section_offset as u64..(f.section_offset + f.instructions.len() * 8) as u64)
                        .contains(&offset)
            }) else {
                continue;
            };
            let insn: &mut bpf_insn =
                &mut function.instructions[(offset as usize - function.section_offset) / 8];
            if insn.code != BPF_JMP_CALL {
                continue;
            }
            insn.set_src_reg(BPF_PSEUDO_KFUNC_CALL as u8);
            insn.imm = btf_id as i32;
            // The kfunc is vmlinux's: no module BTF to index.
            insn.off = 0;
            patched += 1;
        }
    }
    if patched == 0 {
        return Err(BoundError::NoProgram);
    }
    Ok(())
}

/// A map holding `map`'s data, read-only for programs and frozen, so that the verifier knows its
/// values (and prunes the log statements above the chosen level).
fn frozen(name: &str, map: &aya_obj::Map) -> Result<MapData, BoundError> {
    let created = MapData::create(map.clone(), name, None)?;
    let fd = created.fd().as_fd().as_raw_fd();
    let mut data = map.data().to_vec();
    let key = 0u32;
    // SAFETY: zeroed bpf_attr is valid; the fields for BPF_MAP_UPDATE_ELEM and BPF_MAP_FREEZE.
    unsafe {
        let mut attr = std::mem::zeroed::<bpf_attr>();
        let u = &mut attr.__bindgen_anon_2;
        u.map_fd = fd as u32;
        u.key = (&raw const key).expose_provenance() as u64;
        u.__bindgen_anon_1.value = data.as_mut_ptr().expose_provenance() as u64;
        bpf(bpf_cmd::BPF_MAP_UPDATE_ELEM, &mut attr, "BPF_MAP_UPDATE_ELEM")?;
        let mut attr = std::mem::zeroed::<bpf_attr>();
        attr.__bindgen_anon_2.map_fd = fd as u32;
        bpf(bpf_cmd::BPF_MAP_FREEZE, &mut attr, "BPF_MAP_FREEZE")?;
    }
    Ok(created)
}

/// BPF_PROG_LOAD of an XDP program bound to `ifindex`. On refusal, loads again with the
/// verifier's log, for the error.
fn load(insns: &[bpf_insn], license: &CString, ifindex: u32) -> Result<OwnedFd, BoundError> {
    let name = CString::new(XDP_META_PROGRAM).expect("no NUL");
    let attempt = |log: &mut [u8]| {
        // SAFETY: zeroed bpf_attr is valid; the fields for BPF_PROG_LOAD, pointing at buffers
        // that outlive the call.
        unsafe {
            let mut attr = std::mem::zeroed::<bpf_attr>();
            let u = &mut attr.__bindgen_anon_3;
            u.prog_type = bpf_prog_type::BPF_PROG_TYPE_XDP as u32;
            u.expected_attach_type = bpf_attach_type::BPF_XDP as u32;
            u.insns = insns.as_ptr().expose_provenance() as u64;
            u.insn_cnt = insns.len() as u32;
            u.license = license.as_ptr().expose_provenance() as u64;
            u.prog_ifindex = ifindex;
            u.prog_flags = BPF_F_XDP_DEV_BOUND_ONLY;
            for (dst, src) in u.prog_name.iter_mut().zip(name.as_bytes()) {
                *dst = *src as _;
            }
            if !log.is_empty() {
                u.log_level = 1;
                u.log_buf = log.as_mut_ptr().expose_provenance() as u64;
                u.log_size = log.len() as u32;
            }
            bpf_fd(bpf_cmd::BPF_PROG_LOAD, &mut attr, "BPF_PROG_LOAD")
        }
    };
    match attempt(&mut []) {
        Ok(fd) => Ok(fd),
        Err(BoundError::Syscall { source, .. }) => {
            let mut log = vec![0u8; 1 << 20];
            let _ = attempt(&mut log);
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let lines: Vec<&str> = std::str::from_utf8(&log[..end]).unwrap_or("").lines().collect();
            // The end of the log says why.
            let log = lines[lines.len().saturating_sub(20)..].join("\n");
            Err(BoundError::Verifier { source, log })
        }
        Err(e) => Err(e),
    }
}

/// BPF_LINK_CREATE: `program` on `ifindex`, native mode.
fn link(program: BorrowedFd<'_>, ifindex: u32) -> Result<OwnedFd, BoundError> {
    // SAFETY: zeroed bpf_attr is valid; the fields for BPF_LINK_CREATE.
    unsafe {
        let mut attr = std::mem::zeroed::<bpf_attr>();
        attr.link_create.__bindgen_anon_1.prog_fd = program.as_raw_fd() as u32;
        attr.link_create.__bindgen_anon_2.target_ifindex = ifindex;
        attr.link_create.attach_type = bpf_attach_type::BPF_XDP as u32;
        attr.link_create.flags = XDP_FLAGS_DRV_MODE;
        bpf_fd(bpf_cmd::BPF_LINK_CREATE, &mut attr, "BPF_LINK_CREATE (XDP, native mode)")
    }
}

/// The bpf() system call; its return value.
///
/// # Safety
/// `attr` must hold valid fields for `cmd`, pointing at live buffers.
unsafe fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr, call: &'static str) -> Result<i64, BoundError> {
    // SAFETY: the caller vouches for `attr`.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            &raw mut *attr,
            size_of::<bpf_attr>() as libc::c_long,
        )
    };
    if ret < 0 {
        return Err(BoundError::Syscall { call, source: io::Error::last_os_error() });
    }
    Ok(ret)
}

/// [`bpf`] for the commands that return a new descriptor.
///
/// # Safety
/// As [`bpf`]; `cmd` must be one that returns a new descriptor.
unsafe fn bpf_fd(cmd: bpf_cmd, attr: &mut bpf_attr, call: &'static str) -> Result<OwnedFd, BoundError> {
    // SAFETY: as the caller vouches; the descriptor is new and nothing else owns it.
    unsafe { bpf(cmd, attr, call).map(|fd| OwnedFd::from_raw_fd(fd as RawFd)) }
}
