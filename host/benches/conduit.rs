//! `cargo xtask bench`: the figures the issues name, measured in one run.
//!
//! 1. dispatch: instantiate + `execute` of a capability that makes no HTTP call
//!    (`probe.echo`), in process, p50 and p99;
//! 2. end to end: `POST .../execute` of `customers.create` over HTTP against the fake
//!    Stripe vs the same request sent straight to the fake, and the host's added p50/p99;
//! 3. plugin load: first compile vs load from the compiled-component cache;
//! 4. tokens: a warm vend in process (p50, p99), vend over HTTP vs `GET /healthz`
//!    (requests/s, same server and client), and selecting the due credentials among
//!    10,000 and 100,000 stored with 1,000 due;
//! 5. binding: `POST /api/capabilities/customers.create/execute` (resolution, policy,
//!    rate budget, vend, sandbox, audit) against the fake Stripe vs the same request
//!    straight to the fake; resolution of 1,000 tenants × 10 bindings, cached vs not;
//! 6. hot-loading: upload to first execution on the new version (Rust and Python, cold
//!    and from the cache), and the p99 of executions while versions are swapped vs not;
//! 7. the fast path: the host's own work per execute with one provider request, (via
//!    Conduit − straight to the fake) − `GET /healthz`, on both routes, interleaved in
//!    one run; then, under wrk with 16 connections, executes/s vs healthz/s, the CPU the
//!    Conduit process spends per execute, and executes/s on 1 and 2 worker threads.

#[path = "../../tests/support/mod.rs"]
mod support;

use conduit::domain::SecretFields;
use conduit::runtime::cache::Origin;
use conduit::runtime::{CallContext, PluginSettings, Runtime, RuntimeConfig};
use serde_json::json;
use std::time::{Duration, Instant};
use support::fake_stripe::{FakeStripe, GOOD_KEY};

