//! The invariant a client on the LAN sees, judged from a [`series`](crate::series) of requests:
//! every request answered by one MAC, never two, and no silence longer than a bound. What the
//! fault tests and the soak assert.

use std::{collections::BTreeSet, fmt, time::Duration};

use crate::{lab::format_mac, series::Probe};

/// What a series of requests for one address got.
#[derive(Debug, Default, PartialEq)]
pub struct Answers {
    /// Requests answered by more than one MAC: when they were sent, and by whom.
    pub doubled: Vec<(f64, BTreeSet<[u8; 6]>)>,
    /// Runs of unanswered requests: from the first one sent to the next request answered (or the
    /// last one sent), in seconds since the epoch.
    pub silences: Vec<(f64, f64)>,
    /// Who answered alone, in order, each MAC once per run of answers.
    pub answerers: Vec<[u8; 6]>,
    /// Requests no one answered.
    pub unanswered: usize,
}

impl Answers {
    pub fn of(probes: &[Probe]) -> Self {
        let mut answers = Self::default();
        let mut silent_since = None;
        for p in probes {
            let macs: BTreeSet<[u8; 6]> = p.replies.iter().map(|(_, mac)| *mac).collect();
            if macs.len() > 1 {
                answers.doubled.push((p.sent, macs.clone()));
            }
            match macs.first() {
                None => {
                    answers.unanswered += 1;
                    silent_since = silent_since.or(Some(p.sent));
                }
                Some(_) => {
                    if let Some(since) = silent_since.take() {
                        answers.silences.push((since, p.sent));
                    }
                    if let [mac] = macs.iter().collect::<Vec<_>>()[..]
                        && answers.answerers.last() != Some(mac)
                    {
                        answers.answerers.push(*mac);
                    }
                }
            }
        }
        if let (Some(since), Some(last)) = (silent_since, probes.last()) {
            answers.silences.push((since, last.sent));
        }
        answers
    }

    /// The longest run of unanswered requests.
    pub fn longest_silence(&self) -> Duration {
        let longest = self.silences.iter().map(|(from, to)| to - from).fold(0.0, f64::max);
        Duration::from_secs_f64(longest)
    }
}

impl fmt::Display for Answers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who: Vec<String> = self.answerers.iter().map(|m| format_mac(*m)).collect();
        write!(f, "answered by {}", who.join(" then "))?;
        for (at, macs) in &self.doubled {
            let macs: Vec<String> = macs.iter().map(|m| format_mac(*m)).collect();
            write!(f, "; at {at:.3} by {}", macs.join(" and "))?;
        }
        for (from, to) in &self.silences {
            write!(f, "; silent {from:.3} to {to:.3} ({:.0} ms)", (to - from) * 1000.0)?;
        }
        Ok(())
    }
}

/// Two MACs and a probe made of them, for this module's tests and the soak judge's.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    pub const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

    /// A request sent at `sent`, answered 1 ms later by each of `macs`.
    pub fn probe(sent: f64, macs: &[[u8; 6]]) -> Probe {
        Probe { sent, replies: macs.iter().map(|m| (sent + 0.001, *m)).collect() }
    }

    #[test]
    fn counts_doubles_and_silences() {
        let probes = [
            probe(0.00, &[A]),
            probe(0.02, &[]),
            probe(0.04, &[]),
            probe(0.06, &[B]),
            probe(0.08, &[A, B]),
            probe(0.10, &[A]),
            probe(0.12, &[]),
        ];
        let answers = Answers::of(&probes);
        assert_eq!(answers.doubled, vec![(0.08, [A, B].into())]);
        assert_eq!(answers.silences, vec![(0.02, 0.06), (0.12, 0.12)]);
        assert_eq!(answers.answerers, vec![A, B, A]);
        assert_eq!(answers.longest_silence().as_millis(), 40);
        assert_eq!(Answers::of(&[probe(0.0, &[A]), probe(0.02, &[A])]).answerers, vec![A]);
    }
}
