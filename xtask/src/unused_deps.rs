//! The unused-dependency check `cargo xtask test` runs first: every dependency a workspace crate
//! declares must be named somewhere in its Rust sources (`name::`, `use name`, `extern crate
//! name`), or be on [`ALLOWED`] with its reason.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// Dependencies no source names but that are declared on purpose: `(crate, dependency)`, each
/// with its reason. A crate used only through a feature of another or through a macro that
/// does not spell its path belongs here.
const ALLOWED: &[(&str, &str)] = &[];

/// A workspace crate and what its manifest declares.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    name: String,
    dir: PathBuf,
    dependencies: Vec<Dependency>,
}

/// One declared dependency.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dependency {
    /// As the manifest spells it (`tonic-prost`).
    name: String,
    /// As sources name it: the rename if any, with `-` as `_` (`tonic_prost`).
    path: String,
    /// `dependencies`, `dev-dependencies` or `build-dependencies`.
    section: &'static str,
}

/// Fails, naming each one and how to fix it, when a workspace crate declares a dependency that
/// none of its sources uses.
pub fn check(root: &Path) -> anyhow::Result<()> {
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(root)
        .output()
        .context("run cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("read cargo metadata")?;
    let mut problems = Vec::new();
    for member in members(&metadata)? {
        let sources = rust_sources(&member.dir)?
            .iter()
            .map(|p| std::fs::read_to_string(p).with_context(|| format!("read {}", p.display())))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let manifest = member.dir.join("Cargo.toml");
        let manifest = manifest.strip_prefix(root).unwrap_or(&manifest);
        for dep in unused(&member, &sources, ALLOWED) {
            problems.push(format!(
                "{} declares `{}` in [{}] but none of its sources uses it (`{}::`, `use {}`): remove it from {}, or, if it is used only through a feature or a macro, add (\"{}\", \"{}\") with the reason to ALLOWED in xtask/src/unused_deps.rs",
                member.name,
                dep.name,
                dep.section,
                dep.path,
                dep.path,
                manifest.display(),
                member.name,
                dep.name,
            ));
        }
    }
    if problems.is_empty() {
        eprintln!("xtask: every declared dependency is used");
        return Ok(());
    }
    for problem in &problems {
        eprintln!("xtask: unused dependency: {problem}");
    }
    bail!("{} unused dependencies", problems.len())
}

/// The workspace members in `cargo metadata --no-deps` output.
fn members(metadata: &serde_json::Value) -> anyhow::Result<Vec<Member>> {
    let ids = metadata["workspace_members"]
        .as_array()
        .context("cargo metadata has no workspace_members")?;
    let packages = metadata["packages"]
        .as_array()
        .context("cargo metadata has no packages")?;
    packages
        .iter()
        .filter(|p| ids.contains(&p["id"]))
        .map(|p| {
            let name = p["name"].as_str().context("a package without a name")?;
            let dir = p["manifest_path"]
                .as_str()
                .map(Path::new)
                .and_then(Path::parent)
                .with_context(|| format!("{name} has no manifest path"))?;
            let dependencies = p["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| {
                    let name = d["name"].as_str()?;
                    let section = match d["kind"].as_str() {
                        None => "dependencies",
                        Some("dev") => "dev-dependencies",
                        Some("build") => "build-dependencies",
                        Some(_) => return None,
                    };
                    Some(Dependency {
                        name: name.to_owned(),
                        path: d["rename"].as_str().unwrap_or(name).replace('-', "_"),
                        section,
                    })
                })
                .collect();
            Ok(Member {
                name: name.to_owned(),
                dir: dir.to_path_buf(),
                dependencies,
            })
        })
        .collect()
}

/// The member's dependencies that none of `sources` uses and that `allowed` does not excuse.
fn unused<'m>(
    member: &'m Member,
    sources: &[String],
    allowed: &[(&str, &str)],
) -> Vec<&'m Dependency> {
    member
        .dependencies
        .iter()
        .filter(|d| !allowed.contains(&(member.name.as_str(), d.name.as_str())))
        .filter(|d| !sources.iter().any(|s| uses(s, &d.path)))
        .collect()
}

/// Whether `source` names the crate `path` outside comments: as a path (`path::`, `::path::`),
/// in `use path` (`use path;`, `use path as x;`), or in `extern crate path`.
fn uses(source: &str, path: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    source
        .lines()
        .map(str::trim_start)
        .filter(|line| !line.starts_with("//"))
        .any(|line| {
            line.match_indices(path).any(|(at, _)| {
                let before = &line[..at];
                let after = &line[at + path.len()..];
                if before.chars().next_back().is_some_and(is_ident)
                    || after.chars().next().is_some_and(is_ident)
                {
                    return false;
                }
                let before = before.trim_end();
                after.starts_with("::")
                    || before == "use"
                    || before.ends_with(" use")
                    || before.ends_with("extern crate")
            })
        })
}

