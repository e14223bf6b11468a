//! End to end: the `deepspeed` toolkit. Every rank starts on its node with PyTorch's rendezvous
//! variables and `--deepspeed --deepspeed_config <path>` before the script's own arguments, the
//! path expanded by the node's shell.
use anyhow::ensure;
use batchai_acceptance::{Workspace, cluster_c, job_on_c, newest_cli, walk};

/// Stands in for a DeepSpeed script: each rank records its variables and arguments, and fails
/// unless the configuration it was given exists.
const SCRIPT: &str = r#"import os, sys
config = sys.argv[sys.argv.index("--deepspeed_config") + 1]
assert "--deepspeed" in sys.argv, sys.argv
assert os.path.isfile(config), config
out = os.environ["AZ_BATCHAI_OUTPUT_OUT"]
with open(os.path.join(out, "rank-%s.txt" % os.environ["RANK"]), "w") as f:
    f.write(" ".join([os.environ["WORLD_SIZE"], os.environ["MASTER_PORT"], sys.argv[-1], config]))
"#;

#[test]
fn deepspeed_ranks_get_the_rendezvous_and_their_config() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    let code = ws.path().join("code");
    std::fs::create_dir_all(&code)?;
    std::fs::write(code.join("train.py"), SCRIPT)?;
    std::fs::write(code.join("ds.json"), "{\"train_batch_size\": 8}")?;
    let out = ws.path().join("out");
    let mut config = cluster_c(2, "");
    config.push_str(&job_on_c(
        "ds",
        &format!(
            r#"  node_count = 2
  input_directories {{
    id   = "CODE"
    path = "{code}"
  }}
  output_directories {{
    id          = "OUT"
    path_prefix = "{out}"
  }}
  deepspeed {{
    python_script_file_path = "$AZ_BATCHAI_INPUT_CODE/train.py"
    command_line_args       = "--first # a comment ends the line"
    deepspeed_config_path   = "$AZ_BATCHAI_INPUT_CODE/ds.json"
  }}"#,
            code = code.display(),
            out = out.display()
        ),
    ));
    ws.write_config(&config)?;
    ws.init()?;
    ws.apply()?;
    let mut ranks: Vec<(String, String)> = walk(&out)
        .into_iter()
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_owned();
            name.starts_with("rank-")
                .then(|| Some((name, std::fs::read_to_string(&p).ok()?)))?
        })
        .collect();
    ranks.sort();
    let names: Vec<&str> = ranks.iter().map(|(n, _)| n.as_str()).collect();
    ensure!(names == ["rank-0.txt", "rank-1.txt"], "ranks: {ranks:?}");
    let config_path = code.join("ds.json").display().to_string();
    for (rank, record) in &ranks {
        let fields: Vec<&str> = record.split(' ').collect();
        ensure!(
            fields.len() == 4
                && fields[0] == "2"
                && fields[1].parse::<u16>().is_ok_and(|p| p > 0)
                && fields[2] == "--first"
                && fields[3] == config_path,
            "{rank}: world size 2, a rendezvous port, the script's own arguments and the expanded config: {record}"
        );
    }
    Ok(())
}
