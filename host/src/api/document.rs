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

/// A request document decoded in one pass.
#[derive(Deserialize)]
#[serde(bound = "T: DeserializeOwned")]
struct Typed<T> {
    data: TypedData<T>,
}

#[derive(Deserialize)]
#[serde(bound = "T: DeserializeOwned")]
struct TypedData<T> {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default = "Option::default")]
    attributes: Option<T>,
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
        // A well-formed document decodes in one pass, straight into `T`; anything else
        // is decoded again step by step, to say which step fails and where.
        if let Ok(Typed {
            data:
                TypedData {
                    kind,
                    attributes: Some(attributes),
                },
        }) = serde_json::from_slice::<Typed<T>>(&body)
        {
            if kind == T::TYPE {
                return Ok(Attributes(attributes));
            }
        }
        let envelope: Envelope = decode_slice(&body).map_err(|why| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_document",
                format!(
                    "expected a JSON:API document {{\"data\": {{\"type\", \"attributes\"}}}}: {why}"
                ),
            )
        })?;
        if envelope.data.kind != T::TYPE {
            return Err(type_mismatch(T::TYPE));
        }
        let attributes = envelope.data.attributes.unwrap_or_else(|| json!({}));
        decode_value(attributes)
            .map(Attributes)
            .map_err(|why| ApiError::unprocessable("invalid_attributes", why))
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
        let mut value: Value = decode_slice(&body).map_err(|why| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_document",
                format!("the body is not JSON: {why}"),
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
        decode_value(value)
            .map(Spec)
            .map_err(|why| ApiError::unprocessable(T::INVALID, why))
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

/// Decodes `T` from JSON text, or says where and how it fails without the values.
fn decode_slice<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let mut json = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut json).map_err(|e| describe(&e))
}

/// Decodes `T` from a JSON value, or says where and how it fails without the values.
fn decode_value<T: DeserializeOwned>(value: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| describe(&e))
}

/// The failing path and a fixed category; never serde's own text, which quotes the
/// offending value (a secret sent in the wrong field, a token pasted into a number).
fn describe(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let category = category(e.inner());
    let mut segments: Vec<String> = e.path().iter().map(segment).collect();
    // An unknown field's own name is the client's text, not the type's: it may be a
    // secret pasted as a key. Name where it stood, not what it was.
    if category.starts_with("unknown field") {
        segments.pop();
    }
    let path = segments.join(".");
    if path.is_empty() {
        category
    } else {
        format!("{category} at `{path}`")
    }
}

/// One path segment. Map keys are the client's text, so an odd one is elided.
fn segment(segment: &serde_path_to_error::Segment) -> String {
    use serde_path_to_error::Segment;
    match segment {
        Segment::Seq { index } => index.to_string(),
        Segment::Map { key } | Segment::Enum { variant: key }
            if key.len() <= 64
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) =>
        {
            key.clone()
        }
        _ => "…".into(),
    }
}

/// What kind of mistake, from serde's fixed message prefixes. Only the parts serde
/// writes from the target type (a field it wanted, what it expected) are kept.
fn category(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax => format!("malformed JSON at line {} column {}", e.line(), e.column()),
        Category::Eof => "the JSON ends early".into(),
        Category::Io => "the body could not be read".into(),
        Category::Data => {
            let text = e.to_string();
            let expected = expectation(&text);
            if let Some(rest) = text.strip_prefix("missing field `") {
                // The field name is the type's own.
                let field = rest.split('`').next().unwrap_or_default();
                format!("missing field `{field}`")
            } else if text.starts_with("unknown field") {
                format!("unknown field{expected}")
            } else if text.starts_with("duplicate field") {
                "duplicate field".into()
            } else if text.starts_with("unknown variant") {
                format!("not an allowed value{expected}")
            } else if text.starts_with("invalid type") {
                format!("wrong type{expected}")
            } else if text.starts_with("invalid length") {
                format!("wrong length{expected}")
            } else {
                "invalid value".into()
            }
        }
    }
}

/// `, expected …` of a serde message: written by serde from the target type, always
/// after the quoted value, so the last occurrence is serde's own.
fn expectation(text: &str) -> String {
    let Some(at) = text.rfind(", expected ") else {
        return String::new();
    };
    let tail = &text[at..];
    // serde_json appends the position of a failure in text.
    let tail = tail.rfind(" at line ").map_or(tail, |end| &tail[..end]);
    if tail.contains('"') {
        String::new()
    } else {
        tail.to_owned()
    }
}

/// A JSON:API response document.
pub struct Document {
    status: StatusCode,
    body: Body,
}

