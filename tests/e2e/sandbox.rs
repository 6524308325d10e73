//! The sandbox: hostile components get a typed error within their limits, and the host
//! answers the next request normally.

use crate::support::{serve_on_loopback, Conduit, PluginDecl};
use axum::routing::get;
use serde_json::json;
use std::time::{Duration, Instant};

pub(crate) const DEADLINE_MS: u64 = 1500;

pub(crate) struct Probe {
    pub(crate) conduit: Conduit,
    pub(crate) token: String,
    pub(crate) connection: String,
    pub(crate) fake: std::net::SocketAddr,
}

impl Probe {
    async fn start() -> Self {
        Self::start_with("sandbox-probe", "conduit_sandbox_probe").await
    }

    /// A Conduit serving one hostile probe (`slug`, built as `wasm`) with a 32 MiB
    /// memory limit and a short deadline, and a connection to it.
    pub(crate) async fn start_with(slug: &'static str, wasm: &'static str) -> Self {
        let router = axum::Router::new()
            .route("/ok", get(|| async { "fine" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(20)).await;
                    "late"
                }),
            )
            .route("/big", get(|| async { "x".repeat(11 * 1024 * 1024) }));
        let fake = serve_on_loopback(router).await;
        let conduit = Conduit::start(vec![PluginDecl::new(slug, wasm)
            .allow(&[&fake.to_string(), "example.com"])
            .setting("memory_mb = 32")
            .setting(&format!("deadline_ms = {DEADLINE_MS}"))])
        .await;
        let token = conduit.tenant("acme-corp").await;
        let connection = conduit
            .connection(&token, json!({"connector": slug, "environment": "sandbox"}))
            .await;
        conduit
            .api_key(&token, &connection, "probe-key-0123456789")
            .await;
        Probe {
            conduit,
            token,
            connection,
            fake,
        }
    }

    pub(crate) async fn run(
        &self,
        capability: &str,
        input: serde_json::Value,
    ) -> crate::support::Resp {
        self.conduit
            .execute(&self.token, &self.connection, capability, input)
            .await
    }

    /// The host still serves: a plain call right after answers normally.
    pub(crate) async fn still_serving(&self) {
        let r = self.run("probe.echo", json!({"ping": 1})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.output(), &json!({"ping": 1}));
    }

    pub(crate) async fn fetch(&self, url: &str) -> serde_json::Value {
        let r = self.run("probe.fetch", json!({"url": url})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.output().clone()
    }
}

#[tokio::test]
async fn an_infinite_loop_times_out_and_does_not_stall_other_calls() {
    let probe = Probe::start().await;
    probe.still_serving().await;
    let started = Instant::now();
    let (spin, echo) = tokio::join!(probe.run("probe.spin", json!({})), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let r = probe.run("probe.echo", json!({"while": "spinning"})).await;
        (r, started.elapsed())
    });
    spin.assert_error(504, "plugin_timeout");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(DEADLINE_MS)
            && elapsed < Duration::from_millis(DEADLINE_MS + 2000),
        "{elapsed:?}"
    );
    assert_eq!(echo.0.status, 200, "{}", echo.0.text);
    assert!(
        echo.1 < Duration::from_millis(600),
        "a call during the spin took {:?}",
        echo.1
    );
    probe.still_serving().await;
}

#[tokio::test]
async fn a_memory_bomb_hits_its_limit() {
    let probe = Probe::start().await;
    let r = probe.run("probe.allocate", json!({})).await;
    r.assert_error(502, "plugin_memory");
    probe.still_serving().await;
}

#[tokio::test]
async fn a_trap_is_a_plugin_error() {
    let probe = Probe::start().await;
    probe
        .run("probe.trap", json!({}))
        .await
        .assert_error(502, "plugin_error");
    probe.still_serving().await;
}

#[tokio::test]
async fn a_guest_blocked_in_a_host_call_still_meets_its_deadline() {
    let probe = Probe::start().await;
    let started = Instant::now();
    let r = probe
        .run(
            "probe.fetch",
            json!({"url": format!("http://{}/slow", probe.fake)}),
        )
        .await;
    // Either the request's own timeout (capped at the deadline) answers the guest, or
    // the call's tokio timeout ends it; both within the deadline plus slack.
    assert!(
        started.elapsed() < Duration::from_millis(DEADLINE_MS + 2000),
        "{:?}",
        started.elapsed()
    );
    if r.status == 200 {
        assert_eq!(r.output()["httpError"], "timeout");
    } else {
        r.assert_error(504, "plugin_timeout");
    }
    probe.still_serving().await;
}

