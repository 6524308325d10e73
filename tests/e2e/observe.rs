//! Observability: `GET /metrics` in Prometheus text format and `GET /readyz`.

use crate::support::Conduit;
use serde_json::json;

/// The value of the sample of `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

async fn scrape(conduit: &Conduit) -> String {
    let r = conduit.get("/metrics", "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let kind = r.headers["content-type"].to_str().unwrap();
    assert!(kind.starts_with("text/plain"), "{kind}");
    r.text
}

#[tokio::test]
async fn metrics_count_calls_by_connector_capability_and_outcome() {
    let (conduit, _fake, token, connection) = crate::stripe::setup().await;
    let create = "payments.createPaymentIntent";
    let ok = conduit
        .execute(
            &token,
            &connection,
            create,
            json!({"amount": 2000, "currency": "usd"}),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    conduit
        .execute(&token, &connection, create, json!({"amount": "lots"}))
        .await
        .assert_error(422, "invalid_input");
    // A capability no connector offers is counted, but not under the caller's name.
    conduit
        .execute(&token, &connection, "payments.rm-rf-slash", json!({}))
        .await
        .assert_error(422, "unsupported_capability");

    let text = scrape(&conduit).await;
    let executions = "conduit_executions_total";
    let ok_label = format!("capability=\"{create}\"");
    let labels = ["connector=\"stripe\"", ok_label.as_str(), "outcome=\"ok\""];
    assert_eq!(sample(&text, executions, &labels), Some(1.0), "{text}");
    let refused = [
        "connector=\"stripe\"",
        ok_label.as_str(),
        "outcome=\"invalid_input\"",
    ];
    assert_eq!(sample(&text, executions, &refused), Some(1.0), "{text}");
    let unknown = [
        "capability=\"unknown\"",
        "outcome=\"unsupported_capability\"",
    ];
    assert_eq!(sample(&text, executions, &unknown), Some(1.0), "{text}");
    assert!(!text.contains("rm-rf-slash"), "{text}");

    // Latency histograms: the call and its one provider request.
    let bucket = "conduit_execute_duration_seconds_count";
    assert!(
        sample(&text, bucket, &["connector=\"stripe\""]).unwrap() >= 3.0,
        "{text}"
    );
    let provider = "conduit_provider_request_duration_seconds_count";
    assert!(
        sample(&text, provider, &["connector=\"stripe\""]).unwrap() >= 1.0,
        "{text}"
    );
    assert!(
        text.contains("conduit_execute_duration_seconds_bucket{"),
        "{text}"
    );

    // State gauges.
    let active = sample(&text, "conduit_connections", &["status=\"ACTIVE\""]);
    assert_eq!(active, Some(1.0), "{text}");
    let capacity = sample(&text, "conduit_pool_instances_capacity", &[]);
    assert_eq!(capacity, Some(256.0), "{text}");
    assert_eq!(
        sample(&text, "conduit_pool_instances_in_use", &[]),
        Some(0.0)
    );
    assert!(
        sample(&text, "conduit_audit_queue_depth", &[]).is_some(),
        "{text}"
    );
    assert_eq!(
        sample(&text, "conduit_webhook_deliveries_pending", &[]),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "conduit_scheduler_lag_seconds", &[]),
        Some(0.0)
    );
    let loads = sample(&text, "conduit_plugin_loads_total", &["origin="]);
    assert!(loads.unwrap() >= 1.0, "{text}");

    // Nothing secret: not the API key, not the tenant's token.
    assert!(!text.contains(crate::support::fake_stripe::GOOD_KEY));
    assert!(!text.contains(&token));
}

#[tokio::test]
async fn readyz_answers_ready_once_store_vault_and_catalog_are() {
    let (conduit, _fake, _token, _connection) = crate::stripe::setup().await;
    let r = conduit.get("/readyz", "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, json!({"status": "ready"}));
}
