//! What a component needs from the instance pool, read from its binary before any
//! compile: core instances, linear memories and tables it instantiates, the initial size
//! of its memories, and the interfaces it imports and exports.
//!
//! Toolchains differ widely: a Rust or JavaScript connector instantiates three or four
//! core modules, a componentize-py one fourteen and more (CPython and its libraries
//! linked as separate modules sharing one memory) with 13 MiB of initial memory. The runtime sizes
//! its pool from per-component limits ([`PoolLimits`]) and refuses, by name of the
//! limit, a component that does not fit, instead of letting one toolchain quietly
//! divide the pool's capacity.

use wasmparser::{ComponentExternalKind, Encoding, Instance, Parser, Payload};

/// Bytes in one wasm page.
const PAGE: u64 = 64 * 1024;

/// A component's needs, counted from its binary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Core module instances it creates per instantiation.
    pub core_instances: u32,
    /// Linear memories its modules define.
    pub memories: u32,
    /// Tables its modules define.
    pub tables: u32,
    /// The initial size of every defined memory together, in bytes.
    pub initial_memory_bytes: u64,
    /// The initial elements of every defined table together.
    pub table_elements: u64,
    /// Names of the interfaces and functions the top-level component exports.
    pub exports: Vec<String>,
    /// Names of the interfaces the top-level component imports.
    pub imports: Vec<String>,
}

/// Why a binary is not a component at all.
#[derive(Debug, thiserror::Error)]
pub enum NotAComponent {
    /// A core module where a component was expected.
    #[error("this is a core WebAssembly module, not a component (build for wasm32-wasip2, or run `wasm-tools component new`)")]
    CoreModule,
    /// Bytes that do not parse as WebAssembly.
    #[error("not a WebAssembly component: {0}")]
    Malformed(String),
}

impl Footprint {
    /// Counts what `wasm` needs. Cheap (one pass over the binary, no validation beyond
    /// parsing): compile is where the binary is validated.
    pub fn of(wasm: &[u8]) -> Result<Footprint, NotAComponent> {
        let mut footprint = Footprint::default();
        // Nesting depth: 1 is the top-level component, whose imports and exports are
        // the ones the host links.
        let mut depth = 0usize;
        for payload in Parser::new(0).parse_all(wasm) {
            let payload = payload.map_err(|e| NotAComponent::Malformed(e.message().to_owned()))?;
            match payload {
                Payload::Version { encoding, .. } => {
                    if depth == 0 && encoding == Encoding::Module {
                        return Err(NotAComponent::CoreModule);
                    }
                    depth += 1;
                }
                Payload::End(_) => depth = depth.saturating_sub(1),
                Payload::InstanceSection(reader) => {
                    for instance in reader {
                        let instance = instance.map_err(malformed)?;
                        if matches!(instance, Instance::Instantiate { .. }) {
                            footprint.core_instances += 1;
                        }
                    }
                }
                Payload::MemorySection(reader) => {
                    for memory in reader {
                        let memory = memory.map_err(malformed)?;
                        footprint.memories += 1;
                        footprint.initial_memory_bytes = footprint
                            .initial_memory_bytes
                            .saturating_add(memory.initial.saturating_mul(PAGE));
                    }
                }
                Payload::TableSection(reader) => {
                    for table in reader {
                        let table = table.map_err(malformed)?;
                        footprint.tables += 1;
                        footprint.table_elements =
                            footprint.table_elements.saturating_add(table.ty.initial);
                    }
                }
                Payload::ComponentExportSection(reader) if depth == 1 => {
                    for export in reader {
                        let export = export.map_err(malformed)?;
                        if matches!(
                            export.kind,
                            ComponentExternalKind::Instance | ComponentExternalKind::Func
                        ) {
                            footprint.exports.push(export.name.0.to_owned());
                        }
                    }
                }
                Payload::ComponentImportSection(reader) if depth == 1 => {
                    for import in reader {
                        footprint
                            .imports
                            .push(import.map_err(malformed)?.name.0.to_owned());
                    }
                }
                _ => {}
            }
        }
        Ok(footprint)
    }

