//! Observability: the Prometheus metrics `GET /metrics` serves, every name in one
//! place. Counters and histograms are recorded where things happen, through the
//! `metrics` facade: the audit record of every connector call (so a metric counts
//! exactly what the audit trail holds) and each plugin load. Gauges of state (the
//! pool, the queues, connections by status, the scheduler's lag) are read when
//! scraped. The recorder is `metrics-exporter-prometheus`, rendering text only.
//!
//! Labels are bounded: connector slugs come from loaded connectors, outcomes from the
//! error table; a capability a caller named that no connector offers is counted as
//! `unknown`, and past [`MAX_CAPABILITIES`] distinct names (whatever path let one
//! through) as `other`, so no caller can grow the label set.
//!
//! `logs` is the log line format and the request context it shows.
//!
//! May import: `domain`.

pub mod logs;

use crate::domain::AuditRecord;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Connector calls by connector, capability and outcome (`ok` or the error code).
pub const EXECUTIONS: &str = "conduit_executions_total";
/// Wall time of a connector call, host work included.
pub const EXECUTE_SECONDS: &str = "conduit_execute_duration_seconds";
/// Time of each outbound request a connector made.
pub const PROVIDER_SECONDS: &str = "conduit_provider_request_duration_seconds";
/// OAuth refreshes by outcome.
pub const REFRESHES: &str = "conduit_refreshes_total";
/// Seconds the oldest credential due for refresh has waited (0: none overdue).
pub const SCHEDULER_LAG: &str = "conduit_scheduler_lag_seconds";
/// Connections by status.
pub const CONNECTIONS: &str = "conduit_connections";
/// Connector instances running now.
pub const INSTANCES_IN_USE: &str = "conduit_pool_instances_in_use";
/// Instances the pool holds.
pub const INSTANCES_CAPACITY: &str = "conduit_pool_instances_capacity";
/// Audit records waiting for the writer.
pub const AUDIT_QUEUE: &str = "conduit_audit_queue_depth";
/// Webhook deliveries waiting in the outbox.
pub const WEBHOOKS_PENDING: &str = "conduit_webhook_deliveries_pending";
/// Plugin loads by origin (`compiled`, `cached`).
pub const PLUGIN_LOADS: &str = "conduit_plugin_loads_total";

/// Histogram buckets, in seconds: a millisecond to a minute.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Outcomes of a call whose capability was never matched to a connector's.
const UNMATCHED: &[&str] = &["unsupported_capability", "no_binding", "not_found"];

/// Distinct capability labels kept; every catalog of connectors fits many times over.
pub const MAX_CAPABILITIES: usize = 1024;

/// The capability label of `capability`: itself while the set of labels has room.
fn capability_label<'a>(capability: &'a str, outcome: &str) -> &'a str {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    if UNMATCHED.contains(&outcome) {
        return "unknown";
    }
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if seen.contains(capability) {
        return capability;
    }
    if seen.len() >= MAX_CAPABILITIES {
        return "other";
    }
    seen.insert(capability.to_owned());
    capability
}

/// The process's recorder, installed on first use; `None` if another recorder was
/// installed first (metrics then go there, and `/metrics` says it cannot render).
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .and_then(PrometheusBuilder::install_recorder);
            match installed {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the Prometheus recorder could not be installed");
                    None
                }
            }
        })
        .as_ref()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        EXECUTIONS,
        "Connector calls by connector, capability and outcome"
    );
    describe_histogram!(EXECUTE_SECONDS, Unit::Seconds, "Connector call wall time");
    describe_histogram!(
        PROVIDER_SECONDS,
        Unit::Seconds,
        "Outbound provider request time"
    );
    describe_counter!(REFRESHES, "OAuth refreshes by outcome");
    describe_gauge!(
        SCHEDULER_LAG,
        Unit::Seconds,
        "How long the oldest due credential has waited"
    );
    describe_gauge!(CONNECTIONS, "Connections by status");
    describe_gauge!(INSTANCES_IN_USE, "Connector instances running");
    describe_gauge!(INSTANCES_CAPACITY, "Connector instances the pool holds");
    describe_gauge!(AUDIT_QUEUE, "Audit records waiting to be written");
    describe_gauge!(WEBHOOKS_PENDING, "Webhook deliveries waiting");
    describe_counter!(PLUGIN_LOADS, "Plugin loads by origin");
}

