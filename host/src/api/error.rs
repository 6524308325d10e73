//! The API's one error type: a status, a stable snake_case code, a title and a detail,
//! rendered as a JSON:API error document. Every module error reaches it through its row
//! of the error table (`domain::Classify`); [`status`] is the only mapping of an error
//! class to HTTP. The body never carries a secret: module errors are redacted before
//! they arrive, and an internal error's detail is logged, never shown.

use crate::domain::{Class, Classify};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// A refusal or failure as the client sees it.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// What went wrong, in general.
    pub title: String,
    /// This occurrence.
    pub detail: String,
    /// Extra machine-readable facts (provider status and code…).
    pub meta: Option<Value>,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with this status, code and detail; the title is the status' reason.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            detail: detail.into(),
            meta: None,
            retry_after: None,
        }
    }

    /// Adds a `Retry-After` header (whole seconds, at least 1).
    pub fn with_retry_after(mut self, wait: std::time::Duration) -> Self {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// Adds `meta`.
    pub fn with_meta(mut self, meta: Value) -> Self {
        self.meta = Some(meta);
        self
    }

    /// 404 `not_found`.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// The answer to a module error, from its row of the error table.
    pub fn classified<E: Classify + ?Sized>(e: &E) -> Self {
        let row = e.classify();
        if row.class == Class::Internal {
            return Self::internal(&e.to_string());
        }
        let mut error = ApiError::new(status(row.class), row.code, e.to_string());
        error.meta = row.meta;
        match row.retry_after {
            Some(wait) => error.with_retry_after(wait),
            None => error,
        }
    }

    /// 422 with a code.
    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }

    /// 500 `internal`: logged in full, shown as a generic message.
    pub fn internal(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %error, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({
            "status": self.status.as_u16().to_string(),
            "code": self.code,
            "title": self.title,
            "detail": self.detail,
        });
        if let Some(meta) = self.meta {
            error["meta"] = meta;
        }
        let mut response = (self.status, axum::Json(json!({"errors": [error]}))).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(super::document::JSON_API),
        );
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl<E: Classify> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError::classified(&e)
    }
}

