//! `conduit plugin new NAME --lang rust|python|js`: a working connector from templates.
//!
//! A scaffold carries everything it builds against, so it works in any directory with
//! only the `conduit` binary: the WIT (`wit/connector.wit`), the SDK for its language
//! (the Rust crate, the Python package or the JavaScript module, as this binary was
//! built with them), a connector with one capability (`items.get@1` over a REST API) and
//! a test that runs it through a real `conduit serve` against a fake provider.

use super::{Error, Language};
use std::path::Path;

const WIT: &str = include_str!("../../../wit/connector.wit");

const RUST_SDK: &[(&str, &str)] = &[
    (
        "conduit-sdk/Cargo.toml",
        include_str!("../../../sdk/Cargo.toml"),
    ),
    (
        "conduit-sdk/src/lib.rs",
        include_str!("../../../sdk/src/lib.rs"),
    ),
    (
        "conduit-sdk/src/form.rs",
        include_str!("../../../sdk/src/form.rs"),
    ),
    (
        "conduit-sdk/src/http.rs",
        include_str!("../../../sdk/src/http.rs"),
    ),
    (
        "conduit-sdk/src/input.rs",
        include_str!("../../../sdk/src/input.rs"),
    ),
    (
        "conduit-sdk/src/log.rs",
        include_str!("../../../sdk/src/log.rs"),
    ),
];
const PYTHON_SDK: &str = include_str!("../../../sdk/python/conduit_sdk/__init__.py");
const JS_SDK: &str = include_str!("../../../sdk/js/conduit-sdk.js");
const PYTHON_TEST: &str = include_str!("templates/test_connector.py");

/// The files of a new connector, paths relative to its directory, before the name is
/// filled in.
fn files(language: Language) -> Vec<(&'static str, &'static str)> {
    let mut files = vec![("wit/connector.wit", WIT)];
    match language {
        Language::Rust => {
            files.extend(RUST_SDK);
            files.push(("Cargo.toml", include_str!("templates/rust/Cargo.toml")));
            files.push(("src/lib.rs", include_str!("templates/rust/lib.rs")));
            files.push(("test_connector.py", PYTHON_TEST));
        }
        Language::Python => {
            files.push(("conduit_sdk/__init__.py", PYTHON_SDK));
            files.push(("app.py", include_str!("templates/python/app.py")));
            files.push(("test_connector.py", PYTHON_TEST));
        }
        Language::Js => {
            files.push(("conduit-sdk.js", JS_SDK));
            files.push(("package.json", include_str!("templates/js/package.json")));
            files.push(("connector.js", include_str!("templates/js/connector.js")));
            files.push(("test.mjs", include_str!("templates/js/test.mjs")));
        }
    }
    files
}

/// Writes a new connector named `name` in `language` into `dir`, which must not exist
/// or be empty.
pub fn scaffold(name: &str, language: Language, dir: &Path) -> Result<(), Error> {
    check_name(name)?;
    if dir.exists()
        && dir
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(Error::Usage(format!(
            "{} already exists and is not empty",
            dir.display()
        )));
    }
    let key = format!("items.{}", name.replace('-', ""));
    let title = title(name);
    for (path, template) in files(language) {
        let text = template
            .replace("{{name}}", name)
            .replace("{{key}}", &key)
            .replace("{{title}}", &title);
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| Error::Write {
                path: parent.to_owned(),
                source,
            })?;
        }
        std::fs::write(&path, text).map_err(|source| Error::Write { path, source })?;
    }
    Ok(())
}

/// A slug: lowercase letters, digits and dashes, starting with a letter.
fn check_name(name: &str) -> Result<(), Error> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "`{name}` is not a connector name: lowercase letters, digits and dashes, starting with a letter"
        )))
    }
}

/// `acme-items` → `Acme Items`.
fn title(name: &str) -> String {
    name.split('-')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_slugs() {
        for bad in ["", "Acme", "1acme", "acme_items", "acme items", "../x"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_name("acme-items2").is_ok());
        assert_eq!(title("acme-items"), "Acme Items");
    }

    #[test]
    fn a_scaffold_fills_every_placeholder_and_refuses_a_used_directory() {
        let dir = tempfile::tempdir().unwrap();
        for language in [Language::Rust, Language::Python, Language::Js] {
            let target = dir.path().join(format!("{language:?}"));
            scaffold("acme-items", language, &target).unwrap();
            assert_eq!(Language::detect(&target).unwrap(), language);
            for (path, _) in files(language) {
                let text = std::fs::read_to_string(target.join(path)).unwrap();
                for placeholder in ["{{name}}", "{{key}}", "{{title}}"] {
                    assert!(!text.contains(placeholder), "{path} keeps {placeholder}");
                }
            }
            assert!(matches!(
                scaffold("acme-items", language, &target),
                Err(Error::Usage(_))
            ));
        }
    }
}
