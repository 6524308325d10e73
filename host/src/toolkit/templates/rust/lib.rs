//! {{title}}: a Conduit connector (`{{key}}`).
//!
//! `items.get@1` reads one item with `GET {baseUrl}/v1/items/{id}`, authenticated with
//! the connection's API key as a bearer token. The connection config's `baseUrl`
//! replaces the default API base, so `test_connector.py` points it at a fake.

use conduit_sdk::http::Request;
use conduit_sdk::input::str_field;
use conduit_sdk::{
    json, AuthType, Capability, Connector, ConnectorInfo, Context, Error, Health, RateProfile,
    Secret, Value,
};

const DEFAULT_BASE_URL: &str = "https://api.example.com";

struct Items;

impl Connector for Items {
    fn info() -> ConnectorInfo {
        ConnectorInfo {
            slug: "{{name}}".into(),
            integration_key: "{{key}}".into(),
            version: 1,
            display_name: "{{title}}".into(),
            category: "items".into(),
            auth_type: AuthType::ApiKey,
            ownership_modes: vec!["byok".into()],
            capabilities: vec![Capability::new("items.get", 1, "Read one item")],
            allowed_hosts: vec!["api.example.com".into()],
            rate_profile: RateProfile {
                requests: 10,
                per_seconds: 1,
                burst: 10,
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
            "items.get" => get_item(ctx, secret, str_field(&input, "id")?),
            other => Err(Error::unsupported(format!("no capability `{other}`"))),
        }
    }

    fn health_check(ctx: &Context, secret: &Secret) -> Result<Health, Error> {
        let response = Request::get(format!("{}/v1/me", ctx.base_url(DEFAULT_BASE_URL)))
            .bearer(secret.require_api_key("API key")?)
            .send()?;
        Ok(Health {
            healthy: response.is_success(),
            detail: format!("the API answered {}", response.status),
        })
    }
}

conduit_sdk::export_connector!(Items);

fn get_item(ctx: &Context, secret: &Secret, id: &str) -> Result<Value, Error> {
    let url = format!(
        "{}/v1/items/{}",
        ctx.base_url(DEFAULT_BASE_URL),
        conduit_sdk::form::escape(id)
    );
    let response = Request::get(url)
        .bearer(secret.require_api_key("API key")?)
        .send()?;
    match response.status {
        200 => {
            let item = response.json()?;
            Ok(json!({"id": item["id"], "name": item["name"]}))
        }
        401 | 403 => Err(Error::needs_reauth("the API key was refused")),
        status => Err(Error::provider(
            status,
            Some("not_found".into()).filter(|_| status == 404),
            format!("the API answered {status}"),
        )),
    }
}