/// The HTTP status of each error class: the only such mapping.
pub fn status(class: Class) -> StatusCode {
    match class {
        Class::BadRequest => StatusCode::BAD_REQUEST,
        Class::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        Class::NotFound => StatusCode::NOT_FOUND,
        Class::Forbidden => StatusCode::FORBIDDEN,
        Class::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Class::Conflict => StatusCode::CONFLICT,
        Class::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        Class::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Class::Upstream => StatusCode::BAD_GATEWAY,
        Class::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        Class::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    //! Walks every variant of every module error through the table and the HTTP
    //! mapping: code, status, failover, circuit and `Retry-After` in one place.

    use super::ApiError;
    use crate::accounts::{connections, tenants};
    use crate::binding::{blueprints, configs, resolver};
    use crate::credentials::{oauth, rotation, tokens, vault, vending};
    use crate::domain::Classify;
    use crate::runtime::CallError;
    use crate::{deploy, exec, store};
    use std::time::Duration;

    /// code, HTTP status, failover, circuit, Retry-After seconds.
    type Row = (&'static str, u16, bool, bool, Option<u64>);

    fn row<E: Classify>(e: E) -> Row {
        let class = e.classify();
        let api = ApiError::from(e);
        assert_eq!(api.code, class.code, "the client gets the table's code");
        (
            class.code,
            api.status.as_u16(),
            class.failover,
            class.circuit,
            api.retry_after,
        )
    }

    fn storage() -> store::Error {
        store::Error::Conflict
    }

    fn provider(status: u16) -> CallError {
        CallError::Provider {
            status,
            code: Some("card_declined".into()),
            message: "declined".into(),
            retryable: false,
            retry_after: None,
        }
    }

    #[test]
    fn every_variant_has_one_row() {
        let wait = Duration::from_millis(1500);
        let refused = |step| {
            deploy::Error::Refused(crate::runtime::Error::Refused {
                step,
                detail: "x".into(),
            })
        };
        use crate::runtime::LoadStep;
        let rows: Vec<(Row, Row)> = vec![
            (row(storage()), ("internal", 500, false, false, None)),
            (
                row(deploy::Error::TooLarge { size: 2, limit: 1 }),
                ("payload_too_large", 413, false, false, None),
            ),
            (
                row(refused(LoadStep::Parse)),
                ("invalid_component", 422, false, false, None),
            ),
            (
                row(refused(LoadStep::Contract)),
                ("unsupported_contract", 422, false, false, None),
            ),
            (
                row(refused(LoadStep::Pool)),
                ("exceeds_pool", 422, false, false, None),
            ),
            (
                row(refused(LoadStep::Compile)),
                ("compile_failed", 422, false, false, None),
            ),
            (
                row(refused(LoadStep::Link)),
                ("link_failed", 422, false, false, None),
            ),
            (
                row(refused(LoadStep::Info)),
                ("info_failed", 422, false, false, None),
            ),
            (
                row(refused(LoadStep::Describe)),
                ("invalid_info", 422, false, false, None),
            ),
            (
                row(refused(LoadStep::Settings)),
                ("invalid_settings", 422, false, false, None),
            ),
            (
                row(deploy::Error::CapabilityInUse {
                    slug: "s".into(),
                    version: 2,
                    missing: "a.b@1".into(),
                    configs: vec!["t/b@1/sandbox v1".into()],
                }),
                ("capability_in_use", 409, false, false, None),
            ),
            (
                row(deploy::Error::NotFound("s".into())),
                ("not_found", 404, false, false, None),
            ),
            (
                row(deploy::Error::NoPrevious("s".into())),
                ("no_previous_version", 409, false, false, None),
            ),
            (
                row(deploy::Error::Unavailable("s".into())),
                ("version_unavailable", 409, false, false, None),
            ),
            (
                row(deploy::Error::InvalidGrant("s".into())),
                ("invalid_allowed_hosts", 422, false, false, None),
            ),
            (
                row(tenants::Error::InvalidId),
                ("invalid_tenant_id", 422, false, false, None),
            ),
            (
                row(tenants::Error::Exists("a".into())),
                ("tenant_exists", 409, false, false, None),
            ),
            (
                row(tenants::Error::Store(storage())),
                ("internal", 500, false, false, None),
            ),
            (
                row(connections::Error::NotFound),
                ("not_found", 404, false, false, None),
            ),
            (
                row(connections::Error::UnknownConnector("x".into())),
                ("unknown_connector", 422, false, false, None),
            ),
            (
                row(connections::Error::OwnershipMode {
                    connector: "x".into(),
                    mode: "byok",
                }),
                ("ownership_mode_not_supported", 422, false, false, None),
            ),
            (
                row(connections::Error::Invalid("x".into())),
                ("invalid_attributes", 422, false, false, None),
            ),
            (
                row(connections::Error::Store(storage())),
                ("internal", 500, false, false, None),
            ),
            (
                row(tokens::Error::NeedsReauth),
                ("needs_reauth", 409, true, false, None),
            ),
            (
                row(tokens::Error::Revoked),
                ("revoked", 409, true, false, None),
            ),
            (
                row(tokens::Error::Broken),
                ("connection_error", 409, true, false, None),
            ),
            (
                row(tokens::Error::NoCredential),
                ("no_credential", 409, true, false, None),
            ),
            (
                row(tokens::Error::RefreshFailed("x".into())),
                ("refresh_failed", 503, true, false, None),
            ),
            (
                row(tokens::Error::Vault(vault::Error::OpenFailed)),
                ("internal", 500, false, false, None),
            ),
            (
                row(tokens::Error::Store(storage())),
                ("internal", 500, false, false, None),
            ),
            (
                row(vault::Error::WrongRootKey),
                ("internal", 500, false, false, None),
            ),
            (
                row(vault::Error::UnknownKey("k".into())),
                ("internal", 500, false, false, None),
            ),
            (
                row(rotation::Error::Vault(vault::Error::UnknownKey("k".into()))),
                ("not_found", 404, false, false, None),
            ),
            (
                row(tokens::Error::Vault(vault::Error::UnknownKey("k".into()))),
                ("internal", 500, false, false, None),
            ),
            (
                row(vault::Error::OpenFailed),
                ("internal", 500, false, false, None),
            ),
            (
                row(vault::Error::KeyInUse("k".into(), 2)),
                ("key_in_use", 409, false, false, None),
            ),
            (
                row(vault::Error::RetirePrimary),
                ("key_is_primary", 409, false, false, None),
            ),
            (
                row(vault::Error::InvalidKey("k".into())),
                ("internal", 500, false, false, None),
            ),
            (
                row(rotation::Error::Vault(vault::Error::RetirePrimary)),
                ("key_is_primary", 409, false, false, None),
            ),
            (
                row(rotation::Error::Tokens(tokens::Error::Revoked)),
                ("revoked", 409, true, false, None),
            ),
            (
                row(rotation::Error::Store(storage())),
                ("internal", 500, false, false, None),
            ),
            (
                row(CallError::NeedsReauth("x".into())),
                ("needs_reauth", 409, true, false, None),
            ),
            (
                row(CallError::InvalidInput("x".into())),
                ("invalid_input", 422, false, false, None),
            ),
            (
                row(CallError::Unsupported),
                ("unsupported_capability", 422, false, false, None),
            ),
            (
                row(provider(402)),
                ("provider_error", 502, false, false, None),
            ),
            (
                row(provider(503)),
                ("provider_error", 502, false, true, None),
            ),
            (
                row(CallError::ProviderUnavailable("x".into())),
                ("provider_unavailable", 503, false, true, None),
            ),
            (
                row(CallError::Timeout),
                ("plugin_timeout", 504, false, true, None),
            ),
            (
                row(CallError::Memory),
                ("plugin_memory", 502, false, false, None),
            ),
            (
                row(CallError::Plugin("x".into())),
                ("plugin_error", 502, false, false, None),
            ),
            (
                row(CallError::ConnectorUnavailable("x".into())),
                ("connector_unavailable", 503, true, false, None),
            ),
            (
                row(CallError::RateLimited(wait)),
                ("rate_limited", 429, true, false, Some(2)),
            ),
            (
                row(CallError::Busy(crate::runtime::Busy::Tenant)),
                ("busy", 503, false, false, Some(1)),
            ),
            (
                row(exec::Error::Connector(CallError::ConnectorUnavailable(
                    "x".into(),
                ))),
                ("connector_unavailable", 503, true, false, None),
            ),
            (
                row(oauth::Error::Connector(CallError::RateLimited(wait))),
                ("rate_limited", 429, true, false, Some(2)),
            ),
            (
                row(vending::Error::Revoked),
                ("revoked", 409, false, false, None),
            ),
            (
                row(vending::Error::Missing("apiKey")),
                ("invalid_attributes", 422, false, false, None),
            ),
            (
                row(vending::Error::KindMismatch {
                    auth_type: crate::domain::AuthType::Oauth2,
                    kind: crate::domain::CredentialKind::ApiKey,
                }),
                ("credential_kind_mismatch", 422, false, false, None),
            ),
            (
                row(vending::Error::Connector(CallError::ConnectorUnavailable(
                    "x".into(),
                ))),
                ("connector_unavailable", 503, true, false, None),
            ),
            (
                row(exec::Error::Connection(connections::Error::NotFound)),
                ("not_found", 404, false, false, None),
            ),
            (
                row(exec::Error::Vend(tokens::Error::NeedsReauth)),
                ("needs_reauth", 409, true, false, None),
            ),
            (
                row(exec::Error::Vend(tokens::Error::Vault(
                    vault::Error::OpenFailed,
                ))),
                ("internal", 500, false, false, None),
            ),
            (
                row(exec::Error::UnsupportedCapability {
                    connector: "x".into(),
                    capability: "y".into(),
                }),
                ("unsupported_capability", 422, false, false, None),
            ),
            (
                row(exec::Error::InvalidInput {
                    path: "/amount".into(),
                    message: "x".into(),
                }),
                ("invalid_input", 422, false, false, None),
            ),
            (
                row(exec::Error::Connector(CallError::Timeout)),
                ("plugin_timeout", 504, false, true, None),
            ),
            (
                row(exec::Error::NoBinding("x".into())),
                ("no_binding", 404, false, false, None),
            ),
            (
                row(exec::Error::ScopeDenied("x".into())),
                ("scope_denied", 403, false, false, None),
            ),
            (
                row(exec::Error::RateLimited {
                    reason: "x".into(),
                    retry_after: wait,
                }),
                ("rate_limited", 429, true, false, Some(2)),
            ),
            (
                row(exec::Error::CircuitOpen(wait)),
                ("circuit_open", 503, true, false, Some(2)),
            ),
            (
                row(exec::Error::IdempotencyConflict),
                ("idempotency_conflict", 409, false, false, None),
            ),
            (
                row(exec::Error::Store(storage())),
                ("internal", 500, false, false, None),
            ),
            (
                row(blueprints::Error::Invalid("x".into())),
                ("invalid_blueprint", 422, false, false, None),
            ),
            (
                row(blueprints::Error::Mismatch("x".into())),
                ("blueprint_mismatch", 422, false, false, None),
            ),
            (
                row(blueprints::Error::Immutable {
                    name: "a".into(),
                    version: "1".into(),
                }),
                ("blueprint_immutable", 409, false, false, None),
            ),
            (
                row(blueprints::Error::NotFound),
                ("not_found", 404, false, false, None),
            ),
            (
                row(blueprints::Error::Store(storage())),
                ("internal", 500, false, false, None),
            ),
            (
                row(configs::Error::Invalid {
                    code: "unknown_slot",
                    detail: "x".into(),
                    binding: Some(1),
                }),
                ("unknown_slot", 422, false, false, None),
            ),
            (
                row(configs::Error::NotFound),
                ("not_found", 404, false, false, None),
            ),
            (
                row(configs::Error::Transition("x".into())),
                ("invalid_transition", 409, false, false, None),
            ),
            (
                row(configs::Error::Store(storage())),
                ("internal", 500, false, false, None),
            ),
            (
                row(resolver::Error::NotPublished {
                    blueprint: "a".into(),
                    environment: "production",
                }),
                ("no_binding", 404, false, false, None),
            ),
            (
                row(resolver::Error::Store(storage())),
                ("internal", 500, false, false, None),
            ),
            (
                row(oauth::Error::Connection(connections::Error::NotFound)),
                ("not_found", 404, false, false, None),
            ),
            (
                row(oauth::Error::Revoked),
                ("revoked", 409, false, false, None),
            ),
            (
                row(oauth::Error::NotOauth("x".into())),
                ("oauth_unsupported", 422, false, false, None),
            ),
            (
                row(oauth::Error::InvalidRedirectUri),
                ("invalid_redirect_uri", 422, false, false, None),
            ),
            (
                row(oauth::Error::ClientMissing("x".into())),
                ("oauth_client_missing", 422, false, false, None),
            ),
            (
                row(oauth::Error::EndpointNotAllowed("x".into())),
                ("endpoint_not_allowed", 422, false, false, None),
            ),
            (
                row(oauth::Error::InvalidState("used")),
                ("invalid_state", 400, false, false, None),
            ),
            (
                row(oauth::Error::Denied("x".into())),
                ("oauth_denied", 400, false, false, None),
            ),
            (
                row(oauth::Error::CodeRejected("x".into())),
                ("invalid_grant", 400, false, false, None),
            ),
            (
                row(oauth::Error::Connector(CallError::Plugin("x".into()))),
                ("plugin_error", 502, false, false, None),
            ),
            // A revoked connection met during OAuth is `revoked` for client and audit alike.
            (
                row(oauth::Error::Tokens(tokens::Error::Revoked)),
                ("revoked", 409, true, false, None),
            ),
            (
                row(oauth::Error::Vault(vault::Error::OpenFailed)),
                ("internal", 500, false, false, None),
            ),
            (
                row(oauth::Error::Store(storage())),
                ("internal", 500, false, false, None),
            ),
        ];
        for (got, want) in rows {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn meta_comes_from_the_table() {
        let e = ApiError::from(exec::Error::Connector(CallError::Provider {
            status: 402,
            code: Some("card_declined".into()),
            message: "declined".into(),
            retryable: false,
            retry_after: None,
        }));
        let meta = e.meta.unwrap();
        assert_eq!(
            (
                meta["providerStatus"].as_u64(),
                meta["providerCode"].as_str()
            ),
            (Some(402), Some("card_declined"))
        );
        let e = ApiError::from(configs::Error::Invalid {
            code: "unknown_slot",
            detail: "x".into(),
            binding: Some(3),
        });
        assert_eq!(e.meta.unwrap()["pointer"], "/integrations/3");
        // An internal error's detail is never shown.
        let e = ApiError::from(tokens::Error::Vault(vault::Error::OpenFailed));
        assert_eq!(e.detail, "an internal error occurred");
    }
}
