//! The scheduler's job duties: read the queue, place jobs on free nodes (gang, priority,
//! backfill), hand each attempt to its nodes, and send back to the queue the attempts that lost
//! a node. Every hand-over is a compare-and-swap on the job status first and the node records
//! second, so an attempt is owned by exactly one set of nodes.
use std::collections::{BTreeMap, BTreeSet};

use control::jobs::{JobSpec, JobState, JobStatus};
use control::records::{
    self, ClusterSpec, ClusterStatus, ErrorCode, NodeError, NodeRecord, NodeState, Scale, keys,
};
use control::store::Volatile;
use control::{Condition, Store};

use crate::placement::{self, Queued, Running, Start};
use crate::{AgentError, toolkit};

/// How long a dispatched attempt may wait for its nodes to acknowledge before the scheduler
/// considers the hand-over failed.
const ACK_GRACE_MS: u64 = 10_000;

/// A job as the scheduler sees it on one pass.
#[derive(Debug, Clone)]
pub struct Job {
    pub spec: JobSpec,
    pub status: JobStatus,
    pub etag: control::ETag,
}

/// The jobs of a cluster that are not over yet, with their status. Ended jobs cost one read
/// each (their spec is not read); jobs whose spec or status is missing (being created or
/// deleted) are skipped.
pub fn active_jobs(store: &dyn Store, cluster: &str) -> Result<Vec<Job>, AgentError> {
    let prefix = keys::jobs_prefix(cluster);
    let names: BTreeSet<String> = store
        .list(&prefix)?
        .iter()
        .filter_map(|k| {
            k.strip_prefix(&prefix)?
                .split('/')
                .next()
                .map(str::to_owned)
        })
        .collect();
    let mut out = Vec::new();
    for name in names {
        out.extend(read_job(store, cluster, &name, None)?);
    }
    Ok(out)
}

/// One job, if it has not ended: its status, then its spec (unless `known` is its spec
/// already: a spec never changes within a submission). A corrupt record is written off.
fn read_job(
    store: &dyn Store,
    cluster: &str,
    name: &str,
    known: Option<&JobSpec>,
) -> Result<Option<Job>, AgentError> {
    let status_key = keys::job_status(cluster, name);
    let Some(status) = store.get(&status_key)? else {
        return Ok(None);
    };
    let decoded: JobStatus = match records::decode("job status", &status.data) {
        Ok(s) => s,
        Err(e) if e.is_corrupt() => {
            write_off(store, &status_key, status.etag, "", &e.to_string());
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    if decoded.state.is_terminal() {
        return Ok(None);
    }
    if let Some(spec) = known.filter(|s| !decoded.uid.is_empty() && s.uid == decoded.uid) {
        return Ok(Some(Job {
            spec: spec.clone(),
            status: decoded,
            etag: status.etag,
        }));
    }
    let Some(spec) = store.get(&keys::job_spec(cluster, name))? else {
        return Ok(None);
    };
    let spec = match records::decode("job spec", &spec.data) {
        Ok(spec) => spec,
        Err(e) if e.is_corrupt() => {
            write_off(
                store,
                &status_key,
                status.etag,
                &decoded.uid,
                &e.to_string(),
            );
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Some(Job {
        spec,
        status: decoded,
        etag: status.etag,
    }))
}

/// What the scheduler remembers between its dispatch passes: the jobs that had not ended when
/// it last read (or wrote) them. A full pass ([`pass_remembering`]) reads every job and starts
/// memory over; a quick pass ([`pass_from_memory`]), run when the queue has marks, reads only
/// what can have changed since: the jobs the marks name (new submissions) and the ones memory
/// has running (they end, or are handed back, before their nodes mark themselves free). Queued
/// jobs it takes as memory has them: one that changed meanwhile (terminated, say) fails its
/// hand-over's compare-and-swap and is read again. So a quick pass costs a few reads however
/// many jobs the cluster has, which is what lets dispatch keep up with short jobs.
#[derive(Debug, Default)]
pub struct Memory {
    jobs: BTreeMap<String, Job>,
}

impl Memory {
    /// Reads the named jobs again: kept while they have not ended, forgotten otherwise.
    fn refresh(
        &mut self,
        store: &dyn Store,
        cluster: &str,
        names: &BTreeSet<String>,
    ) -> Result<(), AgentError> {
        for name in names {
            let known = self.jobs.remove(name);
            if let Some(job) = read_job(store, cluster, name, known.as_ref().map(|j| &j.spec))? {
                self.jobs.insert(name.clone(), job);
            }
        }
        Ok(())
    }
}

/// Fails a job whose status or spec is corrupt, replacing its status (compare-and-swap on the
/// version that was read), so the rest of the queue goes on and the job's nodes stop it.
pub fn write_off(store: &dyn Store, status_key: &str, etag: control::ETag, uid: &str, why: &str) {
    tracing::error!(
        key = status_key,
        error = why,
        "corrupt job record: failing the job"
    );
    let status = JobStatus::corrupt(uid, why, records::now_ms());
    match store.put(
        status_key,
        &records::encode(&status),
        Condition::IfMatch(etag),
        None,
    ) {
        Ok(_) => {}
        Err(e) if e.is_conflict() || e.is_not_found() => {}
        Err(e) => tracing::warn!(key = status_key, error = %e, "fail a corrupt job"),
    }
}

/// Nodes wanted by queued and running work: what auto-scale grows towards.
pub fn demand(jobs: &[Job]) -> u32 {
    jobs.iter()
        .filter(|j| matches!(j.status.state, JobState::Queued | JobState::Running))
        .map(|j| j.spec.node_count)
        .sum()
}

/// Nodes that can take an attempt now.
pub fn free_nodes(nodes: &[NodeRecord]) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| n.state == NodeState::Idle && !n.drain_requested && n.job.is_none())
        .map(|n| n.id.clone())
        .collect()
}

/// What a pass did, for logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Nodes wanted by the queued and running jobs this pass saw.
    pub demand: u32,
    pub started: Vec<Start>,
    pub requeued: Vec<String>,
    pub failed: Vec<String>,
}

