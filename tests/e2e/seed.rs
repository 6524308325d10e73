//! The seed's document shapes, from `tests/fixtures/seed/`: a blueprint whose
//! `workflows` is an object keyed by id, IntegrationConnections that name their
//! connector by `integrationKey` and carry the fields Conduit assigns, a tenant config
//! with `meta.version` and `meta.status`, and the sandbox/production pair. Only what a
//! test cannot keep is changed: provider base URLs point at the loopback fakes, and the
//! seed's connection ids are mapped to the ids Conduit assigned.

use crate::binding::World;
use crate::support::doc;
use crate::support::fake_postmark;
use crate::support::fake_stripe::GOOD_KEY as STRIPE_KEY;
use serde_json::{json, Value};
use std::collections::HashMap;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/../tests/fixtures/seed/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The seed's ids replaced by the assigned ones, wherever a `connectionId` appears.
fn map_ids(config: &mut Value, ids: &HashMap<String, String>) {
    for binding in config["integrations"].as_array_mut().unwrap() {
        let seed = binding["connectionId"].as_str().unwrap().to_owned();
        binding["connectionId"] = json!(ids[&seed]);
    }
}

#[tokio::test]
async fn the_seed_documents_are_accepted_as_written() {
    let w = World::start().await;
    let admin = w.conduit.admin_token.clone();
    let r = w
        .conduit
        .put(
            "/admin/blueprints/invoice-app/versions/2",
            &admin,
            fixture("blueprint.json"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);

    // One connection as the seed writes it.
    let mut one = fixture("connection.json");
    one["config"]["baseUrl"] = json!(w.stripe_prod_base);
    let r = w
        .conduit
        .post("/api/connections", &w.token, doc("connections", one))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let a = &r.body["data"]["attributes"];
    assert_eq!(
        (a["connector"].as_str(), a["status"].as_str()),
        (Some("stripe"), Some("ACTIVE"))
    );
    assert_ne!(
        r.body["data"]["id"], "conn_stripe_live",
        "ids are Conduit's to assign"
    );

    // The multi-integration list: every connection, then its key.
    let r = w
        .conduit
        .get(
            &format!("/api/connections/{}", w.conn.postmark_prod),
            &w.token,
        )
        .await;
    let postmark_base = r.body["data"]["attributes"]["config"]["baseUrl"].clone();
    let mut ids = HashMap::new();
    for mut connection in fixture("integrations.json").as_array().unwrap().clone() {
        let seed_id = connection["id"].as_str().unwrap().to_owned();
        let stripe = connection["integrationKey"] == "payments.stripe";
        connection["config"]["baseUrl"] = if stripe {
            json!(w.stripe_prod_base)
        } else {
            postmark_base.clone()
        };
        let r = w
            .conduit
            .post("/api/connections", &w.token, doc("connections", connection))
            .await;
        assert_eq!(r.status, 201, "{seed_id}: {}", r.text);
        let id = r.body["data"]["id"].as_str().unwrap().to_owned();
        let key = if stripe {
            STRIPE_KEY
        } else {
            fake_postmark::GOOD_TOKEN
        };
        w.conduit.api_key(&w.token, &id, key).await;
        ids.insert(seed_id, id);
    }

    // A config as the seed writes it (its own version and status are Conduit's to set).
    let mut draft = fixture("tenant-config.json");
    map_ids(&mut draft, &ids);
    let r = w.conduit.post("/api/tenant-configs", &w.token, draft).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["data"]["attributes"]["meta"]["status"], "draft");

    // The sandbox/production pair, published, routes by environment.
    for mut config in fixture("sandbox-production.json")
        .as_array()
        .unwrap()
        .clone()
    {
        map_ids(&mut config, &ids);
        let environment = config["meta"]["environment"].as_str().unwrap().to_owned();
        let r = w
            .conduit
            .post("/api/tenant-configs", &w.token, config)
            .await;
        assert_eq!(r.status, 201, "{environment}: {}", r.text);
        let version = r.body["data"]["attributes"]["meta"]["version"]
            .as_u64()
            .unwrap();
        let path =
            format!("/api/tenant-configs/invoice-app/{environment}/versions/{version}/publish");
        let r = w.conduit.post(&path, &w.token, json!({})).await;
        assert_eq!(r.status, 200, "{environment}: {}", r.text);
    }
    for (environment, seed_id) in [
        ("production", "conn_stripe_live"),
        ("sandbox", "conn_stripe_test"),
    ] {
        let r = w
            .conduit
            .post(
                "/api/capabilities/payments.createPaymentIntent/execute",
                &w.token,
                doc(
                    "executions",
                    json!({"blueprint": "invoice-app", "environment": environment, "workflow": "checkout",
                           "input": {"amount": 1200, "currency": "eur"}}),
                ),
            )
            .await;
        assert_eq!(r.status, 200, "{environment}: {}", r.text);
        assert_eq!(
            r.body["data"]["attributes"]["connectionId"],
            json!(ids[seed_id])
        );
    }
}

#[tokio::test]
async fn a_seed_connection_for_another_tenant_or_an_unknown_integration_is_refused() {
    let w = World::start().await;
    let mut foreign = fixture("connection.json");
    foreign["tenantId"] = json!("globex");
    w.conduit
        .post("/api/connections", &w.token, doc("connections", foreign))
        .await
        .assert_error(422, "tenant_mismatch");
    let mut unknown = fixture("connection.json");
    unknown["integrationKey"] = json!("payments.unknown");
    w.conduit
        .post("/api/connections", &w.token, doc("connections", unknown))
        .await
        .assert_error(422, "unknown_connector");
    let mut disagreeing = fixture("connection.json");
    disagreeing["connector"] = json!("postmark");
    w.conduit
        .post(
            "/api/connections",
            &w.token,
            doc("connections", disagreeing),
        )
        .await
        .assert_error(422, "invalid_attributes");
    let mut other_version = fixture("connection.json");
    other_version["integrationVersion"] = json!(9);
    w.conduit
        .post(
            "/api/connections",
            &w.token,
            doc("connections", other_version),
        )
        .await
        .assert_error(422, "unknown_connector");
}
