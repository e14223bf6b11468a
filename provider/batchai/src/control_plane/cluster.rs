//! Clusters as records: the spec, the configuration kept for import and the status the
//! scheduler converges on; creation and scale changes wait until the nodes have settled, and a
//! scheduling pass runs here whenever no node holds the scheduler lease (a cluster scaled to
//! zero has no scheduler of its own).
use std::time::Duration;

use agent::scheduler;
use control::records::{self, ClusterSpec, ClusterStatus, NodeRecord, NodeState, Scale, keys};
use control::secrets::ClusterSecrets;
use control::{Condition, StoreError};

use super::{ControlPlane, ResourceRecord, now_rfc3339};
use crate::names::Name;
use crate::platform::{ClusterView, PlatformError};

/// How long a create or a scale change waits while the platform refuses to add nodes before
/// it fails with the platform's reason (a scheduler keeps trying afterwards).
const LAUNCH_PATIENCE_MS: u64 = 60_000;
const KIND: &str = "cluster";
/// How often waits look at the store again: soon at first (local nodes settle in a fraction
/// of a second), backing off so that a wait of minutes costs a remote store a few requests a
/// second (each look reads the spec, status and every node record).
const POLL_FIRST: Duration = Duration::from_millis(25);
const POLL_MAX: Duration = Duration::from_millis(500);
/// How long a takeover mark stands before it counts as left by a provider that died mid-pass.
const TAKEOVER_STALE_MS: u64 = 60_000;

fn failed(operation: &'static str, name: &str, reason: impl ToString) -> PlatformError {
    PlatformError::failed(operation, KIND, name, reason)
}

impl ControlPlane {
    pub(super) async fn create_cluster(
        &self,
        spec: &ClusterSpec,
        secrets: &ClusterSecrets,
        resource: &serde_json::Value,
    ) -> Result<ClusterView, PlatformError> {
        let name = spec.name.clone();
        let claim = || {
            let (spec, secrets, resource) = (spec.clone(), secrets.clone(), resource.clone());
            self.blocking("create", KIND, &name, move |plane| {
                plane.create_cluster_records(&spec, &secrets, &resource)
            })
        };
        let desired = match claim().await {
            // What is left of a cluster whose machines were deleted outside Terraform (Read
            // said it is gone) is removed as destroy would, and the name claimed again.
            Err(PlatformError::AlreadyExists { .. }) if self.machines_gone(&name).await? => {
                tracing::warn!(
                    cluster = name,
                    "the cluster's machines were deleted outside Terraform; removing its records"
                );
                let parsed = Name::parse(&name).map_err(|e| failed("create", &name, e))?;
                self.delete_cluster(&parsed).await?;
                claim().await?
            }
            other => other?,
        };
        // The records claim the name first; what the platform makes for the nodes comes next,
        // and a failure there leaves a cluster that Read shows and destroy removes.
        self.driver()
            .create_cluster_machines(spec, resource)
            .await?;
        let made = name.clone();
        self.blocking("create", KIND, &name, move |plane| {
            records::update(
                plane.store(),
                &keys::cluster_resource(&made),
                "cluster resource",
                |r: &mut ResourceRecord| {
                    let pending = r.machines_pending;
                    r.machines_pending = false;
                    pending
                },
            )
            .map(|_| ())
            .map_err(|e| failed("create", &made, e))
        })
        .await?;
        let launched = spec.clone();
        self.blocking("create", KIND, &name, move |plane| {
            plane
                .driver()
                .launcher()
                .launch(plane.store(), &launched, desired)
                .map(|_| ())
                .map_err(|e| failed("create", &launched.name, e))
        })
        .await?;
        self.wait_until_settled(&name, "create").await
    }

    fn create_cluster_records(
        &self,
        spec: &ClusterSpec,
        secrets: &ClusterSecrets,
        resource: &serde_json::Value,
    ) -> Result<u32, PlatformError> {
        let name = spec.name.as_str();
        let store = self.store();
        match store.put(
            &keys::spec(name),
            &records::encode(spec),
            Condition::IfNoneExists,
            None,
        ) {
            Ok(_) => {}
            Err(e) if e.is_conflict() => {
                return Err(PlatformError::AlreadyExists {
                    kind: KIND,
                    name: name.to_owned(),
                });
            }
            Err(e) => return Err(failed("create", name, e)),
        }
        // Before any node starts: a node's setup task needs them. Written even when empty,
        // so that a record left by an interrupted destroy of an earlier cluster of this name
        // never reaches this one. Without them the name is given back, so no node ever runs
        // the setup task without its secrets.
        let stored = store.put(
            &keys::cluster_secrets(name),
            &records::encode(&ClusterSecrets {
                format: records::FORMAT,
                ..secrets.clone()
            }),
            Condition::Always,
            None,
        );
        if let Err(e) = stored {
            let _ = store.delete(&keys::spec(name), Condition::Always, None);
            return Err(failed("create", name, e));
        }
        let record = ResourceRecord {
            format: records::FORMAT,
            creation_time: now_rfc3339(),
            resource: resource.clone(),
            machines_pending: true,
        };
        store
            .put(
                &keys::cluster_resource(name),
                &records::encode(&record),
                Condition::Always,
                None,
            )
            .map_err(|e| failed("create", name, e))?;
        self.reset_status(spec, "create")
    }

