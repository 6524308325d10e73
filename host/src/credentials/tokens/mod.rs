//! The token lifecycle: sealing a connection's credential into the vault and vending
//! it back, refreshing it on read when it is within the refresh lead of expiry.
//!
//! A warm vend is one store read and one decrypt. A due credential is refreshed under a
//! per-connection lock (single flight): concurrent vends wait for the one refresh in
//! flight and then read its result, so a rotating refresh token is used exactly once.
//! The refreshed credential is written compare-and-swap on its version and flushed to
//! disk before anyone is handed the new access token; a response without a refresh
//! token keeps the old one. Replicas sharing a database also take the credential's
//! refresh lease in the store ([`store::refresh_lease`]): a refresh
//! runs on one replica at a time, the others wait for the lease and re-read, and the
//! write is fenced by the lease's generation. A rejected refresh token flips the connection to
//! `NEEDS_REAUTH`; a transient failure never does.

use crate::credentials::notify::{Event, EventKind, Notifier};
use crate::credentials::vault::{self, SealContext, Vault};
use crate::domain::{
    now_ms, Class, Classify, Connection, ConnectionStatus, CredentialKind, ErrorClass,
    SecretFields, UnixMs,
};
use crate::store::{
    self, ConnectionStore, CredentialStore, HeldLease, LeaseStore, StoredCredential, Stores,
};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zeroize::Zeroizing;

/// How long before expiry a credential is refreshed, by default.
pub const DEFAULT_REFRESH_LEAD: Duration = Duration::from_secs(10 * 60);

/// Vend and seal failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection must be re-authorized before it vends.
    #[error("the connection needs re-authorization")]
    NeedsReauth,
    /// The connection was revoked.
    #[error("the connection is revoked")]
    Revoked,
    /// The connection is in the error state.
    #[error("the connection is in the error state")]
    Broken,
    /// No credential has been stored for the connection.
    #[error("the connection has no credential yet")]
    NoCredential,
    /// The access token expired and could not be refreshed for now.
    #[error("the credential expired and refreshing it failed: {0}")]
    RefreshFailed(String),
    /// The vault refused.
    #[error(transparent)]
    Vault(#[from] vault::Error),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl Classify for Error {
    fn classify(&self) -> ErrorClass {
        use Class::*;
        // None of these asked the provider to act: another binding may serve.
        match self {
            Error::NeedsReauth => ErrorClass::new(Conflict, "needs_reauth").failover(),
            Error::Revoked => ErrorClass::new(Conflict, "revoked").failover(),
            Error::Broken => ErrorClass::new(Conflict, "connection_error").failover(),
            Error::NoCredential => ErrorClass::new(Conflict, "no_credential").failover(),
            Error::RefreshFailed(_) => ErrorClass::new(Unavailable, "refresh_failed")
                .failover()
                .meta(serde_json::json!({"retryable": true})),
            Error::Vault(e) => e.classify(),
            Error::Store(e) => e.classify(),
        }
    }
}

/// Why a refresh did not produce new tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshError {
    /// The provider rejected the refresh token (`invalid_grant`, revoked).
    Rejected(String),
    /// A temporary failure (5xx, timeout): try again later.
    Transient(String),
    /// No attempt can succeed until someone changes the connection (a `byok`
    /// connection without its OAuth client): it is flagged `ERROR`.
    Unrefreshable(String),
}

/// A boxed future, for the object-safe [`Refresher`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Trades a refresh token for new tokens: through the connection's connector in
/// production, a double in tests.
pub trait Refresher: Send + Sync {
    /// New tokens for `connection`; the refresh token may be rotated in the answer.
    fn refresh<'a>(
        &'a self,
        connection: &'a Connection,
        refresh_token: &'a str,
    ) -> BoxFuture<'a, Result<SecretFields, RefreshError>>;
}

/// How long before expiry credentials are refreshed: a default and per-connector
/// overrides (a provider with short-lived tokens wants a shorter lead).
#[derive(Debug, Clone)]
pub struct RefreshLeads {
    /// For connectors without an override.
    pub default: Duration,
    /// By connector slug.
    pub per_connector: HashMap<String, Duration>,
}

