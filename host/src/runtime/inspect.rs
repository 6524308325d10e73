//! Inspecting a component for a person (`conduit plugin check`): every step of the
//! load path, run to the end where it can, with every problem found rather than the
//! first.

use super::convert::{describe, placeholder_spec};
use super::{bindings, Error, Footprint, Plugin, Redactor, Runtime, SUPPORTED_CONTRACTS};
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
    /// Runs the load path on `wasm` without adding it anywhere, and reports.
    pub async fn inspect(&self, wasm: Vec<u8>) -> Inspection {
        let mut report = Inspection {
            size_bytes: wasm.len(),
            sha256: super::cache::wasm_sha256(&wasm),
            ..Inspection::default()
        };
        let footprint = match Footprint::of(&wasm) {
            Ok(footprint) => footprint,
            Err(e) => {
                report.problems.push(e.to_string());
                return report;
            }
        };
        report.contract_versions = footprint
            .contract_versions()
            .into_iter()
            .map(str::to_owned)
            .collect();
        report.problems.extend(contract_problems(&footprint));
        report.problems.extend(footprint.exceeds(&self.config.pool));
        report.footprint = Some(footprint.clone());
        if !report.problems.is_empty() {
            return report;
        }

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
                return report;
            }
            Err(e) => {
                report.problems.push(format!("compile task failed: {e}"));
                return report;
            }
        };
        report.compile_time = Some(started.elapsed());
        let pre = match self
            .linker
            .instantiate_pre(&component)
            .and_then(bindings::PluginPre::new)
        {
            Ok(pre) => pre,
            Err(e) => {
                report.problems.push(format!(
                    "does not fit the plugin world (imports the host does not provide, or exports missing): {e:#}"
                ));
                return report;
            }
        };

        let plugin = Plugin {
            spec: Arc::new(placeholder_spec()),
            wasm_sha256: report.sha256.clone(),
            origin: super::cache::Origin::Compiled,
            load_time: Duration::ZERO,
            footprint,
            pre,
            egress: self.loading_egress(),
            memory_bytes: self.config.default_memory_mb as usize * 1024 * 1024,
            deadline: super::INFO_DEADLINE,
        };
        let started = Instant::now();
        let info = self
            .call(&plugin, &Redactor::default(), |guest, store| {
                Box::pin(guest.call_info(store))
            })
            .await
            .result;
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
        report
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
    versions
        .into_iter()
        .filter(|v| !SUPPORTED_CONTRACTS.contains(v))
        .map(|v| {
            format!("targets contract conduit:connector@{v}, which this host does not support (supported: {supported})")
        })
        .collect()
}
