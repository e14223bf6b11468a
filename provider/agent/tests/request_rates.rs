//! A node's requests to a store without change notifications (a blob container) stay within
//! what `Rates` states. The loops run twenty times faster than in an agent, so a window of 3 s
//! stands for a minute; a slow machine only makes fewer requests, never more.
use std::sync::Arc;
use std::time::Duration;

use agent::Rates;

#[test]
fn an_idle_and_a_busy_node_stay_within_the_stated_rates() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = control::DirStore::open(dir.path().join("store")).unwrap_or_else(|e| panic!("{e}"));
    let rates = Rates {
        heartbeat: Rates::STANDARD.heartbeat / 20,
        reconcile: Rates::STANDARD.reconcile / 20,
        poll: Rates::STANDARD.poll / 20,
    };
    let minute = Duration::from_secs(60) / 20;
    let measured = agent::measure::count_requests(Arc::new(store), dir.path(), rates, minute)
        .unwrap_or_else(|e| panic!("{e}"));
    for node in &measured {
        eprintln!(
            "{}{}: idle {}; busy {}",
            node.node,
            if node.scheduler { " (scheduler)" } else { "" },
            node.idle,
            node.busy
        );
    }
    let others: Vec<_> = measured.iter().filter(|n| !n.scheduler).collect();
    assert_eq!(others.len(), 1, "one node schedules: {measured:?}");
    let node = others[0];
    assert!(
        node.idle.total() <= rates.idle_within(minute),
        "idle: {} > {}",
        node.idle,
        rates.idle_within(minute)
    );
    assert!(
        node.busy.total() <= rates.busy_within(minute, true),
        "busy: {} > {}",
        node.busy,
        rates.busy_within(minute, true)
    );
    // Reads of its record, heartbeats and election requests all happened.
    assert!(
        node.idle.get > 0 && node.idle.put > 0 && node.idle.lease > 0,
        "{}",
        node.idle
    );
    // The scheduler adds its queue and its passes over 2 nodes and (busy) 2 running jobs.
    let scheduler = measured
        .iter()
        .find(|n| n.scheduler)
        .unwrap_or_else(|| panic!("no scheduler: {measured:?}"));
    let idle = rates.idle_within(minute) + rates.scheduler_within(minute, 2, 0, 0);
    let busy = rates.busy_within(minute, true) + rates.scheduler_within(minute, 2, 2, 2);
    assert!(
        scheduler.idle.total() <= idle,
        "{} > {idle}",
        scheduler.idle
    );
    assert!(
        scheduler.busy.total() <= busy,
        "{} > {busy}",
        scheduler.busy
    );
}
