//! `conduit plugin new`: a working connector from templates.

use super::{Error, Language};
use std::path::Path;

/// Writes a new connector named `name` in `language` into `dir`.
pub fn scaffold(_name: &str, _language: Language, _dir: &Path) -> Result<(), Error> {
    Err(Error::Usage("not yet".into()))
}
