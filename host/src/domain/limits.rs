//! How many objects one tenant may keep of each kind an API call can create without
//! bound, and the refusal when a call would pass one. A count taken just before the
//! write is the check, so concurrent creations may pass a limit by the few that race.

use super::{Class, Classify, ErrorClass};
use serde_json::json;

/// Per-tenant ceilings (deployment settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantLimits {
    /// Connections (`CONDUIT_MAX_CONNECTIONS_PER_TENANT`).
    pub connections: usize,
    /// Draft tenant configs (`CONDUIT_MAX_DRAFTS_PER_TENANT`).
    pub draft_configs: usize,
    /// Pending OAuth authorizations (`CONDUIT_MAX_OAUTH_STATES_PER_TENANT`).
    pub oauth_states: usize,
}

impl Default for TenantLimits {
    fn default() -> Self {
        TenantLimits {
            connections: 1000,
            draft_configs: 100,
            oauth_states: 100,
        }
    }
}

/// A creation refused because the tenant holds as many as its limit allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this tenant already has {limit} {what}, its limit ({setting}); delete some first")]
pub struct LimitExceeded {
    /// What is counted (`connections`).
    pub what: &'static str,
    /// The limit.
    pub limit: usize,
    /// The setting that raises it.
    pub setting: &'static str,
}

impl LimitExceeded {
    /// `Err` when `count` more would pass `limit`.
    pub fn check(
        what: &'static str,
        count: usize,
        limit: usize,
        setting: &'static str,
    ) -> Result<(), LimitExceeded> {
        if count >= limit {
            Err(LimitExceeded {
                what,
                limit,
                setting,
            })
        } else {
            Ok(())
        }
    }
}

impl Classify for LimitExceeded {
    fn classify(&self) -> ErrorClass {
        ErrorClass::new(Class::Invalid, "limit_exceeded")
            .meta(json!({"limit": self.limit, "counted": self.what}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_reached_at_the_limit() {
        assert!(LimitExceeded::check("connections", 9, 10, "X").is_ok());
        let refused = LimitExceeded::check("connections", 10, 10, "X").unwrap_err();
        assert_eq!(refused.code(), "limit_exceeded");
        assert!(refused.to_string().contains("X"));
    }
}
