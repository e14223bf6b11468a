//! `cargo xtask release` and `cargo xtask install`: the provider packaged the way a provider
//! registry and a network mirror serve it (a zip per platform, `SHA256SUMS`, the registry
//! manifest, the mirror's JSON), and a build installed into the implicit local filesystem
//! mirror (`~/.terraform.d/plugins`) so that a plain `terraform init` / `tofu init` finds it
//! without `dev_overrides`.
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// The provider's binary (and crate binary) name.
pub const PROVIDER: &str = "terraform-provider-batchai";

/// The provider's namespace and type: `source = "batchai/batchai"`.
pub const NAMESPACE: &str = "batchai";
/// The provider's type name.
pub const TYPE: &str = "batchai";

/// The default registry of each CLI: `source = "batchai/batchai"` means
/// `registry.terraform.io/batchai/batchai` to Terraform and `registry.opentofu.org/...` to
/// OpenTofu, so a mirror holds the provider under both host names.
pub const REGISTRIES: [&str; 2] = ["registry.terraform.io", "registry.opentofu.org"];

/// The plugin protocol versions the provider speaks, for the registry manifest.
pub const PROTOCOL_VERSIONS: &[&str] = &["6.0"];

/// A platform the release task knows how to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// As Terraform names it: `linux_amd64`.
    pub platform: &'static str,
    /// The Rust target triple that builds it.
    pub triple: &'static str,
    /// Extra `rustc` flags for this target only (never for build scripts or the debug build).
    pub rustflags: &'static str,
}

/// Every platform `cargo xtask release` tries, in order. The Linux builds link the C runtime
/// statically: the same binary is the agent the azure platform uploads to nodes, whose images
/// may have an older glibc than the build machine. A platform whose Rust standard library or
/// linker is missing here is reported as not built, not an error.
pub const TARGETS: &[Target] = &[
    Target {
        platform: "linux_amd64",
        triple: "x86_64-unknown-linux-gnu",
        rustflags: "-C target-feature=+crt-static",
    },
    Target {
        platform: "linux_arm64",
        triple: "aarch64-unknown-linux-gnu",
        rustflags: "-C target-feature=+crt-static",
    },
    Target {
        platform: "darwin_arm64",
        triple: "aarch64-apple-darwin",
        rustflags: "",
    },
    Target {
        platform: "darwin_amd64",
        triple: "x86_64-apple-darwin",
        rustflags: "",
    },
];

/// The platform this process runs on, as Terraform names it (`linux_amd64`).
pub fn current_platform() -> String {
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    format!("{os}_{arch}")
}

/// The provider's version: the `batchai` crate's, as cargo resolves it.
pub fn version(repo: &Path) -> anyhow::Result<String> {
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(repo)
        .output()
        .context("run cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("read cargo metadata")?;
    metadata["packages"]
        .as_array()
        .and_then(|packages| {
            packages
                .iter()
                .find(|p| p["name"] == "batchai")
                .and_then(|p| p["version"].as_str())
        })
        .map(str::to_owned)
        .context("cargo metadata names no `batchai` package with a version")
}

/// The executable's name inside a package, as Terraform looks for it.
pub fn binary_name(version: &str) -> String {
    format!("{PROVIDER}_v{version}")
}

/// The archive a registry or mirror serves for `platform`.
pub fn zip_name(version: &str, platform: &str) -> String {
    format!("{PROVIDER}_{version}_{platform}.zip")
}

fn sha256(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Terraform's `h1:` package hash (Go's `dirhash.Hash1`): the SHA-256 of one line
/// `<hex SHA-256 of the file>  <name>\n` per file, sorted by name, in standard base64. It hashes
/// what a package contains, so a zip and the directory it unpacks to have the same one.
pub fn h1(files: &[(String, Vec<u8>)]) -> anyhow::Result<String> {
    use base64::Engine as _;
    let mut sorted: Vec<&(String, Vec<u8>)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut summary = String::new();
    for (name, data) in sorted {
        if name.contains('\n') {
            bail!("hash the package: the file name {name:?} contains a newline");
        }
        summary.push_str(&format!("{}  {name}\n", hex(&sha256(data))));
    }
    Ok(format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(sha256(summary.as_bytes()))
    ))
}

