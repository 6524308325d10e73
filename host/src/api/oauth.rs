//! OAuth routes: start an authorization (302 to the provider's consent page), the
//! provider's callback (authenticated by its single-use state), and a `byok`
//! connection's own OAuth client.

use super::auth::{OptionalTenant, TenantCaller};
use super::connections::render;
use super::document::{Attributes, Document, QueryParams, ResourceAttributes};
use super::schema::{self, Refusals};
use super::{ApiError, AppState};
use crate::credentials::oauth;
use crate::domain::OauthClient;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

/// Where the provider sends the user back.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizeQuery {
    /// Required: where the provider sends the user back (absolute http or https).
    #[param(required = true)]
    redirect_uri: Option<String>,
}

#[utoipa::path(get, path = "/api/connections/{id}/oauth/authorize", security(("bearer" = [])), tag = "tenant", summary = "Start an OAuth authorization: 302 to the provider's consent page (state, PKCE)", params(("id" = String, Path, description = "Connection id"), AuthorizeQuery), responses((status = 302, description = "To the provider's consent page", headers(("location" = String, description = "The consent URL"))), Refusals))]
pub async fn authorize(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<AuthorizeQuery>,
) -> Result<Response, ApiError> {
    let redirect_uri = query.redirect_uri.ok_or_else(|| {
        ApiError::unprocessable(
            "invalid_redirect_uri",
            "the redirectUri query parameter is required",
        )
    })?;
    let authorization = app.oauth.authorize(&tenant, &id, &redirect_uri)?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, authorization.url),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
    )
        .into_response())
}

/// What a provider sends back: a code, or an error (`access_denied`…), with the state.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    /// Required: the state `authorize` issued.
    #[param(required = true)]
    state: Option<String>,
    /// The authorization code: wiped when the request is done.
    #[param(value_type = Option<String>)]
    code: Option<SecretString>,
    error: Option<String>,
}

#[utoipa::path(get, path = "/oauth/callback", tag = "oauth", summary = "The provider's redirect: checks the state, exchanges the code, seals the tokens", params(CallbackQuery), responses((status = 200, description = "JSON:API document", body = schema::ConnectionDocument, content_type = "application/vnd.api+json"), Refusals))]
pub async fn callback(
    State(app): State<AppState>,
    OptionalTenant(caller): OptionalTenant,
    QueryParams(query): QueryParams<CallbackQuery>,
) -> Result<Document, ApiError> {
    let state = query
        .state
        .as_deref()
        .ok_or_else(|| ApiError::from(oauth::Error::InvalidState("missing")))?;
    let outcome = match (&query.code, &query.error) {
        (Some(code), _) => Ok(code.expose_secret()),
        (None, Some(error)) => Err(error.as_str()),
        (None, None) => Err("the callback carries neither a code nor an error"),
    };
    let connection = app
        .oauth
        .callback(state, outcome, caller.as_deref())
        .await?;
    Ok(Document::data(render(&connection)))
}

/// A `byok` connection's own OAuth client.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientAttributes {
    client_id: String,
    /// Wiped when the body is dropped.
    #[schema(value_type = String)]
    client_secret: SecretString,
}

impl ResourceAttributes for ClientAttributes {
    const TYPE: &'static str = "oauthClients";
}

#[utoipa::path(put, path = "/api/connections/{id}/oauth/client", security(("bearer" = [])), tag = "tenant", summary = "Seal a byok connection's own OAuth client id and secret", params(("id" = String, Path, description = "Connection id")), request_body(content = schema::OauthClientRequest, content_type = "application/vnd.api+json"), responses((status = 200, description = "JSON:API document", body = schema::OauthClientDocument, content_type = "application/vnd.api+json"), Refusals))]
pub async fn put_client(
    State(app): State<AppState>,
    TenantCaller(tenant): TenantCaller,
    Path(id): Path<String>,
    Attributes(attrs): Attributes<ClientAttributes>,
) -> Result<Document, ApiError> {
    if attrs.client_id.trim().is_empty() || attrs.client_secret.expose_secret().is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_attributes",
            "clientId and clientSecret must not be empty",
        ));
    }
    let client = OauthClient {
        client_id: attrs.client_id.clone(),
        client_secret: attrs.client_secret.clone(),
    };
    let connection = app.oauth.put_client(&tenant, &id, &client)?;
    Ok(Document::resource(
        "oauthClients",
        &connection.id,
        json!({"clientId": client.client_id, "sealed": true}),
    ))
}