/// What a cluster can offer a queued job: tells a job that waits its turn from one that waits
/// in vain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capacity {
    /// The most nodes the scale settings allow.
    pub max: u32,
    /// Idle or running nodes (not draining): proven to work.
    pub healthy: u32,
    /// Nodes that failed to prepare and are not replaced yet.
    pub unusable: u32,
    /// A node failed to prepare since the last one that prepared well.
    pub failing: bool,
    /// The preparation errors to quote: each unusable node's last, or the cluster's last.
    pub errors: Vec<NodeError>,
}

impl Capacity {
    pub fn of(spec: &ClusterSpec, status: &ClusterStatus, nodes: &[NodeRecord]) -> Self {
        let max = match spec.scale {
            Scale::Manual {
                target_node_count, ..
            } => target_node_count,
            Scale::Auto {
                maximum_node_count, ..
            } => maximum_node_count,
        };
        let count = |f: &dyn Fn(&NodeRecord) -> bool| {
            u32::try_from(nodes.iter().filter(|n| !n.drain_requested && f(n)).count())
                .unwrap_or(u32::MAX)
        };
        // Nodes that joined on their own come on top of what the scale settings launch.
        let max = max.saturating_add(count(&|n| n.joined));
        let mut errors: Vec<NodeError> = nodes
            .iter()
            .filter(|n| n.state == NodeState::Unusable)
            .filter_map(|n| {
                let mut e = n.errors.last()?.clone();
                e.details.insert("node".to_owned(), n.id.clone());
                Some(e)
            })
            .collect();
        if errors.is_empty() {
            errors.extend(status.last_node_error.clone());
        }
        Self {
            max,
            healthy: count(&|n| matches!(n.state, NodeState::Idle | NodeState::Running)),
            unusable: count(&|n| n.state == NodeState::Unusable),
            failing: status.failing_since_ms.is_some(),
            errors,
        }
    }

    /// The most nodes a job can count on: while nodes keep failing to prepare, only the ones
    /// proven to work; otherwise all the scale settings allow, but the unusable ones.
    pub fn possible(&self) -> u32 {
        if self.failing {
            self.healthy
        } else {
            self.max.saturating_sub(self.unusable)
        }
    }
}

