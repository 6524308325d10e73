//! A webhook receiver on loopback that records each delivery with its signature
//! header, and can refuse the first deliveries to exercise retries.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One delivery as received.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub body: Vec<u8>,
    pub signature: Option<String>,
}

impl Delivery {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct Inner {
    deliveries: Mutex<Vec<Delivery>>,
    refuse_first: AtomicUsize,
    attempts: AtomicUsize,
    /// Milliseconds each request is held before its answer.
    delay_ms: std::sync::atomic::AtomicU64,
}

/// Handle to a running receiver.
#[derive(Clone, Default)]
pub struct WebhookReceiver {
    inner: Arc<Inner>,
}

impl WebhookReceiver {
    /// Starts a receiver that answers 503 to its first `refuse_first` requests.
    pub async fn start(refuse_first: usize) -> (Self, SocketAddr) {
        let receiver = WebhookReceiver::default();
        receiver
            .inner
            .refuse_first
            .store(refuse_first, Ordering::SeqCst);
        let router = Router::new()
            .route("/hooks", post(receive))
            .with_state(receiver.clone());
        (receiver.clone(), super::serve_on_loopback(router).await)
    }

    /// Accepted deliveries.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner.deliveries.lock().unwrap().clone()
    }

    /// From now on, accepts every delivery.
    pub fn accept_all(&self) {
        self.inner.refuse_first.store(0, Ordering::SeqCst);
    }

    /// Holds each later request `delay` before answering (a slow receiver).
    pub fn set_delay(&self, delay: std::time::Duration) {
        self.inner
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Every request, refused ones included.
    pub fn attempts(&self) -> usize {
        self.inner.attempts.load(Ordering::SeqCst)
    }
}

async fn receive(
    State(receiver): State<WebhookReceiver>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let attempt = receiver.inner.attempts.fetch_add(1, Ordering::SeqCst);
    let delay = receiver.inner.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    if attempt < receiver.inner.refuse_first.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    receiver.inner.deliveries.lock().unwrap().push(Delivery {
        body: body.to_vec(),
        signature: headers
            .get("x-conduit-signature")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    StatusCode::NO_CONTENT
}
