//! The Batch AI provider: configuration, resources, data sources and the platforms behind them.
//!
//! Resources speak in validated domain types ([`names`], [`resources::file_server::FileServerSpec`])
//! and reach the outside world only through [`platform::Platform`].
pub mod config;
pub mod control_plane;
pub mod data_sources;
pub mod functions;
pub mod generated;
pub mod names;
pub mod platform;
pub mod resources;

use std::sync::Arc;

use tfplug::{
    BoxFuture, ConfigureRequest, Diagnostics, DynDataSource, DynResource, Provider, Schema,
};

/// The provider's source address.
pub const ADDRESS: &str = "registry.terraform.io/batchai/batchai";

/// What every resource operation receives once the provider is configured.
pub type Client = Arc<dyn platform::Platform>;

/// The `batchai` provider.
#[derive(Debug, Default)]
pub struct BatchAi;

impl Provider for BatchAi {
    type Client = Client;

    fn type_name(&self) -> &'static str {
        "batchai"
    }

    fn schema(&self) -> Schema {
        config::schema()
    }

    fn configure<'a>(
        &'a self,
        request: ConfigureRequest<'a>,
    ) -> BoxFuture<'a, Result<Client, Diagnostics>> {
        // Configuring may check a blob control store over the network: off the async workers.
        let config = request.config.clone();
        Box::pin(async move {
            if config::uses_azure(&config) {
                return config::configure_azure(&config).await;
            }
            tokio::task::spawn_blocking(move || config::configure(&config))
                .await
                .unwrap_or_else(|e| {
                    Err(tfplug::Diagnostic::error(
                        "internal error",
                        format!("configure the provider: {e}"),
                    )
                    .into())
                })
        })
    }

    fn resources(&self) -> Vec<Box<dyn DynResource<Client>>> {
        vec![
            Box::new(resources::cluster::ClusterResource),
            Box::new(resources::file_server::FileServerResource),
            Box::new(resources::job::JobResource),
        ]
    }

    fn data_sources(&self) -> Vec<Box<dyn DynDataSource<Client>>> {
        vec![Box::new(data_sources::file_server::FileServerDataSource)]
    }

    fn functions(&self) -> Vec<Box<dyn tfplug::Function>> {
        functions::all()
    }
}

/// Runs the provider process until Terraform shuts it down.
pub fn run(mode: tfplug::Mode) -> anyhow::Result<()> {
    if mode == tfplug::Mode::Plugin {
        tfplug::logging::init_hclog(log_scope());
    } else {
        tfplug::logging::init_hclog_at(tfplug::logging::LevelFilter::INFO, log_scope());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(tfplug::serve(
        BatchAi,
        tfplug::ServeOptions {
            address: ADDRESS.to_owned(),
            mode,
        },
    ))?;
    Ok(())
}

/// The provider's own crates log at the level asked for; gRPC, HTTP/2 and TLS internals only
/// with `BATCHAI_LOG_LIBRARIES=1`.
fn log_scope() -> tfplug::logging::Scope {
    const OWN: &[&str] = &[
        "terraform_provider_batchai",
        "batchai",
        "tfplug",
        "control",
        "agent",
    ];
    let libraries = std::env::var("BATCHAI_LOG_LIBRARIES").is_ok_and(|v| !v.is_empty() && v != "0");
    tfplug::logging::Scope::new(OWN).with_libraries(libraries)
}

/// Runs the node agent: `agent --store S --cluster NAME --node ID --work-dir D --local-root R`
/// (a blob store's credential comes in `BATCHAI_STORE_CREDENTIAL`).
pub fn run_agent(args: &[String]) -> anyhow::Result<u8> {
    match args.first().map(String::as_str) {
        Some("rsh") => return run_rsh(&args[1..]),
        Some("join") => return run_join(&args[1..]),
        Some("azure") => return run_azure(&args[1..]),
        _ => {}
    }
    let mut flags = agent_flags(
        args,
        &[
            "--store",
            "--cluster",
            "--node",
            "--work-dir",
            "--local-root",
            "--root",
        ],
    )?;
    // `--root R`, as schedulers of earlier versions start nodes: the directory store and the
    // node directories below the local platform's root.
    if let Some(root) = flags.remove("--root") {
        let root = std::path::PathBuf::from(root);
        let (cluster, node) = (
            flags.get("--cluster").cloned().unwrap_or_default(),
            flags.get("--node").cloned().unwrap_or_default(),
        );
        let defaults = [
            ("--store", agent::LocalLauncher::store_dir(&root)),
            (
                "--work-dir",
                agent::LocalLauncher::node_dir(&root, &cluster, &node),
            ),
            ("--local-root", root.clone()),
        ];
        for (flag, value) in defaults {
            flags
                .entry(flag.to_owned())
                .or_insert_with(|| value.display().to_string());
        }
    }
    let mut take = |flag: &str| {
        flags
            .remove(flag)
            .ok_or_else(|| anyhow::anyhow!("agent needs {flag}"))
    };
    let args = agent::NodeArgs {
        store: agent::store::StoreLocation::from_args(take("--store")?)?,
        cluster: take("--cluster")?,
        node: take("--node")?,
        work_dir: take("--work-dir")?.into(),
        local_root: Some(take("--local-root")?.into()),
        exe: std::env::current_exe()?,
        evicted: Default::default(),
        keep_files: None,
        mount_identity: None,
    };
    init_agent_logging();
    agent::run_node(args)?;
    Ok(0)
}

/// `agent join --store URL --cluster NAME [--work-dir DIR] [--address IP]`, with the store's
/// credential in `BATCHAI_STORE_CREDENTIAL`: a node started by hand, on any machine that
/// reaches the store.
fn run_join(args: &[String]) -> anyhow::Result<u8> {
    let mut flags = agent_flags(args, &["--store", "--cluster", "--work-dir", "--address"])?;
    let store = flags
        .remove("--store")
        .ok_or_else(|| anyhow::anyhow!("agent join needs --store (the control container's URL)"))?;
    let cluster = flags
        .remove("--cluster")
        .ok_or_else(|| anyhow::anyhow!("agent join needs --cluster"))?;
    let work_dir = match flags.remove("--work-dir") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => config::default_root()
            .ok_or_else(|| anyhow::anyhow!("agent join needs --work-dir (HOME is not set)"))?
            .join("joined")
            .join(&cluster),
    };
    let args = agent::join::JoinArgs {
        store: agent::store::StoreLocation::from_args(store)?,
        cluster,
        work_dir,
        address: flags.remove("--address"),
        exe: std::env::current_exe()?,
    };
    init_agent_logging();
    agent::join::join(args)?;
    Ok(0)
}

