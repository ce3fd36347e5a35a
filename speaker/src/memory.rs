//! Handing freed memory back to the system. glibc's allocator keeps what a burst of work freed
//! (a pass over thousands of Services builds and drops snapshots and reports): its thresholds
//! for returning memory grow with the allocations it has seen, up to tens of MiB, so a speaker
//! that once handled a wave of changes would hold that memory at rest on every node.

/// Returns the free memory at the top of each arena and the free pages inside it.
pub fn give_back() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
