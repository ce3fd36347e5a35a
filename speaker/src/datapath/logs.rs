//! The programs' log statements (aya-log), forwarded to the speaker's log. The level is fixed
//! when the programs load (`--xdp-log`): the verifier prunes the statements above it, so `off`
//! costs nothing per frame.

use tokio::io::unix::AsyncFd;
use tracing::{debug, error, info, trace, warn};

/// What the programs log (`--xdp-log`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    /// Nothing.
    #[default]
    Off,
    /// What cannot happen: a reply that found no room for its VLAN tag.
    Error,
    /// Conflicts seen, and requests not answered because the dead-man switch tripped.
    Info,
    /// Every decision on every ARP frame: answered, passed and why.
    Debug,
}

impl LogLevel {
    /// The tracing level that shows every statement the programs make at this level.
    pub fn filter(self) -> Option<&'static str> {
        match self {
            LogLevel::Off => None,
            LogLevel::Error => Some("error"),
            LogLevel::Info => Some("info"),
            LogLevel::Debug => Some("debug"),
        }
    }

    /// aya-log's level number, the highest the programs log at.
    pub fn value(self) -> u8 {
        match self {
            LogLevel::Off => 0,
            LogLevel::Error => 1,
            // Warnings (the dead-man switch) come with info.
            LogLevel::Info => 3,
            LogLevel::Debug => 4,
        }
    }
}

/// A `log` logger that hands aya-log's records to the speaker's tracing subscriber, under the
/// target `herald::xdp`.
#[derive(Clone, Copy, Debug)]
pub struct Tracing;

impl log::Log for Tracing {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let message = record.args().to_string();
        match record.level() {
            log::Level::Error => error!(target: "herald::xdp", "{message}"),
            log::Level::Warn => warn!(target: "herald::xdp", "{message}"),
            log::Level::Info => info!(target: "herald::xdp", "{message}"),
            log::Level::Debug => debug!(target: "herald::xdp", "{message}"),
            log::Level::Trace => trace!(target: "herald::xdp", "{message}"),
        }
    }

    fn flush(&self) {}
}

/// Forwards the programs' records as they come, until the process ends.
pub async fn forward(logger: aya_log::EbpfLogger<Tracing>) {
    // SAFETY: the ring buffer's descriptor is the logger's, open for as long as it lives, and
    // the AsyncFd owns the logger.
    let registered =
        unsafe { AsyncFd::register_with_interest(Readable(logger), tokio::io::Interest::READABLE) };
    let mut ready = match registered {
        Ok(fd) => fd,
        Err(e) => return warn!(error = %e, "the programs' log statements cannot be read"),
    };
    loop {
        let Ok(mut guard) = ready.readable_mut().await else { return };
        guard.get_inner_mut().0.flush();
        guard.clear_ready();
    }
}

/// The logger's ring buffer, for the runtime to poll.
struct Readable(aya_log::EbpfLogger<Tracing>);

impl std::os::fd::AsRawFd for Readable {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}
