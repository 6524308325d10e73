//! Hardening: what is kept at rest is readable by Conduit's user alone.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Every directory and file under `dir` with its permission bits.
fn modes(dir: &Path) -> Vec<(String, bool, u32)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        found.push((
            path.display().to_string(),
            metadata.is_dir(),
            metadata.permissions().mode() & 0o777,
        ));
        if metadata.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    found
}

/// The data directory is created by the test harness with the default mask (0755);
/// once Conduit has run on it, stored credentials included, it and everything in it
/// (sled's files, the master key, the admin token) are the owner's alone.
#[tokio::test]
async fn the_data_directory_is_private_to_its_owner() {
    let (conduit, _fake, token, connection) = crate::stripe::setup().await;
    assert_eq!(conduit.vend(&token, &connection).await.status, 200);

    let found = modes(&conduit.data_dir);
    assert!(
        found.iter().any(|(_, is_dir, _)| !is_dir),
        "no files in {found:?}"
    );
    for (path, is_dir, mode) in found {
        let expected = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode, expected, "{path} is {mode:o}");
    }
}

/// One tenant's burst takes its share of the instance pool, not the pool: with four
/// instances and two per tenant, a tenant holding six slow calls has two running and
/// four refused as `503 busy` (with `Retry-After`) after a brief queue, while another
/// tenant's call runs at once. Without the shares the burst filled the pool and both
/// tenants' next calls failed as `502 plugin_error`.
#[tokio::test]
async fn one_tenants_burst_leaves_room_for_another() {
    use crate::support::{serve_on_loopback, Conduit, PluginDecl};
    use serde_json::json;
    use std::time::Duration;

    let slow = serve_on_loopback(axum::Router::new().route(
        "/slow",
        axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_millis(3000)).await;
            "done"
        }),
    ))
    .await;
    let conduit = Conduit::start_env(
        vec![PluginDecl::new("sandbox-probe", "conduit_sandbox_probe")
            .allow(&[&slow.to_string()])
            .setting("deadline_ms = 8000")],
        &[
            ("CONDUIT_MAX_INSTANCES", "4".into()),
            ("CONDUIT_TENANT_CONCURRENCY", "2".into()),
            ("CONDUIT_QUEUE_MS", "200".into()),
        ],
    )
    .await;
    let mut tenants = Vec::new();
    for id in ["bursty", "quiet"] {
        let token = conduit.tenant(id).await;
        let connection = conduit
            .connection(
                &token,
                json!({"connector": "sandbox-probe", "environment": "sandbox"}),
            )
            .await;
        conduit
            .api_key(&token, &connection, "probe-key-0123456789")
            .await;
        tenants.push((token, connection));
    }
    let [(bursty, bursty_conn), (quiet, quiet_conn)] = &tenants[..] else {
        unreachable!()
    };

    // A blueprint the bursty tenant's config binds its probe connection to: posting
    // the config runs the connection's health check.
    let blueprint = json!({
        "meta": {"name": "probe-app", "version": "1"},
        "integrationSlots": [{"slotId": "probe", "requiredCategory": "testing",
            "requiredCapabilities": [{"key": "probe.echo", "version": 1}], "required": true}],
        "workflows": [], "branding": {}
    });
    let admin = conduit.admin_token.clone();
    let put = conduit
        .put("/admin/blueprints/probe-app/versions/1", &admin, blueprint)
        .await;
    assert_eq!(put.status, 201, "{}", put.text);
    let config = json!({
        "meta": {"blueprintName": "probe-app", "blueprintVersion": "1", "environment": "sandbox"},
        "integrations": [{"slotId": "probe", "connectionId": bursty_conn, "priority": 1}]
    });

    let url = format!("http://{slow}/slow");
    let burst = futures_util::future::join_all(
        (0..6).map(|_| conduit.execute(bursty, bursty_conn, "probe.fetch", json!({"url": url}))),
    );
    let during = async {
        // Once the burst holds its share and its overflow waits in the queue.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let quiet = conduit
            .execute(quiet, quiet_conn, "probe.echo", json!({"ping": 1}))
            .await;
        // The bursty tenant's health checks and config validation spend from the
        // same share: they wait, then are busy, neither failed nor unhealthy.
        let health = conduit
            .post(
                &format!("/api/connections/{bursty_conn}/health"),
                bursty,
                json!({}),
            )
            .await;
        let validated = conduit
            .post("/api/tenant-configs", bursty, config.clone())
            .await;
        (quiet, health, validated)
    };
    let (burst, (quiet_answer, health, validated)) = tokio::join!(burst, during);
    health.assert_error(503, "busy");
    validated.assert_error(503, "busy");

    assert_eq!(quiet_answer.status, 200, "{}", quiet_answer.text);
    assert_eq!(quiet_answer.output(), &json!({"ping": 1}));
    let ran = burst.iter().filter(|r| r.status == 200).count();
    assert_eq!(
        ran,
        2,
        "{:?}",
        burst.iter().map(|r| &r.text).collect::<Vec<_>>()
    );
    for refused in burst.iter().filter(|r| r.status != 200) {
        refused.assert_error(503, "busy");
        assert_eq!(refused.headers["retry-after"], "1", "{}", refused.text);
    }
    // The shares were given back: the bursty tenant runs again.
    let again = conduit
        .execute(bursty, bursty_conn, "probe.echo", json!({"ping": 2}))
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    let validated = conduit.post("/api/tenant-configs", bursty, config).await;
    assert_eq!(validated.status, 201, "{}", validated.text);
}

