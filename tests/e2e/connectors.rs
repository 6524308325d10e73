//! The Postmark and Qdrant connectors against fakes speaking each provider's wire
//! format: every capability, and each provider error mapped to its typed refusal.

use crate::binding::World;
use crate::support::fake_postmark::{GOOD_TOKEN, SUBMITTED_AT};
use crate::support::fake_qdrant::GOOD_KEY;
use crate::support::{doc, Resp};
use serde_json::{json, Value};

async fn run(w: &World, connection: &str, capability: &str, input: Value) -> Resp {
    w.conduit
        .post(
            &format!("/api/connections/{connection}/capabilities/{capability}/execute"),
            &w.token,
            doc("executions", json!({"input": input})),
        )
        .await
}

#[tokio::test]
async fn postmark_sends_single_and_batch_messages_and_maps_its_errors() {
    let w = World::start().await;
    let pm = w.conn.postmark_prod.clone();

    let r = run(&w, &pm, "email.send", json!({
        "from": "billing@acme.example", "to": ["a@example.com", "b@example.com"], "cc": ["c@example.com"],
        "replyTo": "support@acme.example", "subject": "Invoice", "text": "Plain", "html": "<p>Rich</p>",
        "headers": {"X-Invoice": "2026-001"}, "tag": "invoice", "metadata": {"invoice": "2026-001"}
    }))
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.output()["messageId"]
        .as_str()
        .unwrap()
        .starts_with("0a129aee-"));
    assert_eq!(r.output()["submittedAt"], SUBMITTED_AT);
    let received = w.postmark.received();
    let sent = received.iter().find(|r| r.path == "/email").unwrap();
    assert_eq!(sent.header("x-postmark-server-token"), Some(GOOD_TOKEN));
    assert_eq!(sent.header("accept"), Some("application/json"));
    let body = &sent.json;
    assert_eq!(body["From"], "billing@acme.example");
    assert_eq!(body["To"], "a@example.com, b@example.com");
    assert_eq!(body["Cc"], "c@example.com");
    assert_eq!(body["ReplyTo"], "support@acme.example");
    assert_eq!(
        (body["TextBody"].as_str(), body["HtmlBody"].as_str()),
        (Some("Plain"), Some("<p>Rich</p>"))
    );
    assert_eq!(
        body["Headers"],
        json!([{"Name": "X-Invoice", "Value": "2026-001"}])
    );
    assert_eq!(
        (body["Tag"].as_str(), body["Metadata"]["invoice"].as_str()),
        (Some("invoice"), Some("2026-001"))
    );

    // A batch answers per message, in input order; one bad address fails only itself.
    let r = run(&w, &pm, "email.sendBatch", json!({"messages": [
        {"from": "billing@acme.example", "to": ["ok@example.com"], "subject": "1", "text": "one"},
        {"from": "billing@acme.example", "to": ["not-an-address"], "subject": "2", "text": "two"},
        {"from": "billing@acme.example", "to": ["ok2@example.com"], "subject": "3", "text": "three"}
    ]}))
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let results = r.output()["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert!(results[0]["messageId"].is_string() && results[2]["messageId"].is_string());
    assert_eq!(results[1]["error"]["code"], "300");
    let batch = w
        .postmark
        .received()
        .into_iter()
        .find(|r| r.path == "/email/batch")
        .unwrap();
    assert_eq!(batch.json.as_array().unwrap().len(), 3);

    // ErrorCode 300 on a single send is invalid input; `from` is required for Postmark.
    run(
        &w,
        &pm,
        "email.send",
        json!({"from": "billing@acme.example", "to": ["nope"], "text": "x"}),
    )
    .await
    .assert_error(422, "invalid_input");
    let before = w.postmark.received().len();
    run(
        &w,
        &pm,
        "email.send",
        json!({"to": ["a@example.com"], "text": "x"}),
    )
    .await
    .assert_error(422, "invalid_input");
    run(
        &w,
        &pm,
        "email.send",
        json!({"from": "billing@acme.example", "to": []}),
    )
    .await
    .assert_error(422, "invalid_input");
    assert_eq!(
        w.postmark.received().len(),
        before,
        "refused before Postmark"
    );

    // A 5xx is retryable and keeps the connection ACTIVE.
    w.postmark.set_failure(Some(503));
    let r = run(
        &w,
        &pm,
        "email.send",
        json!({"from": "billing@acme.example", "to": ["a@example.com"], "text": "x"}),
    )
    .await;
    assert!(r.status == 502 || r.status == 503, "{}", r.text);
    assert_eq!(r.body["errors"][0]["meta"]["retryable"], true, "{}", r.text);
    w.postmark.set_failure(None);
    assert_eq!(w.conduit.status(&w.token, &pm).await, "ACTIVE");
    let r = w
        .conduit
        .post(
            &format!("/api/connections/{pm}/health"),
            &w.token,
            json!({}),
        )
        .await;
    assert_eq!(r.body["healthy"], true, "{}", r.text);
    assert!(
        !r.text.contains(GOOD_TOKEN),
        "the server's token list is not echoed"
    );

    // ErrorCode 10 (bad server token) means the connection needs re-authorization.
    w.conduit
        .api_key(&w.token, &pm, "pm-server-token-revoked-000000")
        .await;
    run(
        &w,
        &pm,
        "email.send",
        json!({"from": "billing@acme.example", "to": ["a@example.com"], "text": "x"}),
    )
    .await
    .assert_error(409, "needs_reauth");
    assert_eq!(w.conduit.status(&w.token, &pm).await, "NEEDS_REAUTH");
}

