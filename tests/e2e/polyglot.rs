//! The sandbox holds for connectors written in Python (componentize-py) and JavaScript
//! (componentize-js): the foundation's hostile behaviours, written in each language, get
//! the same typed errors within their limits, and the host answers the next request
//! normally.

use crate::sandbox::{Probe, DEADLINE_MS};
use conduit::domain::SecretFields;
use conduit::runtime::{CallContext, PluginSettings, PoolLimits, Runtime, RuntimeConfig};
use serde_json::json;
use std::time::{Duration, Instant};

const PROBES: &[(&str, &str)] = &[
    ("python-probe", "conduit_python_probe"),
    ("js-probe", "conduit_js_probe"),
];

async fn each_probe(check: impl AsyncFn(&Probe, &str)) {
    for (slug, wasm) in PROBES {
        let probe = Probe::start_with(slug, wasm).await;
        probe.still_serving().await;
        check(&probe, slug).await;
        probe.still_serving().await;
    }
}

#[tokio::test]
async fn an_infinite_loop_times_out_in_every_language() {
    each_probe(async |probe, slug| {
        let started = Instant::now();
        probe
            .run("probe.spin", json!({}))
            .await
            .assert_error(504, "plugin_timeout");
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(DEADLINE_MS)
                && elapsed < Duration::from_millis(DEADLINE_MS + 2000),
            "{slug}: {elapsed:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_memory_bomb_hits_its_limit_in_every_language() {
    each_probe(async |probe, _| {
        probe
            .run("probe.allocate", json!({}))
            .await
            .assert_error(502, "plugin_memory");
    })
    .await;
}

#[tokio::test]
async fn an_uncaught_exception_is_a_plugin_error_in_every_language() {
    each_probe(async |probe, _| {
        probe
            .run("probe.trap", json!({}))
            .await
            .assert_error(502, "plugin_error");
    })
    .await;
}

#[tokio::test]
async fn outbound_requests_are_confined_in_every_language() {
    each_probe(async |probe, slug| {
        let ok = probe.fetch(&format!("http://{}/ok", probe.fake)).await;
        assert_eq!(ok, json!({"status": 200, "body": "fine"}), "{slug}");
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1/",
            "http://localhost:1/",
            "http://example.org/",
            "file:///etc/passwd",
        ] {
            let out = probe.fetch(url).await;
            assert_eq!(
                out["httpError"], "denied",
                "{slug}: {url} was not denied: {out}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn no_files_and_no_environment_in_every_language() {
    each_probe(async |probe, slug| {
        let r = probe
            .run("probe.readFile", json!({"path": "/etc/passwd"}))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(
            r.output()["read"].is_null() && !r.text.contains("root:"),
            "{slug} read a file: {}",
            r.output()
        );
        if slug == "python-probe" {
            // Python has `open`; the host gives it no directory to open anything in.
            assert!(r.output()["error"].is_string(), "{}", r.output());
        } else {
            assert_eq!(r.output()["fileApis"], json!([]), "{}", r.output());
        }
        let r = probe.run("probe.env", json!({})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let vars = r.output()["vars"].as_array().cloned().unwrap_or_default();
        assert!(
            !vars
                .iter()
                .any(|v| v.as_str().is_some_and(|v| v.starts_with("CONDUIT_"))),
            "{slug} sees the host's environment: {vars:?}"
        );
        assert!(
            vars.is_empty(),
            "{slug} sees environment variables: {vars:?}"
        );
    })
    .await;
}

/// A pool for `instances` concurrent calls, on the tests' shared compile cache.
fn small_runtime(instances: u32, pool: PoolLimits) -> Runtime {
    let mut config = RuntimeConfig::new(crate::support::shared_cache_dir());
    config.max_instances = instances;
    config.tenant_concurrency = instances;
    config.pool = pool;
    Runtime::new(config).unwrap()
}

/// componentize-py's ~14 core instances per component must not divide the pool: a
/// pool sized for 8 calls runs 8 Python calls at once, each held open in a host call.
/// (Sized at 8 core instances per call, as before, only 4 would fit.)
#[tokio::test]
async fn the_pool_holds_as_many_python_calls_as_it_holds_calls() {
    let slow = crate::support::serve_on_loopback(axum::Router::new().route(
        "/slow",
        axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            "done"
        }),
    ))
    .await;
    let runtime = small_runtime(8, PoolLimits::default());
    let wasm = std::fs::read(crate::support::wasm("conduit_python_probe")).unwrap();
    let settings = PluginSettings {
        allowed_hosts: Some(vec![slow.to_string()]),
        ..PluginSettings::default()
    };
    let plugin = runtime.load(wasm, None, &settings).await.unwrap();
    assert!(
        plugin.prepared.footprint.core_instances > 8,
        "{:?}",
        plugin.prepared.footprint
    );
    let ctx = CallContext {
        connection_id: "conn_pool".into(),
        tenant_id: "pool".into(),
        environment: "sandbox".into(),
        external_account_id: None,
        config: Default::default(),
        idempotency_key: None,
    };
    let secret = SecretFields::default();
    let input = json!({"url": format!("http://{slow}/slow")}).to_string();
    let calls = (0..8).map(|_| runtime.execute(&plugin, &ctx, &secret, "probe.fetch", &input));
    for report in futures_util::future::join_all(calls).await {
        let output = report
            .result
            .expect("the pool had room")
            .expect("the call ran");
        assert!(output.contains("done"), "{output}");
    }
}

#[tokio::test]
async fn a_component_too_big_for_the_pool_is_refused_naming_the_limit() {
    let runtime = small_runtime(
        4,
        PoolLimits {
            core_instances: 8,
            ..PoolLimits::default()
        },
    );
    let wasm = std::fs::read(crate::support::wasm("conduit_python_probe")).unwrap();
    let refused = runtime
        .load(wasm, None, &PluginSettings::default())
        .await
        .expect_err("14 core instances do not fit a limit of 8");
    let message = refused.to_string();
    assert!(
        message.contains("core instances") && message.contains("limit of 8"),
        "{message}"
    );
    assert!(message.contains("CONDUIT_POOL_CORE_INSTANCES"), "{message}");
}

/// Each call runs in a store of its own: a module-level value one call leaves behind
/// is gone for the next, in every language.
#[tokio::test]
async fn no_call_sees_what_an_earlier_call_left_in_every_language() {
    each_probe(async |probe, slug| {
        for round in 0..3 {
            let r = probe.run("probe.remember", json!({"round": round})).await;
            assert_eq!(r.status, 200, "{}", r.text);
            assert_eq!(
                r.output()["previous"],
                serde_json::Value::Null,
                "{slug}: call {round} saw an earlier call's state"
            );
        }
    })
    .await;
}

/// What a Python connector prints of the secret it was given reaches the logs
/// redacted, from stdout and from stderr.
#[tokio::test]
async fn a_secret_printed_by_a_python_connector_is_redacted() {
    let probe = Probe::start_with("python-probe", "conduit_python_probe").await;
    let r = probe
        .run(
            "probe.print",
            json!({"message": "key=probe-key-0123456789"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = probe.conduit.logs();
    assert!(
        !logs.contains("probe-key-0123456789"),
        "a secret reached the logs"
    );
    for stream in ["stdout", "stderr"] {
        assert!(
            logs.lines().any(|l| l.contains("key=<redacted>")
                && l.contains("python-probe")
                && l.contains(stream)),
            "no redacted {stream} line: {logs}"
        );
    }
    probe.still_serving().await;
}
