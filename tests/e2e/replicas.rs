//! Replicas on one PostgreSQL database (`--database`): each a real `conduit` process
//! with its own data directory, sharing tenants, connections, sealed credentials and
//! the audit trail through the database alone.

use crate::support::fake_google::{self, FakeGoogle};
use crate::support::fake_stripe::{FakeStripe, GOOD_KEY};
use crate::support::webhook::WebhookReceiver;
use crate::support::{
    doc, gmail_connection, gmail_env, gmail_plugin, postgres, Conduit, PluginDecl,
};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn stripe(addr: std::net::SocketAddr) -> Vec<PluginDecl> {
    vec![PluginDecl::new("stripe", "conduit_stripe").allow(&[&addr.to_string()])]
}

/// A sandbox Stripe connection to the fake on `addr`, with its key, made on `replica`.
async fn sandbox_stripe(replica: &Conduit, token: &str, addr: std::net::SocketAddr) -> String {
    let id = replica
        .connection(
            token,
            json!({"connector": "stripe", "environment": "sandbox",
                   "config": {"baseUrl": format!("http://{addr}")}}),
        )
        .await;
    replica.api_key(token, &id, GOOD_KEY).await;
    id
}

/// Three replicas started at once on a new database: they migrate it one at a time
/// and agree on one keyring, so a credential sealed by one opens on the others.
#[tokio::test]
async fn replicas_share_tenants_connections_credentials_and_audit() {
    let Some(database) = postgres::fresh_database().await else {
        return;
    };
    let (fake, addr) = FakeStripe::start().await;
    let env = [("CONDUIT_DATABASE_URL", database)];
    let (a, b, c) = tokio::join!(
        Conduit::start_env(stripe(addr), &env),
        Conduit::start_env(stripe(addr), &env),
        Conduit::start_env(stripe(addr), &env),
    );

    let token = a.tenant("acme-corp").await;
    let connection = sandbox_stripe(&a, &token, addr).await;

    // Made on one replica, used on the others: the tenant's token, its connection and
    // the credential sealed under the shared keyring.
    for (replica, email) in [(&b, "ada@example.com"), (&c, "grace@example.com")] {
        let r = replica
            .execute(
                &token,
                &connection,
                "customers.create",
                json!({"email": email}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.output()["email"], email);
    }
    let created = fake.received();
    assert_eq!(
        created.iter().filter(|r| r.path == "/v1/customers").count(),
        2
    );

    // What one replica audited, another lists (the writer batches, so it may lag).
    let path = format!("/api/audit?connectionId={connection}");
    let mut listed = 0;
    for _ in 0..100 {
        let r = a.get(&path, &token).await;
        assert_eq!(r.status, 200, "{}", r.text);
        listed = r.body["data"].as_array().map_or(0, Vec::len);
        if listed >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        listed, 2,
        "both executions, audited by b and c, listed on a"
    );

    // A tenant's token made on one replica is refused on none, and an unknown one on all.
    for replica in [&a, &b, &c] {
        let r = replica.get("/api/connections", &token).await;
        assert_eq!(r.status, 200, "{}", r.text);
        replica
            .get("/api/connections", "not-a-token")
            .await
            .assert_error(401, "unauthorized");
    }
}

/// The same idempotency key sent to two replicas at once, while the provider is slow:
/// one replica calls Stripe, the other waits for the key's lease and replays the
/// stored result, so both answer the one payment intent.
#[tokio::test]
async fn one_idempotency_key_on_two_replicas_calls_the_provider_once() {
    let Some(database) = postgres::fresh_database().await else {
        return;
    };
    let (fake, addr) = FakeStripe::start().await;
    let env = [("CONDUIT_DATABASE_URL", database)];
    let (a, b) = tokio::join!(
        Conduit::start_env(stripe(addr), &env),
        Conduit::start_env(stripe(addr), &env),
    );
    let token = a.tenant("acme-corp").await;
    let connection = sandbox_stripe(&a, &token, addr).await;
    fake.set_delay(Duration::from_millis(500));
    let path =
        format!("/api/connections/{connection}/capabilities/payments.createPaymentIntent/execute");
    let body = doc(
        "executions",
        json!({"input": {"amount": 4200, "currency": "usd"}, "idempotencyKey": "order-42"}),
    );
    let (first, second) = tokio::join!(
        a.post(&path, &token, body.clone()),
        b.post(&path, &token, body.clone()),
    );
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(second.status, 200, "{}", second.text);
    let calls = fake
        .received()
        .iter()
        .filter(|r| r.path == "/v1/payment_intents")
        .count();
    assert_eq!(calls, 1, "one provider call for the key");
    assert_eq!(first.output()["id"], second.output()["id"]);
}

/// A refresh token the provider rejects, vended on two replicas at once, with a slow
/// receiver (2.5 s an answer, longer than a replica's idle poll) refusing the first
/// delivery: the connection flips to NEEDS_REAUTH once, and its webhook is delivered
/// once, though all three replicas deliver the shared outbox and look at it while
/// each attempt is in flight.
#[tokio::test]
async fn a_needs_reauth_flip_on_replicas_sends_one_webhook() {
    let Some(database) = postgres::fresh_database().await else {
        return;
    };
    let (receiver, hook) = WebhookReceiver::start(1).await;
    receiver.set_delay(Duration::from_millis(2_500));
    let (fake, addr) = fake_google::start().await;
    let [a, b, _c] = gmail_replicas(
        &database,
        addr,
        &[
            ("CONDUIT_WEBHOOK_URL", format!("http://{hook}/hooks")),
            ("CONDUIT_WEBHOOK_SECRET", "whsec-replicas-0123456789".into()),
        ],
    )
    .await;
    let tenant = a.tenant("acme").await;
    let id = gmail_connection_with(&a, &tenant, &fake, addr, "1//dead", 60_000).await;
    fake.set_token_failure(Some(400));
    let (first, second) = tokio::join!(a.vend(&tenant, &id), b.vend(&tenant, &id));
    first.assert_error(409, "needs_reauth");
    second.assert_error(409, "needs_reauth");
    assert_eq!(fake.refresh_requests(), 1, "the dead token is tried once");

    let waited = Instant::now();
    while receiver.deliveries().is_empty() {
        assert!(waited.elapsed() < Duration::from_secs(30), "no webhook");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Past the answer time and two idle polls of every replica: none sends it again.
    tokio::time::sleep(Duration::from_millis(5_000)).await;
    assert_eq!(receiver.deliveries().len(), 1, "one event, delivered once");
    assert_eq!(
        receiver.attempts(),
        2,
        "the refused delivery was retried once"
    );
    assert_eq!(
        receiver.deliveries()[0].json()["type"],
        "connection.needs_reauth"
    );
}

/// A blueprint with one slot, for payments.
fn checkout_app() -> serde_json::Value {
    json!({
        "meta": {"name": "checkout-app", "version": "1", "appId": "app_checkout"},
        "integrationSlots": [
            {"slotId": "payments.primary", "requiredCategory": "payments",
             "allowedModes": ["managed", "byok"],
             "requiredCapabilities": [{"key": "payments.createPaymentIntent", "version": 1}],
             "required": true, "description": "Charges orders"}
        ],
        "workflows": [{"id": "checkout", "name": "Checkout"}]
    })
}

/// Posts a production config binding `bindings` on `replica` and publishes it there.
async fn publish_on(replica: &Conduit, token: &str, bindings: serde_json::Value) {
    let r = replica
        .post(
            "/api/tenant-configs",
            token,
            json!({
                "meta": {"tenantId": "acme-corp", "blueprintName": "checkout-app",
                         "blueprintVersion": "1", "environment": "production"},
                "integrations": bindings,
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let version = r.body["data"]["attributes"]["meta"]["version"]
        .as_u64()
        .unwrap();
    let r = replica
        .post(
            &format!("/api/tenant-configs/checkout-app/production/versions/{version}/publish"),
            token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// Resolutions are cached per replica; the revision they are checked against lives
/// in the database. A config published on one replica, and a connection deleted on
/// it, change where the other replica's very next executeCapability goes.
#[tokio::test]
async fn a_publication_and_a_deletion_on_one_replica_route_the_others_next_call() {
    let Some(database) = postgres::fresh_database().await else {
        return;
    };
    let (first, first_addr) = FakeStripe::start().await;
    let (second, second_addr) = FakeStripe::start().await;
    let plugins = || {
        vec![PluginDecl::new("stripe", "conduit_stripe")
            .allow(&[&first_addr.to_string(), &second_addr.to_string()])]
    };
    let env = [("CONDUIT_DATABASE_URL", database)];
    let (a, b) = tokio::join!(
        Conduit::start_env(plugins(), &env),
        Conduit::start_env(plugins(), &env)
    );
    let r = a
        .put(
            "/admin/blueprints/checkout-app/versions/1",
            &a.admin_token.clone(),
            checkout_app(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let token = a.tenant("acme-corp").await;
    let mut ids = Vec::new();
    for addr in [first_addr, second_addr] {
        let id = a
            .connection(
                &token,
                json!({"connector": "stripe", "environment": "production", "ownershipMode": "byok",
                       "config": {"baseUrl": format!("http://{addr}")}}),
            )
            .await;
        a.api_key(&token, &id, GOOD_KEY).await;
        ids.push(id);
    }
    let intents = |fake: &FakeStripe| {
        fake.received()
            .iter()
            .filter(|r| r.path == "/v1/payment_intents")
            .count()
    };
    let pay = || {
        doc(
            "executions",
            json!({"blueprint": "checkout-app", "environment": "production",
                   "workflow": "checkout", "input": {"amount": 4200, "currency": "eur"}}),
        )
    };
    let path = "/api/capabilities/payments.createPaymentIntent/execute";

    publish_on(
        &a,
        &token,
        json!([{"slotId": "payments.primary", "connectionId": ids[0]}]),
    )
    .await;
    let r = b.post(path, &token, pay()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!((intents(&first), intents(&second)), (1, 0));

    // b has the first binding cached; a publishes the second.
    publish_on(
        &a,
        &token,
        json!([{"slotId": "payments.primary", "connectionId": ids[1], "priority": 1},
               {"slotId": "payments.primary", "connectionId": ids[0], "priority": 2}]),
    )
    .await;
    let r = b.post(path, &token, pay()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["data"]["attributes"]["connectionId"],
        ids[1].as_str()
    );
    assert_eq!((intents(&first), intents(&second)), (1, 1));

    // a deletes the connection b would pick first: b's next call takes the other.
    let r = a
        .delete(&format!("/api/connections/{}", ids[1]), &token)
        .await;
    assert!(r.status == 200 || r.status == 204, "{}", r.text);
    let r = b.post(path, &token, pay()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["data"]["attributes"]["connectionId"],
        ids[0].as_str()
    );
    assert_eq!((intents(&first), intents(&second)), (2, 1));
}

/// The version of the sandbox probe answering on `replica` (`None`: unavailable).
async fn probe_version(replica: &Conduit, token: &str, connection: &str) -> Option<u64> {
    let r = replica
        .execute(token, connection, "probe.version", json!({}))
        .await;
    match r.status {
        200 => r.output()["version"].as_u64(),
        _ => {
            r.assert_error(503, "connector_unavailable");
            None
        }
    }
}

/// Waits until `replica` answers with `want`; returns how long it took.
async fn until_version(
    replica: &Conduit,
    token: &str,
    connection: &str,
    want: Option<u64>,
) -> Duration {
    let started = Instant::now();
    while probe_version(replica, token, connection).await != want {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the replica never answered {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// An upload, a rollback and an unload on one replica: the other follows each
/// within a second, loading the stored component into its own cache.
#[tokio::test]
async fn a_hot_load_rollback_and_unload_on_one_replica_reach_the_other_within_a_second() {
    let Some(database) = postgres::fresh_database().await else {
        return;
    };
    let env = [("CONDUIT_DATABASE_URL", database)];
    let probe = || vec![PluginDecl::new("sandbox-probe", "conduit_sandbox_probe")];
    let (a, b) = tokio::join!(
        Conduit::start_env(probe(), &env),
        Conduit::start_env(probe(), &env)
    );
    let token = a.tenant("acme-corp").await;
    let connection = a
        .connection(
            &token,
            json!({"connector": "sandbox-probe", "environment": "sandbox"}),
        )
        .await;
    a.api_key(&token, &connection, "probe-key-0123456789").await;
    assert_eq!(probe_version(&b, &token, &connection).await, Some(1));

    let v2 = std::fs::read(crate::support::wasm("conduit_sandbox_probe_v2")).unwrap();
    let r = a.upload(&v2, false).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let swap = until_version(&b, &token, &connection, Some(2)).await;
    let admin = a.admin_token.clone();
    let r = a
        .post("/admin/plugins/sandbox-probe/rollback", &admin, json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rollback = until_version(&b, &token, &connection, Some(1)).await;
    let r = a.delete("/admin/plugins/sandbox-probe", &admin).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let unload = until_version(&b, &token, &connection, None).await;
    eprintln!("b followed: swap {swap:?}, rollback {rollback:?}, unload {unload:?}");
    for (what, took) in [("swap", swap), ("rollback", rollback), ("unload", unload)] {
        assert!(
            took < Duration::from_secs(1),
            "the {what} took {took:?} to reach b"
        );
    }
}

/// Key rotation on one replica: the others open what it re-wrapped under the new
/// KEK, seal new credentials under it, and the old KEK retires once nothing uses it.
#[tokio::test]
async fn a_key_rotation_on_one_replica_is_used_by_the_others() {
    let Some(database) = postgres::fresh_database().await else {
        return;
    };
    let (_fake, addr) = FakeStripe::start().await;
    let env = [("CONDUIT_DATABASE_URL", database)];
    let (a, b) = tokio::join!(
        Conduit::start_env(stripe(addr), &env),
        Conduit::start_env(stripe(addr), &env)
    );
    let token = a.tenant("acme-corp").await;
    let old = sandbox_stripe(&a, &token, addr).await;
    assert_eq!(b.vend(&token, &old).await.status, 200);

    let admin = a.admin_token.clone();
    let rotated = a
        .call(
            reqwest::Method::POST,
            "/admin/vault/rotate",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    assert_eq!(rotated.body["data"]["attributes"]["rewrapped"], 1);
    let new_key = rotated.body["data"]["attributes"]["primaryKeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    // Re-wrapped under a KEK b has never seen: b reads the keyring again.
    let r = b.vend(&token, &old).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["attributes"]["apiKey"], GOOD_KEY);

    // b seals new credentials under the new primary (it follows the keyring), so the
    // old KEK is unused and retires.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let fresh = sandbox_stripe(&b, &token, addr).await;
    let keys = a.get("/admin/vault", &admin).await;
    assert_eq!(keys.status, 200, "{}", keys.text);
    let usage: Vec<(String, u64)> = keys.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["id"].as_str().unwrap().to_owned(),
                k["attributes"]["credentials"].as_u64().unwrap(),
            )
        })
        .collect();
    let old_key = usage
        .iter()
        .find(|(id, _)| *id != new_key)
        .unwrap()
        .0
        .clone();
    assert!(
        usage.contains(&(new_key.clone(), 2)) && usage.contains(&(old_key.clone(), 0)),
        "{usage:?}"
    );
    let r = a
        .post(
            &format!("/admin/vault/keys/{old_key}/retire"),
            &admin,
            json!({}),
        )
        .await;
    assert!(r.status == 200 || r.status == 204, "{}", r.text);
    for replica in [&a, &b] {
        for id in [&old, &fresh] {
            assert_eq!(replica.vend(&token, id).await.status, 200);
        }
    }
}

/// Three replicas flooding one Stripe account whose budget is 9 requests a second
/// (bursts of 9), each told it is one of three: together they send the provider at
/// most the ceiling, a burst plus the rate over the run. Each alone would allow that
/// much, three times over.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_sharing_a_budget_stay_under_the_provider_ceiling() {
    let Some(database) = postgres::fresh_database().await else {
        return;
    };
    let (fake, addr) = FakeStripe::start().await;
    let plugins = || {
        vec![PluginDecl::new("stripe", "conduit_stripe")
            .allow(&[&addr.to_string()])
            .setting("rate_profile = { requests = 9, per_seconds = 1, burst = 9 }")]
    };
    let env = [
        ("CONDUIT_DATABASE_URL", database),
        ("CONDUIT_REPLICAS", "3".to_owned()),
    ];
    let (a, b, c) = tokio::join!(
        Conduit::start_env(plugins(), &env),
        Conduit::start_env(plugins(), &env),
        Conduit::start_env(plugins(), &env),
    );
    let token = a.tenant("acme-corp").await;
    let connection = sandbox_stripe(&a, &token, addr).await;
    let replicas = Arc::new([a, b, c]);
    let run = Duration::from_secs(2);
    let started = Instant::now();
    let floods: Vec<_> = (0..9)
        .map(|i| {
            let (replicas, token, connection) =
                (replicas.clone(), token.clone(), connection.clone());
            tokio::spawn(async move {
                while started.elapsed() < run {
                    let r = replicas[i % 3]
                        .execute(
                            &token,
                            &connection,
                            "customers.create",
                            json!({"email": "x@example.com"}),
                        )
                        .await;
                    assert!(r.status == 200 || r.status == 429, "{}", r.text);
                }
            })
        })
        .collect();
    for flood in floods {
        flood.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sent = fake
        .received()
        .iter()
        .filter(|r| r.path == "/v1/customers")
        .count();
    let ceiling = 9.0 + 9.0 * elapsed;
    eprintln!("{sent} provider requests in {elapsed:.2} s (ceiling {ceiling:.1})");
    assert!(
        sent as f64 <= ceiling + 1.0,
        "{sent} requests over a ceiling of {ceiling:.1}"
    );
    assert!(sent >= 9, "only {sent} requests reached the provider");
}

/// The root key rotated offline against the database: replicas started with the new
/// key open every credential, and the old key no longer opens the keyring.
#[tokio::test]
async fn the_root_key_rotates_offline_against_the_database() {
    let Some(database) = postgres::fresh_database().await else {
        return;
    };
    let (_fake, addr) = FakeStripe::start().await;
    let env = [("CONDUIT_DATABASE_URL", database.clone())];
    let mut first = Conduit::start_env(stripe(addr), &env).await;
    let token = first.tenant("acme-corp").await;
    let connection = sandbox_stripe(&first, &token, addr).await;
    first.kill();

    let new_key = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(["vault", "rotate-root", "--database", &database])
        .env("CONDUIT_MASTER_KEY", crate::support::MASTER_KEY)
        .env("CONDUIT_NEW_MASTER_KEY", new_key)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let rotated =
        Conduit::start_in_env(&dir.path().join("data"), &stripe(addr), new_key, &env).await;
    let r = rotated.vend(&token, &connection).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["attributes"]["apiKey"], GOOD_KEY);
    let old = tokio::process::Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database", &database])
        .arg("--data-dir")
        .arg(dir.path().join("old"))
        .arg("--plugins")
        .arg(dir.path().join("data.plugins.toml"))
        .env("CONDUIT_MASTER_KEY", crate::support::MASTER_KEY)
        .env("CONDUIT_ADMIN_TOKEN", "admin-old-root")
        .output()
        .await
        .unwrap();
    assert!(
        !old.status.success(),
        "the old root key still opens the keyring"
    );
    let stderr = String::from_utf8_lossy(&old.stderr);
    assert!(
        stderr.contains("does not open this vault's keyring"),
        "{stderr}"
    );
}

/// A replica pointed at a database it cannot reach does not start, and says why
/// without printing the URL's password.
#[tokio::test]
async fn an_unreachable_database_stops_the_start_without_leaking_the_password() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("none.toml"), "").unwrap();
    // A port nothing listens on: the listener is dropped before the start.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--plugins")
        .arg(dir.path().join("none.toml"))
        .env(
            "CONDUIT_DATABASE_URL",
            format!("postgres://conduit:hunter2-secret@127.0.0.1:{port}/conduit"),
        )
        .env("CONDUIT_MASTER_KEY", crate::support::MASTER_KEY)
        .env("CONDUIT_ADMIN_TOKEN", "admin-unreachable")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("connecting to PostgreSQL"), "{printed}");
    assert!(!printed.contains("hunter2"), "{printed}");
}

/// Three replicas serving Gmail on one database, with `extra` environment.
async fn gmail_replicas(
    database: &str,
    addr: std::net::SocketAddr,
    extra: &[(&'static str, String)],
) -> [Conduit; 3] {
    let mut env = extra.to_vec();
    env.push(("CONDUIT_DATABASE_URL", database.to_owned()));
    let env = gmail_env(&env);
    let (a, b, c) = tokio::join!(
        Conduit::start_env(vec![gmail_plugin(addr)], &env),
        Conduit::start_env(vec![gmail_plugin(addr)], &env),
        Conduit::start_env(vec![gmail_plugin(addr)], &env),
    );
    [a, b, c]
}

/// A Gmail connection made on `replica`, holding `refresh` (known to the fake) and an
/// access token expiring `expires_in_ms` from now.
async fn gmail_connection_with(
    replica: &Conduit,
    tenant: &str,
    fake: &FakeGoogle,
    addr: std::net::SocketAddr,
    refresh: &str,
    expires_in_ms: i64,
) -> String {
    let id = replica
        .connection(tenant, gmail_connection(addr, "managed"))
        .await;
    fake.add_refresh_token(refresh);
    replica
        .oauth_tokens(tenant, &id, "ya29.initial", refresh, expires_in_ms)
        .await;
    id
}

/// 100 vends of a credential inside its refresh lead, spread over three replicas:
/// the replica that takes the refresh lease calls the provider, the others wait for
/// the lease and read the token it stored.
#[tokio::test]
async fn concurrent_vends_on_three_replicas_share_one_refresh() {
    let Some(database) = postgres::fresh_database().await else {
        return;
    };
    let (fake, addr) = fake_google::start().await;
    let replicas = Arc::new(gmail_replicas(&database, addr, &[]).await);
    let tenant = replicas[0].tenant("acme").await;
    let id = gmail_connection_with(
        &replicas[0],
        &tenant,
        &fake,
        addr,
        "1//replica-storm",
        60_000,
    )
    .await;
    // A slow token endpoint widens the window in which vends pile up.
    fake.set_token_delay(Duration::from_millis(300));
    let vends: Vec<_> = (0..100)
        .map(|i| {
            let (replicas, tenant, id) = (replicas.clone(), tenant.clone(), id.clone());
            tokio::spawn(async move {
                let r = replicas[i % 3].vend(&tenant, &id).await;
                assert_eq!(r.status, 200, "{}", r.text);
                r.body["data"]["attributes"]["accessToken"].clone()
            })
        })
        .collect();
    let mut tokens = Vec::new();
    for vend in vends {
        tokens.push(vend.await.unwrap());
    }
    assert_eq!(fake.token_requests(), 1, "exactly one token request");
    let first = tokens[0].as_str().unwrap();
    assert_ne!(first, "ya29.initial");
    assert!(
        tokens.iter().all(|t| t == first),
        "every waiter, on every replica, gets the new token"
    );
}

/// A refresh token the fake retires on use (reuse is refused with `invalid_grant`),
/// with the scheduler of all three replicas running every 50 ms and vends on each:
/// over at least 50 refresh cycles, no refresh token is used twice, so the
/// connection never needs re-authorizing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotating_refresh_tokens_survive_three_schedulers_and_vends() {
    let Some(database) = postgres::fresh_database().await else {
        return;
    };
    let (fake, addr) = fake_google::start().await;
    let replicas = Arc::new(
        gmail_replicas(
            &database,
            addr,
            &[
                ("CONDUIT_REFRESH_INTERVAL_MS", "50".into()),
                ("CONDUIT_REFRESH_LEAD_SECS", "7200".into()),
            ],
        )
        .await,
    );
    fake.set_rotate(true);
    fake.set_expires_in(3600);
    let tenant = replicas[0].tenant("acme").await;
    let id = gmail_connection_with(
        &replicas[0],
        &tenant,
        &fake,
        addr,
        "1//rotating-0",
        3_600_000,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let fake = Arc::new(fake);
    let vends: Vec<_> = (0..3)
        .map(|i| {
            let (replicas, fake) = (replicas.clone(), fake.clone());
            let (tenant, id) = (tenant.clone(), id.clone());
            tokio::spawn(async move {
                let mut refused = Vec::new();
                while fake.refresh_requests() < 50 && Instant::now() < deadline {
                    let r = replicas[i].vend(&tenant, &id).await;
                    if r.status != 200 {
                        refused.push(r.text);
                    }
                }
                refused
            })
        })
        .collect();
    for vend in vends {
        let refused = vend.await.unwrap();
        assert!(refused.is_empty(), "vends refused: {refused:?}");
    }
    assert!(
        fake.refresh_requests() >= 50,
        "only {} refresh cycles",
        fake.refresh_requests()
    );
    for replica in replicas.iter() {
        assert_eq!(replica.status(&tenant, &id).await, "ACTIVE");
        assert!(!replica.logs().contains("invalid_grant"));
    }
}

/// kill -9 of the replica holding a refresh lease, mid-refresh: another replica's vend
/// waits for the lease to lapse (1.5 s here), refreshes itself, and the connection
/// keeps working, its credential intact.
#[tokio::test]
async fn a_replica_killed_holding_the_lease_delays_the_refresh_by_at_most_the_lease() {
    let Some(database) = postgres::fresh_database().await else {
        return;
    };
    let (fake, addr) = fake_google::start().await;
    let lease_ms = 1_500;
    let [mut a, b, c] = gmail_replicas(
        &database,
        addr,
        &[("CONDUIT_LEASE_MS", lease_ms.to_string())],
    )
    .await;
    let tenant = a.tenant("acme").await;
    let id = gmail_connection_with(&a, &tenant, &fake, addr, "1//held", 60_000).await;

    // a's refresh hangs at the provider, lease held, until a is killed.
    fake.set_token_delay(Duration::from_secs(30));
    let hung = {
        let (url, tenant) = (
            format!("{}/api/connections/{id}/vend", a.base),
            tenant.clone(),
        );
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(tenant)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
        })
    };
    let asked = Instant::now();
    while fake.token_requests() == 0 {
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "a never refreshed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fake.set_token_delay(Duration::ZERO);
    a.kill();
    let killed = Instant::now();
    assert!(hung.await.unwrap().is_err(), "a died mid-request");

    let r = b.vend(&tenant, &id).await;
    let waited = killed.elapsed();
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.body["data"]["attributes"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(token, "ya29.initial", "b refreshed");
    assert_eq!(fake.token_requests(), 2, "a's lost refresh, then b's");
    assert!(
        waited < Duration::from_millis(lease_ms + 1_500),
        "b waited {waited:?} for a lease of {lease_ms} ms"
    );
    // The refreshed credential is stored: c reads it without another refresh.
    let r = c.vend(&tenant, &id).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["attributes"]["accessToken"], token.as_str());
    assert_eq!(fake.token_requests(), 2);
    assert_eq!(c.status(&tenant, &id).await, "ACTIVE");
}