/// A document's body: a JSON tree, or text already serialized from a typed resource.
enum Body {
    Tree(Value),
    Serialized(Vec<u8>),
}

impl Document {
    /// `{"data": {"type", "id", "attributes"}}` with 200.
    pub fn resource(kind: &str, id: &str, attributes: Value) -> Self {
        Document {
            status: StatusCode::OK,
            body: Body::Tree(json!({"data": resource(kind, id, attributes)})),
        }
    }

    /// A whole document serialized from a typed value, with 200.
    pub fn serialized(document: &impl serde::Serialize) -> Self {
        Document {
            status: StatusCode::OK,
            body: Body::Serialized(
                serde_json::to_vec(document).expect("a JSON:API document serializes"),
            ),
        }
    }

    /// `{"data": <resource>}` with 200, for an already rendered resource object.
    pub fn data(resource: Value) -> Self {
        Document {
            status: StatusCode::OK,
            body: Body::Tree(json!({"data": resource})),
        }
    }

    /// `{"data": [...]}` with 200.
    pub fn list(items: Vec<Value>) -> Self {
        Document {
            status: StatusCode::OK,
            body: Body::Tree(json!({"data": items})),
        }
    }

    /// Adds top-level `meta` (paging cursors) to a document built as a tree.
    pub fn meta(mut self, meta: Value) -> Self {
        match &mut self.body {
            Body::Tree(tree) => tree["meta"] = meta,
            // Typed documents carry their own fields; none is given `meta` afterwards.
            Body::Serialized(_) => debug_assert!(false, "meta on a serialized document"),
        }
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
        let body = match self.body {
            Body::Tree(tree) => serde_json::to_vec(&tree).expect("a JSON tree serializes"),
            Body::Serialized(bytes) => bytes,
        };
        let content_type = [(header::CONTENT_TYPE, HeaderValue::from_static(JSON_API))];
        (self.status, content_type, body).into_response()
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
    use super::{decode_slice, decode_value};
    use serde::Deserialize;
    use serde_json::{json, Value};

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[allow(dead_code)]
    struct Credential {
        kind: Kind,
        expires_in: Option<u64>,
        scopes: Option<Vec<String>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Oauth2,
        Apikey,
    }

    const SECRET: &str = "sk_live_4eC39\"HqLyj`WDar\\\"jtT1";

    fn refusal(value: Value) -> String {
        decode_value::<Credential>(value).unwrap_err()
    }

    #[test]
    fn a_secret_in_a_malformed_value_is_never_echoed() {
        let cases = [
            json!({"kind": SECRET}),
            json!({"kind": "oauth2", "expiresIn": SECRET}),
            json!({"kind": "oauth2", "scopes": [SECRET, 3]}),
            json!({"kind": "oauth2", "scopes": SECRET}),
            json!({"kind": {"nested": SECRET}}),
            json!({"kind": "oauth2", SECRET: 1}),
            json!({"kind": "oauth2", "sk_live_4eC39HqLyjWDarjtT1zdp7dc": 1}),
        ];
        for case in cases {
            let why = refusal(case.clone());
            for part in ["sk_live", "4eC39", "HqLyj", "WDar", "jtT1"] {
                assert!(!why.contains(part), "{case} -> {why}");
            }
        }
        let text = format!(r#"{{"kind": {}}}"#, serde_json::to_string(SECRET).unwrap());
        let why = decode_slice::<Credential>(text.as_bytes()).unwrap_err();
        assert!(!why.contains("sk_live") && !why.contains("jtT1"), "{why}");
    }

    #[test]
    fn refusals_name_the_path_and_the_rule() {
        assert_eq!(
            refusal(json!({"kind": "basic"})),
            "not an allowed value, expected `oauth2` or `apikey` at `kind`"
        );
        assert_eq!(
            refusal(json!({"kind": "oauth2", "expiresIn": "soon"})),
            "wrong type, expected u64 at `expiresIn`"
        );
        assert_eq!(
            refusal(json!({"kind": "oauth2", "scopes": ["a", 3]})),
            "wrong type, expected a string at `scopes.1`"
        );
        assert_eq!(refusal(json!({})), "missing field `kind`");
        assert!(refusal(json!({"kind": "oauth2", "extra": 1})).starts_with("unknown field"));
        assert!(decode_slice::<Credential>(b"{\"kind\": ")
            .unwrap_err()
            .contains("ends early"));
        assert!(decode_slice::<Credential>(b"{kind}")
            .unwrap_err()
            .starts_with("malformed JSON at line 1"));
    }
}
