//! End to end: a cluster of machines that joined by hand. Two nodes run `agent join` in network
//! namespaces of their own (each with its own address on a bridge, as separate machines on a
//! LAN), the control store is a blob container in an Azurite on the bridge, and Terraform (so
//! the provider) runs in a mount namespace where the nodes' directories do not exist: everything
//! the provider shows comes through the store. A job's output and metrics, a failed job's stderr
//! tail, and an MPI job whose two ranks run in the two namespaces.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use batchai_acceptance::{
    BlobStoreTarget, Workspace, newest_cli, provider_binary, resource_values, wait_for, walk,
};
use control::records::NodeState;
use control_blob::azurite::{ACCOUNT_KEY, Azurite};

/// Runs `ip` with `args`; an error says what failed.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().context("run ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A bridge with one network namespace per node, removed when dropped.
struct Network {
    bridge: String,
    namespaces: Vec<String>,
    /// The bridge's address: where Azurite listens for the nodes.
    gateway: String,
}

impl Network {
    /// `None`, with the reason, where the machine refuses network namespaces.
    fn create(nodes: usize) -> anyhow::Result<Result<Network, String>> {
        let tag = std::process::id() % 100_000;
        let subnet = format!("10.213.{}", std::process::id() % 250);
        let bridge = format!("bai{tag}br");
        if let Err(e) = ip(&["link", "add", &bridge, "type", "bridge"]) {
            return Ok(Err(format!("cannot create a bridge: {e}")));
        }
        let mut net = Network {
            bridge: bridge.clone(),
            namespaces: Vec::new(),
            gateway: format!("{subnet}.1"),
        };
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.gateway),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 1..=nodes {
            let ns = format!("bai{tag}n{i}");
            if let Err(e) = ip(&["netns", "add", &ns]) {
                return Ok(Err(format!("cannot create a network namespace: {e}")));
            }
            net.namespaces.push(ns.clone());
            let (outside, inside) = (format!("bai{tag}v{i}"), format!("bai{tag}p{i}"));
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ])?;
            ip(&["link", "set", &inside, "netns", &ns])?;
            ip(&["link", "set", &outside, "master", &bridge])?;
            ip(&["link", "set", &outside, "up"])?;
            let address = format!("{subnet}.{}/24", 10 + i);
            ip(&[
                "netns", "exec", &ns, "ip", "addr", "add", &address, "dev", &inside,
            ])?;
            ip(&["netns", "exec", &ns, "ip", "link", "set", &inside, "up"])?;
            ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"])?;
            ip(&[
                "netns",
                "exec",
                &ns,
                "ip",
                "route",
                "add",
                "default",
                "via",
                &net.gateway,
            ])?;
        }
        Ok(Ok(net))
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// An `agent join` process, killed when dropped.
struct Joined(Child);

impl Drop for Joined {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn join(ns: &str, store: &BlobStoreTarget, work: &Path, log: &Path) -> anyhow::Result<Joined> {
    let log = std::fs::File::create(log)?;
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(provider_binary())
        .args(["agent", "join", "--store", &store.container_url])
        .args(["--cluster", "room", "--work-dir"])
        .arg(work)
        .env(
            "BATCHAI_STORE_CREDENTIAL",
            format!("key:{}", store.account_key),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("start agent join")?;
    Ok(Joined(child))
}

/// Terraform as the user runs it here, except that the nodes' directories (`hidden`) are an
/// empty directory to it and to the provider it starts.
fn blind_terraform(ws: &Workspace, hidden: &Path) -> anyhow::Result<PathBuf> {
    let empty = ws.path().join("empty");
    std::fs::create_dir_all(&empty)?;
    let wrapper = ws.path().join("terraform-blind");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec unshare --mount sh -c 'mount --bind \"$0\" \"$1\" && shift && exec \"$@\"' '{}' '{}' '{}' \"$@\"\n",
            empty.display(),
            hidden.display(),
            ws.cli.path.display()
        ),
    )?;
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    Ok(wrapper)
}

const CLUSTER: &str = r#"resource "batchai_cluster" "room" {
  name    = "room"
  vm_size = "Standard_D2s_v3"
  scale_settings {
    manual {
      target_node_count = 0   # every node joins by hand
    }
  }
}
"#;

fn job(name: &str, out: &Path, body: &str) -> String {
    format!(
        r#"resource "batchai_job" "{name}" {{
  name       = "{name}"
  cluster_id = batchai_cluster.room.id
  output_directories {{
    id          = "OUT"
    path_prefix = "{out}"
  }}
{body}
}}
"#,
        out = out.display()
    )
}

