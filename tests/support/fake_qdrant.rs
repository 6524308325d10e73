//! A fake Qdrant on loopback speaking Qdrant's REST wire format: the key in `api-key`,
//! answers `{"result", "status": "ok", "time"}` and errors `{"status": {"error"},
//! "time"}`. Collections live in memory and are created by the test
//! ([`FakeQdrant::create_collection`]) with a vector size; distance is cosine. It
//! records what it receives so tests can check it.
//!
//! - `GET /collections`: the collections' names.
//! - `PUT /collections/{c}/points`: upsert `{"points": [{"id", "vector", "payload"}]}`;
//!   ids are unsigned integers or UUIDs, and a vector of the wrong size is a 400.
//! - `POST /collections/{c}/points/search`: `{"vector", "limit", "filter",
//!   "with_payload"}`, the `limit` best points by cosine similarity. Filters support
//!   `must`, `should` and `must_not` of `{"key", "match": {"value"}}`,
//!   `{"key", "match": {"any"}}`, `{"has_id"}` and nested filters.
//! - `POST /collections/{c}/points/delete`: `{"points": [ids]}`.
//!
//! Writes answer `"status": "completed"` with `?wait=true`, else `"acknowledged"`. Bodies
//! must be JSON objects sent as `application/json`. An unknown collection is a 404; a
//! missing or wrong key a 401 with a plain-text body, as Qdrant answers.
//! [`FakeQdrant::set_failure`] makes every request answer a given status instead (429,
//! 5xx).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The only API key the fake accepts.
pub const GOOD_KEY: &str = "qdrant-api-key-FakeGoodDoNotLeak-0123456789";

/// A request as the fake received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The query string, if any (`wait=true`).
    pub query: Option<String>,
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

/// A stored point.
#[derive(Debug, Clone)]
struct Point {
    /// The normalised id: a number, or a hyphenated lower-case UUID.
    id: Value,
    vector: Vec<f64>,
    payload: Value,
    /// The operation that last wrote it.
    version: u64,
}

#[derive(Debug)]
struct Collection {
    size: usize,
    /// By the id's JSON text.
    points: BTreeMap<String, Point>,
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    collections: BTreeMap<String, Collection>,
    operations: u64,
    failure: Option<StatusCode>,
}

/// Handle to a running fake.
#[derive(Clone, Default)]
pub struct FakeQdrant {
    inner: Arc<Mutex<Inner>>,
}

impl FakeQdrant {
    /// Starts the fake; returns it and its address.
    pub async fn start() -> (Self, SocketAddr) {
        let fake = FakeQdrant::default();
        let router = Router::new()
            .route("/collections", get(list_collections))
            .route("/collections/{collection}/points", put(upsert))
            .route("/collections/{collection}/points/search", post(search))
            .route("/collections/{collection}/points/delete", post(delete))
            .with_state(fake.clone());
        let addr = super::serve_on_loopback(router).await;
        (fake, addr)
    }

    /// Creates an empty collection of vectors of `size` dimensions (cosine distance).
    pub fn create_collection(&self, name: &str, size: usize) {
        self.inner.lock().unwrap().collections.insert(
            name.to_owned(),
            Collection {
                size,
                points: BTreeMap::new(),
            },
        );
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// How many points a collection holds (0 when it does not exist).
    pub fn point_count(&self, collection: &str) -> usize {
        self.inner
            .lock()
            .unwrap()
            .collections
            .get(collection)
            .map_or(0, |c| c.points.len())
    }

    /// A stored point's payload, by its id as the connector sent it.
    pub fn payload(&self, collection: &str, id: &Value) -> Option<Value> {
        let id = point_id(id)?;
        self.inner
            .lock()
            .unwrap()
            .collections
            .get(collection)?
            .points
            .get(&id.to_string())
            .map(|p| p.payload.clone())
    }

    /// Makes every request answer `status` (e.g. 429, 503) until set back to `None`.
    pub fn set_failure(&self, status: Option<u16>) {
        self.inner.lock().unwrap().failure =
            status.map(|s| StatusCode::from_u16(s).expect("a valid status"));
    }
}

fn qdrant_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"status": {"error": message}, "time": 0.0})),
    )
        .into_response()
}

fn not_found(collection: &str) -> Response {
    qdrant_error(
        StatusCode::NOT_FOUND,
        &format!("Not found: Collection `{collection}` doesn't exist!"),
    )
}

fn ok(result: Value) -> Response {
    Json(json!({"result": result, "status": "ok", "time": 0.000_42})).into_response()
}

