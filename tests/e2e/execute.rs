//! `executeCapability` behaviour beyond routing: priority and failover, idempotent
//! replay and conflict, rate budgets and quotas, and the audit trail — which must hold
//! no secret, like every log line and response.

use crate::binding::{World, GMAIL_ACCESS, GMAIL_REFRESH};
use crate::support::fake_google::CLIENT_SECRET;
use crate::support::fake_postmark::GOOD_TOKEN as POSTMARK_TOKEN;
use crate::support::fake_qdrant::GOOD_KEY as QDRANT_KEY;
use crate::support::fake_stripe::GOOD_KEY as STRIPE_KEY;
use crate::support::{doc, Resp};
use serde_json::{json, Value};

fn pay(workflow: &str) -> Value {
    json!({"blueprint": "invoice-app", "environment": "production", "workflow": workflow,
           "input": {"amount": 1500, "currency": "usd"}})
}

/// A second production Stripe connection (at the test fake) on another account.
async fn backup_stripe(w: &World, account: &str, extra: Value) -> String {
    let test_base = w
        .conduit
        .get(
            &format!("/api/connections/{}", w.conn.stripe_test),
            &w.token,
        )
        .await
        .body["data"]["attributes"]["config"]["baseUrl"]
        .clone();
    let mut attributes = json!({"connector": "stripe", "label": "Stripe backup", "environment": "production",
                                "ownershipMode": "byok", "externalAccountId": account,
                                "config": {"baseUrl": test_base}});
    if let Value::Object(extra) = extra {
        attributes.as_object_mut().unwrap().extend(extra);
    }
    let id = w.conduit.connection(&w.token, attributes).await;
    w.conduit.api_key(&w.token, &id, STRIPE_KEY).await;
    id
}

