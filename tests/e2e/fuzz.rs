//! A schema-driven fuzz of the whole API from the OpenAPI document Conduit serves:
//! schemathesis (pinned, from PyPI, installed into `target/toolchains` on first use)
//! generates requests for every operation, as a tenant and as the admin, and checks
//! that no answer is a 5xx and every answer matches its documented status, content
//! type and schema. Bounded in examples and seeded, so a run is reproducible.

use crate::support::fake_stripe::FakeStripe;
use crate::support::{Conduit, PluginDecl};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

const SCHEMATHESIS: &str = "4.32.5";
const EXAMPLES: &str = "40";
const SEED: &str = "20261203";

/// The pinned schemathesis, installed into its own venv the first time (a marker
/// says the install finished, so an interrupted one is redone).
fn schemathesis() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = root.join(format!("target/toolchains/schemathesis-{SCHEMATHESIS}"));
    let (bin, done) = (venv.join("bin/schemathesis"), venv.join(".installed"));
    if done.exists() {
        return bin;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let run = |command: &mut Command| {
        let out = command.output().expect("python3 runs");
        assert!(
            out.status.success(),
            "{command:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("schemathesis=={SCHEMATHESIS}"),
    ]));
    std::fs::write(&done, SCHEMATHESIS).unwrap();
    bin
}

fn fuzz(bin: &Path, conduit: &Conduit, token: &str, who: &str) {
    let out = Command::new(bin)
        .args(["run", &format!("{}/api/openapi.json", conduit.base)])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--max-examples", EXAMPLES, "--seed", SEED])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        // Its body is a WebAssembly component, which schemathesis cannot generate;
        // uploads have their own tests (`hotload.rs`).
        .args(["--exclude-path", "/admin/plugins"])
        .env("NO_COLOR", "1")
        .output()
        .expect("schemathesis runs");
    let report = String::from_utf8_lossy(&out.stdout);
    let tail: String = report
        .lines()
        .rev()
        .take(120)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        out.status.success(),
        "as {who}:\n{tail}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("passed"), "as {who}:\n{tail}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_whole_api_holds_under_schema_driven_fuzzing() {
    let bin = tokio::task::spawn_blocking(schemathesis).await.unwrap();
    let (_fake, addr) = FakeStripe::start().await;
    let conduit = Conduit::start(vec![
        PluginDecl::new("stripe", "conduit_stripe").allow(&[&addr.to_string()]),
        PluginDecl::new("sandbox-probe", "conduit_sandbox_probe"),
    ])
    .await;
    // Something to find: a connection with a credential, a blueprint.
    let token = conduit.tenant("fuzz").await;
    crate::stripe::byok_connection(&conduit, &token, addr).await;
    let blueprint = json!({
        "meta": {"name": "pay-app", "version": "1"},
        "integrationSlots": [{"slotId": "payments.primary", "requiredCategory": "payments",
            "requiredCapabilities": [{"key": "payments.createPaymentIntent", "version": 1}], "required": true}],
        "workflows": {"checkout": {"name": "Checkout"}},
        "branding": {}
    });
    let admin = conduit.admin_token.clone();
    let put = conduit
        .put("/admin/blueprints/pay-app/versions/1", &admin, blueprint)
        .await;
    assert_eq!(put.status, 201, "{}", put.text);

    let (tenant_run, admin_run) = (bin.clone(), bin);
    let conduit = std::sync::Arc::new(conduit);
    let c = conduit.clone();
    tokio::task::spawn_blocking(move || fuzz(&tenant_run, &c, &token, "a tenant"))
        .await
        .unwrap();
    let c = conduit.clone();
    tokio::task::spawn_blocking(move || fuzz(&admin_run, &c, &admin, "the admin"))
        .await
        .unwrap();
    // Still serving, and nothing the fuzz sent made the server log a panic.
    assert_eq!(conduit.get("/readyz", "").await.status, 200);
    assert!(!conduit.logs().contains("panicked"), "a handler panicked");
}
