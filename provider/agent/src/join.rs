//! `agent join`: a node started by hand on any machine that reaches the cluster's control
//! store, which makes a room of GPU boxes one cluster. It takes the next node number, records
//! itself as joined (the scheduler never launches, replaces or scales in such a node), and then
//! lives like any node until it is stopped (SIGTERM drains it per the cluster's deallocation
//! option) or its cluster is destroyed.
use std::path::PathBuf;

use control::Condition;
use control::records::{self, ClusterSpec, NodeRecord, keys};

use crate::AgentError;
use crate::store::StoreLocation;

/// What `agent join` is started with.
#[derive(Debug, Clone)]
pub struct JoinArgs {
    pub store: StoreLocation,
    pub cluster: String,
    /// Below it the node keeps its work directory (`<work_dir>/<node id>`).
    pub work_dir: PathBuf,
    /// The address peers reach this node at; by default the one it reaches the store from.
    pub address: Option<String>,
    /// This binary, to bridge `mpirun` to other nodes.
    pub exe: PathBuf,
}

/// Joins the cluster and runs the node until it leaves.
pub fn join(args: JoinArgs) -> Result<(), AgentError> {
    let store = args.store.open()?;
    let spec = match store.get(&keys::spec(&args.cluster))? {
        Some(v) => records::decode::<ClusterSpec>("cluster spec", &v.data)?,
        None => {
            return Err(AgentError::Config {
                reason: format!(
                    "join cluster {}: it does not exist in the store {}; create it with Terraform first (with the same control_store)",
                    args.cluster, args.store.url
                ),
            });
        }
    };
    if spec.deleting {
        return Err(AgentError::Config {
            reason: format!("join cluster {}: it is being destroyed", args.cluster),
        });
    }
    let id = crate::launcher::reserve_ids(store.as_ref(), &args.cluster, 1)?
        .pop()
        .ok_or_else(|| AgentError::Config {
            reason: format!("join cluster {}: no node number was reserved", args.cluster),
        })?;
    let address = args
        .address
        .clone()
        .unwrap_or_else(|| crate::host::address_towards(&args.store.url).to_string());
    let record = NodeRecord {
        joined: true,
        host: Some(crate::host::identity()),
        address: Some(address),
        ..NodeRecord::launching(&args.cluster, &id, records::now_ms())
    };
    store.put(
        &keys::node(&args.cluster, &id),
        &records::encode(&record),
        Condition::IfNoneExists,
        None,
    )?;
    tracing::info!(cluster = %args.cluster, node = %id, "joined");
    crate::node::run_node(crate::node::NodeArgs {
        store: args.store,
        cluster: args.cluster,
        work_dir: args.work_dir.join(&id),
        node: id,
        local_root: None,
        exe: args.exe,
        evicted: Default::default(),
        keep_files: None,
        mount_identity: None,
    })
}
