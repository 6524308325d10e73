//! Refresh ahead of expiry: a tokio task that, every interval (30 s by default, with
//! jitter), calls [`Scheduler::refresh_due`], which finds the credentials expiring
//! within the refresh lead through the store's expiry index (a range scan, so the cost
//! follows the number due, not the number stored) and refreshes them with bounded
//! concurrency through the same single-flight path vends use. Non-ACTIVE connections
//! are dropped from the index. An entry that cannot be refreshed now leaves the window
//! the next passes read: one backing off after a transient failure (see `tokens`), or
//! due only under a longer lead than its connector's, is re-indexed where the window
//! reaches it at its next attempt, so however many wait, they never crowd out the
//! ones that are due. One that can never refresh (a `byok` connection without a client)
//! is flagged `ERROR` by `tokens` and dropped. Each pass also drops expired OAuth
//! states.

use crate::credentials::tokens::{self, Refreshed, Tokens};
use crate::domain::{now_ms, ConnectionStatus, UnixMs};
use crate::store::{self, ConnectionStore, CredentialStore, OauthStore, Stores};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// How the scheduler paces itself.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Time between passes (each pass is jittered by up to a tenth of it).
    pub interval: Duration,
    /// Credentials looked at per pass.
    pub batch: usize,
    /// Refreshes in flight at once.
    pub concurrency: usize,
    /// Refreshes in a pass start spread over up to this long, so a pass does not hit
    /// a provider in one burst.
    pub spread: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            interval: Duration::from_secs(30),
            batch: 1000,
            concurrency: 8,
            spread: Duration::from_secs(1),
        }
    }
}

/// What one pass did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DueReport {
    /// Index entries inside the lead.
    pub due: usize,
    /// Refreshed with new tokens.
    pub renewed: usize,
    /// Already fresh when their turn came (a vend refreshed them first).
    pub already_fresh: usize,
    /// Failed transiently; backing off.
    pub deferred: usize,
    /// The provider rejected the refresh token; the connection needs re-authorization.
    pub rejected: usize,
    /// Not ACTIVE (or gone); dropped from the index.
    pub dropped: usize,
    /// Still waiting out an earlier failure's backoff.
    pub backing_off: usize,
    /// Failed for another reason (logged).
    pub failed: usize,
}

/// The refresh-ahead use case and its task.
pub struct Scheduler {
    credentials: Arc<dyn CredentialStore>,
    connections: Arc<dyn ConnectionStore>,
    oauth_states: Arc<dyn OauthStore>,
    tokens: Tokens,
    config: SchedulerConfig,
}

enum Outcome {
    Renewed,
    AlreadyFresh,
    Deferred,
    Rejected,
    Dropped,
    Failed,
}

impl Scheduler {
    /// A scheduler over the credentials' expiry index, refreshing through `tokens`;
    /// each pass also drops expired pending OAuth states.
    pub fn new(stores: &Stores, tokens: Tokens, config: SchedulerConfig) -> Arc<Self> {
        Arc::new(Scheduler {
            credentials: stores.credentials.clone(),
            connections: stores.connections.clone(),
            oauth_states: stores.oauth.clone(),
            tokens,
            config,
        })
    }

