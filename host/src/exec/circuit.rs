//! Circuit breakers, one per connection: after `threshold` consecutive provider
//! failures (unavailable, timeouts, 5xx) a connection's circuit opens for `cooldown`,
//! during which calls go to the next binding instead of waiting on a failing provider.
//! After the cooldown one call is let through; its outcome closes or reopens it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// When circuits open and for how long.
#[derive(Debug, Clone, Copy)]
pub struct CircuitPolicy {
    /// Consecutive failures that open a circuit.
    pub threshold: u32,
    /// How long it stays open.
    pub cooldown: Duration,
}

impl Default for CircuitPolicy {
    fn default() -> Self {
        CircuitPolicy {
            threshold: 5,
            cooldown: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    failures: u32,
    open_until: Option<Instant>,
    /// A half-open trial call is out until then; others wait for its outcome.
    trial_until: Option<Instant>,
}

/// Every connection's circuit; cheap to clone.
#[derive(Clone, Default)]
pub struct Circuits {
    policy: CircuitPolicy,
    states: Arc<Mutex<HashMap<String, State>>>,
}

impl Circuits {
    /// Circuits under `policy`.
    pub fn new(policy: CircuitPolicy) -> Self {
        Circuits {
            policy,
            states: Arc::default(),
        }
    }

    /// `Err(remaining)` while the connection's circuit is open.
    pub fn check(&self, connection_id: &str) -> Result<(), Duration> {
        let mut states = self.states.lock().expect("circuits lock");
        let Some(state) = states.get_mut(connection_id) else {
            return Ok(());
        };
        let now = Instant::now();
        if let Some(until) = state.trial_until.filter(|until| *until > now) {
            return Err(until - now);
        }
        match state.open_until {
            Some(until) if until > now => Err(until - now),
            Some(_) => {
                // Half open: this call is the one trial (bounded, in case it never
                // reports); one more failure reopens at once.
                state.open_until = None;
                state.trial_until = Some(now + self.policy.cooldown);
                state.failures = self.policy.threshold.saturating_sub(1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Records how a call that reached the provider ended.
    pub fn record(&self, connection_id: &str, provider_failed: bool) {
        let mut states = self.states.lock().expect("circuits lock");
        if !provider_failed {
            states.remove(connection_id);
            return;
        }
        let state = states.entry(connection_id.to_owned()).or_default();
        state.trial_until = None;
        state.failures += 1;
        if state.failures >= self.policy.threshold {
            state.open_until = Some(Instant::now() + self.policy.cooldown);
            tracing::warn!(connection = %connection_id, failures = state.failures, "circuit opened");
        }
    }

    /// A call `check` let through never reached the provider: a half-open trial it
    /// held is free again, and nothing else changes.
    pub fn release(&self, connection_id: &str) {
        let mut states = self.states.lock().expect("circuits lock");
        if let Some(state) = states.get_mut(connection_id) {
            state.trial_until = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_half_opens_after_the_cooldown() {
        let circuits = Circuits::new(CircuitPolicy {
            threshold: 3,
            cooldown: Duration::from_millis(30),
        });
        for _ in 0..2 {
            circuits.record("c", true);
        }
        assert!(circuits.check("c").is_ok());
        circuits.record("c", true);
        assert!(circuits.check("c").is_err());
        assert!(circuits.check("other").is_ok());
        std::thread::sleep(Duration::from_millis(40));
        assert!(circuits.check("c").is_ok(), "half open after the cooldown");
        assert!(circuits.check("c").is_err(), "one trial at a time");
        circuits.record("c", true);
        assert!(
            circuits.check("c").is_err(),
            "one failure in half-open reopens"
        );
        std::thread::sleep(Duration::from_millis(40));
        assert!(circuits.check("c").is_ok());
        circuits.record("c", false);
        circuits.record("c", true);
        assert!(circuits.check("c").is_ok(), "a success closes it");
    }
}
