//! Provider configuration: which platform to use and where the local platform keeps its state.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tfplug::{AttributePath, Diagnostic, Diagnostics, Model, Schema, Value};

use crate::Client;

/// The Batch AI provider brings Azure Batch AI back as infrastructure as code: clusters of
/// (GPU) nodes, shared file servers and training jobs. Without an `azure` block it runs
/// everything on the embedded `local` platform.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub struct ProviderConfig {
    /// Settings of the `local` platform, the default: nodes are agent processes on this machine
    /// and file servers are directories.
    #[tf(block)]
    pub local: Option<LocalSettings>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, Model)]
pub struct LocalSettings {
    /// Directory where the local platform keeps file server exports, clusters, nodes and the
    /// control store. Created if missing; must be writable. Defaults to `$BATCHAI_HOME`, else
    /// `$XDG_DATA_HOME/batchai`, else `~/.local/share/batchai`.
    #[tf(optional, validate = check_root, summary = "empty local root")]
    pub root: Option<String>,
}

pub fn schema() -> Schema {
    Schema::new(0, ProviderConfig::block())
}

fn check_root(root: &str) -> Result<(), &'static str> {
    if root.trim().is_empty() {
        return Err("local.root must name a directory; remove it to use the default");
    }
    Ok(())
}

fn configured_root(config: &Value) -> Option<&Value> {
    config.get_attr("local")?.get_attr("root")
}

fn root_path() -> AttributePath {
    AttributePath::attrs(["local", "root"])
}

/// The directory the local platform uses when the configuration names none.
pub fn default_root() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("BATCHAI_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(home));
    }
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(data).join("batchai"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|home| PathBuf::from(home).join(".local/share/batchai"))
}

pub fn configure(config: &Value) -> Result<Client, Diagnostics> {
    let configured = configured_root(config);
    if configured.is_some_and(Value::is_unknown) {
        return Err(Diagnostic::error(
            "local root is not known yet",
            "local.root depends on a value that is only known after apply; use a value known at plan time",
        )
        .at(root_path())
        .into());
    }
    let (root, path) = match configured.and_then(Value::as_str) {
        Some(root) => (PathBuf::from(root), Some(root_path())),
        None => match default_root() {
            Some(root) => (root, None),
            None => {
                return Err(Diagnostic::error(
                    "no directory for the local platform",
                    "neither local.root, BATCHAI_HOME nor HOME is set; set local.root in the provider block",
                )
                .into());
            }
        },
    };
    check_writable(&root).map_err(|e| {
        let d = Diagnostic::error("unusable local root", e.to_string());
        Diagnostics::from(match &path {
            Some(p) => d.at(p.clone()),
            None => d,
        })
    })?;
    let root = root.canonicalize().unwrap_or(root);
    let platform = crate::platform::local::platform(root).map_err(|e| {
        let d = Diagnostic::error("unusable local root", e.to_string());
        Diagnostics::from(match &path {
            Some(p) => d.at(p.clone()),
            None => d,
        })
    })?;
    Ok(Arc::new(platform))
}

/// Why the local platform's root cannot be used.
#[derive(Debug, thiserror::Error)]
enum RootError {
    #[error("cannot create {}: {source}; choose a directory you can write to", .root.display())]
    Create {
        root: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not writable: {source}; choose a directory you can write to", .root.display())]
    Write {
        root: PathBuf,
        source: std::io::Error,
    },
}

fn check_writable(root: &Path) -> Result<(), RootError> {
    std::fs::create_dir_all(root).map_err(|source| RootError::Create {
        root: root.to_owned(),
        source,
    })?;
    let probe = root.join(format!(".write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|source| RootError::Write {
        root: root.to_owned(),
        source,
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with_root(root: Option<&str>) -> Value {
        let local = match root {
            Some(r) => Value::Object([("root".to_owned(), Value::string(r))].into()),
            None => Value::Null,
        };
        Value::Object([("local".to_owned(), local)].into())
    }

    #[test]
    fn configure_creates_the_root() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().join("a/b");
        let root_text = root.to_string_lossy().into_owned();
        assert!(configure(&config_with_root(Some(&root_text))).is_ok());
        assert!(root.is_dir());
    }

    #[test]
    fn unwritable_root_points_at_the_attribute() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap_or_else(|e| panic!("{e}"));
        let root_text = file.join("sub").to_string_lossy().into_owned();
        let err = configure(&config_with_root(Some(&root_text))).err();
        let diag = err.and_then(|d| d.0.into_iter().next());
        assert_eq!(diag.and_then(|d| d.path), Some(root_path()));
    }

    #[test]
    fn empty_root_is_rejected_at_validation() {
        let validate = |config: &Value| tfplug::validate::validate(&schema().block, config);
        let empty = validate(&config_with_root(Some(" ")));
        assert_eq!(
            empty.0.first().and_then(|d| d.path.clone()),
            Some(root_path())
        );
        assert!(!validate(&config_with_root(None)).has_errors());
    }
}
