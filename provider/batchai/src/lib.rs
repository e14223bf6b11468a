//! The Batch AI provider: configuration, resources, data sources and the platforms behind them.
//!
//! Resources speak in validated domain types ([`names`], [`resources::file_server::FileServerSpec`])
//! and reach the outside world only through [`platform::Platform`].
pub mod config;
pub mod data_sources;
pub mod generated;
pub mod names;
pub mod platform;
pub mod resources;

use std::sync::Arc;

use tfplug::{BoxFuture, ConfigureRequest, DataSource, Diagnostics, Provider, Resource, Schema};

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

    fn validate(&self, config: &tfplug::Value) -> Diagnostics {
        config::validate(config)
    }

    fn configure<'a>(
        &'a self,
        request: ConfigureRequest<'a>,
    ) -> BoxFuture<'a, Result<Client, Diagnostics>> {
        Box::pin(async move { config::configure(request.config) })
    }

    fn resources(&self) -> Vec<Box<dyn Resource<Client>>> {
        vec![
            Box::new(resources::cluster::ClusterResource),
            Box::new(resources::file_server::FileServerResource),
        ]
    }

    fn data_sources(&self) -> Vec<Box<dyn DataSource<Client>>> {
        vec![Box::new(data_sources::file_server::FileServerDataSource)]
    }
}

/// Runs the provider process until Terraform shuts it down.
pub fn run(mode: tfplug::Mode) -> anyhow::Result<()> {
    if mode == tfplug::Mode::Plugin {
        tfplug::logging::init_hclog();
    } else {
        tfplug::logging::init_hclog_at(tfplug::logging::LevelFilter::INFO);
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

/// Runs the node agent: `agent --root DIR --cluster NAME --node ID`.
pub fn run_agent(args: &[String]) -> anyhow::Result<()> {
    let mut root = None;
    let mut cluster = None;
    let mut node = None;
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        let value = iter.next().cloned();
        match flag.as_str() {
            "--root" => root = value,
            "--cluster" => cluster = value,
            "--node" => node = value,
            other => anyhow::bail!("unknown agent argument {other:?}"),
        }
    }
    tfplug::logging::init_hclog_at(tfplug::logging::LevelFilter::INFO);
    let exe = std::env::current_exe()?;
    agent::run_node(agent::NodeArgs {
        root: root
            .ok_or_else(|| anyhow::anyhow!("agent needs --root"))?
            .into(),
        cluster: cluster.ok_or_else(|| anyhow::anyhow!("agent needs --cluster"))?,
        node: node.ok_or_else(|| anyhow::anyhow!("agent needs --node"))?,
        exe,
    })?;
    Ok(())
}
