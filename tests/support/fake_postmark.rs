//! A fake Postmark on loopback speaking Postmark's wire format: JSON bodies with
//! PascalCase fields, the server token in `X-Postmark-Server-Token`, and Postmark's
//! error body (`{"ErrorCode", "Message"}`). It records what it receives so tests can
//! check it.
//!
//! - `POST /email`: one message, answered `{"To", "SubmittedAt", "MessageID",
//!   "ErrorCode": 0, "Message": "OK"}`; an address without `@` is a 422 with
//!   `ErrorCode` 300.
//! - `POST /email/batch`: a list of messages, answered 200 with one result per message
//!   in order; a bad address fails only its own entry.
//! - `GET /server`: the server the token belongs to (with its `ApiTokens`, as Postmark
//!   answers, so tests can check that the token does not leak from an answer).
//!
//! A missing or wrong token is a 401 with `ErrorCode` 10; [`FakePostmark::set_failure`]
//! makes every request answer a given status instead (429, 5xx).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The only server token the fake accepts.
pub const GOOD_TOKEN: &str = "pm-server-token-FakeGoodDoNotLeak-0123456789";
/// The server's name, answered by `GET /server`.
pub const SERVER_NAME: &str = "Conduit Fake Server";
/// The `SubmittedAt` of every accepted message.
pub const SUBMITTED_AT: &str = "2026-11-23T10:00:00.0000000Z";
/// Postmark's message for a request without a valid token.
pub const NO_TOKEN_MESSAGE: &str = "No Account or Server API tokens were supplied in the HTTP \
     headers. Please add a header for either X-Postmark-Server-Token or \
     X-Postmark-Account-Token.";

/// A request as the fake received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Headers, names lower case.
    pub headers: HashMap<String, String>,
    /// The JSON body; `Null` when there is none or it is not JSON.
    pub json: Value,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    /// Every accepted message, as received.
    sent: Vec<Value>,
    counter: u64,
    failure: Option<StatusCode>,
}

/// Handle to a running fake.
#[derive(Clone, Default)]
pub struct FakePostmark {
    inner: Arc<Mutex<Inner>>,
}

impl FakePostmark {
    /// Starts the fake; returns it and its address.
    pub async fn start() -> (Self, SocketAddr) {
        let fake = FakePostmark::default();
        let router = Router::new()
            .route("/email", post(send_email))
            .route("/email/batch", post(send_batch))
            .route("/server", get(server))
            .with_state(fake.clone());
        let addr = super::serve_on_loopback(router).await;
        (fake, addr)
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// How many messages were accepted (single and batch).
    pub fn sent_count(&self) -> usize {
        self.inner.lock().unwrap().sent.len()
    }

    /// Every accepted message, as received (`From`, `To`, `TextBody`…).
    pub fn sent(&self) -> Vec<Value> {
        self.inner.lock().unwrap().sent.clone()
    }

    /// Makes every request answer `status` (e.g. 429, 503) until set back to `None`.
    pub fn set_failure(&self, status: Option<u16>) {
        self.inner.lock().unwrap().failure =
            status.map(|s| StatusCode::from_u16(s).expect("a valid status"));
    }

    /// Accepts a message: records it and returns its `MessageID`.
    fn accept(&self, message: &Value) -> String {
        let mut inner = self.inner.lock().unwrap();
        inner.counter += 1;
        inner.sent.push(message.clone());
        format!("0a129aee-e1cd-480d-b08d-{:012x}", inner.counter)
    }
}

fn postmark_error(status: StatusCode, code: i64, message: &str) -> Response {
    (status, Json(json!({"ErrorCode": code, "Message": message}))).into_response()
}

/// Records the request and checks the token and the headers as Postmark does.
#[allow(clippy::result_large_err)]
fn receive(
    fake: &FakePostmark,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Received, Response> {
    let received = Received {
        method: method.into(),
        path: path.into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        json: serde_json::from_slice(body).unwrap_or(Value::Null),
    };
    let failure = {
        let mut inner = fake.inner.lock().unwrap();
        inner.received.push(received.clone());
        inner.failure
    };
    if let Some(status) = failure {
        return Err((status, status.canonical_reason().unwrap_or("Error")).into_response());
    }
    if received.header("x-postmark-server-token") != Some(GOOD_TOKEN) {
        return Err(postmark_error(
            StatusCode::UNAUTHORIZED,
            10,
            NO_TOKEN_MESSAGE,
        ));
    }
    if received.header("accept") != Some("application/json") {
        return Err((
            StatusCode::NOT_ACCEPTABLE,
            Json(json!({"Message": "The Accept header must be application/json."})),
        )
            .into_response());
    }
    if method == "POST" {
        let json_body = received
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"));
        if !json_body {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Json(json!({"Message": "The Content-Type header must be application/json."})),
            )
                .into_response());
        }
        if received.json.is_null() {
            return Err(postmark_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                402,
                "Received invalid JSON input.",
            ));
        }
    }
    Ok(received)
}

