//! The layers every request passes through (`tower-http`): a request id on every
//! response (`x-request-id`, kept from the request when the client sends one), one
//! tracing span per request with its route, tenant and status, credentials marked
//! sensitive, and a panic in a handler answered as a typed `500 internal` carrying the
//! request id instead of a dropped connection.

use super::ApiError;
use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::json;
use std::time::Duration;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;

/// The request id header, set on every response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps every route of `router` in the request layers.
pub fn apply<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    // The last layer added is the outermost: headers are marked sensitive, then the id
    // is set (and later copied to the response), the span opens, and only then can a
    // handler panic.
    router
        .layer(CatchPanicLayer::custom(panicked))
        .layer(middleware::from_fn(answer_panics))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(span)
                .on_response(on_response),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
}

/// Records the authenticated tenant on the request's span.
pub fn record_tenant(tenant: &str) {
    Span::current().record("tenant", tenant);
}

fn request_id<B>(request: &axum::http::Request<B>) -> String {
    request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn span<B>(request: &axum::http::Request<B>) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    tracing::info_span!(
        "request",
        method = %request.method(),
        route,
        request_id = %request_id(request),
        tenant = tracing::field::Empty,
        status = tracing::field::Empty,
    )
}

fn on_response<B>(response: &axum::http::Response<B>, latency: Duration, span: &Span) {
    span.record("status", response.status().as_u16());
    tracing::debug!(latency_us = latency.as_micros() as u64, "answered");
}

/// Marks the response `CatchPanicLayer` makes of a panic, so [`answer_panics`] (which
/// knows the request id) can answer it. The payload is dropped here, and the binary's
/// panic hook logs only where a panic happened: a panic message may quote a value.
#[derive(Clone, Copy)]
struct Panicked;

fn panicked(_payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let mut response = StatusCode::INTERNAL_SERVER_ERROR.into_response();
    response.extensions_mut().insert(Panicked);
    response
}

async fn answer_panics(request: Request, next: Next) -> Response {
    let id = request_id(&request);
    let response = next.run(request).await;
    if response.extensions().get::<Panicked>().is_none() {
        return response;
    }
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
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    async fn boom() -> &'static str {
        panic!("sk_live_in_a_panic")
    }

    fn app() -> Router {
        apply(
            Router::new()
                .route("/ok", get(|| async { "ok" }))
                .route("/boom", get(boom)),
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
        assert_eq!(id.len(), 36, "a UUID: {id}");
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
}
