//! End to end: state the provider wrote before its resources were declared models (this
//! repository at `ddec976`, applied with Terraform 1.11.4; `fixtures/state-before-declared-models`)
//! plans no change with this provider. Block types added since (`git_repository` in
//! `mount_volumes`) and attributes whose defaults are new (`termination_grace_period` in a
//! job's `constraints`) must neither fail to decode nor replace what exists.
use anyhow::ensure;
use batchai_acceptance::{Workspace, fixture, newest_cli};

/// The configuration the fixture's state was applied from.
const CONFIG: &str = r#"resource "batchai_cluster" "c" {
  name    = "c"
  vm_size = "Standard_D2s_v3"
  scale_settings {
    manual {
      target_node_count = 1
    }
  }
  mount_volumes {
    host_directory {
      path                = "/tmp"
      relative_mount_path = "host"
    }
  }
}

resource "batchai_job" "j" {
  name                = "j"
  cluster_id          = batchai_cluster.c.id
  wait_for_completion = false
  mount_volumes {
    host_directory {
      path                = "/tmp"
      relative_mount_path = "tmp"
    }
  }
  constraints {
    max_wall_clock_time = "1h"
  }
  custom_toolkit {
    command_line = "true"
  }
}
"#;

#[test]
fn state_from_the_previous_provider_plans_no_change() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    ws.write_config(CONFIG)?;
    // Before the state arrives: Terraform 1.15's init asks the registry about the providers a
    // state names, even when a development override supplies the provider.
    ws.init()?;
    std::fs::copy(
        fixture("state-before-declared-models/terraform.tfstate"),
        ws.path().join("terraform.tfstate"),
    )?;
    // Without a refresh nothing on the platform is read: only the state upgrade and the plan
    // of the stored objects against their configuration are under test.
    let out = ws.run(&["plan", "-refresh=false", "-detailed-exitcode", "-no-color"])?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        out.status.code() == Some(0),
        "the plan must be empty (exit 0), got {:?}:\n{text}",
        out.status.code()
    );
    Ok(())
}