impl Default for RefreshLeads {
    fn default() -> Self {
        RefreshLeads {
            default: DEFAULT_REFRESH_LEAD,
            per_connector: HashMap::new(),
        }
    }
}

impl RefreshLeads {
    /// The lead for `connector`.
    pub fn for_connector(&self, connector: &str) -> Duration {
        self.per_connector
            .get(connector)
            .copied()
            .unwrap_or(self.default)
    }

    /// The longest lead of all: how far ahead the scheduler must look.
    pub fn longest(&self) -> Duration {
        self.per_connector
            .values()
            .copied()
            .fold(self.default, Duration::max)
    }
}

/// How long a credential waits after transient refresh failures: `base · 2^(n-1)`,
/// capped at `max`, with equal jitter. While it waits and its token is still valid,
/// vends serve that token and the scheduler skips it, so a failing provider is not
/// hammered by every read.
#[derive(Debug, Clone, Copy)]
pub struct BackoffPolicy {
    /// Wait after the first failure.
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            base: Duration::from_secs(30),
            max: Duration::from_secs(15 * 60),
        }
    }
}

impl BackoffPolicy {
    /// The wait after `failures` consecutive failures: half fixed, half random, so
    /// credentials that failed together do not retry together.
    pub fn delay(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(20);
        let full = self.base.saturating_mul(1u32 << exponent).min(self.max);
        let half = full / 2;
        half + random_up_to(half)
    }
}

/// A random duration in `0..=max`.
pub fn random_up_to(max: Duration) -> Duration {
    use rand::Rng;
    if max.is_zero() {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::thread_rng().gen_range(0..=max.as_nanos() as u64))
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    next_attempt: UnixMs,
}

/// What a refresh attempt did.
#[derive(Debug)]
pub enum Refreshed {
    /// New tokens were obtained and stored.
    Renewed(SecretFields),
    /// Nothing to do: not due (another flight just refreshed it) or not refreshable.
    NotDue(SecretFields),
    /// A transient failure; the current token is still valid and is returned.
    Deferred(SecretFields, String),
}

impl Refreshed {
    fn into_secret(self) -> SecretFields {
        match self {
            Refreshed::Renewed(s) | Refreshed::NotDue(s) | Refreshed::Deferred(s, _) => s,
        }
    }
}

/// Seals, vends and refreshes credentials.
#[derive(Clone)]
pub struct Tokens {
    credentials: Arc<dyn CredentialStore>,
    connections: Arc<dyn ConnectionStore>,
    vault: Arc<Vault>,
    notifier: Notifier,
    refresher: Option<Arc<dyn Refresher>>,
    leads: Arc<RefreshLeads>,
    backoff: BackoffPolicy,
    failures: Arc<Mutex<HashMap<String, Failures>>>,
    flights: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    leases: Arc<dyn LeaseStore>,
    lease: Duration,
}

impl Tokens {
    /// Tokens over the credential and connection stores and `vault`, without refresh
    /// (credentials vend as stored).
    pub fn new(stores: &Stores, vault: Arc<Vault>, notifier: Notifier) -> Self {
        Tokens {
            credentials: stores.credentials.clone(),
            connections: stores.connections.clone(),
            vault,
            notifier,
            refresher: None,
            leads: Arc::default(),
            backoff: BackoffPolicy::default(),
            failures: Arc::default(),
            flights: Arc::default(),
            leases: stores.leases.clone(),
            lease: store::DEFAULT_LEASE,
        }
    }

    /// Holds refresh leases for `lease` instead of the default.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Backs off transient refresh failures by `policy` instead of the default.
    pub fn with_backoff(mut self, policy: BackoffPolicy) -> Self {
        self.backoff = policy;
        self
    }

    /// Whether the connection's refresh is waiting out an earlier transient failure.
    pub fn backing_off(&self, connection_id: &str, now: UnixMs) -> bool {
        self.next_attempt(connection_id).is_some_and(|at| at > now)
    }

    /// When the connection's refresh may be tried again after transient failures.
    pub fn next_attempt(&self, connection_id: &str) -> Option<UnixMs> {
        let failures = self.failures.lock().expect("failures lock");
        failures.get(connection_id).map(|f| f.next_attempt)
    }

