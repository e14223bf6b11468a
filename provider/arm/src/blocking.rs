//! The bridge for callers on plain threads (the node agent's synchronous scheduler): one small
//! tokio runtime for the whole process, on its own threads, that [`block_on`] runs futures on
//! while the caller waits on a std channel.
//!
//! It works from a plain thread and from inside another runtime alike (where
//! `Runtime::block_on` would panic), but it blocks the calling thread: async callers `.await`
//! the client directly instead. The runtime is never dropped (dropping one inside an async
//! context panics); its threads sleep when idle.
use std::future::Future;
use std::io;
use std::sync::OnceLock;
use std::sync::mpsc;

use tokio::runtime::{Builder, Runtime};

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The process's ARM runtime, started on first use.
pub fn runtime() -> io::Result<&'static Runtime> {
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    // Requests are network-bound: two threads keep one slow answer from delaying another.
    let runtime = Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("arm")
        .enable_all()
        .build()?;
    if let Err(lost) = RUNTIME.set(runtime) {
        // Another thread started one first; this one has no tasks.
        lost.shutdown_background();
    }
    RUNTIME
        .get()
        .ok_or_else(|| io::Error::other("the ARM runtime did not start"))
}

/// Runs `future` on the ARM runtime and waits for its output on this thread. An `Err` means
/// the future panicked (or the runtime could not start), never an ARM failure, which is in `T`.
pub fn block_on<T: Send + 'static>(
    future: impl Future<Output = T> + Send + 'static,
) -> io::Result<T> {
    let (done, output) = mpsc::sync_channel(1);
    runtime()?.spawn(async move {
        // The caller waits below; if it is gone there is no one to tell.
        let _ = done.send(future.await);
    });
    output
        .recv()
        .map_err(|_| io::Error::other("the ARM call ended without an answer (a panic)"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn runs_from_a_plain_thread_and_inside_another_runtime() {
        assert_eq!(block_on(async { 40 + 2 }).unwrap(), 42);
        let outer = Builder::new_current_thread().enable_all().build().unwrap();
        let got = outer.block_on(async { block_on(async { "inside" }).unwrap() });
        assert_eq!(got, "inside");
    }

    #[test]
    fn a_panic_is_an_error_not_a_hang() {
        let error = block_on(async { assert!(std::hint::black_box(false), "boom") }).unwrap_err();
        assert!(error.to_string().contains("without an answer"), "{error}");
    }
}
