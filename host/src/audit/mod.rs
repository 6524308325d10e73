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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
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

/// A fresh audit record id: 122 random bits from the thread's CSPRNG (no system call
/// per id, unlike `Uuid::new_v4`).
pub fn new_id() -> String {
    let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    format!("exe_{}", uuid.simple())
}

/// Writes audit records on a writer thread, off the request path. A call hands its
/// record over without waking the writer (one push under a short lock): the writer
/// gathers what arrived every few milliseconds while records keep coming, and only a
/// record arriving after it went idle wakes it. A full queue (or a writer that died)
/// falls back to writing in the caller, so no record is ever dropped; a failed write
/// is logged loudly and never fails the call it describes.
#[derive(Clone)]
pub struct Audit {
    store: Arc<dyn AuditStore>,
    inbox: Arc<Inbox>,
}

/// What the calls hand the writer.
struct Inbox {
    pending: Mutex<Vec<Message>>,
    /// Rung only when the writer waits for work ([`Inbox::idle`]) or for a barrier.
    wake: Condvar,
    /// The writer found nothing to write and waits on `wake`.
    idle: AtomicBool,
    /// The writer thread is running (cleared if it ever stops).
    alive: AtomicBool,
    /// Records handed over and not yet written.
    queued: AtomicUsize,
}

enum Message {
    Record(Box<AuditRecord>),
    /// Answered once everything queued before it is written.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// Records queued before callers write synchronously.
const QUEUE: usize = 4096;
/// How long the writer lets records gather while they keep coming.
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
        let inbox = Arc::new(Inbox {
            pending: Mutex::new(Vec::new()),
            wake: Condvar::new(),
            idle: AtomicBool::new(false),
            alive: AtomicBool::new(true),
            queued: AtomicUsize::new(0),
        });
        let (writer, writer_inbox) = (store.clone(), inbox.clone());
        std::thread::Builder::new()
            .name("conduit-audit".into())
            .spawn(move || {
                let _stopped = Stopped {
                    store: writer.as_ref(),
                    inbox: &writer_inbox,
                };
                writer_loop(writer.as_ref(), &writer_inbox, retention)
            })
            .expect("the audit writer thread starts");
        Audit { store, inbox }
    }

    /// Records `record` (and counts it in the metrics, which count what is audited).
    pub fn record(&self, record: AuditRecord) {
        crate::observe::record_call(&record);
        let inbox = &self.inbox;
        // `alive` is read under the lock the stopping writer drains the inbox under.
        let mut pending = inbox.lock();
        if inbox.alive.load(Ordering::Acquire) && pending.len() < QUEUE {
            pending.push(Message::Record(Box::new(record)));
            inbox.queued.fetch_add(1, Ordering::Relaxed);
            drop(pending);
            if inbox.idle.load(Ordering::Acquire) {
                inbox.wake.notify_one();
            }
            return;
        }
        drop(pending);
        write(self.store.as_ref(), &[record]);
    }

    /// Records queued and not yet written.
    pub fn queued(&self) -> usize {
        self.inbox.queued.load(Ordering::Relaxed)
    }

    /// Waits until every record queued so far is written.
    pub async fn flush(&self) {
        let (done, written) = tokio::sync::oneshot::channel();
        {
            let mut pending = self.inbox.lock();
            if !self.inbox.alive.load(Ordering::Acquire) {
                return;
            }
            pending.push(Message::Barrier(done));
        }
        self.inbox.wake.notify_one();
        let _ = written.await;
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

fn writer_loop(store: &dyn AuditStore, inbox: &Inbox, retention: Duration) {
    let mut next_sweep = Instant::now();
    // Kept across batches: a burst's buffers are allocated once, not per batch.
    let mut batch = Vec::new();
    let mut records = Vec::new();
    loop {
        if Instant::now() >= next_sweep {
            sweep(store, retention);
            next_sweep = Instant::now() + SWEEP_EVERY.min(retention);
        }
        std::mem::swap(&mut batch, &mut *inbox.lock());
        if batch.is_empty() {
            // Nothing came: wait to be woken by the next record (or the next sweep).
            // Idle is announced before looking again, so a record pushed meanwhile is
            // either seen here or rings.
            inbox.idle.store(true, Ordering::Release);
            let pending = inbox.lock();
            if pending.is_empty() {
                let wait = next_sweep.saturating_duration_since(Instant::now());
                drop(inbox.wake.wait_timeout(pending, wait));
            }
            inbox.idle.store(false, Ordering::Release);
            continue;
        }
        // While records keep coming, gather them a few milliseconds at a time (nobody
        // wakes this thread meanwhile): the store takes one large batch far more
        // cheaply than many small ones. A barrier (someone reading the audit) ends the
        // gathering at once.
        let mut barrier = has_barrier(&batch);
        while batch.len() < MAX_BATCH && !barrier {
            std::thread::sleep(GATHER);
            let before = batch.len();
            batch.append(&mut inbox.lock());
            if batch.len() == before {
                break;
            }
            barrier = has_barrier(&batch[before..]);
        }
        let mut barriers = Vec::new();
        for message in batch.drain(..) {
            match message {
                Message::Record(record) => records.push(*record),
                Message::Barrier(done) => barriers.push(done),
            }
        }
        write(store, &records);
        inbox.queued.fetch_sub(records.len(), Ordering::Relaxed);
        records.clear();
        for done in barriers {
            let _ = done.send(());
        }
    }
}

fn has_barrier(batch: &[Message]) -> bool {
    batch.iter().any(|m| matches!(m, Message::Barrier(_)))
}

/// However the writer stops, what it was handed is written and waiters are answered,
/// and callers then write their own records.
struct Stopped<'a> {
    store: &'a dyn AuditStore,
    inbox: &'a Inbox,
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        let left = {
            let mut pending = self.inbox.lock();
            self.inbox.alive.store(false, Ordering::Release);
            std::mem::take(&mut *pending)
        };
        let records: Vec<AuditRecord> = left
            .into_iter()
            .filter_map(|message| match message {
                Message::Record(record) => Some(*record),
                Message::Barrier(_) => None,
            })
            .collect();
        write(self.store, &records);
    }
}

