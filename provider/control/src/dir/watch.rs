//! Change notifications for the directory store: one inotify instance watching the directories
//! of the watched prefixes. Values are replaced by rename and removed by unlink, so a change of
//! key `a/b/c` is an `IN_MOVED_TO` or `IN_DELETE` of `values/a/b/c~v` in directory `values/a/b`;
//! temporary files, locks and other names are events the watch reads and drops.
//!
//! Closing an inotify instance waits for the kernel's SRCU grace period (16 ms measured here),
//! which would hold up every attempt's end, so a dropped watch removes its watches (which does
//! not wait) and leaves its instance to the store's [`Instances`] for the next watch.
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read as _};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{VALUE_SUFFIX, is_segment, private_dir_all};
use crate::store::{Changed, StoreError, Watch, validate_key};

/// What changes a value: renamed into place (every write), unlinked (a delete), or written in
/// place (only by hand: the store itself never does). The directory's own removal ends its
/// watch.
const MASK: u32 = libc::IN_MOVED_TO
    | libc::IN_DELETE
    | libc::IN_CLOSE_WRITE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;

/// `struct inotify_event` without its name: `wd`, `mask`, `cookie`, `len`.
const EVENT_HEADER: usize = 16;

/// Room for many events per read (each is at most the header and a 256-byte name).
const BUFFER: usize = 16 * 1024;

/// The most idle instances a store keeps: as many as watches were dropped at once, which is
/// one per node and per running attempt of the processes sharing this store value.
const MAX_IDLE: usize = 64;

/// Inotify instances that watches no longer use, for new watches to reuse.
#[derive(Debug, Default)]
pub(super) struct Instances(Mutex<Vec<File>>);

impl Instances {
    fn take(&self) -> Option<File> {
        self.0.lock().ok()?.pop()
    }

    fn give(&self, file: File) {
        if let Ok(mut idle) = self.0.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(file);
        }
        // Otherwise it is closed here, waiting as closing does: rare, and never wrong.
    }
}

/// One watched directory and the prefixes in it: their index and how names must start.
#[derive(Debug)]
struct Watched {
    wd: i32,
    prefixes: Vec<(usize, String)>,
}

/// A [`Watch`] on a directory store.
#[derive(Debug)]
pub(super) struct DirWatch {
    /// Always there until the watch is dropped.
    inotify: Option<File>,
    instances: Arc<Instances>,
    dirs: Vec<Watched>,
    count: usize,
    buffer: Vec<u8>,
}

impl DirWatch {
    /// Watches the directory of each prefix under `values` (created if needed, so that a
    /// queue nobody wrote to yet can be watched).
    pub(super) fn new(
        values: &Path,
        prefixes: &[&str],
        instances: &Arc<Instances>,
    ) -> Result<Self, StoreError> {
        const OP: &str = "watch";
        let io_error = |key: &str| {
            let key = key.to_owned();
            move |source| StoreError::Io {
                op: OP,
                key,
                source,
            }
        };
        if prefixes.len() > Changed::MAX_PREFIXES {
            return Err(StoreError::InvalidKey {
                op: OP,
                key: prefixes.join(" "),
                reason: "a watch takes at most 64 prefixes",
            });
        }
        let mut watch = Self {
            inotify: None,
            instances: instances.clone(),
            dirs: Vec::new(),
            count: prefixes.len(),
            buffer: vec![0; BUFFER],
        };
        watch.inotify = Some(match instances.take() {
            Some(reused) => reused,
            None => init().map_err(io_error(""))?,
        });
        // What a reused instance still holds concerns watches that are gone.
        watch.drain().map_err(io_error(""))?;
        for (index, prefix) in prefixes.iter().enumerate() {
            let (dir, start) = prefix.rsplit_once('/').unwrap_or(("", prefix));
            if !dir.is_empty() {
                validate_key(OP, dir)?;
            }
            if !start.is_empty() && !is_segment(start) {
                return Err(StoreError::InvalidKey {
                    op: OP,
                    key: (*prefix).to_owned(),
                    reason: "segments may contain only letters, digits, `.`, `_` and `-`",
                });
            }
            let path = values.join(dir);
            private_dir_all(&path).map_err(io_error(prefix))?;
            let wd = watch.add(&path).map_err(io_error(prefix))?;
            let entry = (index, start.to_owned());
            // The kernel gives a directory watched twice the same descriptor.
            match watch.dirs.iter_mut().find(|d| d.wd == wd) {
                Some(watched) => watched.prefixes.push(entry),
                None => watch.dirs.push(Watched {
                    wd,
                    prefixes: vec![entry],
                }),
            }
        }
        Ok(watch)
    }

