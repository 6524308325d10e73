//! The frame every request passes through, as one layer: a request id on every response
//! (`x-request-id`, kept from the request when the client sends one), the request's
//! context (method, route, request id, tenant) on every log line emitted while it is
//! served, credentials marked sensitive, and a panic in a handler answered as a typed
//! `500 internal` carrying the request id instead of a dropped connection, and
//! `connection: close` on an answer given without reading the request's body.
//!
//! One hand-written layer rather than a stack of `tower-http`'s: each layer a router
//! applies is a boxed service cloned, and a boxed future allocated, per request, and
//! these five did nothing that needs more than a few lines together. The request's
//! context is current while its future is polled (`observe::logs`): a tracing span per
//! request cost more than anything else in the frame, for lines that are rarely
//! written.

use super::ApiError;
use crate::observe::logs::{in_request, RequestContext};
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::json;
use std::convert::Infallible;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tower::{Layer, Service};

/// The request id header, set on every response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps every route of `router` in the request frame. Applied per route (inside the
/// router), so the context knows the matched route.
pub fn apply<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(FrameLayer)
}

/// A fresh request id: a random (version 4) UUID from the thread's CSPRNG, which
/// needs no system call per request.
pub fn mint_request_id() -> HeaderValue {
    let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(uuid.hyphenated().encode_lower(&mut text))
        .expect("a UUID is a valid header value")
}

#[derive(Clone, Copy)]
struct FrameLayer;

impl<S> Layer<S> for FrameLayer {
    type Service = Frame<S>;

    fn layer(&self, inner: S) -> Frame<S> {
        Frame { inner }
    }
}

/// A route in the request frame.
#[derive(Clone)]
struct Frame<S> {
    inner: S,
}

type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> Service<Request> for Frame<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Answer {
        let started = Instant::now();
        let id = match request.headers().get(REQUEST_ID) {
            Some(given) => given.clone(),
            None => {
                let minted = mint_request_id();
                request.headers_mut().insert(REQUEST_ID, minted.clone());
                minted
            }
        };
        mark_sensitive(request.headers_mut());
        let body_read = watch_body(&mut request);
        let context = Arc::new(RequestContext::new(
            request.method().as_str(),
            request
                .extensions()
                .get::<MatchedPath>()
                .map_or("unmatched", MatchedPath::as_str),
            id.to_str().unwrap_or_default(),
        ));
        let called = in_request(&context, || {
            catch_unwind(AssertUnwindSafe(|| self.inner.call(request)))
        });
        Box::pin(async move {
            let answered = match called {
                Ok(answer) => {
                    InContext {
                        inner: Unwinding(std::pin::pin!(answer)),
                        context,
                    }
                    .await
                }
                Err(_) => Err(Panicked),
            };
            let mut response = match answered {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(Panicked) => panicked(&id),
            };
            let status = response.status().as_u16();
            tracing::debug!(
                status,
                latency_us = started.elapsed().as_micros() as u64,
                "answered"
            );
            response.headers_mut().insert(REQUEST_ID, id);
            if body_read.is_some_and(|read| !read.load(Ordering::Acquire)) {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response)
        })
    }
}

/// A request's future, polled with its context current.
struct InContext<F> {
    inner: F,
    context: Arc<RequestContext>,
}

impl<F: Future + Unpin> Future for InContext<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        in_request(&this.context, || Pin::new(&mut this.inner).poll(cx))
    }
}

/// Watches a request that has a body for whether it is read to its end; `None` for one
/// without.
///
/// A handler may answer before it reads the body (a refusal decided by the headers:
/// `403` on an upload). hyper then drains at most what it already holds and otherwise
/// closes the connection once the answer is written, an answer that did not say so
/// unless hyper noticed first: a client sending its next request on that connection
/// meanwhile gets no answer. The frame says so in the answer instead, every time.
fn watch_body(request: &mut Request) -> Option<Arc<AtomicBool>> {
    if request.body().is_end_stream() {
        return None;
    }
    let read = Arc::new(AtomicBool::new(false));
    let body = std::mem::take(request.body_mut());
    *request.body_mut() = Body::new(Watched {
        inner: body,
        read: read.clone(),
    });
    Some(read)
}

