//! End to end: the provider installed as `cargo xtask install` installs it (the same code, into
//! a temporary home's `~/.terraform.d/plugins`), then a plain `init`, `apply` and `destroy` on
//! every CLI with a clean CLI setup: no CLI configuration file, no plugin cache, no
//! `dev_overrides`. Also what a user meets after installing a new build of the same version,
//! and the way out the README documents, and the release folder served as a network mirror.
use anyhow::{Context as _, ensure};
use batchai_acceptance::{Workspace, for_every_cli, provider_binary, resource_values, walk};

const CONFIG: &str = r#"resource "batchai_file_server" "fs" {
  name    = "fs"
  vm_size = "Standard_D2s_v3"
  data_disks {
    disk_count           = 1
    disk_size_gb         = 32
    storage_account_type = "Standard_LRS"
  }
}
"#;

/// The only warning a first `init` from a local mirror may print: Terraform (1.4 and later)
/// and OpenTofu say it of every provider that came from a mirror rather than a registry,
/// since they could hash only this platform's package for the lock file.
const INCOMPLETE_LOCK: &str = "Incomplete lock file information for providers";

/// Stdout and stderr of a command that must succeed.
fn succeeds(ws: &Workspace, args: &[&str]) -> anyhow::Result<String> {
    let out = ws.run(args)?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "{} {args:?} failed:\n{text}", ws.cli);
    ensure!(
        !text.contains("overrides"),
        "{} {args:?} mentions development overrides:\n{text}",
        ws.cli
    );
    Ok(text)
}

/// The warnings' titles in a CLI's plain output.
fn warnings(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            l.trim_start_matches(['│', '╷', ' '])
                .strip_prefix("Warning: ")
        })
        .map(str::to_owned)
        .collect()
}

fn lock_file(ws: &Workspace) -> anyhow::Result<String> {
    std::fs::read_to_string(ws.path().join(".terraform.lock.hcl")).context("no lock file")
}

#[test]
fn init_installs_from_the_local_mirror_and_apply_runs_it() {
    for_every_cli(|cli| {
        let ws = Workspace::installed(cli)?;
        let home = ws
            .home
            .clone()
            .context("an installed workspace has a home")?;
        let version = xtask::release::version(&batchai_acceptance::repo())?;
        let host = if cli.tofu {
            "registry.opentofu.org"
        } else {
            "registry.terraform.io"
        };
        let package = xtask::release::plugins_dir(&home).join(format!(
            "{host}/batchai/batchai/{version}/{}",
            xtask::release::current_platform()
        ));
        let h1 = xtask::release::h1(&xtask::release::package_files(&package)?)?;
        ws.write_config(CONFIG)?;

        let init = succeeds(&ws, &["init", "-input=false", "-no-color"])?;
        ensure!(
            init.contains(&format!("Installed batchai/batchai v{version}")),
            "{init}"
        );
        let expected: &[&str] = if cli.tofu || cli.at_least(1, 4) {
            &[INCOMPLETE_LOCK]
        } else {
            &[]
        };
        ensure!(warnings(&init) == expected, "init warned:\n{init}");
        // The lock file names the provider under this CLI's default registry with the hash of
        // the installed package, as our own h1 computes it.
        let lock = lock_file(&ws)?;
        ensure!(
            lock.contains(&format!("provider \"{host}/batchai/batchai\""))
                && lock.contains(&format!("version = \"{version}\""))
                && lock.contains(&format!("\"{h1}\"")),
            "lock file without {host}/batchai/batchai {version} {h1}:\n{lock}"
        );

        let apply = succeeds(
            &ws,
            &["apply", "-auto-approve", "-input=false", "-no-color"],
        )?;
        ensure!(warnings(&apply).is_empty(), "apply warned:\n{apply}");
        let state = ws.state_json()?;
        let fs = resource_values(&state, "batchai_file_server.fs").context("no file server")?;
        ensure!(fs["name"] == "fs", "{fs}");
        ensure!(
            ws.root.join("fileservers/fs/export").is_dir(),
            "no export under {}: {:?}",
            ws.root.display(),
            walk(&ws.root)
        );
        let destroy = succeeds(
            &ws,
            &["destroy", "-auto-approve", "-input=false", "-no-color"],
        )?;
        ensure!(warnings(&destroy).is_empty(), "destroy warned:\n{destroy}");
        ensure!(!ws.root.join("fileservers/fs/export").exists());
        Ok(())
    });
}

