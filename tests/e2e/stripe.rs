//! Stripe end to end: tenant → connection → credential → every capability, against a
//! fake Stripe that checks the wire format.

use crate::support::fake_stripe::{FakeStripe, GOOD_KEY};
use crate::support::{doc, Conduit, PluginDecl};
use serde_json::json;

/// Conduit with the Stripe connector, a tenant and a connection holding a good key.
/// A sandbox `byok` Stripe connection of `token`'s tenant to the fake on `addr`,
/// holding the fake's good key.
pub(crate) async fn byok_connection(
    conduit: &Conduit,
    token: &str,
    addr: std::net::SocketAddr,
) -> String {
    let connection = conduit
        .connection(
            token,
            json!({"connector": "stripe", "environment": "sandbox", "ownershipMode": "byok",
                   "config": {"baseUrl": format!("http://{addr}")}}),
        )
        .await;
    conduit.api_key(token, &connection, GOOD_KEY).await;
    connection
}

pub(crate) async fn setup() -> (Conduit, FakeStripe, String, String) {
    let (fake, addr) = FakeStripe::start().await;
    let conduit = Conduit::start(vec![
        PluginDecl::new("stripe", "conduit_stripe").allow(&[&addr.to_string()])
    ])
    .await;
    let token = conduit.tenant("acme-corp").await;
    let connection = conduit
        .connection(
            &token,
            json!({
                "connector": "stripe", "label": "Stripe test", "environment": "sandbox",
                "ownershipMode": "byok", "externalAccountId": "acct_1FakeConnect",
                "config": {"baseUrl": format!("http://{addr}")}
            }),
        )
        .await;
    conduit.api_key(&token, &connection, GOOD_KEY).await;
    (conduit, fake, token, connection)
}

