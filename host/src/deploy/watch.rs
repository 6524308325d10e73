//! The watched plugins directory (`--plugins-dir`): each `*.wasm` file in it is a
//! connector. A file added or replaced goes through [`Deployer::install`], a file
//! removed unloads what it loaded. Events are debounced (`notify-debouncer-mini`): a
//! file is read once it has been quiet for [`QUIET`], so a copy in progress is not
//! read half written; should a slow writer pause longer, the partial file is refused
//! (it does not parse) and the write that completes it loads it. Names starting with
//! `.` are ignored, so writing to a hidden temporary file and renaming it into place
//! is the atomic way in.

use super::Deployer;
use crate::domain::deployment::PluginSource;
use notify_debouncer_mini::{new_debouncer, notify, DebounceEventResult};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long a file must be left alone before it is read.
pub const QUIET: Duration = Duration::from_millis(300);

/// A running watch; dropping it stops watching.
pub struct Watching {
    _debouncer: notify_debouncer_mini::Debouncer<notify::RecommendedWatcher>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Loads every component in `dir`, then follows its changes.
pub async fn watch(deployer: Arc<Deployer>, dir: PathBuf) -> Result<Watching, notify::Error> {
    std::fs::create_dir_all(&dir).map_err(notify::Error::io)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<DebounceEventResult>();
    let mut debouncer = new_debouncer(QUIET, move |events| {
        let _ = tx.send(events);
    })?;
    debouncer
        .watcher()
        .watch(&dir, notify::RecursiveMode::NonRecursive)?;
    let mut present: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(notify::Error::io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_component_file(p))
        .collect();
    present.sort();
    let at_start = deployer.clone();
    for path in &present {
        changed(&at_start, path).await;
    }
    forget_removed(&deployer, &dir, &present).await;
    let task = tokio::spawn(async move {
        while let Some(events) = rx.recv().await {
            let paths: BTreeSet<PathBuf> = match events {
                Ok(events) => events.into_iter().map(|e| e.path).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "watching the plugins directory failed");
                    continue;
                }
            };
            for path in paths.iter().filter(|p| is_component_file(p)) {
                changed(&deployer, path).await;
            }
        }
    });
    tracing::info!(dir = %dir.display(), "watching the plugins directory");
    Ok(Watching {
        _debouncer: debouncer,
        task,
    })
}

/// A file was added, replaced or removed.
async fn changed(deployer: &Deployer, path: &Path) {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let result = match std::fs::read(&path) {
        Ok(wasm) => {
            let source = PluginSource::Directory {
                path: path.display().to_string(),
            };
            deployer.install(wasm, source, false).await.map(|_| ())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => deployer.file_removed(&path).await,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read a plugins directory file");
            return;
        }
    };
    // Refusals are logged and audited by the deployer; the running version stays.
    if let Err(e) = result {
        tracing::debug!(path = %path.display(), error = %e, "plugins directory change not applied");
    }
}

/// Files removed while the server was down: what they loaded is unloaded.
async fn forget_removed(deployer: &Deployer, dir: &Path, present: &[PathBuf]) {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    let Ok(views) = deployer.list() else { return };
    for view in views {
        let Some(PluginSource::Directory { path }) = view.deployment.active.map(|a| a.source)
        else {
            continue;
        };
        let path = PathBuf::from(path);
        let gone = path.parent() == Some(dir.as_path())
            && !present
                .iter()
                .any(|p| std::path::absolute(p).ok().as_deref() == Some(path.as_path()));
        if gone {
            if let Err(e) = deployer.file_removed(&path).await {
                tracing::warn!(path = %path.display(), error = %e, "could not unload a removed plugins directory file");
            }
        }
    }
}

fn is_component_file(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    !hidden && path.extension().is_some_and(|e| e == "wasm")
}
