//! `cargo xtask bench`: the figures the issues name, measured in one run.
//!
//! 1. dispatch: instantiate + `execute` of a capability that makes no HTTP call
//!    (`probe.echo`), in process, p50 and p99;
//! 2. end to end: `POST .../execute` of `customers.create` over HTTP against the fake
//!    Stripe vs the same request sent straight to the fake, and the host's added p50/p99;
//! 3. plugin load: first compile vs load from the compiled-component cache.

#[path = "../../tests/support/mod.rs"]
mod support;

use conduit::domain::SecretFields;
use conduit::runtime::{CallContext, PluginSettings, Runtime, RuntimeConfig};
use serde_json::json;
use std::time::{Duration, Instant};
use support::fake_stripe::{FakeStripe, GOOD_KEY};

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Runs `a` and `b` alternately (so both see the same machine state) after a warm-up,
/// and returns their samples.
async fn interleave<A, FA, B, FB>(a: A, b: B, rounds: usize) -> (Vec<Duration>, Vec<Duration>)
where
    A: Fn() -> FA,
    FA: std::future::Future<Output = ()>,
    B: Fn() -> FB,
    FB: std::future::Future<Output = ()>,
{
    for _ in 0..200 {
        a().await;
        b().await;
    }
    let (mut a_samples, mut b_samples) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for _ in 0..rounds {
        let started = Instant::now();
        a().await;
        a_samples.push(started.elapsed());
        let started = Instant::now();
        b().await;
        b_samples.push(started.elapsed());
    }
    (a_samples, b_samples)
}

#[tokio::main]
async fn main() {
    println!(
        "conduit bench ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // `CONDUIT_BENCH=dispatch|e2e|load` runs one section (for profiling).
    let only = std::env::var("CONDUIT_BENCH").unwrap_or_default();
    let run = |name: &str| only.is_empty() || only == name;
    if run("dispatch") {
        dispatch().await;
    }
    if run("e2e") {
        end_to_end().await;
    }
    if run("load") {
        plugin_load().await;
    }
}

async fn dispatch() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig::new(cache.path())).unwrap();
    let wasm = std::fs::read(support::wasm("conduit_sandbox_probe")).unwrap();
    let plugin = runtime
        .load(wasm, None, &PluginSettings::default())
        .await
        .unwrap();
    let ctx = CallContext {
        connection_id: "conn_bench".into(),
        tenant_id: "bench".into(),
        environment: "sandbox".into(),
        external_account_id: None,
        config: Default::default(),
        idempotency_key: None,
    };
    let mut secret = SecretFields::default();
    secret.api_key = Some("probe-key-0123456789".into());
    let input = json!({"ping": 1}).to_string();
    for _ in 0..500 {
        runtime
            .execute(&plugin, &ctx, &secret, "probe.echo", &input)
            .await
            .result
            .unwrap()
            .unwrap();
    }
    let mut samples = Vec::with_capacity(5000);
    for _ in 0..5000 {
        let started = Instant::now();
        let report = runtime
            .execute(&plugin, &ctx, &secret, "probe.echo", &input)
            .await;
        samples.push(started.elapsed());
        report.result.unwrap().unwrap();
    }
    let p50 = percentile(&mut samples, 0.50);
    let p99 = percentile(&mut samples, 0.99);
    println!("dispatch (instantiate + execute, no HTTP): p50 {:.1} µs, p99 {:.1} µs  [target p50 <= 30 µs]", us(p50), us(p99));
}

