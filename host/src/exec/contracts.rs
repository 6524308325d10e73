//! The provider-neutral capability contracts of `CAPABILITIES.md`, as JSON Schemas.
//!
//! The host validates every input of a listed contract before any connector runs, so a
//! bad input is a `422 invalid_input` naming the failing path, and never reaches a
//! provider. Connectors may accept extra provider-specific fields, so objects are open
//! (`additionalProperties` is allowed). Capabilities not listed here pass through.

use serde_json::{json, Value};
use std::collections::HashMap;

/// Why an input does not satisfy its contract.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{path}: {message}")]
pub struct Invalid {
    /// JSON pointer of the failing value (`/amount`), or `/` for the document.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// The compiled schemas, by `key@version`.
pub struct Contracts {
    validators: HashMap<String, jsonschema::Validator>,
}

impl Contracts {
    /// Compiles every listed contract.
    pub fn new() -> Self {
        let validators = schemas()
            .into_iter()
            .map(|(id, schema)| {
                let validator = jsonschema::validator_for(&schema)
                    .unwrap_or_else(|e| panic!("capability schema {id} is invalid: {e}"));
                (id.to_owned(), validator)
            })
            .collect();
        Contracts { validators }
    }

    /// Whether `key@version` is a listed contract.
    pub fn is_listed(&self, key: &str, version: u32) -> bool {
        self.validators.contains_key(&format!("{key}@{version}"))
    }

    /// Validates `input` against `key@version`; unlisted capabilities pass.
    pub fn validate(&self, key: &str, version: u32, input: &Value) -> Result<(), Invalid> {
        let Some(validator) = self.validators.get(&format!("{key}@{version}")) else {
            return Ok(());
        };
        // The yes/no check allocates nothing; the first error is looked for only when
        // there is one.
        if validator.is_valid(input) {
            return Ok(());
        }
        match validator.iter_errors(input).next() {
            None => Ok(()),
            Some(error) => {
                let path = error.instance_path.to_string();
                Err(Invalid {
                    path: if path.is_empty() { "/".into() } else { path },
                    message: rule(&error),
                })
            }
        }
    }
}

/// The rule `error` broke, in words taken from the schema only. jsonschema's own
/// message quotes the offending value, which may be a secret or personal data and would
/// reach error details and audit records; this names the rule instead.
fn rule(error: &jsonschema::ValidationError<'_>) -> String {
    use jsonschema::error::ValidationErrorKind as Kind;
    match &error.kind {
        Kind::Required { property } => format!("the required property {property} is missing"),
        Kind::Type { kind } => format!("must be of type {}", type_name(kind)),
        Kind::MinLength { limit } => format!("must be at least {limit} characters long"),
        Kind::MaxLength { limit } => format!("must be at most {limit} characters long"),
        Kind::Minimum { limit } => format!("must be at least {limit}"),
        Kind::Maximum { limit } => format!("must be at most {limit}"),
        Kind::ExclusiveMinimum { limit } => format!("must be greater than {limit}"),
        Kind::ExclusiveMaximum { limit } => format!("must be less than {limit}"),
        Kind::MinItems { limit } => format!("must have at least {limit} items"),
        Kind::MaxItems { limit } => format!("must have at most {limit} items"),
        Kind::Pattern { pattern } => format!("must match the pattern {pattern}"),
        Kind::Format { format } => format!("must be a valid {format}"),
        Kind::Enum { options } => format!("must be one of {options}"),
        Kind::AdditionalProperties { .. } => "has properties the contract does not allow".into(),
        _ => {
            let location = error.schema_path.to_string();
            let keyword = location.rsplit('/').next().unwrap_or("schema");
            format!("breaks the contract's `{keyword}` rule")
        }
    }
}

fn type_name(kind: &jsonschema::error::TypeKind) -> String {
    match kind {
        jsonschema::error::TypeKind::Single(t) => t.to_string(),
        jsonschema::error::TypeKind::Multiple(ts) => {
            let names: Vec<String> = ts.iter().map(|t| t.to_string()).collect();
            names.join(" or ")
        }
    }
}

impl Default for Contracts {
    fn default() -> Self {
        Self::new()
    }
}

fn object(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties})
}