/// Terraform's `zh:` hash of an archive: the hex SHA-256 of the zip file itself (what a
/// registry's `SHA256SUMS` lists).
pub fn zh(zip: &[u8]) -> String {
    format!("zh:{}", hex(&sha256(zip)))
}

/// Every file below `dir` with its path relative to it (`/`-separated), for [`h1`].
pub fn package_files(dir: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("read {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                let data =
                    std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
                out.push((name, data));
            }
        }
    }
    Ok(out)
}

/// A zip holding the one executable `name` (mode 0755, deflated, with a fixed timestamp so
/// that the same binary always makes the same archive).
pub fn zip_binary(name: &str, data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o755)
        .last_modified_time(zip::DateTime::default());
    writer
        .start_file(name, options)
        .context("write the provider zip")?;
    writer.write_all(data).context("write the provider zip")?;
    Ok(writer
        .finish()
        .context("write the provider zip")?
        .into_inner())
}

/// The files of a zip with their contents (directory entries included, empty, as Terraform's
/// hash counts them).
pub fn zip_entries(zip: &[u8]) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(zip)).context("read the provider zip")?;
    let mut out = Vec::new();
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).context("read the provider zip")?;
        let name = file.name().context("read the provider zip")?.into_owned();
        let mut data = Vec::new();
        file.read_to_end(&mut data)
            .with_context(|| format!("read {name} in the provider zip"))?;
        out.push((name, data));
    }
    Ok(out)
}

/// One platform's package in a release.
#[derive(Debug, Clone)]
pub struct Package {
    pub target: Target,
    /// The zip in the release folder.
    pub zip: PathBuf,
    /// The executable that went into it (for Linux, the agent nodes run).
    pub binary: PathBuf,
    pub h1: String,
    pub zh: String,
}

/// What `release` wrote.
#[derive(Debug, Clone)]
pub struct Release {
    pub version: String,
    /// The release folder.
    pub dir: PathBuf,
    pub packages: Vec<Package>,
    /// Each platform that was asked for but could not be built, with the reason.
    pub skipped: Vec<(Target, String)>,
}

/// The Rust standard library for `triple` is installed (without it cargo cannot build for it).
fn std_installed(triple: &str) -> bool {
    let sysroot = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    sysroot.is_some_and(|s| s.join("lib/rustlib").join(triple).join("lib").is_dir())
}

/// Builds the release binary for `target` (release profile), returning its path or why not.
fn build(repo: &Path, target_dir: &Path, target: Target) -> Result<PathBuf, String> {
    if !std_installed(target.triple) {
        return Err(format!(
            "the Rust standard library for {} is not installed (`rustup target add {}`)",
            target.triple, target.triple
        ));
    }
    let var = format!(
        "CARGO_TARGET_{}_RUSTFLAGS",
        target.triple.to_ascii_uppercase().replace('-', "_")
    );
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // An explicit --target keeps the flags off build scripts and proc macros, and keeps this
    // build in a directory of its own, so the debug build and its cache stay as they are.
    cmd.args([
        "build",
        "--release",
        "--package",
        "batchai",
        "--bin",
        PROVIDER,
        "--target",
        target.triple,
    ])
    .current_dir(repo)
    .env("CARGO_TARGET_DIR", target_dir)
    .env(&var, target.rustflags);
    eprintln!("xtask: running {var}={:?} {cmd:?}", target.rustflags);
    match cmd.status() {
        Ok(s) if s.success() => Ok(target_dir
            .join(target.triple)
            .join("release")
            .join(PROVIDER)),
        Ok(s) => Err(format!("cargo build failed ({s}); its output is above")),
        Err(e) => Err(format!("start cargo: {e}")),
    }
}

