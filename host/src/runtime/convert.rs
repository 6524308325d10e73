//! Conversions between host types and the WIT ones: secrets and OAuth clients handed
//! to a guest (zeroized when the call is over), what a guest hands back, and a
//! connector's `info()` checked into an [`IntegrationSpec`].

use super::{map_guest_error, wit, CallReport, ConnectorError};
use crate::audit::Redactor;
use crate::domain::{
    AuthType, CapabilityRef, IntegrationSpec, OauthClient, OauthConfig, OwnershipMode, RateProfile,
    SecretFields,
};
use secrecy::{ExposeSecret, SecretString};

/// An authorization code to exchange, with what the token endpoint checks it against.
/// The code and the verifier are secrets: wiped on drop, never printed.
pub struct CodeExchange {
    /// The code the provider sent to the callback.
    pub code: SecretString,
    /// The redirect URI the consent was started with.
    pub redirect_uri: String,
    /// The PKCE verifier, when the flow used PKCE.
    pub code_verifier: Option<SecretString>,
}

pub(super) fn map_guest_secret(
    report: CallReport<std::result::Result<wit::Secret, wit::Error>>,
) -> CallReport<std::result::Result<SecretFields, ConnectorError>> {
    let CallReport { result, outbound } = map_guest_error(report);
    let result = result.map(|r| r.map(|secret| secret_fields(WitSecret(secret))));
    CallReport { result, outbound }
}

pub(super) fn secret_fields(mut wit: WitSecret) -> SecretFields {
    SecretFields {
        access_token: wit.0.access_token.take().map(SecretString::from),
        refresh_token: wit.0.refresh_token.take().map(SecretString::from),
        api_key: wit.0.api_key.take().map(SecretString::from),
        api_secret: wit.0.api_secret.take().map(SecretString::from),
        expires_at: wit.0.expires_at,
    }
}

/// The WIT client handed to a guest, zeroized when the call is over.
pub(super) struct WitClient(pub(super) wit::Client);

pub(super) fn wit_client(client: &OauthClient) -> WitClient {
    WitClient(wit::Client {
        client_id: client.client_id.clone(),
        client_secret: client.client_secret.expose_secret().to_owned(),
    })
}

impl Drop for WitClient {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.0.client_secret.zeroize();
    }
}

/// The WIT secret handed to a guest, zeroized when the call is over.
pub(super) struct WitSecret(pub(super) wit::Secret);

impl From<&SecretFields> for WitSecret {
    fn from(s: &SecretFields) -> Self {
        WitSecret(wit::Secret {
            access_token: s.access_token().map(str::to_owned),
            refresh_token: s.refresh_token().map(str::to_owned),
            api_key: s.api_key().map(str::to_owned),
            api_secret: s.api_secret().map(str::to_owned),
            expires_at: s.expires_at,
        })
    }
}

impl Drop for WitSecret {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.0.access_token.zeroize();
        self.0.refresh_token.zeroize();
        self.0.api_key.zeroize();
        self.0.api_secret.zeroize();
    }
}

impl Redactor {
    pub(super) fn for_secret(secret: &wit::Secret) -> Self {
        Redactor::new(
            [
                &secret.access_token,
                &secret.refresh_token,
                &secret.api_key,
                &secret.api_secret,
            ]
            .into_iter()
            .filter_map(|v| v.as_deref()),
        )
    }
}

pub(super) fn placeholder_spec() -> IntegrationSpec {
    IntegrationSpec {
        slug: String::new(),
        integration_key: String::new(),
        version: 0,
        display_name: String::new(),
        category: String::new(),
        auth_type: AuthType::None,
        ownership_modes: Vec::new(),
        capabilities: Vec::new(),
        allowed_hosts: Vec::new(),
        rate_profile: RateProfile {
            requests: 0,
            per_seconds: 1,
            burst: 0,
        },
        oauth: None,
        config_defaults: Default::default(),
    }
}

/// Converts a connector's `info()` and lists every problem with it, for a person.
pub(super) fn describe(info: wit::ConnectorInfo) -> (IntegrationSpec, Vec<String>) {
    let mut problems = Vec::new();
    let slug_ok = !info.slug.is_empty()
        && info.slug.len() <= 64
        && info
            .slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !slug_ok {
        problems.push(format!(
            "slug `{}` must be lowercase letters, digits and dashes",
            info.slug
        ));
    }
    if info.integration_key.split('.').count() != 2 {
        problems.push(format!(
            "integration key `{}` must be `<category>.<provider>`",
            info.integration_key
        ));
    }
    let mut ownership_modes = Vec::new();
    for mode in &info.ownership_modes {
        match mode.as_str() {
            "managed" => ownership_modes.push(OwnershipMode::Managed),
            "byok" => ownership_modes.push(OwnershipMode::Byok),
            other => problems.push(format!("unknown ownership mode `{other}`")),
        }
    }
    if info.rate_profile.per_seconds == 0 {
        problems.push("rate profile per-seconds must be positive".into());
    }
    problems.extend(capability_problems(&info.capabilities));
    for host in &info.allowed_hosts {
        if let Err(e) = super::egress::HostPattern::parse(host) {
            problems.push(format!("{e}: not a host pattern (`api.example.com`, `*.example.com`, optionally with `:port`)"));
        }
    }
    let spec = IntegrationSpec {
        slug: info.slug,
        integration_key: info.integration_key,
        version: info.version,
        display_name: info.display_name,
        category: info.category,
        auth_type: match info.auth_type {
            wit::AuthType::Oauth2 => AuthType::Oauth2,
            wit::AuthType::ApiKey => AuthType::ApiKey,
            wit::AuthType::ApiKeySecret => AuthType::ApiKeySecret,
            wit::AuthType::None => AuthType::None,
        },
        ownership_modes,
        capabilities: info
            .capabilities
            .into_iter()
            .map(|c| CapabilityRef {
                key: c.key,
                version: c.version,
                description: c.description,
            })
            .collect(),
        allowed_hosts: info.allowed_hosts,
        rate_profile: RateProfile {
            requests: info.rate_profile.requests,
            per_seconds: info.rate_profile.per_seconds,
            burst: info.rate_profile.burst,
        },
        oauth: info.oauth.map(|o| OauthConfig {
            authorize_url: o.authorize_url,
            token_url: o.token_url,
            scopes: o.scopes,
            pkce: o.pkce,
        }),
        config_defaults: Default::default(),
    };
    (spec, problems)
}

/// Capability keys are `<category>.<name>` (letters and digits, dot-separated), each
/// key and version once, versions from 1.
fn capability_problems(capabilities: &[wit::Capability]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for capability in capabilities {
        let key = &capability.key;
        let well_formed = key.split('.').count() >= 2
            && key.split('.').all(|part| {
                part.starts_with(|c: char| c.is_ascii_alphabetic())
                    && part.chars().all(|c| c.is_ascii_alphanumeric())
            });
        if !well_formed {
            problems.push(format!(
                "capability key `{key}` must be `<category>.<name>` in letters and digits"
            ));
        }
        if capability.version == 0 {
            problems.push(format!(
                "capability `{key}` has version 0; versions start at 1"
            ));
        }
        if !seen.insert((key.as_str(), capability.version)) {
            problems.push(format!(
                "capability `{key}@{}` is declared twice",
                capability.version
            ));
        }
    }
    problems
}
