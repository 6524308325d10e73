//! A fake GitHub on loopback speaking GitHub's wire formats: the REST API (bearer
//! tokens, a required `User-Agent`, `{"message", "documentation_url"}` errors, 422's
//! `errors` list, rate-limit headers) and the OAuth token endpoint
//! (`POST /login/oauth/access_token`, which answers its errors with HTTP 200 and
//! `{"error", "error_description", "error_uri"}`).
//!
//! - `POST /repos/{owner}/{repo}/issues`, `GET /repos/{owner}/{repo}/issues`
//!   (pull requests included, as GitHub lists them), `GET /repos/{owner}/{repo}`,
//!   `GET /user`.
//! - The only repository is `octo-org/hello-world`; others are 404 `Not Found`.
//! - Expiring user tokens (8 hours) with rotating refresh tokens; a dead refresh token
//!   is `bad_refresh_token`.
//! - [`FakeGithub::set_limit`] answers the primary limit (403, `X-RateLimit-Remaining:
//!   0`, `X-RateLimit-Reset`) or a secondary limit (403 with `Retry-After`).

use super::grants::Grants;
use super::recorded::Recorded;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub const CLIENT_ID: &str = "Iv1.fakegithubclient";
pub const CLIENT_SECRET: &str = "github-client-secret-FakeDoNotLeak-77bb";
pub const OWNER: &str = "octo-org";
pub const REPO: &str = "hello-world";
pub const REPO_ID: u64 = 1296269;
const DOCS: &str = "https://docs.github.com/rest";

/// Which rate limit the fake is enforcing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The hourly budget is spent: resets in this many seconds.
    Primary(u64),
    /// A secondary (abuse) limit: retry after this many seconds.
    Secondary(u64),
}

#[derive(Default)]
struct Inner {
    received: Vec<Recorded>,
    grants: Grants,
    issues: Vec<Value>,
    limit: Option<Limit>,
}

/// Handle to a running fake.
#[derive(Clone, Default)]
pub struct FakeGithub {
    inner: Arc<Mutex<Inner>>,
}

impl FakeGithub {
    pub async fn start() -> (Self, SocketAddr) {
        let fake = FakeGithub::default();
        {
            let mut inner = fake.inner.lock().unwrap();
            inner.issues = vec![
                issue(1, "Found a bug", "open", false),
                issue(2, "Add a feature", "open", true),
                issue(3, "Docs typo", "closed", false),
            ];
        }
        let router = Router::new().fallback(handle).with_state(fake.clone());
        (fake.clone(), super::serve_on_loopback(router).await)
    }

    pub fn received(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().received.clone()
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
    pub fn expire_access_tokens(&self) {
        self.inner.lock().unwrap().grants.access.clear();
    }
    pub fn live_access_tokens(&self) -> HashSet<String> {
        self.inner.lock().unwrap().grants.access.clone()
    }
    pub fn issue_code(&self) -> String {
        // GitHub checks no redirect URI at the exchange.
        self.inner.lock().unwrap().grants.issue_code("ghcode", "")
    }
    pub fn set_limit(&self, limit: Option<Limit>) {
        self.inner.lock().unwrap().limit = limit;
    }
    pub fn token_requests(&self) -> Vec<Recorded> {
        self.received()
            .into_iter()
            .filter(|r| r.path == "/login/oauth/access_token")
            .collect()
    }
}

fn issue(number: u64, title: &str, state: &str, pull_request: bool) -> Value {
    let url = format!("https://github.com/{OWNER}/{REPO}/issues/{number}");
    let mut issue = json!({
        "id": 1_000_000 + number, "number": number, "title": title, "state": state,
        "html_url": url, "user": {"login": "octocat"}, "labels": [],
    });
    if pull_request {
        issue["pull_request"] =
            json!({"url": format!("https://api.github.com/repos/{OWNER}/{REPO}/pulls/{number}")});
    }
    issue
}

fn github_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"message": message, "documentation_url": DOCS, "status": status.as_u16().to_string()})),
    )
        .into_response()
}