/// Checks one message as Postmark does; `Err` is its `ErrorCode` and `Message`.
fn check_message(message: &Value) -> Result<(), (i64, String)> {
    let from = message["From"].as_str().unwrap_or("");
    if !from.contains('@') {
        return Err((300, format!("Invalid 'From' address: '{from}'.")));
    }
    let to = message["To"].as_str().unwrap_or("");
    if to.trim().is_empty() {
        return Err((300, "Zero recipients specified".into()));
    }
    for field in ["To", "Cc", "Bcc"] {
        let list = message[field].as_str().unwrap_or("");
        for address in list.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            if !address.contains('@') {
                return Err((300, format!("Invalid '{field}' address: '{address}'.")));
            }
        }
    }
    if message["TextBody"].as_str().is_none() && message["HtmlBody"].as_str().is_none() {
        return Err((
            300,
            "Provide either email TextBody or HtmlBody or both.".into(),
        ));
    }
    Ok(())
}

/// Sends one message; `Err` is its `ErrorCode` and `Message`.
fn deliver(fake: &FakePostmark, message: &Value) -> Result<Value, (i64, String)> {
    check_message(message)?;
    let id = fake.accept(message);
    Ok(json!({
        "To": message["To"], "SubmittedAt": SUBMITTED_AT, "MessageID": id,
        "ErrorCode": 0, "Message": "OK",
    }))
}

async fn send_email(State(fake): State<FakePostmark>, headers: HeaderMap, body: Bytes) -> Response {
    let r = match receive(&fake, "POST", "/email", &headers, &body) {
        Ok(r) => r,
        Err(response) => return response,
    };
    match deliver(&fake, &r.json) {
        Ok(answer) => Json(answer).into_response(),
        Err((code, message)) => postmark_error(StatusCode::UNPROCESSABLE_ENTITY, code, &message),
    }
}

async fn send_batch(State(fake): State<FakePostmark>, headers: HeaderMap, body: Bytes) -> Response {
    let r = match receive(&fake, "POST", "/email/batch", &headers, &body) {
        Ok(r) => r,
        Err(response) => return response,
    };
    let Some(messages) = r.json.as_array() else {
        return postmark_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            402,
            "Received invalid JSON input.",
        );
    };
    if messages.len() > 500 {
        return postmark_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            300,
            "Batch messages cannot exceed 500 messages.",
        );
    }
    let answers: Vec<Value> = messages
        .iter()
        .map(|message| match deliver(&fake, message) {
            Ok(answer) => answer,
            Err((code, text)) => json!({"ErrorCode": code, "Message": text}),
        })
        .collect();
    Json(Value::Array(answers)).into_response()
}

async fn server(State(fake): State<FakePostmark>, headers: HeaderMap) -> Response {
    if let Err(response) = receive(&fake, "GET", "/server", &headers, b"") {
        return response;
    }
    Json(json!({
        "ID": 1, "Name": SERVER_NAME, "ApiTokens": [GOOD_TOKEN], "Color": "blue",
        "SmtpApiActivated": true, "DeliveryType": "Live",
        "ServerLink": "https://postmarkapp.com/servers/1/streams",
    }))
    .into_response()
}
