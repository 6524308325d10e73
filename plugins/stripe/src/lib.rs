//! Stripe connector (`payments.stripe`).
//!
//! Speaks Stripe's real wire format: form-encoded bodies with bracketed keys,
//! `Authorization: Bearer <secret key>`, the execution's idempotency key as
//! `Idempotency-Key`, the connection's external account as `Stripe-Account`, and Stripe's
//! error object (`{"error": {"type", "code", "decline_code", "message"}}`) mapped to
//! connector errors. The connection config's `baseUrl` replaces `https://api.stripe.com`.

use conduit_sdk::http::{Request, Response};
use conduit_sdk::input::{id_field, opt, str_field};
use conduit_sdk::{
    json, AuthType, Capability, Connector, ConnectorInfo, Context, Error, Health, RateProfile,
    Secret, Value,
};

const DEFAULT_BASE_URL: &str = "https://api.stripe.com";

struct Stripe;

impl Connector for Stripe {
    fn info() -> ConnectorInfo {
        ConnectorInfo {
            slug: "stripe".into(),
            integration_key: "payments.stripe".into(),
            version: 1,
            display_name: "Stripe".into(),
            category: "payments".into(),
            auth_type: AuthType::ApiKey,
            ownership_modes: vec!["managed".into(), "byok".into()],
            capabilities: vec![
                Capability::new("payments.createPaymentIntent", 1, "Create a PaymentIntent"),
                Capability::new(
                    "payments.retrievePaymentIntent",
                    1,
                    "Retrieve a PaymentIntent",
                ),
                Capability::new("payments.createRefund", 1, "Refund a PaymentIntent"),
                Capability::new("customers.create", 1, "Create a customer"),
            ],
            allowed_hosts: vec!["api.stripe.com".into()],
            // Stripe's documented live-mode limit: 100 read/write requests per second.
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
            "payments.createPaymentIntent" => create_payment_intent(&api, &input),
            "payments.retrievePaymentIntent" => {
                let id = id_field(&input, "id")?;
                let intent =
                    api.call(Request::get(api.url(&format!("/v1/payment_intents/{id}"))))?;
                Ok(payment_intent_output(&intent))
            }
            "payments.createRefund" => create_refund(&api, &input),
            "customers.create" => create_customer(&api, &input),
            other => Err(Error::unsupported(format!(
                "stripe does not provide `{other}`"
            ))),
        }
    }

    fn health_check(ctx: &Context, secret: &Secret) -> Result<Health, Error> {
        let api = Api::new(ctx, secret)?;
        api.call(Request::get(api.url("/v1/balance")))?;
        Ok(Health {
            healthy: true,
            detail: "balance readable".into(),
        })
    }
}

conduit_sdk::export_connector!(Stripe);

/// One call's view of Stripe: where it is and how to authenticate.
struct Api<'a> {
    ctx: &'a Context,
    base: String,
    key: &'a str,
}

impl<'a> Api<'a> {
    fn new(ctx: &'a Context, secret: &'a Secret) -> Result<Self, Error> {
        let key = secret.require_api_key("Stripe secret key")?;
        Ok(Api {
            ctx,
            base: ctx.base_url(DEFAULT_BASE_URL),
            key,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends with Stripe's headers and turns any non-2xx answer into an error.
    fn call(&self, request: Request) -> Result<Value, Error> {
        let response = request
            .bearer(self.key)
            .header_opt("stripe-account", self.ctx.external_account_id.clone())
            .header_opt("idempotency-key", self.ctx.idempotency_key.clone())
            .send()?;
        if response.is_success() {
            response.json()
        } else {
            Err(stripe_error(&response))
        }
    }
}

/// Maps Stripe's error object. An invalid key (401) means the tenant must reconnect.
fn stripe_error(response: &Response) -> Error {
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    let error = &body["error"];
    let message = error["message"]
        .as_str()
        .unwrap_or("stripe returned an error")
        .to_owned();
    if response.status == 401 {
        return Error::needs_reauth(format!("stripe rejected the API key: {message}"));
    }
    let code = error["code"]
        .as_str()
        .or_else(|| error["type"].as_str())
        .map(str::to_owned);
    Error::provider(response.status, code, message)
}

fn create_payment_intent(api: &Api, input: &Value) -> Result<Value, Error> {
    let form = json!({
        "amount": input["amount"],
        "currency": str_field(input, "currency")?,
        "customer": opt(input, "customer"),
        "description": opt(input, "description"),
        "metadata": opt(input, "metadata"),
        "payment_method_types": opt(input, "paymentMethodTypes"),
        "capture_method": opt(input, "captureMethod"),
        // Provider-specific optional fields (CAPABILITIES.md allows them).
        "payment_method": opt(input, "paymentMethod"),
        "confirm": opt(input, "confirm"),
    });
    let intent = api.call(Request::post(api.url("/v1/payment_intents")).form(&form))?;
    Ok(payment_intent_output(&intent))
}

fn payment_intent_output(intent: &Value) -> Value {
    let mut out = json!({
        "id": intent["id"],
        "status": intent["status"],
        "amount": intent["amount"],
        "currency": intent["currency"],
    });
    if let Some(secret) = intent["client_secret"].as_str() {
        out["clientSecret"] = json!(secret);
    }
    out
}

fn create_refund(api: &Api, input: &Value) -> Result<Value, Error> {
    let form = json!({
        "payment_intent": str_field(input, "paymentIntent")?,
        "amount": opt(input, "amount"),
        "reason": opt(input, "reason"),
        "metadata": opt(input, "metadata"),
    });
    let refund = api.call(Request::post(api.url("/v1/refunds")).form(&form))?;
    Ok(json!({
        "id": refund["id"],
        "status": refund["status"],
        "amount": refund["amount"],
        "paymentIntent": refund["payment_intent"],
    }))
}

fn create_customer(api: &Api, input: &Value) -> Result<Value, Error> {
    let form = json!({
        "email": str_field(input, "email")?,
        "name": opt(input, "name"),
        "metadata": opt(input, "metadata"),
    });
    let customer = api.call(Request::post(api.url("/v1/customers")).form(&form))?;
    Ok(json!({"id": customer["id"], "email": customer["email"]}))
}
