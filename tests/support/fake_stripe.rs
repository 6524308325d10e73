//! A fake Stripe on loopback speaking Stripe's wire format: form-encoded requests with
//! bracketed keys, bearer secret keys, `Idempotency-Key` and `Stripe-Account` headers,
//! and Stripe's error objects, and Stripe's replay of a known `Idempotency-Key` (the
//! first result again, `Idempotent-Replayed: true`). It records what it receives so
//! tests can check it.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The only secret key the fake accepts.
pub const GOOD_KEY: &str = "sk_test_51FakeGoodKeyDoNotLeak0123456789";

/// A request as the fake received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub form: Vec<(String, String)>,
}

impl Received {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    intents: HashMap<String, Value>,
    /// Idempotency key → the intent it created, as Stripe replays a key's first result
    /// to any request with the same key on the account.
    replays: HashMap<String, Value>,
    counter: u64,
    /// How long each payment intent takes to answer (a slow provider).
    delay: std::time::Duration,
}

/// Handle to a running fake.
#[derive(Clone, Default)]
pub struct FakeStripe {
    inner: Arc<Mutex<Inner>>,
}

impl FakeStripe {
    /// Starts the fake; returns it and its address.
    pub async fn start() -> (Self, SocketAddr) {
        let fake = FakeStripe::default();
        let router = Router::new()
            .route("/v1/payment_intents", post(create_intent))
            .route("/v1/payment_intents/{id}", get(retrieve_intent))
            .route("/v1/refunds", post(create_refund))
            .route("/v1/customers", post(create_customer))
            .route("/v1/balance", get(balance))
            .with_state(fake.clone());
        let addr = super::serve_on_loopback(router).await;
        (fake, addr)
    }

    /// Answers each payment intent only after `delay`.
    pub fn set_delay(&self, delay: std::time::Duration) {
        self.inner.lock().unwrap().delay = delay;
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    fn next_id(&self, prefix: &str) -> String {
        let mut inner = self.inner.lock().unwrap();
        inner.counter += 1;
        format!("{prefix}_fake{:06}", inner.counter)
    }
}

fn stripe_error(status: StatusCode, kind: &str, code: Option<&str>, message: &str) -> Response {
    let mut error = json!({"type": kind, "message": message});
    if let Some(code) = code {
        error["code"] = json!(code);
    }
    (status, Json(json!({"error": error}))).into_response()
}

/// Records the request and checks authentication and encoding as Stripe does.
#[allow(clippy::result_large_err)]
fn receive(
    fake: &FakeStripe,
    method: &str,
    path: String,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Received, Response> {
    let received = Received {
        method: method.into(),
        path,
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        form: url::form_urlencoded::parse(body).into_owned().collect(),
    };
    fake.inner.lock().unwrap().received.push(received.clone());
    if received.header("authorization") != Some(&format!("Bearer {GOOD_KEY}")) {
        let shown = received
            .header("authorization")
            .unwrap_or("")
            .chars()
            .take(14)
            .collect::<String>();
        return Err(stripe_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            &format!("Invalid API Key provided: {shown}****"),
        ));
    }
    if method == "POST"
        && received.header("content-type") != Some("application/x-www-form-urlencoded")
    {
        return Err(stripe_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            "Invalid request: expected form encoding",
        ));
    }
    Ok(received)
}

async fn create_intent(
    State(fake): State<FakeStripe>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let delay = fake.inner.lock().unwrap().delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let r = match receive(&fake, "POST", "/v1/payment_intents".into(), &headers, &body) {
        Ok(r) => r,
        Err(response) => return response,
    };
    let Some(amount) = r.field("amount").and_then(|a| a.parse::<i64>().ok()) else {
        return stripe_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_missing"),
            "Missing required param: amount.",
        );
    };
    if r.field("confirm") == Some("true")
        && r.field("payment_method") == Some("pm_card_visa_chargeDeclined")
    {
        return (
            StatusCode::PAYMENT_REQUIRED,
            Json(json!({"error": {
                "type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
                "message": "Your card was declined."
            }})),
        )
            .into_response();
    }
    let key = r.header("idempotency-key").map(str::to_owned);
    if let Some(first) = key
        .as_ref()
        .and_then(|k| fake.inner.lock().unwrap().replays.get(k).cloned())
    {
        return ([("idempotent-replayed", "true")], Json(first)).into_response();
    }
    let id = fake.next_id("pi");
    let intent = json!({
        "id": id, "object": "payment_intent", "amount": amount,
        "currency": r.field("currency").unwrap_or(""),
        "status": "requires_payment_method",
        "client_secret": format!("{id}_secret_fake"),
        "metadata": {},
    });
    let mut inner = fake.inner.lock().unwrap();
    inner.intents.insert(id, intent.clone());
    if let Some(key) = key {
        inner.replays.insert(key, intent.clone());
    }
    Json(intent).into_response()
}

async fn retrieve_intent(
    State(fake): State<FakeStripe>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = receive(
        &fake,
        "GET",
        format!("/v1/payment_intents/{id}"),
        &headers,
        b"",
    ) {
        return response;
    }
    match fake.inner.lock().unwrap().intents.get(&id) {
        Some(intent) => Json(intent.clone()).into_response(),
        None => stripe_error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such payment_intent: '{id}'"),
        ),
    }
}

async fn create_refund(
    State(fake): State<FakeStripe>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = match receive(&fake, "POST", "/v1/refunds".into(), &headers, &body) {
        Ok(r) => r,
        Err(response) => return response,
    };
    let intent_id = r.field("payment_intent").unwrap_or("").to_owned();
    let Some(intent) = fake.inner.lock().unwrap().intents.get(&intent_id).cloned() else {
        return stripe_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such payment_intent: '{intent_id}'"),
        );
    };
    let amount = r
        .field("amount")
        .and_then(|a| a.parse::<i64>().ok())
        .unwrap_or(intent["amount"].as_i64().unwrap_or(0));
    Json(json!({"id": fake.next_id("re"), "object": "refund", "amount": amount, "payment_intent": intent_id, "status": "succeeded"})).into_response()
}

async fn create_customer(
    State(fake): State<FakeStripe>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = match receive(&fake, "POST", "/v1/customers".into(), &headers, &body) {
        Ok(r) => r,
        Err(response) => return response,
    };
    Json(json!({"id": fake.next_id("cus"), "object": "customer", "email": r.field("email"), "name": r.field("name")})).into_response()
}

async fn balance(State(fake): State<FakeStripe>, headers: HeaderMap) -> Response {
    if let Err(response) = receive(&fake, "GET", "/v1/balance".into(), &headers, b"") {
        return response;
    }
    Json(json!({"object": "balance", "available": [{"amount": 0, "currency": "usd"}], "livemode": false})).into_response()
}
