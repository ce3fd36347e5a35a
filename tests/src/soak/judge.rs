//! What one fault did to the answers, judged against the invariants, and the table by fault
//! kind. Pure: the probes and the fault's times come in.

use std::{collections::BTreeMap, fmt, time::Duration};

use crate::{checker::Answers, series::Probe};

/// The longest a client may go unanswered, and the longest after a fault's end until every
/// address is answered by its owner alone.
pub const BOUND: Duration = Duration::from_secs(1);
/// How long after a membership cut begins the cut-off owner may still answer beside its heir
/// (until it finds itself alone: `hearing::LONELY`, 500 ms, and a pass).
pub const PARTITION_WINDOW: Duration = Duration::from_secs(1);

/// One fault: when it began and ended (seconds since the epoch, as the capture's times), and
/// whether two answers are allowed at its start (a partition's window).
#[derive(Clone, Debug)]
pub struct Fault {
    pub kind: &'static str,
    pub victim: String,
    pub began: f64,
    pub ended: f64,
    pub partition: bool,
}

/// What a fault did to one address.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    pub requests: usize,
    /// Requests answered by two MACs, inside the partition window, and outside it.
    pub doubled_allowed: usize,
    pub doubled: usize,
    pub longest_silence: Duration,
    /// From the fault's end until a request is answered by one MAC (zero: the first after the
    /// end was); `None`: none was.
    pub settled: Option<Duration>,
    /// From the fault's end until the address's owner alone answers every request.
    pub owner_back: Option<Duration>,
}

impl Outcome {
    /// The invariants this outcome breaks, in words.
    pub fn broken(&self) -> Vec<String> {
        let mut broken = Vec::new();
        if self.doubled > 0 {
            broken.push(format!("{} requests answered by two MACs", self.doubled));
        }
        if self.longest_silence > BOUND {
            broken.push(format!("silent for {:?}", self.longest_silence));
        }
        match self.settled {
            Some(after) if after > BOUND => {
                broken.push(format!("answered by one MAC only {after:?} after the fault's end"))
            }
            None => broken.push("not answered by one MAC after the fault's end".into()),
            _ => {}
        }
        if self.owner_back.is_none() {
            broken.push("its owner does not answer at the end".into());
        }
        broken
    }
}

/// Judges `probes` of one address whose owner's MAC is `owner` through `fault`.
pub fn judge(probes: &[Probe], owner: [u8; 6], fault: &Fault) -> Outcome {
    let answers = Answers::of(probes);
    let window_end = fault.began + PARTITION_WINDOW.as_secs_f64();
    let (allowed, outside): (Vec<_>, Vec<_>) = answers
        .doubled
        .iter()
        .partition(|(at, _)| fault.partition && *at >= fault.began && *at <= window_end);
    let one = |p: &Probe| {
        let first = p.replies.first().map(|(_, m)| *m);
        first.is_some() && p.replies.iter().all(|(_, m)| Some(*m) == first)
    };
    let owner_alone = |p: &Probe| one(p) && p.replies[0].1 == owner;
    Outcome {
        requests: probes.len(),
        doubled_allowed: allowed.len(),
        doubled: outside.len(),
        longest_silence: answers.longest_silence(),
        settled: probes
            .iter()
            .find(|p| p.sent >= fault.ended && one(p))
            .map(|p| Duration::from_secs_f64((p.sent - fault.ended).max(0.0))),
        owner_back: since_last(probes, fault.ended, |p| !owner_alone(p)),
    }
}

/// From `end` until the probe after the last one that is `bad` (zero: none is, or none after
/// `end`); `None` if the last one is.
fn since_last(probes: &[Probe], end: f64, bad: impl Fn(&Probe) -> bool) -> Option<Duration> {
    match probes.iter().rposition(bad) {
        None => Some(Duration::ZERO),
        Some(last) if last + 1 < probes.len() => {
            Some(Duration::from_secs_f64((probes[last + 1].sent - end).max(0.0)))
        }
        Some(_) => None,
    }
}

/// The figures by fault kind.
#[derive(Default)]
pub struct Table {
    rows: BTreeMap<&'static str, Row>,
}

#[derive(Default)]
struct Row {
    faults: usize,
    requests: usize,
    doubled_allowed: usize,
    doubled: usize,
    longest_silence: Duration,
    settled: Duration,
    owner_back: Duration,
    changed: usize,
    broken: usize,
}

