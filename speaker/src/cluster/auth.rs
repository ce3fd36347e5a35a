//! Authenticated membership datagrams: HMAC-SHA256 over a header and the payload, with replay
//! protection. Only what passes [`Opener::open`] reaches the membership protocol.
//!
//! ```text
//! "HRLD" | version (1) | boot id (8) | sequence (8) | sent at, unix ms (8) | payload | HMAC (32)
//! ```
//!
//! A sender numbers its datagrams from a random boot id; a receiver accepts, per sender
//! address, only sequence numbers above the last it accepted from that boot, and only datagrams
//! sent within [`FRESHNESS`] of its own clock (the clocks of the nodes must agree that well).
//! When a sender restarts (a new boot id, sending later than the boot it replaces), its earlier
//! boots are retired: their datagrams are refused for as long as they could be fresh. A recorded
//! datagram is thus useless once a newer one arrived, and useless to anyone after
//! [`FRESHNESS`].

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const MAGIC: &[u8; 4] = b"HRLD";
/// 2: identities carry their node's MACs. 3: a kind byte leads the payload (heartbeats and
/// probes beside SWIM's messages, see `wire`).
const VERSION: u8 = 3;
const HEADER: usize = 4 + 1 + 8 + 8 + 8;
const TAG: usize = 32;
/// How far a datagram's send time may be from the receiver's clock.
pub const FRESHNESS: Duration = Duration::from_secs(30);

/// Why a datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// Too short, wrong magic or version, or a bad HMAC.
    Unauthenticated,
    /// Sent too long ago, or in the future.
    Stale,
    /// Already seen (or older than what was seen) from that sender.
    Replayed,
}

/// Seals outgoing datagrams.
pub struct Sealer {
    key: Vec<u8>,
    boot: u64,
    seq: u64,
}

impl Sealer {
    pub fn new(key: &[u8], boot: u64) -> Self {
        Self { key: key.to_vec(), boot, seq: 0 }
    }

    pub fn seal(&mut self, now_ms: u64, payload: &[u8]) -> Vec<u8> {
        self.seq += 1;
        let mut out = Vec::with_capacity(HEADER + payload.len() + TAG);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.boot.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&now_ms.to_be_bytes());
        out.extend_from_slice(payload);
        let tag = mac(&self.key).chain_update(&out).finalize().into_bytes();
        out.extend_from_slice(&tag);
        out
    }
}

/// Checks incoming datagrams.
pub struct Opener {
    key: Vec<u8>,
    senders: HashMap<SocketAddr, Sender>,
}

/// What a receiver remembers of one sender.
#[derive(Debug)]
struct Sender {
    /// The boot it speaks from now, the send time of the first datagram accepted from it, and
    /// the highest sequence accepted.
    boot: u64,
    first_ms: u64,
    seq: u64,
    /// Boots it spoke from before, with the time they were retired (pruned after [`FRESHNESS`]).
    retired: Vec<(u64, u64)>,
}

