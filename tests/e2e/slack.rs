//! The Slack connector, written in Python, end to end against a fake Slack: both
//! capabilities, Slack's `ok: false` errors, rate limits, revoked tokens, and OAuth
//! (code exchange and rotating refresh tokens).

use crate::support::fake_slack::{self, FakeSlack, CHANNELS};
use crate::support::{oauth_connection, Conduit};
use serde_json::{json, Value};
use std::net::SocketAddr;

const REDIRECT: &str = "https://app.example.com/oauth/slack";

async fn start() -> (Conduit, FakeSlack, SocketAddr) {
    let (fake, addr) = FakeSlack::start().await;
    let client = (fake_slack::CLIENT_ID, fake_slack::CLIENT_SECRET);
    let conduit = Conduit::start_oauth("slack", "conduit_slack", addr, client).await;
    (conduit, fake, addr)
}

fn slack_connection(addr: SocketAddr) -> Value {
    oauth_connection("slack", addr, "/api/oauth.v2.access", "/oauth/v2/authorize")
}

/// A Conduit with tenant `acme` holding one connection whose tokens the fake accepts,
/// valid for an hour: the tenant's token and the connection's id.
async fn connected() -> (Conduit, FakeSlack, String, String) {
    let (conduit, fake, addr) = start().await;
    let tenant = conduit.tenant("acme").await;
    let id = conduit.connection(&tenant, slack_connection(addr)).await;
    fake.add_access_token("xoxe.xoxb-seeded");
    fake.add_refresh_token("xoxe-1-seeded");
    conduit
        .oauth_tokens(&tenant, &id, "xoxe.xoxb-seeded", "xoxe-1-seeded", 3_600_000)
        .await;
    (conduit, fake, tenant, id)
}