/// A rate profile the benchmarks never reach: they measure the host, not a provider's
/// ceiling (Stripe's is 100 requests/s).
const UNLIMITED_RATE: &str =
    "rate_profile = { requests = 1000000, per_seconds = 1, burst = 1000000 }";

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// POSTs `body` with a bearer token and checks the answer is 200, reading it whole.
async fn post_ok(
    client: &reqwest::Client,
    url: &str,
    bearer: &str,
    content_type: &str,
    body: &str,
) {
    let r = client
        .post(url)
        .bearer_auth(bearer)
        .header("content-type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
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
    // `CONDUIT_BENCH=dispatch|e2e|load|languages|hotload|tokens|vend|throughput|due|binding|execute|resolve|fastpath|postgres`
    // runs one section.
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
    if run("languages") {
        languages().await;
    }
    if run("hotload") {
        hotload().await;
    }

    if run("tokens") || run("vend") {
        warm_vend().await;
    }
    if run("tokens") || run("throughput") {
        vend_throughput().await;
    }
    if run("tokens") || run("due") {
        due_selection();
    }
    if run("binding") || run("execute") {
        bound_execute().await;
    }
    if run("binding") || run("resolve") {
        resolution().await;
    }
    if run("fastpath") {
        fast_path().await;
    }
    if run("postgres") {
        postgres().await;
    }
}

/// The PostgreSQL backend against sled, on the server `cargo xtask bench` starts
/// (`CONDUIT_TEST_DATABASE_URL`): warm vend in process, due selection, and vend and
/// execute throughput over HTTP with one replica and with three on one database.
async fn postgres() {
    let Ok(server) = std::env::var("CONDUIT_TEST_DATABASE_URL") else {
        println!(
            "postgres: skipped (no CONDUIT_TEST_DATABASE_URL; `cargo xtask bench` starts a server)"
        );
        return;
    };
    let schema = |name: &str| {
        let store = conduit::store::PgStore::connect_in(&server, Some(name)).unwrap();
        conduit::store::Stores::postgres(store).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let sled = conduit::store::Stores::open(dir.path()).unwrap();
    warm_vend_on(sled, "sled").await;
    warm_vend_on(schema("bench_vend"), "PostgreSQL").await;
    due_selection_on(&schema("bench_due"), "PostgreSQL");
    replica_throughput().await;
}

/// Vend and execute throughput over HTTP, 16 clients spread over `replicas` servers:
/// on sled (one), then on one PostgreSQL database (one, then three).
async fn replica_throughput() {
    let (stripe, stripe_addr) = support::fake_stripe::FakeStripe::start().await;
    let (_google, google_addr) = support::fake_google::start().await;
    let plugins = || {
        vec![
            support::gmail_plugin(google_addr),
            support::PluginDecl::new("stripe", "conduit_stripe")
                .allow(&[&stripe_addr.to_string()])
                .setting(UNLIMITED_RATE),
        ]
    };
    for (backend, replicas) in [("sled", 1), ("PostgreSQL", 1), ("PostgreSQL", 3)] {
        let mut env = Vec::new();
        if backend == "PostgreSQL" {
            env.push((
                "CONDUIT_DATABASE_URL",
                support::postgres::fresh_database().await.unwrap(),
            ));
        }
        let mut servers = Vec::new();
        for _ in 0..replicas {
            servers.push(support::Conduit::start_for_bench_env(plugins(), &env).await);
        }
        let first = &servers[0];
        let token = first.tenant("bench").await;
        let gmail = first
            .connection(&token, support::gmail_connection(google_addr, "managed"))
            .await;
        first
            .oauth_tokens(&token, &gmail, "ya29.bench", "1//bench", 3_600_000)
            .await;
        let stripe_id = first
            .connection(
                &token,
                serde_json::json!({"connector": "stripe", "environment": "sandbox",
                                   "config": {"baseUrl": format!("http://{stripe_addr}")}}),
            )
            .await;
        first
            .api_key(&token, &stripe_id, support::fake_stripe::GOOD_KEY)
            .await;
        let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
        let vend = spread_requests(
            &bases,
            &format!("/api/connections/{gmail}/vend"),
            &token,
            "{}",
        );
        let execute = spread_requests(
            &bases,
            &format!("/api/connections/{stripe_id}/capabilities/customers.create/execute"),
            &token,
            r#"{"data":{"type":"executions","attributes":{"input":{"email":"ada@example.com"}}}}"#,
        );
        throughput(vend.clone(), 16, Duration::from_millis(500)).await;
        let window = Duration::from_secs(2);
        let vend_rps = throughput(vend, 16, window).await;
        let execute_rps = throughput(execute, 16, window).await;
        println!(
            "{backend}, {replicas} replica(s) on one machine: vend {vend_rps:.0} req/s, execute {execute_rps:.0} req/s (16 clients spread over them)"
        );
    }
    drop(stripe);
}

/// A POST of `body` to `path` on each of `bases` in turn, asserting 200.
fn spread_requests(
    bases: &[String],
    path: &str,
    token: &str,
    body: &'static str,
) -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Clone + Send + 'static
{
    let urls: std::sync::Arc<Vec<String>> =
        std::sync::Arc::new(bases.iter().map(|b| format!("{b}{path}")).collect());
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (client, token) = (reqwest::Client::new(), token.to_owned());
    move || {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % urls.len();
        let (client, url, token) = (client.clone(), urls[i].clone(), token.clone());
        Box::pin(async move {
            let r = client
                .post(&url)
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap();
        })
    }
}

/// A refresher for credentials that must never need one.
struct NoRefresh;

impl conduit::credentials::tokens::Refresher for NoRefresh {
    fn refresh<'a>(
        &'a self,
        _: &'a conduit::domain::Connection,
        _: &'a str,
    ) -> conduit::credentials::tokens::BoxFuture<
        'a,
        Result<SecretFields, conduit::credentials::tokens::RefreshError>,
    > {
        panic!("a warm credential was refreshed")
    }
}

fn bench_connection(id: &str) -> conduit::domain::Connection {
    use conduit::domain::*;
    Connection {
        id: id.into(),
        tenant_id: "bench".into(),
        connector: "gmail".into(),
        integration_key: "email.gmail".into(),
        integration_version: 1,
        label: "bench".into(),
        environment: Environment::Production,
        ownership_mode: OwnershipMode::Managed,
        external_account_id: None,
        config: Default::default(),
        status: ConnectionStatus::Active,
        status_reason: None,
        daily_quota: None,
        created_at: 0,
        updated_at: 0,
    }
}

fn oauth_secret(expires_in_ms: u64) -> SecretFields {
    SecretFields {
        access_token: Some("ya29.a0AfH6SMBx-bench-access-token-0123456789".into()),
        refresh_token: Some("1//0bench-refresh-token-0123456789".into()),
        expires_at: Some(conduit::domain::now_ms() + expires_in_ms),
        ..SecretFields::default()
    }
}

async fn warm_vend() {
    let dir = tempfile::tempdir().unwrap();
    let stores = conduit::store::Stores::open(dir.path()).unwrap();
    // Over sled the sealed credential comes from the read cache (`store::cached`) once warm.
    warm_vend_on(stores, "sled read cache").await;
}

async fn warm_vend_on(stores: conduit::store::Stores, backend: &str) {
    use conduit::credentials::tokens::{RefreshLeads, Tokens};
    let vault = std::sync::Arc::new(
        conduit::credentials::vault::Vault::load(
            stores.keyring.clone(),
            conduit::credentials::vault::Key::generate(),
        )
        .unwrap(),
    );
    let tokens = Tokens::new(
        &stores,
        vault,
        conduit::credentials::notify::Notifier::log_only(),
    )
    .with_refresher(std::sync::Arc::new(NoRefresh), RefreshLeads::default());
    let connection = bench_connection("conn_bench");
    stores.connections.put_connection(&connection).unwrap();
    tokens
        .put(
            &connection,
            conduit::domain::CredentialKind::Oauth2,
            &oauth_secret(3_600_000),
        )
        .unwrap();
    for _ in 0..2000 {
        tokens.vend(&connection).await.unwrap();
    }
    let mut samples = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let started = Instant::now();
        let secret = tokens.vend(&connection).await.unwrap();
        samples.push(started.elapsed());
        drop(secret);
    }
    println!(
        "warm vend in process ({backend} + envelope decrypt): p50 {:.2} µs, p99 {:.2} µs  [target p50 <= 5 µs on sled]",
        us(percentile(&mut samples, 0.5)),
        us(percentile(&mut samples, 0.99))
    );
}

