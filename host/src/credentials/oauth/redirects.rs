//! Where an authorization may send the user back: the deployment's allow-list of
//! redirect URI patterns, one list per environment. Without it, anyone holding a
//! tenant token could start a flow whose code lands on a host of their choosing.
//!
//! A pattern is a glob over the redirect URI without its query and fragment
//! (`scheme://host[:port]/path`): `*` stays within one path segment, `**` spans
//! segments, so `https://app.example.com/oauth/*` admits `/oauth/done` and not
//! `/oauth/x/y`, nor `https://app.example.com.evil.test/…`.

use crate::domain::Environment;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// The allow-list, per environment.
#[derive(Debug, Clone)]
pub struct RedirectPolicy {
    sandbox: Patterns,
    production: Patterns,
}

#[derive(Debug, Clone)]
struct Patterns {
    set: GlobSet,
    listed: Vec<String>,
}

/// A pattern that is not a glob.
#[derive(Debug, thiserror::Error)]
#[error("redirect pattern `{pattern}`: {reason}")]
pub struct PatternError {
    pattern: String,
    reason: String,
}

/// The sandbox default: a developer's own machine, on any port.
pub const LOOPBACK: &[&str] = &[
    "http://localhost/**",
    "http://localhost:*/**",
    "http://127.0.0.1/**",
    "http://127.0.0.1:*/**",
];

/// [`LOOPBACK`], owned.
pub fn loopback() -> Vec<String> {
    LOOPBACK.iter().map(|p| p.to_string()).collect()
}

impl Default for RedirectPolicy {
    /// Sandbox: loopback only; production: nothing until the deployment lists it.
    fn default() -> Self {
        RedirectPolicy::new(&loopback(), &[]).expect("the defaults are globs")
    }
}

impl RedirectPolicy {
    /// The lists for `sandbox` and `production` connections.
    pub fn new(sandbox: &[String], production: &[String]) -> Result<Self, PatternError> {
        Ok(RedirectPolicy {
            sandbox: Patterns::new(sandbox)?,
            production: Patterns::new(production)?,
        })
    }

    /// Whether `redirect` (already parsed as an absolute http(s) URL) is listed for
    /// `environment`.
    pub fn allows(&self, environment: Environment, redirect: &url::Url) -> bool {
        // A user part would let a wildcard reach past the host
        // (`http://localhost:1@evil.test/` is evil.test's): never listed.
        if !redirect.username().is_empty() || redirect.password().is_some() {
            return false;
        }
        let Some(host) = redirect.host_str() else {
            return false;
        };
        // Rebuilt from the parsed parts, so what is matched is what the browser visits.
        let port = redirect.port().map(|p| format!(":{p}")).unwrap_or_default();
        let bare = format!("{}://{host}{port}{}", redirect.scheme(), redirect.path());
        self.patterns(environment).set.is_match(bare)
    }

    /// The patterns listed for `environment`, for the refusal's message.
    pub fn listed(&self, environment: Environment) -> &[String] {
        &self.patterns(environment).listed
    }

    fn patterns(&self, environment: Environment) -> &Patterns {
        match environment {
            Environment::Sandbox => &self.sandbox,
            Environment::Production => &self.production,
        }
    }
}

impl Patterns {
    fn new(patterns: &[String]) -> Result<Self, PatternError> {
        let mut set = GlobSetBuilder::new();
        for pattern in patterns {
            let glob = GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|e| PatternError {
                    pattern: pattern.clone(),
                    reason: e.kind().to_string(),
                })?;
            set.add(glob);
        }
        Ok(Patterns {
            set: set.build().map_err(|e| PatternError {
                pattern: patterns.join(","),
                reason: e.to_string(),
            })?,
            listed: patterns.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Environment::{Production, Sandbox};

    fn url(text: &str) -> url::Url {
        url::Url::parse(text).unwrap()
    }

    #[test]
    fn patterns_admit_their_own_paths_and_nothing_that_only_starts_alike() {
        let listed = vec!["https://app.example.com/oauth/*".to_owned()];
        let policy = RedirectPolicy::new(&listed, &listed).unwrap();
        assert!(policy.allows(Production, &url("https://app.example.com/oauth/done")));
        assert!(policy.allows(Production, &url("https://app.example.com/oauth/done?x=1#y")));
        for refused in [
            "https://app.example.com/oauth/x/y",
            "https://app.example.com.evil.test/oauth/done",
            "https://evil.test/https://app.example.com/oauth/done",
            "http://app.example.com/oauth/done",
            "https://app.example.com:8443/oauth/done",
            "https://user@app.example.com/oauth/done",
            "https://app.example.com:443@evil.test/oauth/done",
        ] {
            assert!(!policy.allows(Production, &url(refused)), "{refused}");
        }
    }

    #[test]
    fn by_default_sandbox_admits_loopback_and_production_nothing() {
        let policy = RedirectPolicy::default();
        assert!(policy.allows(Sandbox, &url("http://localhost:3000/callback")));
        assert!(policy.allows(Sandbox, &url("http://127.0.0.1/done")));
        assert!(policy.allows(Sandbox, &url("http://localhost:3000/")));
        assert!(!policy.allows(Sandbox, &url("https://app.example.com/done")));
        assert!(!policy.allows(Sandbox, &url("http://localhost.evil.test/done")));
        // A wildcard port must not swallow a user part and the real host after it.
        assert!(!policy.allows(Sandbox, &url("http://localhost:1@evil.test/steal")));
        assert!(!policy.allows(Sandbox, &url("http://localhost:1@evil.test:8/steal")));
        assert!(!policy.allows(Production, &url("http://localhost:3000/callback")));
    }

    #[test]
    fn a_pattern_that_is_not_a_glob_is_refused_by_name() {
        let error = RedirectPolicy::new(&["https://a/[".to_owned()], &[]).unwrap_err();
        assert!(error.to_string().contains("https://a/["), "{error}");
    }
}
