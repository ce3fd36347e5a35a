//! Leader election on a coordination.k8s.io/v1 Lease, so that of several replicas only one
//! writes. The decision is pure ([`decide`]); [`Elector::try_hold`] carries it out with
//! optimistic concurrency (a lost race is a conflict, not a second leader).

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};

/// What to do about the lease.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, or the holder let it expire: take it.
    Take,
    /// It is ours: renew it.
    Renew,
    /// Someone else holds it.
    Follow,
}

/// Pure: what `me` should do about `spec` at `now`.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else { return Decision::Take };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == me => Decision::Renew,
        None | Some("") => Decision::Take,
        Some(_) => {
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0));
            let expired =
                spec.renew_time.as_ref().is_none_or(|t| t.0.as_second() + duration < now.as_second());
            if expired { Decision::Take } else { Decision::Follow }
        }
    }
}

pub struct Elector {
    api: Api<Lease>,
    name: String,
    me: String,
    duration: Duration,
}

impl Elector {
    pub fn new(api: Api<Lease>, name: &str, me: &str, duration: Duration) -> Self {
        Self { api, name: name.to_owned(), me: me.to_owned(), duration }
    }

    /// How often to call [`Elector::try_hold`]: a third of the lease.
    pub fn period(&self) -> Duration {
        self.duration / 3
    }

    /// One round: creates, renews or takes over the lease as [`decide`] says. Returns whether
    /// this replica holds it now.
    pub async fn try_hold(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let decision = decide(current.as_ref().and_then(|l| l.spec.as_ref()), &self.me, now);
        if decision == Decision::Follow {
            return Ok(false);
        }
        let transitions = current.as_ref().and_then(|l| l.spec.as_ref()?.lease_transitions).unwrap_or(0);
        let acquire = current.as_ref().and_then(|l| l.spec.as_ref()?.acquire_time.clone());
        let spec = LeaseSpec {
            holder_identity: Some(self.me.clone()),
            lease_duration_seconds: Some(self.duration.as_secs() as i32),
            renew_time: Some(MicroTime(now)),
            acquire_time: if decision == Decision::Renew { acquire } else { Some(MicroTime(now)) },
            lease_transitions: Some(if decision == Decision::Take { transitions + 1 } else { transitions }),
            ..Default::default()
        };
        let result = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await.map(drop)
            }
            // replace() carries the resourceVersion read above: a concurrent change fails it.
            Some(mut lease) => {
                lease.spec = Some(spec);
                self.api.replace(&self.name, &PostParams::default(), &lease).await.map(drop)
            }
        };
        match result {
            Ok(()) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed: i64, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
            lease_duration_seconds: Some(seconds),
            ..Default::default()
        }
    }

    #[test]
    fn decisions() {
        let now = Timestamp::from_second(1_000).unwrap();
        assert_eq!(decide(None, "a", now), Decision::Take);
        assert_eq!(decide(Some(&spec("a", 999, 15)), "a", now), Decision::Renew);
        assert_eq!(decide(Some(&spec("b", 990, 15)), "a", now), Decision::Follow, "b renewed 10 s ago");
        assert_eq!(decide(Some(&spec("b", 980, 15)), "a", now), Decision::Take, "b's lease ran out");
        assert_eq!(decide(Some(&spec("", 999, 15)), "a", now), Decision::Take, "released");
        assert_eq!(
            decide(Some(&LeaseSpec { holder_identity: Some("b".into()), ..Default::default() }), "a", now),
            Decision::Take
        );
    }
}