#[test]
fn joined_nodes_in_separate_networks_run_jobs_for_a_provider_that_cannot_see_them()
-> anyhow::Result<()> {
    let network = match Network::create(2)? {
        Ok(net) => net,
        Err(why) => {
            eprintln!("SKIPPED: this machine refuses network namespaces ({why})");
            return Ok(());
        }
    };
    let azurite = Azurite::start_at(&network.gateway)?;
    let store = BlobStoreTarget {
        container_url: azurite.container_url("room"),
        account_key: ACCOUNT_KEY.to_owned(),
    };
    let mut ws = Workspace::new(&newest_cli())?;
    ws.control_store = Some(store.clone());
    let hidden = ws.path().join("machines");
    let out = ws.path().join("out");
    std::fs::create_dir_all(&hidden)?;
    std::fs::create_dir_all(&out)?;
    ws.cli.path = blind_terraform(&ws, &hidden)?;

    ws.write_config(CLUSTER)?;
    ws.init()?;
    ws.apply()?;
    let mut nodes = Vec::new();
    for (i, ns) in network.namespaces.iter().enumerate() {
        let work = hidden.join(format!("machine-{i}"));
        nodes.push(join(
            ns,
            &store,
            &work,
            &ws.path().join(format!("join-{i}.log")),
        )?);
    }
    wait_for(
        "both nodes to join and become idle",
        Duration::from_secs(60),
        || {
            let records = batchai_acceptance::node_records(&ws, "room")?;
            Ok(records.len() == 2
                && records
                    .iter()
                    .all(|n| n.joined && n.state == NodeState::Idle))
        },
    )?;

    let jobs = [
        job(
            "hello",
            &out,
            "  std_out_err_path_prefix = \"$AZ_BATCHAI_MOUNT_ROOT/logs\"\n  custom_toolkit {\n    command_line = \"readlink /proc/self/ns/net > $AZ_BATCHAI_OUTPUT_OUT/hello.txt; echo '{\\\"accuracy\\\": 0.75}' >> $BATCHAI_METRICS_FILE\"\n  }",
        ),
        job(
            "mpi",
            &out,
            "  node_count = 2\n  custom_mpi {\n    command_line  = \"sh -c 'readlink /proc/self/ns/net > $AZ_BATCHAI_OUTPUT_OUT/rank-$OMPI_COMM_WORLD_RANK'\"\n    process_count = 2\n  }",
        ),
    ];
    ws.write_config(&format!("{CLUSTER}{}", jobs.concat()))?;
    ws.apply()?;
    let state = ws.state_json()?;
    let hello = resource_values(&state, "batchai_job.hello").context("no hello job")?;
    ensure!(hello["execution_state"] == "succeeded", "{hello}");
    ensure!(
        hello["metrics"]["accuracy"] == 0.75,
        "metrics through the store: {hello}"
    );
    ensure!(
        hello["std_out_err_directory"]
            .as_str()
            .is_some_and(|d| Path::new(d).starts_with(&hidden)),
        "the log directory as the node sees it: {hello}"
    );
    let mpi = resource_values(&state, "batchai_job.mpi").context("no mpi job")?;
    ensure!(mpi["execution_state"] == "succeeded", "{mpi}");
    let ranks: Vec<String> = walk(&out)
        .iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("rank-"))
        })
        .map(std::fs::read_to_string)
        .collect::<Result<_, _>>()?;
    ensure!(ranks.len() == 2, "two ranks: {ranks:?}");
    ensure!(
        ranks[0] != ranks[1],
        "the ranks ran in the two nodes' network namespaces: {ranks:?}"
    );

    // A failure is told in full, through the store: the provider cannot read the node's logs.
    let failing = job(
        "fails",
        &out,
        "  custom_toolkit {\n    command_line = \"echo broken on purpose >&2; exit 3\"\n  }",
    );
    ws.write_config(&format!("{CLUSTER}{}{failing}", jobs.concat()))?;
    let failed = ws.run(&["apply", "-auto-approve", "-input=false", "-no-color"])?;
    let said = String::from_utf8_lossy(&failed.stderr).into_owned();
    ensure!(!failed.status.success(), "the failing job fails the apply");
    ensure!(
        said.contains("broken on purpose"),
        "the stderr tail: {said}"
    );
    ensure!(said.contains("exit code: 3"), "{said}");

    ws.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"])?;
    // The nodes leave once their cluster's records are gone.
    for mut node in nodes {
        let mut left = false;
        for _ in 0..300 {
            if node.0.try_wait()?.is_some() {
                left = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        ensure!(left, "a joined node outlived its cluster");
    }
    drop(azurite);
    drop(network);
    Ok(())
}
