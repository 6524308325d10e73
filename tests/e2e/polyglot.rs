//! The sandbox holds for connectors written in Python (componentize-py) and JavaScript
//! (componentize-js): the foundation's hostile behaviours, written in each language, get
//! the same typed errors within their limits, and the host answers the next request
//! normally.

use crate::sandbox::{Probe, DEADLINE_MS};
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
