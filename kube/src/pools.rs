//! Which IPAddressPools are in force: one rule for the controller and every speaker, so that they
//! agree on each address's pool whatever order the API server or a cache lists pools in.
//!
//! - Pools are read oldest first (creationTimestamp, then name).
//! - A pool whose spec is invalid is refused; if this process saw a valid version of the same
//!   object (same uid) before, that version stays in force ([`LastValid`]).
//! - Of two pools that overlap, the newer one is refused: the older one came first, and its
//!   Services hold addresses from it.
//!
//! Refusing a pool never takes an address from a Service: the controller keeps every address a
//! Service was given, in force or not (`controller/src/plan.rs`).

use std::{borrow::Borrow, collections::BTreeMap, fmt};

use kube::ResourceExt as _;

use crate::{crd::IPAddressPool, pool::Pool, selector::Labels};

/// The pools in force and the refused ones.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InForce {
    /// Oldest first, each with its object's labels (L2Advertisements select pools by label).
    pub pools: Vec<(Pool, Labels)>,
    /// Refused, or in force only as last seen valid: by name, with why.
    pub refused: BTreeMap<String, Refusal>,
    /// What the next call should be given.
    pub last_valid: LastValid,
}

/// Why a pool is not in force as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its spec is invalid; `kept` when its last valid version stays in force.
    Invalid { reason: String, kept: bool },
    /// It overlaps `older`, which came first.
    Overlaps { older: String },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Invalid { reason, kept: true } => {
                write!(f, "{reason}; its last valid version stays in force")
            }
            Refusal::Invalid { reason, kept: false } => {
                write!(f, "{reason}; no valid version of it is known, so it gives out no address")
            }
            Refusal::Overlaps { older } => {
                write!(f, "overlaps pool {older:?}, which is older; refused, it gives out no address")
            }
        }
    }
}

/// The last valid version of each pool this process has seen, by name, with its object's uid (a
/// pool deleted and made again under the same name starts afresh).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LastValid(BTreeMap<String, (Option<String>, Pool)>);

/// The pools in force among `pools`, given what an earlier call returned in `last`.
pub fn in_force<P: Borrow<IPAddressPool>>(pools: &[P], last: &LastValid) -> InForce {
    let mut sorted: Vec<&IPAddressPool> = pools.iter().map(Borrow::borrow).collect();
    sorted.sort_by_key(|p| (p.metadata.creation_timestamp.as_ref().map(|t| t.0), p.name_any()));
    let mut out = InForce::default();
    for object in sorted {
        let name = object.name_any();
        let uid = object.metadata.uid.clone();
        let pool = match Pool::from_spec(&name, &object.spec) {
            Ok(pool) => {
                out.last_valid.0.insert(name.clone(), (uid, pool.clone()));
                pool
            }
            Err(reason) => match last.0.get(&name).filter(|(known, _)| *known == uid) {
                Some(kept) => {
                    out.last_valid.0.insert(name.clone(), kept.clone());
                    out.refused.insert(name.clone(), Refusal::Invalid { reason, kept: true });
                    kept.1.clone()
                }
                None => {
                    out.refused.insert(name, Refusal::Invalid { reason, kept: false });
                    continue;
                }
            },
        };
        let overlapped = out
            .pools
            .iter()
            .find(|(older, _)| older.ranges.iter().any(|a| pool.ranges.iter().any(|b| a.overlaps(b))));
        if let Some((older, _)) = overlapped {
            out.refused.insert(name, Refusal::Overlaps { older: older.name.clone() });
            continue;
        }
        out.pools.push((pool, object.labels().clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

    use super::*;
    use crate::crd::IPAddressPoolSpec;

    /// A pool made at second `born`, with uid `uid`.
    fn pool(name: &str, born: i64, uid: &str, addresses: &[&str]) -> IPAddressPool {
        let spec = IPAddressPoolSpec {
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        };
        let mut p = IPAddressPool::new(name, spec);
        p.metadata.creation_timestamp = Some(Time(Timestamp::from_second(born).unwrap()));
        p.metadata.uid = Some(uid.into());
        p
    }

    fn names(f: &InForce) -> Vec<&str> {
        f.pools.iter().map(|(p, _)| p.name.as_str()).collect()
    }

    #[test]
    fn the_newer_of_two_overlapping_pools_is_refused_whatever_the_listing_order() {
        let old = pool("zz-prod", 100, "u1", &["192.0.2.0/24"]);
        let new = pool("aa-lab", 200, "u2", &["192.0.2.128/25"]);
        let apart = pool("mm", 150, "u3", &["198.51.100.0/24"]);
        for listing in [vec![&old, &new, &apart], vec![&new, &apart, &old], vec![&apart, &new, &old]] {
            let f = in_force(&listing, &LastValid::default());
            assert_eq!(names(&f), ["zz-prod", "mm"], "oldest first");
            assert_eq!(f.refused["aa-lab"], Refusal::Overlaps { older: "zz-prod".into() });
        }
        // Born in the same second: the name decides.
        let twin = pool("ab", 100, "u4", &["192.0.2.7/32"]);
        let f = in_force(&[&old, &twin], &LastValid::default());
        assert_eq!(names(&f), ["ab"]);
        assert_eq!(
            f.refused["zz-prod"].to_string(),
            "overlaps pool \"ab\", which is older; refused, it gives out no address"
        );
    }

    #[test]
    fn an_invalid_edit_leaves_the_last_valid_version_in_force() {
        let good = pool("prod", 100, "u1", &["192.0.2.0/28"]);
        let first = in_force(&[&good], &LastValid::default());
        assert!(first.refused.is_empty());
        let mut edited = good.clone();
        edited.spec.addresses.push("192.0.2.300/32".into());
        let second = in_force(&[&edited], &first.last_valid);
        assert_eq!(second.pools, first.pools, "the valid version stays, with its ranges");
        assert_eq!(
            second.refused["prod"].to_string(),
            "spec.addresses[1] = \"192.0.2.300/32\": neither a CIDR nor a first-last range; its last \
             valid version stays in force"
        );
        // Still kept on the next pass, and given up once the edit is undone.
        let third = in_force(&[&edited], &second.last_valid);
        assert_eq!(third.pools, first.pools);
        let fixed = in_force(&[&good], &third.last_valid);
        assert!(fixed.refused.is_empty());
        // A process that never saw it valid (a restart) has nothing to keep.
        let fresh = in_force(&[&edited], &LastValid::default());
        assert!(fresh.pools.is_empty());
        assert!(matches!(fresh.refused["prod"], Refusal::Invalid { kept: false, .. }));
        // Nor has a new object under the same name.
        let mut again = edited.clone();
        again.metadata.uid = Some("u9".into());
        assert!(in_force(&[&again], &first.last_valid).pools.is_empty());
    }

    #[test]
    fn a_kept_version_still_refuses_a_newer_overlap() {
        let good = pool("prod", 100, "u1", &["192.0.2.0/28"]);
        let mut broken = good.clone();
        broken.spec.addresses = vec!["nonsense".into()];
        let newer = pool("lab", 200, "u2", &["192.0.2.8/29"]);
        let last = in_force(&[&good], &LastValid::default()).last_valid;
        let f = in_force(&[&broken, &newer], &last);
        assert_eq!(names(&f), ["prod"]);
        assert_eq!(f.refused["lab"], Refusal::Overlaps { older: "prod".into() });
        // Deleted pools are forgotten.
        assert_eq!(in_force(&[&newer], &f.last_valid).last_valid.0.keys().collect::<Vec<_>>(), ["lab"]);
    }
}
