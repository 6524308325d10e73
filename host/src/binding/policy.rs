//! The policy decision point: whether a binding's scope admits a call. A scope lists
//! glob patterns (the `globset` crate) for workflows (`checkout`, `subscription-*`) and
//! for operation ids (`payments.stripe.*`); an absent or empty list admits everything.
//! Patterns are checked when a config is posted and compiled once per resolution.

use crate::domain::Scope;
use globset::{Glob, GlobSet, GlobSetBuilder};

/// Longest pattern accepted.
const MAX_PATTERN: usize = 200;

/// A scope pattern that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("scope pattern `{pattern}` is invalid: {reason}")]
pub struct PatternError {
    /// The pattern as given.
    pub pattern: String,
    /// Why.
    pub reason: String,
}

/// Why a scope refused a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No workflow pattern matches.
    Workflow,
    /// No operation pattern matches.
    Operation,
}

impl Refusal {
    /// For audit records and error details.
    pub fn describe(&self, workflow: &str, operation: &str) -> String {
        match self {
            Refusal::Workflow => format!("scope does not admit workflow `{workflow}`"),
            Refusal::Operation => format!("scope does not admit operation `{operation}`"),
        }
    }
}

/// A scope ready to match.
#[derive(Debug, Clone, Default)]
pub struct CompiledScope {
    workflows: Option<GlobSet>,
    operations: Option<GlobSet>,
}

impl CompiledScope {
    /// Compiles a binding's scope; `None` admits everything.
    pub fn compile(scope: Option<&Scope>) -> Result<Self, PatternError> {
        let Some(scope) = scope else {
            return Ok(Self::default());
        };
        Ok(CompiledScope {
            workflows: patterns(&scope.workflows)?,
            operations: patterns(&scope.operations)?,
        })
    }

    /// Whether a call in `workflow` running `operation` may use the binding.
    pub fn admits(&self, workflow: &str, operation: &str) -> Result<(), Refusal> {
        if !self
            .workflows
            .as_ref()
            .is_none_or(|set| set.is_match(workflow))
        {
            return Err(Refusal::Workflow);
        }
        if !self
            .operations
            .as_ref()
            .is_none_or(|set| set.is_match(operation))
        {
            return Err(Refusal::Operation);
        }
        Ok(())
    }
}

fn patterns(patterns: &[String]) -> Result<Option<GlobSet>, PatternError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        let invalid = |reason: String| PatternError {
            pattern: pattern.chars().take(MAX_PATTERN).collect(),
            reason,
        };
        if pattern.is_empty() || pattern.len() > MAX_PATTERN {
            return Err(invalid(format!("must be 1-{MAX_PATTERN} characters")));
        }
        set.add(Glob::new(pattern).map_err(|e| invalid(e.kind().to_string()))?);
    }
    set.build().map(Some).map_err(|e| PatternError {
        pattern: patterns.join(", "),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(workflows: &[&str], operations: &[&str]) -> CompiledScope {
        CompiledScope::compile(Some(&Scope {
            workflows: workflows.iter().map(|s| s.to_string()).collect(),
            operations: operations.iter().map(|s| s.to_string()).collect(),
        }))
        .unwrap()
    }

    #[test]
    fn globs_admit_matching_workflows_and_operations() {
        let s = scope(&["checkout", "subscription-*"], &["payments.stripe.*"]);
        assert_eq!(s.admits("checkout", "payments.stripe.createRefund"), Ok(()));
        assert_eq!(
            s.admits(
                "subscription-renewal",
                "payments.stripe.createPaymentIntent"
            ),
            Ok(())
        );
        assert_eq!(
            s.admits("support", "payments.stripe.createRefund"),
            Err(Refusal::Workflow)
        );
        assert_eq!(
            s.admits("checkout", "email.postmark.send"),
            Err(Refusal::Operation)
        );
    }

    #[test]
    fn an_absent_or_empty_scope_admits_everything() {
        let all = CompiledScope::compile(None).unwrap();
        assert_eq!(all.admits("anything", "x.y.z"), Ok(()));
        assert_eq!(scope(&[], &[]).admits("anything", "x.y.z"), Ok(()));
    }

    #[test]
    fn bad_patterns_are_refused() {
        let bad = Scope {
            workflows: vec!["[unclosed".into()],
            operations: vec![],
        };
        assert!(CompiledScope::compile(Some(&bad)).is_err());
        let empty = Scope {
            workflows: vec![String::new()],
            operations: vec![],
        };
        assert!(CompiledScope::compile(Some(&empty)).is_err());
    }
}