/// Requests/s of `request` from `concurrency` client tasks for `window`.
async fn throughput<F, Fut>(request: F, concurrency: usize, window: Duration) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let deadline = Instant::now() + window;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let request = request.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    request().await;
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total as f64 / window.as_secs_f64()
}

async fn vend_throughput() {
    let (_fake, fake_addr) = support::fake_google::start().await;
    let conduit = support::Conduit::start_for_bench(vec![support::gmail_plugin(fake_addr)]).await;
    let token = conduit.tenant("bench").await;
    let connection = conduit
        .connection(&token, support::gmail_connection(fake_addr, "managed"))
        .await;
    conduit
        .oauth_tokens(&token, &connection, "ya29.bench", "1//bench", 3_600_000)
        .await;
    let client = reqwest::Client::new();
    let vend_url = format!("{}/api/connections/{connection}/vend", conduit.base);
    let healthz_url = format!("{}/healthz", conduit.base);
    let vend = {
        let (client, url, token) = (client.clone(), vend_url.clone(), token.clone());
        move || {
            let (client, url, token) = (client.clone(), url.clone(), token.clone());
            async move {
                let r = client.post(&url).bearer_auth(&token).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
            }
        }
    };
    let healthz = {
        let (client, url) = (client.clone(), healthz_url.clone());
        move || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let r = client.get(&url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
            }
        }
    };
    let window = Duration::from_secs(2);
    throughput(vend.clone(), 16, Duration::from_millis(500)).await;
    let (mut vend_rps, mut healthz_rps) = (0.0, 0.0);
    // Alternate so both see the same machine state.
    for _ in 0..3 {
        vend_rps += throughput(vend.clone(), 16, window).await / 3.0;
        healthz_rps += throughput(healthz.clone(), 16, window).await / 3.0;
    }
    println!(
        "vend over HTTP {:.0} req/s vs GET /healthz {:.0} req/s (16 concurrent clients): ratio {:.2}  [target >= 0.7]",
        vend_rps,
        healthz_rps,
        vend_rps / healthz_rps
    );
}

fn due_selection() {
    let dir = tempfile::tempdir().unwrap();
    let stores = conduit::store::Stores::open(dir.path()).unwrap();
    due_selection_on(&stores, "sled");
}

fn due_selection_on(stores: &conduit::store::Stores, backend: &str) {
    let store = stores.credentials.clone();
    let vault = conduit::credentials::vault::Vault::load(
        stores.keyring.clone(),
        conduit::credentials::vault::Key::generate(),
    )
    .unwrap();
    let now = conduit::domain::now_ms();
    let lead = 600_000;
    let credential = |i: usize, expires_at: u64| {
        let id = format!("conn_{i:08}");
        let sealed = vault.seal(
            conduit::credentials::vault::SealContext {
                credential_id: &id,
                connection_id: &id,
            },
            b"{}",
        );
        let stored = conduit::store::StoredCredential {
            credential_id: id.clone(),
            version: 1,
            kind: conduit::domain::CredentialKind::Oauth2,
            expires_at: Some(expires_at),
            refreshable: true,
            sealed,
            updated_at: now,
            index_at: None,
        };
        (id, stored)
    };
    // 1,000 due within the lead; the rest expire between 2 hours and 30 days out.
    let mut stored = 0;
    for target in [10_000usize, 100_000] {
        let batch: Vec<_> = (stored..target)
            .map(|i| {
                let expires_at = if i < 1000 {
                    now + 60_000 + i as u64
                } else {
                    now + 7_200_000 + (i as u64 * 24_571) % 2_592_000_000
                };
                credential(i, expires_at)
            })
            .collect();
        store
            .import_credentials(
                &batch
                    .iter()
                    .map(|(id, c)| (id.as_str(), c))
                    .collect::<Vec<_>>(),
            )
            .unwrap();
        stored = target;
        // Let sled's background flusher settle after the import, then warm up.
        std::thread::sleep(Duration::from_secs(2));
        for _ in 0..20 {
            store.due(now + lead, 10_000).unwrap();
        }
        let mut samples = Vec::new();
        for _ in 0..200 {
            let started = Instant::now();
            let due = store.due(now + lead, 10_000).unwrap();
            samples.push(started.elapsed());
            assert_eq!(due.len(), 1000);
        }
        println!(
            "select due credentials ({backend}): {target} stored, 1000 due: p50 {:.2} ms, p99 {:.2} ms  [target <= 10 ms, flat in stored count]",
            percentile(&mut samples, 0.5).as_secs_f64() * 1e3,
            percentile(&mut samples, 0.99).as_secs_f64() * 1e3
        );
    }
}

/// The call context of the probe benchmarks (no config, no idempotency key).
fn probe_context() -> CallContext {
    CallContext {
        connection_id: "conn_bench".into(),
        tenant_id: "bench".into(),
        environment: "sandbox".into(),
        external_account_id: None,
        config: Default::default(),
        idempotency_key: None,
    }
}

