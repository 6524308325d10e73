//! Audit: what every call did, recorded without secrets. Owns the [`Redactor`], which
//! every string bound for an audit record or a log line passes through, the recording
//! of [`AuditRecord`]s into the store off the request path, and their retention: the
//! writer thread deletes records older than the retention period as it goes.
//!
//! May import: `domain`, `store`, `observe`.

mod redact;

pub use redact::Redactor;

use crate::domain::{now_ms, AuditRecord, Connection, OutboundRecord, UnixMs};
use crate::store::{AuditQuery, AuditStore};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The audit record of one connector call, or of a refusal before one: who, on which
/// connection and connector version, what, how it ended (`ok` or the error's code, with
/// its redacted detail), how long it took and the outbound exchanges. Every record of a
/// call is built here; the execute path adds its binding context.
pub fn connector_call(
    tenant_id: &str,
    connection: Option<&Connection>,
    connector_version: Option<u32>,
    operation: &str,
    started: (UnixMs, Instant),
    outbound: Vec<OutboundRecord>,
    (outcome, detail): (&str, Option<String>),
) -> AuditRecord {
    AuditRecord {
        id: new_id(),
        time: started.0,
        tenant_id: tenant_id.to_owned(),
        connection_id: connection.map(|c| c.id.clone()),
        connector: connection.map(|c| c.connector.clone()),
        connector_version,
        capability: operation.to_owned(),
        outcome: outcome.to_owned(),
        detail,
        outbound,
        duration_ms: started.1.elapsed().as_millis() as u64,
        ..AuditRecord::default()
    }
}

/// A fresh audit record id.
pub fn new_id() -> String {
    format!("exe_{}", uuid::Uuid::new_v4().simple())
}

/// Writes audit records on a writer thread, off the request path. A full queue falls
/// back to writing in the caller, so no record is ever dropped; a failed write is logged
/// loudly and never fails the call it describes.
#[derive(Clone)]
pub struct Audit {
    store: Arc<dyn AuditStore>,
    queue: std::sync::mpsc::SyncSender<Message>,
    /// Records queued and not yet written.
    queued: Arc<AtomicUsize>,
}

enum Message {
    Record(Box<AuditRecord>),
    /// Answered once everything queued before it is written.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// Records queued before callers write synchronously.
const QUEUE: usize = 4096;
/// How long the writer gathers records arriving in a burst before writing them.
const GATHER: Duration = Duration::from_millis(2);
/// Most records written in one batch.
const MAX_BATCH: usize = 1024;
/// How often the writer looks for expired records.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// Records deleted per step of a sweep.
const SWEEP_BATCH: usize = 10_000;
/// Longest a sweep runs before the writer goes back to writing.
const SWEEP_BUDGET: Duration = Duration::from_millis(500);
/// The default retention: 30 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

impl Audit {
    /// Audit into `store`, keeping records for `retention`, starting the writer thread.
    pub fn new(store: Arc<dyn AuditStore>, retention: Duration) -> Self {
        let (queue, inbox) = std::sync::mpsc::sync_channel(QUEUE);
        let (writer, queued) = (store.clone(), Arc::new(AtomicUsize::new(0)));
        let written = queued.clone();
        std::thread::Builder::new()
            .name("conduit-audit".into())
            .spawn(move || writer_loop(writer.as_ref(), &inbox, retention, &written))
            .expect("the audit writer thread starts");
        Audit {
            store,
            queue,
            queued,
        }
    }

    /// Records `record` (and counts it in the metrics, which count what is audited).
    pub fn record(&self, record: AuditRecord) {
        use std::sync::mpsc::TrySendError;
        crate::observe::record_call(&record);
        self.queued.fetch_add(1, Ordering::Relaxed);
        if let Err(TrySendError::Full(message) | TrySendError::Disconnected(message)) =
            self.queue.try_send(Message::Record(Box::new(record)))
        {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            if let Message::Record(record) = message {
                write(self.store.as_ref(), &[*record]);
            }
        }
    }

    /// Records queued and not yet written.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Waits until every record queued so far is written.
    pub async fn flush(&self) {
        let (done, written) = tokio::sync::oneshot::channel();
        if self.queue.send(Message::Barrier(done)).is_ok() {
            let _ = written.await;
        }
    }

    /// A page of the tenant's records matching `query`, newest first, with the cursor
    /// of the next page; includes everything recorded before the call.
    pub async fn page(
        &self,
        tenant_id: &str,
        query: &AuditQuery,
    ) -> crate::store::Result<(Vec<AuditRecord>, Option<String>)> {
        self.flush().await;
        self.store.page(tenant_id, query)
    }
}

fn writer_loop(
    store: &dyn AuditStore,
    inbox: &std::sync::mpsc::Receiver<Message>,
    retention: Duration,
    queued: &AtomicUsize,
) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut next_sweep = Instant::now();
    loop {
        if Instant::now() >= next_sweep {
            sweep(store, retention);
            next_sweep = Instant::now() + SWEEP_EVERY.min(retention);
        }
        let first = match inbox.recv_timeout(next_sweep.saturating_duration_since(Instant::now())) {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = vec![first];
        // While records keep coming, gather them a few milliseconds at a time: callers
        // then never have to wake this thread, and each batch is one sled write.
        loop {
            std::thread::sleep(GATHER);
            let before = batch.len();
            while batch.len() < MAX_BATCH {
                match inbox.try_recv() {
                    Ok(message) => batch.push(message),
                    Err(_) => break,
                }
            }
            if batch.len() == before || batch.len() >= MAX_BATCH {
                break;
            }
        }
        let mut records = Vec::new();
        let mut barriers = Vec::new();
        for message in batch {
            match message {
                Message::Record(record) => records.push(*record),
                Message::Barrier(done) => barriers.push(done),
            }
        }
        write(store, &records);
        queued.fetch_sub(records.len(), Ordering::Relaxed);
        for done in barriers {
            let _ = done.send(());
        }
    }
}

/// Deletes records older than the retention period, batch by batch until caught up or
/// out of its time budget (writing must not stall behind a large backlog).
fn sweep(store: &dyn AuditStore, retention: Duration) {
    let before = now_ms().saturating_sub(retention.as_millis() as u64);
    let started = Instant::now();
    let mut purged = 0;
    loop {
        match store.purge(before, SWEEP_BATCH) {
            Ok(n) => purged += n,
            Err(e) => {
                tracing::error!(error = %e, "audit retention sweep failed");
                break;
            }
        }
        if purged % SWEEP_BATCH != 0 || purged == 0 || started.elapsed() > SWEEP_BUDGET {
            break;
        }
    }
    if purged > 0 {
        tracing::debug!(purged, "expired audit records deleted");
    }
}

fn write(store: &dyn AuditStore, records: &[AuditRecord]) {
    if records.is_empty() {
        return;
    }
    if let Err(e) = store.append(records) {
        let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
        tracing::error!(audit_ids = ?ids, error = %e, "audit records could not be written");
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