/// A new build of the same version has another hash than the one the lock file recorded:
/// init refuses it, with or without `-upgrade`, naming the lock file; without that build's
/// entry (what the README says to remove, and what the examples' runner removes) init records
/// the new build and it runs.
#[test]
fn a_new_build_of_the_same_version_needs_its_old_lock_entry_removed() {
    for_every_cli(|cli| {
        let ws = Workspace::installed(cli)?;
        let home = ws
            .home
            .clone()
            .context("an installed workspace has a home")?;
        ws.write_config(CONFIG)?;
        succeeds(&ws, &["init", "-input=false", "-no-color"])?;

        // Another build: the same program with other bytes (trailing data an ELF loader ignores).
        let rebuilt = ws.path().join("rebuilt");
        let mut bytes = std::fs::read(provider_binary())?;
        bytes.extend_from_slice(b"another build");
        std::fs::write(&rebuilt, bytes)?;
        let installed = ws.install_into(&home, &rebuilt)?;

        for args in [
            &["init", "-input=false", "-no-color"][..],
            &["init", "-upgrade", "-input=false", "-no-color"],
        ] {
            let out = ws.run(args)?;
            let text = String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout);
            ensure!(
                !out.status.success(),
                "{args:?} took the new build:\n{text}"
            );
            // The CLIs wrap their messages; the README quotes this one.
            let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
            ensure!(
                words.contains(
                    "doesn't match any of the checksums previously recorded in the dependency lock file"
                ),
                "{args:?}: {text}"
            );
        }

        ensure!(xtask::release::forget_other_builds(ws.path(), &installed)?);
        succeeds(&ws, &["init", "-input=false", "-no-color"])?;
        let lock = lock_file(&ws)?;
        ensure!(lock.contains(&format!("\"{}\"", installed.h1)), "{lock}");
        // The new build serves the plan.
        ensure!(
            ws.plan_exit_code()? == 2,
            "the plan should create the file server"
        );
        Ok(())
    });
}

/// A static HTTPS file server for `dir` (Python's, with a certificate of our own), stopped when
/// dropped.
struct Mirror {
    child: std::process::Child,
    url: String,
    ca: std::path::PathBuf,
}

impl Mirror {
    fn serve(dir: &std::path::Path, scratch: &std::path::Path) -> anyhow::Result<Self> {
        use std::io::BufRead as _;
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
        let (cert, key) = (scratch.join("mirror.pem"), scratch.join("mirror.key"));
        std::fs::write(&cert, certified.cert.pem())?;
        std::fs::write(&key, certified.signing_key.serialize_pem())?;
        let script = r#"
import functools, http.server, ssl, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
tls.load_cert_chain(sys.argv[2], sys.argv[3])
server.socket = tls.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(dir)
            .arg(&cert)
            .arg(&key)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(scratch.join("mirror.log"))?)
            .spawn()
            .context("start python3 as the network mirror")?;
        let mut port = String::new();
        if let Some(out) = child.stdout.take() {
            std::io::BufReader::new(out).read_line(&mut port)?;
        }
        let port = port.trim().to_owned();
        if port.is_empty() {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "the mirror did not start: {}",
                std::fs::read_to_string(scratch.join("mirror.log")).unwrap_or_default()
            );
        }
        Ok(Self {
            child,
            url: format!("https://localhost:{port}/"),
            ca: cert,
        })
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The release folder, made by the release task's own packaging (here of the debug build, as
/// the static release build takes many minutes), served over HTTPS as a `network_mirror`:
/// every CLI installs the provider from it, checks the archive against the `h1:`/`zh:` hashes
/// its `<version>.json` lists ("verified checksum"), and applies with it.
#[test]
fn the_release_folder_serves_as_a_network_mirror() -> anyhow::Result<()> {
    use xtask::release;
    let scratch = tempfile::Builder::new().prefix("mirror").tempdir()?;
    let dist = scratch.path().join("dist");
    let version = release::version(&batchai_acceptance::repo())?;
    let target = *release::TARGETS
        .iter()
        .find(|t| t.platform == release::current_platform())
        .context("no release target for this platform")?;
    let packages = release::package(&dist, &version, &[(target, provider_binary())])?;
    let package = packages.first().context("no package")?;
    let sums = std::fs::read_to_string(
        dist.join(format!("terraform-provider-batchai_{version}_SHA256SUMS")),
    )?;
    ensure!(
        sums.contains(&format!(
            "{}  terraform-provider-batchai_{version}_{}.zip\n",
            package.zh.trim_start_matches("zh:"),
            target.platform
        )) && sums.contains(&format!(
            "  terraform-provider-batchai_{version}_manifest.json\n"
        )),
        "{sums}"
    );
    let mirror = Mirror::serve(&dist, scratch.path())?;
    for_every_cli(|cli| {
        let mut ws = Workspace::with_cli_config(
            cli,
            &format!(
                "provider_installation {{\n  network_mirror {{\n    url = \"{}\"\n  }}\n}}\n",
                mirror.url
            ),
        )?;
        ws.env("SSL_CERT_FILE", &mirror.ca.display().to_string());
        ws.write_config(CONFIG)?;
        let init = succeeds(&ws, &["init", "-input=false", "-no-color"])?;
        ensure!(
            init.contains(&format!(
                "Installed batchai/batchai v{version} (verified checksum)"
            )),
            "{init}"
        );
        let lock = lock_file(&ws)?;
        ensure!(lock.contains(&format!("\"{}\"", package.h1)), "{lock}");
        succeeds(
            &ws,
            &["apply", "-auto-approve", "-input=false", "-no-color"],
        )?;
        ensure!(ws.root.join("fileservers/fs/export").is_dir());
        succeeds(
            &ws,
            &["destroy", "-auto-approve", "-input=false", "-no-color"],
        )?;
        Ok(())
    });
    Ok(())
}