fn probe_secret() -> SecretFields {
    SecretFields {
        api_key: Some("probe-key-0123456789".into()),
        ..SecretFields::default()
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
    let (ctx, secret) = (probe_context(), probe_secret());
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
    // Stripe's own 100 requests/s would refuse the benchmark's pace with 429s.
    let conduit = support::Conduit::start_for_bench(vec![
        support::PluginDecl::new("stripe", "conduit_stripe")
            .allow(&[&fake_addr.to_string()])
            .setting(UNLIMITED_RATE),
        support::PluginDecl::new("sandbox-probe", "conduit_sandbox_probe").setting(UNLIMITED_RATE),
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

    let via_conduit = || {
        post_ok(
            &client,
            &execute_url,
            &token,
            "application/json",
            &execute_body,
        )
    };
    let direct = || {
        post_ok(
            &client,
            &direct_url,
            GOOD_KEY,
            "application/x-www-form-urlencoded",
            direct_body,
        )
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
    let echo = || post_ok(&client, &echo_url, &token, "application/json", &echo_body);
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

/// A new engine on `cache` (a fresh start, or a restart) loading `wasm`, which must
/// come from `origin`.
async fn load_expecting(
    cache: &std::path::Path,
    wasm: &[u8],
    origin: Origin,
) -> (Runtime, conduit::runtime::Plugin) {
    let runtime = Runtime::new(RuntimeConfig::new(cache)).unwrap();
    let plugin = runtime
        .load(wasm.to_vec(), None, &PluginSettings::default())
        .await
        .unwrap();
    assert_eq!(plugin.prepared.origin, origin);
    (runtime, plugin)
}

async fn plugin_load() {
    let wasm = std::fs::read(support::wasm("conduit_stripe")).unwrap();
    let mut compiled = Vec::new();
    let mut cached = Vec::new();
    for _ in 0..3 {
        let cache = tempfile::tempdir().unwrap();
        let (_, plugin) = load_expecting(cache.path(), &wasm, Origin::Compiled).await;
        compiled.push(plugin.prepared.load_time);
        // A restart: a new engine on the same cache directory.
        for _ in 0..10 {
            let (_, plugin) = load_expecting(cache.path(), &wasm, Origin::Cache).await;
            cached.push(plugin.prepared.load_time);
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

/// Per language, the same hostile probe (`probe.echo` makes no host call): component
/// size, first compile, load from the cache (a restart), and dispatch.
async fn languages() {
    let (ctx, secret) = (probe_context(), probe_secret());
    let input = json!({"ping": 1}).to_string();
    for (language, wasm, targets) in [
        (
            "Rust",
            "conduit_sandbox_probe",
            "cached <= 10 ms, dispatch unchanged",
        ),
        (
            "Python",
            "conduit_python_probe",
            "cached <= 50 ms, dispatch p50 <= 1 ms",
        ),
        (
            "JavaScript",
            "conduit_js_probe",
            "cached <= 50 ms, dispatch p50 <= 0.5 ms",
        ),
    ] {
        // `CONDUIT_BENCH_LANG=Python` measures one language (for a profiler).
        if std::env::var("CONDUIT_BENCH_LANG").is_ok_and(|only| only != language) {
            continue;
        }
        let wasm = std::fs::read(support::wasm(wasm)).unwrap();
        let cache = tempfile::tempdir().unwrap();
        let (runtime, first) = load_expecting(cache.path(), &wasm, Origin::Compiled).await;
        let mut cached = Vec::new();
        for _ in 0..5 {
            let (_, plugin) = load_expecting(cache.path(), &wasm, Origin::Cache).await;
            cached.push(plugin.prepared.load_time);
        }
        for _ in 0..200 {
            runtime
                .execute(&first, &ctx, &secret, "probe.echo", &input)
                .await
                .result
                .unwrap()
                .unwrap();
        }
        let rounds: usize = std::env::var("CONDUIT_BENCH_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(2000);
        let mut samples = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let started = Instant::now();
            let report = runtime
                .execute(&first, &ctx, &secret, "probe.echo", &input)
                .await;
            samples.push(started.elapsed());
            report.result.unwrap().unwrap();
        }
        println!(
            "{language}: {:.2} MiB wasm, {} core instances, {:.1} MiB initial memory; first compile {:.2} s, cached load p50 {:.1} ms; dispatch p50 {:.1} µs, p99 {:.1} µs  [target {targets}]",
            wasm.len() as f64 / f64::from(1 << 20),
            first.prepared.footprint.core_instances,
            first.prepared.footprint.initial_memory_bytes as f64 / f64::from(1 << 20),
            first.prepared.load_time.as_secs_f64(),
            percentile(&mut cached, 0.5).as_secs_f64() * 1e3,
            us(percentile(&mut samples, 0.5)),
            us(percentile(&mut samples, 0.99)),
        );
    }
}

/// A blueprint with `slots` payments slots (`slot-0`…), for the binding benchmarks.
fn bench_blueprint(slots: usize) -> serde_json::Value {
    let slots: Vec<_> = (0..slots)
        .map(|i| {
            json!({"slotId": format!("slot-{i}"), "requiredCategory": "payments",
                         "requiredCapabilities": [{"key": "customers.create", "version": 1}]})
        })
        .collect();
    json!({"meta": {"name": "bench-app", "version": "1"}, "integrationSlots": slots})
}

async fn bound_execute() {
    let (_fake, fake_addr) = FakeStripe::start().await;
    let routes = StripeRoutes::start(fake_addr, &[]).await;
    let client = reqwest::Client::new();
    let (execute_url, execute_body, token) = (&routes.bound, &routes.bound_body, &routes.token);
    let direct_url = &routes.direct;
    let via_conduit = || {
        post_ok(
            &client,
            execute_url,
            token,
            "application/json",
            execute_body,
        )
    };
    let direct = || {
        post_ok(
            &client,
            direct_url,
            GOOD_KEY,
            "application/x-www-form-urlencoded",
            DIRECT_BODY,
        )
    };
    let rounds = std::env::var("CONDUIT_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2000);
    let (mut via, mut straight) = interleave(via_conduit, direct, rounds).await;
    let (c50, c99) = (percentile(&mut via, 0.5), percentile(&mut via, 0.99));
    let (d50, d99) = (
        percentile(&mut straight, 0.5),
        percentile(&mut straight, 0.99),
    );
    println!(
        "executeCapability over HTTP via conduit: p50 {:.1} µs, p99 {:.1} µs; straight to fake: p50 {:.1} µs, p99 {:.1} µs",
        us(c50), us(c99), us(d50), us(d99)
    );
    println!(
        "executeCapability added: p50 {:.1} µs, p99 {:.1} µs (ratio p50 {:.2}x)  [target added p50 <= 250 µs]",
        us(c50) - us(d50),
        us(c99) - us(d99),
        us(c50) / us(d50)
    );
}

async fn resolution() {
    use conduit::domain::*;
    const TENANTS: usize = 1_000;
    const BINDINGS: usize = 10;
    let cache = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig::new(cache.path())).unwrap();
    let wasm = std::fs::read(support::wasm("conduit_stripe")).unwrap();
    let plugin = runtime
        .load(wasm, None, &PluginSettings::default())
        .await
        .unwrap();
    let catalog = std::sync::Arc::new(conduit::runtime::catalog::Catalog::default());
    catalog.insert(plugin);
    let stores = conduit::store::Stores::temporary().unwrap();
    let blueprint: Blueprint = serde_json::from_value(bench_blueprint(BINDINGS)).unwrap();
    assert!(stores
        .blueprints
        .insert_blueprint(&blueprint)
        .unwrap()
        .is_none());
    for t in 0..TENANTS {
        let tenant = format!("tenant-{t}");
        let mut integrations = Vec::new();
        for b in 0..BINDINGS {
            let mut connection = bench_connection(&format!("conn_{t}_{b}"));
            connection.tenant_id = tenant.clone();
            connection.connector = "stripe".into();
            connection.integration_key = "payments.stripe".into();
            connection
                .config
                .insert("baseUrl".into(), json!("https://api.stripe.com"));
            stores.connections.put_connection(&connection).unwrap();
            integrations.push(Binding {
                slot_id: format!("slot-{b}"),
                connection_id: connection.id.clone(),
                scope: Some(Scope {
                    workflows: vec!["checkout".into(), "subscription-*".into()],
                    operations: vec!["payments.stripe.*".into()],
                }),
                priority: b as i32,
                config: Default::default(),
            });
        }
        let mut config = TenantConfig {
            meta: ConfigMeta {
                tenant_id: tenant.clone(),
                blueprint_name: "bench-app".into(),
                blueprint_version: "1".into(),
                environment: Environment::Production,
                version: 0,
                status: ConfigStatus::Draft,
            },
            integrations,
            branding: serde_json::Value::Null,
            created_at: 0,
            updated_at: 0,
        };
        stores.configs.insert_config_version(&mut config).unwrap();
        stores
            .configs
            .publish(&tenant, "bench-app", Environment::Production, 1, 0)
            .unwrap()
            .unwrap();
    }
    let connectors = std::sync::Arc::new(conduit::runtime::connectors::Loaded::new(
        catalog,
        std::sync::Arc::new(runtime),
        conduit::runtime::ratelimit::RateLimits::new(),
    ));
    let resolver = conduit::binding::resolver::Resolver::new(&stores, connectors);
    let tenants: Vec<String> = (0..TENANTS).map(|t| format!("tenant-{t}")).collect();
    let mut uncached = Vec::with_capacity(TENANTS);
    for tenant in &tenants {
        let started = Instant::now();
        let resolved = resolver
            .resolve_uncached(tenant, "bench-app", Environment::Production)
            .unwrap();
        uncached.push(started.elapsed());
        assert_eq!(resolved.candidates("customers.create").len(), BINDINGS);
    }
    // Fill the cache, then read every tenant from it 10 times.
    for tenant in &tenants {
        resolver
            .resolve(tenant, "bench-app", Environment::Production)
            .unwrap();
    }
    let mut cached = Vec::with_capacity(TENANTS * 10);
    for _ in 0..10 {
        for tenant in &tenants {
            let started = Instant::now();
            let resolved = resolver
                .resolve(tenant, "bench-app", Environment::Production)
                .unwrap();
            cached.push(started.elapsed());
            assert_eq!(resolved.candidates("customers.create").len(), BINDINGS);
        }
    }
    // Uncached resolution reuses compiled scopes (every tenant here has the same one);
    // a scope seen for the first time costs a compile:
    let scope = Scope {
        workflows: vec!["checkout".into(), "subscription-*".into()],
        operations: vec!["payments.stripe.*".into()],
    };
    let mut compiles: Vec<Duration> = (0..200)
        .map(|_| {
            let started = Instant::now();
            conduit::binding::policy::CompiledScope::compile(Some(&scope)).unwrap();
            started.elapsed()
        })
        .collect();
    println!(
        "scope compile (a distinct scope's first resolution): p50 {:.1} µs",
        us(percentile(&mut compiles, 0.5))
    );
    let (u50, u99) = (
        percentile(&mut uncached, 0.5),
        percentile(&mut uncached, 0.99),
    );
    let (c50, c99) = (percentile(&mut cached, 0.5), percentile(&mut cached, 0.99));
    println!(
        "resolution, {TENANTS} tenants x {BINDINGS} bindings: uncached p50 {:.1} µs / p99 {:.1} µs, cached p50 {:.2} µs / p99 {:.2} µs ({:.0}x faster)",
        us(u50), us(u99), us(c50), us(c99), us(u50) / us(c50)
    );
}

/// Times an upload and the first execution that follows it on the new version.
async fn upload_then_execute(
    conduit: &support::Conduit,
    wasm: &[u8],
    then: impl std::future::Future<Output = support::Resp>,
) -> (Duration, Duration) {
    let started = Instant::now();
    let r = conduit.upload(wasm, false).await;
    assert!(r.status == 200 || r.status == 201, "{}", r.text);
    let uploaded = started.elapsed();
    let started = Instant::now();
    let r = then.await;
    assert_eq!(r.status, 200, "{}", r.text);
    (uploaded, started.elapsed())
}

async fn hotload() {
    let read = |name: &str| std::fs::read(support::wasm(name)).unwrap();
    let (v1, v2, python) = (
        read("conduit_sandbox_probe"),
        read("conduit_sandbox_probe_v2"),
        read("conduit_python_probe"),
    );
    let cache = tempfile::tempdir().unwrap();
    let env = [("CONDUIT_CACHE_DIR", cache.path().display().to_string())];
    let unlimited = UNLIMITED_RATE;
    let conduit = support::Conduit::start_for_bench_env(
        vec![support::PluginDecl::new("sandbox-probe", "conduit_sandbox_probe").setting(unlimited)],
        &env,
    )
    .await;
    let token = conduit.tenant("bench").await;
    let connect = |connector: &'static str| {
        let (conduit, token) = (&conduit, &token);
        async move {
            let id = conduit
                .connection(
                    token,
                    json!({"connector": connector, "environment": "sandbox"}),
                )
                .await;
            conduit.api_key(token, &id, "probe-key-0123456789").await;
            id
        }
    };
    let rust = connect("sandbox-probe").await;
    let version = || conduit.execute(&token, &rust, "probe.version", json!({}));
    let show = |what: &str, (upload, first): (Duration, Duration)| {
        println!(
            "hot-load {what}: upload {:.1} ms + first execution {:.2} ms = {:.1} ms",
            upload.as_secs_f64() * 1e3,
            first.as_secs_f64() * 1e3,
            (upload + first).as_secs_f64() * 1e3
        )
    };
    show(
        "Rust, cold (compile)",
        upload_then_execute(&conduit, &v2, version()).await,
    );
    show(
        "Rust, cached",
        upload_then_execute(&conduit, &v1, version()).await,
    );

    let started = Instant::now();
    let r = conduit.upload(&python, false).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let cold = started.elapsed();
    let py = connect("python-probe").await;
    let started = Instant::now();
    let r = conduit.execute(&token, &py, "probe.echo", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    show("Python, cold (compile)", (cold, started.elapsed()));
    let admin = conduit.admin_token.clone();
    let r = conduit.delete("/admin/plugins/python-probe", &admin).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let echo = conduit.execute(&token, &py, "probe.echo", json!({}));
    show(
        "Python, cached",
        upload_then_execute(&conduit, &python, echo).await,
    );

    // Executions from 4 clients, without swaps and then while a version is swapped in
    // every 50 ms (from the cache, as a fixed release ships).
    let per_client = 1500;
    let load = || async {
        let clients = (0..4).map(|_| async {
            let mut samples = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let started = Instant::now();
                let r = conduit
                    .execute(&token, &rust, "probe.echo", json!({"n": 1}))
                    .await;
                assert_eq!(r.status, 200, "{}", r.text);
                samples.push(started.elapsed());
            }
            samples
        });
        futures_util::future::join_all(clients).await.concat()
    };
    let mut quiet = load().await;
    let swapping = std::sync::atomic::AtomicBool::new(true);
    let swaps = std::sync::atomic::AtomicUsize::new(0);
    let swapper = async {
        let mut next = [&v2, &v1].into_iter().cycle();
        while swapping.load(std::sync::atomic::Ordering::Relaxed) {
            let r = conduit.upload(next.next().unwrap(), false).await;
            assert_eq!(r.status, 200, "{}", r.text);
            swaps.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let loaded = async {
        let samples = load().await;
        swapping.store(false, std::sync::atomic::Ordering::Relaxed);
        samples
    };
    let (mut busy, ()) = tokio::join!(loaded, swapper);
    let (q50, q99) = (percentile(&mut quiet, 0.5), percentile(&mut quiet, 0.99));
    let (b50, b99) = (percentile(&mut busy, 0.5), percentile(&mut busy, 0.99));
    println!(
        "executions (4 clients) without swaps: p50 {:.0} µs, p99 {:.0} µs; during {} swaps: p50 {:.0} µs, p99 {:.0} µs; p99 ratio {:.2}x (target ≤ 2x)",
        us(q50),
        us(q99),
        swaps.load(std::sync::atomic::Ordering::Relaxed),
        us(b50),
        us(b99),
        b99.as_secs_f64() / q99.as_secs_f64()
    );
}

/// A Conduit serving Stripe against the fake on both execute routes, as the fast-path
/// section measures it.
struct StripeRoutes {
    conduit: support::Conduit,
    token: String,
    /// `POST /api/connections/{id}/capabilities/customers.create/execute`.
    on_connection: String,
    /// `POST /api/capabilities/customers.create/execute`.
    bound: String,
    on_connection_body: String,
    bound_body: String,
    direct: String,
}

const DIRECT_BODY: &str = "email=ada%40example.com&name=Ada";

impl StripeRoutes {
    async fn start(fake_addr: std::net::SocketAddr, env: &[(&str, String)]) -> Self {
        let conduit = support::Conduit::start_for_bench_env(
            vec![support::PluginDecl::new("stripe", "conduit_stripe")
                .allow(&[&fake_addr.to_string()])
                .setting(UNLIMITED_RATE)],
            env,
        )
        .await;
        let token = conduit.tenant("bench").await;
        let connection = conduit
            .connection(&token, json!({"connector": "stripe", "environment": "production", "config": {"baseUrl": format!("http://{fake_addr}")}}))
            .await;
        conduit.api_key(&token, &connection, GOOD_KEY).await;
        let r = conduit
            .put(
                "/admin/blueprints/bench-app/versions/1",
                &conduit.admin_token.clone(),
                bench_blueprint(1),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let r = conduit
            .post("/api/tenant-configs", &token, json!({"meta": {"blueprintName": "bench-app", "blueprintVersion": "1", "environment": "production"},
                   "integrations": [{"slotId": "slot-0", "connectionId": connection, "scope": {"workflows": ["checkout"], "operations": ["payments.stripe.*"]}}]}))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let r = conduit
            .post(
                "/api/tenant-configs/bench-app/production/versions/1/publish",
                &token,
                json!({}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let input = json!({"email": "ada@example.com", "name": "Ada"});
        StripeRoutes {
            on_connection: format!(
                "{}/api/connections/{connection}/capabilities/customers.create/execute",
                conduit.base
            ),
            bound: format!("{}/api/capabilities/customers.create/execute", conduit.base),
            on_connection_body: support::doc("executions", json!({"input": input})).to_string(),
            bound_body: support::doc(
                "executions",
                json!({"blueprint": "bench-app", "environment": "production", "workflow": "checkout", "input": input}),
            )
            .to_string(),
            direct: format!("http://{fake_addr}/v1/customers"),
            conduit,
            token,
        }
    }

    fn healthz(&self) -> String {
        format!("{}/healthz", self.conduit.base)
    }
}

async fn fast_path() {
    let (_fake, fake_addr) = FakeStripe::start().await;
    let routes = StripeRoutes::start(fake_addr, &[]).await;
    host_work(&routes).await;
    if !wrk_available() {
        println!("fast path throughput: skipped (wrk is not installed: `apt-get install wrk`)");
        return;
    }
    let healthz = wrk(&routes.healthz(), None, &routes.conduit);
    let execute = wrk(
        &routes.on_connection,
        Some((&routes.token, &routes.on_connection_body)),
        &routes.conduit,
    );
    let bound = wrk(
        &routes.bound,
        Some((&routes.token, &routes.bound_body)),
        &routes.conduit,
    );
    println!(
        "throughput, wrk 16 connections: GET /healthz {:.0} req/s; execute {:.0} req/s ({:.1} % of healthz), executeCapability {:.0} req/s ({:.1} %)  [target >= 15 %]",
        healthz.per_second,
        execute.per_second,
        100.0 * execute.per_second / healthz.per_second,
        bound.per_second,
        100.0 * bound.per_second / healthz.per_second,
    );
    println!(
        "conduit CPU per request: execute {:.0} µs, executeCapability {:.0} µs, healthz {:.1} µs  [target execute <= 100 µs]",
        execute.cpu_us, bound.cpu_us, healthz.cpu_us
    );
    drop(routes);
    let mut by_threads = Vec::new();
    for threads in [1, 2] {
        let routes = StripeRoutes::start(
            fake_addr,
            &[("CONDUIT_WORKER_THREADS", threads.to_string())],
        )
        .await;
        let run = wrk(
            &routes.on_connection,
            Some((&routes.token, &routes.on_connection_body)),
            &routes.conduit,
        );
        by_threads.push(format!(
            "{threads} worker thread(s) {:.0} req/s ({:.0} µs CPU each)",
            run.per_second, run.cpu_us
        ));
    }
    println!(
        "execute throughput by worker threads: {}",
        by_threads.join(", ")
    );
}

/// Per round: execute on the connection, executeCapability, the same request straight
/// to the fake and `GET /healthz`, one after another, so all four see the same machine.
async fn host_work(routes: &StripeRoutes) {
    let client = reqwest::Client::new();
    let healthz_url = routes.healthz();
    let healthz = || async {
        let r = client.get(&healthz_url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    };
    let json = "application/json";
    let form = "application/x-www-form-urlencoded";
    let rounds = std::env::var("CONDUIT_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3000);
    let mut samples = [(); 4].map(|_| Vec::with_capacity(rounds));
    for round in 0..rounds + 300 {
        let timed = [
            elapsed(post_ok(
                &client,
                &routes.on_connection,
                &routes.token,
                json,
                &routes.on_connection_body,
            ))
            .await,
            elapsed(post_ok(
                &client,
                &routes.bound,
                &routes.token,
                json,
                &routes.bound_body,
            ))
            .await,
            elapsed(post_ok(
                &client,
                &routes.direct,
                GOOD_KEY,
                form,
                DIRECT_BODY,
            ))
            .await,
            elapsed(healthz()).await,
        ];
        // The first 300 rounds warm the connections and caches.
        if round >= 300 {
            for (kept, sample) in samples.iter_mut().zip(timed) {
                kept.push(sample);
            }
        }
    }
    // Each round's own host work (its via − its direct − its healthz), so the three
    // are compared at the same moment of the machine; then the distribution's p50/p99.
    let [on_connection, bound, direct, health] = samples;
    let at = |p: f64, s: &mut [Duration]| us(percentile(s, p));
    let (d50, h50) = (at(0.5, &mut direct.clone()), at(0.5, &mut health.clone()));
    for (name, via) in [("execute", on_connection), ("executeCapability", bound)] {
        let mut work: Vec<f64> = via
            .iter()
            .zip(&direct)
            .zip(&health)
            .map(|((v, d), h)| us(*v) - us(*d) - us(*h))
            .collect();
        work.sort_by(f64::total_cmp);
        let work_at = |p: f64| work[((work.len() as f64 - 1.0) * p).round() as usize];
        let v50 = at(0.5, &mut via.clone());
        println!(
            "host work per {name}: via conduit p50 {v50:.1} µs, direct p50 {d50:.1} µs, healthz p50 {h50:.1} µs; per round (via − direct) − healthz p50 {:.1} µs, p99 {:.1} µs  [target p50 <= 100, p99 <= 250]",
            work_at(0.5),
            work_at(0.99),
        );
    }
}

/// How long `request` takes.
async fn elapsed(request: impl std::future::Future<Output = ()>) -> Duration {
    let started = Instant::now();
    request.await;
    started.elapsed()
}

fn wrk_available() -> bool {
    std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok()
}

/// One wrk run's figures.
struct Load {
    per_second: f64,
    /// CPU (user + system) of the Conduit process per request answered.
    cpu_us: f64,
}

/// Drives `url` with wrk (2 threads, 16 connections, 5 s; a POST of `body` with the
/// bearer token when given) and reads the Conduit process's CPU around it.
fn wrk(url: &str, post: Option<(&str, &str)>, conduit: &support::Conduit) -> Load {
    let script = tempfile::NamedTempFile::new().unwrap();
    if let Some((token, body)) = post {
        std::fs::write(
            script.path(),
            format!(
                "wrk.method = \"POST\"\nwrk.body = [==[{body}]==]\nwrk.headers[\"authorization\"] = \"Bearer {token}\"\nwrk.headers[\"content-type\"] = \"application/json\"\n"
            ),
        )
        .unwrap();
    }
    let seconds = std::env::var("CONDUIT_BENCH_WRK_SECS").unwrap_or_else(|_| "5".into());
    let run = |duration: &str| {
        let before = process_cpu(conduit.pid());
        let out = std::process::Command::new("wrk")
            .args(["-t2", "-c16", "-d", duration, "-s"])
            .arg(script.path())
            .arg(url)
            .output()
            .expect("wrk runs");
        let cpu = process_cpu(conduit.pid()) - before;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            !text.contains("Non-2xx"),
            "wrk saw failed requests:\n{text}"
        );
        let requests: f64 = text
            .split_whitespace()
            .zip(text.split_whitespace().skip(1))
            .find(|(_, next)| *next == "requests")
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or_else(|| panic!("wrk's output has no request count:\n{text}"));
        let per_second: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("wrk's output has no rate:\n{text}"));
        Load {
            per_second,
            cpu_us: cpu.as_secs_f64() * 1e6 / requests,
        }
    };
    run("1s"); // warm-up
    run(&format!("{seconds}s"))
}

/// User + system CPU the process has used, from `/proc/<pid>/stat`.
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at state.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // The kernel's USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}
