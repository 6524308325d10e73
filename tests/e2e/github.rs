//! The GitHub connector, written in JavaScript, end to end against a fake GitHub: every
//! capability, GitHub's error bodies, both kinds of rate limit (with when to retry),
//! revoked tokens, and OAuth (code exchange, expiring tokens, `bad_refresh_token`).

use crate::support::fake_github::{self, FakeGithub, Limit, OWNER, REPO};
use crate::support::{oauth_connection, Conduit};
use serde_json::{json, Value};
use std::net::SocketAddr;

const REDIRECT: &str = "https://app.example.com/oauth/github";

async fn start() -> (Conduit, FakeGithub, SocketAddr) {
    let (fake, addr) = FakeGithub::start().await;
    let client = (fake_github::CLIENT_ID, fake_github::CLIENT_SECRET);
    let conduit = Conduit::start_oauth("github", "conduit_github", addr, client).await;
    (conduit, fake, addr)
}

fn github_connection(addr: SocketAddr) -> Value {
    oauth_connection(
        "github",
        addr,
        "/login/oauth/access_token",
        "/login/oauth/authorize",
    )
}

/// A Conduit with tenant `acme` holding one connection whose tokens the fake accepts,
/// valid for an hour: the tenant's token and the connection's id.
async fn connected() -> (Conduit, FakeGithub, String, String) {
    let (conduit, fake, addr) = start().await;
    let tenant = conduit.tenant("acme").await;
    let id = conduit.connection(&tenant, github_connection(addr)).await;
    fake.add_access_token("ghu_seeded");
    fake.add_refresh_token("ghr_seeded");
    conduit
        .oauth_tokens(&tenant, &id, "ghu_seeded", "ghr_seeded", 3_600_000)
        .await;
    (conduit, fake, tenant, id)
}

