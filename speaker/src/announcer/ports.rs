//! What the announcer drives, as traits: the datapath ([`Responder`]) and the frame sender
//! ([`Frames`]); the real ones here, in-memory fakes in the tests.

use std::{collections::BTreeSet, io, net::Ipv4Addr};

use crate::{
    announcement::Key,
    cluster::PeerMacs,
    datapath::{Datapath, DatapathError, Hook, Placed},
    garp,
    pinned::Entry,
};

/// The datapath, as the announcer drives it.
pub trait Responder {
    fn attach(&mut self, ifindex: u32, ifname: &str) -> Result<Hook, DatapathError>;
    fn detach(&mut self, ifindex: u32) -> Result<(), DatapathError>;
    fn is_attached(&self, ifindex: u32) -> bool;
    fn hook(&self, ifindex: u32) -> Option<Placed>;
    fn insert(&mut self, key: &Key, mac: [u8; 6]) -> Result<(), DatapathError>;
    fn remove(&mut self, key: &Key) -> Result<(), DatapathError>;
    fn set_peers(&mut self, macs: &PeerMacs) -> Result<(), DatapathError>;
    fn entries(&self) -> Result<Vec<Entry>, DatapathError>;
    fn conflicts_total(&self) -> Result<u64, DatapathError>;
    fn set_elsewhere(&mut self, addresses: &BTreeSet<Ipv4Addr>) -> Result<(), DatapathError>;
    /// Holds rx VLAN offload off where the responder needs it off; returns where it had to.
    fn hold_offloads(&mut self) -> Vec<String>;
}

impl Responder for Datapath {
    fn attach(&mut self, ifindex: u32, ifname: &str) -> Result<Hook, DatapathError> {
        Datapath::attach(self, ifindex, ifname)
    }
    fn detach(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        Datapath::detach(self, ifindex)
    }
    fn is_attached(&self, ifindex: u32) -> bool {
        Datapath::is_attached(self, ifindex)
    }
    fn hook(&self, ifindex: u32) -> Option<Placed> {
        Datapath::hook(self, ifindex)
    }
    fn insert(&mut self, key: &Key, mac: [u8; 6]) -> Result<(), DatapathError> {
        Datapath::insert(self, key, mac)
    }
    fn remove(&mut self, key: &Key) -> Result<(), DatapathError> {
        Datapath::remove(self, key)
    }
    fn set_peers(&mut self, macs: &PeerMacs) -> Result<(), DatapathError> {
        Datapath::set_peers(self, macs)
    }
    fn entries(&self) -> Result<Vec<Entry>, DatapathError> {
        Datapath::entries(self)
    }
    fn conflicts_total(&self) -> Result<u64, DatapathError> {
        Datapath::conflicts_total(self)
    }
    fn hold_offloads(&mut self) -> Vec<String> {
        Datapath::hold_offloads(self)
    }
    fn set_elsewhere(&mut self, addresses: &BTreeSet<Ipv4Addr>) -> Result<(), DatapathError> {
        Datapath::set_elsewhere(self, addresses)
    }
}

/// Sends whole Ethernet frames out of an interface (gratuitous ARP).
pub trait Frames: Send + Sync + 'static {
    fn send(&self, ifindex: u32, frame: &[u8]) -> io::Result<()>;
}

impl Frames for garp::Sender {
    fn send(&self, ifindex: u32, frame: &[u8]) -> io::Result<()> {
        garp::Sender::send(self, ifindex, frame)
    }
}