/// Whether a queued job that needs `node_count` nodes waits in vain: the new value of its
/// `unschedulable_since_ms`, and whether its `limit_ms` ran out. Pure.
pub fn unschedulable(
    node_count: u32,
    since: Option<u64>,
    limit_ms: u64,
    capacity: &Capacity,
    now_ms: u64,
) -> (Option<u64>, bool) {
    if node_count <= capacity.possible() {
        return (None, false);
    }
    let since = since.unwrap_or(now_ms);
    (Some(since), now_ms.saturating_sub(since) >= limit_ms)
}

/// Why a job that waited in vain failed, with the nodes' errors and what to do.
pub fn unschedulable_error(job: &JobSpec, capacity: &Capacity) -> NodeError {
    let waited = control::duration::format_ms(job.max_unschedulable_ms);
    let cluster = &job.cluster;
    if job.node_count > capacity.max {
        return NodeError {
            code: ErrorCode::NodeCountUnattainable,
            message: format!(
                "the job needs {} nodes at once but cluster {cluster} can have at most {} and waited {waited} for that to change; lower node_count or scale the cluster up, then apply again",
                job.node_count, capacity.max
            ),
            details: BTreeMap::from([
                ("node_count".to_owned(), job.node_count.to_string()),
                ("max_nodes".to_owned(), capacity.max.to_string()),
            ]),
        };
    }
    let causes: Vec<String> = capacity
        .errors
        .iter()
        .map(|e| {
            let node = e.details.get("node").map_or("a node", String::as_str);
            format!("{node}: {} ({})", e.message, e.code)
        })
        .collect();
    let mut details = BTreeMap::from([
        ("node_count".to_owned(), job.node_count.to_string()),
        ("usable_nodes".to_owned(), capacity.healthy.to_string()),
        ("unusable_nodes".to_owned(), capacity.unusable.to_string()),
    ]);
    if let Some(first) = capacity.errors.first() {
        for key in [
            "node",
            "stderr_tail",
            "stdout_path",
            "stderr_path",
            "exit_code",
        ] {
            if let Some(v) = first.details.get(key) {
                details.insert(key.to_owned(), v.clone());
            }
        }
    }
    NodeError {
        code: ErrorCode::ClusterUnusable,
        message: format!(
            "cluster {cluster} had {} usable node(s) of the {} the job needs for {waited}, and its nodes fail to prepare: {}. Fix the cause (the setup task or a mount), then apply again: the next apply replaces the unusable nodes and runs the job again",
            capacity.healthy,
            job.node_count,
            if causes.is_empty() {
                "no error was recorded".to_owned()
            } else {
                causes.join("; ")
            }
        ),
        details,
    }
}

/// Starts or stops the clock of queued jobs that wait in vain, and fails those whose time ran
/// out. Each write is a compare-and-swap on the submission that was read.
fn settle_unschedulable(
    store: &dyn Store,
    jobs: &[Job],
    started: &[Start],
    capacity: &Capacity,
    now_ms: u64,
    out: &mut Pass,
) -> Result<Vec<String>, AgentError> {
    let mut changed_jobs = Vec::new();
    for job in jobs {
        if job.status.state != JobState::Queued
            || job.status.terminate_requested
            || started.iter().any(|s| s.job == job.spec.name)
        {
            continue;
        }
        let (since, over) = unschedulable(
            job.spec.node_count,
            job.status.unschedulable_since_ms,
            job.spec.max_unschedulable_ms,
            capacity,
            now_ms,
        );
        if since == job.status.unschedulable_since_ms && !over {
            continue;
        }
        let key = keys::job_status(&job.spec.cluster, &job.spec.name);
        let uid = job.status.uid.clone();
        let changed = records::update(store, &key, "job status", |s: &mut JobStatus| {
            if s.state != JobState::Queued || s.uid != uid || s.terminate_requested {
                return false;
            }
            if over {
                s.fail(unschedulable_error(&job.spec, capacity), now_ms);
            } else {
                s.unschedulable_since_ms = since;
            }
            true
        })?;
        changed_jobs.push(job.spec.name.clone());
        if over && changed.is_some_and(|s| s.state == JobState::Failed) {
            tracing::warn!(job = %job.spec.name, "the job waited in vain for usable nodes; failed");
            out.failed.push(job.spec.name.clone());
        }
    }
    Ok(changed_jobs)
}