    fn file(&self) -> io::Result<&File> {
        self.inotify
            .as_ref()
            .ok_or_else(|| io::Error::other("the watch was dropped"))
    }

    fn add(&self, dir: &Path) -> io::Result<i32> {
        add_watch(self.file()?, dir)
    }

    /// Reads every queued event and says which prefixes they touch.
    fn drain(&mut self) -> io::Result<Changed> {
        let mut changed = Changed::NONE;
        let Some(mut file) = self.inotify.as_ref() else {
            return Ok(changed);
        };
        loop {
            match file.read(&mut self.buffer) {
                Ok(0) => return Ok(changed),
                Ok(n) => changed |= self.changes(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(changed),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The prefixes that the events in the first `len` bytes of the buffer touch.
    fn changes(&self, len: usize) -> Changed {
        let bytes = self.buffer.get(..len).unwrap_or_default();
        let word = |at: usize| {
            bytes
                .get(at..at + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_ne_bytes)
        };
        let mut changed = Changed::NONE;
        let mut at = 0;
        while let (Some(wd), Some(mask), Some(name_len)) = (word(at), word(at + 4), word(at + 12)) {
            let name_at = at + EVENT_HEADER;
            at = name_at + name_len as usize;
            let wd = wd as i32;
            if mask & libc::IN_Q_OVERFLOW != 0 {
                // Events were dropped: any prefix may have changed.
                return Changed::all(self.count);
            }
            let Some(watched) = self.dirs.iter().find(|d| d.wd == wd) else {
                continue;
            };
            if mask & (libc::IN_IGNORED | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0 {
                // The directory went (someone removed the store): its prefixes changed, and
                // their watch is over, so later waits run out their time like a poll.
                for (index, _) in &watched.prefixes {
                    changed.mark(*index);
                }
                continue;
            }
            // The name is NUL-padded to the event's length.
            let name = bytes.get(name_at..at).unwrap_or_default();
            let name = name.split(|b| *b == 0).next().unwrap_or_default();
            let Some(stem) = std::str::from_utf8(name)
                .ok()
                .and_then(|n| n.strip_suffix(VALUE_SUFFIX))
            else {
                continue;
            };
            for (index, start) in &watched.prefixes {
                if stem.starts_with(start.as_str()) {
                    changed.mark(*index);
                }
            }
        }
        changed
    }
}

impl Watch for DirWatch {
    fn wait(&mut self, timeout: Duration) -> Changed {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ready = match self.file().and_then(|file| readable(file, left)) {
                Ok(ready) => ready,
                // A signal: the caller has something to look at (a stop flag, say).
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Changed::NONE,
                Err(_) => false,
            };
            if !ready {
                return Changed::NONE;
            }
            match self.drain() {
                Ok(changed) if changed.any() => return changed,
                // Only temporary files and other keys: wait on.
                Ok(_) => {}
                // The instance is unusable, which the kernel does not do to a live one: wait
                // out the time, as a poll would, rather than spin.
                Err(_) => {
                    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                    return Changed::NONE;
                }
            }
        }
    }
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        if let Some(file) = self.inotify.take() {
            for watched in &self.dirs {
                remove_watch(&file, watched.wd);
            }
            self.instances.give(file);
        }
    }
}

/// A new inotify instance, non-blocking and closed on exec (job processes must not inherit it).
#[allow(unsafe_code)]
fn init() -> io::Result<File> {
    // SAFETY: inotify_init1 takes flags only and returns a new descriptor or -1.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a descriptor the kernel just opened for us; nothing else owns or closes it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Adds `dir` to the instance; returns its watch descriptor.
#[allow(unsafe_code)]
fn add_watch(inotify: &File, dir: &Path) -> io::Result<i32> {
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: `path` is a NUL-terminated string that outlives the call, and the descriptor is
    // the inotify instance `inotify` owns.
    let wd = unsafe { libc::inotify_add_watch(inotify.as_raw_fd(), path.as_ptr(), MASK) };
    if wd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(wd)
}

/// Removes a watch from the instance (its `IN_IGNORED` event is read and dropped by the
/// instance's next user). A watch the kernel already removed (its directory went) fails, which
/// is fine.
#[allow(unsafe_code)]
fn remove_watch(inotify: &File, wd: i32) {
    // SAFETY: inotify_rm_watch takes two integers; the descriptor is the instance `inotify` owns.
    unsafe {
        libc::inotify_rm_watch(inotify.as_raw_fd(), wd);
    }
}

/// Waits until `file` has something to read or `timeout` passed (rounded up to a millisecond,
/// so that a short remainder does not spin).
#[allow(unsafe_code)]
fn readable(file: &File, timeout: Duration) -> io::Result<bool> {
    let ms = i32::try_from(timeout.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX);
    let mut fds = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `fds` is one valid pollfd that lives across the call, and nfds says one.
    let n = unsafe { libc::poll(&mut fds, 1, ms) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::DirStore;
    use crate::store::{Condition, Store as _};

    const NOW: Duration = Duration::ZERO;
    const LONG: Duration = Duration::from_secs(10);

    #[test]
    fn writes_and_deletes_under_a_prefix_wake_the_watch_and_others_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path()).unwrap();
        let mut watch = store
            .watch(&["c/queue/", "c/nodes/node-1", "c/spec"])
            .unwrap()
            .unwrap();
        assert_eq!(watch.wait(NOW), Changed::NONE, "nothing happened yet");

        store
            .put("c/queue/job-1", b"{}", Condition::Always, None)
            .unwrap();
        let changed = watch.wait(LONG);
        assert!(
            changed.has(0) && !changed.has(1) && !changed.has(2),
            "{changed:?}"
        );

        // Other nodes, other directories and logs are not watched.
        store
            .put("c/nodes/node-2", b"{}", Condition::Always, None)
            .unwrap();
        store
            .put("c/status", b"{}", Condition::Always, None)
            .unwrap();
        store
            .put("c/queue/deeper/x", b"{}", Condition::Always, None)
            .unwrap();
        store.append("c/nodes/node-1", b"log").unwrap();
        assert_eq!(watch.wait(NOW), Changed::NONE);

        // Volatile writes, deletes and a write before the wait all count.
        store
            .put_volatile("c/nodes/node-1", b"{}", Condition::Always, None)
            .unwrap();
        store
            .delete("c/queue/job-1", Condition::Always, None)
            .unwrap();
        store.put("c/spec", b"{}", Condition::Always, None).unwrap();
        let mut changed = Changed::NONE;
        while !(changed.has(0) && changed.has(1) && changed.has(2)) {
            let more = watch.wait(LONG);
            assert!(more.any(), "a change was missed: {changed:?}");
            changed |= more;
        }
        assert_eq!(watch.wait(NOW), Changed::NONE, "each change is told once");
    }

    #[test]
    fn a_dropped_watch_leaves_its_instance_to_the_next_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path()).unwrap();
        let first = store.watch(&["a/"]).unwrap().unwrap();
        store.put("a/x", b"{}", Condition::Always, None).unwrap();
        drop(first);
        // The reused instance reports neither the old watch's change nor its directory.
        let mut second = store.watch(&["b/"]).unwrap().unwrap();
        store.put("a/y", b"{}", Condition::Always, None).unwrap();
        assert_eq!(second.wait(Duration::from_millis(50)), Changed::NONE);
        store.put("b/x", b"{}", Condition::Always, None).unwrap();
        assert!(second.wait(LONG).has(0));
    }

    #[test]
    fn prefixes_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path()).unwrap();
        for bad in ["c/../x", "c/no space", "/c/queue/"] {
            assert!(store.watch(&[bad]).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..65).map(|i| format!("c/{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(store.watch(&many).is_err());
        // Two prefixes in one directory share its watch.
        let mut watch = store.watch(&["c/a", "c/b"]).unwrap().unwrap();
        store.put("c/b1", b"{}", Condition::Always, None).unwrap();
        let changed = watch.wait(LONG);
        assert!(!changed.has(0) && changed.has(1), "{changed:?}");
    }
}
