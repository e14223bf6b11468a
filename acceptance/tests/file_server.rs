//! End to end: real Terraform CLIs drive `batchai_file_server` and its data source through the
//! whole lifecycle on the local platform.
use std::path::Path;

use anyhow::Context as _;
use batchai_acceptance::{Workspace, for_every_cli, planned_actions, resource_values};
use serde_json::Value as Json;

fn file_server(name: &str, vm_size: &str) -> String {
    format!(
        r#"resource "batchai_file_server" "data" {{
  name    = "{name}"
  vm_size = "{vm_size}"

  data_disks {{
    disk_count           = 2
    disk_size_gb         = 10
    storage_account_type = "Standard_LRS"
  }}

  timeouts {{
    create = "2m"
  }}
}}
"#
    )
}

fn str_at<'a>(values: &'a Json, pointer: &str) -> &'a str {
    values
        .pointer(pointer)
        .and_then(Json::as_str)
        .unwrap_or_default()
}

#[test]
fn lifecycle_import_drift_and_destroy() {
    for_every_cli(|cli| {
        let ws = Workspace::new(cli)?;
        ws.write_config(&file_server("data", "Standard_D2s_v3"))?;
        ws.init()?;
        ws.ok(&["validate", "-no-color"])?;

        let plan = ws.plan_json()?;
        anyhow::ensure!(
            planned_actions(&plan, "batchai_file_server.data") == ["create"],
            "first plan should create: {plan}"
        );
        ws.apply()?;

        let state = ws.state_json()?;
        let values = resource_values(&state, "batchai_file_server.data").context("no state")?;
        anyhow::ensure!(
            str_at(values, "/id") == "local/fileServers/data",
            "id: {values}"
        );
        anyhow::ensure!(
            values.get("capacity_gb") == Some(&Json::from(20)),
            "capacity: {values}"
        );
        anyhow::ensure!(
            str_at(values, "/data_disks/0/caching_type") == "none"
                || str_at(values, "/data_disks/caching_type") == "none",
            "caching_type default: {values}"
        );
        anyhow::ensure!(
            str_at(values, "/provisioning_state") == "succeeded",
            "state: {values}"
        );
        let export = str_at(values, "/mount_settings/mount_point").to_owned();
        anyhow::ensure!(Path::new(&export).is_dir(), "export {export} missing");
        anyhow::ensure!(
            export.starts_with(&*ws.root.to_string_lossy()),
            "export outside root"
        );

        anyhow::ensure!(ws.plan_exit_code()? == 0, "second plan is not empty");

        // Import the same object into a second, empty state.
        let other = ws.sibling()?;
        other.write_config(
            &file_server("data", "Standard_D2s_v3")
                .replace("  timeouts {\n    create = \"2m\"\n  }\n", ""),
        )?;
        other.init()?;
        other.ok(&[
            "import",
            "-no-color",
            "batchai_file_server.data",
            "local/fileServers/data",
        ])?;
        let imported = other.state_json()?;
        let values =
            resource_values(&imported, "batchai_file_server.data").context("not imported")?;
        anyhow::ensure!(
            str_at(values, "/mount_settings/mount_point") == export,
            "import: {values}"
        );
        anyhow::ensure!(
            other.plan_exit_code()? == 0,
            "plan after import is not empty"
        );
        let missing = other.run(&[
            "import",
            "-no-color",
            "batchai_file_server.other",
            "local/fileServers/nope",
        ])?;
        anyhow::ensure!(
            !missing.status.success(),
            "importing a missing file server succeeded"
        );

        // A change of a force-new argument replaces, and the plan says why.
        ws.write_config(&file_server("data", "Standard_D4s_v3"))?;
        let plan = ws.plan_json()?;
        anyhow::ensure!(
            planned_actions(&plan, "batchai_file_server.data") == ["delete", "create"],
            "vm_size change should replace: {plan}"
        );
        if cli.at_least(1, 2) {
            let text = plan.to_string();
            anyhow::ensure!(
                text.contains("\"replace_paths\":[[\"vm_size\"]]"),
                "replace_paths: {text}"
            );
        }
        ws.write_config(&file_server("data", "Standard_D2s_v3"))?;

        // Drift: the export vanished outside Terraform, so the next plan re-creates it.
        std::fs::remove_dir_all(&export)?;
        let plan = ws.plan_json()?;
        anyhow::ensure!(
            planned_actions(&plan, "batchai_file_server.data") == ["create"],
            "drift should plan a create: {plan}"
        );
        ws.apply()?;
        anyhow::ensure!(Path::new(&export).is_dir(), "export not re-created");

        ws.ok(&["destroy", "-auto-approve", "-no-color"])?;
        anyhow::ensure!(!Path::new(&export).exists(), "export left behind");
        let leftovers: Vec<_> = std::fs::read_dir(ws.root.join("fileservers"))?
            .flatten()
            .collect();
        anyhow::ensure!(leftovers.is_empty(), "left behind: {leftovers:?}");
        let state = ws.state_json()?;
        anyhow::ensure!(
            resource_values(&state, "batchai_file_server.data").is_none(),
            "still in state"
        );
        Ok(())
    });
}