impl Table {
    /// Adds a fault's `outcomes`, one per address, and the number of addresses it `changed`
    /// (each a broken invariant).
    pub fn add(&mut self, fault: &Fault, outcomes: &[Outcome], changed: usize) {
        let row = self.rows.entry(fault.kind).or_default();
        row.faults += 1;
        row.changed += changed;
        row.broken += changed;
        for o in outcomes {
            row.requests += o.requests;
            row.doubled_allowed += o.doubled_allowed;
            row.doubled += o.doubled;
            row.longest_silence = row.longest_silence.max(o.longest_silence);
            row.settled = row.settled.max(o.settled.unwrap_or(Duration::MAX));
            row.owner_back = row.owner_back.max(o.owner_back.unwrap_or(Duration::MAX));
            row.broken += usize::from(!o.broken().is_empty());
        }
    }

    pub fn broken(&self) -> usize {
        self.rows.values().map(|r| r.broken).sum()
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = [
            ("fault", ""),
            ("faults", ""),
            ("requests", ""),
            ("two MACs", "in window"),
            ("two MACs", "outside"),
            ("longest", "silence"),
            ("answered", "after end"),
            ("owner back", "after end"),
            ("addresses", "changed"),
            ("broken", ""),
        ];
        for line in [header.map(|h| h.0), header.map(|h| h.1)] {
            writeln!(
                f,
                "{:<17} {:>6} {:>9} {:>10} {:>9} {:>8} {:>10} {:>11} {:>9} {:>6}",
                line[0], line[1], line[2], line[3], line[4], line[5], line[6], line[7], line[8], line[9]
            )?;
        }
        let ms = |d: Duration| {
            if d == Duration::MAX { "never".to_owned() } else { format!("{} ms", d.as_millis()) }
        };
        for (kind, r) in &self.rows {
            writeln!(
                f,
                "{kind:<17} {:>6} {:>9} {:>10} {:>9} {:>8} {:>10} {:>11} {:>9} {:>6}",
                r.faults,
                r.requests,
                r.doubled_allowed,
                r.doubled,
                ms(r.longest_silence),
                ms(r.settled),
                ms(r.owner_back),
                r.changed,
                r.broken
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::tests::{A, B, probe};

    fn fault(partition: bool) -> Fault {
        Fault { kind: "cut", victim: "a".into(), began: 1.0, ended: 3.0, partition }
    }

    #[test]
    fn a_takeover_and_a_hand_back_break_nothing() {
        let probes = [
            probe(0.9, &[A]),
            probe(1.05, &[]),
            probe(1.1, &[B]),
            probe(3.0, &[B]),
            probe(3.1, &[A]),
            probe(3.2, &[A]),
        ];
        let o = judge(&probes, A, &fault(false));
        assert!(o.broken().is_empty(), "{:?}", o.broken());
        assert_eq!(o.settled, Some(Duration::ZERO), "answered by one MAC at the end");
        let back = o.owner_back.unwrap().as_millis();
        assert!((99..=101).contains(&back), "{back} ms");
        assert_eq!(o.longest_silence.as_millis(), 50);
    }

    #[test]
    fn two_answers_count_only_in_a_partitions_window() {
        let probes = [probe(0.9, &[A]), probe(1.2, &[A, B]), probe(2.5, &[A, B]), probe(3.5, &[A])];
        let o = judge(&probes, A, &fault(true));
        assert_eq!((o.doubled_allowed, o.doubled), (1, 1));
        assert_eq!(o.broken(), ["1 requests answered by two MACs"]);
        let o = judge(&probes, A, &fault(false));
        assert_eq!((o.doubled_allowed, o.doubled), (0, 2));
    }

    #[test]
    fn silence_and_a_wrong_owner_are_broken() {
        let probes = [probe(0.9, &[A]), probe(1.0, &[]), probe(2.5, &[]), probe(3.5, &[B])];
        let broken = judge(&probes, A, &fault(false)).broken();
        assert_eq!(broken, ["silent for 2.5s", "its owner does not answer at the end"]);
        // Answered again only 1.5 s after the end (3.0).
        let probes = [probe(0.9, &[A]), probe(3.0, &[]), probe(4.4, &[]), probe(4.5, &[A])];
        let broken = judge(&probes, A, &fault(false)).broken();
        assert!(broken.iter().any(|b| b.starts_with("answered by one MAC only")), "{broken:?}");
    }
}
