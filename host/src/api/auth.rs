//! Bearer-token authentication as extractors: [`TenantCaller`] for tenant routes,
//! [`AdminCaller`] for admin routes. A missing or unknown token is `401 unauthorized`;
//! the wrong kind of token is `403 forbidden`.

use super::error::ApiError;
use super::AppState;
use crate::accounts::tenants::Principal;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};

/// The calling tenant.
pub struct TenantCaller(pub String);

/// The administrator.
pub struct AdminCaller;

/// The calling tenant if the request carries a valid tenant token; on routes anyone
/// may call (the OAuth callback), a token that is present must still be valid.
pub struct OptionalTenant(pub Option<String>);

fn principal(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let unauthorized = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
    };
    let token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .ok_or_else(unauthorized)?;
    state.tenants.authenticate(token)?.ok_or_else(unauthorized)
}

/// The token of an `Authorization: Bearer <token>` value. RFC 7235: the scheme is
/// case-insensitive and separated from its credentials by one or more spaces.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl FromRequestParts<AppState> for TenantCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match principal(parts, state)? {
            Principal::Tenant(id) => {
                crate::observe::logs::record_tenant(&id);
                Ok(TenantCaller(id))
            }
            Principal::Admin => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this route needs a tenant token",
            )),
        }
    }
}

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match principal(parts, state)? {
            Principal::Admin => Ok(AdminCaller),
            Principal::Tenant(_) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this route needs the admin token",
            )),
        }
    }
}

impl FromRequestParts<AppState> for OptionalTenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            return Ok(OptionalTenant(None));
        }
        match principal(parts, state)? {
            Principal::Tenant(id) => {
                crate::observe::logs::record_tenant(&id);
                Ok(OptionalTenant(Some(id)))
            }
            Principal::Admin => Ok(OptionalTenant(None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in [
            "Bearer ct_1",
            "bearer ct_1",
            "BEARER ct_1",
            "bEaReR   ct_1 ",
        ] {
            assert_eq!(bearer_token(value), Some("ct_1"), "{value}");
        }
        for value in ["Basic ct_1", "Bearer", "Bearer   ", "Bearerct_1", "ct_1"] {
            assert_eq!(bearer_token(value), None, "{value}");
        }
    }
}