/// `agent azure --config <node.json>`: a node on an Azure VM, as its bootstrap starts it.
fn run_azure(args: &[String]) -> anyhow::Result<u8> {
    let mut flags = agent_flags(args, &["--config"])?;
    let config = flags
        .remove("--config")
        .ok_or_else(|| anyhow::anyhow!("agent azure needs --config (the node's node.json)"))?;
    init_agent_logging();
    platform::azure::node::run(std::path::Path::new(&config))?;
    Ok(0)
}

/// Parses `--flag value` pairs, refusing flags not in `known`.
fn agent_flags(
    args: &[String],
    known: &[&str],
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut flags = std::collections::BTreeMap::new();
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        match flag.as_str() {
            f if known.contains(&f) => {
                let value = iter
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("agent argument {flag} needs a value"))?;
                flags.insert(flag.clone(), value.clone());
            }
            other => anyhow::bail!("unknown agent argument {other:?}"),
        }
    }
    Ok(flags)
}

/// Agents log to their stderr (a file under the node's directory when the platform started
/// them): `BATCHAI_AGENT_LOG=debug` in the provider's environment makes nodes log more.
fn init_agent_logging() {
    let level = match std::env::var("BATCHAI_AGENT_LOG").as_deref() {
        Ok("debug") => tfplug::logging::LevelFilter::DEBUG,
        Ok("trace") => tfplug::logging::LevelFilter::TRACE,
        Ok("warn") => tfplug::logging::LevelFilter::WARN,
        _ => tfplug::logging::LevelFilter::INFO,
    };
    tfplug::logging::init_hclog_at(level, log_scope());
}

/// `agent rsh <node> <command...>`: OpenMPI's remote shell between a job's nodes. `mpirun`
/// runs it (through `plm_rsh_agent`) to start its daemon "on" another node; the job's
/// environment says where the master put the nodes' rank environments.
fn run_rsh(args: &[String]) -> anyhow::Result<u8> {
    let (node, command) = args
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("agent rsh needs a node and a command"))?;
    let ranks = std::env::var(agent::execute::RANKS_DIR_VAR).map_err(|_| {
        anyhow::anyhow!(
            "agent rsh runs only inside a job ({} is unset)",
            agent::execute::RANKS_DIR_VAR
        )
    })?;
    let code = agent::execute::rsh(std::path::Path::new(&ranks), node, command)
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(u8::try_from(code).unwrap_or(1))
}