/// Records the request and checks the key as Qdrant does.
#[allow(clippy::result_large_err)]
fn receive(
    fake: &FakeQdrant,
    method: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Received, Response> {
    let received = Received {
        method: method.into(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
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
        return Err(qdrant_error(
            status,
            status.canonical_reason().unwrap_or("Error"),
        ));
    }
    match received.header("api-key") {
        None => {
            return Err((
                StatusCode::UNAUTHORIZED,
                "Must provide an API key or an Authorization bearer token",
            )
                .into_response())
        }
        Some(key) if key != GOOD_KEY => {
            return Err((StatusCode::UNAUTHORIZED, "Invalid api-key").into_response())
        }
        Some(_) => {}
    }
    let json_body = received
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json"));
    if method != "GET" && !json_body {
        return Err(qdrant_error(StatusCode::BAD_REQUEST, "Content type error"));
    }
    if method != "GET" && !received.json.is_object() {
        return Err(qdrant_error(
            StatusCode::BAD_REQUEST,
            "Format error in JSON body: expected a JSON object",
        ));
    }
    Ok(received)
}

/// A point id as Qdrant takes it: an unsigned integer, or a UUID (kept hyphenated and
/// lower case, as Qdrant answers it).
fn point_id(id: &Value) -> Option<Value> {
    match id {
        Value::Number(n) => n.as_u64().map(Value::from),
        Value::String(s) => uuid::Uuid::parse_str(s)
            .ok()
            .map(|u| Value::String(u.to_string())),
        _ => None,
    }
}

fn bad_id(id: &Value) -> String {
    format!(
        "Format error in JSON body: value {id} is not a valid point ID, valid values are \
         either an unsigned integer or a UUID"
    )
}

/// A vector of `size` numbers; `Err` is Qdrant's message.
fn vector(value: &Value, size: usize) -> Result<Vec<f64>, String> {
    let vector: Vec<f64> = value
        .as_array()
        .and_then(|items| items.iter().map(Value::as_f64).collect())
        .ok_or("Format error in JSON body: vector must be a list of numbers")?;
    if vector.len() != size {
        return Err(format!(
            "Wrong input: Vector dimension error: expected dim: {size}, got {}",
            vector.len()
        ));
    }
    Ok(vector)
}

/// An update's answer: `completed` when the caller waited for it.
fn update_result(operation_id: u64, uri: &Uri) -> Response {
    let waited = uri
        .query()
        .is_some_and(|q| q.split('&').any(|pair| pair == "wait=true"));
    let status = if waited { "completed" } else { "acknowledged" };
    ok(json!({"operation_id": operation_id, "status": status}))
}

async fn list_collections(
    State(fake): State<FakeQdrant>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = receive(&fake, "GET", &uri, &headers, b"") {
        return response;
    }
    let inner = fake.inner.lock().unwrap();
    let collections: Vec<Value> = inner
        .collections
        .keys()
        .map(|name| json!({ "name": name }))
        .collect();
    ok(json!({ "collections": collections }))
}

async fn upsert(
    State(fake): State<FakeQdrant>,
    Path(collection): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = match receive(&fake, "PUT", &uri, &headers, &body) {
        Ok(r) => r,
        Err(response) => return response,
    };
    let mut inner = fake.inner.lock().unwrap();
    let operation_id = inner.operations + 1;
    let Some(stored) = inner.collections.get_mut(&collection) else {
        return not_found(&collection);
    };
    let Some(points) = r.json["points"].as_array() else {
        return qdrant_error(
            StatusCode::BAD_REQUEST,
            "Format error in JSON body: missing field `points`",
        );
    };
    // Qdrant checks the whole batch before applying any of it.
    let mut checked = Vec::with_capacity(points.len());
    for point in points {
        let Some(id) = point_id(&point["id"]) else {
            return qdrant_error(StatusCode::BAD_REQUEST, &bad_id(&point["id"]));
        };
        let vector = match vector(&point["vector"], stored.size) {
            Ok(vector) => vector,
            Err(message) => return qdrant_error(StatusCode::BAD_REQUEST, &message),
        };
        let payload = match &point["payload"] {
            Value::Null => json!({}),
            payload @ Value::Object(_) => payload.clone(),
            _ => {
                return qdrant_error(
                    StatusCode::BAD_REQUEST,
                    "Format error in JSON body: payload must be an object",
                )
            }
        };
        checked.push(Point {
            id,
            vector,
            payload,
            version: operation_id,
        });
    }
    for point in checked {
        stored.points.insert(point.id.to_string(), point);
    }
    inner.operations = operation_id;
    update_result(operation_id, &uri)
}

async fn search(
    State(fake): State<FakeQdrant>,
    Path(collection): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = match receive(&fake, "POST", &uri, &headers, &body) {
        Ok(r) => r,
        Err(response) => return response,
    };
    let inner = fake.inner.lock().unwrap();
    let Some(stored) = inner.collections.get(&collection) else {
        return not_found(&collection);
    };
    let query = match vector(&r.json["vector"], stored.size) {
        Ok(vector) => vector,
        Err(message) => return qdrant_error(StatusCode::BAD_REQUEST, &message),
    };
    let Some(limit) = r.json["limit"].as_u64() else {
        return qdrant_error(
            StatusCode::BAD_REQUEST,
            "Format error in JSON body: missing field `limit`",
        );
    };
    let with_payload = r.json["with_payload"].as_bool().unwrap_or(false);
    let filter = &r.json["filter"];
    let mut hits = Vec::new();
    for point in stored.points.values() {
        if !filter.is_null() {
            match matches_filter(filter, &point.id, &point.payload) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(message) => return qdrant_error(StatusCode::BAD_REQUEST, &message),
            }
        }
        hits.push((cosine(&query, &point.vector), point));
    }
    hits.sort_by(|a, b| b.0.total_cmp(&a.0));
    let results: Vec<Value> = hits
        .into_iter()
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .map(|(score, point)| {
            json!({
                "id": point.id, "version": point.version, "score": score,
                "payload": if with_payload { point.payload.clone() } else { Value::Null },
                "vector": null,
            })
        })
        .collect();
    ok(Value::Array(results))
}

async fn delete(
    State(fake): State<FakeQdrant>,
    Path(collection): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = match receive(&fake, "POST", &uri, &headers, &body) {
        Ok(r) => r,
        Err(response) => return response,
    };
    let mut inner = fake.inner.lock().unwrap();
    let operation_id = inner.operations + 1;
    let Some(stored) = inner.collections.get_mut(&collection) else {
        return not_found(&collection);
    };
    let Some(ids) = r.json["points"].as_array() else {
        return qdrant_error(
            StatusCode::BAD_REQUEST,
            "Format error in JSON body: expected `points` or `filter`",
        );
    };
    let mut keys = Vec::with_capacity(ids.len());
    for id in ids {
        match point_id(id) {
            Some(id) => keys.push(id.to_string()),
            None => return qdrant_error(StatusCode::BAD_REQUEST, &bad_id(id)),
        }
    }
    // Deleting an id that is not there is not an error.
    for key in keys {
        stored.points.remove(&key);
    }
    inner.operations = operation_id;
    update_result(operation_id, &uri)
}

/// Cosine similarity (Qdrant's `Cosine` distance score); 0 for a zero vector.
fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let denominator = norm(a) * norm(b);
    if denominator == 0.0 {
        return 0.0;
    }
    a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / denominator
}