    fn record_failure(&self, connection_id: &str) {
        let mut failures = self.failures.lock().expect("failures lock");
        let entry = failures
            .entry(connection_id.to_owned())
            .or_insert(Failures {
                count: 0,
                next_attempt: 0,
            });
        entry.count = entry.count.saturating_add(1);
        let wait = self.backoff.delay(entry.count);
        entry.next_attempt = now_ms() + wait.as_millis() as u64;
        tracing::info!(connection = %connection_id, failures = entry.count, wait_ms = wait.as_millis() as u64, "backing off the refresh");
    }

    fn clear_failures(&self, connection_id: &str) {
        self.failures
            .lock()
            .expect("failures lock")
            .remove(connection_id);
    }

    /// Refreshes due credentials through `refresher`, `leads` before expiry.
    pub fn with_refresher(mut self, refresher: Arc<dyn Refresher>, leads: RefreshLeads) -> Self {
        self.refresher = Some(refresher);
        self.leads = Arc::new(leads);
        self
    }

    /// The refresh leads in force.
    pub fn leads(&self) -> &RefreshLeads {
        &self.leads
    }

    /// Seals `secret` as the connection's credential (replacing any previous one). A
    /// `NEEDS_REAUTH` or `ERROR` connection becomes `ACTIVE` again; the returned
    /// connection has its current status.
    pub fn put(
        &self,
        connection: &Connection,
        kind: CredentialKind,
        secret: &SecretFields,
    ) -> Result<(StoredCredential, Connection), Error> {
        if connection.status == ConnectionStatus::Revoked {
            return Err(Error::Revoked);
        }
        let previous = self.credentials.credential(&connection.id)?;
        let stored = self.seal(
            connection,
            kind,
            previous.map_or(1, |p| p.version + 1),
            secret,
        );
        self.credentials.put_credential(&connection.id, &stored)?;
        let connection = self.reactivate(connection)?;
        Ok((stored, connection))
    }

    fn reactivate(&self, connection: &Connection) -> Result<Connection, Error> {
        let from = connection.status;
        if !matches!(
            from,
            ConnectionStatus::NeedsReauth | ConnectionStatus::Error
        ) {
            return Ok(connection.clone());
        }
        let Some(active) = self.connections.transition_status(
            &connection.id,
            from,
            ConnectionStatus::Active,
            None,
        )?
        else {
            // Someone else moved it meanwhile; report what is stored.
            return Ok(self
                .connections
                .connection(&connection.id)?
                .unwrap_or_else(|| connection.clone()));
        };
        if from == ConnectionStatus::NeedsReauth {
            self.notifier.notify(Event::new(
                EventKind::Recovered,
                &active,
                "a new credential was stored",
            ));
        }
        Ok(active)
    }

    /// Flips an `ACTIVE` connection to `NEEDS_REAUTH` and notifies, once however many
    /// callers see the rejection. The scheduler stops looking at it.
    pub fn mark_needs_reauth(&self, connection_id: &str, reason: &str) -> Result<(), Error> {
        let Some(flipped) = self.connections.transition_status(
            connection_id,
            ConnectionStatus::Active,
            ConnectionStatus::NeedsReauth,
            Some(reason),
        )?
        else {
            return Ok(());
        };
        self.unindex(connection_id)?;
        self.notifier
            .notify(Event::new(EventKind::NeedsReauth, &flipped, reason));
        Ok(())
    }

    /// The connection's plaintext credential, if its status allows vending, refreshed
    /// first when it is within the refresh lead of expiry.
    pub async fn vend(&self, connection: &Connection) -> Result<SecretFields, Error> {
        check_status(connection.status)?;
        let stored = self
            .credentials
            .credential(&connection.id)?
            .ok_or(Error::NoCredential)?;
        let secret = self.open(connection, &stored)?;
        if !self.is_due(connection, stored.expires_at) {
            return Ok(secret);
        }
        Ok(self.refresh(connection).await?.into_secret())
    }

