//! Conduit, an integration host: tenants' third-party credentials sealed in a vault,
//! capabilities executed through sandboxed WebAssembly connectors, behind an HTTP API.
//!
//! One folder per concept; `ARCHITECTURE.md` at the repository root maps them and how a
//! request flows. Dependencies point one way, with no cycles:
//!
//! ```text
//! api ─▶ exec ─▶ binding, credentials, accounts ─▶ runtime ─▶ audit ─▶ store ─▶ domain
//! ```
//!
//! `app` wires them together; `main` is the CLI.

pub mod accounts;
pub mod api;
pub mod app;
pub mod audit;
pub mod binding;
pub mod credentials;
pub mod domain;
pub mod exec;
pub mod runtime;
pub mod store;