fn string() -> Value {
    json!({"type": "string", "minLength": 1})
}

fn string_map() -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string"}})
}

fn strings() -> Value {
    json!({"type": "array", "items": {"type": "string", "minLength": 1}})
}

fn email_send() -> Value {
    object(
        &["to"],
        json!({
            "from": string(),
            "to": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 3}},
            "cc": strings(),
            "bcc": strings(),
            "replyTo": string(),
            "subject": {"type": "string"},
            "text": {"type": "string"},
            "html": {"type": "string"},
            "headers": string_map(),
            "tag": {"type": "string"},
            "metadata": string_map(),
        }),
    )
}

fn schemas() -> Vec<(&'static str, Value)> {
    let payment_intent = object(
        &["amount", "currency"],
        json!({
            "amount": {"type": "integer", "minimum": 1},
            "currency": {"type": "string", "pattern": "^[a-z]{3}$"},
            "customer": string(),
            "description": {"type": "string"},
            "metadata": string_map(),
            "paymentMethodTypes": strings(),
            "captureMethod": {"enum": ["automatic", "manual"]},
        }),
    );
    vec![
        ("payments.createPaymentIntent@1", payment_intent),
        (
            "payments.retrievePaymentIntent@1",
            object(&["id"], json!({"id": string()})),
        ),
        (
            "payments.createRefund@1",
            object(
                &["paymentIntent"],
                json!({
                    "paymentIntent": string(),
                    "amount": {"type": "integer", "minimum": 1},
                    "reason": {"enum": ["duplicate", "fraudulent", "requested_by_customer"]},
                    "metadata": string_map(),
                }),
            ),
        ),
        (
            "customers.create@1",
            object(
                &["email"],
                json!({"email": string(), "name": {"type": "string"}, "metadata": string_map()}),
            ),
        ),
        ("email.send@1", email_send()),
        (
            "email.sendBatch@1",
            object(
                &["messages"],
                json!({"messages": {"type": "array", "minItems": 1, "maxItems": 500, "items": email_send()}}),
            ),
        ),
        (
            "email.listMessages@1",
            object(
                &[],
                json!({"query": {"type": "string"}, "limit": {"type": "integer", "minimum": 1, "maximum": 100}, "pageToken": string()}),
            ),
        ),
        (
            "email.getMessage@1",
            object(&["id"], json!({"id": string()})),
        ),
        (
            "knowledge.upsert@1",
            object(
                &["collection", "points"],
                json!({
                    "collection": string(),
                    "points": {"type": "array", "minItems": 1, "items": object(&["id", "vector"], json!({
                        "id": {"type": ["string", "integer"]},
                        "vector": {"type": "array", "minItems": 1, "items": {"type": "number"}},
                        "payload": {"type": "object"},
                    }))},
                }),
            ),
        ),
        (
            "knowledge.search@1",
            object(
                &["collection", "vector"],
                json!({
                    "collection": string(),
                    "vector": {"type": "array", "minItems": 1, "items": {"type": "number"}},
                    "limit": {"type": "integer", "minimum": 1},
                    "filter": {"type": "object"},
                }),
            ),
        ),
        (
            "knowledge.delete@1",
            object(
                &["collection", "ids"],
                json!({"collection": string(), "ids": {"type": "array", "minItems": 1, "items": {"type": ["string", "integer"]}}}),
            ),
        ),
        (
            "chat.postMessage@1",
            object(
                &["channel", "text"],
                json!({"channel": string(), "text": {"type": "string"}, "blocks": {"type": "array"}, "threadTs": string()}),
            ),
        ),
        (
            "conversations.list@1",
            object(
                &[],
                json!({"limit": {"type": "integer", "minimum": 1}, "cursor": string()}),
            ),
        ),
        (
            "issues.create@1",
            object(
                &["owner", "repo", "title"],
                json!({"owner": string(), "repo": string(), "title": string(), "body": {"type": "string"}, "labels": strings()}),
            ),
        ),
        (
            "issues.list@1",
            object(
                &["owner", "repo"],
                json!({"owner": string(), "repo": string(), "state": {"enum": ["open", "closed", "all"]}, "limit": {"type": "integer", "minimum": 1}}),
            ),
        ),
        (
            "repos.get@1",
            object(
                &["owner", "repo"],
                json!({"owner": string(), "repo": string()}),
            ),
        ),
        (
            "sms.send@1",
            object(
                &["to", "from", "body"],
                json!({"to": string(), "from": string(), "body": string()}),
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_compiles() {
        let contracts = Contracts::new();
        assert_eq!(contracts.validators.len(), 17);
        assert!(contracts.is_listed("email.send", 1));
        assert!(!contracts.is_listed("email.send", 2));
    }

    #[test]
    fn payment_intent_inputs() {
        let c = Contracts::new();
        let ok = json!({"amount": 2000, "currency": "usd", "metadata": {"order": "42"}});
        assert!(c.validate("payments.createPaymentIntent", 1, &ok).is_ok());
        let e = c
            .validate(
                "payments.createPaymentIntent",
                1,
                &json!({"amount": 0, "currency": "usd"}),
            )
            .unwrap_err();
        assert_eq!(e.path, "/amount");
        let e = c
            .validate(
                "payments.createPaymentIntent",
                1,
                &json!({"amount": 5, "currency": "USD"}),
            )
            .unwrap_err();
        assert_eq!(e.path, "/currency");
        let e = c
            .validate(
                "payments.createPaymentIntent",
                1,
                &json!({"currency": "usd"}),
            )
            .unwrap_err();
        assert_eq!(e.path, "/");
        assert!(c
            .validate(
                "payments.createPaymentIntent",
                1,
                &json!({"amount": 5, "currency": "usd", "metadata": {"n": 1}})
            )
            .is_err());
    }

    /// A refusal names the path and the rule, never the value: a secret pasted into
    /// the wrong field must not reach error details or audit records.
    #[test]
    fn refusals_name_the_rule_not_the_value() {
        let c = Contracts::new();
        let secret = "sk_live_51PastedIntoTheWrongField";
        for (input, path, words) in [
            (
                json!({"amount": secret, "currency": "usd"}),
                "/amount",
                "type integer",
            ),
            (
                json!({"amount": 5, "currency": secret}),
                "/currency",
                "pattern",
            ),
            (
                json!({"amount": 5, "currency": "usd", "metadata": {"n": [secret]}}),
                "/metadata/n",
                "type string",
            ),
        ] {
            let e = c
                .validate("payments.createPaymentIntent", 1, &input)
                .unwrap_err();
            assert_eq!(e.path, path);
            assert!(e.message.contains(words), "{}", e.message);
            assert!(!e.to_string().contains("sk_live"), "{e}");
        }
    }

    #[test]
    fn unlisted_capabilities_pass_through() {
        assert!(Contracts::new()
            .validate("probe.echo", 1, &json!({"anything": [1, 2]}))
            .is_ok());
    }

    #[test]
    fn email_contracts() {
        let c = Contracts::new();
        assert!(c
            .validate(
                "email.send",
                1,
                &json!({"to": ["a@b.co"], "subject": "hi", "text": "x"})
            )
            .is_ok());
        assert_eq!(
            c.validate("email.send", 1, &json!({"to": []}))
                .unwrap_err()
                .path,
            "/to"
        );
        let batch = json!({"messages": [{"to": ["a@b.co"]}, {"to": "not-a-list"}]});
        assert_eq!(
            c.validate("email.sendBatch", 1, &batch).unwrap_err().path,
            "/messages/1/to"
        );
    }
}
