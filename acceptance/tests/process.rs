//! The provider as a process: what happens without Terraform, the handshake line, signals, and
//! logs reaching Terraform's own log.
use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use batchai_acceptance::provider_binary;

const COOKIE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

#[test]
fn run_by_hand_it_explains_itself_and_exits_1() {
    let out = Command::new(provider_binary())
        .env_remove("TF_PLUGIN_MAGIC_COOKIE")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "stdout must stay empty: {:?}",
        out.stdout
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("plugin for Terraform"), "{stderr}");
}

/// Running, not merely a zombie waiting for this test to reap it.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or_default()
            .trim_start()
            .starts_with('Z')
    })
}

#[test]
fn handshake_then_sigint_is_ignored_and_sigterm_ends_it() {
    let mut child = Command::new(provider_binary())
        .env("TF_PLUGIN_MAGIC_COOKIE", COOKIE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "5,6")
        .env_remove("PLUGIN_CLIENT_CERT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut stdout = BufReader::new(child.stdout.take().unwrap_or_else(|| panic!("no stdout")));
    let mut line = String::new();
    stdout
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("{e}"));
    let fields: Vec<&str> = line.trim_end().split('|').collect();
    assert_eq!(fields.len(), 6, "{line:?}");
    assert_eq!(&fields[..3], ["1", "6", "unix"]);
    assert_eq!(fields[4], "grpc");
    assert!(
        std::path::Path::new(fields[3]).exists(),
        "socket {}",
        fields[3]
    );

    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        alive(child.id()),
        "SIGINT must not end the provider; Terraform sends StopProvider"
    );

    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.is_some(), "SIGTERM did not end the provider");
    let mut rest = String::new();
    let _ = stdout.read_to_string(&mut rest);
    assert!(
        rest.is_empty(),
        "nothing but the handshake goes to stdout: {rest:?}"
    );
    assert!(
        !std::path::Path::new(fields[3]).exists(),
        "socket left behind"
    );
}

#[test]
fn provider_logs_reach_terraforms_log_over_automtls() {
    let log = batchai_acceptance::empty_plan_log(&[("TF_LOG_PROVIDER", "debug")])
        .unwrap_or_else(|e| panic!("{e:#}"));
    // go-plugin parsed our hclog JSON line: message and fields arrive as its own log entry,
    // and `tls=true` shows Terraform connected with AutoMTLS.
    let line = log
        .lines()
        .find(|l| l.contains("serving tfplugin6"))
        .unwrap_or_else(|| panic!("no provider log line in Terraform's log:\n{log}"));
    assert!(
        line.contains("provider.terraform-provider-batchai"),
        "{line}"
    );
    assert!(line.contains("tls=true"), "{line}");
    assert!(
        !line.contains("@message"),
        "the JSON was not parsed: {line}"
    );
}
