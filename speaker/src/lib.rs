//! Herald's speaker: keeps an XDP program answering ARP for the addresses this node announces.
//!
//! One [`runtime`] (datapath, announcer, membership, heartbeat, telemetry, shutdown) runs either
//! mode, each a source of what to announce: [`standalone`] (a config file and the election) or
//! [`kubernetes`] (the cluster's objects and MetalLB's rules). Pure decisions ([`config`],
//! [`election`], [`candidates`], [`carriers`], [`announcement`]) over plain data ([`host`]);
//! effects at the edges ([`datapath`] owns the BPF program and maps, [`garp`] sends frames,
//! [`pinned`] reads a running speaker's maps).

pub mod announcement;
pub mod announcer;
pub mod bpffs;
pub mod candidates;
pub mod carriers;
pub mod check;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod conflict;
pub mod datapath;
pub mod election;
pub mod ethtool;
pub mod exclusions;
pub mod explain;
pub mod fence;
pub mod frame;
pub mod garp;
pub mod handback;
pub mod host;
pub mod kubernetes;
pub mod memory;
pub mod metrics;
pub mod names;
pub mod netlink;
pub mod pinned;
pub mod runtime;
pub mod sd_notify;
pub mod standalone;
pub mod state_file;
pub mod status_command;
