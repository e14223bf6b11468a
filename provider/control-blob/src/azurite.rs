//! A throwaway Azurite for tests (feature `azurite`): this crate's tests and the acceptance tests
//! start one with [`Azurite::shared`] and keep apart by container.
//!
//! `cargo xtask test` installs Azurite [`VERSION`] into a cache outside the clone
//! ([`install_dir`]) and exports [`ENV`] with the path of its `azurite-blob`; a test that cannot
//! find one fails and says how to get it, never skips.
//!
//! Azurite runs in memory on a port it picks itself (`--blobPort 0`, then read from its
//! "listens on" line, so no two tests race for a port) under a small `sh` wrapper that stops it
//! when this process's end of a pipe closes: on drop, and also when the test process is killed
//! and cannot run its drops (a shared instance lives in a static, which is never dropped).
//!
//! A library feature rather than a test-only module, because the acceptance crate needs the same
//! helper; builds of the provider and agent leave it out.
use std::io::{BufRead as _, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::Duration;

use crate::{BlobStore, Credential, OpenError};

/// The Azurite release the tests run: the last that runs on node 20 (3.36 needs node 21).
pub const VERSION: &str = "3.35.0";
/// The environment variable that names the `azurite-blob` to run.
pub const ENV: &str = "BATCHAI_AZURITE";
/// Azurite's development account.
pub const ACCOUNT: &str = "devstoreaccount1";
/// Azurite's development account key (`EMULATOR_ACCOUNT_KEY_STR`, public and well known).
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// How long Azurite may take to say it listens (node starts in about a second).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Why no Azurite could be started.
#[derive(Debug, thiserror::Error)]
pub enum AzuriteError {
    #[error(
        "start Azurite: no azurite-blob found ({0}): run `cargo xtask test`, which installs Azurite {VERSION}, or set {ENV} to an azurite-blob executable"
    )]
    NotInstalled(String),
    #[error("start Azurite {bin}: {source}")]
    Spawn {
        bin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("start Azurite {bin}: it did not say it listens within {} s; its output: {output}", START_TIMEOUT.as_secs())]
    NotListening { bin: String, output: String },
    #[error("start Azurite: {0}")]
    Failed(String),
    /// The shared instance failed to start earlier; the message says why.
    #[error("{0}")]
    Shared(String),
}

/// Where `cargo xtask test` installs Azurite: `azurite-VERSION` under `$BATCHAI_CACHE`, else
/// `$XDG_CACHE_HOME/batchai`, else `~/.cache/batchai`. `None` without a home directory.
pub fn install_dir() -> Option<PathBuf> {
    let non_empty = |name| std::env::var_os(name).filter(|value| !value.is_empty());
    let cache = non_empty("BATCHAI_CACHE")
        .map(PathBuf::from)
        .or_else(|| non_empty("XDG_CACHE_HOME").map(|dir| PathBuf::from(dir).join("batchai")))
        .or_else(|| non_empty("HOME").map(|home| PathBuf::from(home).join(".cache/batchai")))?;
    Some(cache.join(format!("azurite-{VERSION}")))
}

/// The `azurite-blob` of an install made with `npm install azurite@VERSION --prefix DIR`.
pub fn bin_in(install_dir: &Path) -> PathBuf {
    install_dir.join("node_modules/.bin/azurite-blob")
}

/// The `azurite-blob` to run: [`ENV`], else the one `cargo xtask test` installed.
pub fn find() -> Result<PathBuf, AzuriteError> {
    if let Some(bin) = std::env::var_os(ENV).filter(|bin| !bin.is_empty()) {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(AzuriteError::NotInstalled(format!(
                "{ENV}={} is not a file",
                bin.display()
            )))
        };
    }
    match install_dir().map(|dir| bin_in(&dir)) {
        Some(bin) if bin.is_file() => Ok(bin),
        Some(bin) => Err(AzuriteError::NotInstalled(format!(
            "{ENV} is not set and {} does not exist",
            bin.display()
        ))),
        None => Err(AzuriteError::NotInstalled(format!(
            "{ENV} is not set and there is no cache directory"
        ))),
    }
}

/// A running Azurite, stopped when dropped.
#[derive(Debug)]
pub struct Azurite {
    /// The `sh` wrapper; Azurite is its child.
    wrapper: Mutex<Child>,
    /// Closing this ends Azurite (see the module docs).
    lifeline: Mutex<Option<ChildStdin>>,
    endpoint: String,
}

impl Azurite {
    /// Starts a new Azurite on a free port of 127.0.0.1 and waits until it listens.
    pub fn start() -> Result<Azurite, AzuriteError> {
        Self::start_at("127.0.0.1")
    }

