//! `herald-deny-bpf COMMAND [ARGS...]`: runs COMMAND under a seccomp filter that fails bpf()
//! with EPERM and allows everything else, as the container runtimes' older default profiles do
//! for a process without CAP_SYS_ADMIN. The preflight tests show what the speaker says then.

use std::{ffi::OsString, os::unix::process::CommandExt as _, process::ExitCode};

// Classic BPF, as seccomp takes it (linux/filter.h, linux/seccomp.h, linux/audit.h).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
/// This build's architecture as seccomp_data names it (linux/audit.h: AUDIT_ARCH_X86_64,
/// AUDIT_ARCH_AARCH64); `libc::SYS_bpf` is this architecture's number already.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;
/// Offsets in `struct seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(program) = args.next() else {
        eprintln!("usage: herald-deny-bpf COMMAND [ARGS...]");
        return ExitCode::FAILURE;
    };
    if let Err(e) = deny_bpf() {
        eprintln!("herald-deny-bpf: installing the filter: {e}");
        return ExitCode::FAILURE;
    }
    let args: Vec<OsString> = args.collect();
    let e = std::process::Command::new(&program).args(args).exec();
    eprintln!("herald-deny-bpf: {}: {e}", program.to_string_lossy());
    ExitCode::FAILURE
}

fn deny_bpf() -> std::io::Result<()> {
    let op = |code, k, jt, jf| libc::sock_filter { code, jt, jf, k };
    let filter = [
        op(BPF_LD_W_ABS, ARCH, 0, 0),
        // Another architecture's syscall numbers mean other calls: allow them untouched.
        op(BPF_JMP_JEQ_K, AUDIT_ARCH, 0, 3),
        op(BPF_LD_W_ABS, NR, 0, 0),
        op(BPF_JMP_JEQ_K, libc::SYS_bpf as u32, 0, 1),
        op(BPF_RET_K, SECCOMP_RET_ERRNO | libc::EPERM as u32, 0, 0),
        op(BPF_RET_K, SECCOMP_RET_ALLOW, 0, 0),
    ];
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr().cast_mut() };
    // SAFETY: plain prctl calls; `prog` and `filter` outlive them, and the kernel copies the
    // filter.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog)
                != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
