//! The API's one error type: a status, a stable snake_case code, a title and a detail,
//! rendered as a JSON:API error document. Domain errors map here and only here; the
//! body never carries a secret (domain errors are redacted before they arrive).

use crate::{blueprints, configs, connections, exec, resolver, store, tenants, tokens};
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

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> Self {
        ApiError::internal(&e)
    }
}

impl From<tenants::Error> for ApiError {
    fn from(e: tenants::Error) -> Self {
        match e {
            tenants::Error::InvalidId => {
                ApiError::unprocessable("invalid_tenant_id", e.to_string())
            }
            tenants::Error::Exists(_) => {
                ApiError::new(StatusCode::CONFLICT, "tenant_exists", e.to_string())
            }
            tenants::Error::Store(e) => e.into(),
        }
    }
}

impl From<connections::Error> for ApiError {
    fn from(e: connections::Error) -> Self {
        match e {
            connections::Error::NotFound => ApiError::not_found("connection"),
            connections::Error::UnknownConnector(_) => {
                ApiError::unprocessable("unknown_connector", e.to_string())
            }
            connections::Error::OwnershipMode { .. } => {
                ApiError::unprocessable("ownership_mode_not_supported", e.to_string())
            }
            connections::Error::Invalid(_) => {
                ApiError::unprocessable("invalid_attributes", e.to_string())
            }
            connections::Error::Store(e) => e.into(),
        }
    }
}

impl From<tokens::Error> for ApiError {
    fn from(e: tokens::Error) -> Self {
        match e {
            tokens::Error::NeedsReauth => {
                ApiError::new(StatusCode::CONFLICT, "needs_reauth", e.to_string())
            }
            tokens::Error::Revoked => ApiError::new(StatusCode::CONFLICT, "revoked", e.to_string()),
            tokens::Error::Broken => {
                ApiError::new(StatusCode::CONFLICT, "connection_error", e.to_string())
            }
            tokens::Error::NoCredential => {
                ApiError::new(StatusCode::CONFLICT, "no_credential", e.to_string())
            }
            tokens::Error::RefreshFailed(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "refresh_failed",
                e.to_string(),
            )
            .with_meta(json!({"retryable": true})),
            tokens::Error::Vault(_) | tokens::Error::Store(_) => ApiError::internal(&e),
        }
    }
}

impl From<exec::Error> for ApiError {
    fn from(e: exec::Error) -> Self {
        use exec::Error as E;
        let code = e.code();
        let detail = e.to_string();
        match e {
            E::Connection(e) => e.into(),
            E::Vend(e) => e.into(),
            E::UnsupportedCapability { .. } => ApiError::unprocessable(code, detail),
            E::InvalidInput { path, .. } => {
                ApiError::unprocessable(code, detail).with_meta(json!({"path": path}))
            }
            E::NeedsReauth(_) => ApiError::new(StatusCode::CONFLICT, code, detail),
            E::Provider {
                status,
                code: provider_code,
                retryable,
                ..
            } => ApiError::new(StatusCode::BAD_GATEWAY, code, detail).with_meta(json!({
                "providerStatus": status,
                "providerCode": provider_code,
                "retryable": retryable,
            })),
            E::ProviderUnavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, detail)
                    .with_meta(json!({"retryable": true}))
            }
            E::PluginTimeout => ApiError::new(StatusCode::GATEWAY_TIMEOUT, code, detail),
            E::PluginMemory | E::PluginError(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, code, detail)
            }
            E::ConnectorUnavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, detail)
            }
            E::NoBinding(_) => ApiError::new(StatusCode::NOT_FOUND, code, detail),
            E::ScopeDenied(_) => ApiError::new(StatusCode::FORBIDDEN, code, detail),
            E::RateLimited { retry_after, .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, detail)
                    .with_retry_after(retry_after)
                    .with_meta(json!({"retryable": true}))
            }
            E::CircuitOpen(wait) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, detail)
                .with_retry_after(wait)
                .with_meta(json!({"retryable": true})),
            E::IdempotencyConflict => ApiError::new(StatusCode::CONFLICT, code, detail),
            E::Store(e) => e.into(),
        }
    }
}

impl From<blueprints::Error> for ApiError {
    fn from(e: blueprints::Error) -> Self {
        use blueprints::Error as E;
        match e {
            E::Invalid(_) => ApiError::unprocessable("invalid_blueprint", e.to_string()),
            E::Mismatch(_) => ApiError::unprocessable("blueprint_mismatch", e.to_string()),
            E::Immutable { .. } => {
                ApiError::new(StatusCode::CONFLICT, "blueprint_immutable", e.to_string())
            }
            E::NotFound => ApiError::not_found("blueprint"),
            E::Store(e) => e.into(),
        }
    }
}

impl From<configs::Error> for ApiError {
    fn from(e: configs::Error) -> Self {
        use configs::Error as E;
        match e {
            E::Invalid { code, binding, .. } => {
                let error = ApiError::unprocessable(code, e.to_string());
                match binding {
                    Some(i) => error.with_meta(json!({"pointer": format!("/integrations/{i}")})),
                    None => error,
                }
            }
            E::NotFound => ApiError::not_found("tenant config"),
            E::Transition(_) => {
                ApiError::new(StatusCode::CONFLICT, "invalid_transition", e.to_string())
            }
            E::Store(e) => e.into(),
        }
    }
}

impl From<resolver::Error> for ApiError {
    fn from(e: resolver::Error) -> Self {
        match e {
            resolver::Error::NotPublished { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "no_binding", e.to_string())
            }
            resolver::Error::Store(e) => e.into(),
        }
    }
}
