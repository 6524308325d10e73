//! Kill -9 in the middle of an audit batch, of config publications and of a key
//! rotation: after a restart every credential opens, a publication is all or nothing,
//! and every audit record reads back whole.

use crate::support::fake_stripe::{FakeStripe, GOOD_KEY};
use crate::support::{Conduit, PluginDecl, MASTER_KEY};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

struct Crashable {
    conduit: Conduit,
    plugins: Vec<PluginDecl>,
    data_dir: PathBuf,
    token: String,
    _fake: FakeStripe,
    fake_addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Crashable {
    async fn start() -> Self {
        let (fake, fake_addr) = FakeStripe::start().await;
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let plugins =
            vec![PluginDecl::new("stripe", "conduit_stripe").allow(&[&fake_addr.to_string()])];
        let conduit = Conduit::start_in(&data_dir, &plugins, MASTER_KEY).await;
        let token = conduit.tenant("acme").await;
        Crashable {
            conduit,
            plugins,
            data_dir,
            token,
            _fake: fake,
            fake_addr,
            _dir: dir,
        }
    }

    async fn stripe_connection(&self) -> String {
        crate::stripe::byok_connection(&self.conduit, &self.token, self.fake_addr).await
    }

    /// SIGKILL, then a restart on the same data directory.
    async fn crash_and_restart(&mut self) {
        self.conduit.kill();
        self.conduit = Conduit::start_in(&self.data_dir, &self.plugins, MASTER_KEY).await;
    }
}

/// Requests in a loop on `tasks` tasks until the server dies under them.
fn hammer(
    tasks: usize,
    request: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync + Clone + 'static,
) -> Vec<tokio::task::JoinHandle<usize>> {
    (0..tasks)
        .map(|_| {
            let request = request.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut sent = 0;
                while request(&client).send().await.is_ok() {
                    sent += 1;
                }
                sent
            })
        })
        .collect()
}