#[tokio::test]
async fn every_github_capability_speaks_githubs_wire_format() {
    let (conduit, fake, tenant, id) = connected().await;

    let created = conduit
        .execute(
            &tenant,
            &id,
            "issues.create",
            json!({"owner": OWNER, "repo": REPO, "title": "Checkout fails", "body": "Steps…", "labels": ["bug"]}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let out = created.output();
    assert_eq!(out["number"], 4);
    assert_eq!(
        out["url"],
        format!("https://github.com/{OWNER}/{REPO}/issues/4")
    );
    assert!(out["id"].is_u64());
    let request = fake
        .received()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/issues"))
        .unwrap();
    assert_eq!(request.path, format!("/repos/{OWNER}/{REPO}/issues"));
    assert_eq!(request.bearer(), Some("ghu_seeded"));
    assert_eq!(
        request.header("accept"),
        Some("application/vnd.github+json")
    );
    assert_eq!(request.header("x-github-api-version"), Some("2022-11-28"));
    assert_eq!(
        request.json(),
        json!({"title": "Checkout fails", "body": "Steps…", "labels": ["bug"]})
    );

    // Pull requests are not issues; closed ones only when asked.
    let listed = conduit
        .execute(
            &tenant,
            &id,
            "issues.list",
            json!({"owner": OWNER, "repo": REPO}),
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let titles: Vec<&str> = listed.output()["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Found a bug", "Checkout fails"]);
    assert_eq!(
        listed.output()["issues"][0],
        json!({"number": 1, "title": "Found a bug", "state": "open", "url": format!("https://github.com/{OWNER}/{REPO}/issues/1")})
    );
    let closed = conduit
        .execute(
            &tenant,
            &id,
            "issues.list",
            json!({"owner": OWNER, "repo": REPO, "state": "closed", "limit": 5}),
        )
        .await;
    assert_eq!(closed.output()["issues"][0]["title"], "Docs typo");
    let list_request = fake
        .received()
        .into_iter()
        .rev()
        .find(|r| r.method == "GET" && r.path.ends_with("/issues"))
        .unwrap();
    assert_eq!(list_request.query_param("per_page"), Some("5"));

    let repo = conduit
        .execute(
            &tenant,
            &id,
            "repos.get",
            json!({"owner": OWNER, "repo": REPO}),
        )
        .await;
    assert_eq!(repo.status, 200, "{}", repo.body);
    assert_eq!(
        repo.output(),
        &json!({"id": fake_github::REPO_ID, "fullName": format!("{OWNER}/{REPO}"), "private": false, "defaultBranch": "main"})
    );

    let health = conduit
        .post(&format!("/api/connections/{id}/health"), &tenant, json!({}))
        .await;
    assert_eq!(health.body["healthy"], true, "{}", health.body);
    assert_eq!(health.body["detail"], "authenticated as octocat");
}

#[tokio::test]
async fn github_errors_and_rate_limits_become_typed_answers() {
    let (conduit, fake, tenant, id) = connected().await;

    let r = conduit
        .execute(
            &tenant,
            &id,
            "repos.get",
            json!({"owner": OWNER, "repo": "nope"}),
        )
        .await;
    r.assert_error(502, "provider_error");
    assert_eq!(r.body["errors"][0]["meta"]["providerStatus"], 404);
    assert_eq!(r.body["errors"][0]["meta"]["providerCode"], "not_found");
    assert!(
        r.text.contains("Not Found"),
        "GitHub's message is kept: {}",
        r.text
    );

    let r = conduit
        .execute(
            &tenant,
            &id,
            "issues.create",
            json!({"owner": OWNER, "repo": REPO, "title": "   "}),
        )
        .await;
    r.assert_error(502, "provider_error");
    assert_eq!(r.body["errors"][0]["meta"]["providerStatus"], 422);
    assert_eq!(
        r.body["errors"][0]["meta"]["providerCode"],
        "validation_failed"
    );
    assert!(r.text.contains("Validation Failed"), "{}", r.text);

    // The primary limit: retry at X-RateLimit-Reset.
    fake.set_limit(Some(Limit::Primary(120)));
    let r = conduit
        .execute(
            &tenant,
            &id,
            "repos.get",
            json!({"owner": OWNER, "repo": REPO}),
        )
        .await;
    r.assert_error(502, "provider_error");
    let meta = &r.body["errors"][0]["meta"];
    assert_eq!(
        (meta["providerStatus"].as_u64(), meta["retryable"].as_bool()),
        (Some(403), Some(true))
    );
    assert_eq!(meta["providerCode"], "rate_limited");
    let wait = meta["retryAfterMs"].as_u64().unwrap();
    assert!((110_000..=121_000).contains(&wait), "{wait}");
    let header: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((110..=121).contains(&header), "{header}");

    // A secondary limit: retry after Retry-After.
    fake.set_limit(Some(Limit::Secondary(45)));
    let r = conduit
        .execute(
            &tenant,
            &id,
            "issues.list",
            json!({"owner": OWNER, "repo": REPO}),
        )
        .await;
    r.assert_error(502, "provider_error");
    assert_eq!(r.body["errors"][0]["meta"]["retryAfterMs"], 45_000);
    assert_eq!(r.headers["retry-after"], "45");
    fake.set_limit(None);

    // 401: the connection needs a reconnect.
    fake.expire_access_tokens();
    conduit
        .execute(
            &tenant,
            &id,
            "repos.get",
            json!({"owner": OWNER, "repo": REPO}),
        )
        .await
        .assert_error(409, "needs_reauth");
    assert_eq!(conduit.status(&tenant, &id).await, "NEEDS_REAUTH");
    assert!(!conduit.logs().contains("ghu_seeded"));
}

#[tokio::test]
async fn github_oauth_exchanges_codes_and_refreshes_expiring_tokens() {
    let (conduit, fake, addr) = start().await;
    let tenant = conduit.tenant("acme").await;
    let id = conduit.connection(&tenant, github_connection(addr)).await;

    // A code GitHub does not know is its `bad_verification_code`, answered with 200.
    let (_, state) = conduit.consent(&tenant, &id, REDIRECT).await;
    conduit
        .oauth_callback("forged", &state)
        .await
        .assert_error(400, "invalid_grant");

    let (_, state) = conduit.consent(&tenant, &id, REDIRECT).await;
    let code = fake.issue_code();
    let done = conduit.oauth_callback(&code, &state).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["data"]["attributes"]["status"], "ACTIVE");
    let exchange = fake.token_requests().pop().unwrap();
    assert_eq!(exchange.header("accept"), Some("application/json"));
    assert_eq!(exchange.field("code").as_deref(), Some(code.as_str()));
    assert_eq!(exchange.field("redirect_uri").as_deref(), Some(REDIRECT));

    let vended = conduit.vend(&tenant, &id).await;
    let access = vended.body["data"]["attributes"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(access.starts_with("ghu_") && fake.live_access_tokens().contains(&access));
    let repo = conduit
        .execute(
            &tenant,
            &id,
            "repos.get",
            json!({"owner": OWNER, "repo": REPO}),
        )
        .await;
    assert_eq!(repo.status, 200, "{}", repo.body);

    // An expiring user token is refreshed on read near expiry.
    fake.add_refresh_token("ghr_near_expiry");
    conduit
        .oauth_tokens(&tenant, &id, &access, "ghr_near_expiry", 60_000)
        .await;
    let refreshed = conduit.vend(&tenant, &id).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    let refresh = fake.token_requests().pop().unwrap();
    assert_eq!(
        refresh.field("grant_type").as_deref(),
        Some("refresh_token")
    );
    assert_eq!(
        refresh.field("refresh_token").as_deref(),
        Some("ghr_near_expiry")
    );
    assert_ne!(
        refreshed.body["data"]["attributes"]["accessToken"],
        json!(access)
    );

    // `bad_refresh_token` needs a reconnect.
    conduit
        .oauth_tokens(&tenant, &id, "ghu_old", "ghr_dead", 60_000)
        .await;
    conduit
        .vend(&tenant, &id)
        .await
        .assert_error(409, "needs_reauth");
    assert_eq!(conduit.status(&tenant, &id).await, "NEEDS_REAUTH");
    for body in conduit.bodies() {
        assert!(!body.contains(fake_github::CLIENT_SECRET));
    }
}
