//! The log statements (`debug!`, `info!`, `warn!`, `error!`): aya-log's with the feature `log`
//! (the default), nothing without it.
//!
//! The speaker loads the object built without them when `--xdp-log off`. aya-log prunes the
//! statements above the level the programs were loaded with, but only on the paths the verifier
//! takes for real: without CAP_PERFMON, older verifiers (Linux 6.1) also walk the paths a
//! mispredicted branch could take, statements included, and refuse one of aya-log's record
//! writes there. An object without them has nothing to refuse.

#[cfg(feature = "log")]
pub use aya_log_ebpf::{debug, error, info, warn};

/// Expands to nothing that runs: the arguments are only borrowed, so that a value read for a
/// statement alone is neither unused nor loaded.
#[cfg(not(feature = "log"))]
#[doc(hidden)]
#[macro_export]
macro_rules! quiet {
    ($ctx:expr, $fmt:literal $(, $arg:expr)* $(,)?) => {{
        let _ = (&$ctx $(, &$arg)*);
    }};
}

#[cfg(not(feature = "log"))]
pub use crate::{quiet as debug, quiet as error, quiet as info, quiet as warn};
