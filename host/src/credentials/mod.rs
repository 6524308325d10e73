//! Credentials: the envelope-encrypted vault, sealing and vending credentials with
//! refresh on read, the refresh-ahead scheduler, key rotation, lifecycle notifications
//! and the OAuth flows (clients, authorization code, the connector-backed refresher).
//!
//! May import: `domain`, `store`, `audit`, `runtime` (to call a connector's OAuth
//! exports), `accounts`. Never `exec`, `binding` or `api`.

pub mod notify;
pub(crate) mod oauth;
pub(crate) mod rotation;
pub mod scheduler;
pub mod tokens;
pub mod vault;
pub(crate) mod vending;

pub use oauth::{redirects_loopback, RedirectPolicy};
