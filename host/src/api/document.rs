//! JSON:API documents: reading `{"data": {"type", "attributes"}}` bodies with typed
//! errors (never axum's plain-text rejections), and writing resources and lists.

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

/// The JSON:API media type.
pub const JSON_API: &str = "application/vnd.api+json";

/// Attributes of a request resource, with the JSON:API `type` they must arrive under.
pub trait ResourceAttributes: DeserializeOwned {
    /// The resource type (`connections`).
    const TYPE: &'static str;
}

/// The attributes of a JSON:API request body.
pub struct Attributes<T>(pub T);

#[derive(Deserialize)]
struct Envelope {
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    attributes: Option<Value>,
}

impl<S: Send + Sync, T: ResourceAttributes> FromRequest<S> for Attributes<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let body = json_body(req, state).await?;
        let envelope: Envelope = serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_document",
                format!(
                    "expected a JSON:API document {{\"data\": {{\"type\", \"attributes\"}}}}: {}",
                    scrub(&e)
                ),
            )
        })?;
        if envelope.data.kind != T::TYPE {
            return Err(type_mismatch(T::TYPE));
        }
        let attributes = envelope.data.attributes.unwrap_or_else(|| json!({}));
        serde_json::from_value(attributes)
            .map(Attributes)
            .map_err(|e| ApiError::unprocessable("invalid_attributes", scrub(&e)))
    }
}

/// A seed-shaped document (a blueprint, a tenant config), sent either bare or as the
/// attributes of a JSON:API resource of its type.
pub trait SpecDocument: DeserializeOwned {
    /// The JSON:API resource type it may arrive under (the first is the one rendered).
    const TYPES: &'static [&'static str];
    /// The code of a body that does not have the document's shape.
    const INVALID: &'static str;
}

/// A [`SpecDocument`] request body.
pub struct Spec<T>(pub T);

impl<S: Send + Sync, T: SpecDocument> FromRequest<S> for Spec<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let body = json_body(req, state).await?;
        let mut value: Value = serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_document",
                format!("the body is not JSON: {}", scrub(&e)),
            )
        })?;
        if let Some(data) = value.get_mut("data") {
            let kind = data.get("type").and_then(Value::as_str).unwrap_or("");
            if !T::TYPES.contains(&kind) {
                return Err(type_mismatch(T::TYPES[0]));
            }
            value = data
                .get_mut("attributes")
                .map(Value::take)
                .unwrap_or_default();
        }
        serde_json::from_value(value)
            .map(Spec)
            .map_err(|e| ApiError::unprocessable(T::INVALID, scrub(&e)))
    }
}

fn type_mismatch(expected: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "type_mismatch",
        format!("expected resource type `{expected}`"),
    )
}

/// The body of a JSON request: the media type checked, the size capped.
async fn json_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(ct) = content_type {
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence != "application/json" && essence != JSON_API {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("send {JSON_API} or application/json"),
            ));
        }
    }
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is too large",
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                "the request body could not be read",
            )
        }
    })
}

/// serde's message without the offending value: it may be a secret sent in the wrong
/// field. Quoted fragments are replaced, the rest (field names, expected types) stays.
fn scrub(e: &serde_json::Error) -> String {
    let mut text = e.to_string();
    // "unknown variant `<value>`" quotes the value in backticks: drop it too.
    if let Some(start) = text.find("unknown variant `") {
        let from = start + "unknown variant `".len();
        if let Some(len) = text[from..].find('`') {
            text.replace_range(from..from + len, "…");
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut in_quotes = false;
    for ch in text.chars() {
        match (ch, in_quotes) {
            ('"', false) => {
                in_quotes = true;
                out.push_str("\"…");
            }
            ('"', true) => {
                in_quotes = false;
                out.push('"');
            }
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    // Field names in serde messages are in backticks, never quotes, so they survive.
    out
}

/// A JSON:API response document.
pub struct Document {
    status: StatusCode,
    body: Value,
}

impl Document {
    /// `{"data": {"type", "id", "attributes"}}` with 200.
    pub fn resource(kind: &str, id: &str, attributes: Value) -> Self {
        Document {
            status: StatusCode::OK,
            body: json!({"data": resource(kind, id, attributes)}),
        }
    }

    /// `{"data": <resource>}` with 200, for an already rendered resource object.
    pub fn data(resource: Value) -> Self {
        Document {
            status: StatusCode::OK,
            body: json!({"data": resource}),
        }
    }

    /// `{"data": [...]}` with 200.
    pub fn list(items: Vec<Value>) -> Self {
        Document {
            status: StatusCode::OK,
            body: json!({"data": items}),
        }
    }

    /// Adds top-level `meta` (paging cursors).
    pub fn meta(mut self, meta: Value) -> Self {
        self.body["meta"] = meta;
        self
    }

    /// The same document with another status (201 on create).
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

/// One resource object.
pub fn resource(kind: &str, id: &str, attributes: Value) -> Value {
    json!({"type": kind, "id": id, "attributes": attributes})
}

impl IntoResponse for Document {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_API));
        response
    }
}

/// Query parameters with a typed `400 invalid_query` instead of axum's rejection.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| QueryParams(value))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn scrub_removes_quoted_values() {
        let e = serde_json::from_str::<u64>("\"sk_live_secret\"").unwrap_err();
        let scrubbed = super::scrub(&e);
        assert!(!scrubbed.contains("sk_live_secret"), "{scrubbed}");
        assert!(scrubbed.contains("invalid type"));
        #[derive(Debug, serde::Deserialize)]
        #[serde(rename_all = "lowercase")]
        enum Mode {
            _Sandbox,
        }
        let e = serde_json::from_str::<Mode>("\"sk_live_in_the_wrong_field\"").unwrap_err();
        let scrubbed = super::scrub(&e);
        assert!(!scrubbed.contains("sk_live"), "{scrubbed}");
        assert!(scrubbed.contains("unknown variant"), "{scrubbed}");
    }
}
