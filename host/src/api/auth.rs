//! Bearer-token authentication as extractors: [`TenantCaller`] for tenant routes,
//! [`AdminCaller`] for admin routes. A missing or unknown token is `401 unauthorized`;
//! the wrong kind of token is `403 forbidden`.

use super::error::ApiError;
use super::AppState;
use crate::tenants::Principal;
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
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(unauthorized)?;
    state.tenants.authenticate(token)?.ok_or_else(unauthorized)
}

impl FromRequestParts<AppState> for TenantCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match principal(parts, state)? {
            Principal::Tenant(id) => Ok(TenantCaller(id)),
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
            Principal::Tenant(id) => Ok(OptionalTenant(Some(id))),
            Principal::Admin => Ok(OptionalTenant(None)),
        }
    }
}
