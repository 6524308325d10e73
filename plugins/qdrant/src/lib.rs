//! Qdrant connector (`knowledge.qdrant`).
//!
//! Speaks Qdrant's REST API with the cluster's key as `api-key`: `knowledge.upsert@1`
//! puts points into a collection, `knowledge.search@1` finds the points nearest to a
//! vector (with their payloads) and `knowledge.delete@1` removes points by id. Writes
//! pass `wait=true`, so a count is answered only once Qdrant has applied the operation.
//! Qdrant's error body (`{"status": {"error": "…"}}`) is mapped to connector errors.
//!
//! Every cluster has its own address, so the connection config's `baseUrl` is required
//! (`https://xyz.eu-central.aws.cloud.qdrant.io:6333`). The allowed hosts cover Qdrant
//! Cloud; a self-hosted cluster needs `allowed_hosts` set in `plugins.toml`.

use conduit_sdk::http::{Request, Response};
use conduit_sdk::input::{id_field, opt};
use conduit_sdk::{
    json, AuthType, Capability, Connector, ConnectorInfo, Context, Error, Health, RateProfile,
    Secret, Value,
};

/// How many points a search answers when the input names no `limit`.
const DEFAULT_LIMIT: u64 = 10;

struct Qdrant;

impl Connector for Qdrant {
    fn info() -> ConnectorInfo {
        ConnectorInfo {
            slug: "qdrant".into(),
            integration_key: "knowledge.qdrant".into(),
            version: 1,
            display_name: "Qdrant".into(),
            category: "knowledge".into(),
            auth_type: AuthType::ApiKey,
            ownership_modes: vec!["managed".into(), "byok".into()],
            capabilities: vec![
                Capability::new("knowledge.upsert", 1, "Insert or replace points"),
                Capability::new("knowledge.search", 1, "Find the points nearest a vector"),
                Capability::new("knowledge.delete", 1, "Delete points by id"),
            ],
            // Qdrant Cloud serves its REST API on 6333 and on 443.
            allowed_hosts: vec!["*.cloud.qdrant.io".into(), "*.cloud.qdrant.io:6333".into()],
            // Qdrant sets no request limit of its own (a cluster's capacity is the
            // limit); this keeps one connection from monopolising a small cluster.
            rate_profile: RateProfile {
                requests: 100,
                per_seconds: 1,
                burst: 100,
            },
            oauth: None,
        }
    }

    fn execute(
        ctx: &Context,
        secret: &Secret,
        capability: &str,
        input: Value,
    ) -> Result<Value, Error> {
        let api = Api::new(ctx, secret)?;
        match capability {
            "knowledge.upsert" => upsert(&api, &input),
            "knowledge.search" => search(&api, &input),
            "knowledge.delete" => delete(&api, &input),
            other => Err(Error::unsupported(format!(
                "qdrant does not provide `{other}`"
            ))),
        }
    }

    fn health_check(ctx: &Context, secret: &Secret) -> Result<Health, Error> {
        let api = Api::new(ctx, secret)?;
        let listed = api.call(Request::get(api.url("/collections")))?;
        let count = listed["result"]["collections"]
            .as_array()
            .map_or(0, Vec::len);
        Ok(Health {
            healthy: true,
            detail: format!("{count} collections"),
        })
    }
}

conduit_sdk::export_connector!(Qdrant);

/// One call's view of a Qdrant cluster: where it is and its API key.
struct Api<'a> {
    base: String,
    key: &'a str,
}

