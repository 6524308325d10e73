//! Idempotency keys: a caller that repeats a request with the same key gets the stored
//! result instead of a second provider call; the same key with a different request is
//! a conflict. Results are kept (flushed) for [`RETENTION`]. Requests under one key run
//! one at a time, so a retry racing the original waits for it and then replays it.

use crate::domain::{now_ms, UnixMs};
use crate::store::{self, IdempotencyStore, IdempotentResult};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a result answers repeats of its key (Stripe keeps keys 24 h too).
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);

/// What to do with a request carrying a key.
pub enum Begin {
    /// Seen with the same request: answer this.
    Replay(IdempotentResult),
    /// Seen with another request.
    Conflict,
    /// New: run it, then [`Idempotency::complete`] it on success; dropping the flight
    /// without completing lets a retry run again.
    Run(Flight),
}

/// Held while a keyed request runs; later requests with the key wait for it.
pub struct Flight {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    flights: Flights,
    tenant_id: String,
    key: String,
    fingerprint: String,
}

type Flights = Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>;

impl Drop for Flight {
    fn drop(&mut self) {
        let flight_key = format!("{}\0{}", self.tenant_id, self.key);
        let mut flights = self.flights.lock().expect("flights lock");
        // The map and our guard hold the lock; anyone else is waiting, so it stays.
        if flights
            .get(&flight_key)
            .is_some_and(|lock| Arc::strong_count(lock) <= 2)
        {
            flights.remove(&flight_key);
        }
    }
}

/// The idempotency store with per-key flights.
#[derive(Clone)]
pub struct Idempotency {
    store: Arc<dyn IdempotencyStore>,
    flights: Flights,
}

impl Idempotency {
    /// Over `store`.
    pub fn new(store: Arc<dyn IdempotencyStore>) -> Self {
        Idempotency {
            store,
            flights: Arc::default(),
        }
    }

    /// Looks `key` up for a request whose identity is `request` (any JSON: route,
    /// capability, input…), waiting for a request in flight under the same key.
    pub async fn begin(
        &self,
        tenant_id: &str,
        key: &str,
        request: &serde_json::Value,
    ) -> Result<Begin, store::Error> {
        let fingerprint = hex::encode(Sha256::digest(request.to_string().as_bytes()));
        let flight_key = format!("{tenant_id}\0{key}");
        let lock = {
            let mut flights = self.flights.lock().expect("flights lock");
            flights.entry(flight_key).or_default().clone()
        };
        // From here the flight cleans its lock up however this call ends.
        let flight = Flight {
            _guard: lock.lock_owned().await,
            flights: self.flights.clone(),
            tenant_id: tenant_id.to_owned(),
            key: key.to_owned(),
            fingerprint,
        };
        if let Some(stored) = self.store.idempotent_result(tenant_id, key)? {
            if !expired(stored.created_at) {
                return Ok(if stored.fingerprint == flight.fingerprint {
                    Begin::Replay(stored)
                } else {
                    Begin::Conflict
                });
            }
        }
        Ok(Begin::Run(flight))
    }

    /// Stores a successful result under the flight's key and ends the flight.
    pub fn complete(
        &self,
        flight: Flight,
        execution_id: &str,
        output: &serde_json::Value,
        connection_id: &str,
        integration_key: &str,
    ) -> Result<(), store::Error> {
        let result = IdempotentResult {
            fingerprint: flight.fingerprint.clone(),
            execution_id: execution_id.to_owned(),
            output: output.clone(),
            connection_id: connection_id.to_owned(),
            integration_key: integration_key.to_owned(),
            created_at: now_ms(),
        };
        self.store
            .put_idempotent_result(&flight.tenant_id, &flight.key, &result)
    }

    /// Deletes results past their retention.
    pub fn purge(&self) -> Result<usize, store::Error> {
        self.store
            .purge_idempotent_results(now_ms().saturating_sub(RETENTION.as_millis() as u64))
    }
}

fn expired(created_at: UnixMs) -> bool {
    now_ms().saturating_sub(created_at) > RETENTION.as_millis() as u64
}