#[tokio::test]
async fn outbound_requests_are_confined_to_allowed_hosts() {
    let probe = Probe::start().await;
    let ok = probe.fetch(&format!("http://{}/ok", probe.fake)).await;
    assert_eq!(ok, json!({"status": 200, "body": "fine"}));

    let other_port = format!("http://127.0.0.1:{}/ok", probe.fake.port() + 1);
    let cases = [
        "http://example.org/",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://127.0.0.1/",
        other_port.as_str(),
        "http://localhost:1/",
        "http://[::1]/",
        "http://0.0.0.0/",
        "file:///etc/passwd",
        "http://example.com:8080/",
    ];
    for url in cases {
        let out = probe.fetch(url).await;
        assert_eq!(out["httpError"], "denied", "{url} was not denied: {out}");
    }
    let bad = probe.fetch("not a url").await;
    assert_eq!(bad["httpError"], "invalid");
    let big = probe.fetch(&format!("http://{}/big", probe.fake)).await;
    assert_eq!(big["httpError"], "too-large");

    // Every attempt is audited, refusals included, with the reason.
    let audit = probe
        .conduit
        .get(
            &format!("/api/audit?connectionId={}", probe.connection),
            &probe.token,
        )
        .await;
    let outbound: Vec<&serde_json::Value> = audit.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["attributes"]["outbound"].as_array().unwrap())
        .collect();
    assert!(outbound
        .iter()
        .any(|o| o["url"].as_str().unwrap().contains("169.254.169.254")
            && o["error"].as_str().unwrap().starts_with("denied")));
    probe.still_serving().await;
}

#[tokio::test]
async fn no_files_no_environment_and_output_goes_to_tagged_logs() {
    let probe = Probe::start().await;
    let r = probe
        .run("probe.readFile", json!({"path": "/etc/passwd"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.output()["error"].is_string(),
        "the guest read a file: {}",
        r.output()
    );
    let r = probe.run("probe.readFile", json!({"path": "."})).await;
    assert!(r.output()["error"].is_string());

    let r = probe.run("probe.env", json!({})).await;
    assert_eq!(
        r.output()["vars"],
        json!([]),
        "the guest sees environment variables"
    );

    let r = probe
        .run("probe.print", json!({"message": "hello from the sandbox"}))
        .await;
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = probe.conduit.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("probe stdout: hello from the sandbox"))
        .expect("guest stdout is logged");
    assert!(
        line.contains("sandbox-probe") && line.contains("stdout"),
        "{line}"
    );
    assert!(logs
        .lines()
        .any(|l| l.contains("probe stderr: hello from the sandbox") && l.contains("stderr")));

    // A line written while a request is served names the request: its route, the
    // client's request id and the tenant.
    let r = reqwest::Client::new()
        .post(format!(
            "{}/api/connections/{}/capabilities/probe.print/execute",
            probe.conduit.base, probe.connection
        ))
        .bearer_auth(&probe.token)
        .header("x-request-id", "trace-me-42")
        .header("content-type", "application/json")
        .body(
            json!({"data": {"type": "executions", "attributes": {"input": {"message": "traced line"}}}})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = probe.conduit.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("probe stdout: traced line"))
        .expect("guest stdout is logged");
    assert!(
        line.contains(r#"request_id="trace-me-42""#)
            && line.contains("route=/api/connections/{id}/capabilities/{capabilityKey}/execute")
            && line.contains("tenant=acme-corp")
            && line.contains("method=POST"),
        "{line}"
    );

    // A guest printing the secret it was given is redacted in the logs.
    let r = probe
        .run(
            "probe.print",
            json!({"message": "key=probe-key-0123456789"}),
        )
        .await;
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!probe.conduit.logs().contains("probe-key-0123456789"));
    assert!(probe.conduit.logs().contains("key=<redacted>"));
    probe.still_serving().await;
}
