//! Connection lifecycle notifications: `connection.needs_reauth` when a provider rejects
//! a connection's credential for good, `connection.recovered` when a new credential or
//! a completed OAuth flow brings it back. Each event is one log line and, when a webhook
//! is configured (`CONDUIT_WEBHOOK_URL`, `CONDUIT_WEBHOOK_SECRET`), one JSON POST signed
//! `X-Conduit-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">` (Stripe's
//! scheme: the timestamp lets a receiver refuse replays).
//!
//! Nothing is lost: an event is written to the store's outbox, flushed, before
//! `notify` returns, and a background task delivers the outbox at least once, in order
//! per connection (a connection's next event waits until its previous one is
//! accepted), retrying with exponential backoff. A restart resumes where it stopped.
//! An event still refused after [`MAX_AGE`] is given up, loudly. Replicas sharing a
//! database deliver one shared outbox: a pass runs under the outbox's lease, so one
//! replica at a time sends, and each looks at least every [`IDLE_POLL`], so an event
//! raised on a replica that died is still delivered by another. A process alone on its
//! store sleeps until an event is raised or a retry is due.

use crate::domain::{now_ms, rfc3339, Connection};
use crate::store::{HeldLease, LeaseStore, OutboxEntry, OutboxStore, Stores};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use zeroize::Zeroizing;

/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "x-conduit-signature";

/// How long an undelivered event is retried before it is given up (and logged as lost).
pub const MAX_AGE: Duration = Duration::from_secs(3 * 24 * 3600);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10 * 60);
/// Outbox entries looked at per pass: connections whose receiver keeps refusing
/// wait in it, so it is large enough that they do not hide the others'.
const BATCH: usize = 10_000;
/// Deliveries in flight at once.
const CONCURRENT: usize = 16;

/// How often an idle deliverer looks at the outbox for events raised elsewhere.
pub const IDLE_POLL: Duration = Duration::from_secs(1);

/// The lease a delivery pass holds.
const OUTBOX_LEASE: &str = "webhook-outbox";

/// Where webhooks go and the key they are signed with.
#[derive(Clone)]
pub struct WebhookConfig {
    /// The receiver's URL.
    pub url: String,
    /// The HMAC key shared with the receiver.
    pub secret: Zeroizing<String>,
    /// Delay before the first retry; doubled on each further one.
    pub first_retry: Duration,
}

/// What happened to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EventKind {
    /// The provider rejected the credential; a person must reconnect the account.
    #[serde(rename = "connection.needs_reauth")]
    NeedsReauth,
    /// The connection is usable again.
    #[serde(rename = "connection.recovered")]
    Recovered,
}

/// One notification, as the webhook body carries it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Unique per event, so receivers can drop duplicates of a retried delivery.
    pub id: String,
    /// `connection.needs_reauth` or `connection.recovered`.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The connection.
    pub connection_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// Its connector slug.
    pub connector: String,
    /// Why (the provider's reason, free of secrets).
    pub reason: String,
    /// When, RFC 3339.
    pub time: String,
}

impl Event {
    /// An event about `connection`.
    pub fn new(kind: EventKind, connection: &Connection, reason: &str) -> Self {
        Event {
            id: format!("evt_{}", uuid::Uuid::new_v4().simple()),
            kind,
            connection_id: connection.id.clone(),
            tenant_id: connection.tenant_id.clone(),
            connector: connection.connector.clone(),
            reason: reason.to_owned(),
            time: rfc3339(now_ms()),
        }
    }
}

/// Sends notifications; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    outbox: Option<Outbox>,
}