/// Checks that a Linux release binary can be the nodes' agent: it names no glibc symbol
/// version at all (statically linked), so the azure driver's own guard passes on any image.
pub fn check_static(binary: &Path, data: &[u8]) -> Result<(), String> {
    match batchai::platform::azure::newest_glibc(data) {
        None => Ok(()),
        Some(minor) => Err(format!(
            "{} needs glibc 2.{minor}: it is not statically linked, so nodes whose image has an older glibc could not run it as their agent",
            binary.display()
        )),
    }
}

/// Builds every target in `targets` that this machine can build and writes, into `dir`
/// (emptied first), what a provider registry and a network mirror serve:
/// `terraform-provider-batchai_<version>_<os>_<arch>.zip` per platform,
/// `..._<version>_SHA256SUMS`, `..._<version>_manifest.json`, and the mirror's `index.json`
/// and `<version>.json` under `<registry host>/batchai/batchai/` for both default registries.
/// Fails only when no target could be built.
pub fn release(
    repo: &Path,
    target_dir: &Path,
    dir: &Path,
    targets: &[Target],
) -> anyhow::Result<Release> {
    let version = version(repo)?;
    let mut built = Vec::new();
    let mut skipped = Vec::new();
    for target in targets {
        match build(repo, target_dir, *target) {
            Ok(binary) => built.push((*target, binary)),
            Err(why) => skipped.push((*target, why)),
        }
    }
    if built.is_empty() {
        let why: Vec<String> = skipped
            .iter()
            .map(|(t, why)| format!("{}: {why}", t.platform))
            .collect();
        bail!("release: no platform could be built:\n{}", why.join("\n"));
    }
    let mut checked = Vec::new();
    for (target, binary) in built {
        let data = std::fs::read(&binary).with_context(|| format!("read {}", binary.display()))?;
        match check_static(&binary, &data) {
            Err(why) if target.platform.starts_with("linux_") => skipped.push((target, why)),
            _ => checked.push((target, binary)),
        }
    }
    if checked.is_empty() {
        bail!("release: no platform's binary could be packaged: {skipped:?}");
    }
    let packages = package(dir, &version, &checked)?;
    Ok(Release {
        version,
        dir: dir.to_path_buf(),
        packages,
        skipped,
    })
}

/// Writes the release folder `dir` (emptied first) for `binaries`, one per platform: the zips,
/// `SHA256SUMS`, the manifest and the network mirror's documents.
pub fn package(
    dir: &Path,
    version: &str,
    binaries: &[(Target, PathBuf)],
) -> anyhow::Result<Vec<Package>> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("empty {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut packages = Vec::new();
    for (target, binary) in binaries {
        let data = std::fs::read(binary).with_context(|| format!("read {}", binary.display()))?;
        let zip = zip_binary(&binary_name(version), &data)?;
        let path = dir.join(zip_name(version, target.platform));
        std::fs::write(&path, &zip).with_context(|| format!("write {}", path.display()))?;
        packages.push(Package {
            target: *target,
            zip: path,
            binary: binary.clone(),
            h1: h1(&zip_entries(&zip)?)?,
            zh: zh(&zip),
        });
    }
    write_registry_files(dir, version, &packages)?;
    write_mirror(dir, version, &packages)?;
    Ok(packages)
}

/// The registry manifest: the protocol versions the provider speaks.
pub fn manifest() -> String {
    serde_json::json!({"version": 1, "metadata": {"protocol_versions": PROTOCOL_VERSIONS}})
        .to_string()
}

