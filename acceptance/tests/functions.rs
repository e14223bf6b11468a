//! End to end: the provider's functions (`provider::batchai::parse_id`, `vm_size`,
//! `job_output_path`) through real CLIs: values in outputs and in `console`, our error text for
//! a bad argument, a path that names where a real job wrote, and on CLIs without provider
//! functions (Terraform before 1.8, OpenTofu before 1.7) the CLI's own clear error, no crash.
use std::path::Path;

use anyhow::{Context as _, ensure};
use batchai_acceptance::{Cli, Workspace, cluster_c, for_every_cli, job_on_c};
use serde_json::{Value as Json, json};

/// Whether the CLI knows provider-defined functions at all.
fn has_functions(cli: &Cli) -> bool {
    if cli.tofu {
        cli.at_least(1, 7)
    } else {
        cli.at_least(1, 8)
    }
}

/// The CLI's words with every run of whitespace (its line wrapping, its box drawing margins)
/// made one space, so a phrase can be found whatever the terminal width.
fn flat(text: &str) -> String {
    text.split_whitespace()
        .filter(|w| *w != "│")
        .collect::<Vec<_>>()
        .join(" ")
}

const OUTPUTS: &str = r#"
output "job_id" {
  value = provider::batchai::parse_id("local/clusters/gpu/jobs/train")
}

output "file_server_id" {
  value = provider::batchai::parse_id("azure/fileServers/data")
}

output "h100" {
  value = provider::batchai::vm_size("standard_nd96isr_h100_v5")
}

output "cpu" {
  value = provider::batchai::vm_size("D2s_v3")
}

output "path" {
  value = provider::batchai::job_output_path({
    job_output_directory_path_segment = "gpu/jobs/train/u1"
    output_directories = [
      { id = "LOGS", path_prefix = "/srv/logs", path_suffix = null },
      { id = "MODEL", path_prefix = "$AZ_BATCHAI_MOUNT_ROOT/data", path_suffix = "models" },
    ]
  }, "MODEL")
}

locals {
  # OpenTofu's console evaluates function calls that the configuration makes (see
  # `console_value`).
  gpus = provider::batchai::vm_size("Standard_NC24rs_v3").gpus
}
"#;

