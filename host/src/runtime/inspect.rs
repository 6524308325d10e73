//! Inspecting a component for a person (`conduit plugin check`): every step of the
//! load path, run to the end where it can, with every problem found rather than the
//! first.

use super::convert::{describe, placeholder_spec};
use super::{bindings, Error, Footprint, Prepared, Runtime, SUPPORTED_CONTRACTS};
use crate::domain::IntegrationSpec;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What inspecting a component found.
#[derive(Debug, Default)]
pub struct Inspection {
    /// The wasm's size in bytes.
    pub size_bytes: usize,
    /// SHA-256 of the wasm, hex.
    pub sha256: String,
    /// What one instance takes from the pool (absent when the bytes do not parse).
    pub footprint: Option<Footprint>,
    /// The `conduit:connector` contract versions it exports.
    pub contract_versions: Vec<String>,
    /// How long a compile took (always compiled, never from the cache).
    pub compile_time: Option<Duration>,
    /// How long `info()` took, instantiation included.
    pub info_time: Option<Duration>,
    /// What `info()` answered.
    pub spec: Option<IntegrationSpec>,
    /// Everything wrong with it; empty when it would load.
    pub problems: Vec<String>,
}

impl Runtime {
    /// Runs the load path on `wasm` without adding it anywhere, and reports. Each step
    /// runs only if the ones before it found nothing.
    pub async fn inspect(&self, wasm: Vec<u8>) -> Inspection {
        let mut report = Inspection {
            size_bytes: wasm.len(),
            sha256: super::cache::wasm_sha256(&wasm),
            ..Inspection::default()
        };
        let Some(footprint) = self.read_binary(&wasm, &mut report) else {
            return report;
        };
        let Some((pre, exports)) = self.compile_and_link(wasm, &mut report).await else {
            return report;
        };
        let prepared = Prepared {
            info: Arc::new(placeholder_spec()),
            wasm_sha256: report.sha256.clone(),
            origin: super::cache::Origin::Compiled,
            footprint,
            load_time: Duration::ZERO,
            pre,
            exports,
        };
        self.report_info(&prepared, &mut report).await;
        report
    }

    fn default_memory_bytes(&self) -> usize {
        self.config.default_memory_mb as usize * 1024 * 1024
    }

    /// Parses and counts: the contract it exports and whether it fits the pool.
    fn read_binary(&self, wasm: &[u8], report: &mut Inspection) -> Option<Footprint> {
        let footprint = match Footprint::of(wasm) {
            Ok(footprint) => footprint,
            Err(e) => {
                report.problems.push(e.to_string());
                return None;
            }
        };
        report.contract_versions = footprint
            .contract_versions()
            .into_iter()
            .map(str::to_owned)
            .collect();
        report.problems.extend(contract_problems(&footprint));
        let exceeded = footprint
            .exceeds(&self.config.pool)
            .into_iter()
            .chain(footprint.exceeds_memory(self.default_memory_bytes()));
        report.problems.extend(exceeded.map(|e| e.to_string()));
        report.footprint = Some(footprint.clone());
        report.problems.is_empty().then_some(footprint)
    }

    /// Compiles (timed, never from the cache) and links against the plugin world.
    async fn compile_and_link(
        &self,
        wasm: Vec<u8>,
        report: &mut Inspection,
    ) -> Option<(bindings::PluginPre<super::CallState>, super::Exports)> {
        let started = Instant::now();
        let engine = self.engine.clone();
        let compiled = tokio::task::spawn_blocking(move || {
            wasmtime::component::Component::new(&engine, &wasm)
        })
        .await;
        let component = match compiled {
            Ok(Ok(component)) => component,
            Ok(Err(e)) => {
                report.problems.push(format!("does not compile: {e:#}"));
                return None;
            }
            Err(e) => {
                report.problems.push(format!("compile task failed: {e}"));
                return None;
            }
        };
        report.compile_time = Some(started.elapsed());
        match self.link(&component) {
            Ok(linked) => Some(linked),
            Err(e) => {
                report.problems.push(format!(
                    "does not fit the plugin world (imports the host does not provide, or exports missing): {e}"
                ));
                None
            }
        }
    }

    /// Calls `info()` under its deadline and checks what it answers.
    async fn report_info(&self, prepared: &Prepared, report: &mut Inspection) {
        let started = Instant::now();
        let info = self.ask_info(prepared).await;
        report.info_time = Some(started.elapsed());
        match info {
            Ok(info) => {
                let (spec, problems) = describe(info);
                report.problems.extend(problems);
                report.spec = Some(spec);
            }
            Err(e @ Error::Timeout(_)) => report
                .problems
                .push(format!("info() did not answer in time: {e}")),
            Err(e) => report.problems.push(format!("info() failed: {e}")),
        }
    }
}

/// The component must export `conduit:connector/connector` at a version this host
/// supports.
pub(super) fn contract_problems(footprint: &Footprint) -> Vec<String> {
    let versions = footprint.contract_versions();
    let supported = SUPPORTED_CONTRACTS.join(", ");
    if versions.is_empty() {
        let exports = if footprint.exports.is_empty() {
            "nothing".to_owned()
        } else {
            footprint.exports.join(", ")
        };
        return vec![format!(
            "missing export `conduit:connector/connector` (it exports {exports}); this host supports contract {supported}"
        )];
    }
    if versions.iter().any(|v| SUPPORTED_CONTRACTS.contains(v)) {
        return Vec::new();
    }
    let targeted: Vec<String> = versions
        .iter()
        .map(|v| format!("conduit:connector@{v}"))
        .collect();
    vec![format!(
        "targets contract {}, which this host does not support (supported: {supported})",
        targeted.join(", ")
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exporting(names: &[&str]) -> Footprint {
        Footprint {
            exports: names.iter().map(|n| n.to_string()).collect(),
            ..Footprint::default()
        }
    }

    #[test]
    fn a_component_needs_one_supported_contract() {
        assert!(contract_problems(&exporting(&["conduit:connector/connector@0.1.0"])).is_empty());
        // A newer export beside a supported one does not stop it; the host links 0.1.0.
        assert!(contract_problems(&exporting(&[
            "conduit:connector/connector@0.1.0",
            "conduit:connector/connector@0.9.0",
        ]))
        .is_empty());
        let newer = contract_problems(&exporting(&["conduit:connector/connector@0.9.0"]));
        assert!(
            newer[0].contains("conduit:connector@0.9.0") && newer[0].contains("supported: 0.1.0"),
            "{newer:?}"
        );
        let none = contract_problems(&exporting(&["exports", "hello"]));
        assert!(none[0].contains("it exports exports, hello"), "{none:?}");
    }
}