/// `SHA256SUMS` (each zip and the manifest, `sha256sum` format) and the manifest.
fn write_registry_files(dir: &Path, version: &str, packages: &[Package]) -> anyhow::Result<()> {
    let manifest_name = format!("{PROVIDER}_{version}_manifest.json");
    let manifest = manifest();
    std::fs::write(dir.join(&manifest_name), &manifest)?;
    let mut sums: Vec<(String, String)> = packages
        .iter()
        .map(|p| -> anyhow::Result<(String, String)> {
            let name = zip_name(version, p.target.platform);
            Ok((name, hex(&sha256(&std::fs::read(&p.zip)?))))
        })
        .collect::<anyhow::Result<_>>()?;
    sums.push((manifest_name, hex(&sha256(manifest.as_bytes()))));
    sums.sort();
    let text: String = sums
        .iter()
        .map(|(name, sum)| format!("{sum}  {name}\n"))
        .collect();
    std::fs::write(dir.join(format!("{PROVIDER}_{version}_SHA256SUMS")), text)?;
    Ok(())
}

/// The provider network mirror protocol's documents, for each default registry's host:
/// `<host>/batchai/batchai/index.json` (the versions) and `<version>.json` (each platform's
/// archive, by a URL relative to that document, with its `h1:` and `zh:` hashes).
fn write_mirror(dir: &Path, version: &str, packages: &[Package]) -> anyhow::Result<()> {
    let mut archives = serde_json::Map::new();
    for p in packages {
        archives.insert(
            p.target.platform.to_owned(),
            serde_json::json!({
                // The zips sit at the top of the release folder, three levels up.
                "url": format!("../../../{}", zip_name(version, p.target.platform)),
                "hashes": [p.h1, p.zh],
            }),
        );
    }
    for host in REGISTRIES {
        let at = dir.join(host).join(NAMESPACE).join(TYPE);
        std::fs::create_dir_all(&at)?;
        let index = serde_json::json!({"versions": {version: {}}});
        std::fs::write(at.join("index.json"), format!("{index:#}\n"))?;
        let archives = serde_json::json!({"archives": archives});
        std::fs::write(
            at.join(format!("{version}.json")),
            format!("{archives:#}\n"),
        )?;
    }
    Ok(())
}

/// The implicit local filesystem mirror both CLIs search when the CLI configuration has no
/// `provider_installation` block: `~/.terraform.d/plugins`.
pub fn plugins_dir(home: &Path) -> PathBuf {
    home.join(".terraform.d").join("plugins")
}

/// What `install` put where.
#[derive(Debug, Clone)]
pub struct Installed {
    pub version: String,
    pub platform: String,
    /// The package directory under each default registry's host.
    pub dirs: Vec<PathBuf>,
    /// The package's `h1:` hash, as `terraform init` records it in the lock file.
    pub h1: String,
}

