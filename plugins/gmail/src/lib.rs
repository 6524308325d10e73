//! Gmail connector (`email.gmail`).
//!
//! OAuth 2.0 against Google's token endpoint (authorization code with PKCE, refresh),
//! then the Gmail REST API under `/gmail/v1/users/me` with `Authorization: Bearer <access
//! token>`: `email.send@1` submits a base64url RFC 2822 message (see [`message`]),
//! `email.listMessages@1` and `email.getMessage@1` read the mailbox.
//!
//! The connection config's `baseUrl` replaces `https://gmail.googleapis.com` and
//! `tokenUrl` replaces `https://oauth2.googleapis.com/token`; the host builds the consent
//! URL itself. Google's OAuth errors (`{"error", "error_description"}`) and the Gmail
//! API's (`{"error": {"code", "message", "status"}}`) become connector errors, and no
//! token, authorization code or client secret ever appears in one.

mod message;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use conduit_sdk::http::{Request, Response};
use conduit_sdk::input::id_field;
use conduit_sdk::{
    json, AuthType, Capability, Client, Connector, ConnectorInfo, Context, Error, Health,
    OauthConfig, ProviderError, RateProfile, Secret, Value,
};
use std::time::{SystemTime, UNIX_EPOCH};

const DEFAULT_BASE_URL: &str = "https://gmail.googleapis.com";
/// Google's consent page. `access_type=offline` asks for a refresh token and
/// `prompt=consent` makes Google issue one again on re-consent; the host keeps these
/// parameters when it adds its own (and when a connection overrides the endpoint).
const AUTHORIZE_URL: &str =
    "https://accounts.google.com/o/oauth2/v2/auth?access_type=offline&prompt=consent";
const TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// The authenticated user's mailbox, below the base URL.
const MAILBOX: &str = "/gmail/v1/users/me";
const DEFAULT_LIMIT: u64 = 20;
const MAX_LIMIT: u64 = 100;

struct Gmail;

impl Connector for Gmail {
    fn info() -> ConnectorInfo {
        ConnectorInfo {
            slug: "gmail".into(),
            integration_key: "email.gmail".into(),
            version: 1,
            display_name: "Gmail".into(),
            category: "email".into(),
            auth_type: AuthType::Oauth2,
            ownership_modes: vec!["managed".into(), "byok".into()],
            capabilities: vec![
                Capability::new("email.send", 1, "Send an email from the mailbox"),
                Capability::new("email.listMessages", 1, "List the mailbox's messages"),
                Capability::new("email.getMessage", 1, "Read one message"),
            ],
            allowed_hosts: vec![
                "gmail.googleapis.com".into(),
                "oauth2.googleapis.com".into(),
                "accounts.google.com".into(),
            ],
            // Gmail allows 250 quota units per user per second; reads cost 5 units
            // (sends 100, so bursts of sends may still be answered 429, retryable).
            rate_profile: RateProfile {
                requests: 50,
                per_seconds: 1,
                burst: 50,
            },
            oauth: Some(OauthConfig {
                authorize_url: AUTHORIZE_URL.into(),
                token_url: TOKEN_URL.into(),
                scopes: vec![
                    "https://www.googleapis.com/auth/gmail.send".into(),
                    "https://www.googleapis.com/auth/gmail.readonly".into(),
                ],
                pkce: true,
            }),
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
            "email.listMessages" => list_messages(&api, &input),
            "email.getMessage" => get_message(&api, &input),
            other => Err(Error::unsupported(format!(
                "gmail does not provide `{other}`"
            ))),
        }
    }

    fn health_check(ctx: &Context, secret: &Secret) -> Result<Health, Error> {
        let api = Api::new(ctx, secret)?;
        let profile = api.call(Request::get(api.url("/profile")))?;
        Ok(Health {
            healthy: true,
            detail: profile["emailAddress"]
                .as_str()
                .unwrap_or("profile readable")
                .into(),
        })
    }

