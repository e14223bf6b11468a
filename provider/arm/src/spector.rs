//! Microsoft's ARM mock server for tests (feature `spector`): `tsp-spector` serving the
//! scenarios of `@azure-tools/azure-http-specs`, which this crate's tests drive the poller
//! through (long-running create, POST with `Location`, delete by `Location`, paging).
//!
//! `cargo xtask test` installs the package [`VERSION`] with npm into a cache outside the clone
//! ([`install_dir`]) and exports [`ENV`] with that install's directory; a test that finds none
//! fails and says how to get it, never skips.
//!
//! Two quirks of `tsp-spector serve`: it reads the git commit of the scenario directory (`git
//! rev-parse HEAD` there), so it runs with `GIT_DIR` pointing at a throwaway repository with
//! one empty commit; and it loads the compiled mock APIs from `../dist` of the path it is given,
//! so it is given the package's `specs` directory (all scenarios; the paths keep them apart).
//!
//! Like the Azurite helper, the server runs under a small `sh` wrapper that stops it when this
//! process's end of a pipe closes: on drop, and when the test process dies without dropping;
//! the wrapper then removes the throwaway repository.
use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

/// The package version the tests run.
pub const VERSION: &str = "0.1.0-alpha.38-dev.2";
/// The npm package.
pub const PACKAGE: &str = "@azure-tools/azure-http-specs";
/// The environment variable naming an install directory (the `--prefix` of
/// `npm install @azure-tools/azure-http-specs@VERSION`).
pub const ENV: &str = "BATCHAI_SPECTOR";
/// The subscription and resource group the ARM scenarios expect.
pub const SUBSCRIPTION_ID: &str = "00000000-0000-0000-0000-000000000000";
pub const RESOURCE_GROUP: &str = "test-rg";

/// How long the server may take to say it listens (it loads every scenario first).
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Why no Spector could be started.
#[derive(Debug, thiserror::Error)]
pub enum SpectorError {
    #[error(
        "start Spector: no install found ({0}): run `cargo xtask test`, which installs {PACKAGE}@{VERSION}, or set {ENV} to a directory made by `npm install {PACKAGE}@{VERSION} --prefix DIR`"
    )]
    NotInstalled(String),
    #[error("start Spector: {0}")]
    Failed(String),
    #[error("start Spector on port {port}: it did not say it listens within {} s", START_TIMEOUT.as_secs())]
    NotListening { port: u16 },
}

/// Where `cargo xtask test` installs the package: `azure-http-specs-VERSION` under
/// `$BATCHAI_CACHE`, else `$XDG_CACHE_HOME/batchai`, else `~/.cache/batchai`.
pub fn install_dir() -> Option<PathBuf> {
    let non_empty = |name| std::env::var_os(name).filter(|value| !value.is_empty());
    let cache = non_empty("BATCHAI_CACHE")
        .map(PathBuf::from)
        .or_else(|| non_empty("XDG_CACHE_HOME").map(|dir| PathBuf::from(dir).join("batchai")))
        .or_else(|| non_empty("HOME").map(|home| PathBuf::from(home).join(".cache/batchai")))?;
    Some(cache.join(format!("azure-http-specs-{VERSION}")))
}

/// The `tsp-spector` of an install.
pub fn bin_in(install_dir: &Path) -> PathBuf {
    install_dir.join("node_modules/.bin/tsp-spector")
}

/// The scenario root of an install.
pub fn specs_in(install_dir: &Path) -> PathBuf {
    install_dir.join("node_modules/@azure-tools/azure-http-specs/specs")
}

/// The install to use: [`ENV`], else the one `cargo xtask test` made.
pub fn find() -> Result<PathBuf, SpectorError> {
    let (dir, how) = match std::env::var_os(ENV).filter(|v| !v.is_empty()) {
        Some(dir) => (PathBuf::from(dir), ENV.to_owned()),
        None => (
            install_dir().ok_or_else(|| {
                SpectorError::NotInstalled(format!(
                    "{ENV} is not set and there is no cache directory"
                ))
            })?,
            format!("{ENV} is not set and the cache"),
        ),
    };
    let bin = bin_in(&dir);
    if bin.is_file() && specs_in(&dir).is_dir() {
        Ok(dir)
    } else {
        Err(SpectorError::NotInstalled(format!(
            "{how} {} has no {}",
            dir.display(),
            bin.display()
        )))
    }
}

/// A running Spector, stopped when dropped.
#[derive(Debug)]
pub struct Spector {
    wrapper: Mutex<Child>,
    lifeline: Mutex<Option<ChildStdin>>,
    endpoint: String,
    /// The throwaway git repository (removed on drop).
    git_dir: PathBuf,
}