#[tokio::test]
async fn every_slack_capability_speaks_slacks_wire_format() {
    let (conduit, fake, tenant, id) = connected().await;

    let posted = conduit
        .execute(
            &tenant,
            &id,
            "chat.postMessage",
            json!({"channel": "C0003DEPLOYS", "text": "Deploy finished ✅", "threadTs": "1699999999.000001"}),
        )
        .await;
    assert_eq!(posted.status, 200, "{}", posted.body);
    assert_eq!(posted.output()["channel"], "C0003DEPLOYS");
    assert!(posted.output()["ts"]
        .as_str()
        .unwrap()
        .starts_with("1700000000."));
    let sent = fake.posted().pop().expect("the fake received the message");
    assert_eq!(
        sent,
        json!({"channel": "C0003DEPLOYS", "text": "Deploy finished ✅", "thread_ts": "1699999999.000001"})
    );
    let request = fake
        .received()
        .into_iter()
        .find(|r| r.path == "/api/chat.postMessage")
        .unwrap();
    assert_eq!(request.bearer(), Some("xoxe.xoxb-seeded"));

    // Two pages of channels, the cursor passed back as Slack gave it.
    let first = conduit
        .execute(&tenant, &id, "conversations.list", json!({"limit": 3}))
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let names = |r: &crate::support::Resp| -> Vec<String> {
        r.output()["channels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&first), ["general", "random", "deploys"]);
    let cursor = first.output()["nextCursor"].as_str().expect("a next page");
    let second = conduit
        .execute(
            &tenant,
            &id,
            "conversations.list",
            json!({"limit": 3, "cursor": cursor}),
        )
        .await;
    assert_eq!(names(&second), ["support", "sales"]);
    assert!(
        second.output().get("nextCursor").is_none(),
        "{}",
        second.body
    );
    assert_eq!(second.output()["channels"][0]["id"], CHANNELS[3].0);

    let health = conduit
        .post(&format!("/api/connections/{id}/health"), &tenant, json!({}))
        .await;
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.body["healthy"], true, "{}", health.body);
}

#[tokio::test]
async fn slack_errors_become_typed_answers() {
    let (conduit, fake, tenant, id) = connected().await;

    // `ok: false` with HTTP 200: a provider error carrying Slack's error string.
    let r = conduit
        .execute(
            &tenant,
            &id,
            "chat.postMessage",
            json!({"channel": "C404", "text": "hi"}),
        )
        .await;
    r.assert_error(502, "provider_error");
    assert_eq!(
        r.body["errors"][0]["meta"]["providerCode"],
        "channel_not_found"
    );
    assert_eq!(r.body["errors"][0]["meta"]["retryable"], false);

    // Contract validation happens before Slack is called.
    let before = fake.received().len();
    conduit
        .execute(
            &tenant,
            &id,
            "chat.postMessage",
            json!({"text": "no channel"}),
        )
        .await
        .assert_error(422, "invalid_input");
    assert_eq!(fake.received().len(), before);

    // 429 with Retry-After: retryable, and the caller learns when.
    fake.set_rate_limited(true);
    let r = conduit
        .execute(&tenant, &id, "conversations.list", json!({}))
        .await;
    r.assert_error(502, "provider_error");
    let meta = &r.body["errors"][0]["meta"];
    assert_eq!(meta["providerCode"], "ratelimited");
    assert_eq!(meta["providerStatus"], 429);
    assert_eq!(meta["retryable"], true);
    assert_eq!(meta["retryAfterMs"], 30_000);
    assert_eq!(r.headers["retry-after"], "30");
    fake.set_rate_limited(false);

    // A revoked token: the connection needs a reconnect.
    fake.revoke("xoxe.xoxb-seeded");
    conduit
        .execute(
            &tenant,
            &id,
            "chat.postMessage",
            json!({"channel": "general", "text": "hi"}),
        )
        .await
        .assert_error(409, "needs_reauth");
    assert_eq!(conduit.status(&tenant, &id).await, "NEEDS_REAUTH");

    // Tokens never reach a response or a log line.
    for body in conduit.bodies() {
        assert!(!body.contains("xoxe.xoxb-seeded") && !body.contains("xoxe-1-seeded"));
    }
    assert!(!conduit.logs().contains("xoxe.xoxb-seeded"));
}

#[tokio::test]
async fn every_needs_reauth_error_of_slack_flips_the_connection() {
    let (conduit, fake, addr) = start().await;
    let tenant = conduit.tenant("acme").await;
    for error in [
        "invalid_auth",
        "token_revoked",
        "token_expired",
        "account_inactive",
    ] {
        let id = conduit.connection(&tenant, slack_connection(addr)).await;
        let token = format!("xoxb-{error}");
        conduit
            .oauth_tokens(&tenant, &id, &token, "xoxe-1-x", 3_600_000)
            .await;
        // An unknown token is `invalid_auth` without asking.
        if error != "invalid_auth" {
            fake.refuse(&token, error);
        }
        conduit
            .execute(&tenant, &id, "conversations.list", json!({}))
            .await
            .assert_error(409, "needs_reauth");
        assert_eq!(
            conduit.status(&tenant, &id).await,
            "NEEDS_REAUTH",
            "{error}"
        );
    }
    // Any other `ok: false` leaves the connection alone.
    let id = conduit.connection(&tenant, slack_connection(addr)).await;
    fake.add_access_token("xoxb-fine");
    conduit
        .oauth_tokens(&tenant, &id, "xoxb-fine", "xoxe-1-y", 3_600_000)
        .await;
    conduit
        .execute(
            &tenant,
            &id,
            "chat.postMessage",
            json!({"channel": "nope", "text": "x"}),
        )
        .await
        .assert_error(502, "provider_error");
    assert_eq!(conduit.status(&tenant, &id).await, "ACTIVE");
}

#[tokio::test]
async fn slack_oauth_exchanges_codes_and_rotates_refresh_tokens() {
    let (conduit, fake, addr) = start().await;
    let tenant = conduit.tenant("acme").await;
    let id = conduit.connection(&tenant, slack_connection(addr)).await;

    // A code Slack does not know (`invalid_code`) is the callback's `invalid_grant`.
    let (_, state) = conduit.consent(&tenant, &id, REDIRECT).await;
    conduit
        .oauth_callback("forged", &state)
        .await
        .assert_error(400, "invalid_grant");
    let (consent, state) = conduit.consent(&tenant, &id, REDIRECT).await;
    assert_eq!(consent.path(), "/oauth/v2/authorize");
    let code = fake.issue_code(REDIRECT);
    let done = conduit.oauth_callback(&code, &state).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["data"]["attributes"]["status"], "ACTIVE");
    let exchange = fake.token_requests().pop().unwrap();
    assert_eq!(exchange.field("code").as_deref(), Some(code.as_str()));
    assert_eq!(exchange.field("redirect_uri").as_deref(), Some(REDIRECT));
    assert_eq!(
        exchange.field("client_id").as_deref(),
        Some(fake_slack::CLIENT_ID)
    );

    // The exchanged bot token works, and its expiry (12 h) was kept.
    let vended = conduit.vend(&tenant, &id).await;
    assert_eq!(vended.status, 200, "{}", vended.body);
    let first = vended.body["data"]["attributes"].clone();
    let access = first["accessToken"].as_str().unwrap().to_owned();
    assert!(fake.live_access_tokens().contains(&access));
    assert!(first["expiresAt"].is_string(), "{first}");
    let posted = conduit
        .execute(
            &tenant,
            &id,
            "chat.postMessage",
            json!({"channel": "general", "text": "hello"}),
        )
        .await;
    assert_eq!(posted.status, 200, "{}", posted.body);

    // Near expiry, a vend rotates: a new access token and a new refresh token, the old
    // refresh token dead at Slack and replaced in the vault.
    fake.add_refresh_token("xoxe-1-about-to-rotate");
    conduit
        .oauth_tokens(&tenant, &id, &access, "xoxe-1-about-to-rotate", 60_000)
        .await;
    let rotated = conduit.vend(&tenant, &id).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let rotated = &rotated.body["data"]["attributes"];
    let refresh = fake.token_requests().pop().unwrap();
    assert_eq!(
        refresh.field("grant_type").as_deref(),
        Some("refresh_token")
    );
    assert_eq!(
        refresh.field("refresh_token").as_deref(),
        Some("xoxe-1-about-to-rotate")
    );
    assert_ne!(rotated["accessToken"], json!(access));
    let live = fake.live_refresh_tokens();
    assert!(!live.contains("xoxe-1-about-to-rotate"));
    assert!(live.contains(rotated["refreshToken"].as_str().unwrap()));

    // A dead refresh token (`invalid_refresh_token`) needs a reconnect.
    conduit
        .oauth_tokens(&tenant, &id, "xoxb-old", "xoxe-1-dead", 60_000)
        .await;
    conduit
        .vend(&tenant, &id)
        .await
        .assert_error(409, "needs_reauth");
    assert_eq!(conduit.status(&tenant, &id).await, "NEEDS_REAUTH");
    for body in conduit.bodies() {
        assert!(!body.contains(fake_slack::CLIENT_SECRET));
    }
}
