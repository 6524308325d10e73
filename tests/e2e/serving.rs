//! Serving threads: each of `CONDUIT_WORKER_THREADS` threads listens on the one address
//! and serves its share of connections, provider calls included.

use crate::support::fake_stripe::{FakeStripe, GOOD_KEY};
use crate::support::{Conduit, PluginDecl};
use serde_json::json;

/// Nanoseconds each further serving thread of `pid` has run, by thread name.
fn serving_threads(pid: u32) -> Vec<(String, u64)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let name = name.trim().to_owned();
        if !name.starts_with("conduit-serve") {
            continue;
        }
        let schedstat = std::fs::read_to_string(dir.join("schedstat")).unwrap();
        let ran_ns = schedstat
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        threads.push((name, ran_ns));
    }
    threads.sort();
    threads
}

#[tokio::test]
async fn every_serving_thread_takes_connections_and_calls_providers() {
    let (fake, addr) = FakeStripe::start().await;
    let conduit = Conduit::start_env(
        vec![PluginDecl::new("stripe", "conduit_stripe")
            .allow(&[&addr.to_string()])
            .setting("rate_profile = { requests = 100000, per_seconds = 1, burst = 100000 }")],
        &[("CONDUIT_WORKER_THREADS", "3".into())],
    )
    .await;
    // The address is announced once the first listener is bound; the others follow.
    let mut threads = serving_threads(conduit.pid());
    for _ in 0..100 {
        if threads.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        threads = serving_threads(conduit.pid());
    }
    let names: Vec<&str> = threads.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["conduit-serve-1", "conduit-serve-2"], "{threads:?}");

    let token = conduit.tenant("acme-corp").await;
    let connection = conduit
        .connection(
            &token,
            json!({"connector": "stripe", "environment": "sandbox",
                                   "config": {"baseUrl": format!("http://{addr}")}}),
        )
        .await;
    conduit.api_key(&token, &connection, GOOD_KEY).await;
    // Eight clients at once, each request on a connection of its own: the threads
    // share them, and every execute is served, its provider call included.
    let url = format!(
        "{}/api/connections/{connection}/capabilities/customers.create/execute",
        conduit.base
    );
    let body = json!({"data": {"type": "executions", "attributes": {"input": {"email": "ada@example.com"}}}}).to_string();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (url, token, body) = (url.clone(), token.clone(), body.clone());
            tokio::spawn(async move {
                for _ in 0..25 {
                    let r = reqwest::Client::new()
                        .post(&url)
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let created = fake.received();
    assert_eq!(
        created.iter().filter(|r| r.path == "/v1/customers").count(),
        200
    );
    // A thread that served none would only have woken to lose the race for a
    // connection (microseconds each); each of these ran its share of the executes.
    let after = serving_threads(conduit.pid());
    for ((name, before), (_, after)) in threads.iter().zip(&after) {
        eprintln!("{name} ran {} ns", after - before);
        assert!(
            after - before > 20_000_000,
            "{name} ran {} ns",
            after - before
        );
    }
}

#[tokio::test]
async fn one_worker_thread_serves_alone() {
    let conduit = Conduit::start_env(vec![], &[("CONDUIT_WORKER_THREADS", "1".into())]).await;
    assert!(serving_threads(conduit.pid()).is_empty());
    let r = conduit.get("/healthz", "").await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn a_second_server_on_the_port_fails_to_bind() {
    let conduit = Conduit::start(vec![]).await;
    let addr = conduit.base.trim_start_matches("http://").to_owned();
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins.toml");
    std::fs::write(&plugins, "").unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(["serve", "--listen", &addr])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--plugins")
        .arg(&plugins)
        .env("CONDUIT_MASTER_KEY", crate::support::MASTER_KEY)
        .env("CONDUIT_ADMIN_TOKEN", "admin-second-server")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("binding {addr}")), "{stderr}");
    // The first server still answers.
    assert_eq!(conduit.get("/healthz", "").await.status, 200);
}
