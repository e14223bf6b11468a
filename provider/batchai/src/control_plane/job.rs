//! Jobs as records: the provider writes a job's spec, secrets and status into its cluster's
//! store and wakes the scheduler; the cluster's agents do the rest. Read, wait and termination
//! look only at records: the job status, the master's node record (where its logs are) and the
//! metrics the master publishes.
use std::time::Duration;

use control::jobs::{JobSpec, JobState, JobStatus, LiveMetrics};
use control::records::{self, NodeRecord, keys};
use control::{Condition, Store};

use super::{ControlPlane, ResourceRecord, now_rfc3339};
use crate::names::Name;
use crate::platform::{JobSecrets, JobView, PlatformError};

const KIND: &str = "job";
/// How often waits look at the job again: soon at first (most jobs in a pipeline are short),
/// then backing off so that a day-long run costs the waiting provider next to nothing.
const POLL_FIRST: Duration = Duration::from_millis(20);
const POLL_MAX: Duration = Duration::from_millis(500);
/// How long a wait for an ended job waits for its nodes to let go.
const HOLD_GRACE: Duration = Duration::from_secs(30);

fn failed(operation: &'static str, name: &str, reason: impl ToString) -> PlatformError {
    PlatformError::failed(operation, KIND, name, reason)
}

/// Where the job's stdout and stderr files are: through the cluster's directory mounts (a file
/// server's export) when the prefix is below a mount root, else as the master node sees it (its
/// record says where its work directory is); unexpanded while no node is assigned and no mount
/// tells. Where nodes' disks go with them (`kept`, the control container's URL), logs off the
/// mounts are where the master (the attempt's first node, `master_id`) keeps its copies
/// (every node's, before one is assigned): that stays true after the node is gone.
fn log_directory(
    cluster: Option<&records::ClusterSpec>,
    spec: &JobSpec,
    master_id: Option<&str>,
    master: Option<&NodeRecord>,
    kept: Option<&str>,
) -> String {
    use control::jobs::{MOUNT_ROOT_VAR, split_job_path};
    if let Some(url) = kept
        && !control::jobs::on_mount(
            &spec.std_out_err_path_prefix,
            cluster.map_or(&[], |c| &c.mounts),
            &spec.mounts,
        )
    {
        let copies = format!(
            "{}/{}",
            url.trim_end_matches('/'),
            agent::keep::job_prefix(spec)
        );
        return match master_id {
            Some(id) => format!("{copies}/{id}/stdouterr"),
            None => copies,
        };
    }
    let tail = std::path::Path::new(&spec.path_segment()).join("stdouterr");
    let through_mount = |mounts: &[records::Mount], rest: &str| {
        mounts.iter().find_map(|m| {
            let records::MountSource::Directory { path } = &m.source else {
                return None;
            };
            let below = rest.strip_prefix(m.relative_mount_path.trim_matches('/'))?;
            (below.is_empty() || below.starts_with('/'))
                .then(|| std::path::Path::new(path).join(below.trim_start_matches('/')))
        })
    };
    let from_mounts = match split_job_path(&spec.std_out_err_path_prefix) {
        Ok((None, absolute)) => Some(std::path::PathBuf::from(absolute)),
        Ok((Some(var), rest)) if var == MOUNT_ROOT_VAR => {
            through_mount(cluster.map_or(&[], |c| &c.mounts), rest)
        }
        Ok((Some(_), rest)) => through_mount(&spec.mounts, rest),
        Err(_) => None,
    };
    if let Some(dir) = from_mounts {
        return dir.join(tail).display().to_string();
    }
    master
        .and_then(|m| m.work_dir.as_deref())
        .and_then(|work_dir| {
            agent::execute::JobDirs::for_node(std::path::Path::new(work_dir), spec).ok()
        })
        .map_or_else(
            || format!("{}/{}", spec.std_out_err_path_prefix, tail.display()),
            |dirs| dirs.stdouterr.display().to_string(),
        )
}

/// The record of the attempt's master node, if it has one.
fn master_record(store: &dyn Store, cluster: &str, status: &JobStatus) -> Option<NodeRecord> {
    let master = status.nodes.first()?;
    let value = store.get(&keys::node(cluster, master)).ok().flatten()?;
    records::decode("node record", &value.data).ok()
}

impl ControlPlane {
    pub(super) async fn submit_job(
        &self,
        spec: &JobSpec,
        secrets: &JobSecrets,
        resource: &serde_json::Value,
    ) -> Result<JobView, PlatformError> {
        // The nodes can mount what the job names before it can run anywhere.
        self.driver()
            .grant_mounts(&spec.cluster, &spec.mounts)
            .await?;
        let (spec, secrets, resource) = (spec.clone(), secrets.clone(), resource.clone());
        let name = spec.name.clone();
        self.blocking("create", KIND, &name, move |plane| {
            plane.submit_records(&spec, &secrets, &resource)
        })
        .await
    }

