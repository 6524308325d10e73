//! The integration-binding walkthrough over HTTP: blueprint `invoice-app` v1, tenant
//! `acme-corp` with Stripe (production and test), Postmark, Gmail and Qdrant
//! connections against loopback fakes, sandbox and production configs published, and
//! `executeCapability` routed by environment, workflow, scope and priority.

use crate::support::fake_google::FakeGoogle;
use crate::support::fake_postmark::{self, FakePostmark};
use crate::support::fake_qdrant::{self, FakeQdrant};
use crate::support::fake_stripe::{FakeStripe, GOOD_KEY as STRIPE_KEY};
use crate::support::{doc, gmail_connection, gmail_env, gmail_plugin, Conduit, PluginDecl, Resp};
use serde_json::{json, Value};

pub const GMAIL_ACCESS: &str = "ya29.binding-walkthrough-access-token";
pub const GMAIL_REFRESH: &str = "1//binding-walkthrough-refresh-token";

/// Every fake, Conduit serving all four connectors, and `acme-corp`'s connections.
pub struct World {
    pub conduit: Conduit,
    pub token: String,
    pub stripe_prod: FakeStripe,
    pub stripe_test: FakeStripe,
    pub postmark: FakePostmark,
    pub google: FakeGoogle,
    pub qdrant: FakeQdrant,
    pub conn: Connections,
    /// `http://<the production Stripe fake>`.
    pub stripe_prod_base: String,
}

/// `acme-corp`'s connection ids.
pub struct Connections {
    pub stripe_prod: String,
    pub stripe_test: String,
    pub postmark_prod: String,
    pub postmark_sandbox: String,
    pub gmail: String,
    pub qdrant: String,
}

impl World {
    pub async fn start() -> Self {
        Self::start_with(&[], &[]).await
    }

