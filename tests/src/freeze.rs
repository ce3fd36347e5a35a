//! Freezes one thread of a process while its others run on, as a debugger stops it: the
//! speaker's run loop (its main thread) stuck while its membership thread is not. A ptrace
//! stop, so nothing in the speaker is built for the test.

use anyhow::Context as _;
use nix::{
    sys::{
        ptrace,
        wait::{WaitPidFlag, WaitStatus, waitpid},
    },
    unistd::Pid,
};

/// A thread held stopped; it runs on when this drops. Ptrace binds the thread to its tracer:
/// create and drop it on the same thread.
pub struct Frozen {
    tid: Pid,
}

impl Frozen {
    /// Stops thread `tid` (a process's main thread has the process's id).
    pub fn thread(tid: u32) -> anyhow::Result<Self> {
        let tid = Pid::from_raw(tid as i32);
        ptrace::seize(tid, ptrace::Options::empty()).with_context(|| format!("PTRACE_SEIZE {tid}"))?;
        let frozen = Self { tid };
        ptrace::interrupt(tid).with_context(|| format!("PTRACE_INTERRUPT {tid}"))?;
        match waitpid(tid, Some(WaitPidFlag::__WALL)).context("waiting for the thread to stop")? {
            WaitStatus::PtraceEvent(..) | WaitStatus::Stopped(..) => Ok(frozen),
            other => anyhow::bail!("thread {tid} did not stop: {other:?}"),
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if let Err(e) = ptrace::detach(self.tid, None) {
            eprintln!("could not let thread {} run on: {e}", self.tid);
        }
    }
}