impl Opener {
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec(), senders: HashMap::new() }
    }

    /// The payload of `datagram` from `from`, if it is authentic, fresh and new.
    pub fn open<'a>(
        &mut self,
        from: SocketAddr,
        now_ms: u64,
        datagram: &'a [u8],
    ) -> Result<&'a [u8], Reject> {
        if datagram.len() < HEADER + TAG || &datagram[..4] != MAGIC || datagram[4] != VERSION {
            return Err(Reject::Unauthenticated);
        }
        let (signed, tag) = datagram.split_at(datagram.len() - TAG);
        mac(&self.key).chain_update(signed).verify_slice(tag).map_err(|_| Reject::Unauthenticated)?;

        let word = |at: usize| u64::from_be_bytes(signed[at..at + 8].try_into().expect("8 bytes"));
        let (boot, seq, sent_ms) = (word(5), word(13), word(21));
        if now_ms.abs_diff(sent_ms) > FRESHNESS.as_millis() as u64 {
            return Err(Reject::Stale);
        }
        let fresh = Sender { boot, first_ms: sent_ms, seq, retired: Vec::new() };
        match self.senders.get_mut(&from) {
            None => drop(self.senders.insert(from, fresh)),
            Some(s) if s.boot == boot => {
                if seq <= s.seq {
                    return Err(Reject::Replayed);
                }
                s.seq = seq;
            }
            Some(s) => {
                // A boot this sender left, or one older than the boot it speaks from now.
                s.retired.retain(|(_, at)| now_ms.saturating_sub(*at) <= FRESHNESS.as_millis() as u64);
                if s.retired.iter().any(|(b, _)| *b == boot) || sent_ms <= s.first_ms {
                    return Err(Reject::Replayed);
                }
                // It restarted.
                let retired = std::mem::take(&mut s.retired);
                let old = std::mem::replace(s, fresh);
                s.retired = retired;
                s.retired.push((old.boot, now_ms));
            }
        }
        Ok(&signed[HEADER..])
    }
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef-shared";
    const NOW: u64 = 1_800_000_000_000;

    fn from() -> SocketAddr {
        "192.0.2.2:7946".parse().unwrap()
    }

    #[test]
    fn round_trip() {
        let mut sealer = Sealer::new(KEY, 7);
        let mut opener = Opener::new(KEY);
        let d = sealer.seal(NOW, b"hello");
        assert_eq!(opener.open(from(), NOW + 5, &d), Ok(&b"hello"[..]));
        let d2 = sealer.seal(NOW, b"");
        assert_eq!(opener.open(from(), NOW, &d2), Ok(&b""[..]));
    }

    #[test]
    fn wrong_key_or_corruption_is_unauthenticated() {
        let d = Sealer::new(b"another-key-entirely", 1).seal(NOW, b"hello");
        assert_eq!(Opener::new(KEY).open(from(), NOW, &d), Err(Reject::Unauthenticated));
        let good = Sealer::new(KEY, 1).seal(NOW, b"hello");
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert_eq!(Opener::new(KEY).open(from(), NOW, &bad), Err(Reject::Unauthenticated), "byte {i}");
        }
        for len in 0..good.len() {
            assert_eq!(
                Opener::new(KEY).open(from(), NOW, &good[..len]),
                Err(Reject::Unauthenticated),
                "len {len}"
            );
        }
    }

    #[test]
    fn replays_are_dropped() {
        let mut sealer = Sealer::new(KEY, 1);
        let mut opener = Opener::new(KEY);
        let (first, second) = (sealer.seal(NOW, b"1"), sealer.seal(NOW, b"2"));
        assert!(opener.open(from(), NOW, &second).is_ok());
        assert_eq!(opener.open(from(), NOW, &second), Err(Reject::Replayed));
        assert_eq!(opener.open(from(), NOW, &first), Err(Reject::Replayed), "older than the last");
        // Another sender address has its own sequence.
        let other: SocketAddr = "192.0.2.3:7946".parse().unwrap();
        assert!(opener.open(other, NOW, &first).is_ok());
        // A restarted sender (new boot id) starts again at 1.
        let restarted = Sealer::new(KEY, 2).seal(NOW + 1, b"r");
        assert!(opener.open(from(), NOW + 1, &restarted).is_ok());
    }

    #[test]
    fn a_restarted_senders_earlier_boot_is_refused() {
        let mut before = Sealer::new(KEY, 1);
        let mut opener = Opener::new(KEY);
        let (first, unseen) = (before.seal(NOW, b"1"), before.seal(NOW + 10, b"2"));
        assert!(opener.open(from(), NOW, &first).is_ok());
        let mut after = Sealer::new(KEY, 2);
        assert!(opener.open(from(), NOW + 1000, &after.seal(NOW + 1000, b"a")).is_ok());
        // The previous run's datagrams, seen or not, replayed within the freshness window.
        assert_eq!(opener.open(from(), NOW + 2000, &first), Err(Reject::Replayed));
        assert_eq!(opener.open(from(), NOW + 2000, &unseen), Err(Reject::Replayed));
        // A boot older than the current one, never seen: from before the restart too.
        let older = Sealer::new(KEY, 3).seal(NOW + 500, b"o");
        assert_eq!(opener.open(from(), NOW + 2000, &older), Err(Reject::Replayed));
        // The current boot goes on; a later restart is accepted.
        assert!(opener.open(from(), NOW + 2000, &after.seal(NOW + 2000, b"b")).is_ok());
        assert!(opener.open(from(), NOW + 3000, &Sealer::new(KEY, 4).seal(NOW + 3000, b"c")).is_ok());
        assert_eq!(opener.open(from(), NOW + 3001, &after.seal(NOW + 2500, b"d")), Err(Reject::Replayed));
    }

    #[test]
    fn stale_or_future_is_dropped() {
        let mut sealer = Sealer::new(KEY, 1);
        let limit = FRESHNESS.as_millis() as u64;
        let old = sealer.seal(NOW - limit - 1, b"x");
        assert_eq!(Opener::new(KEY).open(from(), NOW, &old), Err(Reject::Stale));
        let future = sealer.seal(NOW + limit + 1, b"x");
        assert_eq!(Opener::new(KEY).open(from(), NOW, &future), Err(Reject::Stale));
        let edge = sealer.seal(NOW - limit, b"x");
        assert!(Opener::new(KEY).open(from(), NOW, &edge).is_ok());
    }
}
