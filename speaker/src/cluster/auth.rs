//! Authenticated membership datagrams: HMAC-SHA256 over both ends' addresses, a header and the
//! payload, with replay protection. Only what passes [`Opener::open`] reaches the membership
//! protocol.
//!
//! ```text
//! "HRLD" | version (1) | boot id (8) | sequence (8) | sent at, unix ms (8) | payload | HMAC (32)
//! HMAC over: sender's address | receiver's address | everything before the HMAC
//! ```
//!
//! The addresses (each 16 bytes of IPv6, or IPv4-mapped, and a 2-byte port) are not sent: both
//! ends know them, since each binds the address it is known by. A datagram that arrives from
//! another address than the one that sealed it, or at another receiver, fails the check as a
//! forged one does: a captured datagram cannot be replayed as if from another member, nor to
//! another member. What a receiver remembers is thus keyed by an authenticated sender.
//!
//! A sender numbers its datagrams from a random boot id; a receiver accepts, per sender, only
//! sequence numbers above the last it accepted from that boot, and only datagrams sent within
//! [`FRESHNESS`] of its own clock (the clocks of the nodes must agree that well). When a sender
//! restarts (a new boot id, sending later than the boot it replaces), its earlier boots are
//! retired: their datagrams are refused for as long as they could be fresh. A recorded datagram
//! is thus useless once a newer one arrived, and useless to anyone after [`FRESHNESS`]; a
//! sender not heard from for that long is forgotten.
//!
//! The cheap checks come first: the length (at most what the protocol ever sends), magic and
//! version, freshness, and replay of what is already known, all before the HMAC, and none of
//! them changes anything. Only an authentic datagram changes what the receiver remembers.
//! A datagram that claims a boot the receiver does not know from its address (a first one, or
//! a restart) is checked at most [`NEW_BOOTS_PER_SECOND`] times a second per address: one
//! authentic datagram is all a restart takes, and a flood forged as if from a member, which
//! cannot know the member's current boot without capturing its datagrams, costs a lookup each
//! past those.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const MAGIC: &[u8; 4] = b"HRLD";
/// 2: identities carry their node's MACs. 3: a kind byte leads the payload (heartbeats and
/// probes beside SWIM's messages, see `wire`). 4: both ends' addresses are sealed; a helper
/// says when its probe went unanswered.
const VERSION: u8 = 4;
const HEADER: usize = 4 + 1 + 8 + 8 + 8;
const TAG: usize = 32;
/// What sealing adds to a payload: the header and the HMAC.
pub const OVERHEAD: usize = HEADER + TAG;
/// The longest payload sent: SWIM's packets (its `max_packet_size`) and the kind byte.
pub const MAX_PAYLOAD: usize = 1400 + 1;
/// The longest datagram accepted; anything longer is refused before the HMAC.
pub const MAX_DATAGRAM: usize = HEADER + MAX_PAYLOAD + TAG;
/// How far a datagram's send time may be from the receiver's clock.
pub const FRESHNESS: Duration = Duration::from_secs(30);
/// Datagrams a second, per address, that may claim a boot unknown from it and be checked.
pub const NEW_BOOTS_PER_SECOND: u32 = 20;
const FRESH_MS: u64 = FRESHNESS.as_millis() as u64;

/// Why a datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// Too short or too long, wrong magic or version, or a bad HMAC (a wrong key, a corrupted
    /// datagram, or one sealed by or for another address).
    Unauthenticated,
    /// Sent too long ago, or in the future.
    Stale,
    /// Already seen (or older than what was seen) from that sender.
    Replayed,
    /// A boot unknown from that address, past [`NEW_BOOTS_PER_SECOND`].
    Throttled,
}

/// A shared key, ready to authenticate (its HMAC state keyed once).
#[derive(Clone)]
struct Keyed(Hmac<Sha256>);

impl Keyed {
    fn new(key: &[u8]) -> Self {
        Self(<Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length"))
    }

    fn mac(&self, from: SocketAddr, to: SocketAddr, signed: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(&address(from));
        mac.update(&address(to));
        mac.update(signed);
        mac
    }
}

/// An address as sealed: 16 bytes of IPv6 (IPv4-mapped for IPv4) and the port.
fn address(addr: SocketAddr) -> [u8; 18] {
    let ip = match addr.ip() {
        IpAddr::V4(ip) => ip.to_ipv6_mapped(),
        IpAddr::V6(ip) => ip,
    };
    let mut out = [0u8; 18];
    out[..16].copy_from_slice(&ip.octets());
    out[16..].copy_from_slice(&addr.port().to_be_bytes());
    out
}

/// Seals outgoing datagrams from `me`.
pub struct Sealer {
    key: Keyed,
    me: SocketAddr,
    boot: u64,
    seq: u64,
}

impl Sealer {
    pub fn new(key: &[u8], me: SocketAddr, boot: u64) -> Self {
        Self { key: Keyed::new(key), me, boot, seq: 0 }
    }