impl Spector {
    /// Starts Spector on a free port of 127.0.0.1 and waits until it listens.
    pub fn start() -> Result<Spector, SpectorError> {
        let install = find()?;
        let git_dir = throwaway_git_repo()?;
        // A port picked free just before may be taken in between; try a few.
        let mut last = None;
        for _ in 0..3 {
            match start_on(&install, &git_dir, free_port()?) {
                Ok((wrapper, lifeline, port)) => {
                    return Ok(Spector {
                        wrapper: Mutex::new(wrapper),
                        lifeline: Mutex::new(lifeline),
                        endpoint: format!("http://127.0.0.1:{port}/"),
                        git_dir,
                    });
                }
                Err(error) => last = Some(error),
            }
        }
        let _ = std::fs::remove_dir_all(&git_dir);
        Err(last.unwrap_or_else(|| SpectorError::Failed("no attempt was made".into())))
    }

    /// `http://127.0.0.1:{port}/`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl Drop for Spector {
    fn drop(&mut self) {
        if let Ok(mut lifeline) = self.lifeline.lock() {
            lifeline.take();
        }
        if let Ok(mut wrapper) = self.wrapper.lock() {
            let _ = wrapper.kill();
            let _ = wrapper.wait();
        }
        let _ = std::fs::remove_dir_all(&self.git_dir);
    }
}

fn free_port() -> Result<u16, SpectorError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| SpectorError::Failed(format!("find a free port: {e}")))
}

fn throwaway_git_repo() -> Result<PathBuf, SpectorError> {
    let dir = std::env::temp_dir().join(format!(
        "batchai-spector-git-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| SpectorError::Failed(format!("create {}: {e}", dir.display())))?;
    let git = |args: &[&str]| -> Result<(), SpectorError> {
        let output = Command::new("git")
            .args([
                "-c",
                "user.name=spector",
                "-c",
                "user.email=spector@localhost",
            ])
            .args(args)
            .current_dir(&dir)
            .env_remove("GIT_DIR")
            .output()
            .map_err(|e| SpectorError::Failed(format!("run git (needed by tsp-spector): {e}")))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(SpectorError::Failed(format!(
                "git {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
    };
    git(&["init", "-q"])?;
    git(&[
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "spector needs a commit",
    ])?;
    Ok(dir.join(".git"))
}

type Started = (Child, Option<ChildStdin>, u16);

fn start_on(install: &Path, git_dir: &Path, port: u16) -> Result<Started, SpectorError> {
    // The wrapper keeps its stdin (our lifeline) as fd 3 for a watcher that stops the server
    // when it reads end of file; background jobs get /dev/null as stdin, hence the copy.
    // The throwaway repository goes when the server does (a shared server in a static is
    // never dropped).
    let script = r#"exec 3<&0 2>&1
"$@" </dev/null & pid=$!
(read _ <&3; kill "$pid") >/dev/null 2>&1 &
wait "$pid"
rm -rf "$SPECTOR_THROWAWAY""#;
    let mut wrapper = Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(bin_in(install))
        .arg("serve")
        .arg(specs_in(install))
        .args(["--port", &port.to_string()])
        .env("GIT_DIR", git_dir)
        .env("SPECTOR_THROWAWAY", git_dir.parent().unwrap_or(git_dir))
        .current_dir(git_dir.parent().unwrap_or(git_dir))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| SpectorError::Failed(format!("run {}: {e}", bin_in(install).display())))?;
    let lifeline = wrapper.stdin.take();
    let Some(stdout) = wrapper.stdout.take() else {
        return Err(SpectorError::Failed("no stdout from the wrapper".into()));
    };
    // Read its output on a thread until "Started server on"; keep draining it afterwards so
    // the server never blocks on a full pipe.
    let (ready, said) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        let mut told = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !told {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains("Started server on") {
                    told = true;
                    let _ = ready.send(Ok(()));
                }
            }
        }
        if !told {
            let _ = ready.send(Err(seen));
        }
    });
    match said.recv_timeout(START_TIMEOUT) {
        Ok(Ok(())) => Ok((wrapper, lifeline, port)),
        Ok(Err(output)) => {
            let _ = wrapper.wait();
            Err(SpectorError::Failed(format!(
                "it exited; its output: {output}"
            )))
        }
        Err(_) => {
            drop(lifeline);
            let _ = wrapper.kill();
            let _ = wrapper.wait();
            Err(SpectorError::NotListening { port })
        }
    }
}
