//! Conduit, an integration host: tenants' third-party credentials sealed in a vault,
//! capabilities executed through sandboxed WebAssembly connectors, behind an HTTP API.
//!
//! `ARCHITECTURE.md` at the repository root maps the modules and how a request flows
//! through them: api → (configs, exec) → (resolver, policy, ratelimit, tokens, runtime)
//! → (store, vault).

pub mod api;
pub mod app;
pub mod audit;
pub mod blueprints;
pub mod capabilities;
pub mod catalog;
pub mod circuit;
pub mod configs;
pub mod connections;
pub mod domain;
pub mod exec;
pub mod idempotency;
pub mod notify;
pub mod oauth;
pub mod policy;
pub mod ratelimit;
pub mod resolver;
pub mod rotation;
pub mod runtime;
pub mod scheduler;
pub mod store;
pub mod tenants;
pub mod tokens;
pub mod vault;