impl<'a> Api<'a> {
    fn new(ctx: &Context, secret: &'a Secret) -> Result<Self, Error> {
        let base = ctx
            .config_str("baseUrl")
            .map(|url| url.trim_end_matches('/').to_owned())
            .filter(|url| !url.is_empty())
            .ok_or_else(|| Error::invalid_input("connection config needs baseUrl"))?;
        let key = secret.require_api_key("Qdrant API key")?;
        Ok(Api { base, key })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The URL of `path` below the input's collection, whose name must be a safe path
    /// segment.
    fn collection_url(&self, input: &Value, path: &str) -> Result<String, Error> {
        let collection = id_field(input, "collection")?;
        Ok(self.url(&format!("/collections/{collection}{path}")))
    }

    /// Sends with the API key and turns any non-2xx answer into an error.
    fn call(&self, request: Request) -> Result<Value, Error> {
        let response = request
            .header("api-key", self.key)
            .header("accept", "application/json")
            .send()?;
        if response.is_success() {
            response.json()
        } else {
            Err(qdrant_error(&response))
        }
    }
}

/// Maps Qdrant's error body (or its plain-text answer to a bad key). A rejected key
/// (401, 403) means the tenant must reconnect; a missing collection is a `not_found`
/// provider error; a refused input (400, 422) is invalid input; 429 and 5xx are
/// retryable provider errors.
fn qdrant_error(response: &Response) -> Error {
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    let message = match body["status"]["error"].as_str() {
        Some(error) => error.to_owned(),
        None => {
            let text: String = response.text().trim().chars().take(300).collect();
            if text.is_empty() {
                format!("qdrant answered {}", response.status)
            } else {
                text
            }
        }
    };
    match response.status {
        401 | 403 => Error::needs_reauth(format!("qdrant rejected the API key: {message}")),
        404 => Error::provider(404, Some("not_found".into()), message),
        400 | 422 => Error::invalid_input(format!("qdrant refused the request: {message}")),
        status => Error::provider(status, None, message),
    }
}

fn upsert(api: &Api, input: &Value) -> Result<Value, Error> {
    let url = api.collection_url(input, "/points")?;
    let points = list(input, "points")?
        .iter()
        .enumerate()
        .map(|(i, point)| {
            let (Some(id), Some(vector)) = (opt(point, "id"), opt(point, "vector")) else {
                return Err(Error::invalid_input(format!(
                    "`points[{i}]` needs an `id` and a `vector`"
                )));
            };
            let mut point_out = json!({"id": id, "vector": vector});
            if let Some(payload) = opt(point, "payload") {
                point_out["payload"] = payload.clone();
            }
            Ok(point_out)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let answer = api.call(
        Request::put(url)
            .query("wait", "true")
            .json(&json!({ "points": points })),
    )?;
    completed(&answer)?;
    Ok(json!({"upserted": points.len()}))
}

fn search(api: &Api, input: &Value) -> Result<Value, Error> {
    let url = api.collection_url(input, "/points/search")?;
    let vector = list(input, "vector")?;
    let limit = match opt(input, "limit") {
        None => DEFAULT_LIMIT,
        Some(limit) => limit
            .as_u64()
            .filter(|n| *n >= 1)
            .ok_or_else(|| Error::invalid_input("`limit` must be a positive integer"))?,
    };
    let mut body = json!({"vector": vector, "limit": limit, "with_payload": true});
    if let Some(filter) = opt(input, "filter") {
        body["filter"] = filter.clone();
    }
    let found = api.call(Request::post(url).json(&body))?;
    let results: Vec<Value> = found["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|point| {
            json!({"id": point["id"], "score": point["score"], "payload": point["payload"]})
        })
        .collect();
    Ok(json!({ "results": results }))
}

/// Deletes by id. Qdrant does not say how many of the ids existed, so `deleted` counts
/// the ids that are now gone from the collection.
fn delete(api: &Api, input: &Value) -> Result<Value, Error> {
    let url = api.collection_url(input, "/points/delete")?;
    let ids = list(input, "ids")?;
    let answer = api.call(
        Request::post(url)
            .query("wait", "true")
            .json(&json!({ "points": ids })),
    )?;
    completed(&answer)?;
    Ok(json!({"deleted": ids.len()}))
}

/// A required, non-empty list field.
fn list<'a>(input: &'a Value, key: &str) -> Result<&'a Vec<Value>, Error> {
    input
        .get(key)
        .and_then(Value::as_array)
        .filter(|items| !items.is_empty())
        .ok_or_else(|| Error::invalid_input(format!("`{key}` must be a non-empty list")))
}

/// Checks a write's answer: with `wait=true` Qdrant answers once the operation is
/// applied, `{"result": {"operation_id", "status": "completed"}, "status": "ok"}`.
fn completed(answer: &Value) -> Result<(), Error> {
    match answer["result"]["status"].as_str() {
        Some("completed") => Ok(()),
        status => Err(Error::internal(format!(
            "qdrant answered the write with status `{}` instead of `completed`",
            status.unwrap_or("none")
        ))),
    }
}