/// One scheduling pass over a cluster's jobs, given its live node records. With `capacity`
/// (a full reconciliation), queued jobs the cluster cannot run are timed and failed.
pub fn pass(
    store: &dyn Store,
    cluster: &str,
    nodes: &[NodeRecord],
    capacity: Option<&Capacity>,
    now_ms: u64,
) -> Result<Pass, AgentError> {
    pass_remembering(
        store,
        cluster,
        nodes,
        capacity,
        now_ms,
        &mut Memory::default(),
    )
}

/// [`pass`], leaving in `memory` the jobs that have not ended, for quick passes to start from.
pub fn pass_remembering(
    store: &dyn Store,
    cluster: &str,
    nodes: &[NodeRecord],
    capacity: Option<&Capacity>,
    now_ms: u64,
    memory: &mut Memory,
) -> Result<Pass, AgentError> {
    take_marks(store, cluster)?;
    let jobs = active_jobs(store, cluster)?;
    decide(store, cluster, nodes, capacity, now_ms, jobs, memory)
}

/// A quick pass (see [`Memory`]): places queued jobs on free nodes and requeues attempts that
/// lost a node, reading only the jobs that can have changed since the last pass.
pub fn pass_from_memory(
    store: &dyn Store,
    cluster: &str,
    nodes: &[NodeRecord],
    now_ms: u64,
    memory: &mut Memory,
) -> Result<Pass, AgentError> {
    let mut names: BTreeSet<String> = take_marks(store, cluster)?
        .into_iter()
        .filter(|mark| !mark.starts_with('.'))
        .collect();
    names.extend(
        memory
            .jobs
            .iter()
            .filter(|(_, j)| j.status.state != JobState::Queued)
            .map(|(name, _)| name.clone()),
    );
    memory.refresh(store, cluster, &names)?;
    let jobs = memory.jobs.values().cloned().collect();
    decide(store, cluster, nodes, None, now_ms, jobs, memory)
}

/// Removes the queue's marks and returns what they name (a job, or `.freed-<node>`). Marks go
/// before the jobs are read: a mark written during the pass survives it and triggers the next.
fn take_marks(store: &dyn Store, cluster: &str) -> Result<Vec<String>, AgentError> {
    let prefix = keys::queue_prefix(cluster);
    let marks = store.list(&prefix)?;
    for mark in &marks {
        // Volatile, as the marks are (see `node::wake_scheduler`).
        let _ = store.delete_volatile(mark, Condition::Always, None);
    }
    Ok(marks
        .iter()
        .filter_map(|m| m.strip_prefix(&prefix).map(str::to_owned))
        .collect())
}

