//! The HTTP contract: authentication, JSON:API refusals and typed errors for bad input.

use crate::support::fake_stripe::GOOD_KEY;
use crate::support::{doc, Conduit, PluginDecl};
use reqwest::Method;
use serde_json::json;

async fn conduit() -> Conduit {
    Conduit::start(vec![PluginDecl::new("stripe", "conduit_stripe")]).await
}

#[tokio::test]
async fn public_routes_and_catalog() {
    let conduit = conduit().await;
    let r = conduit.call(Method::GET, "/healthz", None, None).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("ok")));

    let r = conduit
        .call(Method::GET, "/api/openapi.json", None, None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["openapi"].as_str().map(|v| v.starts_with("3.")),
        Some(true)
    );
    for path in [
        "/admin/tenants",
        "/api/connections/{id}/capabilities/{capabilityKey}/execute",
        "/api/connections/{id}/credential",
        "/api/audit",
    ] {
        assert!(
            r.body["paths"][path].is_object(),
            "{path} missing from OpenAPI"
        );
    }
    assert!(
        r.body["paths"]["/api/connections"]["get"].is_object()
            && r.body["paths"]["/api/connections"]["post"].is_object()
    );

    let token = conduit.tenant("acme-corp").await;
    let r = conduit.get("/api/connectors", &token).await;
    assert_eq!(r.status, 200);
    let stripe = &r.body["data"][0];
    assert_eq!(stripe["type"], "connectors");
    assert_eq!(stripe["id"], "stripe");
    let a = &stripe["attributes"];
    assert_eq!(a["integrationKey"], "payments.stripe");
    assert_eq!(a["category"], "payments");
    assert_eq!(a["authType"], "api_key");
    assert_eq!(a["allowedHosts"], json!(["api.stripe.com"]));
    assert_eq!(a["ownershipModes"], json!(["managed", "byok"]));
    let keys: Vec<&str> = a["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "payments.createPaymentIntent",
            "payments.retrievePaymentIntent",
            "payments.createRefund",
            "customers.create"
        ]
    );
    assert!(a["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["version"] == 1));

    let r = conduit.get("/api/plugins", &token).await;
    assert_eq!(
        r.body["data"][0]["attributes"]["wasmSha256"]
            .as_str()
            .map(str::len),
        Some(64)
    );
}

#[tokio::test]
async fn authentication_is_required_and_scoped() {
    let conduit = conduit().await;
    let token = conduit.tenant("acme-corp").await;
    conduit
        .call(Method::GET, "/api/connections", None, None)
        .await
        .assert_error(401, "unauthorized");
    conduit
        .get("/api/connections", "ct_not-a-real-token")
        .await
        .assert_error(401, "unauthorized");
    let r = conduit
        .call(Method::GET, "/api/connections", Some(""), None)
        .await;
    r.assert_error(401, "unauthorized");
    conduit
        .post(
            "/admin/tenants",
            &token,
            doc("tenants", json!({"id": "sneaky"})),
        )
        .await
        .assert_error(403, "forbidden");
    conduit
        .get("/api/connections", &conduit.admin_token.clone())
        .await
        .assert_error(403, "forbidden");
    conduit
        .call(
            Method::POST,
            "/admin/tenants",
            None,
            Some(doc("tenants", json!({"id": "x"}))),
        )
        .await
        .assert_error(401, "unauthorized");
}

#[tokio::test]
async fn bad_input_gets_typed_errors() {
    let conduit = conduit().await;
    let admin = conduit.admin_token.clone();
    let token = conduit.tenant("acme-corp").await;

    // Tenants.
    conduit
        .post(
            "/admin/tenants",
            &admin,
            doc("tenants", json!({"id": "acme-corp"})),
        )
        .await
        .assert_error(409, "tenant_exists");
    conduit
        .post(
            "/admin/tenants",
            &admin,
            doc("tenants", json!({"id": "Bad Id"})),
        )
        .await
        .assert_error(422, "invalid_tenant_id");
    conduit
        .post(
            "/admin/tenants",
            &admin,
            doc("tenants", json!({"name": "x"})),
        )
        .await
        .assert_error(422, "invalid_attributes");

    // Documents.
    let raw = |body: &str, content_type: &str| {
        let request = reqwest::Client::new()
            .post(format!("{}/api/connections", conduit.base))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body.to_owned());
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value =
                serde_json::from_str(&response.text().await.unwrap()).unwrap();
            (
                status,
                body["errors"][0]["code"].as_str().unwrap_or("").to_owned(),
            )
        }
    };
    assert_eq!(
        raw("{not json", "application/json").await,
        (400, "invalid_document".into())
    );
    assert_eq!(
        raw("{\"data\": 5}", "application/json").await,
        (400, "invalid_document".into())
    );
    assert_eq!(
        raw("{}", "text/plain").await,
        (415, "unsupported_media_type".into())
    );
    let huge = format!(
        "{{\"data\":{{\"type\":\"connections\",\"attributes\":{{\"label\":\"{}\"}}}}}}",
        "x".repeat(3 << 20)
    );
    assert_eq!(
        raw(&huge, "application/json").await,
        (413, "payload_too_large".into())
    );
    conduit
        .post("/api/connections", &token, doc("tenants", json!({})))
        .await
        .assert_error(409, "type_mismatch");

    // Connections.
    let create =
        |attributes| conduit.post("/api/connections", &token, doc("connections", attributes));
    create(json!({"connector": "paypal", "environment": "sandbox"}))
        .await
        .assert_error(422, "unknown_connector");
    create(json!({"connector": "stripe", "environment": "staging"}))
        .await
        .assert_error(422, "invalid_attributes");
    create(json!({"connector": "stripe"}))
        .await
        .assert_error(422, "invalid_attributes");
    create(json!({"connector": "stripe", "environment": "sandbox", "config": "baseUrl"}))
        .await
        .assert_error(422, "invalid_attributes");
    create(json!({"connector": "stripe", "environment": "sandbox", "ownershipMode": "borrowed"}))
        .await
        .assert_error(422, "invalid_attributes");
    create(json!({"connector": "stripe", "environment": "sandbox", "externalAccountId": ""}))
        .await
        .assert_error(422, "invalid_attributes");
    conduit
        .get("/api/connections/conn_missing", &token)
        .await
        .assert_error(404, "not_found");

    let connection = conduit
        .connection(
            &token,
            json!({"connector": "stripe", "environment": "production"}),
        )
        .await;
    let r = conduit
        .get(&format!("/api/connections/{connection}"), &token)
        .await;
    let a = &r.body["data"]["attributes"];
    assert_eq!(a["status"], "ACTIVE");
    assert_eq!(
        a["ownershipMode"], "managed",
        "defaults to the connector's first mode"
    );
    assert_eq!(a["label"], "Stripe");
    assert_eq!(a["secretRef"], format!("vault://connections/{connection}"));
    assert_eq!(a["tenantId"], "acme-corp");
    assert_eq!(a["integrationVersion"], 1);

    // Credentials.
    let credential_path = format!("/api/connections/{connection}/credential");
    let credential =
        |attributes| conduit.put(&credential_path, &token, doc("credentials", attributes));
    credential(json!({"kind": "api_key"}))
        .await
        .assert_error(422, "invalid_attributes");
    credential(json!({"kind": "api_key", "apiKey": ""}))
        .await
        .assert_error(422, "invalid_attributes");
    credential(json!({"kind": "oauth2", "accessToken": "ya29.x"}))
        .await
        .assert_error(422, "credential_kind_mismatch");
    credential(json!({"kind": "api_key", "apiKey": GOOD_KEY, "expiresAt": "tomorrow"}))
        .await
        .assert_error(422, "invalid_attributes");
    let r = credential(json!({"kind": "api_key", "apiKey": 12345})).await;
    r.assert_error(422, "invalid_attributes");
    let r = credential(json!({"kind": "api_key", "apiKey": GOOD_KEY, "expiresAt": GOOD_KEY})).await;
    r.assert_error(422, "invalid_attributes");
    assert!(
        !r.text.contains(GOOD_KEY),
        "an error echoed the secret: {}",
        r.text
    );
    let r = credential(json!({"kind": "api_key", "apiKey": {"nested": GOOD_KEY}})).await;
    r.assert_error(422, "invalid_attributes");
    assert!(
        !r.text.contains(GOOD_KEY),
        "an error echoed the secret: {}",
        r.text
    );

    // Vend and execute without a credential.
    conduit
        .vend(&token, &connection)
        .await
        .assert_error(409, "no_credential");
    conduit
        .execute(
            &token,
            &connection,
            "customers.create",
            json!({"email": "a@b.co"}),
        )
        .await
        .assert_error(409, "no_credential");

    let r = credential(json!({"kind": "api_key", "apiKey": GOOD_KEY})).await;
    assert_eq!(r.status, 200);
    let a = &r.body["data"]["attributes"];
    assert_eq!(a["secretRef"], format!("vault://connections/{connection}"));
    assert_eq!(a["version"], 1);
    assert!(a["keyId"].as_str().unwrap().starts_with("kek_"));
    assert!(!r.text.contains(GOOD_KEY));

    // Executions.
    let execute_path =
        format!("/api/connections/{connection}/capabilities/customers.create/execute");
    let execute = |attributes| conduit.post(&execute_path, &token, doc("executions", attributes));
    execute(json!({}))
        .await
        .assert_error(422, "invalid_attributes");
    execute(json!({"input": {"email": "a@b.co"}, "idempotencyKey": ""}))
        .await
        .assert_error(422, "invalid_attributes");
    execute(json!({"input": "email"}))
        .await
        .assert_error(422, "invalid_input");

    // Unknown routes and methods.
    conduit
        .get("/api/nothing-here", &token)
        .await
        .assert_error(404, "not_found");
    conduit
        .call(Method::PATCH, "/api/connections", Some(&token), None)
        .await
        .assert_error(405, "method_not_allowed");

    // Delete removes the connection and its credential.
    let r = conduit
        .call(
            Method::DELETE,
            &format!("/api/connections/{connection}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    conduit
        .get(&format!("/api/connections/{connection}"), &token)
        .await
        .assert_error(404, "not_found");
    conduit
        .vend(&token, &connection)
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn a_wrong_master_key_refuses_to_start_and_the_right_one_reopens_everything() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let plugins = [PluginDecl::new("stripe", "conduit_stripe")];
    let connection;
    let token;
    {
        let conduit = Conduit::start_in(&data, &plugins, crate::support::MASTER_KEY).await;
        token = conduit.tenant("acme-corp").await;
        connection = conduit
            .connection(
                &token,
                json!({"connector": "stripe", "environment": "sandbox"}),
            )
            .await;
        conduit.api_key(&token, &connection, GOOD_KEY).await;
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(["serve", "--listen", "127.0.0.1:0", "--plugins", "/dev/null"])
        .arg("--data-dir")
        .arg(&data)
        .env(
            "CONDUIT_MASTER_KEY",
            "ZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=",
        )
        .env("CONDUIT_ADMIN_TOKEN", "x")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("master key does not open"), "{stderr}");

    let conduit = Conduit::start_in(&data, &plugins, crate::support::MASTER_KEY).await;
    let r = conduit.vend(&token, &connection).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["attributes"]["apiKey"], GOOD_KEY);
}

#[tokio::test]
async fn requests_carry_an_id_and_any_case_of_the_bearer_scheme_authenticates() {
    let conduit = conduit().await;
    let token = conduit.tenant("acme-corp").await;
    let http = reqwest::Client::new();
    let minted = http
        .get(format!("{}/api/connectors", conduit.base))
        .header("authorization", format!("bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        minted.status(),
        200,
        "RFC 7235: the scheme is case-insensitive"
    );
    let id = minted.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let kept = http
        .get(format!("{}/api/nowhere", conduit.base))
        .header("x-request-id", "client-chosen-42")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.status(), 404);
    assert_eq!(kept.headers()["x-request-id"], "client-chosen-42");
    let refused = http
        .get(format!("{}/api/connectors", conduit.base))
        .header("authorization", format!("Basic {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}