    /// Runs passes forever on the current tokio runtime.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let scheduler = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(jittered(scheduler.config.interval)).await;
                match scheduler.refresh_due(scheduler.config.batch).await {
                    Ok(report) if report != DueReport::default() => {
                        tracing::info!(?report, "refresh pass");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "refresh pass failed"),
                }
                // Housekeeping rides along: abandoned OAuth authorizations expire here.
                if let Err(e) = scheduler.oauth_states.purge_oauth_states(now_ms()) {
                    tracing::error!(error = %e, "purging expired OAuth states failed");
                }
            }
        })
    }

    /// How long the credential due longest has waited since it became due (under the
    /// longest lead), zero when none has: one read of the expiry index.
    pub fn lag(&self) -> Result<Duration, store::Error> {
        let now = now_ms();
        let lead = self.tokens.leads().longest().as_millis() as u64;
        Ok(match self.credentials.due(now + lead, 1)?.first() {
            Some((expires_at, _)) => {
                Duration::from_millis(now.saturating_sub(expires_at.saturating_sub(lead)))
            }
            None => Duration::ZERO,
        })
    }

    /// Refreshes up to `limit` credentials whose expiry falls within the refresh lead.
    pub async fn refresh_due(self: &Arc<Self>, limit: usize) -> Result<DueReport, store::Error> {
        let now = now_ms();
        let until = now + self.tokens.leads().longest().as_millis() as u64;
        let due = self.credentials.due(until, limit)?;
        let mut report = DueReport {
            due: due.len(),
            ..DueReport::default()
        };
        let slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let mut running = JoinSet::new();
        for (indexed_at, connection_id) in due {
            if let Some(retry_at) = self
                .tokens
                .next_attempt(&connection_id)
                .filter(|&at| at > now)
            {
                // Out of the window until its next attempt, so it takes no place in
                // the next passes' batches.
                report.backing_off += 1;
                self.wait_until(indexed_at, &connection_id, retry_at);
                continue;
            }
            let scheduler = self.clone();
            let slots = slots.clone();
            let delay = spread_delay(self.config.spread);
            running.spawn(async move {
                tokio::time::sleep(delay).await;
                let _slot = slots.acquire_owned().await.expect("never closed");
                scheduler.refresh_one(indexed_at, &connection_id).await
            });
        }
        while let Some(done) = running.join_next().await {
            match done.unwrap_or(Outcome::Failed) {
                Outcome::Renewed => report.renewed += 1,
                Outcome::AlreadyFresh => report.already_fresh += 1,
                Outcome::Deferred => report.deferred += 1,
                Outcome::Rejected => report.rejected += 1,
                Outcome::Dropped => report.dropped += 1,
                Outcome::Failed => report.failed += 1,
            }
        }
        Ok(report)
    }

    /// `indexed_at` is the entry's place in the index: the credential's expiry, or
    /// where an earlier pass moved it to wait.
    async fn refresh_one(&self, indexed_at: UnixMs, connection_id: &str) -> Outcome {
        let connection = match self.connections.connection(connection_id) {
            Ok(Some(c)) if c.status == ConnectionStatus::Active => c,
            Ok(_) => return self.drop_entry(indexed_at, connection_id),
            Err(e) => {
                tracing::error!(connection = %connection_id, error = %e, "reading a due connection failed");
                return Outcome::Failed;
            }
        };
        let expires_at = match self.credentials.credential(connection_id) {
            Ok(Some(stored)) => stored.expires_at.unwrap_or(indexed_at),
            Ok(None) => return self.drop_entry(indexed_at, connection_id),
            Err(e) => {
                tracing::error!(connection = %connection_id, error = %e, "reading a due credential failed");
                return Outcome::Failed;
            }
        };
        let lead = self.tokens.leads().for_connector(&connection.connector);
        let due_at = expires_at.saturating_sub(lead.as_millis() as u64);
        if due_at > now_ms() {
            // Due only under a longer lead than this connector's: wait for its own.
            self.wait_until(indexed_at, connection_id, due_at);
            return Outcome::AlreadyFresh;
        }
        match self.tokens.refresh(&connection).await {
            Ok(Refreshed::Renewed(_)) => Outcome::Renewed,
            Ok(Refreshed::NotDue(_)) => Outcome::AlreadyFresh,
            Ok(Refreshed::Deferred(_, _)) | Err(tokens::Error::RefreshFailed(_)) => {
                if let Some(retry_at) = self.tokens.next_attempt(connection_id) {
                    self.wait_until(indexed_at, connection_id, retry_at);
                }
                Outcome::Deferred
            }
            Err(tokens::Error::NeedsReauth) => Outcome::Rejected,
            Err(tokens::Error::Revoked | tokens::Error::Broken | tokens::Error::NoCredential) => {
                self.drop_entry(indexed_at, connection_id)
            }
            Err(e) => {
                tracing::error!(connection = %connection_id, error = %e, "scheduled refresh failed");
                Outcome::Failed
            }
        }
    }

    /// Moves an entry out of the window until `wake`: re-indexed where the window
    /// (`now + the longest lead`) reaches it at `wake`.
    fn wait_until(&self, indexed_at: UnixMs, connection_id: &str, wake: UnixMs) {
        let to = wake.saturating_add(self.tokens.leads().longest().as_millis() as u64);
        if to <= indexed_at {
            return;
        }
        if let Err(e) = self
            .credentials
            .reindex_expiry(connection_id, indexed_at, to)
        {
            tracing::error!(connection = %connection_id, error = %e, "re-indexing a waiting credential failed");
        }
    }

    fn drop_entry(&self, expires_at: UnixMs, connection_id: &str) -> Outcome {
        if let Err(e) = self.credentials.unindex_expiry(expires_at, connection_id) {
            tracing::error!(connection = %connection_id, error = %e, "dropping an expiry index entry failed");
        }
        Outcome::Dropped
    }
}

fn jittered(interval: Duration) -> Duration {
    interval - interval / 10 + random_up_to(interval / 5)
}

fn spread_delay(spread: Duration) -> Duration {
    random_up_to(spread)
}

