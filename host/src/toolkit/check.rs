//! `conduit plugin check FILE.wasm`: what a component is and everything wrong with it,
//! for a person.

use crate::runtime::{Inspection, PoolLimits, Runtime, RuntimeConfig};
use std::fmt::Write;
use std::path::Path;

/// Inspects the component at `path`. `Err` is for a file that cannot be read; every
/// problem with its contents is in the [`Inspection`].
pub async fn check(path: &Path) -> Result<Inspection, super::Error> {
    let wasm = std::fs::read(path).map_err(|source| super::Error::Read {
        path: path.to_owned(),
        source,
    })?;
    // Inspection compiles from scratch and never writes the cache.
    let runtime = Runtime::new(RuntimeConfig::new(std::env::temp_dir()))
        .map_err(|e| super::Error::Runtime(e.to_string()))?;
    Ok(runtime.inspect(wasm).await)
}

/// The report `plugin check` prints.
pub fn render(path: &Path, report: &Inspection, limits: &PoolLimits) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "  {label:<14} {value}");
    };
    line("file", path.display().to_string());
    line(
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
        line("contract", contracts.join(", "));
    }
    if let Some(footprint) = &report.footprint {
        let list = |names: &[String]| {
            if names.is_empty() {
                "nothing".to_owned()
            } else {
                names.join(", ")
            }
        };
        line("exports", list(&footprint.exports));
        line("imports", list(&footprint.imports));
    }
    if let Some(spec) = &report.spec {
        line(
            "connector",
            format!(
                "{} \"{}\" v{} ({}, category {})",
                spec.slug, spec.display_name, spec.version, spec.integration_key, spec.category
            ),
        );
        let modes: Vec<&str> = spec.ownership_modes.iter().map(|m| m.as_str()).collect();
        line(
            "auth",
            format!(
                "{} (ownership: {})",
                label(&spec.auth_type),
                modes.join(", ")
            ),
        );
        if let Some(oauth) = &spec.oauth {
            line(
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
        line("capabilities", capabilities.join(", "));
        line("allowed hosts", spec.allowed_hosts.join(", "));
        let rate = spec.rate_profile;
        line(
            "rate profile",
            format!(
                "{} requests per {} s, burst {}",
                rate.requests, rate.per_seconds, rate.burst
            ),
        );
    }
    if let Some(time) = report.compile_time {
        line("compile", format!("{:.2} s", time.as_secs_f64()));
    }
    if let Some(time) = report.info_time {
        line("info()", format!("{:.1} ms", time.as_secs_f64() * 1e3));
    }
    if let Some(footprint) = &report.footprint {
        line(
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
    if report.problems.is_empty() {
        out.push_str("ok: the component loads\n");
    } else {
        let _ = writeln!(out, "{} problem(s):", report.problems.len());
        for problem in &report.problems {
            let _ = writeln!(out, "  - {problem}");
        }
    }
    out
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
