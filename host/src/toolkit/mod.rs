//! The connector authoring toolkit behind `conduit plugin`: `new` scaffolds a working
//! connector in Rust, Python or JavaScript (carrying the WIT and the SDK it needs),
//! `build` builds one for its language with pinned toolchains it installs and caches,
//! `check` inspects a component for a person.
//!
//! Owns the templates and the toolchain pins. May import: `runtime` (to inspect),
//! `domain`. Nothing in the server imports it.

pub mod build;
pub mod check;
pub mod scaffold;

use std::path::PathBuf;

/// Toolkit failures, each said for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file or directory cannot be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The wasm runtime could not start.
    #[error("the wasm runtime could not start: {0}")]
    Runtime(#[source] crate::runtime::Error),
    /// What was asked cannot be done as asked.
    #[error("{0}")]
    Usage(String),
    /// A build step failed.
    #[error("{0}")]
    Build(String),
}

/// The languages a connector can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// Rust, with the `conduit-sdk` crate, built by cargo for wasm32-wasip2.
    Rust,
    /// Python, with the `conduit_sdk` package, built by componentize-py.
    Python,
    /// JavaScript, with the `conduit-sdk.js` module, built by componentize-js.
    Js,
}

impl std::str::FromStr for Language {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "rust" | "rs" => Ok(Language::Rust),
            "python" | "py" => Ok(Language::Python),
            "js" | "javascript" => Ok(Language::Js),
            other => Err(Error::Usage(format!(
                "unknown language `{other}`: rust, python or js"
            ))),
        }
    }
}

impl Language {
    /// Which language the connector in `dir` is written in, from its files.
    pub fn detect(dir: &std::path::Path) -> Result<Language, Error> {
        if dir.join("Cargo.toml").is_file() {
            Ok(Language::Rust)
        } else if dir.join("package.json").is_file() {
            Ok(Language::Js)
        } else if dir.join("app.py").is_file() {
            Ok(Language::Python)
        } else {
            Err(Error::Usage(format!(
                "{} holds no connector: expected Cargo.toml (Rust), package.json (JavaScript) or app.py (Python)",
                dir.display()
            )))
        }
    }
}