#[tokio::test]
async fn every_stripe_capability_end_to_end() {
    let (conduit, fake, token, connection) = setup().await;

    let r = conduit
        .post(
            &format!("/api/connections/{connection}/capabilities/payments.createPaymentIntent/execute"),
            &token,
            doc("executions", json!({
                "input": {"amount": 2000, "currency": "usd", "metadata": {"order": "42"}, "paymentMethodTypes": ["card"], "captureMethod": "manual"},
                "idempotencyKey": "order-42-attempt-1"
            })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let attrs = &r.body["data"]["attributes"];
    assert_eq!(r.body["data"]["type"], "executions");
    assert_eq!(attrs["connectionId"], connection.as_str());
    assert_eq!(attrs["integrationKey"], "payments.stripe");
    assert!(attrs["durationMs"].is_u64());
    let intent = r.output().clone();
    let intent_id = intent["id"].as_str().unwrap().to_owned();
    assert!(intent_id.starts_with("pi_"));
    assert_eq!(intent["amount"], 2000);
    assert_eq!(intent["currency"], "usd");
    assert_eq!(intent["status"], "requires_payment_method");
    assert_eq!(intent["clientSecret"], format!("{intent_id}_secret_fake"));

    // What Stripe received: form encoding with bracketed keys and Stripe's headers.
    let sent = fake
        .received()
        .into_iter()
        .find(|r| r.path == "/v1/payment_intents")
        .unwrap();
    assert_eq!(sent.method, "POST");
    assert_eq!(
        sent.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {GOOD_KEY}").as_str())
    );
    // The caller's key, namespaced by its tenant (never the raw key: see
    // `tenants_sharing_a_stripe_account_do_not_replay_each_other`).
    let key = sent.header("idempotency-key").expect("an idempotency key");
    assert!(
        key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "{key}"
    );
    assert_eq!(sent.header("stripe-account"), Some("acct_1FakeConnect"));
    assert_eq!(sent.field("amount"), Some("2000"));
    assert_eq!(sent.field("currency"), Some("usd"));
    assert_eq!(sent.field("metadata[order]"), Some("42"));
    assert_eq!(sent.field("payment_method_types[0]"), Some("card"));
    assert_eq!(sent.field("capture_method"), Some("manual"));
    assert_eq!(
        sent.field("customer"),
        None,
        "absent optional fields are not sent"
    );

    let r = conduit
        .execute(
            &token,
            &connection,
            "payments.retrievePaymentIntent",
            json!({"id": intent_id}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.output()["id"], intent_id.as_str());
    assert_eq!(r.output()["amount"], 2000);

    let r = conduit
        .execute(
            &token,
            &connection,
            "payments.createRefund",
            json!({"paymentIntent": intent_id, "amount": 500, "reason": "requested_by_customer"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.output()["id"].as_str().unwrap().starts_with("re_"));
    assert_eq!(r.output()["amount"], 500);
    assert_eq!(r.output()["paymentIntent"], intent_id.as_str());
    assert_eq!(r.output()["status"], "succeeded");
    let refund = fake
        .received()
        .into_iter()
        .find(|r| r.path == "/v1/refunds")
        .unwrap();
    assert_eq!(refund.field("payment_intent"), Some(intent_id.as_str()));
    assert_eq!(refund.field("reason"), Some("requested_by_customer"));

    let r = conduit
        .execute(
            &token,
            &connection,
            "customers.create",
            json!({"email": "ada@example.com", "name": "Ada"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.output()["id"].as_str().unwrap().starts_with("cus_"));
    assert_eq!(r.output()["email"], "ada@example.com");

    let r = conduit
        .post(
            &format!("/api/connections/{connection}/health"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["healthy"], true);
    assert!(fake.received().iter().any(|r| r.path == "/v1/balance"));

    assert_no_secret_anywhere(&conduit, &token, GOOD_KEY).await;
}

#[tokio::test]
async fn declined_card_is_a_provider_error_with_stripes_code() {
    let (conduit, _fake, token, connection) = setup().await;
    let r = conduit
        .execute(
            &token,
            &connection,
            "payments.createPaymentIntent",
            json!({"amount": 1500, "currency": "eur", "paymentMethod": "pm_card_visa_chargeDeclined", "confirm": true}),
        )
        .await;
    r.assert_error(502, "provider_error");
    let meta = &r.body["errors"][0]["meta"];
    assert_eq!(meta["providerStatus"], 402);
    assert_eq!(meta["providerCode"], "card_declined");
    assert_eq!(meta["retryable"], false);
    assert!(r.body["errors"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("Your card was declined."));

    // Stripe's own 404 for a missing object is a provider error too.
    let r = conduit
        .execute(
            &token,
            &connection,
            "payments.retrievePaymentIntent",
            json!({"id": "pi_missing"}),
        )
        .await;
    r.assert_error(502, "provider_error");
    assert_eq!(
        r.body["errors"][0]["meta"]["providerCode"],
        "resource_missing"
    );
}

#[tokio::test]
async fn invalid_input_is_refused_before_stripe_is_called() {
    let (conduit, fake, token, connection) = setup().await;
    let cases = [
        (
            "payments.createPaymentIntent",
            json!({"amount": 0, "currency": "usd"}),
            "/amount",
        ),
        (
            "payments.createPaymentIntent",
            json!({"amount": 100, "currency": "USD"}),
            "/currency",
        ),
        (
            "payments.createPaymentIntent",
            json!({"amount": "100", "currency": "usd"}),
            "/amount",
        ),
        (
            "payments.createPaymentIntent",
            json!({"amount": 100, "currency": "usd", "metadata": {"n": 1}}),
            "/metadata/n",
        ),
        ("payments.createRefund", json!({"amount": 5}), "/"),
        (
            "payments.createRefund",
            json!({"paymentIntent": "pi_1", "reason": "bored"}),
            "/reason",
        ),
        ("customers.create", json!({"name": "no email"}), "/"),
    ];
    for (capability, input, path) in cases {
        let r = conduit
            .execute(&token, &connection, capability, input.clone())
            .await;
        r.assert_error(422, "invalid_input");
        assert_eq!(
            r.body["errors"][0]["meta"]["path"], path,
            "{capability} {input}"
        );
    }
    // An id that would change the request path is refused by the connector itself.
    let r = conduit
        .execute(
            &token,
            &connection,
            "payments.retrievePaymentIntent",
            json!({"id": "../v1/balance"}),
        )
        .await;
    r.assert_error(422, "invalid_input");
    let r = conduit
        .execute(&token, &connection, "payments.teleport", json!({}))
        .await;
    r.assert_error(422, "unsupported_capability");
    let r = conduit
        .execute(
            &token,
            &connection,
            "payments.createPaymentIntent",
            json!([1, 2]),
        )
        .await;
    r.assert_error(422, "invalid_input");
    assert!(
        fake.received().is_empty(),
        "no request may reach Stripe: {:?}",
        fake.received()
    );
}

#[tokio::test]
async fn another_tenants_connection_is_not_found() {
    let (conduit, _fake, _token, connection) = setup().await;
    let intruder = conduit.tenant("intruder").await;
    conduit
        .get(&format!("/api/connections/{connection}"), &intruder)
        .await
        .assert_error(404, "not_found");
    conduit
        .execute(
            &intruder,
            &connection,
            "payments.createPaymentIntent",
            json!({"amount": 100, "currency": "usd"}),
        )
        .await
        .assert_error(404, "not_found");
    conduit
        .vend(&intruder, &connection)
        .await
        .assert_error(404, "not_found");
    conduit
        .put(
            &format!("/api/connections/{connection}/credential"),
            &intruder,
            doc(
                "credentials",
                json!({"kind": "api_key", "apiKey": "sk_test_hijack"}),
            ),
        )
        .await
        .assert_error(404, "not_found");
    let r = conduit
        .call(
            reqwest::Method::DELETE,
            &format!("/api/connections/{connection}"),
            Some(&intruder),
            None,
        )
        .await;
    r.assert_error(404, "not_found");
    let missing = conduit
        .get("/api/connections/conn_doesnotexist", &intruder)
        .await;
    assert_eq!(
        missing.text,
        conduit
            .get(&format!("/api/connections/{connection}"), &intruder)
            .await
            .text,
        "foreign and missing answer alike"
    );
    let listed = conduit.get("/api/connections", &intruder).await;
    assert_eq!(listed.body["data"], json!([]));
    let audit = conduit.get("/api/audit", &intruder).await;
    assert!(audit.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["attributes"]["tenantId"] == "intruder"));
}

#[tokio::test]
async fn a_rejected_key_flips_the_connection_until_a_new_key_arrives() {
    let (conduit, _fake, token, connection) = setup().await;
    conduit
        .api_key(&token, &connection, "sk_test_revoked_key_0000000000")
        .await;
    let r = conduit
        .execute(
            &token,
            &connection,
            "customers.create",
            json!({"email": "a@b.co"}),
        )
        .await;
    r.assert_error(409, "needs_reauth");
    assert!(!r.text.contains("sk_test_revoked_key_0000000000"));
    let c = conduit
        .get(&format!("/api/connections/{connection}"), &token)
        .await;
    assert_eq!(c.body["data"]["attributes"]["status"], "NEEDS_REAUTH");
    conduit
        .vend(&token, &connection)
        .await
        .assert_error(409, "needs_reauth");
    conduit
        .execute(
            &token,
            &connection,
            "customers.create",
            json!({"email": "a@b.co"}),
        )
        .await
        .assert_error(409, "needs_reauth");

    conduit.api_key(&token, &connection, GOOD_KEY).await;
    let c = conduit
        .get(&format!("/api/connections/{connection}"), &token)
        .await;
    assert_eq!(c.body["data"]["attributes"]["status"], "ACTIVE");
    let r = conduit
        .execute(
            &token,
            &connection,
            "customers.create",
            json!({"email": "a@b.co"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_no_secret_anywhere(&conduit, &token, "sk_test_revoked_key_0000000000").await;
}

#[tokio::test]
async fn vend_returns_the_sealed_key_to_its_owner_only() {
    let (conduit, _fake, token, connection) = setup().await;
    let r = conduit.vend(&token, &connection).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["type"], "secrets");
    assert_eq!(r.body["data"]["attributes"]["apiKey"], GOOD_KEY);
    // The key is sealed on disk: the raw sled files never contain it.
    let mut found = false;
    for entry in walk(&conduit.data_dir) {
        let bytes = std::fs::read(&entry).unwrap();
        found |= bytes
            .windows(GOOD_KEY.len())
            .any(|w| w == GOOD_KEY.as_bytes());
    }
    assert!(
        !found,
        "the API key is stored in plaintext somewhere under the data dir"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The secret never appears in a response (other than vend), an audit record or a log line.
async fn assert_no_secret_anywhere(conduit: &Conduit, token: &str, secret: &str) {
    let audit = conduit.get("/api/audit?limit=1000", token).await;
    assert_eq!(audit.status, 200);
    let records = audit.body["data"].as_array().unwrap();
    assert!(!records.is_empty(), "executions are audited");
    assert!(records
        .iter()
        .all(|r| r["type"] == "auditRecords" && r["attributes"]["outcome"].is_string()));
    for body in conduit.bodies() {
        if body.contains("\"type\":\"secrets\"") {
            continue;
        }
        assert!(
            !body.contains(secret),
            "a response contains the secret: {body}"
        );
    }
    let logs = conduit.logs();
    assert!(logs.contains("connector loaded"), "logs are captured");
    assert!(!logs.contains(secret), "a log line contains the secret");
}

#[tokio::test]
async fn audit_records_each_execution_with_outbound_calls() {
    let (conduit, _fake, token, connection) = setup().await;
    conduit
        .execute(
            &token,
            &connection,
            "customers.create",
            json!({"email": "a@b.co"}),
        )
        .await;
    conduit
        .execute(
            &token,
            &connection,
            "payments.createPaymentIntent",
            json!({"amount": 0, "currency": "usd"}),
        )
        .await;
    let r = conduit
        .get(&format!("/api/audit?connectionId={connection}"), &token)
        .await;
    let records = r.body["data"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    let (newest, oldest) = (&records[0]["attributes"], &records[1]["attributes"]);
    assert_eq!(newest["capability"], "payments.createPaymentIntent");
    assert_eq!(newest["outcome"], "invalid_input");
    assert_eq!(newest["outbound"], json!([]));
    assert_eq!(oldest["capability"], "customers.create");
    assert_eq!(oldest["outcome"], "ok");
    assert_eq!(oldest["connector"], "stripe");
    assert_eq!(oldest["connectorVersion"], 1);
    assert_eq!(oldest["outbound"][0]["method"], "POST");
    assert_eq!(oldest["outbound"][0]["status"], 200);
    assert!(oldest["outbound"][0]["url"]
        .as_str()
        .unwrap()
        .ends_with("/v1/customers"));
    let r = conduit.get("/api/audit?limit=abc", &token).await;
    r.assert_error(400, "invalid_query");
}

/// Two tenants whose connections share one Stripe account send the same idempotency
/// key: Stripe replays a key's first result to anyone on the account, so each tenant
/// must reach Stripe under its own key, and get its own payment intent.
#[tokio::test]
async fn tenants_sharing_a_stripe_account_do_not_replay_each_other() {
    let (fake, addr) = FakeStripe::start().await;
    let conduit = Conduit::start(vec![
        PluginDecl::new("stripe", "conduit_stripe").allow(&[&addr.to_string()])
    ])
    .await;
    let mut intents = Vec::new();
    for (tenant, amount) in [("tenant-a", 1000), ("tenant-b", 9900)] {
        let token = conduit.tenant(tenant).await;
        let connection = byok_connection(&conduit, &token, addr).await;
        let r = conduit
            .post(
                &format!("/api/connections/{connection}/capabilities/payments.createPaymentIntent/execute"),
                &token,
                doc("executions", json!({"input": {"amount": amount, "currency": "usd"}, "idempotencyKey": "order-1"})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        intents.push(r.output().clone());
    }
    let keys: Vec<_> = fake
        .received()
        .iter()
        .filter(|r| r.path == "/v1/payment_intents")
        .map(|r| r.header("idempotency-key").unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 2);
    assert_ne!(keys[0], keys[1], "two tenants reached Stripe under one key");
    assert!(keys.iter().all(|k| k != "order-1"));
    // Tenant B got its own intent, not tenant A's replayed.
    assert_ne!(intents[1]["id"], intents[0]["id"]);
    assert_eq!(intents[1]["amount"], 9900);
}