/// `console` with one expression on standard input, the value it prints.
///
/// OpenTofu 1.12 cannot call a provider function written at its console prompt: with no call of
/// that function in the configuration it reports "BUG: Uninitialized function provider", and
/// with one it has already closed the provider ("the client connection is closing"). Functions
/// work there in configuration, so on OpenTofu the console reads a local that calls one.
fn console_value(ws: &Workspace, expression: &str) -> anyhow::Result<String> {
    let out = ws.run_with_input(&["console", "-no-color"], &format!("{expression}\n"))?;
    ensure!(
        out.status.success(),
        "console {expression:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn functions_return_values_and_our_errors_or_the_clis_own_error() {
    for_every_cli(|cli| {
        let ws = Workspace::new(cli)?;
        ws.write_config(OUTPUTS)?;
        if !has_functions(cli) {
            // `provider::...` is not even syntax before Terraform 1.8: the CLI refuses the
            // configuration with its parser's error at the call, and nothing crashes.
            let out = ws.run(&["plan", "-input=false", "-no-color"])?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            ensure!(
                !out.status.success(),
                "{cli} accepted provider::batchai::..."
            );
            ensure!(
                stderr.contains("Error: ")
                    && stderr
                        .contains("provider::batchai::parse_id(\"local/clusters/gpu/jobs/train\")"),
                "no clear error at the call:\n{stderr}"
            );
            ensure!(
                !stderr.contains("panic") && !ws.path().join("crash.log").exists(),
                "{cli} crashed:\n{stderr}"
            );
            return Ok(());
        }
        ws.init()?;
        ws.apply()?;
        let outputs: Json = serde_json::from_str(&ws.ok(&["output", "-json"])?)?;
        let value = |name: &str| outputs[name]["value"].clone();
        ensure!(
            value("job_id")
                == json!({"platform": "local", "kind": "job", "cluster_name": "gpu",
                          "job_name": "train", "file_server_name": null}),
            "parse_id of a job: {}",
            value("job_id")
        );
        ensure!(
            value("file_server_id")
                == json!({"platform": "azure", "kind": "file_server", "cluster_name": null,
                          "job_name": null, "file_server_name": "data"}),
            "parse_id of a file server: {}",
            value("file_server_id")
        );
        ensure!(
            value("h100")
                == json!({"name": "Standard_ND96isr_H100_v5", "vcpus": 96, "memory_gib": 1900,
                          "gpus": 8, "gpu_model": "H100 80GB SXM5",
                          "interconnect": "InfiniBand NDR"}),
            "vm_size of an H100 size: {}",
            value("h100")
        );
        ensure!(
            value("cpu")["gpus"] == json!(0) && value("cpu")["gpu_model"].is_null(),
            "vm_size of a CPU size: {}",
            value("cpu")
        );
        ensure!(
            value("path") == json!("$AZ_BATCHAI_MOUNT_ROOT/data/gpu/jobs/train/u1/models"),
            "job_output_path: {}",
            value("path")
        );

        ensure!(console_value(&ws, "local.gpus")? == "4");
        if !cli.tofu {
            let job = r#"provider::batchai::parse_id("azure/clusters/c1/jobs/j1").job_name"#;
            ensure!(console_value(&ws, job)? == "\"j1\"");
            let cpus = r#"provider::batchai::vm_size("Standard_NC6s_v3").vcpus"#;
            ensure!(console_value(&ws, cpus)? == "6");
        }

        // Each bad argument is the CLI's "Invalid value for <parameter>" with our text.
        let bad = [
            (
                r#"provider::batchai::parse_id("gpu")"#,
                r#"Invalid value for "id" parameter: "gpu" is not an ID this provider issues; IDs look like "<platform>/clusters/<cluster>", "<platform>/clusters/<cluster>/jobs/<job>" or "<platform>/fileServers/<name>""#,
            ),
            (
                r#"provider::batchai::vm_size("Standard_NC6s_v4")"#,
                r#"Invalid value for "size" parameter: unknown VM size "Standard_NC6s_v4"; the nearest known sizes are"#,
            ),
            (
                r#"provider::batchai::job_output_path("local/clusters/gpu/jobs/train", "MODEL")"#,
                r#"Invalid value for "job" parameter: "local/clusters/gpu/jobs/train" is a string, and a job ID does not determine output paths"#,
            ),
            (
                r#"provider::batchai::job_output_path({ job_output_directory_path_segment = "c/jobs/j/u", output_directories = [] }, "MODEL")"#,
                r#"Invalid value for "output_id" parameter: job c/jobs/j/u has no output directory "MODEL"; it declares none"#,
            ),
        ];
        for (call, want) in bad {
            ws.write_config(&format!("output \"bad\" {{\n  value = {call}\n}}\n"))?;
            let out = ws.run(&["plan", "-input=false", "-no-color"])?;
            let stderr = flat(&String::from_utf8_lossy(&out.stderr));
            ensure!(!out.status.success(), "{call} planned");
            ensure!(
                stderr.contains("Error: Invalid function argument") && stderr.contains(want),
                "{call}: want {want:?} in:\n{stderr}"
            );
        }

        // OpenTofu also names a function through a provider configuration's alias, and calls
        // it on that configured instance; Terraform knows `provider::<name>::<function>` only.
        ws.write_config(&format!(
            "provider \"batchai\" {{\n  alias = \"other\"\n  local {{\n    root = \"{}\"\n  }}\n}}\n\n\
             output \"aliased\" {{\n  value = provider::batchai::other::parse_id(\"local/clusters/gpu\").cluster_name\n}}\n",
            ws.path().join("other").display()
        ))?;
        let out = ws.run(&["apply", "-auto-approve", "-input=false", "-no-color"])?;
        let stderr = flat(&String::from_utf8_lossy(&out.stderr));
        if cli.tofu {
            ensure!(out.status.success(), "aliased call failed:\n{stderr}");
            let aliased = ws.ok(&["output", "-raw", "aliased"])?;
            ensure!(aliased == "gpu", "{aliased}");
        } else {
            ensure!(
                !out.status.success()
                    && stderr.contains(
                        "There is no function named \"provider::batchai::other::parse_id\""
                    ),
                "{cli} took the aliased form:\n{stderr}"
            );
        }
        Ok(())
    });
}

/// `job_output_path(batchai_job.x, id)` names the directory the job's node really wrote its
/// output to, on every CLI that has functions.
#[test]
fn job_output_path_of_a_job_resource_is_where_the_job_wrote() {
    for_every_cli(|cli| {
        if !has_functions(cli) {
            // Covered by the test above: such a CLI cannot express the call.
            return Ok(());
        }
        let ws = Workspace::new(cli)?;
        let out_dir = ws.path().join("out");
        let job = job_on_c(
            "train",
            &format!(
                "  output_directories {{\n    id          = \"MODEL\"\n    path_prefix = \"{}\"\n    path_suffix = \"models\"\n  }}\n  custom_toolkit {{\n    command_line = \"echo weights > $AZ_BATCHAI_OUTPUT_MODEL/model.txt\"\n  }}\n",
                out_dir.display()
            ),
        );
        // The whole resource has sensitive attributes (its mounts' storage keys), which makes
        // the result sensitive, as the function's documentation says; the two attributes
        // alone do not.
        let outputs = r#"
output "model_dir" {
  value = nonsensitive(provider::batchai::job_output_path(batchai_job.train, "MODEL"))
}

output "model_dir_plain" {
  value = provider::batchai::job_output_path({
    job_output_directory_path_segment = batchai_job.train.job_output_directory_path_segment
    output_directories                = batchai_job.train.output_directories
  }, "MODEL")
}
"#;
        ws.write_config(&format!("{}{job}{outputs}", cluster_c(1, "")))?;
        ws.init()?;
        ws.apply()?;
        let outputs: Json = serde_json::from_str(&ws.ok(&["output", "-json"])?)?;
        let whole = outputs["model_dir"]["value"]
            .as_str()
            .context("model_dir is not a string")?;
        let plain = outputs["model_dir_plain"]["value"]
            .as_str()
            .context("model_dir_plain is not a string")?;
        ensure!(whole == plain, "{whole} != {plain}");
        ensure!(
            whole.starts_with(&format!("{}/c/jobs/train/", out_dir.display()))
                && whole.ends_with("/models"),
            "unexpected path {whole}"
        );
        let written = std::fs::read_to_string(Path::new(whole).join("model.txt"))
            .with_context(|| format!("the job's output is not in {whole}"))?;
        ensure!(written.trim() == "weights", "{written:?}");
        ws.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"])?;
        Ok(())
    });
}