    fn submit_records(
        &self,
        spec: &JobSpec,
        secrets: &JobSecrets,
        resource: &serde_json::Value,
    ) -> Result<JobView, PlatformError> {
        let store = self.store();
        let name = spec.name.as_str();
        let cluster = spec.cluster.as_str();
        let Some(cluster_spec) = store
            .get(&keys::spec(cluster))
            .map_err(|e| failed("create", name, e))?
        else {
            return Err(failed(
                "create",
                name,
                format!("cluster {cluster} does not exist; create it first or fix cluster_id"),
            ));
        };
        let cluster_spec: records::ClusterSpec =
            records::decode("cluster spec", &cluster_spec.data)
                .map_err(|e| failed("create", name, e))?;
        if cluster_spec.deleting {
            return Err(failed(
                "create",
                name,
                format!("cluster {cluster} is being deleted"),
            ));
        }
        match store.put(
            &keys::job_spec(cluster, name),
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
        // If a later write fails, the job is withdrawn again: it must not run unknown to state.
        let put = |key: &str, bytes: &[u8]| {
            store
                .put(key, bytes, Condition::Always, None)
                .map(|_| ())
                .map_err(|e| {
                    for key in [
                        keys::job_status(cluster, name),
                        keys::job_secrets(cluster, name),
                        keys::job_mount_secrets(cluster, name),
                        keys::job_resource(cluster, name),
                        keys::job_spec(cluster, name),
                    ] {
                        let _ = store.delete(&key, Condition::Always, None);
                    }
                    failed("create", name, e)
                })
        };
        if !secrets.env.is_empty() {
            put(
                &keys::job_secrets(cluster, name),
                &serde_json::to_vec(&secrets.env).unwrap_or_default(),
            )?;
        }
        if !secrets.mount_keys.is_empty() {
            put(
                &keys::job_mount_secrets(cluster, name),
                &serde_json::to_vec(&secrets.mount_keys).unwrap_or_default(),
            )?;
        }
        let record = ResourceRecord {
            format: records::FORMAT,
            creation_time: now_rfc3339(),
            resource: resource.clone(),
            machines_pending: false,
        };
        put(
            &keys::job_resource(cluster, name),
            &records::encode(&record),
        )?;
        // The status goes last: it is what makes the job visible to the scheduler.
        let status = JobStatus::queued(&spec.uid, records::now_ms());
        put(&keys::job_status(cluster, name), &records::encode(&status))?;
        // A new job is the moment the user may have fixed what made nodes unusable (a missing
        // file on the share, say): they are replaced now rather than after their backoff.
        let retried = records::update(
            store,
            &keys::status(cluster),
            "cluster status",
            |s: &mut records::ClusterStatus| {
                let waiting = s.next_replacement_ms != 0;
                s.next_replacement_ms = 0;
                waiting
            },
        );
        if let Err(e) = retried {
            tracing::warn!(job = name, error = %e, "ask for unusable nodes to be replaced");
        }
        agent::node::wake_scheduler(store, cluster, name);
        // The job is queued and in the store now; a failed nudge only delays it (waits nudge
        // again).
        if let Err(e) = self.nudge(cluster) {
            tracing::warn!(job = name, error = %e, "schedule the cluster after queueing a job");
        }
        Ok(JobView {
            std_out_err_directory: log_directory(
                Some(&cluster_spec),
                spec,
                None,
                None,
                self.driver.kept_files_url().as_deref(),
            ),
            spec: spec.clone(),
            status,
            resource: resource.clone(),
            creation_time: record.creation_time,
        })
    }

    fn read_job(&self, cluster: &str, name: &str) -> Result<Option<JobView>, PlatformError> {
        let store = self.store();
        let get = |key: &str| store.get(key).map_err(|e| failed("read", name, e));
        let status_key = keys::job_status(cluster, name);
        let (Some(spec), Some(mut status)) =
            (get(&keys::job_spec(cluster, name))?, get(&status_key)?)
        else {
            return Ok(None);
        };
        let corrupt = |e: records::RecordError| PlatformError::Corrupt {
            operation: "read",
            kind: KIND,
            name: name.to_owned(),
            reason: e.to_string(),
        };
        // One corrupt record is the job's problem alone. A corrupt status fails the job, with
        // the reason in its errors. Without its spec the job cannot be shown: its status is
        // failed all the same (its nodes stop it) and the caller gets `Corrupt`, keeps what it
        // knew and can still destroy the job, whose removal needs no spec.
        let spec: JobSpec = match records::decode("job spec", &spec.data) {
            Ok(spec) => spec,
            Err(e) if e.is_corrupt() => {
                agent::dispatch::write_off(store, &status_key, status.etag, "", &e.to_string());
                return Err(corrupt(e));
            }
            Err(e) => return Err(corrupt(e)),
        };
        if let Err(e) = records::decode::<JobStatus>("job status", &status.data)
            && e.is_corrupt()
        {
            agent::dispatch::write_off(store, &status_key, status.etag, &spec.uid, &e.to_string());
            let Some(again) = get(&status_key)? else {
                return Ok(None);
            };
            status = again;
        }
        let record: Option<ResourceRecord> = match get(&keys::job_resource(cluster, name))? {
            Some(v) => match records::decode("job resource", &v.data) {
                Ok(r) => Some(r),
                // Only import reads it; a corrupt one is as good as none.
                Err(e) if e.is_corrupt() => None,
                Err(e) => return Err(corrupt(e)),
            },
            None => None,
        };
        let status: JobStatus = records::decode("job status", &status.data).map_err(corrupt)?;
        // Only for the log path: a cluster spec that cannot be read leaves it as the master
        // sees it.
        let cluster_spec = get(&keys::spec(cluster))
            .ok()
            .flatten()
            .and_then(|v| records::decode::<records::ClusterSpec>("cluster spec", &v.data).ok());
        let master = master_record(store, cluster, &status);
        Ok(Some(JobView {
            std_out_err_directory: log_directory(
                cluster_spec.as_ref(),
                &spec,
                status.nodes.first().map(String::as_str),
                master.as_ref(),
                self.driver.kept_files_url().as_deref(),
            ),
            spec,
            status,
            resource: record
                .as_ref()
                .map(|r| r.resource.clone())
                .unwrap_or_default(),
            creation_time: record.map(|r| r.creation_time).unwrap_or_default(),
        }))
    }

    pub(super) async fn get_job(
        &self,
        cluster: &Name,
        job: &Name,
    ) -> Result<Option<JobView>, PlatformError> {
        let (cluster, job) = (cluster.to_string(), job.to_string());
        self.blocking("read", KIND, &job.clone(), move |plane| {
            let mut view = plane.read_job(&cluster, &job)?;
            // A job that has not ended is reported only after its cluster was scheduled: an
            // attempt on nodes that died goes back to the queue first. Ended jobs (most of a
            // large plan) cost no scheduling pass.
            if view.as_ref().is_some_and(|v| !v.status.state.is_terminal()) {
                if let Err(e) = plane.nudge(&cluster) {
                    tracing::warn!(job, error = %e, "schedule the cluster before reading the job");
                }
                view = plane.read_job(&cluster, &job)?;
            }
            if let Some(v) = &mut view {
                plane.live_metrics(v);
            }
            Ok(view)
        })
        .await
    }

    /// A running job's metrics so far, as its master published them. Ended jobs carry theirs
    /// in the status.
    fn live_metrics(&self, view: &mut JobView) {
        if !matches!(view.status.state, JobState::Running | JobState::Terminating) {
            return;
        }
        let key = keys::job_metrics(&view.spec.cluster, &view.spec.name);
        let Ok(Some(value)) = self.store().get(&key) else {
            return;
        };
        if let Ok(live) = records::decode::<LiveMetrics>("job metrics", &value.data)
            && live.uid == view.spec.uid
            && live.attempt == view.status.attempts
        {
            view.status.metrics.extend(live.metrics);
        }
    }

    /// Whether a node still holds the job: the submission `uid` when given, any submission
    /// under this name otherwise (destroy waits for every one of them).
    fn held_by_a_node(
        &self,
        cluster: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<bool, PlatformError> {
        Ok(agent::scheduler::nodes(self.store(), cluster)
            .map_err(|e| failed("wait for", name, e))?
            .iter()
            .any(|(n, _)| {
                n.job
                    .as_ref()
                    .is_some_and(|a| a.job == name && uid.is_none_or(|u| a.uid == u))
            }))
    }

    /// Waits until the job is terminal (or, with `until_terminal` false, until it left the
    /// queue), keeping the cluster scheduled meanwhile: a cluster scaled to zero has no agent
    /// to grow it.
    pub(super) async fn wait_job(
        &self,
        cluster: &Name,
        name: &Name,
        until_terminal: bool,
    ) -> Result<JobView, PlatformError> {
        let mut last_nudge = tokio::time::Instant::now();
        let mut poll = POLL_FIRST;
        loop {
            let nudge = last_nudge.elapsed() >= Duration::from_secs(1);
            if nudge {
                last_nudge = tokio::time::Instant::now();
            }
            let (c, n) = (cluster.to_string(), name.to_string());
            let (view, done) = self
                .blocking("wait for", KIND, name.as_str(), move |plane| {
                    let Some(view) = plane.read_job(&c, &n)? else {
                        return Err(failed(
                            "wait for",
                            &n,
                            "the job was deleted while waiting for it",
                        ));
                    };
                    let done = if until_terminal {
                        // Ended, and let go by its nodes (their processes stopped, job mounts
                        // released), so that nothing of the job runs once apply returns. A node
                        // that does not let go within a grace period is not waited for.
                        view.status.state.is_terminal()
                            && (!plane.held_by_a_node(&c, &n, Some(&view.spec.uid))?
                                || ended_for(&view) > HOLD_GRACE)
                    } else {
                        view.status.state != JobState::Queued
                    };
                    if !done && nudge {
                        plane.nudge(&c).map_err(|e| failed("wait for", &n, e))?;
                    }
                    Ok((view, done))
                })
                .await?;
            if done {
                return Ok(view);
            }
            if view.status.state.is_terminal() {
                // Ended and about to be let go: look again soon.
                poll = POLL_FIRST / 4;
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 5 / 4).min(POLL_MAX);
        }
    }

    /// Terminates the job if it runs (SIGTERM, a grace period, SIGKILL, done by its nodes),
    /// waits until no node holds it, then removes its records. Outputs and logs stay.
    pub(super) async fn delete_job(
        &self,
        cluster: &Name,
        name: &Name,
    ) -> Result<(), PlatformError> {
        let (c, n) = (cluster.to_string(), name.to_string());
        self.blocking("delete", KIND, name.as_str(), move |plane| {
            plane.request_termination(&c, &n)
        })
        .await?;
        // The job's nodes stop it within their grace period; nodes that are gone are noticed
        // by the scheduler. Either way the wait ends once no node holds the job.
        let mut poll = POLL_FIRST;
        loop {
            let (c, n) = (cluster.to_string(), name.to_string());
            let settled = self
                .blocking("delete", KIND, name.as_str(), move |plane| {
                    let view = plane.read_job(&c, &n)?;
                    let terminal = view.as_ref().is_none_or(|v| v.status.state.is_terminal());
                    if terminal && !plane.held_by_a_node(&c, &n, None)? {
                        return Ok(true);
                    }
                    // Destroy goes on whatever the cluster's state: a pass that fails only
                    // delays it.
                    if let Err(e) = plane.nudge(&c) {
                        tracing::warn!(job = n, error = %e, "schedule the cluster while deleting a job");
                    }
                    Ok(false)
                })
                .await?;
            if settled {
                break;
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 5 / 4).min(POLL_MAX);
        }
        let (c, n) = (cluster.to_string(), name.to_string());
        self.blocking("delete", KIND, name.as_str(), move |plane| {
            let store = plane.store();
            // Every record of the job, its status first so no scheduler sees it half gone.
            let mut keys = vec![keys::job_status(&c, &n)];
            keys.extend(
                store
                    .list(&format!("{}{n}/", keys::jobs_prefix(&c)))
                    .map_err(|e| failed("delete", &n, e))?,
            );
            keys.push(keys::queue_mark(&c, &n));
            for key in keys {
                match store.delete(&key, Condition::Always, None) {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(failed("delete", &n, e)),
                }
            }
            Ok(())
        })
        .await
    }

    fn request_termination(&self, cluster: &str, name: &str) -> Result<(), PlatformError> {
        let store = self.store();
        let status_key = keys::job_status(cluster, name);
        let now = records::now_ms();
        let asked = records::update(store, &status_key, "job status", |s: &mut JobStatus| {
            let before = s.state;
            s.request_termination(now);
            s.state != before || s.terminate_requested
        });
        match asked {
            Ok(_) => Ok(()),
            // Destroy always removes what it owns: a corrupt status is written off (its nodes
            // stop the job) and the wait finds the job ended.
            Err(e) if e.is_corrupt() => {
                if let Some(v) = store
                    .get(&status_key)
                    .map_err(|e| failed("delete", name, e))?
                {
                    agent::dispatch::write_off(store, &status_key, v.etag, "", &e.to_string());
                }
                Ok(())
            }
            Err(e) => Err(failed("delete", name, e)),
        }
    }
}

fn ended_for(view: &JobView) -> Duration {
    let end = view.status.end_ms.unwrap_or(0);
    Duration::from_millis(records::now_ms().saturating_sub(end))
}