    /// Starts the cluster's status over from `spec`'s scale settings (their initial size,
    /// activity from now, unusable nodes replaced at once). Returns the initial size.
    fn reset_status(
        &self,
        spec: &ClusterSpec,
        operation: &'static str,
    ) -> Result<u32, PlatformError> {
        let status = ClusterStatus::start(spec, records::now_ms());
        self.store()
            .put(
                &keys::status(&spec.name),
                &records::encode(&status),
                Condition::Always,
                None,
            )
            .map_err(|e| failed(operation, &spec.name, e))?;
        Ok(status.desired_node_count)
    }

    /// Waits until the node count matches the desired count and every node has finished
    /// preparing (idle, running or unusable), scheduling the cluster whenever no agent does.
    async fn wait_until_settled(
        &self,
        name: &str,
        operation: &'static str,
    ) -> Result<ClusterView, PlatformError> {
        let mut poll = POLL_FIRST;
        loop {
            let cluster = name.to_owned();
            let view = self
                .blocking(operation, KIND, name, move |plane| {
                    plane
                        .reconcile_if_unscheduled(&cluster)
                        .map_err(|e| failed(operation, &cluster, e))?;
                    plane
                        .read_cluster_records(&cluster)
                        .map_err(|e| failed(operation, &cluster, e))
                })
                .await?;
            let Some(view) = view else {
                return Err(failed(
                    operation,
                    name,
                    "the cluster was deleted while waiting for it",
                ));
            };
            // Nodes that joined on their own come and go as their machines do: the platform's
            // nodes are what the scale settings count.
            let launched: Vec<_> = view.nodes.iter().filter(|n| !n.joined).collect();
            let settled = launched.iter().all(|n| {
                !n.drain_requested
                    && matches!(
                        n.state,
                        NodeState::Idle | NodeState::Running | NodeState::Unusable
                    )
            });
            let count = u32::try_from(launched.len()).unwrap_or(u32::MAX);
            if settled && count == view.desired_node_count {
                return Ok(view);
            }
            // The platform has refused to add nodes for a while (no capacity, a quota): the
            // apply says why instead of waiting out its timeout.
            if let Some(error) = &view.launch_error
                && error
                    .details
                    .get("since_ms")
                    .and_then(|s| s.parse::<u64>().ok())
                    .is_some_and(|since| {
                        records::now_ms().saturating_sub(since) >= LAUNCH_PATIENCE_MS
                    })
            {
                return Err(failed(
                    operation,
                    name,
                    format!(
                        "{count} of {} nodes, and the platform has failed to add nodes for {} s: {}",
                        view.desired_node_count,
                        LAUNCH_PATIENCE_MS / 1000,
                        error.message
                    ),
                ));
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 5 / 4).min(POLL_MAX);
        }
    }

    /// Makes sure someone schedules the cluster: a pass by the provider when no node holds the
    /// lease (a cluster with no nodes has no scheduler of its own, but may have queued jobs).
    pub(super) fn nudge(&self, name: &str) -> Result<(), agent::AgentError> {
        self.reconcile_if_unscheduled(name)
    }