    /// Starts a new Azurite on a free port of `host` (an address of this machine that nodes
    /// in other network namespaces reach) and waits until it listens.
    pub fn start_at(host: &str) -> Result<Azurite, AzuriteError> {
        let bin = find()?;
        let shown = bin.display().to_string();
        // The wrapper keeps its stdin (our lifeline) as fd 3 for a watcher that stops Azurite
        // when it reads end of file; background jobs get /dev/null as stdin, hence the copy.
        let script = r#"exec 3<&0 2>&1
"$@" </dev/null & pid=$!
(read _ <&3; kill "$pid") >/dev/null 2>&1 &
wait "$pid""#;
        let mut wrapper = Command::new("sh")
            .args(["-c", script, "sh"])
            .arg(&bin)
            .args(["--blobHost", host, "--blobPort", "0"])
            .args(["--inMemoryPersistence", "--disableTelemetry", "--silent"])
            // Longer than any pause in a test (lease expiry waits 15 s): a connection Azurite
            // closes as idle just as the client reuses it would fail that request.
            .args(["--blobKeepAliveTimeout", "600"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| AzuriteError::Spawn {
                bin: shown.clone(),
                source,
            })?;
        let lifeline = wrapper.stdin.take();
        let Some(stdout) = wrapper.stdout.take() else {
            return Err(AzuriteError::Failed("no stdout from the wrapper".into()));
        };
        let mut azurite = Azurite {
            wrapper: Mutex::new(wrapper),
            lifeline: Mutex::new(lifeline),
            endpoint: String::new(),
        };
        let (output, port) = wait_for_port(stdout);
        match port {
            Some(port) => {
                azurite.endpoint = format!("http://{host}:{port}/{ACCOUNT}");
                Ok(azurite)
            }
            // Dropping `azurite` stops what started.
            None => Err(AzuriteError::NotListening { bin: shown, output }),
        }
    }

    /// One Azurite for the whole test process, started on first use. Tests keep apart by
    /// container ([`fresh_store`](Self::fresh_store)). It stops when the process exits.
    pub fn shared() -> Result<&'static Azurite, AzuriteError> {
        static SHARED: OnceLock<Result<Azurite, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Azurite::start().map_err(|error| error.to_string()))
            .as_ref()
            .map_err(|error| AzuriteError::Shared(error.clone()))
    }

    /// `http://127.0.0.1:PORT/devstoreaccount1`: the account's blob endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The URL of `container` in this Azurite.
    pub fn container_url(&self, container: &str) -> String {
        format!("{}/{container}", self.endpoint)
    }

    /// The development account's key.
    pub fn credential() -> Credential {
        Credential::AccountKey(ACCOUNT_KEY.to_owned())
    }

    /// A SAS token for the development account, as a user would paste one: signed with
    /// [`ACCOUNT_KEY`], valid for an hour, for plain http.
    pub fn sas_token() -> Result<String, AzuriteError> {
        let key =
            crate::sas::decode_key(ACCOUNT_KEY).map_err(|e| AzuriteError::Failed(e.into()))?;
        Ok(crate::sas::sign(
            ACCOUNT,
            &key,
            false,
            std::time::SystemTime::now(),
        ))
    }

    /// A container name no other test of any process uses.
    pub fn unique_container(prefix: &str) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// A store on a new, empty container, and the container's URL.
    pub fn fresh_store(&self) -> Result<(BlobStore, String), OpenError> {
        let url = self.container_url(&Self::unique_container("test"));
        let store = BlobStore::open(&url, Self::credential())?;
        store.ensure_container()?;
        Ok((store, url))
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let lifeline = self.lifeline.get_mut().unwrap_or_else(|e| e.into_inner());
        drop(lifeline.take());
        let wrapper = self.wrapper.get_mut().unwrap_or_else(|e| e.into_inner());
        // The watcher stops Azurite and the wrapper then exits; kill it only if that hangs.
        for _ in 0..100 {
            if wrapper.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = wrapper.kill();
        let _ = wrapper.wait();
    }
}

/// Reads Azurite's output until it says which port it listens on. Returns what it printed and
/// the port; keeps draining the output afterwards so Azurite never blocks on a full pipe.
fn wait_for_port(stdout: impl Read + Send + 'static) -> (String, Option<u16>) {
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // The receiver is gone once the port is known: keep reading, drop the lines.
            let _ = lines.send(line);
        }
    });
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    let mut output = String::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        let Ok(line) = received.recv_timeout(left) else {
            break;
        };
        output.push_str(&line);
        output.push('\n');
        if let Some(port) = listening_port(&line) {
            return (output, Some(port));
        }
    }
    (output, None)
}

/// The port in "Azurite Blob service successfully listens on http://127.0.0.1:PORT".
fn listening_port(line: &str) -> Option<u16> {
    let (_, address) = line.split_once("successfully listens on ")?;
    address.trim().rsplit(':').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_listening_line_gives_the_port() {
        let cases: &[(&str, Option<u16>)] = &[
            (
                "Azurite Blob service successfully listens on http://127.0.0.1:35455",
                Some(35455),
            ),
            ("Azurite Blob service is starting on 127.0.0.1:0", None),
            ("successfully listens on http://127.0.0.1:notaport", None),
        ];
        for (line, want) in cases {
            assert_eq!(listening_port(line), *want, "{line}");
        }
    }

    #[test]
    fn unique_containers_are_valid_and_distinct() {
        let a = Azurite::unique_container("test");
        let b = Azurite::unique_container("test");
        assert_ne!(a, b);
        for name in [a, b] {
            crate::location::ContainerUrl::parse(&format!("http://127.0.0.1:1/{ACCOUNT}/{name}"))
                .unwrap();
        }
    }
}