/// A request body that records when it has been read to its end.
struct Watched {
    inner: Body,
    read: Arc<AtomicBool>,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.read.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Credentials are marked sensitive, so nothing that prints headers shows them.
fn mark_sensitive(headers: &mut HeaderMap) {
    for name in [header::AUTHORIZATION, header::COOKIE] {
        if let header::Entry::Occupied(mut entry) = headers.entry(name) {
            for value in entry.iter_mut() {
                value.set_sensitive(true);
            }
        }
    }
}

/// A handler panicked: its payload is dropped here, and the binary's panic hook logs
/// only where it happened (a panic message may quote a value).
struct Panicked;

/// A future that turns a panic while it is polled into [`Panicked`].
struct Unwinding<F>(F);

impl<F: Future + Unpin> Future for Unwinding<F> {
    type Output = Result<F::Output, Panicked>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(Panicked)),
        }
    }
}

fn panicked(id: &HeaderValue) -> Response {
    let id = id.to_str().unwrap_or_default();
    tracing::error!(request_id = %id, "a handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "an internal error occurred",
    )
    .with_meta(json!({"requestId": id}))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    async fn boom() -> &'static str {
        panic!("sk_live_in_a_panic")
    }

    fn app() -> Router {
        apply(
            Router::new()
                .route("/ok", get(|| async { "ok" }))
                .route("/boom", get(boom))
                .route("/refuse", post(|| async { StatusCode::FORBIDDEN }))
                .route(
                    "/read",
                    post(|body: Bytes| async move { body.len().to_string() }),
                ),
        )
    }

    async fn call(path: &str, id: Option<&str>) -> Response {
        let mut request = axum::http::Request::get(path);
        if let Some(id) = id {
            request = request.header(REQUEST_ID, id);
        }
        app()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn every_response_carries_a_request_id_and_a_given_one_is_kept() {
        let minted = call("/ok", None).await;
        let id = minted.headers()[&REQUEST_ID].to_str().unwrap().to_owned();
        let uuid = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(
            (id.len(), uuid.get_version_num()),
            (36, 4),
            "a v4 UUID: {id}"
        );
        assert_ne!(call("/ok", None).await.headers()[&REQUEST_ID], id.as_str());
        let kept = call("/ok", Some("client-42")).await;
        assert_eq!(kept.headers()[&REQUEST_ID], "client-42");
    }

    #[tokio::test]
    async fn a_panic_is_a_typed_500_with_the_request_id() {
        let response = call("/boom", Some("req-7")).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[&REQUEST_ID], "req-7");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["errors"][0]["code"], "internal");
        assert_eq!(body["errors"][0]["meta"]["requestId"], "req-7");
        assert!(!body.to_string().contains("sk_live"));
    }

    async fn post_to(path: &str, body: Body) -> Response {
        app()
            .oneshot(
                axum::http::Request::post(path)
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .body(body)
                    .unwrap(),
            )
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn an_answer_given_without_reading_the_body_closes_the_connection() {
        let unread = post_to("/refuse", Body::from(vec![7u8; 64 << 10])).await;
        assert_eq!(unread.status(), StatusCode::FORBIDDEN);
        assert_eq!(unread.headers()[header::CONNECTION], "close");

        // A body read to its end, or none at all, leaves the connection to keep-alive.
        let read = post_to("/read", Body::from(vec![7u8; 64 << 10])).await;
        assert_eq!(read.status(), StatusCode::OK);
        assert!(read.headers().get(header::CONNECTION).is_none());
        let streamed = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from("ab"))]);
        let read = post_to("/read", Body::from_stream(streamed)).await;
        assert_eq!(read.status(), StatusCode::OK);
        assert!(read.headers().get(header::CONNECTION).is_none());
        let empty = post_to("/refuse", Body::empty()).await;
        assert!(empty.headers().get(header::CONNECTION).is_none());
        assert!(call("/ok", None)
            .await
            .headers()
            .get(header::CONNECTION)
            .is_none());
    }
}
