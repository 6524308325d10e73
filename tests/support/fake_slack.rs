//! A fake Slack on loopback speaking Slack's Web API wire format: methods under
//! `/api/<method>`, bearer tokens, and Slack's envelope — HTTP 200 with `{"ok": true, …}`
//! or `{"ok": false, "error": "<code>"}`; rate limits are HTTP 429 with `Retry-After`.
//!
//! - `POST /api/oauth.v2.access` (form): an authorization code, or with
//!   `grant_type=refresh_token` a rotating refresh token, for a bot token that expires
//!   in 12 hours and a new refresh token (the old one dies: token rotation).
//!   `invalid_code`, `invalid_refresh_token`, `bad_client_secret` as Slack answers.
//! - `POST /api/chat.postMessage` (JSON): `{"ok", "channel", "ts", "message"}`;
//!   `channel_not_found` for an unknown channel.
//! - `GET /api/conversations.list?limit&cursor`: pages of channels with
//!   `response_metadata.next_cursor`.
//! - `POST /api/auth.test`: the workspace the token belongs to.
//!
//! An unknown token is `invalid_auth`, a revoked one `token_revoked`; [`FakeSlack::refuse`]
//! makes Slack answer a token with any other error.

use super::grants::Grants;
use super::recorded::Recorded;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub const CLIENT_ID: &str = "1234567890.0987654321";
pub const CLIENT_SECRET: &str = "slack-client-secret-FakeDoNotLeak-55aa";
pub const TEAM: &str = "Conduit Fake Workspace";
/// The channels of the workspace, in listing order.
pub const CHANNELS: &[(&str, &str)] = &[
    ("C0001GENERAL", "general"),
    ("C0002RANDOM", "random"),
    ("C0003DEPLOYS", "deploys"),
    ("C0004SUPPORT", "support"),
    ("C0005SALES", "sales"),
];

#[derive(Default)]
struct Inner {
    received: Vec<Recorded>,
    grants: Grants,
    /// Tokens Slack now refuses, with the error it answers for each.
    refused: HashMap<String, String>,
    posted: Vec<Value>,
    rate_limited: bool,
}

/// Handle to a running fake.
#[derive(Clone, Default)]
pub struct FakeSlack {
    inner: Arc<Mutex<Inner>>,
}

impl FakeSlack {
    pub async fn start() -> (Self, SocketAddr) {
        let fake = FakeSlack::default();
        let router = Router::new().fallback(handle).with_state(fake.clone());
        (fake.clone(), super::serve_on_loopback(router).await)
    }

    pub fn received(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().received.clone()
    }
    pub fn posted(&self) -> Vec<Value> {
        self.inner.lock().unwrap().posted.clone()
    }
    pub fn add_access_token(&self, token: &str) {
        self.inner
            .lock()
            .unwrap()
            .grants
            .access
            .insert(token.into());
    }
    pub fn add_refresh_token(&self, token: &str) {
        self.inner
            .lock()
            .unwrap()
            .grants
            .refresh
            .insert(token.into());
    }
    /// The workspace revoked the token (an admin removed the app).
    pub fn revoke(&self, token: &str) {
        self.refuse(token, "token_revoked");
    }
    /// Slack refuses `token` from now on with `error` (`token_expired`,
    /// `account_inactive`…).
    pub fn refuse(&self, token: &str, error: &str) {
        let mut inner = self.inner.lock().unwrap();
        inner.grants.access.remove(token);
        inner.refused.insert(token.into(), error.into());
    }
    pub fn live_refresh_tokens(&self) -> HashSet<String> {
        self.inner.lock().unwrap().grants.refresh.clone()
    }
    pub fn live_access_tokens(&self) -> HashSet<String> {
        self.inner.lock().unwrap().grants.access.clone()
    }
    /// A code the consent page would redirect with.
    pub fn issue_code(&self, redirect_uri: &str) -> String {
        let mut inner = self.inner.lock().unwrap();
        inner.grants.issue_code("1234.slackcode.", redirect_uri)
    }
    /// Every Web API call answers 429 with `Retry-After: 30` until turned off.
    pub fn set_rate_limited(&self, on: bool) {
        self.inner.lock().unwrap().rate_limited = on;
    }
    pub fn token_requests(&self) -> Vec<Recorded> {
        self.received()
            .into_iter()
            .filter(|r| r.path == "/api/oauth.v2.access")
            .collect()
    }
}

fn slack_error(error: &str) -> Response {
    Json(json!({"ok": false, "error": error})).into_response()
}

