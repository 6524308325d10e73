//! Postmark connector (`email.postmark`).
//!
//! Speaks Postmark's real wire format: JSON bodies with PascalCase fields, the server
//! token as `X-Postmark-Server-Token`, and Postmark's error body (`{"ErrorCode",
//! "Message"}`) mapped to connector errors. `email.send@1` posts one message to `/email`;
//! `email.sendBatch@1` posts up to 500 to `/email/batch`, whose per-message answers
//! become per-message results, so one refused address does not fail the batch. The
//! connection config's `baseUrl` replaces `https://api.postmarkapp.com`.

use conduit_sdk::http::{Request, Response};
use conduit_sdk::{
    json, AuthType, Capability, Connector, ConnectorInfo, Context, Error, Health, RateProfile,
    Secret, Value,
};
use serde_json::Map;

const DEFAULT_BASE_URL: &str = "https://api.postmarkapp.com";
/// Postmark's cap on the messages of one batch call.
const MAX_BATCH: usize = 500;
/// Postmark's cap on the addresses of one `To`, `Cc` or `Bcc` field.
const MAX_RECIPIENTS: usize = 50;
/// Postmark's `ErrorCode` for a bad or missing server token.
const BAD_TOKEN: i64 = 10;
/// Postmark's `ErrorCode` for an invalid email request (bad address, missing field…).
const INVALID_REQUEST: i64 = 300;

struct Postmark;

impl Connector for Postmark {
    fn info() -> ConnectorInfo {
        ConnectorInfo {
            slug: "postmark".into(),
            integration_key: "email.postmark".into(),
            version: 1,
            display_name: "Postmark".into(),
            category: "email".into(),
            auth_type: AuthType::ApiKey,
            ownership_modes: vec!["managed".into(), "byok".into()],
            capabilities: vec![
                Capability::new("email.send", 1, "Send an email"),
                Capability::new("email.sendBatch", 1, "Send up to 500 emails in one call"),
            ],
            allowed_hosts: vec!["api.postmarkapp.com".into()],
            // Postmark publishes no fixed request limit but answers 429 to floods and
            // asks for batch calls at volume; 50 calls a second (up to 25 000 messages
            // with batches) stays well inside what it accepts.
            rate_profile: RateProfile {
                requests: 50,
                per_seconds: 1,
                burst: 50,
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
            "email.send" => send(&api, &input),
            "email.sendBatch" => send_batch(&api, &input),
            other => Err(Error::unsupported(format!(
                "postmark does not provide `{other}`"
            ))),
        }
    }

    fn health_check(ctx: &Context, secret: &Secret) -> Result<Health, Error> {
        let api = Api::new(ctx, secret)?;
        let server = api.call(Request::get(api.url("/server")))?;
        Ok(Health {
            healthy: true,
            detail: server["Name"].as_str().unwrap_or("server readable").into(),
        })
    }
}

conduit_sdk::export_connector!(Postmark);

/// One call's view of Postmark: where it is and the server token.
struct Api<'a> {
    base: String,
    token: &'a str,
}

