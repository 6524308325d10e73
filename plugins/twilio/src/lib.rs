//! Twilio connector (`sms.twilio`).
//!
//! Auth `api-key-secret`: the connection's API key is the Account SID and its secret
//! the auth token, sent as HTTP basic auth. `sms.send@1` is a form POST (`To`, `From`,
//! `Body`) to `/2010-04-01/Accounts/{AccountSid}/Messages.json`, answered with the
//! message resource (`sid`, `status`). Twilio's error object (`code`, `message`,
//! `more_info`, `status`) becomes a provider error carrying Twilio's numeric code;
//! 20003 (authentication failed) needs a reconnect. The connection config's `baseUrl`
//! replaces `https://api.twilio.com`.

use conduit_sdk::http::{Request, Response};
use conduit_sdk::input::str_field;
use conduit_sdk::{
    json, AuthType, Capability, Connector, ConnectorInfo, Context, Error, Health, RateProfile,
    Secret, Value,
};

const DEFAULT_BASE_URL: &str = "https://api.twilio.com";
/// Twilio's error code for a rejected Account SID or auth token.
const AUTHENTICATION_FAILED: i64 = 20003;

struct Twilio;

impl Connector for Twilio {
    fn info() -> ConnectorInfo {
        ConnectorInfo {
            slug: "twilio".into(),
            integration_key: "sms.twilio".into(),
            version: 1,
            display_name: "Twilio".into(),
            category: "sms".into(),
            auth_type: AuthType::ApiKeySecret,
            ownership_modes: vec!["managed".into(), "byok".into()],
            capabilities: vec![Capability::new("sms.send", 1, "Send an SMS")],
            allowed_hosts: vec!["api.twilio.com".into()],
            // Twilio queues messages per sender; its API allows about 100 requests a
            // second per account.
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
        match capability {
            "sms.send" => send_sms(ctx, secret, &input),
            other => Err(Error::unsupported(format!("no capability `{other}`"))),
        }
    }

    fn health_check(ctx: &Context, secret: &Secret) -> Result<Health, Error> {
        let (sid, token) = account(secret)?;
        let response = Request::get(format!("{}.json", account_url(ctx, sid)))
            .basic(sid, token)
            .send()?;
        let body = checked(&response)?;
        Ok(Health {
            healthy: body["status"].as_str() == Some("active"),
            detail: format!(
                "account status {}",
                body["status"].as_str().unwrap_or("unknown")
            ),
        })
    }
}

conduit_sdk::export_connector!(Twilio);

fn send_sms(ctx: &Context, secret: &Secret, input: &Value) -> Result<Value, Error> {
    let (sid, token) = account(secret)?;
    let form = json!({
        "To": str_field(input, "to")?,
        "From": str_field(input, "from")?,
        "Body": str_field(input, "body")?,
    });
    let response = Request::post(format!("{}/Messages.json", account_url(ctx, sid)))
        .basic(sid, token)
        .header("accept", "application/json")
        .form(&form)
        .send()?;
    let message = checked(&response)?;
    Ok(json!({
        "id": message["sid"],
        "status": message["status"],
    }))
}

/// The Account SID (the API key) and auth token (the API secret).
fn account(secret: &Secret) -> Result<(&str, &str), Error> {
    let sid = secret.require_api_key("Account SID")?;
    let token = secret
        .api_secret
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::needs_reauth("the connection has no auth token"))?;
    Ok((sid, token))
}

fn account_url(ctx: &Context, sid: &str) -> String {
    format!(
        "{}/2010-04-01/Accounts/{}",
        ctx.base_url(DEFAULT_BASE_URL),
        conduit_sdk::form::escape(sid)
    )
}

/// The body of a 2xx, else Twilio's error object as a connector error.
fn checked(response: &Response) -> Result<Value, Error> {
    if response.is_success() {
        return response.json();
    }
    let body = response.json().unwrap_or(Value::Null);
    let code = body["code"].as_i64();
    let message = body["message"]
        .as_str()
        .unwrap_or("Twilio refused the request")
        .to_owned();
    if code == Some(AUTHENTICATION_FAILED) || response.status == 401 {
        return Err(Error::needs_reauth(format!(
            "Twilio refused the credentials: {message}"
        )));
    }
    // 429 (Twilio's 20429) and 5xx are retryable, as `Error::provider` marks them.
    Err(Error::provider(
        response.status,
        code.map(|c| c.to_string()),
        message,
    ))
}