impl Inbox {
    // A panic while holding the lock leaves a valid list behind: keep going.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Message>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
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

    fn record(tenant: &str, n: u64) -> AuditRecord {
        AuditRecord {
            id: format!("exe_{n:04}"),
            time: 1_000 + n,
            tenant_id: tenant.into(),
            capability: "payments.createRefund".into(),
            outcome: "ok".into(),
            ..AuditRecord::default()
        }
    }

    fn query() -> AuditQuery {
        AuditQuery {
            limit: 1000,
            ..AuditQuery::default()
        }
    }

    #[tokio::test]
    async fn every_record_is_written_and_one_after_a_quiet_spell_wakes_the_writer() {
        let store = Arc::new(crate::store::SledStore::temporary().unwrap());
        let audit = Audit::new(store.clone(), DEFAULT_RETENTION);
        for n in 0..100 {
            audit.record(record("t1", n));
        }
        let (page, _) = audit.page("t1", &query()).await.unwrap();
        assert_eq!(page.len(), 100);
        // The writer has gone idle; one more record must reach the store without anyone
        // asking for it (the writer otherwise sleeps until its next sweep, 10 s away).
        tokio::time::sleep(Duration::from_millis(50)).await;
        audit.record(record("t1", 100));
        let deadline = Instant::now() + Duration::from_secs(2);
        while store.page("t1", &query()).unwrap().0.len() < 101 {
            assert!(Instant::now() < deadline, "the record was not written");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(audit.queued(), 0);
    }

    #[test]
    fn redacts_every_occurrence_and_skips_short_values() {
        let r = Redactor::new(["sk_test_abcdef", "abc"]);
        assert_eq!(
            r.redact("key sk_test_abcdef and sk_test_abcdef, abc"),
            "key <redacted> and <redacted>, abc"
        );
    }
}