use crate::credentials::tokens::random_up_to;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::notify::Notifier;
    use crate::credentials::tokens::{BoxFuture, RefreshError, RefreshLeads, Refresher};
    use crate::credentials::vault::{Key, Vault};
    use crate::domain::{Connection, CredentialKind, OwnershipMode, SecretFields};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A token endpoint that is down for `conn_down*`, cannot serve `conn_noclient*`
    /// (a byok connection without a client) and renews everything else.
    #[derive(Default)]
    struct Endpoint {
        renewed: AtomicUsize,
    }

    impl Refresher for Endpoint {
        fn refresh<'a>(
            &'a self,
            connection: &'a Connection,
            _refresh_token: &'a str,
        ) -> BoxFuture<'a, Result<SecretFields, RefreshError>> {
            Box::pin(async move {
                if connection.id.starts_with("conn_down") {
                    return Err(RefreshError::Transient(
                        "503 from the token endpoint".into(),
                    ));
                }
                if connection.id.starts_with("conn_noclient") {
                    return Err(RefreshError::Unrefreshable("no OAuth client yet".into()));
                }
                self.renewed.fetch_add(1, Ordering::SeqCst);
                Ok(SecretFields {
                    access_token: Some("renewed".into()),
                    expires_at: Some(now_ms() + 3_600_000),
                    ..SecretFields::default()
                })
            })
        }
    }

    struct World {
        stores: Stores,
        tokens: Tokens,
        endpoint: Arc<Endpoint>,
    }

    fn world() -> World {
        let stores = Stores::temporary().unwrap();
        let vault = Arc::new(Vault::load(stores.keyring.clone(), Key::generate()).unwrap());
        let endpoint = Arc::new(Endpoint::default());
        let tokens = Tokens::new(&stores, vault, Notifier::log_only())
            .with_refresher(endpoint.clone(), RefreshLeads::default());
        World {
            stores,
            tokens,
            endpoint,
        }
    }

    impl World {
        /// A connection whose token expires `in_ms` from now (inside the lead).
        fn connection(&self, id: &str, in_ms: u64) -> Connection {
            let connection = Connection::fixture(id, OwnershipMode::Byok);
            self.stores.connections.put_connection(&connection).unwrap();
            let secret = SecretFields {
                access_token: Some("old".into()),
                refresh_token: Some("refresh".into()),
                expires_at: Some(now_ms() + in_ms),
                ..SecretFields::default()
            };
            self.tokens
                .put(&connection, CredentialKind::Oauth2, &secret)
                .unwrap();
            connection
        }

        fn scheduler(&self, batch: usize) -> Arc<Scheduler> {
            let config = SchedulerConfig {
                batch,
                spread: Duration::ZERO,
                ..SchedulerConfig::default()
            };
            Scheduler::new(&self.stores, self.tokens.clone(), config)
        }
    }

    /// Twenty credentials that keep failing expire first and fill a batch of ten
    /// twice over; the one that can be refreshed comes after them. Each pass moves
    /// what failed out of the window, so the third pass reaches it. (Skipped in
    /// place, the failing ones took every batch and it was never refreshed.)
    #[tokio::test]
    async fn credentials_that_cannot_refresh_now_do_not_crowd_out_those_that_can() {
        let w = world();
        for i in 0..20 {
            w.connection(&format!("conn_down{i:02}"), 1_000 + i);
        }
        w.connection("conn_fine", 60_000);
        let scheduler = w.scheduler(10);
        let mut passes = Vec::new();
        for _ in 0..5 {
            passes.push(scheduler.refresh_due(10).await.unwrap());
            if w.endpoint.renewed.load(Ordering::SeqCst) == 1 {
                break;
            }
        }
        assert_eq!(w.endpoint.renewed.load(Ordering::SeqCst), 1, "{passes:?}");
        assert_eq!(passes.len(), 3, "{passes:?}");
        assert_eq!(passes[0].deferred, 10);
        assert_eq!(passes[1].deferred, 10);
        // Waiting, they are still indexed: none is lost, each comes back at its time.
        let lead = w.tokens.leads().longest().as_millis() as u64;
        let later = w
            .stores
            .credentials
            .due(now_ms() + lead + 3_600_000, 100)
            .unwrap();
        assert_eq!(
            later
                .iter()
                .filter(|(_, id)| id.starts_with("conn_down"))
                .count(),
            20
        );
    }

    /// A byok connection without its OAuth client can never refresh: it is flagged
    /// `ERROR` with the reason, leaves the index, and is back once fixed.
    #[tokio::test]
    async fn a_credential_that_can_never_refresh_is_flagged_and_leaves_the_index() {
        let w = world();
        let connection = w.connection("conn_noclient", 1_000);
        let report = w.scheduler(10).refresh_due(10).await.unwrap();
        assert_eq!(report.dropped, 1, "{report:?}");
        let flagged = w
            .stores
            .connections
            .connection(&connection.id)
            .unwrap()
            .unwrap();
        assert_eq!(flagged.status, ConnectionStatus::Error);
        assert_eq!(
            flagged.status_reason.as_deref(),
            Some("no OAuth client yet")
        );
        let far = now_ms() + 365 * 24 * 3_600_000;
        assert!(w.stores.credentials.due(far, 10).unwrap().is_empty());

        let fixed = w.tokens.reinstate(&flagged).unwrap();
        assert_eq!(fixed.status, ConnectionStatus::Active);
        assert_eq!(fixed.status_reason, None);
        assert_eq!(w.stores.credentials.due(far, 10).unwrap().len(), 1);
    }
}
