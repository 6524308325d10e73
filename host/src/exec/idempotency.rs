//! Idempotency keys: a caller that repeats a request with the same key gets the stored
//! result instead of a second provider call; the same key with a different request is
//! a conflict. Results are kept (flushed) for [`RETENTION`], their outputs sealed in
//! the vault. Requests under one key run one at a time, so a retry racing the original
//! waits for it and then replays it: in a process by a lock per key, across replicas
//! sharing a database by the key's lease in the store.

use crate::credentials::vault::{SealContext, Vault};
use crate::domain::{now_ms, UnixMs};
use crate::store::{
    self, output_seal_id, HeldLease, IdempotencyStore, IdempotentResult, LeaseStore,
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a result answers repeats of its key (Stripe keeps keys 24 h too).
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);

/// What to do with a request carrying a key.
pub enum Begin {
    /// Seen with the same request: answer this.
    Replay(Replayed),
    /// Seen with another request.
    Conflict,
    /// New: run it, then [`Idempotency::complete`] it on success; dropping the flight
    /// without completing lets a retry run again.
    Run(Flight),
}

/// A stored result, opened.
#[derive(Debug, Clone, PartialEq)]
pub struct Replayed {
    /// The original execution's id.
    pub execution_id: String,
    /// Its output.
    pub output: serde_json::Value,
    /// The connection that served it.
    pub connection_id: String,
    /// Its integration key.
    pub integration_key: String,
}

/// Held while a keyed request runs; later requests with the key wait for it.
pub struct Flight {
    // Dropped before the guard (fields drop in order): a local waiter that takes the
    // lock finds the lease free.
    _lease: Option<HeldLease>,
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
    vault: Arc<Vault>,
    flights: Flights,
    leases: Option<(Arc<dyn LeaseStore>, Duration)>,
}

impl Idempotency {
    /// Over `store`, outputs sealed by `vault`.
    pub fn new(store: Arc<dyn IdempotencyStore>, vault: Arc<Vault>) -> Self {
        Idempotency {
            store,
            vault,
            flights: Arc::default(),
            leases: None,
        }
    }

    /// Also takes each key's lease in `leases` for `ttl` while its request runs, so
    /// replicas sharing the store run a key's request once between them.
    pub fn with_leases(mut self, leases: Arc<dyn LeaseStore>, ttl: Duration) -> Self {
        self.leases = Some((leases, ttl));
        self
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
        let guard = lock.lock_owned().await;
        let lease = match &self.leases {
            Some((leases, ttl)) => {
                Some(HeldLease::acquire(leases, key_lease(tenant_id, key), *ttl).await?)
            }
            None => None,
        };
        let flight = Flight {
            _lease: lease,
            _guard: guard,
            flights: self.flights.clone(),
            tenant_id: tenant_id.to_owned(),
            key: key.to_owned(),
            fingerprint,
        };
        if let Some(stored) = self.store.idempotent_result(tenant_id, key)? {
            if !expired(stored.created_at) {
                if stored.fingerprint != flight.fingerprint {
                    return Ok(Begin::Conflict);
                }
                if let Some(replayed) = self.open(stored) {
                    return Ok(Begin::Replay(replayed));
                }
            }
        }
        Ok(Begin::Run(flight))
    }

    /// The stored result opened; `None` when it cannot be (a record of an earlier
    /// version without a sealed output, or one the vault refuses: logged).
    fn open(&self, stored: IdempotentResult) -> Option<Replayed> {
        let sealed = stored.sealed_output.as_ref()?;
        let id = output_seal_id(&stored.execution_id);
        let context = SealContext {
            credential_id: &id,
            connection_id: &stored.connection_id,
        };
        let output = match self.vault.open(context, sealed) {
            Ok(plain) => serde_json::from_slice(&plain).ok()?,
            Err(e) => {
                tracing::error!(execution = %stored.execution_id, error = %e, "a stored idempotent result does not open; running the request again");
                return None;
            }
        };
        Some(Replayed {
            execution_id: stored.execution_id,
            output,
            connection_id: stored.connection_id,
            integration_key: stored.integration_key,
        })
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
        let id = output_seal_id(execution_id);
        let context = SealContext {
            credential_id: &id,
            connection_id,
        };
        let plain = zeroize::Zeroizing::new(output.to_string().into_bytes());
        let result = IdempotentResult {
            fingerprint: flight.fingerprint.clone(),
            execution_id: execution_id.to_owned(),
            sealed_output: Some(self.vault.seal(context, &plain)),
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

/// The lease of a tenant's key: hashed, so any key makes a valid name.
fn key_lease(tenant_id: &str, key: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(tenant_id.as_bytes());
    hash.update([0]);
    hash.update(key.as_bytes());
    format!("idempotency:{}", hex::encode(hash.finalize()))
}

fn expired(created_at: UnixMs) -> bool {
    now_ms().saturating_sub(created_at) > RETENTION.as_millis() as u64
}
