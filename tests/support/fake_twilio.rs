//! A fake Twilio on loopback speaking Twilio's REST wire format: HTTP basic auth with
//! the Account SID and auth token, form bodies with PascalCase fields (`To`, `From`,
//! `Body`), JSON answers, and Twilio's error object (`code`, `message`, `more_info`,
//! `status`).
//!
//! - `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`: a message resource
//!   (`sid`, `status: queued`…), 201; a `To` that is not E.164 is 400 with code 21211.
//! - `GET /2010-04-01/Accounts/{AccountSid}.json`: the account (`status: active`).
//!
//! Wrong credentials are 401 with code 20003; [`FakeTwilio::set_rate_limited`] makes
//! every call 429 with code 20429.

use super::recorded::Recorded;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const AUTH_TOKEN: &str = "twilio-auth-token-FakeDoNotLeak-99cc";

#[derive(Default)]
struct Inner {
    received: Vec<Recorded>,
    messages: Vec<Value>,
    counter: u64,
    rate_limited: bool,
}

/// Handle to a running fake.
#[derive(Clone, Default)]
pub struct FakeTwilio {
    inner: Arc<Mutex<Inner>>,
}

impl FakeTwilio {
    pub async fn start() -> (Self, SocketAddr) {
        let fake = FakeTwilio::default();
        let router = Router::new().fallback(handle).with_state(fake.clone());
        (fake.clone(), super::serve_on_loopback(router).await)
    }
    pub fn received(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().received.clone()
    }
    pub fn messages(&self) -> Vec<Value> {
        self.inner.lock().unwrap().messages.clone()
    }
    pub fn set_rate_limited(&self, on: bool) {
        self.inner.lock().unwrap().rate_limited = on;
    }
}

fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        Json(json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        })),
    )
        .into_response()
}

async fn handle(
    State(fake): State<FakeTwilio>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = Recorded::new(&method, &uri, &headers, &body);
    fake.inner.lock().unwrap().received.push(request.clone());
    if fake.inner.lock().unwrap().rate_limited {
        return twilio_error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests");
    }
    let account = format!("/2010-04-01/Accounts/{ACCOUNT_SID}");
    let path_sid = request
        .path
        .strip_prefix("/2010-04-01/Accounts/")
        .map(|rest| rest.split(['/', '.']).next().unwrap_or(""));
    let authenticated = request.basic() == Some((ACCOUNT_SID.to_owned(), AUTH_TOKEN.to_owned()))
        && path_sid == Some(ACCOUNT_SID);
    if !authenticated {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    match request.method.as_str() {
        "POST" if request.path == format!("{account}/Messages.json") => send(&fake, &request),
        "GET" if request.path == format!("{account}.json") => Json(json!({
            "sid": ACCOUNT_SID, "friendly_name": "Conduit fake account", "status": "active", "type": "Full",
        }))
        .into_response(),
        _ => twilio_error(
            StatusCode::NOT_FOUND,
            20404,
            &format!("The requested resource {} was not found", request.path),
        ),
    }
}

fn send(fake: &FakeTwilio, request: &Recorded) -> Response {
    let field = |name: &str| request.field(name).unwrap_or_default();
    let (to, from, body) = (field("To"), field("From"), field("Body"));
    let e164 =
        |n: &str| n.starts_with('+') && n.len() > 8 && n[1..].bytes().all(|b| b.is_ascii_digit());
    if !e164(&to) {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21211,
            &format!("Invalid 'To' Phone Number: {to}"),
        );
    }
    if body.is_empty() {
        return twilio_error(StatusCode::BAD_REQUEST, 21602, "Message body is required.");
    }
    let mut inner = fake.inner.lock().unwrap();
    inner.counter += 1;
    let message = json!({
        "sid": format!("SM{:032x}", inner.counter),
        "account_sid": ACCOUNT_SID,
        "to": to, "from": from, "body": body,
        "status": "queued",
        "num_segments": "1",
        "direction": "outbound-api",
        "api_version": "2010-04-01",
        "date_created": "Wed, 02 Dec 2026 10:00:00 +0000",
        "uri": format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/SM{:032x}.json", inner.counter),
    });
    inner.messages.push(message.clone());
    (StatusCode::CREATED, Json(message)).into_response()
}