/// Installs `binary` as version `version` for `platform` into the local filesystem mirror
/// `plugins` in the unpacked layout, once per default registry:
/// `<plugins>/<host>/batchai/batchai/<version>/<platform>/terraform-provider-batchai_v<version>`.
/// The binary is copied (a later build must not change an installed package under Terraform's
/// lock file) through a temporary file and a rename, so a provider still running from the old
/// copy keeps its file.
pub fn install(
    binary: &Path,
    plugins: &Path,
    version: &str,
    platform: &str,
) -> anyhow::Result<Installed> {
    let name = binary_name(version);
    let mut dirs = Vec::new();
    for host in REGISTRIES {
        let dir = plugins
            .join(host)
            .join(NAMESPACE)
            .join(TYPE)
            .join(version)
            .join(platform);
        if dir.exists() {
            // Whatever an earlier install left (another file would change the package's hash).
            std::fs::remove_dir_all(&dir).with_context(|| format!("empty {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let temporary = dir.join(format!(".{name}.partial"));
        std::fs::copy(binary, &temporary).with_context(|| {
            format!(
                "install the provider: copy {} to {}",
                binary.display(),
                temporary.display()
            )
        })?;
        set_executable(&temporary)?;
        std::fs::rename(&temporary, dir.join(&name))
            .with_context(|| format!("install the provider into {}", dir.display()))?;
        dirs.push(dir);
    }
    let first = dirs.first().context("no registry to install for")?;
    Ok(Installed {
        version: version.to_owned(),
        platform: platform.to_owned(),
        h1: h1(&package_files(first)?)?,
        dirs,
    })
}

#[cfg(unix)]
fn set_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("make {} executable", path.display()))
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// The file where `terraform init` records the providers it selected and their hashes.
pub const LOCK_FILE: &str = ".terraform.lock.hcl";

/// Removes from the lock file in `config_dir` each `batchai/batchai` entry of `version` that
/// records none of `installed`'s hashes, so that the next `init` records the installed build
/// instead of failing. Terraform refuses a package whose hash its lock file does not list,
/// `-upgrade` included, and a new build of the same version is such a package. Returns
/// whether it removed anything.
pub fn forget_other_builds(config_dir: &Path, installed: &Installed) -> anyhow::Result<bool> {
    let path = config_dir.join(LOCK_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(false);
    };
    let (kept, removed) = without_other_builds(&text, &installed.version, &installed.h1);
    if removed {
        std::fs::write(&path, kept).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(removed)
}

/// The lock file `text` without the `batchai/batchai` blocks of `version` that do not list
/// `h1`, and whether there were any. The blocks are as Terraform writes them: from a
/// `provider "<host>/batchai/batchai" {` line to the next line that is just `}`.
fn without_other_builds(text: &str, version: &str, h1: &str) -> (String, bool) {
    let mut out = String::new();
    let mut removed = false;
    let mut lines = text.split_inclusive('\n');
    while let Some(line) = lines.next() {
        let ours = REGISTRIES
            .iter()
            .any(|host| line.trim_end() == format!("provider \"{host}/{NAMESPACE}/{TYPE}\" {{"));
        if !ours {
            out.push_str(line);
            continue;
        }
        let mut block = line.to_owned();
        for rest in lines.by_ref() {
            block.push_str(rest);
            if rest.trim_end() == "}" {
                break;
            }
        }
        let same_version = block.contains(&format!("version = \"{version}\""));
        if same_version && !block.contains(&format!("\"{h1}\"")) {
            removed = true;
            // And the blank line that separated it from the next block.
            if out.ends_with("\n\n") {
                out.pop();
            }
        } else {
            out.push_str(&block);
        }
    }
    (out, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        list.iter()
            .map(|(name, data)| ((*name).to_owned(), data.as_bytes().to_vec()))
            .collect()
    }

    /// The expected values are what Terraform 1.15.5 itself wrote into `.terraform.lock.hcl`
    /// after `terraform init` installed these packages from a filesystem mirror: the first
    /// unpacked, the second as a zip (with a second file, to show the order is by name).
    #[test]
    fn h1_is_the_hash_terraform_records() {
        let script = "#!/bin/sh\necho two\n";
        let cases = [
            (
                files(&[("terraform-provider-batchai_v0.1.0", script)]),
                "h1:3Qj68w6fGTsq+vrDAYwryFQ2yr/cQP7P/ff9usOhGUc=",
            ),
            (
                files(&[
                    ("terraform-provider-batchai_v0.1.0", script),
                    ("README.md", "read me\n"),
                ]),
                "h1:J5BMf5Jr5+a6EOi+0X4FhAwikq6L6pUMHQ4PT1LY4Cs=",
            ),
        ];
        for (package, expected) in cases {
            assert_eq!(h1(&package).ok().as_deref(), Some(expected), "{package:?}");
        }
        assert!(h1(&files(&[("a\nb", "")])).is_err());
    }

    #[test]
    fn a_zip_hashes_as_its_contents_and_keeps_the_executable_bit() -> anyhow::Result<()> {
        let data = b"#!/bin/sh\necho two\n";
        let zip = zip_binary("terraform-provider-batchai_v0.1.0", data)?;
        assert_eq!(
            h1(&zip_entries(&zip)?)?,
            "h1:3Qj68w6fGTsq+vrDAYwryFQ2yr/cQP7P/ff9usOhGUc="
        );
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&zip))?;
        assert_eq!(archive.len(), 1);
        assert_eq!(
            archive.by_index(0)?.unix_mode().map(|m| m & 0o777),
            Some(0o755)
        );
        // The same binary makes the same archive, so its zh: hash is stable.
        assert_eq!(zip, zip_binary("terraform-provider-batchai_v0.1.0", data)?);
        assert_eq!(zh(&zip), format!("zh:{}", hex(&sha256(&zip))));
        assert_eq!(zh(b"").len(), 3 + 64);
        Ok(())
    }

    #[test]
    fn install_lays_out_the_unpacked_mirror_for_both_registries() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let binary = tmp.path().join("built");
        std::fs::write(&binary, "#!/bin/sh\necho two\n")?;
        let plugins = plugins_dir(&tmp.path().join("home"));
        // Twice: a second install replaces the first.
        install(&binary, &plugins, "0.1.0", "linux_amd64")?;
        let installed = install(&binary, &plugins, "0.1.0", "linux_amd64")?;
        assert_eq!(
            installed.h1,
            "h1:3Qj68w6fGTsq+vrDAYwryFQ2yr/cQP7P/ff9usOhGUc="
        );
        for host in REGISTRIES {
            let dir = plugins.join(format!("{host}/batchai/batchai/0.1.0/linux_amd64"));
            let names: Vec<String> = std::fs::read_dir(&dir)?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Result<_, _>>()?;
            assert_eq!(
                names,
                ["terraform-provider-batchai_v0.1.0"],
                "{}",
                dir.display()
            );
            assert!(installed.dirs.contains(&dir));
        }
        Ok(())
    }

    #[test]
    fn only_other_builds_of_the_same_version_leave_the_lock_file() {
        let lock = "# This file is maintained automatically by \"terraform init\".\n\nprovider \"registry.terraform.io/batchai/batchai\" {\n  version = \"0.1.0\"\n  hashes = [\n    \"h1:old=\",\n  ]\n}\n\nprovider \"registry.terraform.io/hashicorp/null\" {\n  version = \"3.2.0\"\n  hashes = [\n    \"h1:null=\",\n  ]\n}\n";
        let (kept, removed) = without_other_builds(lock, "0.1.0", "h1:new=");
        assert!(removed);
        assert!(!kept.contains("batchai"), "{kept}");
        assert!(
            kept.contains("hashicorp/null") && kept.contains("h1:null="),
            "{kept}"
        );
        // The build it records, or another version (which init's own selection handles).
        for (version, hash) in [("0.1.0", "h1:old="), ("0.2.0", "h1:new=")] {
            let (kept, removed) = without_other_builds(lock, version, hash);
            assert!(!removed && kept == lock, "{version} {hash}");
        }
        let tofu = lock.replace(
            "registry.terraform.io/batchai",
            "registry.opentofu.org/batchai",
        );
        assert!(without_other_builds(&tofu, "0.1.0", "h1:new=").1);
    }

    #[test]
    fn the_manifest_names_protocol_6() {
        assert_eq!(
            manifest(),
            r#"{"version":1,"metadata":{"protocol_versions":["6.0"]}}"#
        );
    }

    #[test]
    fn platforms_are_named_as_terraform_names_them() {
        assert!(TARGETS.iter().any(|t| t.platform == "linux_amd64"));
        assert!(
            TARGETS
                .iter()
                .all(|t| t.platform.split('_').count() == 2 && !t.triple.is_empty())
        );
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert_eq!(current_platform(), "linux_amd64");
        }
        assert_eq!(
            zip_name("0.1.0", "linux_amd64"),
            "terraform-provider-batchai_0.1.0_linux_amd64.zip"
        );
    }
}