/// The decisions of a pass over `jobs`, as read: requeue attempts that lost a node, place
/// queued jobs, and (with `capacity`) time the ones that wait in vain. Leaves in `memory` the
/// jobs as they now stand: as written where the pass wrote them, read again where it could not
/// tell.
fn decide(
    store: &dyn Store,
    cluster: &str,
    nodes: &[NodeRecord],
    capacity: Option<&Capacity>,
    now_ms: u64,
    mut jobs: Vec<Job>,
    memory: &mut Memory,
) -> Result<Pass, AgentError> {
    let mut out = Pass {
        demand: demand(&jobs),
        ..Pass::default()
    };
    // Jobs this pass changed without knowing their new version: read again at the end.
    let mut stale = BTreeSet::new();
    let by_id: BTreeMap<&str, &NodeRecord> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();

    let mut running = Vec::new();
    for job in &jobs {
        if !matches!(job.status.state, JobState::Running | JobState::Terminating) {
            continue;
        }
        if let Some(problem) = lost_node(job, &by_id, now_ms) {
            abandon(store, job, &problem, now_ms, &mut out)?;
            stale.insert(job.spec.name.clone());
            continue;
        }
        running.push(Running {
            nodes: job.status.nodes.clone(),
            deadline_ms: job
                .status
                .start_ms
                .unwrap_or(now_ms)
                .saturating_add(job.spec.max_wall_clock_ms),
        });
    }

    let queue: Vec<Queued> = jobs
        .iter()
        .filter(|j| {
            j.status.state == JobState::Queued
                && !j.status.terminate_requested
                && !stale.contains(&j.spec.name)
        })
        .map(|j| Queued {
            id: j.spec.name.clone(),
            node_count: j.spec.node_count as usize,
            priority: j.spec.priority,
            sequence: j.spec.created_ms,
            max_runtime_ms: j.spec.max_wall_clock_ms,
        })
        .collect();
    let free = free_nodes(nodes);
    if !queue.is_empty() && !free.is_empty() {
        for start in placement::place(&queue, &running, &free, now_ms) {
            let Some(job) = jobs.iter_mut().find(|j| j.spec.name == start.job) else {
                continue;
            };
            match hand_over(store, cluster, job, &start.nodes, now_ms)? {
                Some((status, etag)) => {
                    tracing::info!(job = %start.job, nodes = ?start.nodes, "dispatched");
                    job.status = status;
                    job.etag = etag;
                    out.started.push(start);
                }
                None => {
                    // Its nodes stay free: another pass places them, with the job read again.
                    stale.insert(start.job.clone());
                    crate::node::wake_scheduler(store, cluster, ".stale");
                }
            }
        }
    }
    if let Some(capacity) = capacity {
        let started = std::mem::take(&mut out.started);
        stale.extend(settle_unschedulable(
            store, &jobs, &started, capacity, now_ms, &mut out,
        )?);
        out.started = started;
    }
    memory.jobs = jobs
        .into_iter()
        .filter(|j| !j.status.state.is_terminal())
        .map(|j| (j.spec.name.clone(), j))
        .collect();
    memory.refresh(store, cluster, &stale)?;
    Ok(out)
}

/// Why a running attempt can no longer finish: one of its nodes is gone, or never took it.
fn lost_node(job: &Job, nodes: &BTreeMap<&str, &NodeRecord>, now_ms: u64) -> Option<String> {
    let current = job.status.assignment(&job.spec.name);
    for id in &job.status.nodes {
        if job.status.reports.contains_key(id) {
            continue;
        }
        let holds = |n: &&NodeRecord| n.job.as_ref() == Some(&current);
        match nodes.get(id.as_str()) {
            None => return Some(format!("node {id} was lost while running the job")),
            Some(n) if !holds(n) => {
                let since = job.status.start_ms.unwrap_or(0);
                if now_ms.saturating_sub(since) > ACK_GRACE_MS {
                    return Some(format!("node {id} is no longer running the job"));
                }
            }
            Some(_) => {}
        }
    }
    None
}

/// Ends an attempt that lost a node: back to the queue, or failed when termination was asked.
fn abandon(
    store: &dyn Store,
    job: &Job,
    problem: &str,
    now_ms: u64,
    out: &mut Pass,
) -> Result<(), AgentError> {
    let key = keys::job_status(&job.spec.cluster, &job.spec.name);
    let current = job.status.assignment(&job.spec.name);
    let attempt = current.attempt;
    let mut failed = false;
    let changed = records::update(store, &key, "job status", |s: &mut JobStatus| {
        if !s.is_current(&current) || !matches!(s.state, JobState::Running | JobState::Terminating)
        {
            return false;
        }
        if s.terminate_requested {
            failed = true;
            s.fail(
                NodeError {
                    code: ErrorCode::JobTerminated,
                    message: format!("the job was terminated ({problem})"),
                    details: BTreeMap::new(),
                },
                now_ms,
            );
        } else {
            s.requeue(now_ms);
        }
        true
    })?;
    if changed.is_some() {
        tracing::warn!(job = %job.spec.name, attempt, problem, "attempt abandoned");
        if failed {
            out.failed.push(job.spec.name.clone());
        } else {
            out.requeued.push(job.spec.name.clone());
        }
    }
    Ok(())
}

/// Reserves `count` TCP ports for a rendezvous by binding and releasing them. On the local
/// platform every node shares this machine's port space.
fn reserve_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .filter_map(|_| std::net::TcpListener::bind(("127.0.0.1", 0)).ok())
        .collect();
    listeners
        .iter()
        .filter_map(|l| l.local_addr().ok().map(|a| a.port()))
        .collect()
}