impl<'a> Api<'a> {
    fn new(ctx: &Context, secret: &'a Secret) -> Result<Self, Error> {
        let token = secret.require_api_key("Postmark server token")?;
        Ok(Api {
            base: ctx.base_url(DEFAULT_BASE_URL),
            token,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends with Postmark's headers and turns any non-2xx answer into an error.
    fn call(&self, request: Request) -> Result<Value, Error> {
        let response = request
            .header("x-postmark-server-token", self.token)
            .header("accept", "application/json")
            .send()?;
        if response.is_success() {
            response.json()
        } else {
            Err(postmark_error(&response))
        }
    }
}

/// Maps Postmark's error body. A rejected token (401, `ErrorCode` 10) means the tenant
/// must reconnect; an invalid email request (300) is the caller's input; anything else
/// is a provider error carrying the `ErrorCode`, retryable on 429 and 5xx.
fn postmark_error(response: &Response) -> Error {
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    let code = body["ErrorCode"].as_i64();
    let message = body["Message"]
        .as_str()
        .unwrap_or("postmark returned an error")
        .to_owned();
    if response.status == 401 || code == Some(BAD_TOKEN) {
        return Error::needs_reauth(format!("postmark rejected the server token: {message}"));
    }
    if code == Some(INVALID_REQUEST) {
        return Error::invalid_input(format!("postmark refused the message: {message}"));
    }
    Error::provider(response.status, code.map(|c| c.to_string()), message)
}

fn send(api: &Api, input: &Value) -> Result<Value, Error> {
    let message = postmark_message(input).map_err(Error::invalid_input)?;
    let sent = api.call(Request::post(api.url("/email")).json(&message))?;
    Ok(json!({"messageId": sent["MessageID"], "submittedAt": sent["SubmittedAt"]}))
}

fn send_batch(api: &Api, input: &Value) -> Result<Value, Error> {
    let inputs = input
        .get("messages")
        .and_then(Value::as_array)
        .filter(|list| (1..=MAX_BATCH).contains(&list.len()))
        .ok_or_else(|| {
            Error::invalid_input(format!("`messages` must be a list of 1 to {MAX_BATCH}"))
        })?;
    let messages = inputs
        .iter()
        .enumerate()
        .map(|(i, m)| {
            postmark_message(m).map_err(|e| Error::invalid_input(format!("`messages[{i}]`: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let answers = api.call(Request::post(api.url("/email/batch")).json(&Value::Array(messages)))?;
    // Postmark answers one result per message, in the order sent.
    let answers = answers
        .as_array()
        .filter(|answers| answers.len() == inputs.len())
        .ok_or_else(|| {
            Error::internal(format!(
                "postmark's batch answer does not hold one result for each of the {} messages",
                inputs.len()
            ))
        })?;
    let results: Vec<Value> = answers
        .iter()
        .map(|answer| match answer["ErrorCode"].as_i64().unwrap_or(0) {
            0 => json!({"messageId": answer["MessageID"]}),
            code => json!({"error": {
                "code": code.to_string(),
                "message": answer["Message"].as_str().unwrap_or("postmark refused the message"),
            }}),
        })
        .collect();
    Ok(json!({ "results": results }))
}

/// Postmark's message object for one `email.send@1` input; errors are messages for
/// `invalid-input`. Absent fields are left out rather than sent as nulls.
fn postmark_message(input: &Value) -> Result<Value, String> {
    let mut message = Map::new();
    let from = string(input, "from")?
        .ok_or("`from` is required for Postmark (a confirmed sender signature or domain)")?;
    message.insert("From".into(), json!(from));
    for (field, name) in [("to", "To"), ("cc", "Cc"), ("bcc", "Bcc")] {
        if let Some(list) = addresses(input, field)? {
            message.insert(name.into(), json!(list));
        }
    }
    if !message.contains_key("To") {
        return Err("`to` needs at least one address".into());
    }
    for (field, name) in [
        ("replyTo", "ReplyTo"),
        ("subject", "Subject"),
        ("text", "TextBody"),
        ("html", "HtmlBody"),
        ("tag", "Tag"),
        // Provider-specific: the message stream (`outbound`, `broadcast`…).
        ("messageStream", "MessageStream"),
    ] {
        if let Some(value) = string(input, field)? {
            message.insert(name.into(), json!(value));
        }
    }
    if !message.contains_key("TextBody") && !message.contains_key("HtmlBody") {
        return Err("`text` or `html` is required".into());
    }
    if let Some(headers) = string_map(input, "headers")? {
        let headers: Vec<Value> = headers
            .iter()
            .map(|(name, value)| json!({"Name": name, "Value": value}))
            .collect();
        message.insert("Headers".into(), json!(headers));
    }
    if let Some(metadata) = string_map(input, "metadata")? {
        message.insert("Metadata".into(), Value::Object(metadata.clone()));
    }
    Ok(Value::Object(message))
}

/// An optional string field.
fn string<'a>(input: &'a Value, key: &str) -> Result<Option<&'a str>, String> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("`{key}` must be a string")),
    }
}

/// An optional list of addresses (a single string is a list of one), comma-joined as
/// Postmark takes them; `None` when absent or empty.
fn addresses(input: &Value, key: &str) -> Result<Option<String>, String> {
    let items: Vec<&Value> = match input.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(single @ Value::String(_)) => vec![single],
        Some(Value::Array(items)) => items.iter().collect(),
        Some(_) => return Err(format!("`{key}` must be a list of addresses")),
    };
    let list = items
        .iter()
        .map(|item| {
            item.as_str()
                .map(str::trim)
                .filter(|address| !address.is_empty())
                .ok_or_else(|| format!("`{key}` must be a list of addresses"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if list.len() > MAX_RECIPIENTS {
        return Err(format!(
            "`{key}` has {} addresses; Postmark takes at most {MAX_RECIPIENTS}",
            list.len()
        ));
    }
    Ok(Some(list.join(", ")).filter(|joined| !joined.is_empty()))
}

/// An optional object of strings (`headers`, `metadata`).
fn string_map<'a>(input: &'a Value, key: &str) -> Result<Option<&'a Map<String, Value>>, String> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) if map.values().all(Value::is_string) => Ok(Some(map)),
        Some(_) => Err(format!("`{key}` must be an object of strings")),
    }
}