async fn end_to_end() {
    let (_fake, fake_addr) = FakeStripe::start().await;
    // Conduit runs as its own process, as deployed; the client and the fake share this one.
    let conduit = support::Conduit::start_for_bench(vec![
        support::PluginDecl::new("stripe", "conduit_stripe").allow(&[&fake_addr.to_string()]),
        support::PluginDecl::new("sandbox-probe", "conduit_sandbox_probe"),
    ])
    .await;
    let token = conduit.tenant("bench").await;
    let connection = conduit
        .connection(&token, json!({"connector": "stripe", "environment": "sandbox", "config": {"baseUrl": format!("http://{fake_addr}")}}))
        .await;
    conduit.api_key(&token, &connection, GOOD_KEY).await;
    let client = reqwest::Client::new();
    let base = conduit.base.clone();

    let execute_url =
        format!("{base}/api/connections/{connection}/capabilities/customers.create/execute");
    let execute_body = support::doc(
        "executions",
        json!({"input": {"email": "ada@example.com", "name": "Ada"}}),
    )
    .to_string();
    let direct_url = format!("http://{fake_addr}/v1/customers");
    let direct_body = "email=ada%40example.com&name=Ada";

    let via_conduit = || async {
        let r = client
            .post(&execute_url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(execute_body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    };
    let direct = || async {
        let r = client
            .post(&direct_url)
            .bearer_auth(GOOD_KEY)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(direct_body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    };
    let (mut conduit_samples, mut direct_samples) = interleave(via_conduit, direct, 2000).await;
    let (c50, c99) = (
        percentile(&mut conduit_samples, 0.5),
        percentile(&mut conduit_samples, 0.99),
    );
    let (d50, d99) = (
        percentile(&mut direct_samples, 0.5),
        percentile(&mut direct_samples, 0.99),
    );
    println!(
        "execute over HTTP via conduit: p50 {:.1} µs, p99 {:.1} µs",
        us(c50),
        us(c99)
    );
    println!(
        "same request straight to fake: p50 {:.1} µs, p99 {:.1} µs",
        us(d50),
        us(d99)
    );
    println!(
        "host added latency: p50 {:.1} µs, p99 {:.1} µs  (ratio p50 {:.2}x)  [target added p50 <= 200 µs]",
        us(c50) - us(d50),
        us(c99) - us(d99),
        us(c50) / us(d50)
    );

    // The host's own work without the provider hop: auth, store, vault, validation,
    // sandbox and audit for a capability that makes no HTTP call, vs `GET /healthz`.
    let probe = conduit
        .connection(
            &token,
            json!({"connector": "sandbox-probe", "environment": "sandbox"}),
        )
        .await;
    conduit
        .api_key(&token, &probe, "probe-key-0123456789")
        .await;
    let echo_url = format!("{base}/api/connections/{probe}/capabilities/probe.echo/execute");
    let echo_body = support::doc("executions", json!({"input": {"ping": 1}})).to_string();
    let healthz_url = format!("{base}/healthz");
    let echo = || async {
        let r = client
            .post(&echo_url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(echo_body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    };
    let healthz = || async {
        let r = client.get(&healthz_url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    };
    let (mut echo_samples, mut healthz_samples) = interleave(echo, healthz, 2000).await;
    let (e50, e99) = (
        percentile(&mut echo_samples, 0.5),
        percentile(&mut echo_samples, 0.99),
    );
    let (h50, h99) = (
        percentile(&mut healthz_samples, 0.5),
        percentile(&mut healthz_samples, 0.99),
    );
    println!(
        "execute without provider hop (probe.echo) p50 {:.1} µs / p99 {:.1} µs vs GET /healthz p50 {:.1} µs / p99 {:.1} µs: host work p50 {:.1} µs",
        us(e50), us(e99), us(h50), us(h99), us(e50) - us(h50)
    );
}

async fn plugin_load() {
    let wasm = std::fs::read(support::wasm("conduit_stripe")).unwrap();
    let mut compiled = Vec::new();
    let mut cached = Vec::new();
    for _ in 0..3 {
        let cache = tempfile::tempdir().unwrap();
        let runtime = Runtime::new(RuntimeConfig::new(cache.path())).unwrap();
        let plugin = runtime
            .load(wasm.clone(), None, &PluginSettings::default())
            .await
            .unwrap();
        assert_eq!(plugin.origin, conduit::runtime::cache::Origin::Compiled);
        compiled.push(plugin.load_time);
        // A restart: a new engine on the same cache directory.
        for _ in 0..10 {
            let runtime = Runtime::new(RuntimeConfig::new(cache.path())).unwrap();
            let plugin = runtime
                .load(wasm.clone(), None, &PluginSettings::default())
                .await
                .unwrap();
            assert_eq!(plugin.origin, conduit::runtime::cache::Origin::Cache);
            cached.push(plugin.load_time);
        }
    }
    let compile = percentile(&mut compiled, 0.5);
    let cache = percentile(&mut cached, 0.5);
    println!(
        "plugin load (stripe, {} KiB wasm, incl. info()): first compile {:.1} ms, from cache p50 {:.2} ms ({:.0}x faster)  [target cached <= 10 ms]",
        wasm.len() / 1024,
        compile.as_secs_f64() * 1e3,
        cache.as_secs_f64() * 1e3,
        compile.as_secs_f64() / cache.as_secs_f64()
    );
}