/// Hands an attempt to its nodes: the job status first (so no other scheduler can start the same
/// attempt), then each node. If a node was taken meanwhile, the hand-over is undone. The job's
/// new status and version once handed over; `None` when it was not (the job changed since it
/// was read, or a node was taken).
fn hand_over(
    store: &dyn Store,
    cluster: &str,
    job: &Job,
    nodes: &[String],
    now_ms: u64,
) -> Result<Option<(JobStatus, control::ETag)>, AgentError> {
    let ports = reserve_ports(toolkit::ports_needed(
        &job.spec.toolkit,
        job.spec.node_count,
    ));
    let mut status = job.status.clone();
    // Statuses written before submissions were told apart carry no uid.
    if status.uid.is_empty() {
        status.uid.clone_from(&job.spec.uid);
    }
    if !status.dispatch(nodes.to_vec(), ports, now_ms) {
        return Ok(None);
    }
    let key = keys::job_status(cluster, &job.spec.name);
    let etag = match store.put(
        &key,
        &records::encode(&status),
        Condition::IfMatch(job.etag.clone()),
        None,
    ) {
        Ok(etag) => etag,
        Err(e) if e.is_conflict() || e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let assignment = status.assignment(&job.spec.name);
    let mut taken = Vec::new();
    for node in nodes {
        let mut ok = false;
        // Volatile, as every node record write (see `node::update_record`).
        records::update(
            &Volatile(store),
            &keys::node(cluster, node),
            "node record",
            |r: &mut NodeRecord| {
                ok = r.job.is_none() && !r.drain_requested && r.state == NodeState::Idle;
                if ok {
                    r.job = Some(assignment.clone());
                }
                ok
            },
        )?;
        if !ok {
            break;
        }
        taken.push(node.clone());
    }
    if taken.len() == nodes.len() {
        return Ok(Some((status, etag)));
    }
    tracing::warn!(job = %job.spec.name, "a node was taken during dispatch; undoing it");
    // The job goes back to the queue first, so a node that already started the attempt finds
    // it over and stops. The attempt number stays used: reusing it would let a late thread of
    // this attempt pass for the next one.
    records::update(store, &key, "job status", |s: &mut JobStatus| {
        if !s.is_current(&assignment) || s.state != JobState::Running {
            return false;
        }
        s.requeue(now_ms);
        true
    })?;
    for node in &taken {
        records::update(
            &Volatile(store),
            &keys::node(cluster, node),
            "node record",
            |r: &mut NodeRecord| {
                let mine = r.job.as_ref() == Some(&assignment);
                if mine {
                    r.job = None;
                    if r.state == NodeState::Running {
                        r.state = NodeState::Idle;
                    }
                }
                mine
            },
        )?;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::jobs::{Assignment, Priority, Retry, Toolkit};

    fn spec(name: &str, nodes: u32, created: u64) -> JobSpec {
        JobSpec {
            format: 1,
            name: name.into(),
            cluster: "c".into(),
            uid: "u".into(),
            created_ms: created,
            node_count: nodes,
            priority: Priority::Normal,
            toolkit: Toolkit::CustomToolkit {
                command_line: "true".into(),
            },
            job_preparation: None,
            environment_variables: BTreeMap::new(),
            has_secrets: false,
            input_directories: vec![],
            output_directories: vec![],
            std_out_err_path_prefix: "/tmp".into(),
            mounts: vec![],
            max_wall_clock_ms: 60_000,
            max_unschedulable_ms: control::jobs::DEFAULT_MAX_UNSCHEDULABLE_MS,
            termination_grace_ms: control::jobs::DEFAULT_TERMINATION_GRACE_MS,
            retry: Retry::default(),
            container: None,
        }
    }

    fn node(id: &str) -> NodeRecord {
        NodeRecord {
            format: 1,
            id: id.into(),
            cluster: "c".into(),
            state: NodeState::Idle,
            pid: None,
            gpus: vec![],
            launched_at_ms: 0,
            last_heartbeat_ms: 1,
            errors: vec![],
            drain_requested: false,
            job: None,
            features: Vec::new(),
            work_dir: None,
            joined: false,
            host: None,
            address: None,
        }
    }

    fn put<T: serde::Serialize>(store: &dyn Store, key: &str, value: &T) {
        store
            .put(key, &records::encode(value), Condition::Always, None)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    fn status(store: &dyn Store, job: &str) -> JobStatus {
        let v = store
            .get(&keys::job_status("c", job))
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no status for {job}"));
        records::decode("job status", &v.data).unwrap_or_else(|e| panic!("{e}"))
    }

    fn live_nodes(store: &dyn Store) -> Vec<NodeRecord> {
        crate::scheduler::nodes(store, "c")
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    #[test]
    fn gang_dispatch_then_requeue_when_a_node_is_lost() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = control::DirStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        for n in ["node-1", "node-2", "node-3"] {
            put(&store, &keys::node("c", n), &node(n));
        }
        put(&store, &keys::job_spec("c", "big"), &spec("big", 2, 1));
        put(
            &store,
            &keys::job_status("c", "big"),
            &JobStatus::queued("u", 1),
        );
        put(&store, &keys::job_spec("c", "huge"), &spec("huge", 4, 2));
        put(
            &store,
            &keys::job_status("c", "huge"),
            &JobStatus::queued("u", 2),
        );

        let done =
            pass(&store, "c", &live_nodes(&store), None, 100).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(done.started.len(), 1);
        assert_eq!(done.started[0].job, "big");
        let big = status(&store, "big");
        assert_eq!(
            (big.state, big.attempts, big.nodes.len()),
            (JobState::Running, 1, 2)
        );
        assert_eq!(status(&store, "huge").state, JobState::Queued);
        let holders: Vec<String> = live_nodes(&store)
            .into_iter()
            .filter(|n| n.job.is_some())
            .map(|n| n.id)
            .collect();
        assert_eq!(holders, big.nodes);

        // One of its nodes disappears (reaped): the attempt goes back to the queue.
        let lost = &big.nodes[0];
        store
            .delete(&keys::node("c", lost), Condition::Always, None)
            .unwrap_or_else(|e| panic!("{e}"));
        let done =
            pass(&store, "c", &live_nodes(&store), None, 200).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(done.requeued, ["big"]);
        let big = status(&store, "big");
        assert_eq!(
            (big.state, big.attempts, big.retries),
            (JobState::Queued, 1, 0)
        );
        assert_eq!(demand(&active_jobs(&store, "c").unwrap_or_default()), 6);
    }

    #[test]
    fn jobs_that_wait_in_vain_are_timed_and_failed() {
        let cap = |max, healthy, unusable, failing| Capacity {
            max,
            healthy,
            unusable,
            failing,
            errors: vec![],
        };
        // (case, node_count, since, capacity, now, want since, want over)
        let cases = [
            ("fits", 2, None, cap(2, 2, 0, false), 100, None, false),
            (
                "busy nodes still count",
                2,
                Some(50),
                cap(2, 2, 0, false),
                100,
                None,
                false,
            ),
            (
                "growing cluster",
                2,
                None,
                cap(4, 0, 0, false),
                100,
                None,
                false,
            ),
            (
                "all unusable starts the clock",
                1,
                None,
                cap(2, 0, 2, true),
                100,
                Some(100),
                false,
            ),
            (
                "replacements preparing do not count while failing",
                1,
                Some(100),
                cap(2, 0, 0, true),
                200,
                Some(100),
                false,
            ),
            (
                "time runs out",
                1,
                Some(100),
                cap(2, 0, 2, true),
                100 + 300_000,
                Some(100),
                true,
            ),
            (
                "one unusable of two, gang of two",
                2,
                None,
                cap(2, 1, 1, false),
                100,
                Some(100),
                false,
            ),
            (
                "more than the cluster can have",
                3,
                Some(0),
                cap(2, 2, 0, false),
                300_000,
                Some(0),
                true,
            ),
            (
                "healed clears the clock",
                1,
                Some(0),
                cap(2, 1, 1, true),
                300_000,
                None,
                false,
            ),
        ];
        for (name, nodes, since, capacity, now, want_since, want_over) in cases {
            assert_eq!(
                unschedulable(nodes, since, 300_000, &capacity, now),
                (want_since, want_over),
                "{name}"
            );
        }
    }

    #[test]
    fn replacement_backoff_doubles_up_to_fifteen_minutes() {
        let waits: Vec<u64> = (0..8).map(records::replacement_backoff_ms).collect();
        assert_eq!(
            waits,
            [
                30_000, 60_000, 120_000, 240_000, 480_000, 900_000, 900_000, 900_000
            ]
        );
    }

    #[test]
    fn quick_passes_read_only_marked_and_running_jobs() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = control::store::Counting::new(
            std::sync::Arc::new(
                control::DirStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}")),
            ),
            false,
        );
        for n in ["node-1", "node-2", "node-3"] {
            put(&store, &keys::node("c", n), &node(n));
        }
        // Many ended jobs, which a full pass reads and a quick one must not.
        for i in 0..20 {
            let name = format!("old-{i}");
            put(&store, &keys::job_spec("c", &name), &spec(&name, 1, 0));
            let mut ended = JobStatus::queued("u", 0);
            ended.state = JobState::Succeeded;
            put(&store, &keys::job_status("c", &name), &ended);
        }
        for (name, created) in [("first", 1), ("doomed", 2)] {
            put(&store, &keys::job_spec("c", name), &spec(name, 2, created));
            put(
                &store,
                &keys::job_status("c", name),
                &JobStatus::queued("u", created),
            );
        }
        let mut memory = Memory::default();
        let done = pass_remembering(&store, "c", &live_nodes(&store), None, 100, &mut memory)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(done.started.len(), 1, "{done:?}");

        // Meanwhile the first job ends and frees its nodes, the provider terminates the queued
        // job, and submits a new one.
        let mut first = status(&store, "first");
        first.state = JobState::Succeeded;
        put(&store, &keys::job_status("c", "first"), &first);
        for n in &first.nodes {
            put(&store, &keys::node("c", n), &node(n));
            crate::node::wake_scheduler(&store, "c", &format!(".freed-{n}"));
        }
        let mut doomed = status(&store, "doomed");
        doomed.request_termination(150);
        put(&store, &keys::job_status("c", "doomed"), &doomed);
        put(&store, &keys::job_spec("c", "next"), &spec("next", 1, 3));
        put(
            &store,
            &keys::job_status("c", "next"),
            &JobStatus::queued("u", 3),
        );
        crate::node::wake_scheduler(&store, "c", "next");

        let nodes = live_nodes(&store);
        let before = store.requests();
        let done = pass_from_memory(&store, "c", &nodes, 200, &mut memory)
            .unwrap_or_else(|e| panic!("{e}"));
        let asked = store.requests().since(&before);
        assert_eq!(
            done.started
                .iter()
                .map(|s| s.job.as_str())
                .collect::<Vec<_>>(),
            ["next"]
        );
        // The ended job's status, the new job's status and spec, the terminated job's status
        // once its hand-over failed, the new job's node record: no other job is read.
        assert_eq!((asked.get, asked.list), (5, 1), "{asked}");
        assert_eq!(status(&store, "doomed").state, JobState::Failed);
        assert_eq!(status(&store, "next").state, JobState::Running);
        assert_eq!(
            memory.jobs.keys().map(String::as_str).collect::<Vec<_>>(),
            ["next"]
        );
    }

    #[test]
    fn a_node_taken_meanwhile_undoes_the_hand_over() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = control::DirStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let mut busy = node("node-2");
        busy.job = Some(Assignment {
            job: "other".into(),
            uid: "u".into(),
            attempt: 1,
        });
        put(&store, &keys::node("c", "node-1"), &node("node-1"));
        put(&store, &keys::node("c", "node-2"), &busy);
        put(&store, &keys::job_spec("c", "j"), &spec("j", 2, 1));
        put(
            &store,
            &keys::job_status("c", "j"),
            &JobStatus::queued("u", 1),
        );
        // A stale snapshot that still thinks node-2 is free.
        let stale = vec![node("node-1"), node("node-2")];
        let done = pass(&store, "c", &stale, None, 100).unwrap_or_else(|e| panic!("{e}"));
        assert!(done.started.is_empty());
        let j = status(&store, "j");
        assert_eq!((j.state, j.attempts), (JobState::Queued, 1));
        assert!(
            live_nodes(&store)
                .iter()
                .find(|n| n.id == "node-1")
                .is_some_and(|n| n.job.is_none())
        );
    }
}
