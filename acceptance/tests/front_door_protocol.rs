//! The provider binary as a user and Terraform meet it: `--help`, flags it does not know, a
//! start that fails, Terraform dying under it, what `TF_LOG=trace` shows, and numbers that do
//! not fit an integer attribute.
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::ensure;
use batchai_acceptance::{
    Workspace, alive, cluster_c, empty_plan_log, for_every_cli, job_on_c, newest_cli,
    provider_binary,
};

const COOKIE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

/// Runs the provider with `args` outside Terraform and returns what it printed. A provider that
/// serves instead of answering is stopped after a generous bound, so the test fails instead of
/// hanging.
fn run_by_hand(args: &[&str]) -> Output {
    let mut child = Command::new(provider_binary())
        .args(args)
        .env_remove("TF_PLUGIN_MAGIC_COOKIE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn help_prints_usage_on_stdout_and_exits_0() {
    for flag in ["--help", "-h"] {
        let out = run_by_hand(&[flag]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{flag}: {stdout}");
        assert!(
            stdout.starts_with("usage: terraform-provider-batchai"),
            "{flag}: {stdout}"
        );
        assert!(stdout.contains("--debug"), "{flag}: {stdout}");
        assert!(
            out.stderr.is_empty(),
            "{flag}: {:?}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn unknown_flags_print_usage_on_stderr_and_exit_2() {
    for args in [&["--bogus"][..], &["-x"], &["--debug", "extra"]] {
        let out = run_by_hand(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: stdout must stay empty");
        assert!(
            stderr.contains("usage: terraform-provider-batchai"),
            "{args:?}: {stderr}"
        );
    }
}

/// `tfplug-*` socket directories under `dir`.
fn socket_dirs(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("tfplug-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_failed_start_leaves_no_socket_directory() {
    let base = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let not_a_dir = base.path().join("file");
    std::fs::write(&not_a_dir, "").unwrap_or_else(|e| panic!("{e}"));
    // (case, cookie, protocols, client certificate, socket base directory)
    let cases = [
        ("no magic cookie", None, "6", None, base.path()),
        (
            "unsupported protocol",
            Some(COOKIE),
            "4,5",
            None,
            base.path(),
        ),
        (
            "unreadable client certificate",
            Some(COOKIE),
            "5,6",
            Some("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n"),
            base.path(),
        ),
        (
            "unusable socket directory",
            Some(COOKIE),
            "6",
            None,
            not_a_dir.as_path(),
        ),
    ];
    for (case, cookie, protocols, cert, dir) in cases {
        let mut cmd = Command::new(provider_binary());
        cmd.env("PLUGIN_PROTOCOL_VERSIONS", protocols)
            .env("PLUGIN_UNIX_SOCKET_DIR", dir)
            .env_remove("TF_PLUGIN_MAGIC_COOKIE")
            .env_remove("PLUGIN_CLIENT_CERT")
            .stdin(Stdio::null());
        if let Some(cookie) = cookie {
            cmd.env("TF_PLUGIN_MAGIC_COOKIE", cookie);
        }
        if let Some(cert) = cert {
            cmd.env("PLUGIN_CLIENT_CERT", cert);
        }
        let out = cmd.output().unwrap_or_else(|e| panic!("{e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{case}: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "{case}: no handshake on a failed start"
        );
        assert!(!stderr.trim().is_empty(), "{case}: says why");
        assert_eq!(
            socket_dirs(base.path()),
            Vec::<String>::new(),
            "{case}: left behind"
        );
    }
}

#[test]
fn the_provider_exits_when_terraform_dies() {
    let sockets = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // An intermediate parent in Terraform's place: it starts the provider, reports its PID and
    // waits; SIGKILL gives it no chance to stop the provider, just like `kill -9 terraform`.
    let mut parent = Command::new("sh")
        .args(["-c", "\"$0\" & echo \"pid $!\"; wait"])
        .arg(provider_binary())
        .env("TF_PLUGIN_MAGIC_COOKIE", COOKIE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "5,6")
        .env("PLUGIN_UNIX_SOCKET_DIR", sockets.path())
        .env_remove("PLUGIN_CLIENT_CERT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = parent.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut lines = BufReader::new(stdout).lines();
    let (mut pid, mut serving) = (None, false);
    while pid.is_none() || !serving {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("the provider did not start"))
            .unwrap_or_else(|e| panic!("{e}"));
        if let Some(p) = line.strip_prefix("pid ") {
            pid = p.trim().parse::<u32>().ok();
        } else if line.starts_with("1|6|unix|") {
            serving = true;
        }
    }
    let pid = pid.unwrap_or_else(|| panic!("no provider pid"));
    assert!(alive(pid));
    let dirs = socket_dirs(sockets.path());
    assert_eq!(dirs.len(), 1);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(sockets.path().join(&dirs[0]))
            .unwrap_or_else(|e| panic!("{e}"))
            .permissions(),
    );
    assert_eq!(
        mode & 0o777,
        0o700,
        "the socket directory is private to its user"
    );

    parent.kill().unwrap_or_else(|e| panic!("{e}"));
    let _ = parent.wait();
    // A generous bound: the provider polls for its parent about twice a second.
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let survived = alive(pid);
    if survived {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    assert!(!survived, "the provider outlived its parent");
    assert_eq!(
        socket_dirs(sockets.path()),
        Vec::<String>::new(),
        "socket directory left behind"
    );
}

/// Provider log lines in a Terraform log, by the `tracing` target they came from.
fn provider_lines_from<'a>(log: &'a str, crates: &[&str]) -> Vec<&'a str> {
    log.lines()
        .filter(|l| {
            crates.iter().any(|c| {
                l.contains(&format!("{c}::"))
                    || l.contains(&format!("@module=provider.{c}"))
                    || l.contains(&format!("provider.{c}:"))
            })
        })
        .collect()
}

#[test]
fn trace_logs_hold_the_providers_events_and_library_internals_only_on_request() {
    let libraries = ["h2", "hyper", "hyper_util", "tonic", "rustls", "tower"];
    let run = |opt_in: bool| {
        let libraries_too = [("BATCHAI_LOG_LIBRARIES", "1")];
        let env = [
            &[("TF_LOG_PROVIDER", "trace")][..],
            if opt_in { &libraries_too } else { &[] },
        ]
        .concat();
        empty_plan_log(&env).unwrap_or_else(|e| panic!("{e:#}"))
    };
    let log = run(false);
    assert!(
        log.contains("serving tfplugin6"),
        "the provider's own events are logged:\n{log}"
    );
    let noise = provider_lines_from(&log, &libraries);
    assert!(
        noise.is_empty(),
        "{} library lines at trace without the opt-in, e.g.:\n{}",
        noise.len(),
        noise.iter().take(5).copied().collect::<Vec<_>>().join("\n")
    );
    let opted_in = run(true);
    assert!(
        !provider_lines_from(&opted_in, &libraries).is_empty(),
        "BATCHAI_LOG_LIBRARIES=1 shows library internals (and this test can see them)"
    );
}

#[test]
fn a_fractional_node_count_is_a_plan_diagnostic_at_the_attribute() {
    for_every_cli(|cli| {
        let ws = Workspace::new(cli)?;
        ws.write_config(
            r#"resource "batchai_cluster" "c" {
  name    = "frac"
  vm_size = "Standard_D2s_v3"
  scale_settings {
    manual {
      target_node_count = 1.5
    }
  }
}

# Not a reference to the cluster above: Terraform skips validating what depends on a resource
# that failed validation.
resource "batchai_job" "j" {
  name       = "frac"
  cluster_id = "local/clusters/other"
  node_count = 2.5
  custom_toolkit {
    command_line = "true"
  }
}
"#,
        )?;
        ws.init()?;
        let out = ws.run(&["plan", "-input=false", "-no-color"])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let text = format!("{}{stderr}", String::from_utf8_lossy(&out.stdout));
        ensure!(!out.status.success(), "plan must fail:\n{text}");
        ensure!(!text.contains("internal-error"), "{text}");
        for want in [
            "scale_settings.manual.target_node_count must be a whole number, got 1.5",
            "node_count must be a whole number, got 2.5",
        ] {
            ensure!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        Ok(())
    });
}

#[test]
fn a_plan_time_warning_reaches_the_user() {
    let cli = newest_cli();
    let ws = Workspace::new(&cli).unwrap_or_else(|e| panic!("{e:#}"));
    let cluster = cluster_c(1, "");
    ws.write_config(&cluster)
        .unwrap_or_else(|e| panic!("{e:#}"));
    ws.init().unwrap_or_else(|e| panic!("{e:#}"));
    ws.apply().unwrap_or_else(|e| panic!("{e:#}"));
    // The job needs more nodes than the cluster has: only a warning at plan, since the cluster
    // could be scaled up earlier in the same apply.
    let job = job_on_c(
        "warned",
        "  node_count = 2\n  custom_toolkit {\n    command_line = \"true\"\n  }",
    );
    ws.write_config(&(cluster + &job))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let out = ws
        .run(&["plan", "-input=false", "-no-color"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ws.ok(&["destroy", "-auto-approve", "-no-color"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(out.status.success(), "a warning fails nothing:\n{text}");
    assert!(
        text.contains("Warning:") && text.contains("needs 2 nodes at once"),
        "the plan warning is shown:\n{text}"
    );
}
