//! The bridge from the synchronous `Store` trait to the asynchronous Azure SDK: one small tokio
//! runtime for the whole process, on its own threads, which every blob store's requests run on.
//!
//! A caller hands a future over and blocks on a std channel until it is done. That works from a
//! plain thread (the agent) and from inside another runtime (the provider) alike, where
//! `Runtime::block_on` would panic. It does block the calling thread, so async callers wrap
//! store calls in `spawn_blocking` as they do for the directory store.
//!
//! One runtime per process rather than one per store: stores are opened and dropped freely (one
//! per test, one per provider configure), and dropping a runtime inside an async context panics
//! while this one is never dropped; its two threads sleep when there is nothing to do.
use std::future::Future;
use std::io;
use std::sync::OnceLock;
use std::sync::mpsc;

use tokio::runtime::{Builder, Runtime};

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The process's store runtime, started on first use.
pub(crate) fn get() -> io::Result<&'static Runtime> {
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    // Requests are network-bound: two threads keep one slow response from delaying the others.
    let runtime = Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("control-blob")
        .enable_all()
        .build()?;
    if let Err(lost) = RUNTIME.set(runtime) {
        // Another thread started one first. Dropping this one could block (or panic when this
        // thread runs inside a runtime); it has no tasks, so let it go in the background.
        lost.shutdown_background();
    }
    RUNTIME
        .get()
        .ok_or_else(|| io::Error::other("the store runtime did not start"))
}

/// Runs `future` on the store runtime and waits for its output on this thread.
pub(crate) fn run<T: Send + 'static>(
    future: impl Future<Output = T> + Send + 'static,
) -> io::Result<T> {
    let (done, output) = mpsc::sync_channel(1);
    get()?.spawn(async move {
        // The caller may have gone (it never does: it waits below); nothing to do then.
        let _ = done.send(future.await);
    });
    output.recv().map_err(|_| {
        io::Error::other("the request ended without an answer (a panic in the blob client)")
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn runs_from_a_plain_thread() {
        assert_eq!(run(async { 1 + 1 }).unwrap(), 2);
    }

    #[test]
    fn runs_from_inside_another_runtime_without_panicking() {
        let outer = Builder::new_current_thread().enable_all().build().unwrap();
        let got = outer.block_on(async {
            tokio::task::spawn_blocking(|| run(async { "blocking pool" }).unwrap())
                .await
                .unwrap()
        });
        assert_eq!(got, "blocking pool");
        // Directly on a runtime thread too: it blocks that thread, but the work runs elsewhere.
        let got = outer.block_on(async { run(async { "runtime thread" }).unwrap() });
        assert_eq!(got, "runtime thread");
    }

    #[test]
    fn a_panicking_request_is_an_error_not_a_hang() {
        let error = run(async { assert!(std::hint::black_box(false), "boom") }).unwrap_err();
        assert!(error.to_string().contains("without an answer"), "{error}");
    }
}