async fn handle(
    State(fake): State<FakeSlack>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = Recorded::new(&method, &uri, &headers, &body);
    fake.inner.lock().unwrap().received.push(request.clone());
    if request.path == "/api/oauth.v2.access" {
        return token(&fake, &request);
    }
    if fake.inner.lock().unwrap().rate_limited {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "30")],
            Json(json!({"ok": false, "error": "ratelimited"})),
        )
            .into_response();
    }
    if let Err(error) = authenticate(&fake, &request) {
        return slack_error(&error);
    }
    match (request.method.as_str(), request.path.as_str()) {
        ("POST", "/api/chat.postMessage") => post_message(&fake, &request),
        ("GET", "/api/conversations.list") => list(&request),
        ("POST", "/api/auth.test") => Json(json!({
            "ok": true, "url": "https://conduit-fake.slack.com/", "team": TEAM,
            "user": "conduit-bot", "team_id": "T0FAKE", "user_id": "U0BOT",
        }))
        .into_response(),
        _ => slack_error("unknown_method"),
    }
}

fn authenticate(fake: &FakeSlack, request: &Recorded) -> Result<(), String> {
    let inner = fake.inner.lock().unwrap();
    match request.bearer() {
        None => Err("not_authed".into()),
        Some(token) if inner.grants.access.contains(token) => Ok(()),
        Some(token) => Err(inner
            .refused
            .get(token)
            .cloned()
            .unwrap_or_else(|| "invalid_auth".into())),
    }
}

fn post_message(fake: &FakeSlack, request: &Recorded) -> Response {
    let content_type = request.header("content-type").unwrap_or("");
    if !content_type.starts_with("application/json") {
        return slack_error("invalid_form_data");
    }
    let body = request.json();
    let channel = body["channel"].as_str().unwrap_or("");
    if !CHANNELS
        .iter()
        .any(|(id, name)| *id == channel || *name == channel)
    {
        return slack_error("channel_not_found");
    }
    if body["text"].as_str().is_none_or(str::is_empty) && body["blocks"].is_null() {
        return slack_error("no_text");
    }
    let mut inner = fake.inner.lock().unwrap();
    inner.posted.push(body.clone());
    let ts = format!("1700000000.{:06}", inner.posted.len());
    Json(json!({
        "ok": true,
        "channel": channel,
        "ts": ts,
        "message": {"type": "message", "text": body["text"], "ts": ts, "thread_ts": body["thread_ts"]},
    }))
    .into_response()
}

fn list(request: &Recorded) -> Response {
    let limit: usize = request
        .query_param("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100);
    let start: usize = request
        .query_param("cursor")
        .and_then(|c| c.strip_prefix("dGVhbTpD"))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let page: Vec<Value> = CHANNELS
        .iter()
        .skip(start)
        .take(limit)
        .map(|(id, name)| json!({"id": id, "name": name, "is_channel": true, "is_archived": false}))
        .collect();
    let next = if start + limit < CHANNELS.len() {
        format!("dGVhbTpD{}", start + limit)
    } else {
        String::new()
    };
    Json(json!({"ok": true, "channels": page, "response_metadata": {"next_cursor": next}}))
        .into_response()
}

fn token(fake: &FakeSlack, request: &Recorded) -> Response {
    if request.field("client_id").as_deref() != Some(CLIENT_ID) {
        return slack_error("invalid_client_id");
    }
    if request.field("client_secret").as_deref() != Some(CLIENT_SECRET) {
        return slack_error("bad_client_secret");
    }
    let grants = &mut fake.inner.lock().unwrap().grants;
    if request.field("grant_type").as_deref() == Some("refresh_token") {
        let refresh = request.field("refresh_token").unwrap_or_default();
        if !grants.redeem_refresh(&refresh) {
            return slack_error("invalid_refresh_token");
        }
    } else {
        let code = request.field("code").unwrap_or_default();
        let Some(issued_for) = grants.redeem_code(&code) else {
            return slack_error("invalid_code");
        };
        if Some(issued_for) != request.field("redirect_uri") {
            return slack_error("bad_redirect_uri");
        }
    }
    let (access, refresh) = grants.mint("xoxe.xoxb-1-fake-access-", "xoxe-1-fake-refresh-");
    Json(json!({
        "ok": true,
        "app_id": "A0FAKE",
        "authed_user": {"id": "U0HUMAN"},
        "scope": "chat:write,channels:read",
        "token_type": "bot",
        "access_token": access,
        "bot_user_id": "U0BOT",
        "refresh_token": refresh,
        "expires_in": 43200,
        "team": {"id": "T0FAKE", "name": TEAM},
    }))
    .into_response()
}
