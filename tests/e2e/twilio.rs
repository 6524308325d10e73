//! The Twilio connector (Rust) end to end against a fake Twilio: `sms.send@1` as a form
//! POST with HTTP basic auth, Twilio's error object, and 20003 needing a reconnect.

use crate::support::fake_twilio::{FakeTwilio, ACCOUNT_SID, AUTH_TOKEN};
use crate::support::{doc, Conduit, PluginDecl};
use serde_json::json;
use std::net::SocketAddr;

async fn start() -> (Conduit, FakeTwilio, SocketAddr, String, String) {
    let (fake, addr) = FakeTwilio::start().await;
    let conduit = Conduit::start(vec![
        PluginDecl::new("twilio", "conduit_twilio").allow(&[&addr.to_string()])
    ])
    .await;
    let tenant = conduit.tenant("acme").await;
    let id = conduit
        .connection(
            &tenant,
            json!({"connector": "twilio", "environment": "production", "config": {"baseUrl": format!("http://{addr}")}}),
        )
        .await;
    credential(&conduit, &tenant, &id, AUTH_TOKEN).await;
    (conduit, fake, addr, tenant, id)
}

async fn credential(conduit: &Conduit, tenant: &str, id: &str, token: &str) {
    let r = conduit
        .put(
            &format!("/api/connections/{id}/credential"),
            tenant,
            doc(
                "credentials",
                json!({"kind": "api_key", "apiKey": ACCOUNT_SID, "apiSecret": token}),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn sms_send_posts_twilios_form_with_basic_auth() {
    let (conduit, fake, _addr, tenant, id) = start().await;
    let sent = conduit
        .execute(
            &tenant,
            &id,
            "sms.send",
            json!({"to": "+15558675310", "from": "+15005550006", "body": "Your code is 123456"}),
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    let out = sent.output();
    assert!(out["id"].as_str().unwrap().starts_with("SM"), "{out}");
    assert_eq!(out["status"], "queued");
    let request = fake.received().pop().unwrap();
    assert_eq!(
        request.path,
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
    );
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(request.field("To").as_deref(), Some("+15558675310"));
    assert_eq!(request.field("From").as_deref(), Some("+15005550006"));
    assert_eq!(
        request.field("Body").as_deref(),
        Some("Your code is 123456")
    );
    assert_eq!(
        request.basic(),
        Some((ACCOUNT_SID.to_owned(), AUTH_TOKEN.to_owned()))
    );
    assert_eq!(fake.messages().len(), 1);

    let health = conduit
        .post(&format!("/api/connections/{id}/health"), &tenant, json!({}))
        .await;
    assert_eq!(health.body["healthy"], true, "{}", health.body);
}

#[tokio::test]
async fn twilio_errors_carry_twilios_code_and_20003_needs_reauth() {
    let (conduit, fake, _addr, tenant, id) = start().await;
    let r = conduit
        .execute(
            &tenant,
            &id,
            "sms.send",
            json!({"to": "not-a-number", "from": "+15005550006", "body": "hi"}),
        )
        .await;
    r.assert_error(502, "provider_error");
    let meta = &r.body["errors"][0]["meta"];
    assert_eq!(meta["providerStatus"], 400);
    assert_eq!(meta["providerCode"], "21211");
    assert!(r.text.contains("Invalid 'To' Phone Number"), "{}", r.text);

    fake.set_rate_limited(true);
    let r = conduit
        .execute(
            &tenant,
            &id,
            "sms.send",
            json!({"to": "+15558675310", "from": "+15005550006", "body": "hi"}),
        )
        .await;
    r.assert_error(502, "provider_error");
    assert_eq!(r.body["errors"][0]["meta"]["providerCode"], "20429");
    assert_eq!(r.body["errors"][0]["meta"]["retryable"], true);
    fake.set_rate_limited(false);

    credential(&conduit, &tenant, &id, "a-wrong-auth-token").await;
    conduit
        .execute(
            &tenant,
            &id,
            "sms.send",
            json!({"to": "+15558675310", "from": "+15005550006", "body": "hi"}),
        )
        .await
        .assert_error(409, "needs_reauth");
    assert_eq!(conduit.status(&tenant, &id).await, "NEEDS_REAUTH");
    for body in conduit.bodies() {
        assert!(!body.contains(AUTH_TOKEN) && !body.contains("a-wrong-auth-token"));
    }
    assert!(!conduit.logs().contains(AUTH_TOKEN));
}
