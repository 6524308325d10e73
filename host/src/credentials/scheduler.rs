//! Refresh ahead of expiry: a tokio task that, every interval (30 s by default, with
//! jitter), calls [`Scheduler::refresh_due`], which finds the credentials expiring
//! within the refresh lead through the store's expiry index (a range scan, so the cost
//! follows the number due, not the number stored) and refreshes them with bounded
//! concurrency through the same single-flight path vends use. Non-ACTIVE connections
//! are dropped from the index; credentials backing off after a transient failure (see
//! `tokens`) are skipped until their next attempt. Each pass also drops
//! expired OAuth states.

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
        for (expires_at, connection_id) in due {
            if self.tokens.backing_off(&connection_id, now) {
                report.backing_off += 1;
                continue;
            }
            let scheduler = self.clone();
            let slots = slots.clone();
            let delay = spread_delay(self.config.spread);
            running.spawn(async move {
                tokio::time::sleep(delay).await;
                let _slot = slots.acquire_owned().await.expect("never closed");
                scheduler.refresh_one(expires_at, &connection_id).await
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

    async fn refresh_one(&self, expires_at: UnixMs, connection_id: &str) -> Outcome {
        let connection = match self.connections.connection(connection_id) {
            Ok(Some(c)) if c.status == ConnectionStatus::Active => c,
            Ok(_) => return self.drop_entry(expires_at, connection_id),
            Err(e) => {
                tracing::error!(connection = %connection_id, error = %e, "reading a due connection failed");
                return Outcome::Failed;
            }
        };
        let lead = self.tokens.leads().for_connector(&connection.connector);
        if expires_at > now_ms() + lead.as_millis() as u64 {
            // Due only under a longer lead than this connector's.
            return Outcome::AlreadyFresh;
        }
        match self.tokens.refresh(&connection).await {
            Ok(Refreshed::Renewed(_)) => Outcome::Renewed,
            Ok(Refreshed::NotDue(_)) => Outcome::AlreadyFresh,
            Ok(Refreshed::Deferred(_, _)) | Err(tokens::Error::RefreshFailed(_)) => {
                Outcome::Deferred
            }
            Err(tokens::Error::NeedsReauth) => Outcome::Rejected,
            Err(tokens::Error::Revoked | tokens::Error::Broken | tokens::Error::NoCredential) => {
                self.drop_entry(expires_at, connection_id)
            }
            Err(e) => {
                tracing::error!(connection = %connection_id, error = %e, "scheduled refresh failed");
                Outcome::Failed
            }
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