    /// `stripe_settings` go into Stripe's plugins.toml entry (a rate profile…).
    pub async fn start_with(stripe_settings: &[&str], env: &[(&'static str, String)]) -> Self {
        let (stripe_prod, prod_addr) = FakeStripe::start().await;
        let (stripe_test, test_addr) = FakeStripe::start().await;
        let (postmark, postmark_addr) = FakePostmark::start().await;
        let (google, google_addr) = FakeGoogle::start().await;
        let (qdrant, qdrant_addr) = FakeQdrant::start().await;
        qdrant.create_collection("invoices", 3);
        let mut stripe = PluginDecl::new("stripe", "conduit_stripe")
            .allow(&[&prod_addr.to_string(), &test_addr.to_string()]);
        for line in stripe_settings {
            stripe = stripe.setting(line);
        }
        let conduit = Conduit::start_env(
            vec![
                stripe,
                PluginDecl::new("postmark", "conduit_postmark")
                    .allow(&[&postmark_addr.to_string()]),
                gmail_plugin(google_addr),
                PluginDecl::new("qdrant", "conduit_qdrant").allow(&[&qdrant_addr.to_string()]),
            ],
            &gmail_env(env),
        )
        .await;
        let token = conduit.tenant("acme-corp").await;
        let base = |addr: std::net::SocketAddr| json!({"baseUrl": format!("http://{addr}")});

        let stripe_prod_id = conduit
            .connection(&token, json!({"connector": "stripe", "label": "Stripe live", "environment": "production", "ownershipMode": "byok", "externalAccountId": "acct_live", "config": base(prod_addr)}))
            .await;
        conduit.api_key(&token, &stripe_prod_id, STRIPE_KEY).await;
        let stripe_test_id = conduit
            .connection(&token, json!({"connector": "stripe", "label": "Stripe test", "environment": "sandbox", "ownershipMode": "byok", "externalAccountId": "acct_test", "config": base(test_addr)}))
            .await;
        conduit.api_key(&token, &stripe_test_id, STRIPE_KEY).await;
        let mut postmark_ids = Vec::new();
        for environment in ["production", "sandbox"] {
            let id = conduit
                .connection(&token, json!({"connector": "postmark", "environment": environment, "ownershipMode": "managed", "config": base(postmark_addr)}))
                .await;
            conduit
                .api_key(&token, &id, fake_postmark::GOOD_TOKEN)
                .await;
            postmark_ids.push(id);
        }
        google.add_access_token(GMAIL_ACCESS);
        google.add_refresh_token(GMAIL_REFRESH);
        let gmail = conduit
            .connection(&token, gmail_connection(google_addr, "managed"))
            .await;
        conduit
            .oauth_tokens(&token, &gmail, GMAIL_ACCESS, GMAIL_REFRESH, 3_600_000)
            .await;
        let qdrant_id = conduit
            .connection(&token, json!({"connector": "qdrant", "environment": "production", "ownershipMode": "byok", "config": base(qdrant_addr)}))
            .await;
        conduit
            .api_key(&token, &qdrant_id, fake_qdrant::GOOD_KEY)
            .await;

        let conn = Connections {
            stripe_prod: stripe_prod_id,
            stripe_test: stripe_test_id,
            postmark_sandbox: postmark_ids.pop().unwrap(),
            postmark_prod: postmark_ids.pop().unwrap(),
            gmail,
            qdrant: qdrant_id,
        };
        World {
            conduit,
            token,
            stripe_prod,
            stripe_test,
            postmark,
            google,
            qdrant,
            conn,
            stripe_prod_base: format!("http://{prod_addr}"),
        }
    }

    /// Puts the `invoice-app` v1 blueprint.
    pub async fn put_blueprint(&self) {
        let r = self
            .conduit
            .put(
                "/admin/blueprints/invoice-app/versions/1",
                &self.conduit.admin_token.clone(),
                invoice_app(),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }

    /// Posts a config and publishes it; returns its version.
    pub async fn publish(&self, environment: &str, integrations: Value) -> u64 {
        let r = self.post_config(environment, integrations).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let version = r.body["data"]["attributes"]["meta"]["version"]
            .as_u64()
            .unwrap();
        let r = self
            .conduit
            .post(
                &format!(
                    "/api/tenant-configs/invoice-app/{environment}/versions/{version}/publish"
                ),
                &self.token,
                json!({}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["data"]["attributes"]["meta"]["status"], "published");
        version
    }

    pub async fn post_config(&self, environment: &str, integrations: Value) -> Resp {
        self.conduit
            .post(
                "/api/tenant-configs",
                &self.token,
                json!({
                    "meta": {"tenantId": "acme-corp", "blueprintName": "invoice-app", "blueprintVersion": "1", "environment": environment},
                    "integrations": integrations,
                    "branding": {"logoUrl": "https://acme.example/logo.png"}
                }),
            )
            .await
    }

    /// The production bindings of the walkthrough.
    pub fn production_bindings(&self) -> Value {
        json!([
            {"slotId": "payments.primary", "connectionId": self.conn.stripe_prod, "priority": 1},
            {"slotId": "email.outbound", "connectionId": self.conn.postmark_prod, "priority": 1},
            {"slotId": "email.inbound", "connectionId": self.conn.gmail, "priority": 5,
             "scope": {"workflows": ["support-ticket-creation"], "operations": ["email.gmail.*"]}},
            {"slotId": "knowledge.vector-store", "connectionId": self.conn.qdrant,
             "scope": {"operations": ["knowledge.qdrant.*"]}}
        ])
    }

    pub async fn execute(&self, capability: &str, attributes: Value) -> Resp {
        self.conduit
            .post(
                &format!("/api/capabilities/{capability}/execute"),
                &self.token,
                doc("executions", attributes),
            )
            .await
    }

    /// PaymentIntents created at a fake.
    pub fn intents(fake: &FakeStripe) -> usize {
        fake.received()
            .iter()
            .filter(|r| r.method == "POST" && r.path == "/v1/payment_intents")
            .count()
    }
}

/// The seed's `invoice-app` blueprint.
pub fn invoice_app() -> Value {
    json!({
        "meta": {"name": "invoice-app", "version": "1", "appId": "app_invoice"},
        "integrationSlots": [
            {"slotId": "payments.primary", "requiredCategory": "payments", "allowedModes": ["managed", "byok"],
             "requiredCapabilities": [{"key": "payments.createPaymentIntent", "version": 1}],
             "required": true, "description": "Charges invoices"},
            {"slotId": "email.outbound", "requiredCategory": "email", "allowedModes": ["managed", "byok"],
             "requiredCapabilities": [{"key": "email.send", "version": 1}],
             "required": true, "description": "Sends invoices"},
            {"slotId": "email.inbound", "requiredCategory": "email", "allowedModes": ["managed", "byok"],
             "requiredCapabilities": [{"key": "email.listMessages", "version": 1}],
             "required": false, "description": "Reads support mail"},
            {"slotId": "knowledge.vector-store", "requiredCategory": "knowledge", "allowedModes": ["byok"],
             "requiredCapabilities": [{"key": "knowledge.search", "version": 1}],
             "required": false, "description": "Searches past invoices"}
        ],
        "workflows": [
            {"id": "checkout", "name": "Checkout"},
            {"id": "invoice-delivery", "name": "Invoice delivery"},
            {"id": "support-ticket-creation", "name": "Support tickets"}
        ],
        "branding": {"primaryColor": "#0a66c2"}
    })
}

fn payment(workflow: &str, environment: &str) -> Value {
    json!({
        "blueprint": "invoice-app", "environment": environment, "workflow": workflow,
        "input": {"amount": 4200, "currency": "eur", "description": "Invoice 2026-001"}
    })
}

#[tokio::test]
async fn the_invoice_app_walkthrough() {
    let w = World::start().await;
    w.put_blueprint().await;

    // Production: a draft, previewed, then published.
    let r = w.post_config("production", w.production_bindings()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let meta = &r.body["data"]["attributes"]["meta"];
    assert_eq!(
        (meta["version"].as_u64(), meta["status"].as_str()),
        (Some(1), Some("draft"))
    );
    assert_eq!(r.body["data"]["id"], "invoice-app:production:1");
    let r = w
        .conduit
        .post(
            "/api/tenant-configs/invoice-app/production/versions/1/preview",
            &w.token,
            json!({}),
        )
        .await;
    assert_eq!(
        r.body["data"]["attributes"]["meta"]["status"], "preview",
        "{}",
        r.text
    );
    // Nothing is resolved before publication.
    w.execute(
        "payments.createPaymentIntent",
        payment("checkout", "production"),
    )
    .await
    .assert_error(404, "no_binding");
    let r = w
        .conduit
        .post(
            "/api/tenant-configs/invoice-app/production/versions/1/publish",
            &w.token,
            json!({}),
        )
        .await;
    assert_eq!(
        r.body["data"]["attributes"]["meta"]["status"], "published",
        "{}",
        r.text
    );
    let sandbox = json!([
        {"slotId": "payments.primary", "connectionId": w.conn.stripe_test},
        {"slotId": "email.outbound", "connectionId": w.conn.postmark_sandbox}
    ]);
    assert_eq!(
        w.publish("sandbox", sandbox).await,
        1,
        "versions count per environment"
    );

    // The resolved view: per capability, provider, connection (no secret) and config.
    let r = w
        .conduit
        .get(
            "/api/apps/invoice-app/resolved?environment=production",
            &w.token,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let caps = &r.body["data"]["attributes"]["capabilities"];
    let pay = &caps["payments.createPaymentIntent"];
    assert_eq!(pay["provider"]["id"], "stripe");
    assert_eq!(
        pay["provider"]["attributes"]["integrationKey"],
        "payments.stripe"
    );
    assert_eq!(pay["connection"]["id"], w.conn.stripe_prod.as_str());
    assert_eq!(pay["connection"]["attributes"]["status"], "ACTIVE");
    assert!(pay["config"]["baseUrl"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1"));
    assert_eq!(pay["slotId"], "payments.primary");
    let send = &caps["email.send"];
    assert_eq!(send["connection"]["id"], w.conn.postmark_prod.as_str());
    assert_eq!(
        send["fallbacks"][0]["connection"]["id"],
        w.conn.gmail.as_str()
    );
    assert_eq!(caps["knowledge.search"]["provider"]["id"], "qdrant");
    assert_eq!(r.body["data"]["attributes"]["configVersion"], 1);
    assert!(!r.text.contains(STRIPE_KEY) && !r.text.contains(GMAIL_ACCESS));
    w.conduit
        .get(
            "/api/apps/invoice-app/resolved?environment=staging",
            &w.token,
        )
        .await
        .assert_error(422, "invalid_environment");

    // payments.createPaymentIntent in checkout: Stripe live in production…
    let r = w
        .execute(
            "payments.createPaymentIntent",
            payment("checkout", "production"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["data"]["attributes"]["connectionId"],
        w.conn.stripe_prod.as_str()
    );
    assert_eq!(
        r.body["data"]["attributes"]["integrationKey"],
        "payments.stripe"
    );
    assert_eq!(r.output()["amount"], 4200);
    assert_eq!(
        (
            World::intents(&w.stripe_prod),
            World::intents(&w.stripe_test)
        ),
        (1, 0)
    );
    // …and Stripe test in sandbox.
    let r = w
        .execute(
            "payments.createPaymentIntent",
            payment("checkout", "sandbox"),
        )
        .await;
    assert_eq!(
        r.body["data"]["attributes"]["connectionId"],
        w.conn.stripe_test.as_str(),
        "{}",
        r.text
    );
    assert_eq!(
        (
            World::intents(&w.stripe_prod),
            World::intents(&w.stripe_test)
        ),
        (1, 1)
    );

    // email.send goes to Postmark, in Postmark's wire format.
    let r = w
        .execute(
            "email.send",
            json!({"blueprint": "invoice-app", "environment": "production", "workflow": "invoice-delivery",
                   "input": {"from": "billing@acme.example", "to": ["client@example.com"], "subject": "Invoice 2026-001", "text": "Attached."}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["data"]["attributes"]["connectionId"],
        w.conn.postmark_prod.as_str()
    );
    assert!(r.output()["messageId"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
    let sent = w.postmark.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["To"], "client@example.com");
    assert_eq!(sent[0]["Subject"], "Invoice 2026-001");
    assert_eq!(
        w.google
            .received()
            .iter()
            .filter(|r| r.path.contains("/send"))
            .count(),
        0
    );

    // Gmail is refused outside support-ticket-creation…
    let list = |workflow: &str| json!({"blueprint": "invoice-app", "environment": "production", "workflow": workflow, "input": {"limit": 2}});
    let r = w.execute("email.listMessages", list("checkout")).await;
    r.assert_error(403, "scope_denied");
    assert!(
        r.text.contains("support-ticket-creation") || r.text.contains("checkout"),
        "{}",
        r.text
    );
    // …and serves inside it.
    let r = w
        .execute("email.listMessages", list("support-ticket-creation"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["data"]["attributes"]["connectionId"],
        w.conn.gmail.as_str()
    );
    assert!(r.output()["messages"]
        .as_array()
        .is_some_and(|m| !m.is_empty()));
    // A caller may name the binding's own operation, never substitute another one to
    // pass a scope.
    let mut explicit = list("support-ticket-creation");
    explicit["operation"] = json!("email.gmail.listMessages");
    let r = w.execute("email.listMessages", explicit.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    explicit["operation"] = json!("payments.stripe.createPaymentIntent");
    w.execute("email.listMessages", explicit)
        .await
        .assert_error(403, "scope_denied");

    // Knowledge through Qdrant.
    let r = w
        .execute(
            "knowledge.upsert",
            json!({"blueprint": "invoice-app", "environment": "production", "workflow": "indexing",
                   "input": {"collection": "invoices", "points": [
                       {"id": 1, "vector": [1.0, 0.0, 0.0], "payload": {"invoice": "2026-001"}},
                       {"id": 2, "vector": [0.0, 1.0, 0.0], "payload": {"invoice": "2026-002"}}]}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.output()["upserted"], 2);
    assert_eq!(w.qdrant.point_count("invoices"), 2);
    let r = w
        .execute(
            "knowledge.search",
            json!({"blueprint": "invoice-app", "environment": "production", "workflow": "support-ticket-creation",
                   "input": {"collection": "invoices", "vector": [0.9, 0.1, 0.0], "limit": 1}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.output()["results"][0]["payload"]["invoice"], "2026-001");

    // Nothing bound provides it, or no such app: 404 no_binding.
    w.execute("sms.send", json!({"blueprint": "invoice-app", "environment": "production", "workflow": "checkout", "input": {}}))
        .await
        .assert_error(404, "no_binding");
    w.execute("payments.createPaymentIntent", json!({"blueprint": "other-app", "environment": "production", "workflow": "checkout", "input": {"amount": 1, "currency": "usd"}}))
        .await
        .assert_error(404, "no_binding");
    // Bad inputs are typed refusals that never reach Stripe.
    let before = World::intents(&w.stripe_prod);
    w.execute("payments.createPaymentIntent", json!({"blueprint": "invoice-app", "environment": "production", "workflow": "checkout", "input": {"amount": -5, "currency": "eur"}}))
        .await
        .assert_error(422, "invalid_input");
    w.execute("payments.createPaymentIntent", json!({"blueprint": "invoice-app", "environment": "prod", "workflow": "checkout", "input": {}}))
        .await
        .assert_error(422, "invalid_attributes");
    w.execute("payments.createPaymentIntent", json!({"blueprint": "invoice-app", "environment": "production", "workflow": "", "input": {}}))
        .await
        .assert_error(422, "invalid_attributes");
    assert_eq!(World::intents(&w.stripe_prod), before);

    // Publishing v2 archives v1 and the resolution follows at once: Stripe now only
    // serves subscription workflows.
    let mut v2 = w.production_bindings();
    v2[0]["scope"] = json!({"workflows": ["subscription-*"]});
    assert_eq!(w.publish("production", v2).await, 2);
    w.execute(
        "payments.createPaymentIntent",
        payment("checkout", "production"),
    )
    .await
    .assert_error(403, "scope_denied");
    let r = w
        .execute(
            "payments.createPaymentIntent",
            payment("subscription-renewal", "production"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = w
        .conduit
        .get(
            "/api/tenant-configs/invoice-app/production/versions/1",
            &w.token,
        )
        .await;
    assert_eq!(r.body["data"]["attributes"]["meta"]["status"], "archived");
    let r = w
        .conduit
        .post(
            "/api/tenant-configs/invoice-app/production/versions/1/publish",
            &w.token,
            json!({}),
        )
        .await;
    r.assert_error(409, "invalid_transition");
    let r = w
        .conduit
        .get("/api/tenant-configs?blueprint=invoice-app", &w.token)
        .await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 3);

    // Another tenant sees none of it.
    let globex = w.conduit.tenant("globex").await;
    w.conduit
        .get(
            "/api/tenant-configs/invoice-app/production/versions/2",
            &globex,
        )
        .await
        .assert_error(404, "not_found");
    w.conduit
        .get(
            "/api/apps/invoice-app/resolved?environment=production",
            &globex,
        )
        .await
        .assert_error(404, "no_binding");
}
