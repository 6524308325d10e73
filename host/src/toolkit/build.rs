//! `conduit plugin build [DIR]`: builds a connector for its language.
//!
//! - Rust: `cargo build --release --target wasm32-wasip2` (the target is added first).
//! - Python: componentize-py, from a venv of its own.
//! - JavaScript: componentize-js (not AOT), from an npm project of its own, installed
//!   from the lock file below with `npm ci`.
//!
//! Toolchains are pinned here and installed on first use under the toolchains
//! directory (`--toolchains`, `CONDUIT_TOOLCHAINS`, else `~/.cache/conduit/toolchains`),
//! one directory per pinned version, so a second build reinstalls nothing. The WIT is
//! the nearest `wit/connector.wit` at or above the connector's directory; the SDK
//! (optional: a connector may use the bindings alone) the nearest `conduit_sdk/` or
//! `sdk/python/conduit_sdk/` (`conduit-sdk.js` or `sdk/js/conduit-sdk.js`) between the
//! connector and the WIT's level, so a scaffold and this repository's own connectors
//! build the same way; the build says which it used. A build whose sources, WIT, SDK
//! and toolchain pins hash as the last one's is skipped.

use super::{Error, Language};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The componentize-py release Python connectors are built with.
pub const COMPONENTIZE_PY: &str = "0.25.1";
/// The componentize-js release JavaScript connectors are built with.
pub const COMPONENTIZE_JS: &str = "0.23.0";

const JS_PACKAGE: &str = include_str!("js/package.json");
const JS_LOCK: &str = include_str!("js/package-lock.json");
const JS_BUILD: &str = include_str!("js/build.mjs");

/// What `plugin build` was asked.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Where the component goes (default `DIR/build/<name>.wasm`).
    pub out: Option<PathBuf>,
    /// Where toolchains are installed.
    pub toolchains: PathBuf,
}

impl BuildOptions {
    /// The default toolchains directory: `CONDUIT_TOOLCHAINS`, else the user's cache.
    pub fn default_toolchains() -> PathBuf {
        if let Some(dir) = std::env::var_os("CONDUIT_TOOLCHAINS") {
            return PathBuf::from(dir);
        }
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        cache.join("conduit/toolchains")
    }
}

/// What a build produced.
#[derive(Debug)]
pub struct Built {
    /// The component.
    pub wasm: PathBuf,
    /// The language it was built from.
    pub language: Language,
    /// False when the inputs had not changed and the previous build was kept.
    pub rebuilt: bool,
}

/// Builds the connector in `dir`.
pub fn build(dir: &Path, options: &BuildOptions) -> Result<Built, Error> {
    let dir = dir.canonicalize().map_err(|source| Error::Read {
        path: dir.to_owned(),
        source,
    })?;
    let language = Language::detect(&dir)?;
    let out = match &options.out {
        Some(out) => absolute(out)?,
        None => default_output(&dir),
    };
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(|source| Error::Write {
            path: parent.to_owned(),
            source,
        })?;
    }
    match language {
        Language::Rust => build_rust(&dir, &out)?,
        Language::Python | Language::Js => {
            let inputs = Inputs::find(&dir, language)?;
            let fingerprint = inputs.fingerprint(&dir)?;
            let stamp = out.with_extension("wasm.inputs");
            if out.is_file() && std::fs::read_to_string(&stamp).ok() == Some(fingerprint.clone()) {
                return Ok(Built {
                    wasm: out,
                    language,
                    rebuilt: false,
                });
            }
            // Commands run in the connector's directory: every path handed them is
            // absolute.
            let toolchains = absolute(&options.toolchains)?;
            if language == Language::Python {
                build_python(&dir, &inputs, &out, &toolchains)?;
            } else {
                build_js(&dir, &inputs, &out, &toolchains)?;
            }
            std::fs::write(&stamp, fingerprint).map_err(|source| Error::Write {
                path: stamp.clone(),
                source,
            })?;
        }
    }
    Ok(Built {
        wasm: out,
        language,
        rebuilt: true,
    })
}

/// Where `plugin build` writes the component of the connector in `dir` by default:
/// `DIR/build/<directory name, dashes as underscores>.wasm`.
pub fn default_output(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .map(str::to_owned)
        .or_else(|| {
            std::env::current_dir()
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        })
        .unwrap_or_else(|| "connector".into())
        .replace('-', "_");
    dir.join("build").join(format!("{name}.wasm"))
}

