//! Provider request budgets: each connector declares its provider's per-account rate
//! profile (`requests` per `per-seconds`, bursts up to `burst`), and every call Conduit
//! makes spends from a bucket of it (GCRA, from the `governor` crate), keyed by the
//! caller: token exchanges and refreshes by connection, executions by provider account
//! (tenant, environment and `externalAccountId`, so connections to one account share
//! it). A call that would exceed it waits for its turn, up to a bound; past the bound
//! it is refused with the wait, so the caller can retry later instead of earning a 429
//! from the provider.
//!
//! Buckets are in memory. Replicas sharing a database each spend a share of every
//! budget ([`RateLimits::shared_by`], `CONDUIT_REPLICAS`): with N replicas, each runs at
//! `requests / N` per window with bursts of `burst / N` (at least one), so together
//! they stay under the provider's ceiling without a round trip per call.

use crate::domain::RateProfile;
use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type KeyedLimiter = RateLimiter<
    String,
    governor::state::keyed::HashMapStateStore<String>,
    DefaultClock,
    governor::middleware::NoOpMiddleware,
>;

/// One limiter per connector and profile (a reloaded connector may change its profile).
type Limiters = HashMap<(String, RateProfile), Arc<KeyedLimiter>>;

/// Per-connector limiters keyed by connection; cheap to clone.
#[derive(Clone)]
pub struct RateLimits {
    limiters: Arc<Mutex<Limiters>>,
    /// How many replicas share each budget (this one spends `1 / replicas` of it).
    replicas: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            limiters: Arc::default(),
            replicas: 1,
        }
    }
}

impl RateLimits {
    /// No budgets spent yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spends `1 / replicas` of every budget: the share of one of `replicas` replicas.
    pub fn shared_by(mut self, replicas: u32) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// Waits until `connection_id` may make one more request under `profile`, for at
    /// most `max_wait`; `Err(wait)` when its turn is further away than that.
    pub async fn acquire(
        &self,
        connector: &str,
        profile: &RateProfile,
        connection_id: &str,
        max_wait: Duration,
    ) -> Result<(), Duration> {
        let Some(limiter) = self.limiter(connector, profile) else {
            return Ok(());
        };
        let key = connection_id.to_owned();
        let mut waited = Duration::ZERO;
        loop {
            match limiter.check_key(&key) {
                Ok(()) => return Ok(()),
                Err(not_until) => {
                    let wait = not_until.wait_time_from(DefaultClock::default().now());
                    if waited + wait > max_wait {
                        return Err(wait);
                    }
                    tokio::time::sleep(wait).await;
                    waited += wait;
                }
            }
        }
    }

    /// The limiter for a connector's profile; `None` for a profile without a limit.
    fn limiter(&self, connector: &str, profile: &RateProfile) -> Option<Arc<KeyedLimiter>> {
        let quota = quota(&share(profile, self.replicas))?;
        let mut limiters = self.limiters.lock().expect("limiters lock");
        let limiter = limiters
            .entry((connector.to_owned(), *profile))
            .or_insert_with(|| Arc::new(RateLimiter::hashmap(quota)));
        Some(limiter.clone())
    }
}

/// One replica's share of `profile`: a window `replicas` times as long for the same
/// requests (the rate divided exactly), and the burst divided (at least one).
fn share(profile: &RateProfile, replicas: u32) -> RateProfile {
    RateProfile {
        requests: profile.requests,
        per_seconds: profile.per_seconds.max(1).saturating_mul(replicas),
        burst: (profile.burst / replicas).max(1),
    }
}

/// `requests` per `per_seconds`, with bursts of `burst` (at least one).
fn quota(profile: &RateProfile) -> Option<Quota> {
    let requests = NonZeroU32::new(profile.requests)?;
    let period = Duration::from_secs(u64::from(profile.per_seconds.max(1))) / requests.get();
    let burst = NonZeroU32::new(profile.burst.max(1)).expect("at least one");
    Some(Quota::with_period(period)?.allow_burst(burst))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn profile(requests: u32, per_seconds: u32, burst: u32) -> RateProfile {
        RateProfile {
            requests,
            per_seconds,
            burst,
        }
    }

    #[tokio::test]
    async fn a_connection_waits_for_its_turn_past_the_burst() {
        let limits = RateLimits::new();
        let p = profile(10, 1, 2);
        let started = Instant::now();
        for _ in 0..4 {
            limits
                .acquire("gmail", &p, "conn_1", Duration::from_secs(1))
                .await
                .unwrap();
        }
        // Two from the burst, then one every 100 ms.
        assert!(
            started.elapsed() >= Duration::from_millis(180),
            "{:?}",
            started.elapsed()
        );
        // Another connection has its own bucket.
        let other = Instant::now();
        limits
            .acquire("gmail", &p, "conn_2", Duration::ZERO)
            .await
            .unwrap();
        assert!(other.elapsed() < Duration::from_millis(50));
    }

    #[tokio::test]
    async fn a_replica_spends_its_share_of_the_budget() {
        // 10 per second with bursts of 6, shared by 3: 2 at once, then one every 300 ms.
        let limits = RateLimits::new().shared_by(3);
        let p = profile(10, 1, 6);
        let started = Instant::now();
        for _ in 0..4 {
            limits
                .acquire("gmail", &p, "conn_1", Duration::from_secs(2))
                .await
                .unwrap();
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(580), "{took:?}");
        assert!(took < Duration::from_millis(900), "{took:?}");
        let wait = limits
            .acquire("gmail", &p, "conn_1", Duration::ZERO)
            .await
            .unwrap_err();
        assert!(wait > Duration::from_millis(200), "{wait:?}");
    }

    #[tokio::test]
    async fn a_turn_too_far_away_is_refused_with_the_wait() {
        let limits = RateLimits::new();
        let p = profile(1, 60, 1);
        limits
            .acquire("slow", &p, "c", Duration::ZERO)
            .await
            .unwrap();
        let wait = limits
            .acquire("slow", &p, "c", Duration::from_millis(10))
            .await
            .unwrap_err();
        assert!(wait > Duration::from_secs(50), "{wait:?}");
        // A profile without requests is unlimited.
        for _ in 0..100 {
            limits
                .acquire("none", &profile(0, 1, 0), "c", Duration::ZERO)
                .await
                .unwrap();
        }
    }
}
