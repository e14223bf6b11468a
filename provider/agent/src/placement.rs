//! Job placement: which queued jobs start now and on which nodes. Priority first (`high`,
//! `normal`, `low`), first come first served within a priority, all of a job's nodes at once
//! (gang scheduling), and EASY backfill: the first job that does not fit reserves the time at
//! which enough nodes free up, and later jobs may start early only where they cannot delay it.
//! A pure function over a snapshot, so the scheduler can run it on every tick and tests can
//! table-drive it.
use std::collections::BTreeSet;

pub use control::jobs::Priority;

/// A job waiting for nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub id: String,
    pub node_count: usize,
    pub priority: Priority,
    /// Submission order: lower came first.
    pub sequence: u64,
    /// The job's wall-clock limit: the longest it can hold its nodes.
    pub max_runtime_ms: u64,
}

/// A job holding nodes until at most `deadline_ms` (its start plus its wall-clock limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub nodes: Vec<String>,
    pub deadline_ms: u64,
}

/// A decision: start `job` on `nodes` now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub job: String,
    pub nodes: Vec<String>,
}

/// The reservation the first blocked job holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reservation {
    /// When enough nodes will be free for the blocked job (`u64::MAX`: not foreseeable).
    shadow_ms: u64,
    /// Free nodes the blocked job will not need even at `shadow_ms`.
    extra: usize,
}

fn reserve(need: usize, free: usize, running: &[Running]) -> Reservation {
    let mut deadlines: Vec<(u64, usize)> = running
        .iter()
        .map(|r| (r.deadline_ms, r.nodes.len()))
        .collect();
    deadlines.sort_unstable();
    let mut available = free;
    for (deadline, nodes) in deadlines {
        available += nodes;
        if available >= need {
            return Reservation {
                shadow_ms: deadline,
                extra: available - need,
            };
        }
    }
    // Not even every running job finishing frees enough (nodes are unusable, or the cluster must
    // grow first): a reservation would block everything behind it for nothing.
    Reservation {
        shadow_ms: u64::MAX,
        extra: free,
    }
}

/// Decides which queued jobs start now on the `free` nodes (idle, usable, unassigned).
pub fn place(queue: &[Queued], running: &[Running], free: &[String], now_ms: u64) -> Vec<Start> {
    let mut order: Vec<&Queued> = queue.iter().collect();
    order.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(a.sequence.cmp(&b.sequence))
    });
    let mut free: BTreeSet<String> = free.iter().cloned().collect();
    let mut starts = Vec::new();
    let mut reservation: Option<Reservation> = None;
    for job in order {
        if job.node_count == 0 || job.node_count > free.len() {
            if reservation.is_none() && job.node_count > 0 {
                reservation = Some(reserve(job.node_count, free.len(), running));
            }
            continue;
        }
        if let Some(r) = &mut reservation {
            let ends_before_shadow = now_ms.saturating_add(job.max_runtime_ms) <= r.shadow_ms;
            if !ends_before_shadow {
                if job.node_count > r.extra {
                    continue;
                }
                r.extra -= job.node_count;
            }
        }
        let nodes: Vec<String> = free.iter().take(job.node_count).cloned().collect();
        for n in &nodes {
            free.remove(n);
        }
        starts.push(Start {
            job: job.id.clone(),
            nodes,
        });
    }
    starts
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn job(id: &str, nodes: usize, priority: Priority, sequence: u64, minutes: u64) -> Queued {
        Queued {
            id: id.into(),
            node_count: nodes,
            priority,
            sequence,
            max_runtime_ms: minutes * MIN,
        }
    }

    fn nodes(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    fn started(starts: &[Start]) -> Vec<(&str, usize)> {
        starts
            .iter()
            .map(|s| (s.job.as_str(), s.nodes.len()))
            .collect()
    }

    #[test]
    fn placement_cases() {
        use Priority::{High, Low, Normal};
        let busy_until = |minutes: u64, ids: &[&str]| Running {
            nodes: nodes(ids),
            deadline_ms: minutes * MIN,
        };
        struct Case {
            name: &'static str,
            queue: Vec<Queued>,
            running: Vec<Running>,
            free: Vec<String>,
            want: Vec<(&'static str, usize)>,
        }
        let cases = [
            Case {
                name: "priority before arrival order",
                queue: vec![
                    job("low", 1, Low, 1, 10),
                    job("high", 1, High, 3, 10),
                    job("normal", 1, Normal, 2, 10),
                ],
                running: vec![],
                free: nodes(&["a", "b"]),
                want: vec![("high", 1), ("normal", 1)],
            },
            Case {
                name: "first come first served within a priority",
                queue: vec![
                    job("second", 1, Normal, 2, 10),
                    job("first", 1, Normal, 1, 10),
                ],
                running: vec![],
                free: nodes(&["a"]),
                want: vec![("first", 1)],
            },
            Case {
                name: "gang: all nodes at once or not at all",
                queue: vec![job("big", 3, Normal, 1, 10)],
                running: vec![busy_until(10, &["c"])],
                free: nodes(&["a", "b"]),
                want: vec![],
            },
            Case {
                name: "backfill that ends before the reservation",
                queue: vec![job("big", 3, Normal, 1, 60), job("short", 1, Normal, 2, 5)],
                running: vec![busy_until(10, &["c"])],
                free: nodes(&["a", "b"]),
                want: vec![("short", 1)],
            },
            Case {
                name: "no backfill that would delay the blocked job",
                queue: vec![job("big", 3, Normal, 1, 60), job("long", 1, Normal, 2, 30)],
                running: vec![busy_until(10, &["c"])],
                free: nodes(&["a", "b"]),
                want: vec![],
            },
            Case {
                name: "backfill on nodes the blocked job will not need",
                queue: vec![job("big", 3, Normal, 1, 60), job("long", 1, Normal, 2, 30)],
                running: vec![busy_until(10, &["c", "d"])],
                free: nodes(&["a", "b"]),
                want: vec![("long", 1)],
            },
            Case {
                name: "only the spare nodes are backfilled",
                queue: vec![
                    job("big", 3, Normal, 1, 60),
                    job("long-1", 1, Normal, 2, 30),
                    job("long-2", 1, Normal, 3, 30),
                ],
                running: vec![busy_until(10, &["c", "d"])],
                free: nodes(&["a", "b"]),
                want: vec![("long-1", 1)],
            },
            Case {
                name: "a job that can never be satisfied does not block others",
                queue: vec![job("huge", 9, High, 1, 60), job("small", 1, Low, 2, 600)],
                running: vec![busy_until(10, &["c"])],
                free: nodes(&["a"]),
                want: vec![("small", 1)],
            },
        ];
        for case in cases {
            let got = place(&case.queue, &case.running, &case.free, 0);
            assert_eq!(started(&got), case.want, "{}", case.name);
        }
    }

    #[test]
    fn started_jobs_get_disjoint_nodes() {
        let queue: Vec<Queued> = (0..4)
            .map(|i| job(&format!("j{i}"), 2, Priority::Normal, i, 10))
            .collect();
        let free = nodes(&["a", "b", "c", "d", "e"]);
        let starts = place(&queue, &[], &free, 0);
        let mut used: Vec<&String> = starts.iter().flat_map(|s| &s.nodes).collect();
        let total = used.len();
        used.sort();
        used.dedup();
        assert_eq!(used.len(), total, "a node was given twice");
        assert_eq!(started(&starts), vec![("j0", 2), ("j1", 2)]);
    }
}