#[test]
fn configuration_errors_point_at_the_attribute() {
    for_every_cli(|cli| {
        let ws = Workspace::new(cli)?;
        ws.write_config(&file_server("bad name!", "Standard_D2s_v3"))?;
        ws.init()?;
        let out = ws.run(&["validate", "-json", "-no-color"])?;
        anyhow::ensure!(!out.status.success(), "validate accepted a bad name");
        let report: Json = serde_json::from_slice(&out.stdout)?;
        let diag = report
            .get("diagnostics")
            .and_then(Json::as_array)
            .and_then(|d| d.first())
            .context("no diagnostic")?;
        anyhow::ensure!(
            str_at(diag, "/summary") == "invalid file server name",
            "{diag}"
        );
        anyhow::ensure!(
            str_at(diag, "/detail").contains("letters, digits"),
            "{diag}"
        );
        // Terraform resolved our attribute path to the `name` line of main.tf.
        anyhow::ensure!(str_at(diag, "/range/filename") == "main.tf", "{diag}");
        anyhow::ensure!(str_at(diag, "/snippet/code").contains("name"), "{diag}");

        ws.write_config(
            &file_server("data", "Standard_D2s_v3").replace("create = \"2m\"", "create = \"soon\""),
        )?;
        let out = ws.run(&["validate", "-json", "-no-color"])?;
        let report: Json = serde_json::from_slice(&out.stdout)?;
        let text = report.to_string();
        anyhow::ensure!(
            text.contains("invalid timeout") && text.contains("create"),
            "{text}"
        );
        Ok(())
    });
}

#[test]
fn data_source_reads_an_existing_file_server() {
    for_every_cli(|cli| {
        let ws = Workspace::new(cli)?;
        ws.write_config(&format!(
            "{}\ndata \"batchai_file_server\" \"same\" {{\n  name = batchai_file_server.data.name\n}}\n\noutput \"export\" {{\n  value = data.batchai_file_server.same.mount_settings.mount_point\n}}\n",
            file_server("shared", "Standard_D2s_v3")
        ))?;
        ws.init()?;
        ws.apply()?;
        let out: Json = serde_json::from_str(&ws.ok(&["output", "-json"])?)?;
        let export = str_at(&out, "/export/value");
        anyhow::ensure!(export.ends_with("fileservers/shared/export"), "{out}");
        anyhow::ensure!(Path::new(export).is_dir(), "{export}");
        ws.ok(&["destroy", "-auto-approve", "-no-color"])?;
        Ok(())
    });
}

#[test]
fn served_schema_matches_the_committed_schema() {
    let committed: Json = serde_json::from_str(
        &std::fs::read_to_string(batchai_acceptance::repo().join("schemas/batchai.json"))
            .unwrap_or_default(),
    )
    .unwrap_or(Json::Null);
    let want = committed
        .pointer("/provider_schemas/registry.terraform.io~1batchai~1batchai")
        .cloned();
    // Older CLIs print fewer schema fields, so compare with the newest one.
    let cli = batchai_acceptance::newest_cli();
    let ws = Workspace::new(&cli).unwrap_or_else(|e| panic!("{e:#}"));
    ws.write_config("").unwrap_or_else(|e| panic!("{e:#}"));
    ws.init().unwrap_or_else(|e| panic!("{e:#}"));
    let text = ws
        .ok(&["providers", "schema", "-json"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    let served: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
    // Each CLI names the provider after its own default registry.
    let registry = if cli.tofu {
        "registry.opentofu.org"
    } else {
        "registry.terraform.io"
    };
    let got = served
        .pointer(&format!("/provider_schemas/{registry}~1batchai~1batchai"))
        .cloned();
    assert!(
        want.is_some(),
        "schemas/batchai.json has no provider schema"
    );
    assert_eq!(
        got, want,
        "{cli} serves a schema that differs from schemas/batchai.json"
    );
}

#[test]
fn a_file_server_another_configuration_mounts_is_not_destroyed() -> anyhow::Result<()> {
    let owner = Workspace::new(&batchai_acceptance::newest_cli())?;
    owner.write_config(&file_server("shared", "Standard_D2s_v3"))?;
    owner.init()?;
    owner.apply()?;
    // Another configuration, sharing the platform root, mounts the share by its ID.
    let user = owner.sibling()?;
    user.write_config(
        r#"resource "batchai_cluster" "reader" {
  name    = "reader"
  vm_size = "Standard_D2s_v3"
  scale_settings {
    manual {
      target_node_count = 1
    }
  }
  mount_volumes {
    file_server {
      file_server_id      = "local/fileServers/shared"
      relative_mount_path = "data"
    }
  }
}
"#,
    )?;
    user.init()?;
    user.apply()?;
    let export = owner.root.join("fileservers/shared/export");
    std::fs::write(export.join("dataset.txt"), "precious")?;

    let out = owner.run(&["destroy", "-auto-approve", "-no-color"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(!out.status.success(), "destroy removed a mounted share");
    anyhow::ensure!(stderr.contains("file server in use"), "{stderr}");
    anyhow::ensure!(
        stderr.contains("cluster reader") && stderr.contains("Destroy those clusters first"),
        "{stderr}"
    );
    anyhow::ensure!(
        export.join("dataset.txt").is_file(),
        "the share's data is gone"
    );
    // The cluster's own destroy works, and then so does the file server's.
    user.ok(&["destroy", "-auto-approve", "-no-color"])?;
    owner.ok(&["destroy", "-auto-approve", "-no-color"])?;
    anyhow::ensure!(!export.exists(), "the share outlived its destroy");
    Ok(())
}
