//! Herald's speaker: keeps an XDP program answering ARP for the addresses this node announces.
//!
//! Two modes: [`standalone`] (a config file) and [`kubernetes`] (cluster state).
//! Pure decisions ([`config`], [`plan`], [`election`], [`candidates`]) over plain data ([`host`]); effects at the edges
//! ([`datapath`] owns the BPF program and maps, [`garp`] sends frames, [`pinned`] reads a running
//! speaker's maps).

pub mod announcer;
pub mod bpffs;
pub mod candidates;
pub mod check;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod conflict;
pub mod datapath;
pub mod election;
pub mod ethtool;
pub mod frame;
pub mod garp;
pub mod handback;
pub mod host;
pub mod kubernetes;
pub mod metrics;
pub mod netlink;
pub mod pinned;
pub mod plan;
pub mod standalone;
pub mod state;
pub mod status;
