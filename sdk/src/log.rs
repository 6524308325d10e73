//! Logging into the host's logs, tagged with the connector. Never log secrets.

use crate::bindings::conduit::connector::log::log as host_log;
pub use crate::bindings::conduit::connector::log::Level;

/// Logs at info level.
pub fn info(message: &str) {
    host_log(Level::Info, message);
}

/// Logs at warn level.
pub fn warn(message: &str) {
    host_log(Level::Warn, message);
}

/// Logs at debug level.
pub fn debug(message: &str) {
    host_log(Level::Debug, message);
}