    /// Runs one scheduling pass when no node is the scheduler, holding the lease meanwhile so
    /// two schedulers never act at once.
    fn reconcile_if_unscheduled(&self, name: &str) -> Result<(), agent::AgentError> {
        let store = self.store();
        // No scheduler key for a cluster that does not exist (a job naming a missing cluster).
        if store.get(&keys::spec(name))?.is_none() {
            return Ok(());
        }
        let key = keys::scheduler(name);
        match store.put(&key, b"{}", Condition::IfNoneExists, None) {
            Ok(_) => {}
            Err(e) if e.is_conflict() || matches!(e, StoreError::LeaseHeld { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let mut takeover = None;
        let lease = match store.acquire_lease(&key, agent::SCHEDULER_LEASE) {
            Ok(lease) => lease,
            Err(StoreError::LeaseHeld { .. }) if self.scheduler_is_dead(name)? => {
                // Every agent is gone (killed at once, say): the lease of the dead scheduler
                // would keep the cluster unscheduled, and its state untrue, until it expires.
                // Terraform reads many resources at once, so only the caller that creates the
                // takeover mark breaks the lease; the others leave the pass to it.
                let Some(mark) = self.claim_takeover(name)? else {
                    return Ok(());
                };
                takeover = Some(mark);
                tracing::warn!(
                    cluster = name,
                    "every node's agent is gone; taking over the scheduler lease"
                );
                store.break_lease(&key)?;
                match store.acquire_lease(&key, agent::SCHEDULER_LEASE) {
                    Ok(lease) => lease,
                    Err(StoreError::LeaseHeld { .. }) => {
                        self.release_takeover(takeover);
                        return Ok(());
                    }
                    Err(e) => {
                        self.release_takeover(takeover);
                        return Err(e.into());
                    }
                }
            }
            Err(StoreError::LeaseHeld { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let result = scheduler::reconcile(store, self.driver().launcher(), name);
        let _ = store.release_lease(&key, &lease);
        self.release_takeover(takeover);
        result.map(|_| ())
    }

    /// Creates the cluster's takeover mark; `None` when another caller holds a live one.
    fn claim_takeover(
        &self,
        name: &str,
    ) -> Result<Option<(String, control::ETag)>, agent::AgentError> {
        let store = self.store();
        let key = format!("{}scheduler-takeover", keys::cluster_prefix(name));
        let now = records::now_ms();
        match store.put(
            &key,
            now.to_string().as_bytes(),
            Condition::IfNoneExists,
            None,
        ) {
            Ok(etag) => Ok(Some((key, etag))),
            Err(e) if e.is_conflict() => {
                if let Some(v) = store.get(&key)? {
                    let at: u64 = std::str::from_utf8(&v.data)
                        .ok()
                        .and_then(|t| t.parse().ok())
                        .unwrap_or(0);
                    if now.saturating_sub(at) > TAKEOVER_STALE_MS {
                        let _ = store.delete(&key, Condition::IfMatch(v.etag), None);
                    }
                }
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn release_takeover(&self, mark: Option<(String, control::ETag)>) {
        if let Some((key, etag)) = mark {
            let _ = self.store().delete(&key, Condition::IfMatch(etag), None);
        }
    }

    /// True when the cluster has nodes and the platform knows every one of their agents is
    /// gone: the scheduler lease, if held, is held by the dead.
    fn scheduler_is_dead(&self, name: &str) -> Result<bool, agent::AgentError> {
        let nodes = scheduler::nodes(self.store(), name)?;
        let launcher = self.driver().launcher();
        Ok(!nodes.is_empty()
            && nodes
                .iter()
                .all(|(n, _)| launcher.liveness(n) == agent::Liveness::Dead))
    }

    /// True when the cluster's create made its machines and the platform no longer has them
    /// (its scale set was deleted outside Terraform). A cluster being created or destroyed,
    /// or one whose create failed before its machines were made, is not gone.
    async fn machines_gone(&self, name: &str) -> Result<bool, PlatformError> {
        if self.driver().cluster_machines_exist(name).await? {
            return Ok(false);
        }
        let cluster = name.to_owned();
        self.blocking("read", KIND, name, move |plane| {
            let store = plane.store();
            let get = |key: &str| store.get(key).map_err(|e| failed("read", &cluster, e));
            let Some(spec) = get(&keys::spec(&cluster))? else {
                return Ok(false);
            };
            let Some(resource) = get(&keys::cluster_resource(&cluster))? else {
                return Ok(false);
            };
            let deleting = records::decode::<ClusterSpec>("cluster spec", &spec.data)
                .map_or(true, |s| s.deleting);
            let pending = records::decode::<ResourceRecord>("cluster resource", &resource.data)
                .map_or(true, |r| r.machines_pending);
            Ok(!deleting && !pending)
        })
        .await
    }

    fn read_cluster_records(&self, name: &str) -> Result<Option<ClusterView>, agent::AgentError> {
        let store = self.store();
        let Some(spec) = store.get(&keys::spec(name))? else {
            return Ok(None);
        };
        let spec: ClusterSpec = records::decode("cluster spec", &spec.data)?;
        let nodes: Vec<NodeRecord> = scheduler::nodes(store, name)?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let resource = match store.get(&keys::cluster_resource(name))? {
            Some(v) => records::decode::<ResourceRecord>("cluster resource", &v.data)?,
            None => ResourceRecord {
                format: records::FORMAT,
                creation_time: String::new(),
                resource: serde_json::Value::Null,
                machines_pending: false,
            },
        };
        let status = match store.get(&keys::status(name))? {
            Some(v) => records::decode::<ClusterStatus>("cluster status", &v.data)?,
            None => ClusterStatus::default(),
        };
        Ok(Some(ClusterView {
            spec,
            nodes,
            resource: resource.resource,
            creation_time: resource.creation_time,
            desired_node_count: status.desired_node_count,
            failing_since_ms: status.failing_since_ms,
            launch_error: status.launch_error,
        }))
    }

    /// The cluster as it is; with `heal`, after a scheduling pass when nobody schedules it (lost
    /// nodes reaped, their attempts requeued, replacements launched), so that what Read reports
    /// is true. Plan-time checks read without healing: a plan changes nothing.
    pub(super) async fn get_cluster(
        &self,
        name: &Name,
        heal: bool,
    ) -> Result<Option<ClusterView>, PlatformError> {
        // Drift: the platform's machines (the scale set) were deleted outside Terraform, so
        // the cluster is gone and the next apply creates it again.
        if heal && self.machines_gone(name.as_str()).await? {
            return Ok(None);
        }
        let name = name.to_string();
        self.blocking("read", KIND, &name.clone(), move |plane| {
            if heal && let Err(e) = plane.nudge(&name) {
                tracing::warn!(cluster = name, error = %e, "schedule the cluster before reading it");
            }
            let view = plane
                .read_cluster_records(&name)
                .map_err(|e| failed("read", &name, e))?;
            // A cluster being deleted is as good as gone.
            Ok(view.filter(|v| !v.spec.deleting))
        })
        .await
    }

    pub(super) async fn update_cluster_scale(
        &self,
        name: &Name,
        scale: &Scale,
        resource: &serde_json::Value,
    ) -> Result<ClusterView, PlatformError> {
        let (cluster, scale, resource) = (name.to_string(), scale.clone(), resource.clone());
        self.blocking("update", KIND, name.as_str(), move |plane| {
            let store = plane.store();
            let name = cluster.as_str();
            // A new generation: a scheduler that reads the new settings before the status
            // below starts over from them itself, the same way.
            let updated = records::update(
                store,
                &keys::spec(name),
                "cluster spec",
                |spec: &mut ClusterSpec| {
                    spec.scale = scale.clone();
                    spec.scale_generation += 1;
                    true
                },
            )
            .map_err(|e| failed("update", name, e))?;
            let Some(updated) = updated else {
                return Err(failed("update", name, "the cluster does not exist"));
            };
            records::update(
                store,
                &keys::cluster_resource(name),
                "cluster resource",
                |r: &mut ResourceRecord| {
                    r.resource = resource.clone();
                    true
                },
            )
            .map_err(|e| failed("update", name, e))?;
            // New scale settings start over from their initial size (the target for manual
            // scale); the scheduler takes it from there.
            plane.reset_status(&updated, "update").map(|_| ())
        })
        .await?;
        self.wait_until_settled(name.as_str(), "update").await
    }

    pub(super) async fn delete_cluster(&self, name: &Name) -> Result<(), PlatformError> {
        let cluster = name.to_string();
        let nodes = self
            .blocking("delete", KIND, name.as_str(), move |plane| {
                plane.mark_deleting(&cluster)
            })
            .await?;
        // The driver stops the nodes (each drains per the cluster's deallocation option first)
        // and removes what it made for them; the records go after.
        self.driver()
            .remove_cluster_nodes(name.as_str(), &nodes)
            .await?;
        let cluster = name.to_string();
        self.blocking("delete", KIND, name.as_str(), move |plane| {
            plane.remove_cluster_records(&cluster, &nodes)
        })
        .await
    }

    /// Marks the cluster deleting, so no scheduler launches replacements meanwhile, and returns
    /// its nodes.
    fn mark_deleting(&self, name: &str) -> Result<Vec<NodeRecord>, PlatformError> {
        let store = self.store();
        // A corrupt spec stops every scheduler by itself, and must not stop the destroy.
        let marked = records::update(
            store,
            &keys::spec(name),
            "cluster spec",
            |spec: &mut ClusterSpec| {
                spec.deleting = true;
                true
            },
        );
        match marked {
            Ok(_) => {}
            Err(e) if e.is_corrupt() => {
                tracing::error!(cluster = name, error = %e, "corrupt cluster spec: deleting anyway");
            }
            Err(e) => return Err(failed("delete", name, e)),
        }
        Ok(scheduler::nodes(store, name)
            .map_err(|e| failed("delete", name, e))?
            .into_iter()
            .map(|(n, _)| n)
            .collect())
    }

    fn remove_cluster_records(
        &self,
        name: &str,
        nodes: &[NodeRecord],
    ) -> Result<(), PlatformError> {
        let store = self.store();
        for node in nodes {
            agent::gpu::release_node(store, node);
        }
        let _ = store.break_lease(&keys::scheduler(name));
        for key in store
            .list(&keys::cluster_prefix(name))
            .map_err(|e| failed("delete", name, e))?
        {
            match store.delete(&key, Condition::Always, None) {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(failed("delete", name, e)),
            }
        }
        Ok(())
    }
}