/// Every `.rs` file below `dir`, leaving out build output and nested packages.
fn rust_sources(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries =
            std::fs::read_dir(&current).with_context(|| format!("read {}", current.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                let nested = path.join("Cargo.toml").exists();
                let hidden = path
                    .file_name()
                    .is_some_and(|n| n == "target" || n.to_string_lossy().starts_with('.'));
                if !nested && !hidden {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_paths_count_and_mentions_do_not() {
        let cases = [
            ("use serde::Deserialize;", "serde", true),
            ("#[derive(thiserror::Error)]", "thiserror", true),
            ("let x = ::prost::Message::encode(&m);", "prost", true),
            (
                "    tonic_prost::ProstCodec::default()",
                "tonic_prost",
                true,
            ),
            ("use libc;", "libc", true),
            ("pub use tempfile as temp;", "tempfile", true),
            ("#[macro_use]\nextern crate tracing;", "tracing", true),
            ("#[tokio::main]", "tokio", true),
            ("use tokio_stream::StreamExt;", "tokio", false),
            ("use my_serde::X;", "serde", false),
            ("// serde::Deserialize is not needed here", "serde", false),
            ("/// Like [`anyhow::Error`], but typed.", "anyhow", false),
            ("let serde = 1;", "serde", false),
            ("let schemars = \"schemars\";", "schemars", false),
        ];
        for (source, path, want) in cases {
            assert_eq!(uses(source, path), want, "{path} in {source:?}");
        }
    }

    #[test]
    fn members_and_their_unused_dependencies() {
        let metadata = serde_json::json!({
            "workspace_members": ["path+file:///w/a#0.1.0", "path+file:///w/b#0.1.0"],
            "packages": [
                {
                    "id": "path+file:///w/a#0.1.0",
                    "name": "a",
                    "manifest_path": "/w/a/Cargo.toml",
                    "dependencies": [
                        {"name": "serde", "kind": null, "rename": null},
                        {"name": "anyhow", "kind": null, "rename": null},
                        {"name": "tonic-prost", "kind": "dev", "rename": null},
                        {"name": "cc", "kind": "build", "rename": "compiler"},
                    ],
                },
                {
                    "id": "path+file:///w/b#0.1.0",
                    "name": "batchai",
                    "manifest_path": "/w/b/Cargo.toml",
                    "dependencies": [{"name": "schemars", "kind": null, "rename": null}],
                },
                {
                    "id": "registry+https://example/x#1.0.0",
                    "name": "not-a-member",
                    "manifest_path": "/r/x/Cargo.toml",
                    "dependencies": [],
                },
            ],
        });
        let members = members(&metadata).unwrap_or_else(|e| panic!("{e:#}"));
        let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a", "batchai"]);
        assert_eq!(members[0].dir, PathBuf::from("/w/a"));
        let paths: Vec<(&str, &str)> = members[0]
            .dependencies
            .iter()
            .map(|d| (d.path.as_str(), d.section))
            .collect();
        assert_eq!(
            paths,
            [
                ("serde", "dependencies"),
                ("anyhow", "dependencies"),
                ("tonic_prost", "dev-dependencies"),
                ("compiler", "build-dependencies"),
            ]
        );

        let cases: [(&[&str], &[&str]); 3] = [
            (&[], &["serde", "anyhow", "tonic-prost", "cc"]),
            (
                &["use serde::Serialize;", "fn main() { compiler::run(); }"],
                &["anyhow", "tonic-prost"],
            ),
            (
                &[
                    "use serde::Serialize;\nuse anyhow::Context as _;",
                    "tonic_prost::X; compiler::Y;",
                ],
                &[],
            ),
        ];
        for (sources, want) in cases {
            let sources: Vec<String> = sources.iter().map(|s| (*s).to_owned()).collect();
            let got: Vec<&str> = unused(&members[0], &sources, &[])
                .iter()
                .map(|d| d.name.as_str())
                .collect();
            assert_eq!(got, want, "{sources:?}");
        }
        assert_eq!(unused(&members[1], &[], &[]).len(), 1);
        assert!(unused(&members[1], &[], &[("batchai", "schemars")]).is_empty());
    }
}
