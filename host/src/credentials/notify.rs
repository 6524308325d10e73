//! Connection lifecycle notifications: `connection.needs_reauth` when a provider rejects
//! a connection's credential for good, `connection.recovered` when a new credential or
//! a completed OAuth flow brings it back. Each event is one log line and, when a webhook
//! is configured (`CONDUIT_WEBHOOK_URL`, `CONDUIT_WEBHOOK_SECRET`), one JSON POST signed
//! `X-Conduit-Signature: sha256=<hex HMAC-SHA256 of the body>`, delivered off the
//! request path by a background task that retries with exponential backoff.

use crate::domain::{now_ms, rfc3339, Connection};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use std::time::Duration;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "x-conduit-signature";

/// Delivery attempts per event before it is given up (and logged as lost).
const MAX_ATTEMPTS: u32 = 6;

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
    webhook: Option<mpsc::UnboundedSender<Event>>,
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
        Notifier { webhook: None }
    }

    /// Log lines and webhooks to `config`, delivered by a task on the current runtime.
    pub fn with_webhook(config: WebhookConfig, client: reqwest::Client) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(deliver_all(config, client, receiver));
        Notifier {
            webhook: Some(sender),
        }
    }

    /// Logs `event` and queues its webhook.
    pub fn notify(&self, event: Event) {
        tracing::warn!(
            event = ?event.kind,
            connection = %event.connection_id,
            tenant = %event.tenant_id,
            connector = %event.connector,
            reason = %event.reason,
            "connection lifecycle event"
        );
        if let Some(sender) = &self.webhook {
            if sender.send(event).is_err() {
                tracing::error!("the webhook delivery task has stopped; event not delivered");
            }
        }
    }
}

/// The signature header value for `body`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn deliver_all(
    config: WebhookConfig,
    client: reqwest::Client,
    mut events: mpsc::UnboundedReceiver<Event>,
) {
    while let Some(event) = events.recv().await {
        // Each event is retried on its own task, so one dead receiver window does not
        // hold back later events.
        let (config, client) = (config.clone(), client.clone());
        tokio::spawn(async move { deliver(&config, &client, &event).await });
    }
}

async fn deliver(config: &WebhookConfig, client: &reqwest::Client, event: &Event) {
    let body = serde_json::to_vec(event).expect("events serialize");
    let signature = sign(config.secret.as_bytes(), &body);
    let mut delay = config.first_retry;
    for attempt in 1..=MAX_ATTEMPTS {
        let sent = client
            .post(&config.url)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, &signature)
            .timeout(Duration::from_secs(10))
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => {
                tracing::warn!(event = %event.id, attempt, status = %response.status(), "webhook refused; will retry")
            }
            Err(e) => {
                tracing::warn!(event = %event.id, attempt, error = %e.without_url(), "webhook unreachable; will retry")
            }
        }
        if attempt < MAX_ATTEMPTS {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    tracing::error!(event = %event.id, attempts = MAX_ATTEMPTS, "webhook delivery gave up");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        let signature = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            signature,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