fn served_by(r: &Resp) -> &str {
    r.body["data"]["attributes"]["connectionId"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test]
async fn priority_decides_and_failover_takes_over_when_a_connection_needs_reauth() {
    let w = World::start().await;
    w.put_blueprint().await;
    let backup = backup_stripe(&w, "acct_backup", json!({})).await;
    let mut bindings = w.production_bindings();
    bindings
        .as_array_mut()
        .unwrap()
        .push(json!({"slotId": "payments.primary", "connectionId": backup, "priority": 2}));
    w.publish("production", bindings).await;

    // Priority 1 serves while it can.
    let r = w
        .execute("payments.createPaymentIntent", pay("checkout"))
        .await;
    assert_eq!(served_by(&r), w.conn.stripe_prod, "{}", r.text);
    assert_eq!(r.body["data"]["attributes"]["failover"], json!([]));

    // Its key is revoked at Stripe: the call is refused with 401, the connection flips
    // to NEEDS_REAUTH, and the next binding serves the same request.
    w.conduit
        .api_key(
            &w.token,
            &w.conn.stripe_prod,
            "sk_test_revoked_key_0000000000",
        )
        .await;
    let r = w
        .execute("payments.createPaymentIntent", pay("checkout"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(served_by(&r), backup);
    assert_eq!(
        r.body["data"]["attributes"]["failover"],
        json!([{"connectionId": w.conn.stripe_prod, "reason": "needs_reauth"}])
    );
    assert_eq!(
        w.conduit.status(&w.token, &w.conn.stripe_prod).await,
        "NEEDS_REAUTH"
    );

    // From now on the broken connection is passed over without calling Stripe.
    let prod_requests = w.stripe_prod.received().len();
    for _ in 0..3 {
        let r = w
            .execute("payments.createPaymentIntent", pay("checkout"))
            .await;
        assert_eq!(served_by(&r), backup, "{}", r.text);
    }
    assert_eq!(w.stripe_prod.received().len(), prod_requests);
    // The resolved view shows the new status.
    let r = w
        .conduit
        .get(
            "/api/apps/invoice-app/resolved?environment=production",
            &w.token,
        )
        .await;
    assert_eq!(
        r.body["data"]["attributes"]["capabilities"]["payments.createPaymentIntent"]["connection"]
            ["attributes"]["status"],
        "NEEDS_REAUTH"
    );

    // Reconnected: priority 1 serves again.
    w.conduit
        .api_key(&w.token, &w.conn.stripe_prod, STRIPE_KEY)
        .await;
    let r = w
        .execute("payments.createPaymentIntent", pay("checkout"))
        .await;
    assert_eq!(served_by(&r), w.conn.stripe_prod, "{}", r.text);

    // With every candidate unusable the answer is the first one's refusal.
    w.conduit
        .api_key(
            &w.token,
            &w.conn.stripe_prod,
            "sk_test_revoked_key_0000000000",
        )
        .await;
    w.conduit
        .api_key(&w.token, &backup, "sk_test_revoked_key_0000000000")
        .await;
    w.execute("payments.createPaymentIntent", pay("checkout"))
        .await
        .assert_error(409, "needs_reauth");
}

#[tokio::test]
async fn idempotency_keys_replay_and_conflict() {
    let w = World::start().await;
    w.put_blueprint().await;
    w.publish("production", w.production_bindings()).await;
    let mut request = pay("checkout");
    request["idempotencyKey"] = json!("invoice-2026-001-charge");

    let first = w
        .execute("payments.createPaymentIntent", request.clone())
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.body["data"]["attributes"]["replayed"], false);
    let sent = w
        .stripe_prod
        .received()
        .into_iter()
        .find(|r| r.path == "/v1/payment_intents")
        .unwrap();
    // Namespaced by the tenant before it reaches the provider.
    let key = sent.header("idempotency-key").expect("an idempotency key");
    assert!(key.len() == 64 && key != "invoice-2026-001-charge", "{key}");

    // Same key, same request: the stored result, no second call.
    let again = w
        .execute("payments.createPaymentIntent", request.clone())
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["data"]["attributes"]["replayed"], true);
    assert_eq!(again.output(), first.output());
    assert_eq!(again.body["data"]["id"], first.body["data"]["id"]);
    assert_eq!(World::intents(&w.stripe_prod), 1);

    // Same key, different input: a conflict, no call.
    let mut changed = request.clone();
    changed["input"]["amount"] = json!(1501);
    w.execute("payments.createPaymentIntent", changed)
        .await
        .assert_error(409, "idempotency_conflict");
    let mut other_workflow = request.clone();
    other_workflow["workflow"] = json!("subscription-renewal");
    w.execute("payments.createPaymentIntent", other_workflow)
        .await
        .assert_error(409, "idempotency_conflict");
    assert_eq!(World::intents(&w.stripe_prod), 1);

    // Concurrent retries of one new key: one provider call, one answer for all.
    let mut burst = pay("checkout");
    burst["idempotencyKey"] = json!("invoice-2026-002-charge");
    let answers = futures_util::future::join_all(
        (0..12).map(|_| w.execute("payments.createPaymentIntent", burst.clone())),
    )
    .await;
    assert_eq!(World::intents(&w.stripe_prod), 2);
    let ids: std::collections::HashSet<String> = answers
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{}", r.text);
            r.output()["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1);

    // The per-connection route keeps its own keys the same way.
    let path = format!(
        "/api/connections/{}/capabilities/customers.create/execute",
        w.conn.stripe_prod
    );
    let body = doc(
        "executions",
        json!({"input": {"email": "ap@example.com"}, "idempotencyKey": "customer-ap"}),
    );
    let a = w.conduit.post(&path, &w.token, body.clone()).await;
    let b = w.conduit.post(&path, &w.token, body).await;
    assert_eq!((a.status, b.status), (200, 200), "{} {}", a.text, b.text);
    assert_eq!(a.output(), b.output());
    assert_eq!(b.body["data"]["attributes"]["replayed"], true);
    w.conduit
        .post(
            &path,
            &w.token,
            doc(
                "executions",
                json!({"input": {"email": "other@example.com"}, "idempotencyKey": "customer-ap"}),
            ),
        )
        .await
        .assert_error(409, "idempotency_conflict");
    let customers = w
        .stripe_prod
        .received()
        .iter()
        .filter(|r| r.path == "/v1/customers")
        .count();
    assert_eq!(customers, 1);

    // Keys are per tenant: another tenant's identical key is its own.
    let r = w
        .conduit
        .post(
            &path,
            &w.conduit.tenant("globex").await,
            doc(
                "executions",
                json!({"input": {"email": "ap@example.com"}, "idempotencyKey": "customer-ap"}),
            ),
        )
        .await;
    r.assert_error(404, "not_found");
}

#[tokio::test]
async fn rate_budgets_are_shared_per_provider_account_and_quotas_cap_a_day() {
    // Stripe limited to 2 requests per minute per account for this deployment.
    let w = World::start_with(
        &["rate_profile = { requests = 2, per_seconds = 60, burst = 2 }"],
        &[],
    )
    .await;
    w.put_blueprint().await;
    // Two connections to the same Stripe account share its budget; a third account
    // has its own and stands behind them in priority.
    let twin = backup_stripe(&w, "acct_live", json!({})).await;
    let spare = backup_stripe(&w, "acct_spare", json!({})).await;
    let mut bindings = w.production_bindings();
    let list = bindings.as_array_mut().unwrap();
    list[0]["scope"] = json!({"workflows": ["checkout"]});
    list.push(json!({"slotId": "payments.primary", "connectionId": spare, "priority": 9, "scope": {"workflows": ["checkout"]}}));
    w.publish("production", bindings).await;

    // The twin spends acct_live's two requests (health checks spend none).
    let live_calls = |w: &World| w.stripe_prod.received().len();
    let calls_before = live_calls(&w);
    let path =
        |conn: &str| format!("/api/connections/{conn}/capabilities/customers.create/execute");
    let customer = doc("executions", json!({"input": {"email": "a@example.com"}}));
    for _ in 0..2 {
        let r = w
            .conduit
            .post(&path(&twin), &w.token, customer.clone())
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    // acct_live is spent: the other connection to it is refused before the plugin runs.
    let r = w
        .conduit
        .post(&path(&w.conn.stripe_prod), &w.token, customer.clone())
        .await;
    r.assert_error(429, "rate_limited");
    let retry_after: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(r.body["errors"][0]["meta"]["retryable"], true);
    // The twin's calls went to the test fake; nothing new reached the live one.
    assert_eq!(live_calls(&w), calls_before);

    // Through the binding the spent account fails over to the spare one…
    for _ in 0..2 {
        let r = w
            .execute("payments.createPaymentIntent", pay("checkout"))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(served_by(&r), spare);
        assert_eq!(
            r.body["data"]["attributes"]["failover"],
            json!([{"connectionId": w.conn.stripe_prod, "reason": "rate_limited"}])
        );
    }
    // …until that account is spent too: then 429, and no plugin runs.
    let r = w
        .execute("payments.createPaymentIntent", pay("checkout"))
        .await;
    r.assert_error(429, "rate_limited");
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(live_calls(&w), calls_before);

    // A daily quota caps one connection whatever the provider allows.
    let capped = backup_stripe(&w, "acct_capped", json!({"dailyQuota": 1})).await;
    let r = w
        .conduit
        .get(&format!("/api/connections/{capped}"), &w.token)
        .await;
    assert_eq!(r.body["data"]["attributes"]["dailyQuota"], 1);
    let r = w
        .conduit
        .post(&path(&capped), &w.token, customer.clone())
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = w
        .conduit
        .post(&path(&capped), &w.token, customer.clone())
        .await;
    r.assert_error(429, "rate_limited");
    let retry_after: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry_after), "{retry_after}");
    assert!(r.text.contains("daily quota"), "{}", r.text);
    w.conduit
        .post(
            "/api/connections",
            &w.token,
            doc(
                "connections",
                json!({"connector": "stripe", "environment": "production", "dailyQuota": -1}),
            ),
        )
        .await
        .assert_error(422, "invalid_attributes");

    // Refusals are audited with their reason.
    let r = w
        .conduit
        .get(&format!("/api/audit?connectionId={capped}"), &w.token)
        .await;
    let outcomes: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["attributes"]["outcome"].as_str().unwrap())
        .collect();
    assert!(
        outcomes.starts_with(&["rate_limited", "ok"]),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn the_audit_trail_is_complete_filterable_and_secret_free() {
    let w = World::start().await;
    w.put_blueprint().await;
    w.publish("production", w.production_bindings()).await;

    let ok = w
        .execute("payments.createPaymentIntent", pay("checkout"))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let r = w
        .execute("email.send", json!({"blueprint": "invoice-app", "environment": "production", "workflow": "invoice-delivery",
                 "input": {"from": "billing@acme.example", "to": ["client@example.com"], "subject": "Hi", "text": "Body"}}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    w.execute("email.listMessages", json!({"blueprint": "invoice-app", "environment": "production", "workflow": "checkout", "input": {}}))
        .await
        .assert_error(403, "scope_denied");
    let r = w
        .execute("email.listMessages", json!({"blueprint": "invoice-app", "environment": "production", "workflow": "support-ticket-creation", "input": {"limit": 1}}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = w
        .execute("knowledge.search", json!({"blueprint": "invoice-app", "environment": "production", "workflow": "support-ticket-creation",
                 "input": {"collection": "invoices", "vector": [1.0, 0.0, 0.0]}}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    w.execute("sms.send", json!({"blueprint": "invoice-app", "environment": "production", "workflow": "checkout", "input": {}}))
        .await
        .assert_error(404, "no_binding");
    // A provider refusal (a declined card) is audited with its response, redacted.
    w.execute("payments.createPaymentIntent", json!({"blueprint": "invoice-app", "environment": "production", "workflow": "checkout",
               "input": {"amount": 1500, "currency": "usd", "paymentMethod": "pm_card_visa_chargeDeclined", "confirm": true}}))
        .await
        .assert_error(502, "provider_error");

    let all = w.conduit.get("/api/audit?limit=1000", &w.token).await;
    assert_eq!(all.status, 200, "{}", all.text);
    let records = all.body["data"].as_array().unwrap().clone();
    let executions: Vec<&Value> = records
        .iter()
        .map(|r| &r["attributes"])
        .filter(|a| a["blueprint"] == "invoice-app")
        .collect();
    assert_eq!(executions.len(), 7, "{}", all.text);
    let declined = executions
        .iter()
        .find(|a| a["outcome"] == "provider_error")
        .unwrap();
    assert!(
        declined["outbound"][0]["responseBody"]
            .as_str()
            .unwrap()
            .contains("card_declined"),
        "{declined}"
    );
    assert_eq!(declined["outbound"][0]["status"], 402);
    // Newest first.
    let times: Vec<&str> = records
        .iter()
        .map(|r| r["attributes"]["time"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|p| p[0] >= p[1]), "{times:?}");

    // The allowed payment: who, what, where, the decision and the outbound exchange.
    let payment = executions
        .iter()
        .find(|a| a["capability"] == "payments.createPaymentIntent" && a["outcome"] == "ok")
        .unwrap();
    assert_eq!(payment["tenantId"], "acme-corp");
    assert_eq!(payment["environment"], "production");
    assert_eq!(payment["workflow"], "checkout");
    assert_eq!(payment["operation"], "payments.stripe.createPaymentIntent");
    assert_eq!(payment["connectionId"], w.conn.stripe_prod.as_str());
    assert_eq!(payment["connector"], "stripe");
    assert_eq!(payment["connectorVersion"], 1);
    assert_eq!(payment["decision"]["allowed"], true);
    assert!(payment["durationMs"].is_u64());
    let exchange = &payment["outbound"][0];
    assert_eq!(exchange["method"], "POST");
    assert_eq!(exchange["status"], 200);
    assert!(exchange["url"]
        .as_str()
        .unwrap()
        .ends_with("/v1/payment_intents"));
    let headers: Vec<(String, String)> =
        serde_json::from_value(exchange["requestHeaders"].clone()).unwrap();
    assert!(
        headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("authorization") && v == "<redacted>"),
        "{headers:?}"
    );
    assert!(exchange["requestBody"]
        .as_str()
        .unwrap()
        .contains("amount=1500"));
    assert!(exchange["responseBody"]
        .as_str()
        .unwrap()
        .contains("payment_intent"));
    // Postmark's server token header is redacted too.
    let email = executions
        .iter()
        .find(|a| a["capability"] == "email.send")
        .unwrap();
    let headers: Vec<(String, String)> =
        serde_json::from_value(email["outbound"][0]["requestHeaders"].clone()).unwrap();
    assert!(
        headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("x-postmark-server-token") && v == "<redacted>"),
        "{headers:?}"
    );
    // Refusals: the decision and why.
    let denied = executions
        .iter()
        .find(|a| a["outcome"] == "scope_denied")
        .unwrap();
    assert_eq!(denied["decision"]["allowed"], false);
    assert!(
        denied["decision"]["reason"]
            .as_str()
            .unwrap()
            .contains("checkout"),
        "{denied}"
    );
    assert!(denied["outbound"].as_array().unwrap().is_empty());
    let unbound = executions
        .iter()
        .find(|a| a["outcome"] == "no_binding")
        .unwrap();
    assert_eq!(unbound["capability"], "sms.send");

    // Filters: capability, connection, time; pagination with a cursor.
    let r = w
        .conduit
        .get("/api/audit?capability=email.send", &w.token)
        .await;
    let only: Vec<&Value> = r.body["data"].as_array().unwrap().iter().collect();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["attributes"]["capability"], "email.send");
    let r = w
        .conduit
        .get(
            &format!("/api/audit?connectionId={}", w.conn.qdrant),
            &w.token,
        )
        .await;
    assert!(r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["attributes"]["connectionId"] == w.conn.qdrant.as_str()));
    assert!(!r.body["data"].as_array().unwrap().is_empty());
    let r = w
        .conduit
        .get("/api/audit?since=2099-01-01T00:00:00Z", &w.token)
        .await;
    assert_eq!(r.body["data"], json!([]));
    let r = w
        .conduit
        .get("/api/audit?until=2000-01-01T00:00:00Z", &w.token)
        .await;
    assert_eq!(r.body["data"], json!([]));
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/audit?limit=3&cursor={c}"),
            None => "/api/audit?limit=3".to_owned(),
        };
        let page = w.conduit.get(&path, &w.token).await;
        assert_eq!(page.status, 200, "{}", page.text);
        paged.extend(
            page.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].clone()),
        );
        match page.body["meta"]["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let ids: Vec<Value> = records.iter().map(|r| r["id"].clone()).collect();
    assert_eq!(paged, ids, "pages walk the same records in the same order");
    w.conduit
        .get("/api/audit?since=yesterday", &w.token)
        .await
        .assert_error(400, "invalid_query");
    w.conduit
        .get("/api/audit?cursor=zz", &w.token)
        .await
        .assert_error(400, "invalid_query");
    // Another tenant sees none of it.
    let globex = w.conduit.tenant("globex").await;
    assert_eq!(
        w.conduit.get("/api/audit", &globex).await.body["data"],
        json!([])
    );

    // No secret in any audit record, response (other than a vend) or log line.
    let secrets = [
        STRIPE_KEY,
        POSTMARK_TOKEN,
        QDRANT_KEY,
        GMAIL_ACCESS,
        GMAIL_REFRESH,
        CLIENT_SECRET,
    ];
    for secret in secrets {
        assert!(!all.text.contains(secret), "audit leaks {secret}");
        for body in w.conduit.bodies() {
            assert!(!body.contains(secret), "a response leaks {secret}: {body}");
        }
        assert!(!w.conduit.logs().contains(secret), "the log leaks {secret}");
    }
}

#[tokio::test]
async fn audit_records_expire_after_the_retention_period() {
    let w = World::start_with(&[], &[("CONDUIT_AUDIT_RETENTION_SECS", "1".to_owned())]).await;
    let path = format!(
        "/api/connections/{}/capabilities/customers.create/execute",
        w.conn.stripe_prod
    );
    let r = w
        .conduit
        .post(
            &path,
            &w.token,
            doc("executions", json!({"input": {"email": "a@example.com"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let listed = |r: Resp| r.body["data"].as_array().unwrap().len();
    assert!(listed(w.conduit.get("/api/audit", &w.token).await) >= 1);
    tokio::time::sleep(std::time::Duration::from_millis(3_500)).await;
    assert_eq!(listed(w.conduit.get("/api/audit", &w.token).await), 0);
}