#[tokio::test]
async fn kill_9_while_audit_batches_are_written_leaves_every_record_whole() {
    let mut c = Crashable::start().await;
    let connection = c.stripe_connection().await;
    let url = format!(
        "{}/api/connections/{connection}/capabilities/payments.createPaymentIntent/execute",
        c.conduit.base
    );
    let token = c.token.clone();
    let executing = hammer(8, move |client| {
        client
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(r#"{"data":{"type":"executions","attributes":{"input":{"amount":100,"currency":"usd"}}}}"#)
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.crash_and_restart().await;
    let mut sent = 0;
    for task in executing {
        sent += task.await.unwrap();
    }
    assert!(sent > 20, "only {sent} executions before the kill");

    // Every record the restarted server holds decodes whole, page after page.
    let mut cursor: Option<String> = None;
    let mut records = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/audit?limit=200&cursor={c}"),
            None => "/api/audit?limit=200".to_owned(),
        };
        let page = c.conduit.get(&path, &c.token).await;
        assert_eq!(page.status, 200, "{}", page.text);
        for record in page.body["data"].as_array().unwrap() {
            let attributes = &record["attributes"];
            assert_eq!(attributes["capability"], "payments.createPaymentIntent");
            assert!(attributes["outcome"].is_string(), "{record}");
            records += 1;
        }
        cursor = page.body["meta"]["nextCursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    assert!(
        records > 0 && records <= sent + 8,
        "{records} records of {sent} calls"
    );
}

fn blueprint() -> Value {
    json!({
        "meta": {"name": "pay-app", "version": "1", "appId": "app_pay"},
        "integrationSlots": [
            {"slotId": "payments.primary", "requiredCategory": "payments", "allowedModes": ["byok"],
             "requiredCapabilities": [{"key": "payments.createPaymentIntent", "version": 1}], "required": true}
        ],
        "workflows": [{"id": "checkout", "name": "Checkout"}],
        "branding": {}
    })
}

#[tokio::test]
async fn kill_9_during_publications_leaves_exactly_one_published_version() {
    let mut c = Crashable::start().await;
    let admin = c.conduit.admin_token.clone();
    let put = c
        .conduit
        .put("/admin/blueprints/pay-app/versions/1", &admin, blueprint())
        .await;
    assert_eq!(put.status, 201, "{}", put.text);
    let connection = c.stripe_connection().await;
    let mut versions = Vec::new();
    for _ in 0..6 {
        let r = c
            .conduit
            .post(
                "/api/tenant-configs",
                &c.token,
                json!({
                    "meta": {"blueprintName": "pay-app", "blueprintVersion": "1", "environment": "sandbox"},
                    "integrations": [{"slotId": "payments.primary", "connectionId": connection, "priority": 1}]
                }),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        versions.push(
            r.body["data"]["attributes"]["meta"]["version"]
                .as_u64()
                .unwrap(),
        );
    }
    // Publications back and forth among the versions, until the kill.
    let (base, token) = (c.conduit.base.clone(), c.token.clone());
    let publishing = hammer(3, move |client| {
        let version = versions[rand_index(versions.len())];
        client
            .post(format!(
                "{base}/api/tenant-configs/pay-app/sandbox/versions/{version}/publish"
            ))
            .bearer_auth(&token)
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.crash_and_restart().await;
    let mut published = 0;
    for task in publishing {
        published += task.await.unwrap();
    }
    assert!(
        published > 3,
        "only {published} publications before the kill"
    );

    let list = c.conduit.get("/api/tenant-configs", &c.token).await;
    assert_eq!(list.status, 200, "{}", list.text);
    let statuses: Vec<String> = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v["attributes"]["meta"]["status"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    // Publications had been answered, so one is in force; never two, never half.
    let live = statuses.iter().filter(|s| *s == "published").count();
    assert_eq!(live, 1, "{statuses:?}");
    assert!(statuses
        .iter()
        .all(|s| s == "published" || s == "archived" || s == "draft"));
    let resolved = c
        .conduit
        .get("/api/apps/pay-app/resolved?environment=sandbox", &c.token)
        .await;
    assert_eq!(resolved.status, 200, "{}", resolved.text);
    assert!(resolved.text.contains(&connection), "{}", resolved.text);
}

fn rand_index(n: usize) -> usize {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize
        % n
}

#[tokio::test]
async fn kill_9_during_a_key_rotation_leaves_every_credential_opening() {
    let mut c = Crashable::start().await;
    let mut connections = Vec::new();
    for _ in 0..150 {
        connections.push(c.stripe_connection().await);
    }
    let admin = c.conduit.admin_token.clone();
    let rotate = {
        let (base, admin) = (c.conduit.base.clone(), admin.clone());
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{base}/admin/vault/rotate"))
                .bearer_auth(&admin)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    tokio::time::sleep(Duration::from_millis(40)).await;
    c.crash_and_restart().await;
    let _ = rotate.await.unwrap();
    // Each start mints its own admin token.
    let admin = c.conduit.admin_token.clone();
    // The rotation had begun (its new key is the first thing it stores).
    let keys = c.conduit.get("/admin/vault", &admin).await;
    assert_eq!(
        keys.body["data"].as_array().unwrap().len(),
        2,
        "{}",
        keys.text
    );

    for id in &connections {
        let r = c.conduit.vend(&c.token, id).await;
        assert_eq!(r.status, 200, "{id}: {}", r.text);
        assert_eq!(r.body["data"]["attributes"]["apiKey"], GOOD_KEY);
    }
    // A rotation after the restart finishes the job; then the old keys retire.
    let keys_before = c.conduit.get("/admin/vault", &admin).await;
    let rotated = c
        .conduit
        .call(
            reqwest::Method::POST,
            "/admin/vault/rotate",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let keys = c.conduit.get("/admin/vault", &admin).await;
    for key in keys.body["data"].as_array().unwrap() {
        if key["attributes"]["primary"] == false {
            let id = key["id"].as_str().unwrap();
            let retired = c
                .conduit
                .call(
                    reqwest::Method::POST,
                    &format!("/admin/vault/keys/{id}/retire"),
                    Some(&admin),
                    None,
                )
                .await;
            assert_eq!(
                retired.status, 200,
                "{id}: {} (before: {})",
                retired.text, keys_before.text
            );
        }
    }
    let r = c.conduit.vend(&c.token, &connections[0]).await;
    assert_eq!(r.status, 200, "{}", r.text);
}