/// Each kind of object a tenant's API calls create without bound has a per-tenant
/// limit, refused as `422 limit_exceeded` naming the setting; other tenants are not
/// affected, and deleting one makes room again.
#[tokio::test]
async fn per_tenant_object_limits_refuse_the_one_too_many() {
    use crate::binding::World;
    use serde_json::json;

    let w = World::start_with(
        &[],
        &[
            // World makes six connections for its tenant.
            ("CONDUIT_MAX_CONNECTIONS_PER_TENANT", "7".into()),
            ("CONDUIT_MAX_DRAFTS_PER_TENANT", "2".into()),
            ("CONDUIT_MAX_OAUTH_STATES_PER_TENANT", "2".into()),
        ],
    )
    .await;
    let c = &w.conduit;
    let stripe = json!({"connector": "stripe", "environment": "sandbox"});

    // Connections.
    let seventh = c.connection(&w.token, stripe.clone()).await;
    let refused = c
        .post(
            "/api/connections",
            &w.token,
            crate::support::doc("connections", stripe.clone()),
        )
        .await;
    refused.assert_error(422, "limit_exceeded");
    assert!(
        refused.text.contains("CONDUIT_MAX_CONNECTIONS_PER_TENANT"),
        "{}",
        refused.text
    );
    let other = c.tenant("globex").await;
    c.connection(&other, stripe.clone()).await;
    assert_eq!(
        c.delete(&format!("/api/connections/{seventh}"), &w.token)
            .await
            .status,
        204
    );
    c.connection(&w.token, stripe.clone()).await;

    // Unpublished config versions; a discarded one makes room.
    w.put_blueprint().await;
    let bindings = w.production_bindings();
    let mut drafts = Vec::new();
    for _ in 0..2 {
        let r = w.post_config("production", bindings.clone()).await;
        assert_eq!(r.status, 201, "{}", r.text);
        drafts.push(
            r.body["data"]["attributes"]["meta"]["version"]
                .as_u64()
                .unwrap(),
        );
    }
    w.post_config("production", bindings.clone())
        .await
        .assert_error(422, "limit_exceeded");
    let discard = format!(
        "/api/tenant-configs/invoice-app/production/versions/{}",
        drafts[0]
    );
    assert_eq!(c.delete(&discard, &w.token).await.status, 204);
    c.get(&discard, &w.token)
        .await
        .assert_error(404, "not_found");
    assert_eq!(
        w.post_config("production", bindings.clone()).await.status,
        201
    );
    // A published version cannot be discarded.
    let second = format!(
        "/api/tenant-configs/invoice-app/production/versions/{}",
        drafts[1]
    );
    assert_eq!(c.delete(&second, &w.token).await.status, 204);
    let published = w.publish("production", bindings).await;
    let path = format!("/api/tenant-configs/invoice-app/production/versions/{published}");
    c.delete(&path, &w.token)
        .await
        .assert_error(409, "invalid_transition");

    // Pending OAuth authorizations; one completed (or expired) makes room.
    let (gmail, redirect) = (&w.conn.gmail, "https://app.example.com/done");
    let authorize = format!("/api/connections/{gmail}/oauth/authorize?redirectUri={redirect}");
    let mut states = Vec::new();
    for _ in 0..2 {
        states.push(c.consent(&w.token, gmail, redirect).await.1);
    }
    c.get(&authorize, &w.token)
        .await
        .assert_error(422, "limit_exceeded");
    // Taking a state (here: a callback the provider denied) frees its place.
    let denied = c
        .call(
            reqwest::Method::GET,
            &format!("/oauth/callback?error=access_denied&state={}", states[0]),
            None,
            None,
        )
        .await;
    denied.assert_error(400, "oauth_denied");
    c.consent(&w.token, gmail, redirect).await;
}