fn absolute(path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

/// The WIT and SDK a Python or JavaScript connector builds against.
struct Inputs {
    /// The directory holding `connector.wit`.
    wit: PathBuf,
    /// Python: the directory holding `conduit_sdk/`. JavaScript: `conduit-sdk.js`.
    /// Optional: a connector may use the generated bindings alone.
    sdk: Option<PathBuf>,
}

impl Inputs {
    fn find(dir: &Path, language: Language) -> Result<Inputs, Error> {
        let wit = nearest(dir, &["wit/connector.wit"], None).ok_or_else(|| {
            Error::Build(format!(
                "no wit/connector.wit in {} or above it (`conduit plugin new` writes one)",
                dir.display()
            ))
        })?;
        // The WIT's level bounds the search for the SDK: a scaffold's own, or the
        // repository's `sdk/` beside its `wit/`, never one further up.
        let wit_level = wit.parent().and_then(Path::parent).unwrap_or(dir);
        let candidates: &[&str] = match language {
            Language::Python => &[
                "conduit_sdk/__init__.py",
                "sdk/python/conduit_sdk/__init__.py",
            ],
            _ => &["conduit-sdk.js", "sdk/js/conduit-sdk.js"],
        };
        let sdk = nearest(dir, candidates, Some(wit_level)).and_then(|sdk| match language {
            // The package's parent goes on the Python path.
            Language::Python => sdk.parent().and_then(Path::parent).map(Path::to_owned),
            _ => Some(sdk),
        });
        let wit = wit.parent().map(Path::to_owned).unwrap_or_default();
        eprintln!(
            "conduit: {} with {} and {}",
            dir.display(),
            wit.join("connector.wit").display(),
            sdk.as_deref()
                .map_or("no SDK".into(), |s| format!("the SDK in {}", s.display()))
        );
        Ok(Inputs { wit, sdk })
    }

    /// A hash of every source the build reads and of the toolchain pins.
    fn fingerprint(&self, dir: &Path) -> Result<String, Error> {
        let mut files = Vec::new();
        collect_sources(dir, &mut files);
        collect_sources(&self.wit, &mut files);
        match &self.sdk {
            Some(sdk) if sdk.is_file() => files.push(sdk.clone()),
            Some(sdk) => collect_sources(&sdk.join("conduit_sdk"), &mut files),
            None => {}
        }
        files.sort();
        files.dedup();
        let mut hash = Sha256::new();
        for pin in [
            COMPONENTIZE_PY,
            COMPONENTIZE_JS,
            JS_BUILD,
            JS_PACKAGE,
            JS_LOCK,
        ] {
            hash.update(pin);
        }
        for file in files {
            let bytes = std::fs::read(&file).map_err(|source| Error::Read {
                path: file.clone(),
                source,
            })?;
            hash.update(file.to_string_lossy().as_bytes());
            hash.update(Sha256::digest(&bytes));
        }
        Ok(hex::encode(hash.finalize()))
    }
}

/// Source files under `dir` (not build output, caches or dependencies).
fn collect_sources(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            let output = matches!(
                name.as_ref(),
                "build" | "target" | "node_modules" | "__pycache__" | ".git"
            ) || name.ends_with(".stage");
            if !output {
                collect_sources(&path, files);
            }
        } else if [".py", ".js", ".mjs", ".wit", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext))
        {
            files.push(path);
        }
    }
}

/// The nearest `level/candidate` from `dir` up (to `stop` included, when given),
/// trying the candidates in order at each level.
fn nearest(dir: &Path, candidates: &[&str], stop: Option<&Path>) -> Option<PathBuf> {
    let levels = dir.ancestors();
    let mut reached_stop = false;
    levels
        .take_while(|level| {
            let go = !reached_stop;
            reached_stop |= stop == Some(*level);
            go
        })
        .flat_map(|level| candidates.iter().map(move |c| level.join(c)))
        .find(|path| path.is_file())
}

fn build_rust(dir: &Path, out: &Path) -> Result<(), Error> {
    // Idempotent; without rustup (a distro toolchain) cargo says what is missing.
    let _ = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .current_dir(dir)
        .status();
    // Cargo says where it put the component (a workspace's target directory, a
    // CARGO_TARGET_DIR, a renamed [lib]): read it from its messages, guess nothing.
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(dir)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| {
            Error::Build(format!(
                "cannot run `cargo`: {e} (is it installed and on PATH?)"
            ))
        })?;
    if !output.status.success() {
        return Err(Error::Build(format!(
            "`cargo build` failed ({})",
            output.status
        )));
    }
    let manifest = dir.join("Cargo.toml");
    let built = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| {
            message["reason"] == "compiler-artifact"
                && message["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path())
        })
        .flat_map(|message| {
            message["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(PathBuf::from))
        })
        .find(|file| file.extension().is_some_and(|e| e == "wasm"))
        .ok_or_else(|| {
            Error::Build(format!(
                "cargo built no component for {}: its [lib] needs crate-type = [\"cdylib\"]",
                manifest.display()
            ))
        })?;
    std::fs::copy(&built, out).map_err(|source| Error::Read {
        path: built,
        source,
    })?;
    Ok(())
}

