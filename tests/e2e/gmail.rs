//! The Gmail connector and the OAuth authorization-code flow against a fake Google:
//! Google's token endpoint (form POST, PKCE, `invalid_grant`) and the Gmail API's
//! wire format (base64url RFC 2822 messages, `format=full` payloads).

use crate::support::fake_google::{self, FakeGoogle, SEEDED_MESSAGE_IDS};
use crate::support::{doc, gmail_connection, gmail_env, gmail_plugin, Conduit, PluginDecl};
use serde_json::json;
use std::net::SocketAddr;

const REDIRECT: &str = "https://app.example.com/oauth/done";

async fn start(env: &[(&'static str, String)]) -> (Conduit, FakeGoogle, SocketAddr) {
    let (fake, addr) = fake_google::start().await;
    let conduit = Conduit::start_env(
        vec![
            gmail_plugin(addr),
            PluginDecl::new("stripe", "conduit_stripe"),
        ],
        &gmail_env(env),
    )
    .await;
    (conduit, fake, addr)
}

/// A connection with a seeded, valid access token.
async fn connected(conduit: &Conduit, fake: &FakeGoogle, addr: SocketAddr, tenant: &str) -> String {
    let id = conduit
        .connection(tenant, gmail_connection(addr, "managed"))
        .await;
    fake.add_access_token("ya29.seeded-access");
    fake.add_refresh_token("1//seeded-refresh");
    conduit
        .oauth_tokens(
            tenant,
            &id,
            "ya29.seeded-access",
            "1//seeded-refresh",
            3_600_000,
        )
        .await;
    id
}

#[tokio::test]
async fn every_gmail_capability_speaks_the_gmail_wire_format() {
    let (conduit, fake, addr) = start(&[]).await;
    let tenant = conduit.tenant("acme").await;
    let id = connected(&conduit, &fake, addr, &tenant).await;

    let sent = conduit
        .execute(
            &tenant,
            &id,
            "email.send",
            json!({
                "to": ["ada@example.org"],
                "cc": ["grace@example.org"],
                "subject": "Réunion demain",
                "text": "See you at ten.",
                "html": "<p>See you at <b>ten</b>.</p>",
            }),
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert!(sent.output()["messageId"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    let raw = fake
        .sent_messages()
        .pop()
        .expect("the fake received the message");
    assert!(raw.contains("To: ada@example.org"), "{raw}");
    assert!(raw.contains("Cc: grace@example.org"), "{raw}");
    assert!(
        raw.contains("Subject: =?UTF-8?B?"),
        "non-ASCII subjects are RFC 2047: {raw}"
    );
    assert!(raw.contains("multipart/alternative"), "{raw}");
    let request = fake
        .received()
        .into_iter()
        .find(|r| r.path.ends_with("/messages/send"))
        .unwrap();
    assert_eq!(
        request.header("authorization"),
        Some("Bearer ya29.seeded-access")
    );

    let listed = conduit
        .execute(&tenant, &id, "email.listMessages", json!({"limit": 2}))
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let messages = listed.output()["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert!(messages[0]["id"].is_string() && messages[0]["threadId"].is_string());
    let next = listed.output()["nextPageToken"]
        .as_str()
        .expect("a next page");
    let page2 = conduit
        .execute(
            &tenant,
            &id,
            "email.listMessages",
            json!({"limit": 2, "pageToken": next}),
        )
        .await;
    assert_eq!(page2.status, 200, "{}", page2.body);
    let list_request = fake
        .received()
        .into_iter()
        .find(|r| r.path == "/gmail/v1/users/me/messages")
        .unwrap();
    assert_eq!(list_request.query_param("maxResults"), Some("2"));

    let message = conduit
        .execute(
            &tenant,
            &id,
            "email.getMessage",
            json!({"id": SEEDED_MESSAGE_IDS[0]}),
        )
        .await;
    assert_eq!(message.status, 200, "{}", message.body);
    let out = message.output();
    assert_eq!(out["id"], SEEDED_MESSAGE_IDS[0]);
    assert_eq!(out["subject"], "Invoice for December");
    assert!(out["from"].as_str().unwrap().contains("alice@example.org"));
    assert!(out["text"]
        .as_str()
        .unwrap()
        .contains("the invoice is attached"));
    assert!(out["html"].as_str().unwrap().contains("<b>attached</b>"));
    assert_eq!(out["receivedAt"], "2024-01-01T09:00:00Z");

    let health = conduit
        .post(&format!("/api/connections/{id}/health"), &tenant, json!({}))
        .await;
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.body["healthy"], true);
    assert_eq!(health.body["detail"], fake_google::EMAIL);
}

#[tokio::test]
async fn bad_gmail_inputs_are_refused_before_google_is_called() {
    let (conduit, fake, addr) = start(&[]).await;
    let tenant = conduit.tenant("acme").await;
    let id = connected(&conduit, &fake, addr, &tenant).await;
    let cases = [
        (
            "email.send",
            json!({"subject": "no recipient", "text": "x"}),
        ),
        ("email.send", json!({"to": [], "text": "x"})),
        (
            "email.send",
            json!({"to": ["a@example.org"], "subject": "x\r\nBcc: evil@example.org", "text": "x", "headers": {"To": "evil@example.org"}}),
        ),
        ("email.listMessages", json!({"limit": 1000})),
        ("email.getMessage", json!({"id": "../../profile"})),
        ("email.getMessage", json!({})),
    ];
    for (capability, input) in cases {
        let before = fake.received().len();
        let r = conduit
            .execute(&tenant, &id, capability, input.clone())
            .await;
        r.assert_error(422, "invalid_input");
        assert_eq!(
            fake.received().len(),
            before,
            "{capability} {input} reached Google"
        );
    }
    // An unknown message is Google's 404, as a provider error.
    let r = conduit
        .execute(&tenant, &id, "email.getMessage", json!({"id": "ffff0000"}))
        .await;
    r.assert_error(502, "provider_error");
    assert_eq!(r.body["errors"][0]["meta"]["providerStatus"], 404);
    assert_eq!(r.body["errors"][0]["meta"]["providerCode"], "NOT_FOUND");
    // A revoked access token is Google's 401: the connection needs re-authorization.
    fake.expire_access_tokens();
    conduit
        .execute(&tenant, &id, "email.listMessages", json!({}))
        .await
        .assert_error(409, "needs_reauth");
    assert_eq!(conduit.status(&tenant, &id).await, "NEEDS_REAUTH");
}

/// Starts an authorization and returns the consent URL's query.
async fn authorize(conduit: &Conduit, tenant: &str, id: &str) -> Vec<(String, String)> {
    let r = conduit
        .get(
            &format!("/api/connections/{id}/oauth/authorize?redirectUri={REDIRECT}"),
            tenant,
        )
        .await;
    assert_eq!(r.status, 302, "{}", r.body);
    let location = r.headers["location"].to_str().unwrap();
    let url = url::Url::parse(location).unwrap();
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> &'a str {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {query:?}"))
}

async fn callback(conduit: &Conduit, query: &str, token: Option<&str>) -> crate::support::Resp {
    conduit
        .call(
            reqwest::Method::GET,
            &format!("/oauth/callback?{query}"),
            token,
            None,
        )
        .await
}

#[tokio::test]
async fn the_oauth_flow_seals_tokens_and_refuses_bad_states() {
    let (conduit, fake, addr) = start(&[("CONDUIT_OAUTH_STATE_TTL_SECS", "1".into())]).await;
    let tenant = conduit.tenant("acme").await;
    let other = conduit.tenant("globex").await;
    let id = conduit
        .connection(&tenant, gmail_connection(addr, "managed"))
        .await;

    let query = authorize(&conduit, &tenant, &id).await;
    assert_eq!(param(&query, "response_type"), "code");
    assert_eq!(param(&query, "client_id"), fake_google::CLIENT_ID);
    assert_eq!(param(&query, "redirect_uri"), REDIRECT);
    assert!(param(&query, "scope").contains("gmail.send"));
    assert_eq!(param(&query, "code_challenge_method"), "S256");
    assert_eq!(param(&query, "access_type"), "offline");
    assert_eq!(param(&query, "prompt"), "consent");
    let state = param(&query, "state").to_owned();
    let challenge = param(&query, "code_challenge").to_owned();
    assert!(!query
        .iter()
        .any(|(_, v)| v.contains(fake_google::CLIENT_SECRET)));

    // Another tenant cannot complete it (and burns nothing of ours but this state).
    let code = fake.issue_code(REDIRECT, Some(challenge.clone()));
    callback(
        &conduit,
        &format!("code={code}&state={state}"),
        Some(&other),
    )
    .await
    .assert_error(400, "invalid_state");

    // A fresh authorization, completed by the provider's redirect.
    let query = authorize(&conduit, &tenant, &id).await;
    let (state, challenge) = (
        param(&query, "state").to_owned(),
        param(&query, "code_challenge").to_owned(),
    );
    let code = fake.issue_code(REDIRECT, Some(challenge));
    let done = callback(
        &conduit,
        &format!("code={}&state={state}", urlencode(&code)),
        None,
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["data"]["attributes"]["status"], "ACTIVE");
    assert_eq!(
        fake.exchange_requests(),
        1,
        "the other tenant's attempt was refused before any exchange"
    );
    let exchange = fake
        .received()
        .into_iter()
        .rev()
        .find(|r| r.path == "/token")
        .unwrap();
    assert_eq!(exchange.field("grant_type"), Some("authorization_code"));
    assert_eq!(exchange.field("redirect_uri"), Some(REDIRECT));
    let verifier = exchange.field("code_verifier").expect("PKCE verifier sent");
    assert_eq!(verifier.len(), 43);

    // The sealed tokens work against Gmail.
    let vended = conduit.vend(&tenant, &id).await;
    assert_eq!(vended.status, 200, "{}", vended.body);
    let access = vended.body["data"]["attributes"]["accessToken"]
        .as_str()
        .unwrap();
    assert!(fake.valid_access_tokens().contains(&access.to_owned()));
    assert!(vended.body["data"]["attributes"]["refreshToken"].is_string());
    let r = conduit
        .execute(&tenant, &id, "email.listMessages", json!({"limit": 1}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // A state works once.
    callback(&conduit, &format!("code=x&state={state}"), None)
        .await
        .assert_error(400, "invalid_state");
    // Unknown and missing states.
    callback(&conduit, "code=x&state=made-up", None)
        .await
        .assert_error(400, "invalid_state");
    callback(&conduit, "code=x", None)
        .await
        .assert_error(400, "invalid_state");
    // The user declined at the provider.
    let query = authorize(&conduit, &tenant, &id).await;
    callback(
        &conduit,
        &format!("error=access_denied&state={}", param(&query, "state")),
        None,
    )
    .await
    .assert_error(400, "oauth_denied");
    // A code the provider refuses (wrong verifier: the code was issued for another challenge).
    let query = authorize(&conduit, &tenant, &id).await;
    let code = fake.issue_code(REDIRECT, Some("not-the-challenge".into()));
    callback(
        &conduit,
        &format!("code={}&state={}", urlencode(&code), param(&query, "state")),
        None,
    )
    .await
    .assert_error(400, "invalid_grant");
    // An expired state (the TTL is one second here).
    let query = authorize(&conduit, &tenant, &id).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let code = fake.issue_code(REDIRECT, Some(param(&query, "code_challenge").to_owned()));
    callback(
        &conduit,
        &format!("code={}&state={}", urlencode(&code), param(&query, "state")),
        None,
    )
    .await
    .assert_error(400, "invalid_state");

    // Secrets never left through a response other than vend, nor into the logs.
    let logs = conduit.logs();
    for (i, body) in conduit.bodies().iter().enumerate() {
        assert!(
            !body.contains(fake_google::CLIENT_SECRET),
            "response {i} leaks the client secret"
        );
        assert!(
            !body.contains(verifier),
            "response {i} leaks the PKCE verifier"
        );
    }
    for secret in [fake_google::CLIENT_SECRET, verifier, access] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn authorize_refuses_what_it_cannot_start_safely() {
    let (conduit, _fake, addr) = start(&[]).await;
    let tenant = conduit.tenant("acme").await;
    let other = conduit.tenant("globex").await;
    let id = conduit
        .connection(&tenant, gmail_connection(addr, "managed"))
        .await;
    let path = |id: &str, redirect: &str| {
        format!("/api/connections/{id}/oauth/authorize?redirectUri={redirect}")
    };
    conduit
        .get(&path(&id, REDIRECT), &other)
        .await
        .assert_error(404, "not_found");
    conduit
        .get(&format!("/api/connections/{id}/oauth/authorize"), &tenant)
        .await
        .assert_error(422, "invalid_redirect_uri");
    conduit
        .get(&path(&id, "javascript:alert(1)"), &tenant)
        .await
        .assert_error(422, "invalid_redirect_uri");
    let stripe = conduit
        .connection(
            &tenant,
            json!({"connector": "stripe", "environment": "sandbox"}),
        )
        .await;
    conduit
        .get(&path(&stripe, REDIRECT), &tenant)
        .await
        .assert_error(422, "oauth_unsupported");
    // A consent endpoint outside the connector's allowed hosts.
    let mut attributes = gmail_connection(addr, "managed");
    attributes["config"]["authorizeUrl"] = json!("https://evil.example.com/auth");
    let evil = conduit.connection(&tenant, attributes).await;
    conduit
        .get(&path(&evil, REDIRECT), &tenant)
        .await
        .assert_error(422, "endpoint_not_allowed");
    // byok without its own client.
    let byok = conduit
        .connection(&tenant, gmail_connection(addr, "byok"))
        .await;
    conduit
        .get(&path(&byok, REDIRECT), &tenant)
        .await
        .assert_error(422, "oauth_client_missing");
}

/// The deployment lists where an authorization may return, per environment; anything
/// else is refused before a state is stored or the user is sent anywhere.
#[tokio::test]
async fn redirects_outside_the_deployments_allow_list_are_refused() {
    let (conduit, _fake, addr) = start(&[
        (
            "CONDUIT_OAUTH_REDIRECTS_PRODUCTION",
            "https://app.example.com/oauth/*".into(),
        ),
        (
            "CONDUIT_OAUTH_REDIRECTS_SANDBOX",
            "http://localhost:*/**".into(),
        ),
    ])
    .await;
    let tenant = conduit.tenant("acme").await;
    let production = conduit
        .connection(&tenant, gmail_connection(addr, "managed"))
        .await;
    let mut attributes = gmail_connection(addr, "managed");
    attributes["environment"] = json!("sandbox");
    let sandbox = conduit.connection(&tenant, attributes).await;
    let authorize = |id: &str, redirect: &str| {
        format!(
            "/api/connections/{id}/oauth/authorize?redirectUri={}",
            urlencode(redirect)
        )
    };
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let started = |id: &str, redirect: &str| {
        no_redirect
            .get(format!("{}{}", conduit.base, authorize(id, redirect)))
            .bearer_auth(&tenant)
            .send()
    };
    assert_eq!(started(&production, REDIRECT).await.unwrap().status(), 302);
    assert_eq!(
        started(&sandbox, "http://localhost:3000/cb")
            .await
            .unwrap()
            .status(),
        302
    );
    for (id, refused) in [
        (&production, "https://evil.example.net/oauth/done"),
        (
            &production,
            "https://app.example.com.evil.example.net/oauth/done",
        ),
        (&production, "https://app.example.com/oauth/deeper/done"),
        (&production, "http://localhost:3000/cb"),
        (&sandbox, REDIRECT),
    ] {
        let r = conduit.get(&authorize(id, refused), &tenant).await;
        r.assert_error(422, "redirect_not_allowed");
        assert!(r.text.contains("CONDUIT_OAUTH_REDIRECTS_"), "{}", r.text);
    }
}

#[tokio::test]
async fn byok_connections_use_their_own_sealed_client_and_token_urls_stay_inside_allowed_hosts() {
    // The deployment's client is wrong here: only a byok client can work.
    let (conduit, fake, addr) =
        start(&[("CONDUIT_GMAIL_CLIENT_SECRET", "wrong-secret".into())]).await;
    let tenant = conduit.tenant("acme").await;
    let byok = conduit
        .connection(&tenant, gmail_connection(addr, "byok"))
        .await;
    let r = conduit
        .put(
            &format!("/api/connections/{byok}/oauth/client"),
            &tenant,
            doc(
                "oauthClients",
                json!({"clientId": fake_google::CLIENT_ID, "clientSecret": fake_google::CLIENT_SECRET}),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.text.contains(fake_google::CLIENT_SECRET));
    // Sealed: the secret is nowhere in the data directory's files.
    assert_no_plaintext(&conduit.data_dir, fake_google::CLIENT_SECRET);

    fake.add_refresh_token("1//byok-refresh");
    conduit
        .oauth_tokens(&tenant, &byok, "ya29.old", "1//byok-refresh", 60_000)
        .await;
    let vended = conduit.vend(&tenant, &byok).await;
    assert_eq!(vended.status, 200, "{}", vended.body);
    assert_ne!(vended.body["data"]["attributes"]["accessToken"], "ya29.old");

    // A managed connection uses the (wrong) deployment client: a non-retryable
    // provider refusal that must not flip the connection.
    let managed = conduit
        .connection(&tenant, gmail_connection(addr, "managed"))
        .await;
    fake.add_refresh_token("1//managed-refresh");
    conduit
        .oauth_tokens(&tenant, &managed, "ya29.m", "1//managed-refresh", 60_000)
        .await;
    let r = conduit.vend(&tenant, &managed).await;
    assert_eq!(
        r.status, 200,
        "the current token is still valid: {}",
        r.body
    );
    assert_eq!(conduit.status(&tenant, &managed).await, "ACTIVE");

    // A token URL outside the allowed hosts: the client secret goes nowhere.
    let mut attributes = gmail_connection(addr, "byok");
    attributes["config"]["tokenUrl"] = json!("https://collector.evil.example/token");
    let evil = conduit.connection(&tenant, attributes).await;
    conduit
        .put(
            &format!("/api/connections/{evil}/oauth/client"),
            &tenant,
            doc(
                "oauthClients",
                json!({"clientId": fake_google::CLIENT_ID, "clientSecret": fake_google::CLIENT_SECRET}),
            ),
        )
        .await;
    let query = authorize(&conduit, &tenant, &evil).await;
    let code = fake.issue_code(REDIRECT, Some(param(&query, "code_challenge").to_owned()));
    let before = fake.token_requests();
    let r = callback(
        &conduit,
        &format!("code={}&state={}", urlencode(&code), param(&query, "state")),
        None,
    )
    .await;
    assert!(r.status >= 400, "{}", r.body);
    assert_eq!(fake.token_requests(), before);
    let audit = conduit
        .get(&format!("/api/audit?connectionId={evil}"), &tenant)
        .await;
    assert!(audit.text.contains("oauth.exchange"), "{}", audit.text);
    assert!(!audit.text.contains(fake_google::CLIENT_SECRET));

    // Bad client documents.
    for attributes in [
        json!({"clientId": "", "clientSecret": "x"}),
        json!({"clientId": "x"}),
        json!({"clientId": "x", "clientSecret": "y", "extra": 1}),
    ] {
        let r = conduit
            .put(
                &format!("/api/connections/{byok}/oauth/client"),
                &tenant,
                doc("oauthClients", attributes),
            )
            .await;
        assert!(r.status == 422 || r.status == 400, "{}", r.body);
    }
    // Managed connections cannot carry a client.
    conduit
        .put(
            &format!("/api/connections/{managed}/oauth/client"),
            &tenant,
            doc(
                "oauthClients",
                json!({"clientId": "x", "clientSecret": "y"}),
            ),
        )
        .await
        .assert_error(422, "oauth_client_missing");
}

fn assert_no_plaintext(dir: &std::path::Path, secret: &str) {
    for entry in walk(dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{} holds the secret in plaintext",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// An authorization in flight survives a key rotation and the retirement of the old
/// key: rotation re-wraps its sealed PKCE verifier, and the old key cannot be retired
/// while a pending verifier still uses it. (Before, rotate + retire broke the
/// callback with a 500.)
#[tokio::test]
async fn key_rotation_re_wraps_the_verifiers_of_pending_authorizations() {
    let (conduit, fake, addr) = start(&[]).await;
    let (tenant, admin) = (conduit.tenant("acme").await, conduit.admin_token.clone());
    let id = conduit
        .connection(&tenant, gmail_connection(addr, "managed"))
        .await;
    let admin_post = |path: String| {
        let (conduit, admin) = (&conduit, admin.clone());
        async move {
            conduit
                .call(reqwest::Method::POST, &path, Some(&admin), None)
                .await
        }
    };
    let old_key = conduit.get("/admin/vault", &admin).await.body["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let query = authorize(&conduit, &tenant, &id).await;
    let (state, challenge) = (
        param(&query, "state").to_owned(),
        param(&query, "code_challenge").to_owned(),
    );
    let rotated = admin_post("/admin/vault/rotate".into()).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    assert_eq!(rotated.body["data"]["attributes"]["rewrapped"], 1);
    let retired = admin_post(format!("/admin/vault/keys/{old_key}/retire")).await;
    assert_eq!(retired.status, 200, "{}", retired.body);

    let code = fake.issue_code(REDIRECT, Some(challenge));
    let done = callback(
        &conduit,
        &format!("code={}&state={state}", urlencode(&code)),
        None,
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["data"]["attributes"]["status"], "ACTIVE");
}

/// A pending authorization's sealed verifier is a use of its key, as a credential is
/// (so retiring that key is refused like any key in use), and moves with a rotation.
#[tokio::test]
async fn pending_verifiers_count_as_uses_of_their_key() {
    let (conduit, _fake, addr) = start(&[]).await;
    let (tenant, admin) = (conduit.tenant("acme").await, conduit.admin_token.clone());
    let id = conduit
        .connection(&tenant, gmail_connection(addr, "managed"))
        .await;
    let _pending = authorize(&conduit, &tenant, &id).await;
    let keys = conduit.get("/admin/vault", &admin).await;
    let key = &keys.body["data"][0];
    assert_eq!(key["attributes"]["credentials"], 1, "{}", keys.body);
    let key_id = key["id"].as_str().unwrap().to_owned();
    let rotated = conduit
        .call(
            reqwest::Method::POST,
            "/admin/vault/rotate",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(rotated.status, 200);
    // Re-wrapped, so the old key is free now; the new one holds the verifier.
    let keys = conduit.get("/admin/vault", &admin).await;
    let uses = |id: &str| {
        keys.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .map(|k| k["attributes"]["credentials"].as_u64().unwrap())
    };
    assert_eq!(uses(&key_id), Some(0), "{}", keys.body);
}