/// Whether a point satisfies a Qdrant filter; `Err` for a condition the fake does not
/// know.
fn matches_filter(filter: &Value, id: &Value, payload: &Value) -> Result<bool, String> {
    if !filter.is_object() {
        return Err("Format error in JSON body: filter must be an object".into());
    }
    let clause = |name: &str| -> Result<Vec<bool>, String> {
        match &filter[name] {
            Value::Null => Ok(Vec::new()),
            Value::Array(conditions) => conditions
                .iter()
                .map(|c| satisfies(c, id, payload))
                .collect(),
            single => Ok(vec![satisfies(single, id, payload)?]),
        }
    };
    let must = clause("must")?;
    let should = clause("should")?;
    let must_not = clause("must_not")?;
    Ok(must.iter().all(|m| *m)
        && (should.is_empty() || should.iter().any(|s| *s))
        && !must_not.iter().any(|m| *m))
}

/// Whether a point satisfies one condition of a filter clause.
fn satisfies(condition: &Value, id: &Value, payload: &Value) -> Result<bool, String> {
    if let Some(ids) = condition["has_id"].as_array() {
        return Ok(ids
            .iter()
            .filter_map(point_id)
            .any(|candidate| &candidate == id));
    }
    if ["must", "should", "must_not"]
        .iter()
        .any(|clause| !condition[*clause].is_null())
    {
        return matches_filter(condition, id, payload);
    }
    let unsupported = || format!("Format error in JSON body: unsupported condition {condition}");
    let key = condition["key"].as_str().ok_or_else(unsupported)?;
    let value = key.split('.').fold(payload, |value, part| &value[part]);
    // A payload list matches when any of its elements does.
    let is = |expected: &Value| {
        value == expected
            || value
                .as_array()
                .is_some_and(|items| items.contains(expected))
    };
    let matcher = &condition["match"];
    if !matcher["value"].is_null() {
        return Ok(is(&matcher["value"]));
    }
    if let Some(any) = matcher["any"].as_array() {
        return Ok(any.iter().any(is));
    }
    Err(unsupported())
}
