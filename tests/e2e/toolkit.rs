//! The authoring toolkit as a third party uses it: the guides of `sdk/README.md` run
//! word for word (`plugin new` → `plugin build` → `plugin check` → the scaffold's own
//! test, which executes through a real `conduit serve`), and `plugin check` naming
//! every problem of a broken component.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The shell blocks of `sdk/README.md` whose info string is `sh <lang>-guide`.
fn guide(lang: &str) -> String {
    let readme = std::fs::read_to_string(repo().join("sdk/README.md")).unwrap();
    let fence = format!("```sh {lang}-guide");
    let mut blocks = Vec::new();
    let mut rest = readme.as_str();
    while let Some(start) = rest.find(&fence) {
        let body = &rest[start + fence.len()..];
        let end = body.find("\n```").expect("a closed block");
        blocks.push(body[..end].trim().to_owned());
        rest = &body[end..];
    }
    assert!(!blocks.is_empty(), "sdk/README.md has no {fence} block");
    blocks.join("\n")
}

/// Runs `script` in `dir` with the `conduit` under test first on PATH, the toolchains
/// the build already installed, and the given environment.
fn shell(dir: &Path, script: &str, env: &[(&str, PathBuf)]) -> Output {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_conduit"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env("PATH", path)
        .env("RUST_BACKTRACE", "0")
        .env("CONDUIT_TOOLCHAINS", repo().join("target/toolchains"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
        .output()
        .expect("bash runs")
}

fn text(output: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn run_guide(lang: &str, env: &[(&str, PathBuf)]) {
    let dir = tempfile::tempdir().unwrap();
    let output = shell(dir.path(), &guide(lang), env);
    let report = text(&output);
    assert!(
        output.status.success(),
        "the {lang} guide failed:\n{report}"
    );
    assert!(report.contains("ok: the component loads"), "{report}");
    assert!(
        report.contains("contract       conduit:connector@0.1.0"),
        "{report}"
    );
    assert!(
        report.contains("ok: acme-items executed items.get through Conduit"),
        "{report}"
    );
    // The toolchains `cargo xtask` installed are reused, not installed again.
    assert!(!report.contains("installing componentize"), "{report}");
}

#[tokio::test]
async fn the_python_guide_runs_word_for_word() {
    run_guide("python", &[]);
}

#[tokio::test]
async fn the_js_guide_runs_word_for_word() {
    run_guide("js", &[]);
}

#[tokio::test]
async fn the_rust_guide_runs_word_for_word() {
    // Its own target directory, kept between runs, so the SDK's dependencies compile
    // once per machine rather than once per run.
    run_guide(
        "rust",
        &[("CARGO_TARGET_DIR", repo().join("target/scaffold-target"))],
    );
}

/// Builds a JavaScript connector from `files` and checks it.
fn check_js(files: &[(&str, &str)]) -> (Output, String) {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    let built = shell(dir.path(), "conduit plugin build . --out bad.wasm", &[]);
    assert!(built.status.success(), "{}", text(&built));
    let checked = shell(dir.path(), "conduit plugin check bad.wasm", &[]);
    let report = text(&checked);
    (checked, report)
}

const PACKAGE: &str = r#"{"name": "bad", "type": "module", "main": "connector.js"}"#;

/// A connector whose `info()` says `info` (a JS expression) and does nothing else.
fn connector_with_info(info: &str) -> String {
    format!(
        "export const connector = {{
  info() {{ {info} }},
  exchangeCode() {{ throw {{ tag: 'unsupported', val: 'no' }}; }},
  refresh() {{ throw {{ tag: 'unsupported', val: 'no' }}; }},
  healthCheck() {{ return {{ healthy: true, detail: 'ok' }}; }},
  execute(ctx, secret, capability, input) {{ return input; }},
}};
"
    )
}

#[tokio::test]
async fn plugin_check_names_every_problem_in_info() {
    let wit = std::fs::read_to_string(repo().join("wit/connector.wit")).unwrap();
    let info = "return { slug: 'Bad_Slug', integrationKey: 'nodot', version: 1, displayName: 'Bad', \
        category: 'x', authType: 'api-key', ownershipModes: ['byok', 'shared'], \
        capabilities: [{ key: 'items.get', version: 1, description: '' }, { key: 'items.get', version: 1, description: '' }, \
        { key: 'Items', version: 0, description: '' }], \
        allowedHosts: ['https://api.example.com/v1', 'ok.example.com:99999'], \
        rateProfile: { requests: 1, perSeconds: 0, burst: 1 }, oauth: undefined };";
    let (checked, report) = check_js(&[
        ("package.json", PACKAGE),
        ("wit/connector.wit", &wit),
        ("connector.js", &connector_with_info(info)),
    ]);
    assert!(!checked.status.success(), "{report}");
    for problem in [
        "slug `Bad_Slug`",
        "integration key `nodot`",
        "unknown ownership mode `shared`",
        "per-seconds must be positive",
        "`items.get@1` is declared twice",
        "capability key `Items`",
        "`Items` has version 0",
        "`https://api.example.com/v1`",
        "`ok.example.com:99999`",
    ] {
        assert!(report.contains(problem), "missing {problem:?} in\n{report}");
    }
    assert!(report.contains("9 problem(s)"), "{report}");
}

#[tokio::test]
async fn plugin_check_reports_a_runaway_info_and_a_wrong_contract() {
    let wit = std::fs::read_to_string(repo().join("wit/connector.wit")).unwrap();
    let (checked, report) = check_js(&[
        ("package.json", PACKAGE),
        ("wit/connector.wit", &wit),
        ("connector.js", &connector_with_info("for (;;) {}")),
    ]);
    assert!(!checked.status.success(), "{report}");
    assert!(report.contains("info() did not answer in time"), "{report}");

    // A component built against a contract version this host does not link.
    let future = wit.replace(
        "package conduit:connector@0.1.0;",
        "package conduit:connector@0.9.0;",
    );
    let (checked, report) = check_js(&[
        ("package.json", PACKAGE),
        ("wit/connector.wit", &future),
        ("connector.js", &connector_with_info("return {};")),
    ]);
    assert!(!checked.status.success(), "{report}");
    assert!(
        report.contains("targets contract conduit:connector@0.9.0")
            && report.contains("supported: 0.1.0"),
        "{report}"
    );

    // A component of another world altogether.
    let (checked, report) = check_js(&[
        ("package.json", PACKAGE),
        (
            "wit/connector.wit",
            "package acme:other;\nworld plugin {\n  export hello: func() -> string;\n}\n",
        ),
        ("connector.js", "export function hello() { return 'hi'; }\n"),
    ]);
    assert!(!checked.status.success(), "{report}");
    assert!(
        report.contains("missing export `conduit:connector/connector` (it exports hello)"),
        "{report}"
    );
}

#[test]
fn plugin_check_refuses_garbage_with_a_message_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("garbage.wasm"), b"\x00\x01not wasm").unwrap();
    std::fs::write(dir.path().join("module.wasm"), b"\0asm\x01\0\0\0").unwrap();
    for (file, expected) in [
        ("garbage.wasm", "not a WebAssembly component"),
        ("module.wasm", "core WebAssembly module, not a component"),
        ("missing.wasm", "cannot read"),
    ] {
        let output = shell(dir.path(), &format!("conduit plugin check {file}"), &[]);
        let report = text(&output);
        assert_eq!(output.status.code(), Some(1), "{report}");
        assert!(report.contains(expected), "{report}");
        assert!(!report.contains("panicked"), "{report}");
    }
    let output = shell(dir.path(), "conduit plugin new Bad_Name --lang rust", &[]);
    assert!(!output.status.success());
    assert!(text(&output).contains("is not a connector name"));
    let output = shell(dir.path(), "conduit plugin new ok --lang cobol", &[]);
    assert!(text(&output).contains("unknown language `cobol`"));
    let output = shell(dir.path(), "conduit plugin build .", &[]);
    assert!(
        text(&output).contains("holds no connector"),
        "{}",
        text(&output)
    );
}