#[derive(Clone)]
struct Outbox {
    store: Arc<dyn OutboxStore>,
    wake: Arc<Notify>,
    leases: Arc<dyn LeaseStore>,
    lease: Duration,
    /// How often to look for events raised elsewhere (replicas sharing the store).
    idle_poll: Option<Duration>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Notifier {
    /// Log lines only.
    pub fn log_only() -> Self {
        Notifier { outbox: None }
    }

    /// Log lines and webhooks to `config` through the durable outbox in `stores`,
    /// delivered by a task on the current runtime (which first delivers what an earlier
    /// run left), each pass under the outbox's lease, held for at most `lease`.
    pub fn with_webhook(
        config: WebhookConfig,
        client: reqwest::Client,
        stores: &Stores,
        lease: Duration,
    ) -> Self {
        let outbox = Outbox {
            store: stores.outbox.clone(),
            wake: Arc::new(Notify::new()),
            leases: stores.leases.clone(),
            lease,
            idle_poll: stores.shared.then_some(IDLE_POLL),
        };
        tokio::spawn(deliver_all(config, client, outbox.clone()));
        Notifier {
            outbox: Some(outbox),
        }
    }

    /// Logs `event` and stores its webhook for delivery.
    pub fn notify(&self, event: Event) {
        tracing::warn!(
            event = ?event.kind,
            connection = %event.connection_id,
            tenant = %event.tenant_id,
            connector = %event.connector,
            reason = %event.reason,
            "connection lifecycle event"
        );
        let Some(outbox) = &self.outbox else { return };
        let body = serde_json::to_vec(&event).expect("events serialize");
        match outbox.store.enqueue(&event.connection_id, now_ms(), &body) {
            Ok(_) => outbox.wake.notify_one(),
            Err(e) => {
                tracing::error!(event = %event.id, error = %e, "storing a webhook delivery failed; event not delivered")
            }
        }
    }

    /// Webhook deliveries waiting (for metrics).
    pub fn pending(&self) -> usize {
        self.outbox.as_ref().map_or(0, |o| o.store.backlog())
    }
}

/// The signature header value for `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Where a connection's deliveries stand after a refusal.
struct Lane {
    attempts: u32,
    next_at: Instant,
}

/// Delivers the outbox forever: each pass sends the oldest waiting event of every
/// connection not backing off (a few at a time), removes those accepted, and sleeps
/// until the next retry is due or a new event arrives.
async fn deliver_all(config: WebhookConfig, client: reqwest::Client, outbox: Outbox) {
    let mut lanes: HashMap<String, Lane> = HashMap::new();
    loop {
        // One replica at a time: none sends what another is sending.
        let held = match HeldLease::acquire(&outbox.leases, OUTBOX_LEASE.into(), outbox.lease).await
        {
            Ok(held) => held,
            Err(e) => {
                tracing::error!(error = %e, "taking the webhook outbox lease failed; retrying");
                tokio::time::sleep(config.first_retry.max(Duration::from_secs(1))).await;
                continue;
            }
        };
        let pending = match outbox.store.pending(BATCH) {
            Ok(pending) => pending,
            Err(e) => {
                // Retried on its own: a new event is not needed to look again.
                tracing::error!(error = %e, "reading the webhook outbox failed; retrying");
                tokio::time::sleep(config.first_retry.max(Duration::from_secs(1))).await;
                continue;
            }
        };
        let now = Instant::now();
        let mut heads = HashSet::new();
        let due: Vec<OutboxEntry> = pending
            .into_iter()
            .filter(|entry| heads.insert(entry.connection_id.clone()))
            .filter(|entry| {
                lanes
                    .get(&entry.connection_id)
                    .is_none_or(|l| l.next_at <= now)
            })
            .collect();
        let mut sent = Vec::with_capacity(due.len());
        for some in due.chunks(CONCURRENT) {
            let attempts = some.iter().map(|entry| deliver(&config, &client, entry));
            sent.extend(futures_util::future::join_all(attempts).await);
        }
        let mut accepted = false;
        for (entry, ok) in due.iter().zip(sent) {
            let done = (ok || abandoned(entry))
                && match outbox.store.remove(entry.sequence) {
                    Ok(()) => true,
                    // Kept, so delivered again after a backoff (at least once).
                    Err(e) => {
                        tracing::error!(error = %e, "removing a delivered webhook failed");
                        false
                    }
                };
            if done {
                lanes.remove(&entry.connection_id);
                accepted = true;
            } else {
                let lane = lanes.entry(entry.connection_id.clone()).or_insert(Lane {
                    attempts: 0,
                    next_at: now,
                });
                lane.attempts += 1;
                lane.next_at = Instant::now() + backoff(config.first_retry, lane.attempts);
            }
        }
        drop(held);
        if accepted {
            continue;
        }
        lanes.retain(|connection, _| heads.contains(connection));
        let idle_until = outbox.idle_poll.map(|poll| Instant::now() + poll);
        let retry_at = lanes.values().map(|l| l.next_at).min();
        match retry_at.into_iter().chain(idle_until).min() {
            Some(at) => {
                tokio::select! {
                    _ = outbox.wake.notified() => {}
                    _ = tokio::time::sleep_until(at.into()) => {}
                }
            }
            None => outbox.wake.notified().await,
        }
    }
}

/// One attempt; `true` when the receiver accepted it.
async fn deliver(config: &WebhookConfig, client: &reqwest::Client, entry: &OutboxEntry) -> bool {
    let timestamp = now_ms() / 1000;
    let signature = sign(config.secret.as_bytes(), timestamp, &entry.body);
    let sent = client
        .post(&config.url)
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, &signature)
        .timeout(Duration::from_secs(10))
        .body(entry.body.clone())
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => true,
        Ok(response) => {
            tracing::warn!(sequence = entry.sequence, status = %response.status(), "webhook refused; will retry");
            false
        }
        Err(e) => {
            tracing::warn!(sequence = entry.sequence, error = %e.without_url(), "webhook unreachable; will retry");
            false
        }
    }
}

/// Whether an undelivered event is too old to keep trying.
fn abandoned(entry: &OutboxEntry) -> bool {
    let age = now_ms().saturating_sub(entry.raised_at);
    let give_up = age > MAX_AGE.as_millis() as u64;
    if give_up {
        tracing::error!(sequence = entry.sequence, connection = %entry.connection_id, "webhook delivery gave up after {MAX_AGE:?}");
    }
    give_up
}

/// The wait after the `attempts`-th refusal: doubling from `first`, capped.
fn backoff(first: Duration, attempts: u32) -> Duration {
    first
        .saturating_mul(1 << attempts.saturating_sub(1).min(20))
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_the_timestamp_and_the_body() {
        // The signed message is `t.body`.
        let signature = sign(b"Jefe", 1_700_000_000, b"body");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"1700000000.body");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(signature, format!("t=1700000000,v1={expected}"));
        // The timestamp is signed: the same body at another time signs differently.
        assert_ne!(sign(b"Jefe", 1_700_000_001, b"body"), signature);
    }

    #[test]
    fn retries_back_off_doubling_up_to_a_cap() {
        let first = Duration::from_secs(1);
        assert_eq!(backoff(first, 1), first);
        assert_eq!(backoff(first, 3), Duration::from_secs(4));
        assert_eq!(backoff(first, 60), MAX_BACKOFF);
    }
}