    /// The contract versions of `conduit:connector/connector` it exports (normally one).
    pub fn contract_versions(&self) -> Vec<&str> {
        self.exports
            .iter()
            .filter_map(|name| name.strip_prefix("conduit:connector/connector@"))
            .collect()
    }

    /// The pool limits this footprint exceeds.
    pub fn exceeds(&self, limits: &PoolLimits) -> Vec<Exceeded> {
        [
            (
                "core instances",
                self.core_instances,
                limits.core_instances,
                "CONDUIT_POOL_CORE_INSTANCES",
            ),
            (
                "linear memories",
                self.memories,
                limits.memories,
                "CONDUIT_POOL_MEMORIES",
            ),
            ("tables", self.tables, limits.tables, "CONDUIT_POOL_TABLES"),
        ]
        .into_iter()
        .filter(|(_, needs, limit, _)| needs > limit)
        .map(|(what, needs, limit, setting)| Exceeded {
            what,
            needs: needs.into(),
            limit: limit.into(),
            setting,
        })
        .collect()
    }

    /// Whether its memories start larger than a call's memory limit (it could never
    /// be instantiated).
    pub fn exceeds_memory(&self, memory_bytes: usize) -> Option<Exceeded> {
        let limit = memory_bytes as u64;
        (self.initial_memory_bytes > limit).then_some(Exceeded {
            what: "MiB of initial memory",
            needs: self.initial_memory_bytes.div_ceil(1 << 20),
            limit: limit >> 20,
            setting: "memory_mb in plugins.toml",
        })
    }
}

/// A limit a component does not fit, said with the setting that raises it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the component needs {needs} {what}, more than the limit of {limit} per component ({setting})"
)]
pub struct Exceeded {
    /// What is counted.
    pub what: &'static str,
    /// What the component needs.
    pub needs: u64,
    /// What the host allows.
    pub limit: u64,
    /// The setting that raises the limit.
    pub setting: &'static str,
}

fn malformed(e: wasmparser::BinaryReaderError) -> NotAComponent {
    NotAComponent::Malformed(e.message().to_owned())
}

/// What one component instance may take from the pool. The pool holds
/// `max_instances` instances of the largest component these limits admit, so a
/// component that loads never shrinks the number of calls that can run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    /// Core module instances per component instance.
    pub core_instances: u32,
    /// Linear memories per component instance.
    pub memories: u32,
    /// Tables per component instance.
    pub tables: u32,
}

impl Default for PoolLimits {
    /// Room for componentize-py's 14 core instances (more with native libraries), with
    /// headroom.
    fn default() -> Self {
        PoolLimits {
            core_instances: 64,
            memories: 4,
            tables: 64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_core_modules_are_named() {
        assert!(matches!(
            Footprint::of(b"not wasm at all"),
            Err(NotAComponent::Malformed(_))
        ));
        // The smallest core module: magic and version 1.
        let module = b"\0asm\x01\0\0\0";
        assert!(matches!(
            Footprint::of(module),
            Err(NotAComponent::CoreModule)
        ));
    }

    #[test]
    fn limits_name_what_is_exceeded() {
        let footprint = Footprint {
            core_instances: 70,
            memories: 1,
            tables: 2,
            ..Footprint::default()
        };
        let problems = footprint.exceeds(&PoolLimits::default());
        assert_eq!(problems.len(), 1, "{problems:?}");
        let text = problems[0].to_string();
        assert!(text.contains("70 core instances"), "{text}");
        assert!(text.contains("limit of 64"), "{text}");
        assert!(text.contains("CONDUIT_POOL_CORE_INSTANCES"), "{text}");
        assert!(footprint
            .exceeds(&PoolLimits {
                core_instances: 70,
                ..PoolLimits::default()
            })
            .is_empty());
        let heavy = Footprint {
            initial_memory_bytes: 13 << 20,
            ..Footprint::default()
        };
        let refused = heavy.exceeds_memory(8 << 20).unwrap().to_string();
        assert!(
            refused.contains("13 MiB of initial memory") && refused.contains("limit of 8"),
            "{refused}"
        );
        assert_eq!(heavy.exceeds_memory(64 << 20), None);
    }
}
