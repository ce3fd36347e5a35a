//! The pod sandbox's process for the lab's container runtime (containerd's `sandbox_image`):
//! sleeps until SIGTERM or SIGINT, and reaps children it inherits. Built by the project, so
//! the lab pulls nothing.

use nix::sys::{
    signal::{SigSet, Signal},
    wait::{WaitPidFlag, waitpid},
};

fn main() {
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        signals.add(s);
    }
    signals.thread_block().expect("blocking signals");
    loop {
        match signals.wait() {
            Ok(Signal::SIGCHLD) => {
                while waitpid(None, Some(WaitPidFlag::WNOHANG)).is_ok_and(|s| s.pid().is_some()) {}
            }
            Ok(_) => return,
            Err(_) => continue,
        }
    }
}
