//! End to end: `terraform-provider-batchai --debug` serves a developer-started process that
//! Terraform attaches to through `TF_REATTACH_PROVIDERS`, across several commands.
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use batchai_acceptance::{Workspace, newest_cli, provider_binary, resource_values};

#[test]
fn terraform_attaches_to_a_debug_server() {
    let mut child = Command::new(provider_binary())
        .arg("--debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start the provider in debug mode: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut reattach = None;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(rest) = line.trim().strip_prefix("TF_REATTACH_PROVIDERS='") {
            reattach = Some(rest.trim_end_matches('\'').to_owned());
            break;
        }
    }
    let reattach =
        reattach.unwrap_or_else(|| panic!("debug mode printed no TF_REATTACH_PROVIDERS"));
    let parsed: serde_json::Value = serde_json::from_str(&reattach).unwrap_or_default();
    assert_eq!(
        parsed.pointer("/registry.terraform.io~1batchai~1batchai/Test"),
        Some(&serde_json::Value::Bool(true)),
        "{reattach}"
    );

    let result = (|| -> anyhow::Result<()> {
        let mut ws = Workspace::new(&newest_cli())?;
        ws.env("TF_REATTACH_PROVIDERS", &reattach);
        ws.write_config(
            "resource \"batchai_file_server\" \"d\" {\n  name    = \"debug\"\n  vm_size = \"Standard_D2s_v3\"\n  data_disks {\n    disk_count           = 1\n    disk_size_gb         = 1\n    storage_account_type = \"Standard_LRS\"\n  }\n}\n",
        )?;
        // Each command configures the same long-lived process again.
        anyhow::ensure!(ws.plan_exit_code()? == 2, "expected changes");
        ws.apply()?;
        let state = ws.state_json()?;
        anyhow::ensure!(
            resource_values(&state, "batchai_file_server.d").is_some(),
            "{state}"
        );
        anyhow::ensure!(ws.plan_exit_code()? == 0, "second plan not empty");
        ws.ok(&["destroy", "-auto-approve", "-no-color"])?;
        Ok(())
    })();

    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait();
    result.unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        status.is_ok_and(|s| s.success()),
        "debug server did not exit cleanly on SIGINT"
    );
}
