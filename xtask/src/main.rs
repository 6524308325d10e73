//! `cargo xtask`: the project's commands.
//!
//! - `build`: every connector (Rust, Python and JavaScript, into wasm32-wasip2
//!   components) and the host.
//! - `run [ARGS]`: build (optimised), then `conduit serve` on the embedded defaults.
//! - `test`: build the connectors, start a throwaway PostgreSQL server (`postgres`),
//!   then run the whole test suite.
//! - `bench`: build the connectors, then the benchmarks (release).
//!
//! Host and connectors share the root `target/` directory, so nothing is built twice.
//! Every command that builds connectors first makes sure the `wasm32-wasip2` target is
//! installed: a machine whose pinned toolchain came without it needs no manual step.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

mod postgres;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = root();
    match args.first().map(String::as_str) {
        Some("build") | Some("build-plugins") => build_plugins(&root, Profile::Dev),
        Some("run") => {
            build_plugins(&root, Profile::Release)?;
            let mut serve = vec!["serve".to_owned()];
            // `cargo xtask run -- --listen …`: the separator is cargo's, not serve's.
            let passed = &args[1..];
            let passed = passed.strip_prefix(&["--".to_owned()]).unwrap_or(passed);
            serve.extend(passed.iter().cloned());
            run(Command::new(target_dir(&root).join("release/conduit"))
                .args(&serve)
                .current_dir(&root))
        }
        Some("test") => {
            build_plugins(&root, Profile::Dev)?;
            let _database = postgres::start(&target_dir(&root))?;
            let mut test = vec!["test", "--workspace"];
            test.extend(args[1..].iter().map(String::as_str));
            cargo(&root, &test)?;
            // Tests that measure time (the soak) run after the rest, alone, so other
            // tests' load is not in their figures.
            if args.len() == 1 {
                cargo(
                    &root,
                    &[
                        "test",
                        "-p",
                        "conduit",
                        "--test",
                        "e2e",
                        "--",
                        "--ignored",
                        "--test-threads",
                        "1",
                    ],
                )?;
            }
            Ok(())
        }
        Some("bench") => {
            build_plugins(&root, Profile::Release)?;
            let _database = postgres::start(&target_dir(&root))?;
            cargo(&root, &["bench", "-p", "conduit", "--bench", "conduit"])
        }
        _ => {
            bail!("usage: cargo xtask <build | run [serve args] | test [cargo test args] | bench>")
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// Which host build drives the Python and JavaScript builds (the one the command
/// needs anyway, so nothing is built twice).
#[derive(Clone, Copy, PartialEq)]
enum Profile {
    Dev,
    Release,
}

/// Builds every connector in `plugins/` into `target/wasm32-wasip2/release/*.wasm`:
/// the Rust ones with cargo (one workspace), then the host, whose `conduit plugin
/// build` builds the Python and JavaScript ones with the pinned toolchains it installs
/// under `target/toolchains` (once; later builds reuse them, and skip connectors whose
/// sources have not changed).
fn build_plugins(root: &Path, profile: Profile) -> Result<()> {
    ensure_wasm_target(root)?;
    let target = target_dir(root);
    run(Command::new(cargo_bin())
        .args(["build", "--release", "--target", WASM_TARGET])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(root.join("plugins")))?;
    let conduit = match profile {
        Profile::Dev => {
            cargo(root, &["build", "-p", "conduit"])?;
            target.join("debug/conduit")
        }
        Profile::Release => {
            cargo(root, &["build", "--release", "-p", "conduit"])?;
            target.join("release/conduit")
        }
    };
    for dir in guest_plugins(root)? {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .context("plugin directory name")?
            .replace('-', "_");
        let out = target
            .join(WASM_TARGET)
            .join("release")
            .join(format!("conduit_{name}.wasm"));
        run(Command::new(&conduit)
            .args(["plugin", "build"])
            .arg(&dir)
            .arg("--out")
            .arg(&out)
            .arg("--toolchains")
            .arg(target.join("toolchains")))?;
    }
    Ok(())
}

/// The connectors in `plugins/` that are not Rust (no Cargo.toml): Python (`app.py`)
/// and JavaScript (`package.json`).
fn guest_plugins(root: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("plugins"))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|dir| {
            !dir.join("Cargo.toml").exists()
                && (dir.join("app.py").exists() || dir.join("package.json").exists())
        })
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// `rustup target add` is idempotent (a no-op when the target is there), so it runs
/// every time rather than guessing from the sysroot. Without rustup (a distro
/// toolchain) the build itself says what is missing.
fn ensure_wasm_target(root: &Path) -> Result<()> {
    let rustup = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .current_dir(root)
        .status();
    match rustup {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => bail!("`rustup target add {WASM_TARGET}` failed with {status}"),
        Err(_) => {
            eprintln!("xtask: rustup not found; assuming {WASM_TARGET} is installed");
            Ok(())
        }
    }
}

const WASM_TARGET: &str = "wasm32-wasip2";

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    run(Command::new(cargo_bin()).args(args).current_dir(root))
}

fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}
