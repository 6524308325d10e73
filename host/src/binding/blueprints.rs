//! AppBlueprintSpecs: an app's declaration of the integration slots it needs, put by
//! the admin under a name and version. A version, once written, is immutable: putting
//! the same document again is a no-op, a different one is refused, so every tenant
//! config validated against it stays valid.

use crate::domain::{Blueprint, Class, Classify, ErrorClass};
use crate::store::{self, BlueprintStore};
use std::collections::HashSet;
use std::sync::Arc;

/// Blueprint failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The document is not a valid blueprint.
    #[error("{0}")]
    Invalid(String),
    /// The body names another blueprint or version than the path.
    #[error("{0}")]
    Mismatch(String),
    /// The version exists with different content.
    #[error(
        "blueprint `{name}` version `{version}` is published and immutable; put a new version"
    )]
    Immutable {
        /// The name.
        name: String,
        /// The version.
        version: String,
    },
    /// No such blueprint version.
    #[error("blueprint not found")]
    NotFound,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl Classify for Error {
    fn classify(&self) -> ErrorClass {
        match self {
            Error::Invalid(_) => ErrorClass::new(Class::Invalid, "invalid_blueprint"),
            Error::Mismatch(_) => ErrorClass::new(Class::Invalid, "blueprint_mismatch"),
            Error::Immutable { .. } => ErrorClass::new(Class::Conflict, "blueprint_immutable"),
            Error::NotFound => ErrorClass::new(Class::NotFound, "not_found"),
            Error::Store(e) => e.classify(),
        }
    }
}

/// Blueprint use cases.
#[derive(Clone)]
pub struct Blueprints {
    store: Arc<dyn BlueprintStore>,
}

impl Blueprints {
    /// Blueprints in `store`.
    pub fn new(store: Arc<dyn BlueprintStore>) -> Self {
        Blueprints { store }
    }

    /// Publishes `blueprint` as `name` version `version`; returns it and whether it is
    /// new (`false`: the identical version already existed).
    pub fn put(
        &self,
        name: &str,
        version: &str,
        mut blueprint: Blueprint,
    ) -> Result<(Blueprint, bool), Error> {
        // Left out (or null), they are empty: what is stored and served is always an
        // object (or, for workflows, a list).
        for opaque in [&mut blueprint.workflows, &mut blueprint.branding] {
            if opaque.is_null() {
                *opaque = serde_json::Value::Object(Default::default());
            }
        }
        if !valid_segment(name) || !valid_segment(version) {
            return Err(Error::Invalid(
                "blueprint names and versions are 1-64 letters, digits, `.`, `_` or `-`".into(),
            ));
        }
        if blueprint.meta.name != name || blueprint.meta.version != version {
            return Err(Error::Mismatch(format!(
                "meta names `{}` version `{}` but the path is `{name}` version `{version}`",
                blueprint.meta.name, blueprint.meta.version
            )));
        }
        validate(&blueprint)?;
        match self.store.insert_blueprint(&blueprint)? {
            None => Ok((blueprint, true)),
            Some(existing) if existing == blueprint => Ok((existing, false)),
            Some(_) => Err(Error::Immutable {
                name: name.to_owned(),
                version: version.to_owned(),
            }),
        }
    }

    /// One version.
    pub fn get(&self, name: &str, version: &str) -> Result<Blueprint, Error> {
        self.store.blueprint(name, version)?.ok_or(Error::NotFound)
    }

    /// Every version.
    pub fn list(&self) -> Result<Vec<Blueprint>, Error> {
        Ok(self.store.blueprints()?)
    }
}

/// Names, versions and slot ids: short, printable, path- and key-safe.
pub fn valid_segment(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The seed writes `workflows` as an object keyed by workflow id (`{"checkout": {"name":
/// "invoice.checkout", "version": 1}}`); a list of workflow objects is accepted too.
/// Conduit does not interpret them, but a scalar or a list of scalars is a mistake.
fn check_workflows(workflows: &serde_json::Value) -> Result<(), String> {
    use serde_json::Value;
    match workflows {
        Value::Null => Ok(()),
        Value::Object(by_id) => match by_id.iter().find(|(_, w)| !w.is_object()) {
            None if by_id.keys().all(|id| valid_segment(id)) => Ok(()),
            None => Err("workflow ids must be 1-64 letters, digits, `.`, `_` or `-`".into()),
            Some((id, _)) => Err(format!("workflows.{id} must be an object")),
        },
        Value::Array(list) => match list.iter().position(|w| !w.is_object()) {
            None => Ok(()),
            Some(i) => Err(format!("workflows[{i}] must be an object")),
        },
        _ => Err("workflows must be an object keyed by workflow id, or a list".into()),
    }
}

fn validate(blueprint: &Blueprint) -> Result<(), Error> {
    let invalid = |m: String| Err(Error::Invalid(m));
    if let Some(app) = &blueprint.meta.app_id {
        if app.is_empty() || app.len() > 128 {
            return invalid("meta.appId must be 1-128 characters".into());
        }
    }
    if let Err(why) = check_workflows(&blueprint.workflows) {
        return invalid(why);
    }
    if !(blueprint.branding.is_null() || blueprint.branding.is_object()) {
        return invalid("branding must be an object".into());
    }
    let mut seen = HashSet::new();
    for (i, slot) in blueprint.integration_slots.iter().enumerate() {
        if !valid_segment(&slot.slot_id) {
            return invalid(format!(
                "integrationSlots[{i}].slotId must be 1-64 letters, digits, `.`, `_` or `-`"
            ));
        }
        if !seen.insert(slot.slot_id.as_str()) {
            return invalid(format!("slot `{}` is declared twice", slot.slot_id));
        }
        if slot.required_category.is_empty() || slot.required_category.len() > 64 {
            return invalid(format!(
                "slot `{}`: requiredCategory must be 1-64 characters",
                slot.slot_id
            ));
        }
        for capability in &slot.required_capabilities {
            if capability.version == 0 || !capability.key.contains('.') {
                return invalid(format!(
                    "slot `{}`: required capability `{}@{}` must be `<category>.<name>` at version >= 1",
                    slot.slot_id, capability.key, capability.version
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_workflows;
    use serde_json::json;

    #[test]
    fn workflows_are_an_object_by_id_or_a_list_of_objects() {
        for ok in [
            json!(null),
            json!({"checkout": {"name": "invoice.checkout", "version": 1}}),
            json!([{"id": "checkout"}]),
            json!([]),
            json!({}),
        ] {
            assert!(check_workflows(&ok).is_ok(), "{ok}");
        }
        for bad in [
            json!("checkout"),
            json!(3),
            json!(["checkout"]),
            json!({"checkout": "invoice.checkout"}),
            json!({"bad id": {}}),
        ] {
            assert!(check_workflows(&bad).is_err(), "{bad}");
        }
    }
}
