//! The token lifecycle end to end, with the Gmail connector against a fake Google:
//! refresh on read, single flight, rotating refresh tokens under the scheduler and
//! concurrent vends, NEEDS_REAUTH with a signed webhook, backoff on 503, key rotation
//! while vends run, and a kill -9 in the middle of a refresh storm.

use crate::support::fake_google::{self, FakeGoogle};
use crate::support::webhook::WebhookReceiver;
use crate::support::{doc, gmail_connection, gmail_env, gmail_plugin, Conduit, MASTER_KEY};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const HOUR_MS: i64 = 3_600_000;

struct Setup {
    conduit: Conduit,
    fake: FakeGoogle,
    addr: SocketAddr,
    tenant: String,
}

async fn setup(env: &[(&'static str, String)]) -> Setup {
    let (fake, addr) = fake_google::start().await;
    let conduit = Conduit::start_env(vec![gmail_plugin(addr)], &gmail_env(env)).await;
    let tenant = conduit.tenant("acme").await;
    Setup {
        conduit,
        fake,
        addr,
        tenant,
    }
}

impl Setup {
    /// A Gmail connection holding `refresh` (known to the fake) and an access token
    /// expiring `expires_in_ms` from now.
    async fn connection(&self, refresh: &str, expires_in_ms: i64) -> String {
        let id = self
            .conduit
            .connection(&self.tenant, gmail_connection(self.addr, "managed"))
            .await;
        self.fake.add_refresh_token(refresh);
        self.conduit
            .oauth_tokens(&self.tenant, &id, "ya29.initial", refresh, expires_in_ms)
            .await;
        id
    }

    async fn vend(&self, id: &str) -> Value {
        let r = self.conduit.vend(&self.tenant, id).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["data"]["attributes"].clone()
    }
}

async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_warm_vend_calls_no_provider_and_a_vend_inside_the_lead_refreshes_once() {
    let s = setup(&[]).await;
    let warm = s.connection("1//refresh-warm", HOUR_MS).await;
    let secret = s.vend(&warm).await;
    assert_eq!(secret["accessToken"], "ya29.initial");
    assert_eq!(s.fake.token_requests(), 0, "a warm vend calls no provider");

    // Five minutes left: inside the default ten-minute lead.
    let due = s.connection("1//refresh-due", 5 * 60_000).await;
    let fresh = s.vend(&due).await;
    let access = fresh["accessToken"].as_str().unwrap().to_owned();
    assert_ne!(access, "ya29.initial");
    assert!(s.fake.valid_access_tokens().contains(&access));
    assert_eq!(s.fake.refresh_requests(), 1);
    let again = s.vend(&due).await;
    assert_eq!(again["accessToken"], access.as_str());
    assert_eq!(s.fake.refresh_requests(), 1, "the refreshed token is warm");

    let form = s
        .fake
        .received()
        .into_iter()
        .find(|r| r.path == "/token")
        .unwrap();
    assert_eq!(form.field("grant_type"), Some("refresh_token"));
    assert_eq!(form.field("refresh_token"), Some("1//refresh-due"));
    assert_eq!(form.field("client_id"), Some(fake_google::CLIENT_ID));
    assert_eq!(
        form.field("client_secret"),
        Some(fake_google::CLIENT_SECRET)
    );

    // The refresh is audited without its secrets.
    let audit = s
        .conduit
        .get(&format!("/api/audit?connectionId={due}"), &s.tenant)
        .await;
    let records = audit.body["data"].as_array().unwrap();
    assert!(records
        .iter()
        .any(|r| r["attributes"]["capability"] == "oauth.refresh"
            && r["attributes"]["outcome"] == "ok"));
    assert!(!audit.text.contains("1//refresh-due"));
    assert!(!audit.text.contains(fake_google::CLIENT_SECRET));
    let logs = s.conduit.logs();
    for secret in [
        fake_google::CLIENT_SECRET,
        "1//refresh-due",
        access.as_str(),
    ] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_vends_share_one_refresh() {
    let s = Arc::new(setup(&[]).await);
    let id = s.connection("1//refresh-storm", 60_000).await;
    // A slow token endpoint widens the window in which vends pile up.
    s.fake.set_token_delay(Duration::from_millis(300));
    let vends: Vec<_> = (0..200)
        .map(|_| {
            let (s, id) = (s.clone(), id.clone());
            tokio::spawn(async move { s.vend(&id).await["accessToken"].clone() })
        })
        .collect();
    let mut tokens = Vec::new();
    for vend in vends {
        tokens.push(vend.await.unwrap());
    }
    assert_eq!(s.fake.token_requests(), 1, "exactly one token request");
    let first = tokens[0].as_str().unwrap();
    assert_ne!(first, "ya29.initial");
    assert!(
        tokens.iter().all(|t| t == first),
        "every waiter gets the new token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotating_refresh_tokens_survive_the_scheduler_and_concurrent_vends() {
    // Every issued token is inside the lead at once, so both the scheduler (every
    // 20 ms) and each vend want to refresh: all of them must go through one flight.
    let s = Arc::new(
        setup(&[
            ("CONDUIT_REFRESH_INTERVAL_MS", "20".into()),
            ("CONDUIT_REFRESH_LEAD_SECS", "7200".into()),
        ])
        .await,
    );
    s.fake.set_rotate(true);
    s.fake.set_expires_in(3600);
    let id = s.connection("1//rotating-0", HOUR_MS).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let vends: Vec<_> = (0..4)
        .map(|_| {
            let (s, id) = (s.clone(), id.clone());
            tokio::spawn(async move {
                let mut refused = Vec::new();
                while s.fake.refresh_requests() < 50 && Instant::now() < deadline {
                    let r = s.conduit.vend(&s.tenant, &id).await;
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
        s.fake.refresh_requests() >= 50,
        "only {} refresh cycles",
        s.fake.refresh_requests()
    );
    assert_eq!(s.conduit.status(&s.tenant, &id).await, "ACTIVE");
    // Once tokens outlive the lead, refreshing stops, and the stored refresh token is
    // the one live at the provider.
    s.fake.set_expires_in(4 * 3600);
    s.vend(&id).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let settled = s.fake.refresh_requests();
    let vended = s.vend(&id).await;
    assert_eq!(
        s.fake.refresh_requests(),
        settled,
        "a fresh token is not refreshed"
    );
    let live = s.fake.live_refresh_tokens();
    assert!(
        live.contains(&vended["refreshToken"].as_str().unwrap().to_owned()),
        "stored refresh token {} is not live ({live:?})",
        vended["refreshToken"]
    );
    assert!(!s.conduit.logs().contains("invalid_grant"));
}

/// A receiver's check of `X-Conduit-Signature: t=<unix>,v1=<hex>`, as the README shows
/// it: the HMAC-SHA256 of `t.body`, sent within the last five minutes.
fn verify(secret: &str, body: &[u8], signature: &str) -> bool {
    let parts: Option<(&str, &str)> = signature
        .split_once(',')
        .and_then(|(t, v1)| Some((t.strip_prefix("t=")?, v1.strip_prefix("v1=")?)));
    let Some((t, v1)) = parts else { return false };
    let Ok(sent) = t.parse::<u64>() else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now.abs_diff(sent) > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes()) == v1
}

/// A webhook the receiver has not accepted yet is in the store, not in memory: after
/// a kill -9 the restarted server delivers it (signed, once accepted, exactly that
/// event). Before the outbox, the retry lived in a task and died with the process.
#[tokio::test]
async fn a_webhook_waiting_for_a_retry_survives_a_kill() {
    let (receiver, hook) = WebhookReceiver::start(usize::MAX).await;
    let secret = "whsec-test-0123456789";
    let env = [
        ("CONDUIT_WEBHOOK_URL", format!("http://{hook}/hooks")),
        ("CONDUIT_WEBHOOK_SECRET", secret.to_owned()),
    ];
    let mut s = setup(&env).await;
    let id = s.connection("1//refresh-dead", 60_000).await;
    s.fake.set_token_failure(Some(400));
    s.conduit
        .vend(&s.tenant, &id)
        .await
        .assert_error(409, "needs_reauth");
    eventually("a refused delivery", Duration::from_secs(10), || {
        receiver.attempts() >= 1
    })
    .await;
    s.conduit.kill();
    assert!(receiver.deliveries().is_empty());

    receiver.accept_all();
    let data_dir = s.conduit.data_dir.clone();
    let _restarted = Conduit::start_in_env(
        &data_dir,
        &[gmail_plugin(s.addr)],
        MASTER_KEY,
        &gmail_env(&env),
    )
    .await;
    eventually(
        "the delivery after the restart",
        Duration::from_secs(10),
        || !receiver.deliveries().is_empty(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let deliveries = receiver.deliveries();
    assert_eq!(deliveries.len(), 1, "delivered once accepted");
    let event = deliveries[0].json();
    assert_eq!(event["type"], "connection.needs_reauth");
    assert_eq!(event["connectionId"], id.as_str());
    assert!(verify(
        secret,
        &deliveries[0].body,
        deliveries[0].signature.as_deref().unwrap()
    ));
}

#[tokio::test]
async fn invalid_grant_flips_to_needs_reauth_and_sends_one_signed_webhook() {
    // The receiver refuses the first delivery: the notifier must retry.
    let (receiver, hook) = WebhookReceiver::start(1).await;
    let secret = "whsec-test-0123456789";
    let s = setup(&[
        ("CONDUIT_WEBHOOK_URL", format!("http://{hook}/hooks")),
        ("CONDUIT_WEBHOOK_SECRET", secret.into()),
        ("CONDUIT_REFRESH_INTERVAL_MS", "50".into()),
    ])
    .await;
    let id = s.connection("1//refresh-dead", 60_000).await;
    s.fake.set_token_failure(Some(400));

    let r = s.conduit.vend(&s.tenant, &id).await;
    r.assert_error(409, "needs_reauth");
    assert_eq!(s.conduit.status(&s.tenant, &id).await, "NEEDS_REAUTH");
    s.conduit
        .vend(&s.tenant, &id)
        .await
        .assert_error(409, "needs_reauth");
    // Capabilities refuse too, without calling the provider.
    let before = s.fake.received().len();
    s.conduit
        .execute(&s.tenant, &id, "email.listMessages", json!({}))
        .await
        .assert_error(409, "needs_reauth");
    assert_eq!(s.fake.received().len(), before);

    eventually("the webhook", Duration::from_secs(10), || {
        !receiver.deliveries().is_empty()
    })
    .await;
    // Let the scheduler run a few passes: it must neither refresh nor notify again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let deliveries = receiver.deliveries();
    assert_eq!(deliveries.len(), 1, "one event, delivered once");
    assert_eq!(receiver.attempts(), 2, "the refused delivery was retried");
    assert_eq!(s.fake.refresh_requests(), 1, "a dead token is not retried");
    let delivery = &deliveries[0];
    assert!(verify(
        secret,
        &delivery.body,
        delivery.signature.as_deref().unwrap()
    ));
    assert!(!verify(
        "another-secret",
        &delivery.body,
        delivery.signature.as_deref().unwrap()
    ));
    // The timestamp is signed: a replay re-dated (by a second, inside the window) fails.
    let (t, v1) = delivery
        .signature
        .as_deref()
        .unwrap()
        .split_once(',')
        .unwrap();
    let later: u64 = t.trim_start_matches("t=").parse::<u64>().unwrap() + 1;
    assert!(!verify(secret, &delivery.body, &format!("t={later},{v1}")));
    let event = delivery.json();
    assert_eq!(event["type"], "connection.needs_reauth");
    assert_eq!(event["connectionId"], id.as_str());
    assert_eq!(event["tenantId"], "acme");
    assert_eq!(event["connector"], "gmail");
    assert!(event["reason"].as_str().unwrap().contains("invalid_grant"));
    assert!(event["time"].as_str().unwrap().ends_with('Z'));

    // A new credential brings it back, and says so.
    s.fake.set_token_failure(None);
    s.conduit
        .oauth_tokens(
            &s.tenant,
            &id,
            "ya29.reconnected",
            "1//refresh-new",
            HOUR_MS,
        )
        .await;
    assert_eq!(s.conduit.status(&s.tenant, &id).await, "ACTIVE");
    assert_eq!(s.vend(&id).await["accessToken"], "ya29.reconnected");
    eventually("the recovery webhook", Duration::from_secs(10), || {
        receiver.deliveries().len() == 2
    })
    .await;
    let recovered = receiver.deliveries()[1].clone();
    assert_eq!(recovered.json()["type"], "connection.recovered");
    assert!(verify(
        secret,
        &recovered.body,
        recovered.signature.as_deref().unwrap()
    ));
    assert!(!s.conduit.logs().contains(secret));
}

#[tokio::test]
async fn a_503_from_the_token_endpoint_keeps_the_connection_active_and_backs_off() {
    let s = setup(&[
        ("CONDUIT_REFRESH_INTERVAL_MS", "50".into()),
        ("CONDUIT_REFRESH_BACKOFF_MS", "1000".into()),
    ])
    .await;
    let id = s.connection("1//refresh-flaky", 5 * 60_000).await;
    s.fake.set_token_failure(Some(503));
    // Five minutes of validity left: the vend hands out the current token, and vends
    // during the backoff do not call the failing provider again.
    for _ in 0..20 {
        assert_eq!(s.vend(&id).await["accessToken"], "ya29.initial");
    }
    assert_eq!(s.fake.refresh_requests(), 1, "vends respect the backoff");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let attempts = s.fake.refresh_requests();
    // Without backoff the 50 ms scheduler would have tried ~50 times. With a 1 s base
    // (equal jitter): the vend, then at most two more attempts in 2.5 s.
    assert!((2..=4).contains(&attempts), "{attempts} refresh attempts");
    assert_eq!(s.conduit.status(&s.tenant, &id).await, "ACTIVE");

    // Once the provider is back, the scheduler renews it on its next attempt.
    s.fake.set_token_failure(None);
    let renewed = Instant::now();
    loop {
        let secret = s.vend(&id).await;
        if secret["accessToken"] != "ya29.initial" {
            break;
        }
        assert!(renewed.elapsed() < Duration::from_secs(10), "never renewed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.conduit.status(&s.tenant, &id).await, "ACTIVE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_rotation_while_vends_run_fails_no_vend() {
    let s = Arc::new(setup(&[]).await);
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(s.connection(&format!("1//refresh-{i}"), HOUR_MS).await);
    }
    let admin = s.conduit.admin_token.clone();
    let keys = s.conduit.get("/admin/vault", &admin).await;
    assert_eq!(keys.status, 200, "{}", keys.body);
    let old_key = keys.body["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(keys.body["data"][0]["attributes"]["credentials"], 20);

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let vends: Vec<_> = ids
        .iter()
        .map(|id| {
            let (s, id, stop) = (s.clone(), id.clone(), stop.clone());
            tokio::spawn(async move {
                let mut served = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    assert_eq!(s.vend(&id).await["accessToken"], "ya29.initial");
                    served += 1;
                }
                served
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rotated = s
        .conduit
        .call(
            reqwest::Method::POST,
            "/admin/vault/rotate",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    assert_eq!(rotated.body["data"]["attributes"]["rewrapped"], 20);
    let new_key = rotated.body["data"]["attributes"]["primaryKeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    // A second rotation through the CLI, against the running server.
    let cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(["vault", "rotate", "--url", &s.conduit.base])
        .env("CONDUIT_ADMIN_TOKEN", &admin)
        .output()
        .await
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let cli_answer: Value = serde_json::from_slice(&cli.stdout).unwrap();
    let newest = cli_answer["data"]["attributes"]["primaryKeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for vend in vends {
        assert!(vend.await.expect("no vend failed") > 0);
    }

    let keys = s.conduit.get("/admin/vault", &admin).await;
    let usage: Vec<(String, bool, u64)> = keys.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["id"].as_str().unwrap().to_owned(),
                k["attributes"]["primary"].as_bool().unwrap(),
                k["attributes"]["credentials"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(usage.contains(&(old_key.clone(), false, 0)), "{usage:?}");
    assert!(usage.contains(&(new_key.clone(), false, 0)), "{usage:?}");
    assert!(usage.contains(&(newest.clone(), true, 20)), "{usage:?}");

    let retire = |key: String| {
        let (s, admin) = (s.clone(), admin.clone());
        async move {
            s.conduit
                .call(
                    reqwest::Method::POST,
                    &format!("/admin/vault/keys/{key}/retire"),
                    Some(&admin),
                    None,
                )
                .await
        }
    };
    retire(newest.clone())
        .await
        .assert_error(409, "key_is_primary");
    retire("kek_000000000000".into())
        .await
        .assert_error(404, "not_found");
    assert_eq!(retire(old_key.clone()).await.status, 200);
    assert_eq!(retire(new_key).await.status, 200);
    retire(old_key).await.assert_error(404, "not_found");
    // Tenants cannot touch the keys.
    s.conduit
        .get("/admin/vault", &s.tenant)
        .await
        .assert_error(403, "forbidden");
    for id in &ids {
        assert_eq!(s.vend(id).await["accessToken"], "ya29.initial");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_a_refresh_storm_loses_no_credential() {
    let (fake, addr) = fake_google::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let env = gmail_env(&[
        ("CONDUIT_REFRESH_INTERVAL_MS", "20".into()),
        ("CONDUIT_REFRESH_LEAD_SECS", "7200".into()),
    ]);
    let plugins = [gmail_plugin(addr)];
    let mut conduit = Conduit::start_in_env(&data_dir, &plugins, MASTER_KEY, &env).await;
    let tenant = conduit.tenant("acme").await;
    // Tokens issued by the fake stay inside the two-hour lead: a storm of refreshes.
    fake.set_expires_in(3600);
    fake.set_token_delay(Duration::from_millis(5));
    let mut ids = Vec::new();
    for i in 0..30 {
        let id = conduit
            .connection(&tenant, gmail_connection(addr, "managed"))
            .await;
        fake.add_refresh_token(&format!("1//storm-{i}"));
        conduit
            .oauth_tokens(
                &tenant,
                &id,
                "ya29.initial",
                &format!("1//storm-{i}"),
                HOUR_MS,
            )
            .await;
        ids.push(id);
    }
    let conduit_base = conduit.base.clone();
    let client = reqwest::Client::new();
    let vends: Vec<_> = ids
        .iter()
        .map(|id| {
            let (client, url, tenant) = (
                client.clone(),
                format!("{conduit_base}/api/connections/{id}/vend"),
                tenant.clone(),
            );
            tokio::spawn(async move {
                // Until the process dies under it.
                while client
                    .post(&url)
                    .bearer_auth(&tenant)
                    .header("content-type", "application/json")
                    .body("{}")
                    .send()
                    .await
                    .is_ok()
                {}
            })
        })
        .collect();
    let storm = Instant::now();
    while fake.refresh_requests() < 200 {
        assert!(storm.elapsed() < Duration::from_secs(60), "no storm");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    conduit.kill(); // SIGKILL: no graceful shutdown, no final flush.
    for vend in vends {
        vend.await.unwrap();
    }

    let conduit = Conduit::start_in_env(&data_dir, &plugins, MASTER_KEY, &env).await;
    fake.set_expires_in(fake_google::DEFAULT_EXPIRES_IN);
    for id in &ids {
        assert_eq!(conduit.status(&tenant, id).await, "ACTIVE", "{id} flipped");
        let r = conduit.vend(&tenant, id).await;
        assert_eq!(r.status, 200, "{id}: {}", r.body);
        let access = r.body["data"]["attributes"]["accessToken"]
            .as_str()
            .unwrap();
        assert!(
            access == "ya29.initial" || fake.valid_access_tokens().contains(&access.to_owned()),
            "{id}: vended a token the provider never issued"
        );
    }
    // And the credentials still work against the provider.
    let r = conduit
        .execute(&tenant, &ids[0], "email.listMessages", json!({"limit": 1}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn bad_credentials_and_foreign_connections_are_refused() {
    let s = setup(&[]).await;
    let id = s.connection("1//refresh-own", HOUR_MS).await;
    let other = s.conduit.tenant("globex").await;
    s.conduit
        .vend(&other, &id)
        .await
        .assert_error(404, "not_found");
    // An oauth2 credential needs an access token; expiresAt must be RFC 3339.
    let path = format!("/api/connections/{id}/credential");
    for attributes in [
        json!({"kind": "oauth2", "refreshToken": "1//x"}),
        json!({"kind": "oauth2", "accessToken": "a", "expiresAt": "tomorrow"}),
        json!({"kind": "oauth2", "accessToken": "a", "expiresAt": 12}),
    ] {
        let r = s
            .conduit
            .put(&path, &s.tenant, doc("credentials", attributes))
            .await;
        assert!(
            r.status == 422 || r.status == 400,
            "{}: {}",
            r.status,
            r.body
        );
    }
    assert_eq!(s.vend(&id).await["accessToken"], "ya29.initial");
}