    /// Refreshes the credential if it is due, under the connection's single-flight
    /// lock. A caller that waited for the lock re-reads first: the refresh it waited for
    /// has usually made the credential fresh already.
    pub async fn refresh(&self, connection: &Connection) -> Result<Refreshed, Error> {
        let flight = self.flight(&connection.id);
        let _guard = flight.lock().await;
        let lease = HeldLease::acquire(
            &self.leases,
            store::refresh_lease(&connection.id),
            self.lease,
        )
        .await?;
        let current = self
            .connections
            .connection(&connection.id)?
            .unwrap_or_else(|| connection.clone());
        check_status(current.status)?;
        let stored = self
            .credentials
            .credential(&connection.id)?
            .ok_or(Error::NoCredential)?;
        let secret = self.open(connection, &stored)?;
        let (Some(refresher), Some(refresh_token)) = (&self.refresher, secret.refresh_token())
        else {
            return Ok(Refreshed::NotDue(secret));
        };
        if !self.is_due(&current, stored.expires_at) {
            return Ok(Refreshed::NotDue(secret));
        }
        let still_valid = stored.expires_at.is_some_and(|at| at > now_ms());
        if still_valid && self.backing_off(&connection.id, now_ms()) {
            return Ok(Refreshed::Deferred(
                secret,
                "waiting out an earlier transient failure".into(),
            ));
        }
        let outcome = refresher.refresh(&current, refresh_token).await;
        if matches!(outcome, Err(RefreshError::Transient(_))) {
            self.record_failure(&connection.id);
        } else {
            self.clear_failures(&connection.id);
        }
        match outcome {
            Ok(mut fresh) => {
                // A response without a refresh token keeps the one we have.
                if fresh.refresh_token.is_none() {
                    fresh.refresh_token = secret.refresh_token.clone();
                }
                self.replace(connection, &stored, &fresh, &lease)?;
                Ok(Refreshed::Renewed(fresh))
            }
            Err(RefreshError::Rejected(reason)) => {
                self.mark_needs_reauth(&connection.id, &reason)?;
                Err(Error::NeedsReauth)
            }
            Err(RefreshError::Transient(reason)) => {
                tracing::warn!(connection = %connection.id, reason = %reason, "credential refresh failed; will retry");
                if still_valid {
                    Ok(Refreshed::Deferred(secret, reason))
                } else {
                    Err(Error::RefreshFailed(reason))
                }
            }
            Err(RefreshError::Unrefreshable(reason)) => {
                self.mark_broken(&connection.id, &reason)?;
                Err(Error::Broken)
            }
        }
    }

    /// Flags an `ACTIVE` connection `ERROR` with `reason` and takes it out of the
    /// expiry index: nothing will refresh it until it is fixed ([`Tokens::reinstate`]).
    fn mark_broken(&self, connection_id: &str, reason: &str) -> Result<(), Error> {
        let flagged = self.connections.transition_status(
            connection_id,
            ConnectionStatus::Active,
            ConnectionStatus::Error,
            Some(reason),
        )?;
        if flagged.is_some() {
            tracing::warn!(connection = %connection_id, reason, "the credential can never refresh as configured; connection flagged ERROR");
            self.unindex(connection_id)?;
        }
        Ok(())
    }

    fn unindex(&self, connection_id: &str) -> Result<(), Error> {
        if let Some(at) = self
            .credentials
            .credential(connection_id)?
            .and_then(|c| c.indexed_at())
        {
            self.credentials.unindex_expiry(at, connection_id)?;
        }
        Ok(())
    }

    /// A connection flagged `ERROR` was fixed (its OAuth client was stored): it is
    /// `ACTIVE` again and its credential back in the expiry index, at its expiry.
    pub fn reinstate(&self, connection: &Connection) -> Result<Connection, Error> {
        let Some(active) = self.connections.transition_status(
            &connection.id,
            ConnectionStatus::Error,
            ConnectionStatus::Active,
            None,
        )?
        else {
            return Ok(connection.clone());
        };
        // A compare-and-swap: a credential written meanwhile indexed itself already.
        if let Some(stored) = self.credentials.credential(&connection.id)? {
            let reindexed = StoredCredential {
                index_at: None,
                ..stored.clone()
            };
            self.credentials
                .replace_credential(&connection.id, stored.version, &reindexed)?;
        }
        Ok(active)
    }