    /// `payload` sealed for `to`, sent at `now_ms`.
    pub fn seal(&mut self, to: SocketAddr, now_ms: u64, payload: &[u8]) -> Vec<u8> {
        self.seq += 1;
        let mut out = Vec::with_capacity(payload.len() + OVERHEAD);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.boot.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&now_ms.to_be_bytes());
        out.extend_from_slice(payload);
        let tag = self.key.mac(self.me, to, &out).finalize().into_bytes();
        out.extend_from_slice(&tag);
        out
    }
}

/// Checks incoming datagrams to `me`.
pub struct Opener {
    key: Keyed,
    me: SocketAddr,
    senders: HashMap<SocketAddr, Sender>,
    /// Per address: the second (unix) of its latest claims of an unknown boot, and how many.
    new_boots: HashMap<SocketAddr, (u64, u32)>,
}

/// What a receiver remembers of one sender.
#[derive(Debug)]
struct Sender {
    /// The boot it speaks from now, the send time of the first datagram accepted from it, and
    /// the highest sequence accepted.
    boot: u64,
    first_ms: u64,
    seq: u64,
    /// The send time of the latest datagram accepted: once older than [`FRESHNESS`], anything
    /// this sender ever sent is stale, and it is forgotten.
    last_ms: u64,
    /// Boots it spoke from before, with the time they were retired (pruned after [`FRESHNESS`]).
    retired: Vec<(u64, u64)>,
}

/// What a datagram's header says.
struct Header {
    boot: u64,
    seq: u64,
    sent_ms: u64,
}

impl Sender {
    /// Why `h` would be refused from this sender at `now_ms`, if it would.
    fn refuses(&self, h: &Header, now_ms: u64) -> Option<Reject> {
        let replayed = if h.boot == self.boot {
            h.seq <= self.seq
        } else {
            // A boot this sender left, or one older than the boot it speaks from now.
            let retired = |(b, at): &(u64, u64)| *b == h.boot && now_ms.saturating_sub(*at) <= FRESH_MS;
            self.retired.iter().any(retired) || h.sent_ms <= self.first_ms
        };
        replayed.then_some(Reject::Replayed)
    }

    /// Takes in the authentic `h`, accepted at `now_ms`.
    fn accept(&mut self, h: &Header, now_ms: u64) {
        if h.boot != self.boot {
            // It restarted.
            self.retired.retain(|(_, at)| now_ms.saturating_sub(*at) <= FRESH_MS);
            self.retired.push((self.boot, now_ms));
            (self.boot, self.first_ms) = (h.boot, h.sent_ms);
        }
        self.seq = h.seq;
        self.last_ms = self.last_ms.max(h.sent_ms);
    }
}

impl Opener {
    pub fn new(key: &[u8], me: SocketAddr) -> Self {
        Self { key: Keyed::new(key), me, senders: HashMap::new(), new_boots: HashMap::new() }
    }

    /// The payload of `datagram` from `from`, if it is authentic, fresh and new.
    pub fn open<'a>(
        &mut self,
        from: SocketAddr,
        now_ms: u64,
        datagram: &'a [u8],
    ) -> Result<&'a [u8], Reject> {
        if !(HEADER + TAG..=MAX_DATAGRAM).contains(&datagram.len())
            || &datagram[..4] != MAGIC
            || datagram[4] != VERSION
        {
            return Err(Reject::Unauthenticated);
        }
        let (signed, tag) = datagram.split_at(datagram.len() - TAG);
        let word = |at: usize| u64::from_be_bytes(signed[at..at + 8].try_into().expect("8 bytes"));
        let h = Header { boot: word(5), seq: word(13), sent_ms: word(21) };
        if now_ms.abs_diff(h.sent_ms) > FRESH_MS {
            return Err(Reject::Stale);
        }
        let sender = self.senders.get(&from);
        if let Some(reject) = sender.and_then(|s| s.refuses(&h, now_ms)) {
            return Err(reject);
        }
        if sender.is_none_or(|s| s.boot != h.boot) && !self.new_boot_checked(from, now_ms) {
            return Err(Reject::Throttled);
        }
        self.key.mac(from, self.me, signed).verify_slice(tag).map_err(|_| Reject::Unauthenticated)?;

        match self.senders.get_mut(&from) {
            Some(sender) => sender.accept(&h, now_ms),
            None => {
                // Anything a sender not heard from for the freshness window sent is stale.
                self.senders.retain(|_, s| now_ms.saturating_sub(s.last_ms) <= FRESH_MS);
                let fresh = Sender {
                    boot: h.boot,
                    first_ms: h.sent_ms,
                    seq: h.seq,
                    last_ms: h.sent_ms,
                    retired: Vec::new(),
                };
                self.senders.insert(from, fresh);
            }
        }
        Ok(&signed[HEADER..])
    }

    /// Whether a claim of an unknown boot from `from` may be checked now (see
    /// [`NEW_BOOTS_PER_SECOND`]).
    fn new_boot_checked(&mut self, from: SocketAddr, now_ms: u64) -> bool {
        let second = now_ms / 1000;
        if self.new_boots.len() > 1024 {
            self.new_boots.retain(|_, (at, _)| *at == second);
        }
        let (at, count) = self.new_boots.entry(from).or_insert((second, 0));
        if *at != second {
            (*at, *count) = (second, 0);
        }
        *count += 1;
        *count <= NEW_BOOTS_PER_SECOND
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