async fn handle(
    State(fake): State<FakeGithub>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = Recorded::new(&method, &uri, &headers, &body);
    fake.inner.lock().unwrap().received.push(request.clone());
    if request.path == "/login/oauth/access_token" {
        return token(&fake, &request);
    }
    if request.header("user-agent").is_none_or(str::is_empty) {
        return github_error(
            StatusCode::FORBIDDEN,
            "Request forbidden by administrative rules. Please make sure your request has a User-Agent header.",
        );
    }
    let authorized = request
        .bearer()
        .is_some_and(|t| fake.inner.lock().unwrap().grants.access.contains(t));
    if !authorized {
        return github_error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    let limit = fake.inner.lock().unwrap().limit;
    match limit {
        Some(Limit::Primary(reset_in)) => {
            let reset = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + reset_in;
            let reset = reset.to_string();
            let mut response = github_error(
                StatusCode::FORBIDDEN,
                "API rate limit exceeded for user ID 1.",
            );
            let headers = response.headers_mut();
            headers.insert("x-ratelimit-limit", "5000".parse().unwrap());
            headers.insert("x-ratelimit-remaining", "0".parse().unwrap());
            headers.insert("x-ratelimit-reset", reset.parse().unwrap());
            return response;
        }
        Some(Limit::Secondary(after)) => {
            let mut response = github_error(
                StatusCode::FORBIDDEN,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            );
            response
                .headers_mut()
                .insert("retry-after", after.to_string().parse().unwrap());
            return response;
        }
        None => {}
    }
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["user"]) => Json(json!({"login": "octocat", "id": 1})).into_response(),
        (_, ["repos", owner, repo, ..]) if (*owner, *repo) != (OWNER, REPO) => {
            github_error(StatusCode::NOT_FOUND, "Not Found")
        }
        ("GET", ["repos", _, _]) => Json(json!({
            "id": REPO_ID, "name": REPO, "full_name": format!("{OWNER}/{REPO}"),
            "private": false, "default_branch": "main", "owner": {"login": OWNER},
        }))
        .into_response(),
        ("GET", ["repos", _, _, "issues"]) => list_issues(&fake, &request),
        ("POST", ["repos", _, _, "issues"]) => create_issue(&fake, &request),
        _ => github_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn list_issues(fake: &FakeGithub, request: &Recorded) -> Response {
    let state = request.query_param("state").unwrap_or("open").to_owned();
    let per_page: usize = request
        .query_param("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(30);
    let issues: Vec<Value> = fake
        .inner
        .lock()
        .unwrap()
        .issues
        .iter()
        .filter(|i| state == "all" || i["state"] == state.as_str())
        .take(per_page)
        .cloned()
        .collect();
    Json(Value::Array(issues)).into_response()
}

fn create_issue(fake: &FakeGithub, request: &Recorded) -> Response {
    let body = request.json();
    let title = body["title"].as_str().unwrap_or("");
    if title.trim().is_empty() {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "message": "Validation Failed",
                "errors": [{"resource": "Issue", "code": "missing_field", "field": "title"}],
                "documentation_url": DOCS,
                "status": "422",
            })),
        )
            .into_response();
    }
    let mut inner = fake.inner.lock().unwrap();
    let number = inner.issues.len() as u64 + 1;
    let mut created = issue(number, title, "open", false);
    created["body"] = body["body"].clone();
    created["labels"] = body["labels"].clone();
    inner.issues.push(created.clone());
    (StatusCode::CREATED, Json(created)).into_response()
}

fn token_error(error: &str, description: &str) -> Response {
    // GitHub answers OAuth errors with 200.
    Json(json!({
        "error": error,
        "error_description": description,
        "error_uri": "https://docs.github.com/apps/oauth",
    }))
    .into_response()
}

fn token(fake: &FakeGithub, request: &Recorded) -> Response {
    if request.field("client_id").as_deref() != Some(CLIENT_ID)
        || request.field("client_secret").as_deref() != Some(CLIENT_SECRET)
    {
        return token_error(
            "incorrect_client_credentials",
            "The client_id and/or client_secret passed are incorrect.",
        );
    }
    let grants = &mut fake.inner.lock().unwrap().grants;
    if request.field("grant_type").as_deref() == Some("refresh_token") {
        let refresh = request.field("refresh_token").unwrap_or_default();
        if !grants.redeem_refresh(&refresh) {
            return token_error(
                "bad_refresh_token",
                "The refresh token passed is incorrect or expired.",
            );
        }
    } else {
        let code = request.field("code").unwrap_or_default();
        if grants.redeem_code(&code).is_none() {
            return token_error(
                "bad_verification_code",
                "The code passed is incorrect or expired.",
            );
        }
    }
    let (access, refresh) = grants.mint("ghu_fakeaccess", "ghr_fakerefresh");
    Json(json!({
        "access_token": access,
        "expires_in": 28800,
        "refresh_token": refresh,
        "refresh_token_expires_in": 15897600,
        "scope": "repo",
        "token_type": "bearer",
    }))
    .into_response()
}