    fn exchange_code(
        ctx: &Context,
        client: &Client,
        code: &str,
        redirect_uri: &str,
        code_verifier: Option<&str>,
    ) -> Result<Secret, Error> {
        let form = json!({
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "code_verifier": code_verifier,
        });
        let secrets: [&str; 3] = [
            code,
            client.client_secret.as_str(),
            code_verifier.unwrap_or(""),
        ];
        token_request(ctx, &form, &secrets)
    }

    fn refresh(ctx: &Context, client: &Client, refresh_token: &str) -> Result<Secret, Error> {
        let form = json!({
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        });
        token_request(ctx, &form, &[refresh_token, client.client_secret.as_str()])
    }
}

conduit_sdk::export_connector!(Gmail);

/// Posts a form to Google's token endpoint and reads its token answer. `secrets` are
/// the values sent that must never show up in an error.
fn token_request(ctx: &Context, form: &Value, secrets: &[&str]) -> Result<Secret, Error> {
    let url = ctx
        .config_str("tokenUrl")
        .unwrap_or_else(|| TOKEN_URL.to_owned());
    let response = Request::post(url)
        .header("accept", "application/json")
        .form(form)
        .send()?;
    if !response.is_success() {
        return Err(token_error(&response, secrets));
    }
    let body = response.json()?;
    let access_token = body["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Error::provider(
                response.status,
                None,
                "google's token answer has no access_token",
            )
        })?;
    let expires_in = body["expires_in"]
        .as_u64()
        .or_else(|| body["expires_in"].as_str().and_then(|s| s.parse().ok()));
    Ok(Secret {
        access_token: Some(access_token.to_owned()),
        // Google sends a new refresh token only on some answers; none keeps the old one.
        refresh_token: body["refresh_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
        api_key: None,
        api_secret: None,
        expires_at: expires_in.map(|secs| now_ms().saturating_add(secs.saturating_mul(1000))),
    })
}

/// Maps Google's OAuth error. `invalid_grant` (a revoked, expired or reused refresh
/// token or code) needs a person to reconnect; 429 and 5xx are transient; anything else
/// (`invalid_client`, `unauthorized_client`: the deployment's OAuth client is wrong) is a
/// non-retryable provider error carrying Google's `error` as its code.
fn token_error(response: &Response, secrets: &[&str]) -> Error {
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    let code = body["error"].as_str().map(|c| scrub(c, secrets));
    let description = scrub(
        body["error_description"]
            .as_str()
            .unwrap_or("no description"),
        secrets,
    );
    let status = response.status;
    if status == 429 || status >= 500 {
        return Error::transient(format!(
            "google's token endpoint answered {status} ({})",
            code.as_deref().unwrap_or("no error code")
        ));
    }
    if code.as_deref() == Some("invalid_grant") {
        return Error::needs_reauth(format!("invalid_grant: {description}"));
    }
    let message = format!("google's token endpoint refused the request: {description}");
    Error::provider(status, code, message)
}

/// One call's view of the Gmail API: where the mailbox is and the access token.
struct Api<'a> {
    mailbox: String,
    token: &'a str,
}

impl<'a> Api<'a> {
    fn new(ctx: &Context, secret: &'a Secret) -> Result<Self, Error> {
        let token = secret
            .access_token
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::needs_reauth("the connection has no Gmail access token"))?;
        Ok(Api {
            mailbox: format!("{}{MAILBOX}", ctx.base_url(DEFAULT_BASE_URL)),
            token,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.mailbox)
    }

    /// Sends with the bearer token and turns any non-2xx answer into an error.
    fn call(&self, request: Request) -> Result<Value, Error> {
        let response = request
            .bearer(self.token)
            .header("accept", "application/json")
            .send()?;
        if response.is_success() {
            response.json()
        } else {
            Err(gmail_error(&response, self.token))
        }
    }
}