#[tokio::test]
async fn qdrant_upserts_searches_and_deletes_and_maps_its_errors() {
    let w = World::start().await;
    let q = w.conn.qdrant.clone();
    let points = json!([
        {"id": 1, "vector": [1.0, 0.0, 0.0], "payload": {"title": "refund policy"}},
        {"id": 2, "vector": [0.0, 1.0, 0.0], "payload": {"title": "pricing"}},
        {"id": "6f1c2a8e-3b7d-4c1e-9a55-2d7f0b6c1e42", "vector": [0.7, 0.7, 0.0], "payload": {"title": "both"}}
    ]);
    let r = run(
        &w,
        &q,
        "knowledge.upsert",
        json!({"collection": "invoices", "points": points}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.output()["upserted"], 3);
    assert_eq!(w.qdrant.point_count("invoices"), 3);
    let put = w
        .qdrant
        .received()
        .into_iter()
        .find(|r| r.method == "PUT")
        .unwrap();
    assert_eq!(put.path, "/collections/invoices/points");
    assert_eq!(put.header("api-key"), Some(GOOD_KEY));

    let r = run(
        &w,
        &q,
        "knowledge.search",
        json!({"collection": "invoices", "vector": [1.0, 0.1, 0.0], "limit": 2}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let results = r.output()["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["id"], 1);
    assert_eq!(results[0]["payload"]["title"], "refund policy");
    assert!(results[0]["score"].as_f64().unwrap() > results[1]["score"].as_f64().unwrap());
    // Provider-native filters pass through.
    let r = run(
        &w,
        &q,
        "knowledge.search",
        json!({"collection": "invoices", "vector": [1.0, 0.0, 0.0],
        "filter": {"must": [{"key": "title", "match": {"value": "pricing"}}]}}),
    )
    .await;
    assert_eq!(
        r.output()["results"].as_array().unwrap().len(),
        1,
        "{}",
        r.text
    );
    assert_eq!(r.output()["results"][0]["id"], 2);

    let r = run(
        &w,
        &q,
        "knowledge.delete",
        json!({"collection": "invoices", "ids": [1, 2]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.output()["deleted"], 2);
    assert_eq!(w.qdrant.point_count("invoices"), 1);

    // Qdrant's refusals: a wrong dimension is invalid input, an unknown collection is
    // the provider's not_found, a path-traversing name never leaves the host.
    run(
        &w,
        &q,
        "knowledge.upsert",
        json!({"collection": "invoices", "points": [{"id": 9, "vector": [1.0, 0.0]}]}),
    )
    .await
    .assert_error(422, "invalid_input");
    let r = run(
        &w,
        &q,
        "knowledge.search",
        json!({"collection": "missing", "vector": [1.0, 0.0, 0.0]}),
    )
    .await;
    r.assert_error(502, "provider_error");
    assert_eq!(r.body["errors"][0]["meta"]["providerStatus"], 404);
    let before = w.qdrant.received().len();
    run(
        &w,
        &q,
        "knowledge.search",
        json!({"collection": "../../etc", "vector": [1.0]}),
    )
    .await
    .assert_error(422, "invalid_input");
    assert_eq!(w.qdrant.received().len(), before);

    // A connection without a cluster URL is refused before any request.
    let bare = w
        .conduit
        .connection(
            &w.token,
            json!({"connector": "qdrant", "environment": "production", "ownershipMode": "byok"}),
        )
        .await;
    w.conduit.api_key(&w.token, &bare, GOOD_KEY).await;
    run(
        &w,
        &bare,
        "knowledge.search",
        json!({"collection": "invoices", "vector": [1.0, 0.0, 0.0]}),
    )
    .await
    .assert_error(422, "invalid_input");
    assert_eq!(w.qdrant.received().len(), before);

    // A rejected api-key means re-authorization.
    w.conduit
        .api_key(&w.token, &q, "qdrant-api-key-revoked-0000000000")
        .await;
    run(
        &w,
        &q,
        "knowledge.search",
        json!({"collection": "invoices", "vector": [1.0, 0.0, 0.0]}),
    )
    .await
    .assert_error(409, "needs_reauth");
    assert_eq!(w.conduit.status(&w.token, &q).await, "NEEDS_REAUTH");
    for body in w.conduit.bodies() {
        assert!(!body.contains(GOOD_KEY), "{body}");
    }
}
