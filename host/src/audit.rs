//! Audit: what every call did, recorded without secrets. Owns the [`Redactor`], which
//! every string bound for an audit record or a log line passes through, and the
//! recording of [`AuditRecord`]s into the store.

use crate::domain::AuditRecord;
use crate::store::Store;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Replaces every occurrence of known secret values with `<redacted>`.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<Vec<Zeroizing<String>>>,
}

/// Values shorter than this are not redacted by value (they would mangle ordinary text);
/// real keys and tokens are far longer.
const MIN_SECRET_LEN: usize = 6;

impl Redactor {
    /// A redactor for these secret values.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut secrets: Vec<Zeroizing<String>> = secrets
            .into_iter()
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .map(|s| Zeroizing::new(s.to_owned()))
            .collect();
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor {
            secrets: Arc::new(secrets),
        }
    }

    /// `text` with every secret value replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in self.secrets.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "<redacted>");
            }
        }
        out
    }
}

/// Writes audit records on a writer thread, off the request path. A full queue falls
/// back to writing in the caller, so no record is ever dropped; a failed write is logged
/// loudly and never fails the call it describes.
#[derive(Clone)]
pub struct Audit {
    store: Store,
    queue: std::sync::mpsc::SyncSender<Message>,
}

enum Message {
    Record(Box<AuditRecord>),
    /// Answered once everything queued before it is written.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// Records queued before callers write synchronously.
const QUEUE: usize = 4096;

impl Audit {
    /// Audit into `store`, starting the writer thread.
    pub fn new(store: Store) -> Self {
        let (queue, inbox) = std::sync::mpsc::sync_channel(QUEUE);
        let writer = store.clone();
        std::thread::Builder::new()
            .name("conduit-audit".into())
            .spawn(move || {
                for message in inbox {
                    match message {
                        Message::Record(record) => write(&writer, &record),
                        Message::Barrier(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            })
            .expect("the audit writer thread starts");
        Audit { store, queue }
    }

    /// Records `record`.
    pub fn record(&self, record: AuditRecord) {
        use std::sync::mpsc::TrySendError;
        if let Err(TrySendError::Full(message) | TrySendError::Disconnected(message)) =
            self.queue.try_send(Message::Record(Box::new(record)))
        {
            if let Message::Record(record) = message {
                write(&self.store, &record);
            }
        }
    }

    /// Waits until every record queued so far is written.
    pub async fn flush(&self) {
        let (done, written) = tokio::sync::oneshot::channel();
        if self.queue.send(Message::Barrier(done)).is_ok() {
            let _ = written.await;
        }
    }

    /// The tenant's records, newest first, optionally for one connection; includes
    /// everything recorded before the call.
    pub async fn list(
        &self,
        tenant_id: &str,
        connection_id: Option<&str>,
        limit: usize,
    ) -> crate::store::Result<Vec<AuditRecord>> {
        self.flush().await;
        self.store.audit_of(tenant_id, limit, |r| {
            connection_id.is_none_or(|c| r.connection_id.as_deref() == Some(c))
        })
    }
}

fn write(store: &Store, record: &AuditRecord) {
    if let Err(e) = store.append_audit(record) {
        tracing::error!(audit_id = %record.id, error = %e, "audit record could not be written");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_occurrence_and_skips_short_values() {
        let r = Redactor::new(["sk_test_abcdef", "abc"]);
        assert_eq!(
            r.redact("key sk_test_abcdef and sk_test_abcdef, abc"),
            "key <redacted> and <redacted>, abc"
        );
    }
}
