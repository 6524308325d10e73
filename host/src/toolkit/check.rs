//! `conduit plugin check FILE.wasm`: what a component is and everything wrong with it,
//! for a person.

use crate::domain::IntegrationSpec;
use crate::runtime::{Inspection, PoolLimits, Runtime, RuntimeConfig};
use std::fmt::Write;
use std::path::Path;

/// Inspects the component at `path` under the server's pool limits. `Err` is for a
/// file that cannot be read; every problem with its contents is in the [`Inspection`].
pub async fn check(path: &Path, pool: PoolLimits) -> Result<Inspection, super::Error> {
    let wasm = std::fs::read(path).map_err(|source| super::Error::Read {
        path: path.to_owned(),
        source,
    })?;
    // Inspection compiles from scratch and never writes the cache; one call at a time
    // needs a pool of one, sized by the same per-component limits as the server's.
    let config = RuntimeConfig {
        max_instances: 1,
        pool,
        ..RuntimeConfig::new(std::env::temp_dir())
    };
    let runtime = Runtime::new(config).map_err(super::Error::Runtime)?;
    Ok(runtime.inspect(wasm).await)
}

/// The report `plugin check` prints.
pub fn render(path: &Path, report: &Inspection, limits: &PoolLimits) -> String {
    let mut out = Lines::default();
    out.line("file", path.display().to_string());
    out.line(
        "size",
        format!(
            "{} (sha256 {})",
            bytes(report.size_bytes as u64),
            short(&report.sha256)
        ),
    );
    if !report.contract_versions.is_empty() {
        let contracts: Vec<String> = report
            .contract_versions
            .iter()
            .map(|v| format!("conduit:connector@{v}"))
            .collect();
        out.line("contract", contracts.join(", "));
    }
    if let Some(footprint) = &report.footprint {
        out.line("exports", list(&footprint.exports));
        out.line("imports", list(&footprint.imports));
    }
    if let Some(spec) = &report.spec {
        render_spec(&mut out, spec);
    }
    if let Some(time) = report.compile_time {
        out.line("compile", format!("{:.2} s", time.as_secs_f64()));
    }
    if let Some(time) = report.info_time {
        out.line("info()", format!("{:.1} ms", time.as_secs_f64() * 1e3));
    }
    if let Some(footprint) = &report.footprint {
        out.line(
            "pool",
            format!(
                "{} core instances, {} memories, {} tables ({} elements), {} initial memory (limits per component: {} / {} / {})",
                footprint.core_instances,
                footprint.memories,
                footprint.tables,
                footprint.table_elements,
                bytes(footprint.initial_memory_bytes),
                limits.core_instances,
                limits.memories,
                limits.tables
            ),
        );
    }
    let mut text = out.0;
    if report.problems.is_empty() {
        text.push_str("ok: the component loads\n");
    } else {
        let _ = writeln!(text, "{} problem(s):", report.problems.len());
        for problem in &report.problems {
            let _ = writeln!(text, "  - {problem}");
        }
    }
    text
}

/// What `info()` said.
fn render_spec(out: &mut Lines, spec: &IntegrationSpec) {
    out.line(
        "connector",
        format!(
            "{} \"{}\" v{} ({}, category {})",
            spec.slug, spec.display_name, spec.version, spec.integration_key, spec.category
        ),
    );
    let modes: Vec<&str> = spec.ownership_modes.iter().map(|m| m.as_str()).collect();
    out.line(
        "auth",
        format!(
            "{} (ownership: {})",
            label(&spec.auth_type),
            modes.join(", ")
        ),
    );
    if let Some(oauth) = &spec.oauth {
        out.line(
            "oauth",
            format!(
                "authorize {} · token {} · scopes [{}] · pkce {}",
                oauth.authorize_url,
                oauth.token_url,
                oauth.scopes.join(" "),
                oauth.pkce
            ),
        );
    }
    let capabilities: Vec<String> = spec
        .capabilities
        .iter()
        .map(|c| format!("{}@{}", c.key, c.version))
        .collect();
    out.line("capabilities", capabilities.join(", "));
    out.line("allowed hosts", spec.allowed_hosts.join(", "));
    let rate = spec.rate_profile;
    out.line(
        "rate profile",
        format!(
            "{} requests per {} s, burst {}",
            rate.requests, rate.per_seconds, rate.burst
        ),
    );
}

/// Labelled lines, aligned.
#[derive(Default)]
struct Lines(String);

impl Lines {
    fn line(&mut self, label: &str, value: String) {
        let _ = writeln!(self.0, "  {label:<14} {value}");
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "nothing".to_owned()
    } else {
        names.join(", ")
    }
}

fn label(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