/// Counts one audited connector call: a refresh by its outcome, anything else by
/// connector, capability and outcome, with its duration and its provider requests'.
pub fn record_call(record: &AuditRecord) {
    if record.capability == "oauth.refresh" {
        metrics::counter!(REFRESHES, "outcome" => record.outcome.clone()).increment(1);
        return;
    }
    let connector = record.connector.as_deref().unwrap_or("none");
    with_call_handles(connector, &record.capability, &record.outcome, |handles| {
        handles.executions.increment(1);
        handles.duration.record(record.duration_ms as f64 / 1000.0);
        for exchange in &record.outbound {
            handles
                .provider
                .record(exchange.duration_ms as f64 / 1000.0);
        }
    });
}

/// The metrics of one connector, capability and outcome, registered once per thread: a
/// call then records through its handles without building a labelled key and looking
/// it up in the registry.
struct CallHandles {
    executions: metrics::Counter,
    duration: metrics::Histogram,
    provider: metrics::Histogram,
}

fn with_call_handles(
    connector: &str,
    capability: &str,
    outcome: &str,
    record: impl FnOnce(&CallHandles),
) {
    use std::cell::RefCell;
    use std::collections::HashMap;
    thread_local! {
        static HANDLES: RefCell<(String, HashMap<String, CallHandles>)> = RefCell::default();
    }
    // Handles taken before the recorder is installed would record nowhere for good.
    if handle().is_none() {
        return;
    }
    HANDLES.with(|cell| {
        let (key, handles) = &mut *cell.borrow_mut();
        let key_of = |key: &mut String, capability: &str| {
            key.clear();
            for part in [connector, "\0", capability, "\0", outcome] {
                key.push_str(part);
            }
        };
        key_of(key, capability);
        if let Some(found) = handles.get(key.as_str()) {
            return record(found);
        }
        // Kept under the label, not the name a caller chose: the cache stays as bounded
        // as the labels are.
        let label = capability_label(capability, outcome);
        key_of(key, label);
        if let Some(found) = handles.get(key.as_str()) {
            return record(found);
        }
        let made = CallHandles {
            executions: metrics::counter!(EXECUTIONS,
                "connector" => connector.to_owned(),
                "capability" => label.to_owned(),
                "outcome" => outcome.to_owned()),
            duration: metrics::histogram!(EXECUTE_SECONDS, "connector" => connector.to_owned()),
            provider: metrics::histogram!(PROVIDER_SECONDS, "connector" => connector.to_owned()),
        };
        record(&made);
        handles.insert(key.clone(), made);
    });
}

/// Counts a plugin load (`compiled` or `cached`).
pub fn plugin_loaded(origin: &'static str) {
    metrics::counter!(PLUGIN_LOADS, "origin" => origin).increment(1);
}

/// The state gauges, read at scrape time.
#[derive(Debug, Default)]
pub struct State {
    /// Instances running.
    pub instances_in_use: usize,
    /// Instances the pool holds.
    pub instances_capacity: usize,
    /// Audit records queued.
    pub audit_queue: usize,
    /// Webhook deliveries waiting.
    pub webhooks_pending: usize,
    /// Seconds the oldest due credential has waited.
    pub scheduler_lag_seconds: f64,
    /// Connections per status (`ACTIVE`, `NEEDS_REAUTH` …).
    pub connections: Vec<(&'static str, usize)>,
}

/// Folds recorded histogram samples into their buckets (so they do not pile up
/// between scrapes); `serve` calls it every few seconds.
pub fn upkeep() {
    if let Some(handle) = handle() {
        handle.run_upkeep();
    }
}

/// Sets the gauges to `state` and renders everything in Prometheus text format.
pub fn render(state: &State) -> Option<String> {
    let handle = handle()?;
    metrics::gauge!(INSTANCES_IN_USE).set(state.instances_in_use as f64);
    metrics::gauge!(INSTANCES_CAPACITY).set(state.instances_capacity as f64);
    metrics::gauge!(AUDIT_QUEUE).set(state.audit_queue as f64);
    metrics::gauge!(WEBHOOKS_PENDING).set(state.webhooks_pending as f64);
    metrics::gauge!(SCHEDULER_LAG).set(state.scheduler_lag_seconds);
    for (status, count) in &state.connections {
        metrics::gauge!(CONNECTIONS, "status" => *status).set(*count as f64);
    }
    // Histograms are folded into their buckets on upkeep; a scrape is a fine moment.
    handle.run_upkeep();
    Some(handle.render())
}
