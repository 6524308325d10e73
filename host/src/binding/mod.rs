//! The integration binding: app blueprints, tenants' versioned configs that bind a
//! blueprint's slots to connections, the resolver that turns a published config into
//! candidates per capability, and the policy decision point (scope globs).
//!
//! May import: `domain`, `store`, `runtime::catalog` (connector specs). Health checks
//! of bound connections go through [`configs::HealthProbe`], handed in by the
//! composition root, so this layer never depends on `exec`.

pub(crate) mod blueprints;
pub(crate) mod configs;
pub mod policy;
pub mod resolver;
