//! End to end: a cluster's setup-task secrets are write-only. They reach the setup task's
//! environment on every node, live only in the cluster's secrets record (not in the spec that
//! every node and scheduling pass reads, not in state), and a failing setup task's stderr tail
//! shows them as `***`.
use anyhow::{Context as _, ensure};
use batchai_acceptance::{Workspace, cluster_c, newest_cli, walk};
use control::records::keys;

const SECRET: &str = "hunter2-setup-secret";

fn setup(out: &std::path::Path, version: u32, fail: bool) -> String {
    format!(
        r#"  setup_task {{
    command_line          = "printf %s $TOKEN | tr a-z b-za > {out}/$AZ_BATCHAI_NODE_ID.txt; echo token=$TOKEN >&2; test -z \"$FAIL\""
    environment_variables = {{ FAIL = "{fail}" }}
    secrets_wo            = {{ TOKEN = "{SECRET}" }}
    secrets_wo_version    = {version}
  }}"#,
        out = out.display(),
        fail = if fail { "1" } else { "" },
    )
}

/// The secret as the setup task writes it: every letter shifted by one.
fn shifted() -> String {
    SECRET
        .chars()
        .map(|c| match c {
            'z' => 'a',
            'a'..='y' => char::from(c as u8 + 1),
            other => other,
        })
        .collect()
}

#[test]
fn setup_task_secrets_reach_the_task_and_nothing_else() -> anyhow::Result<()> {
    let ws = Workspace::new(&newest_cli())?;
    let out = ws.path().join("out");
    std::fs::create_dir_all(&out)?;
    ws.write_config(&cluster_c(2, &setup(&out, 1, false)))?;
    ws.init()?;
    ws.apply()?;

    let written: Vec<String> = walk(&out)
        .iter()
        .map(std::fs::read_to_string)
        .collect::<Result<_, _>>()?;
    ensure!(
        written.len() == 2 && written.iter().all(|w| *w == shifted()),
        "each node's setup task sees the secret: {written:?}"
    );
    let state = std::fs::read_to_string(ws.path().join("terraform.tfstate"))?;
    ensure!(!state.contains(SECRET), "the secret is in the state");

    let store = ws.store()?;
    let spec = store.get(&keys::spec("c"))?.context("no cluster spec")?;
    ensure!(
        !String::from_utf8_lossy(&spec.data).contains(SECRET),
        "the secret is in the cluster spec"
    );
    let secrets = store
        .get(&keys::cluster_secrets("c"))?
        .context("no secrets record")?;
    ensure!(String::from_utf8_lossy(&secrets.data).contains(SECRET));
    // The setup task's own output files hold what it printed (the test's task prints the
    // secret on purpose); nothing else may.
    for file in walk(&ws.root) {
        let own_output = file.parent().is_some_and(|p| p.ends_with("setup"));
        if file.starts_with(ws.root.join("store")) || own_output {
            continue;
        }
        let text = std::fs::read(&file).unwrap_or_default();
        ensure!(
            !text.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "the secret is in {} (logs and node files must not hold it)",
            file.display()
        );
    }

    // A new version replaces the cluster; this one's setup task fails, and what the user sees
    // of its stderr has the secret masked.
    ws.write_config(&cluster_c(2, &setup(&out, 2, true)))?;
    let failed = ws.run(&["apply", "-auto-approve", "-input=false", "-no-color"])?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&failed.stdout),
        String::from_utf8_lossy(&failed.stderr)
    );
    ensure!(
        !failed.status.success(),
        "the failing setup task must fail the apply"
    );
    ensure!(said.contains("must be replaced"), "{said}");
    ensure!(
        said.contains("token=***"),
        "the tail is shown, masked: {said}"
    );
    ensure!(
        !said.contains(SECRET),
        "the secret reached the user: {said}"
    );
    ws.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"])?;
    Ok(())
}