/// Maps the Gmail API's error object. 401 means the access token is no longer accepted;
/// 429, 5xx and 403 rate-limit reasons are retryable; the code is Google's `status`
/// (`NOT_FOUND`, `PERMISSION_DENIED`…).
fn gmail_error(response: &Response, token: &str) -> Error {
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    let error = &body["error"];
    let message = scrub(
        error["message"]
            .as_str()
            .unwrap_or("gmail returned an error"),
        &[token],
    );
    if response.status == 401 {
        return Error::needs_reauth(format!("gmail rejected the access token: {message}"));
    }
    let rate_limited = error["errors"].as_array().into_iter().flatten().any(|e| {
        matches!(
            e["reason"].as_str(),
            Some("rateLimitExceeded" | "userRateLimitExceeded")
        )
    });
    let code = error["status"].as_str().map(|s| scrub(s, &[token]));
    if response.status == 403 && rate_limited {
        return Error::Provider(ProviderError {
            status: response.status,
            code,
            message,
            retryable: true,
        });
    }
    Error::provider(response.status, code, message)
}

fn send(api: &Api, input: &Value) -> Result<Value, Error> {
    let boundary = format!("=_conduit_{:x}", now_nanos());
    let raw = message::build(input, &boundary).map_err(Error::invalid_input)?;
    let mut body = json!({"raw": URL_SAFE_NO_PAD.encode(raw.as_bytes())});
    // Provider-specific: reply within an existing Gmail thread.
    if let Some(thread) = opt_str(input, "threadId")? {
        body["threadId"] = json!(thread);
    }
    let sent = api.call(Request::post(api.url("/messages/send")).json(&body))?;
    Ok(json!({"messageId": sent["id"], "threadId": sent["threadId"]}))
}

fn list_messages(api: &Api, input: &Value) -> Result<Value, Error> {
    let limit = match input.get("limit").filter(|v| !v.is_null()) {
        None => DEFAULT_LIMIT,
        Some(limit) => limit
            .as_u64()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                Error::invalid_input(format!("`limit` must be an integer from 1 to {MAX_LIMIT}"))
            })?,
    };
    let mut request = Request::get(api.url("/messages")).query("maxResults", limit.to_string());
    if let Some(query) = opt_str(input, "query")?.filter(|q| !q.is_empty()) {
        request = request.query("q", query);
    }
    if let Some(page) = opt_str(input, "pageToken")?.filter(|p| !p.is_empty()) {
        request = request.query("pageToken", page);
    }
    let page = api.call(request)?;
    let messages: Vec<Value> = page["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| json!({"id": m["id"], "threadId": m["threadId"]}))
        .collect();
    let mut out = json!({ "messages": messages });
    if let Some(next) = page["nextPageToken"].as_str() {
        out["nextPageToken"] = json!(next);
    }
    Ok(out)
}

fn get_message(api: &Api, input: &Value) -> Result<Value, Error> {
    let id = id_field(input, "id")?;
    let found =
        api.call(Request::get(api.url(&format!("/messages/{id}"))).query("format", "full"))?;
    let payload = &found["payload"];
    let (text, html) = message::bodies(payload);
    let internal_date = &found["internalDate"];
    let received_at = internal_date
        .as_str()
        .and_then(|ms| ms.parse::<u64>().ok())
        .or_else(|| internal_date.as_u64())
        .map(message::rfc3339);
    let to = message::header(payload, "To")
        .map(|to| message::split_addresses(&to))
        .unwrap_or_default();
    Ok(json!({
        "id": found["id"],
        "threadId": found["threadId"],
        "from": message::header(payload, "From"),
        "to": to,
        "subject": message::header(payload, "Subject"),
        "text": text,
        "html": html,
        "receivedAt": received_at,
    }))
}

/// An optional string field of the input.
fn opt_str<'a>(input: &'a Value, key: &str) -> Result<Option<&'a str>, Error> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Error::invalid_input(format!("`{key}` must be a string"))),
    }
}

/// A provider-supplied text made safe for an error: every secret we sent is replaced,
/// then the text is cut to a readable length.
fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(secret, "[redacted]");
    }
    out.chars().take(300).collect()
}

fn now_ms() -> u64 {
    u64::try_from(now_nanos() / 1_000_000).unwrap_or(u64::MAX)
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}
