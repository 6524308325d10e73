//! Conduit, an integration host: tenants' third-party credentials sealed in a vault,
//! capabilities executed through sandboxed WebAssembly connectors, behind an HTTP API.
//!
//! One folder per concept; `ARCHITECTURE.md` at the repository root maps them and how a
//! request flows. Dependencies point one way, with no cycles:
//!
//! ```text
//! api ─▶ exec ─▶ binding, credentials, accounts, deploy ─▶ runtime ─▶ audit ─▶ store ─▶ domain
//! ```
//!
//! `observe` (the metrics) sits beside `domain`: anything may record into it. `app`
//! wires them together; `main` is the CLI. Public are what `main`, the benches
//! and the end-to-end tests use: `app`, `domain`, `store`, `runtime`, and the parts of
//! `credentials`, `binding` and `exec` they configure or measure.

pub(crate) mod accounts;
pub(crate) mod api;
pub mod app;
pub(crate) mod audit;
pub mod binding;
pub mod credentials;
pub(crate) mod deploy;
pub mod domain;
pub mod exec;
pub(crate) mod observe;
pub mod runtime;
pub mod store;
pub mod toolkit;
