//! Blueprint and tenant-config validation: every refusal has its own code, and nothing
//! refused is stored.

use crate::binding::{invoice_app, World};
use crate::support::fake_stripe::GOOD_KEY as STRIPE_KEY;
use serde_json::{json, Value};

/// A blueprint whose slots each exercise one rule.
fn strict_app() -> Value {
    json!({
        "meta": {"name": "strict-app", "version": "1.0.0", "appId": "app_strict"},
        "integrationSlots": [
            {"slotId": "pay", "requiredCategory": "payments", "allowedModes": ["managed"],
             "requiredCapabilities": [{"key": "payments.createPaymentIntent", "version": 1}], "required": true},
            {"slotId": "mail-v2", "requiredCategory": "email",
             "requiredCapabilities": [{"key": "email.send", "version": 2}], "required": false},
            {"slotId": "vectors", "requiredCategory": "knowledge", "required": false}
        ],
        "workflows": [],
        "branding": {}
    })
}

/// A blueprint in the seed's shape: `workflows` is an object keyed by workflow id.
const SEED_BLUEPRINT: &str = include_str!("../fixtures/seed/blueprint.json");

#[tokio::test]
async fn a_blueprint_with_workflows_keyed_by_id_is_accepted() {
    let w = World::start().await;
    let admin = w.conduit.admin_token.clone();
    let seed: Value = serde_json::from_str(SEED_BLUEPRINT).unwrap();
    let path = "/admin/blueprints/invoice-app/versions/2";
    let r = w.conduit.put(path, &admin, seed.clone()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = w
        .conduit
        .get("/api/blueprints/invoice-app/versions/2", &w.token)
        .await;
    assert_eq!(r.body["data"]["attributes"]["workflows"], seed["workflows"]);
    // A workflow that is not an object is still a mistake.
    let mut wrong = seed;
    wrong["meta"]["version"] = json!("3");
    wrong["workflows"]["checkout"] = json!("invoice.checkout");
    w.conduit
        .put("/admin/blueprints/invoice-app/versions/3", &admin, wrong)
        .await
        .assert_error(422, "invalid_blueprint");
}

#[tokio::test]
async fn blueprints_are_validated_and_immutable() {
    let w = World::start().await;
    let admin = w.conduit.admin_token.clone();
    let path = "/admin/blueprints/invoice-app/versions/1";
    // As a JSON:API document too.
    let r = w
        .conduit
        .put(
            path,
            &admin,
            json!({"data": {"type": "blueprints", "attributes": invoice_app()}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["data"]["id"], "invoice-app:1");
    // The same document again is a no-op; a different one is refused.
    assert_eq!(w.conduit.put(path, &admin, invoice_app()).await.status, 200);
    let mut changed = invoice_app();
    changed["integrationSlots"][0]["required"] = json!(false);
    w.conduit
        .put(path, &admin, changed)
        .await
        .assert_error(409, "blueprint_immutable");
    let r = w
        .conduit
        .get("/api/blueprints/invoice-app/versions/1", &w.token)
        .await;
    assert_eq!(
        r.body["data"]["attributes"]["integrationSlots"][0]["required"],
        true
    );

    // The path and meta must agree; slots must be well formed.
    w.conduit
        .put(
            "/admin/blueprints/invoice-app/versions/2",
            &admin,
            invoice_app(),
        )
        .await
        .assert_error(422, "blueprint_mismatch");
    let mut twice = strict_app();
    twice["integrationSlots"][1]["slotId"] = json!("pay");
    w.conduit
        .put("/admin/blueprints/strict-app/versions/1.0.0", &admin, twice)
        .await
        .assert_error(422, "invalid_blueprint");
    let mut bad_cap = strict_app();
    bad_cap["integrationSlots"][0]["requiredCapabilities"][0]["version"] = json!(0);
    w.conduit
        .put(
            "/admin/blueprints/strict-app/versions/1.0.0",
            &admin,
            bad_cap,
        )
        .await
        .assert_error(422, "invalid_blueprint");
    w.conduit
        .put("/admin/blueprints/strict-app/versions/1.0.0", &admin, json!({"meta": {"name": "strict-app", "version": "1.0.0"}, "integrationSlots": [{"slotId": "x", "requiredCategory": "payments", "allowedModes": ["shared"]}]}))
        .await
        .assert_error(422, "invalid_blueprint");
    w.conduit
        .put("/admin/blueprints/strict-app/versions/1.0.0", &admin, json!({"meta": {"name": "strict-app", "version": "1.0.0"}, "integrationSlots": [], "unknown": 1}))
        .await
        .assert_error(422, "invalid_blueprint");
    w.conduit
        .put(
            "/admin/blueprints/strict-app/versions/1.0.0",
            &admin,
            json!({"data": {"type": "tenants", "attributes": strict_app()}}),
        )
        .await
        .assert_error(409, "type_mismatch");
    // Only the admin puts blueprints.
    w.conduit
        .put(
            "/admin/blueprints/strict-app/versions/1.0.0",
            &w.token,
            strict_app(),
        )
        .await
        .assert_error(403, "forbidden");
    w.conduit
        .get("/api/blueprints/strict-app/versions/1.0.0", &w.token)
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn every_config_refusal_has_its_code() {
    let w = World::start().await;
    let admin = w.conduit.admin_token.clone();
    let r = w
        .conduit
        .put(
            "/admin/blueprints/strict-app/versions/1.0.0",
            &admin,
            strict_app(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let c = &w.conn;
    // A managed Stripe production connection that satisfies `pay`.
    let managed = w
        .conduit
        .connection(&w.token, json!({"connector": "stripe", "environment": "production", "ownershipMode": "managed", "externalAccountId": "acct_managed", "config": w.conduit_stripe_config()}))
        .await;
    w.conduit.api_key(&w.token, &managed, STRIPE_KEY).await;
    let post = |integrations: Value| {
        let conduit = &w.conduit;
        let token = w.token.clone();
        async move {
            conduit
                .post(
                    "/api/tenant-configs",
                    &token,
                    json!({"meta": {"blueprintName": "strict-app", "blueprintVersion": "1.0.0", "environment": "production"}, "integrations": integrations}),
                )
                .await
        }
    };
    let pay = json!({"slotId": "pay", "connectionId": managed});
    let with = |binding: Value| json!([pay.clone(), binding]);

    // Unknown blueprint.
    let r = w
        .conduit
        .post("/api/tenant-configs", &w.token, json!({"meta": {"blueprintName": "nope", "blueprintVersion": "1", "environment": "production"}, "integrations": []}))
        .await;
    r.assert_error(422, "unknown_blueprint");
    // Unknown slot.
    post(with(
        json!({"slotId": "nope", "connectionId": c.postmark_prod}),
    ))
    .await
    .assert_error(422, "unknown_slot");
    // Another tenant's connection is answered exactly as a missing one.
    let globex = w.conduit.tenant("globex").await;
    let foreign = w
        .conduit
        .connection(
            &globex,
            json!({"connector": "stripe", "environment": "production", "ownershipMode": "managed"}),
        )
        .await;
    let r_foreign = post(json!([{"slotId": "pay", "connectionId": foreign}])).await;
    r_foreign.assert_error(422, "unknown_connection");
    let r_missing = post(json!([{"slotId": "pay", "connectionId": "conn_does_not_exist"}])).await;
    r_missing.assert_error(422, "unknown_connection");
    assert_eq!(
        r_foreign.text.replace(&foreign, "ID"),
        r_missing.text.replace("conn_does_not_exist", "ID")
    );
    // A sandbox connection in a production config.
    post(with(
        json!({"slotId": "mail-v2", "connectionId": c.postmark_sandbox}),
    ))
    .await
    .assert_error(422, "environment_mismatch");
    // A Postmark connection in a payments slot.
    post(json!([{"slotId": "pay", "connectionId": c.postmark_prod}]))
        .await
        .assert_error(422, "category_mismatch");
    // A byok connection in a managed-only slot.
    post(json!([{"slotId": "pay", "connectionId": c.stripe_prod}]))
        .await
        .assert_error(422, "ownership_mode_not_allowed");
    // Postmark provides email.send@1, the slot needs @2.
    let r = post(with(
        json!({"slotId": "mail-v2", "connectionId": c.postmark_prod}),
    ))
    .await;
    r.assert_error(422, "capability_missing");
    assert_eq!(r.body["errors"][0]["meta"]["pointer"], "/integrations/1");
    // The required slot left unbound.
    post(json!([{"slotId": "vectors", "connectionId": c.qdrant}]))
        .await
        .assert_error(422, "required_slot_unbound");
    // Bad scope patterns, secrets in config, the same binding twice.
    post(
        json!([{"slotId": "pay", "connectionId": managed, "scope": {"workflows": ["[unclosed"]}}]),
    )
    .await
    .assert_error(422, "invalid_scope");
    let r = post(json!([{"slotId": "pay", "connectionId": managed, "config": {"apiKey": "sk_live_should_never_be_here_123"}}])).await;
    r.assert_error(422, "secret_in_config");
    assert!(!r.text.contains("sk_live_should_never_be_here_123"));
    post(json!([pay.clone(), pay.clone()]))
        .await
        .assert_error(422, "duplicate_binding");
    // Shapes: unknown fields, another tenant named in meta.
    post(json!([{"slotId": "pay", "connectionId": managed, "weight": 3}]))
        .await
        .assert_error(422, "invalid_config");
    w.conduit
        .post("/api/tenant-configs", &w.token, json!({"meta": {"tenantId": "globex", "blueprintName": "strict-app", "blueprintVersion": "1.0.0", "environment": "production"}, "integrations": [pay.clone()]}))
        .await
        .assert_error(422, "tenant_mismatch");
    // The connector's health check fails.
    w.qdrant.set_failure(Some(503));
    post(with(json!({"slotId": "vectors", "connectionId": c.qdrant})))
        .await
        .assert_error(422, "health_check_failed");
    w.qdrant.set_failure(None);
    // A connection that is not ACTIVE: Stripe rejected its key.
    let rejected = w
        .conduit
        .connection(&w.token, json!({"connector": "stripe", "environment": "production", "ownershipMode": "managed", "config": w.conduit_stripe_config()}))
        .await;
    w.conduit
        .api_key(&w.token, &rejected, "sk_test_revoked_key_0000000000")
        .await;
    let r = w
        .conduit
        .post(
            &format!("/api/connections/{rejected}/capabilities/customers.create/execute"),
            &w.token,
            crate::support::doc("executions", json!({"input": {"email": "a@example.com"}})),
        )
        .await;
    r.assert_error(409, "needs_reauth");
    post(json!([{"slotId": "pay", "connectionId": rejected}]))
        .await
        .assert_error(422, "connection_not_active");
    // A credential-less connection fails its health check.
    let empty = w
        .conduit
        .connection(&w.token, json!({"connector": "stripe", "environment": "production", "ownershipMode": "managed", "config": w.conduit_stripe_config()}))
        .await;
    post(json!([{"slotId": "pay", "connectionId": empty}]))
        .await
        .assert_error(422, "health_check_failed");

    // Nothing refused was stored; the valid config is version 1.
    assert_eq!(
        w.conduit.get("/api/tenant-configs", &w.token).await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let r = post(with(json!({"slotId": "vectors", "connectionId": c.qdrant, "priority": 3, "config": {"collection": "invoices"}}))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["data"]["attributes"]["meta"]["version"], 1);
    assert_eq!(
        r.body["data"]["attributes"]["meta"]["tenantId"],
        "acme-corp"
    );
    // The same document as a JSON:API resource is the next version.
    let r = w
        .conduit
        .post(
            "/api/tenant-configs",
            &w.token,
            json!({"data": {"type": "tenantConfigs", "attributes": {
                "meta": {"blueprintName": "strict-app", "blueprintVersion": "1.0.0", "environment": "production"},
                "integrations": [pay.clone()]}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["data"]["attributes"]["meta"]["version"], 2);
    assert_eq!(r.body["data"]["id"], "strict-app:production:2");

    // Publication validates again: the connection broke since the draft.
    w.conduit
        .api_key(&w.token, &managed, "sk_test_revoked_key_0000000000")
        .await;
    w.conduit
        .post(
            &format!("/api/connections/{managed}/health"),
            &w.token,
            json!({}),
        )
        .await;
    let r = w
        .conduit
        .post(
            "/api/tenant-configs/strict-app/production/versions/1/publish",
            &w.token,
            json!({}),
        )
        .await;
    r.assert_error(422, "connection_not_active");
    w.conduit
        .post(
            "/api/tenant-configs/strict-app/production/versions/9/publish",
            &w.token,
            json!({}),
        )
        .await
        .assert_error(404, "not_found");
    w.conduit
        .post(
            "/api/tenant-configs/strict-app/staging/versions/1/publish",
            &w.token,
            json!({}),
        )
        .await
        .assert_error(422, "invalid_environment");
    // No secret in any answer.
    for body in w.conduit.bodies() {
        assert!(!body.contains(STRIPE_KEY), "{body}");
    }
}

impl World {
    /// Connection config pointing Stripe at the production fake.
    fn conduit_stripe_config(&self) -> Value {
        json!({"baseUrl": self.stripe_prod_base})
    }
}