    /// Re-wraps the connection's data key under the vault's primary KEK, under the
    /// connection's flight lock and refresh lease so it never races a refresh. Returns whether anything
    /// was re-wrapped. The secret and its version are unchanged.
    pub async fn rewrap(&self, connection: &Connection) -> Result<bool, Error> {
        let flight = self.flight(&connection.id);
        let _guard = flight.lock().await;
        // Another replica's refresh must not lose its new token to this write.
        let _lease = HeldLease::acquire(
            &self.leases,
            store::refresh_lease(&connection.id),
            self.lease,
        )
        .await?;
        loop {
            let Some(stored) = self.credentials.credential(&connection.id)? else {
                return Ok(false);
            };
            if stored.sealed.key_id == self.vault.primary_key_id() {
                return Ok(false);
            }
            let sealed = self.vault.rewrap(
                seal_context(&stored.credential_id, connection),
                &stored.sealed,
            )?;
            let next = StoredCredential {
                sealed,
                ..stored.clone()
            };
            // A credential PUT may land meanwhile (it takes no flight lock): read again.
            if self
                .credentials
                .replace_credential(&connection.id, stored.version, &next)?
            {
                return Ok(true);
            }
        }
    }

    fn is_due(&self, connection: &Connection, expires_at: Option<UnixMs>) -> bool {
        let lead = self.leads.for_connector(&connection.connector);
        self.refresher.is_some()
            && expires_at.is_some_and(|at| at <= now_ms() + lead.as_millis() as u64)
    }

    fn flight(&self, connection_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut flights = self.flights.lock().expect("flights lock");
        flights.entry(connection_id.to_owned()).or_default().clone()
    }

    fn seal(
        &self,
        connection: &Connection,
        kind: CredentialKind,
        version: u64,
        secret: &SecretFields,
    ) -> StoredCredential {
        let credential_id = format!("cred_{}", uuid::Uuid::new_v4().simple());
        let plaintext =
            Zeroizing::new(serde_json::to_vec(secret).expect("secret fields serialize"));
        StoredCredential {
            sealed: self
                .vault
                .seal(seal_context(&credential_id, connection), &plaintext),
            credential_id,
            version,
            kind,
            expires_at: secret.expires_at,
            refreshable: secret.refresh_token.is_some(),
            updated_at: now_ms(),
            index_at: None,
        }
    }

    /// Seals `fresh` as the next version, durably, while `lease` holds; never
    /// overwrites a newer write.
    fn replace(
        &self,
        connection: &Connection,
        previous: &StoredCredential,
        fresh: &SecretFields,
        lease: &HeldLease,
    ) -> Result<(), Error> {
        let next = self.seal(connection, previous.kind, previous.version + 1, fresh);
        if !self.credentials.replace_credential_fenced(
            &connection.id,
            previous.version,
            lease.generation,
            &next,
        )? {
            // Refreshes hold the lease, so a credential PUT raced this one (the
            // tenant's new credential wins), or the lease lapsed and was taken over.
            tracing::warn!(connection = %connection.id, "the refreshed credential was not stored: a newer one was, or the refresh outlived its lease");
        }
        Ok(())
    }

    fn open(
        &self,
        connection: &Connection,
        stored: &StoredCredential,
    ) -> Result<SecretFields, Error> {
        let plaintext = self.vault.open(
            seal_context(&stored.credential_id, connection),
            &stored.sealed,
        )?;
        serde_json::from_slice(&plaintext).map_err(|_| Error::Vault(vault::Error::OpenFailed))
    }
}

fn check_status(status: ConnectionStatus) -> Result<(), Error> {
    match status {
        ConnectionStatus::Active => Ok(()),
        ConnectionStatus::NeedsReauth => Err(Error::NeedsReauth),
        ConnectionStatus::Revoked => Err(Error::Revoked),
        ConnectionStatus::Error => Err(Error::Broken),
    }
}

/// What a connection's sealed record is bound to in the vault.
pub(crate) fn seal_context<'a>(
    credential_id: &'a str,
    connection: &'a Connection,
) -> SealContext<'a> {
    SealContext {
        credential_id,
        connection_id: &connection.id,
    }
}

#[cfg(test)]
mod tests;
