//! `cargo xtask bench store`: latency of blob-store operations against Azurite, through the
//! synchronous `Store` calls the agent and provider make (runtime hand-off included).
//!
//! Azurite runs on this machine in memory, so these figures are the store's own overhead plus
//! Azurite's, not Azure's network latency. Printed, never asserted.
use std::time::{Duration, Instant};

use anyhow::Context as _;
use control::{Condition, Store as _};
use control_blob::azurite::Azurite;

/// Operations timed per kind.
const RUNS: usize = 300;

fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    format!(
        "p50 {:.2} ms, p99 {:.2} ms (n={})",
        pick(0.5).as_secs_f64() * 1e3,
        pick(0.99).as_secs_f64() * 1e3,
        samples.len()
    )
}

/// Times `op` `RUNS` times after a few untimed warm-up calls.
fn time(mut op: impl FnMut(usize) -> anyhow::Result<()>) -> anyhow::Result<String> {
    for i in 0..5 {
        op(i)?;
    }
    let mut samples = Vec::with_capacity(RUNS);
    for i in 0..RUNS {
        let started = Instant::now();
        op(i)?;
        samples.push(started.elapsed());
    }
    Ok(percentiles(samples))
}

pub fn store_bench() -> anyhow::Result<()> {
    let azurite = Azurite::start()?;
    let (store, _) = azurite.fresh_store().context("open a store on Azurite")?;
    // A node record's size.
    let record = vec![b'x'; 1024];
    let mut etag = store.put("clusters/c/nodes/n0", &record, Condition::Always, None)?;
    for node in 1..20 {
        store.put(
            &format!("clusters/c/nodes/n{node}"),
            &record,
            Condition::Always,
            None,
        )?;
    }
    println!(
        "blob store on Azurite {} (1 KiB values):",
        control_blob::azurite::VERSION
    );
    println!(
        "  get:          {}",
        time(|_| {
            store.get("clusters/c/nodes/n0")?;
            Ok(())
        })?
    );
    println!(
        "  CAS put:      {}",
        time(|_| {
            etag = store.put(
                "clusters/c/nodes/n0",
                &record,
                Condition::IfMatch(etag.clone()),
                None,
            )?;
            Ok(())
        })?
    );
    println!(
        "  list (20):    {}",
        time(|_| {
            store.list("clusters/c/nodes/")?;
            Ok(())
        })?
    );
    let lease = store.acquire_lease("clusters/c/nodes/n1", control::store::MAX_LEASE)?;
    println!(
        "  lease renew:  {}",
        time(|_| {
            store.renew_lease("clusters/c/nodes/n1", &lease)?;
            Ok(())
        })?
    );
    let line = vec![b'l'; 120];
    println!(
        "  append:       {}",
        time(|_| {
            store.append("jobs/j/log", &line)?;
            Ok(())
        })?
    );
    Ok(())
}
