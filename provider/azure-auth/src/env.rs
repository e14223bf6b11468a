//! Where environment variables are read from: the process, or a map in tests.
//!
//! Every lookup this crate makes goes through [`Env`], so the precedence tests are tables of
//! maps and never touch the process environment (which is shared by the tests of one binary).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A source of environment variables. An empty value counts as unset, as in azurerm (its
/// `EnvDefaultFunc` falls back to the default on an empty variable).
pub trait Env: Send + Sync + fmt::Debug {
    /// The raw value of `name`, if set (empty or not).
    fn raw(&self, name: &str) -> Option<String>;

    /// The value of `name`, `None` when unset or empty.
    fn var(&self, name: &str) -> Option<String> {
        self.raw(name).filter(|value| !value.is_empty())
    }

    /// The first of `names` that is set and not empty.
    fn first(&self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|name| self.var(name))
    }
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn raw(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// A fixed set of variables. Its `Debug` lists the names only: values may be secrets.
#[derive(Clone, Default)]
pub struct MapEnv(BTreeMap<String, String>);

impl MapEnv {
    /// An empty environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.0.insert(name.into(), value.into());
        self
    }

    /// This environment with `name` set to `value`.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set(name, value);
        self
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for MapEnv {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(name, value)| (name.into(), value.into()))
                .collect(),
        )
    }
}

impl fmt::Debug for MapEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Env for MapEnv {
    fn raw(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// Where `program` is found on `PATH` as `env` sets it: the first executable file of that
/// name in a `PATH` entry.
pub fn find_on_path(env: &dyn Env, program: &str) -> Option<PathBuf> {
    let path = env.var("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_count_as_unset_and_first_takes_the_first_set() {
        let env = MapEnv::new().with("A", "").with("B", "b").with("C", "c");
        assert_eq!(env.var("A"), None);
        assert_eq!(env.raw("A").as_deref(), Some(""));
        assert_eq!(env.first(&["A", "B", "C"]).as_deref(), Some("b"));
        assert_eq!(env.first(&["X", "C"]).as_deref(), Some("c"));
        assert_eq!(env.first(&["X"]), None);
    }

    #[test]
    fn debug_lists_names_not_values() {
        let env = MapEnv::new().with("ARM_CLIENT_SECRET", "hunter2");
        let shown = format!("{env:?}");
        assert!(shown.contains("ARM_CLIENT_SECRET"));
        assert!(!shown.contains("hunter2"));
    }

    #[test]
    fn find_on_path_needs_an_executable_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let az = dir.path().join("az");
        std::fs::write(&az, "#!/bin/sh\n").expect("write az");
        let env = MapEnv::new().with("PATH", dir.path().display().to_string());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(find_on_path(&env, "az"), None, "not executable yet");
            std::fs::set_permissions(&az, std::fs::Permissions::from_mode(0o755))
                .expect("chmod az");
        }
        assert_eq!(find_on_path(&env, "az"), Some(az));
        assert_eq!(find_on_path(&MapEnv::new(), "az"), None);
    }
}