fn build_python(dir: &Path, inputs: &Inputs, out: &Path, toolchains: &Path) -> Result<(), Error> {
    let componentize_py = python_toolchain(toolchains)?;
    let mut command = Command::new(componentize_py);
    // Keep the connector's directory free of __pycache__.
    command
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg("-d")
        .arg(&inputs.wit)
        .args(["-w", "plugin", "componentize", "-p"])
        .arg(dir);
    if let Some(sdk) = &inputs.sdk {
        command.arg("-p").arg(sdk);
    }
    run(command.arg("app").arg("-o").arg(out).current_dir(dir))
}

/// The venv holding the pinned componentize-py, installed once.
fn python_toolchain(toolchains: &Path) -> Result<PathBuf, Error> {
    let venv = toolchains.join(format!("componentize-py-{COMPONENTIZE_PY}"));
    let bin = venv.join("bin/componentize-py");
    let stamp = venv.join(".installed");
    if stamp.is_file() && bin.is_file() {
        return Ok(bin);
    }
    eprintln!(
        "conduit: installing componentize-py {COMPONENTIZE_PY} into {}",
        venv.display()
    );
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    run(Command::new(&python).args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("componentize-py=={COMPONENTIZE_PY}"),
    ]))?;
    write(&stamp, COMPONENTIZE_PY)?;
    Ok(bin)
}

fn build_js(dir: &Path, inputs: &Inputs, out: &Path, toolchains: &Path) -> Result<(), Error> {
    let toolchain = js_toolchain(toolchains)?;
    let entry = js_entry(dir)?;
    // componentize-js reads one source tree: stage the connector's modules with the SDK
    // beside them, so `import … from './conduit-sdk.js'` resolves wherever the SDK lives.
    let stage = out.with_extension("stage");
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(&stage).map_err(|source| Error::Write {
        path: stage.clone(),
        source,
    })?;
    let mut sources = Vec::new();
    collect_sources(dir, &mut sources);
    for source in sources
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "js" || e == "mjs"))
    {
        let relative = source.strip_prefix(dir).unwrap_or(source);
        copy(source, &stage.join(relative))?;
    }
    if let Some(sdk) = &inputs.sdk {
        copy(sdk, &stage.join("conduit-sdk.js"))?;
    }
    run(Command::new("node")
        .arg(toolchain.join("build.mjs"))
        .arg(stage.join(&entry))
        .arg(&inputs.wit)
        .arg(out)
        .current_dir(&stage))
}

/// The connector's entry module: package.json's `main`, else `connector.js`.
fn js_entry(dir: &Path) -> Result<String, Error> {
    let manifest = dir.join("package.json");
    let text = std::fs::read_to_string(&manifest).map_err(|source| Error::Read {
        path: manifest.clone(),
        source,
    })?;
    let package: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Build(format!("{}: {e}", manifest.display())))?;
    Ok(package["main"]
        .as_str()
        .unwrap_or("connector.js")
        .to_owned())
}

/// The npm project holding the pinned componentize-js, installed once from the lock.
fn js_toolchain(toolchains: &Path) -> Result<PathBuf, Error> {
    let project = toolchains.join(format!("componentize-js-{COMPONENTIZE_JS}"));
    let stamp = project.join(".installed");
    // The build script is rewritten every time: it is ours, not the toolchain's.
    std::fs::create_dir_all(&project).map_err(|source| Error::Write {
        path: project.clone(),
        source,
    })?;
    write(&project.join("build.mjs"), JS_BUILD)?;
    if stamp.is_file()
        && project
            .join("node_modules/@bytecodealliance/componentize-js")
            .is_dir()
    {
        return Ok(project);
    }
    eprintln!(
        "conduit: installing componentize-js {COMPONENTIZE_JS} into {}",
        project.display()
    );
    write(&project.join("package.json"), JS_PACKAGE)?;
    write(&project.join("package-lock.json"), JS_LOCK)?;
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&project))?;
    write(&stamp, COMPONENTIZE_JS)?;
    Ok(project)
}

fn copy(from: &Path, to: &Path) -> Result<(), Error> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|source| Error::Write {
            path: parent.to_owned(),
            source,
        })?;
    }
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|source| Error::Write {
            path: to.to_owned(),
            source,
        })
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|source| Error::Write {
        path: path.to_owned(),
        source,
    })
}

fn run(command: &mut Command) -> Result<(), Error> {
    let program = command.get_program().to_string_lossy().into_owned();
    let status = command.status().map_err(|e| {
        Error::Build(format!(
            "cannot run `{program}`: {e} (is it installed and on PATH?)"
        ))
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Build(format!("`{program}` failed ({status})")))
    }
}
