//! The plugin process: go-plugin handshake, unix socket, AutoMTLS, the auxiliary services
//! (controller, health, stdio) and the process rules Terraform relies on.
use std::io::Write as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};

use crate::generated::{health as hpb, plugin as ppb, tfplugin6 as pb};
use crate::resource::Provider;
use crate::server::ProviderService;

/// The magic cookie Terraform and OpenTofu set for every provider they launch.
pub const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
pub const MAGIC_COOKIE_VALUE: &str =
    "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

/// gRPC message limit, as terraform-plugin-go sets it: large states and plans exceed tonic's
/// 4 MiB default.
pub const MAX_MESSAGE_SIZE: usize = 256 << 20;

/// How long a client on the plugin socket may take to complete its TLS handshake. Terraform
/// completes it in milliseconds; a client that connects and sends nothing is dropped after this.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a plugin checks that Terraform, its parent, is still alive.
const PARENT_POLL: Duration = Duration::from_millis(500);

/// Errors that stop the plugin process from serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "this binary is a plugin for Terraform and OpenTofu and is not meant to be run directly; \
         Terraform starts it when a configuration uses the provider (use --debug to run it yourself)"
    )]
    NotLaunchedByTerraform,
    #[error(
        "Terraform offered plugin protocol versions {0:?} but this provider speaks only version 6 \
         (Terraform 0.15 or later, any OpenTofu)"
    )]
    UnsupportedProtocol(String),
    #[error("create the plugin socket in {path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("serve gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("write the handshake: {0}")]
    Handshake(std::io::Error),
}

/// How the process was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Launched by Terraform: handshake on stdout, AutoMTLS when offered.
    Plugin,
    /// Started by a developer: plaintext, prints `TF_REATTACH_PROVIDERS` and serves until
    /// interrupted.
    Debug,
}

/// Options for [`serve`].
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The provider's source address, e.g. `registry.terraform.io/batchai/batchai`.
    pub address: String,
    pub mode: Mode,
}

/// Picks protocol 6 from Terraform's comma-separated offer, which arrives in random order.
pub fn negotiate(offer: Option<&str>) -> Result<u32, ServeError> {
    match offer {
        // go-plugin clients older than versioned plugins send nothing; 6 is all we have.
        None => Ok(6),
        Some(list) if list.split(',').any(|v| v.trim() == "6") => Ok(6),
        Some(list) => Err(ServeError::UnsupportedProtocol(list.to_owned())),
    }
}

/// The single line Terraform reads from stdout: `1|6|unix|PATH|grpc|CERT`.
pub fn handshake_line(socket: &std::path::Path, cert_der: Option<&[u8]>) -> String {
    let cert = cert_der
        .map(|der| base64::engine::general_purpose::STANDARD_NO_PAD.encode(der))
        .unwrap_or_default();
    format!("1|6|unix|{}|grpc|{cert}\n", socket.display())
}

/// Serves `provider` until Terraform shuts it down. Runs the whole process lifecycle.
pub async fn serve<P: Provider>(provider: P, options: ServeOptions) -> Result<(), ServeError> {
    // Read before anything else: a parent that dies while the provider starts must already
    // count as gone.
    let parent = std::os::unix::process::parent_id();
    crate::tls::install_default_provider();
    if options.mode == Mode::Plugin {
        let cookie = std::env::var(MAGIC_COOKIE_KEY).ok();
        if cookie.as_deref() != Some(MAGIC_COOKIE_VALUE) {
            return Err(ServeError::NotLaunchedByTerraform);
        }
        negotiate(std::env::var("PLUGIN_PROTOCOL_VERSIONS").ok().as_deref())?;
    }

    // Removed on every way out of this function; the exits that skip destructors remove it
    // themselves.
    let dir = SocketDir::create()?;
    let socket = dir.path().join("plugin.sock");
    let listener = UnixListener::bind(&socket).map_err(|source| ServeError::Socket {
        path: socket.clone(),
        source,
    })?;

    let tls = match (&options.mode, std::env::var("PLUGIN_CLIENT_CERT")) {
        (Mode::Plugin, Ok(pem)) if !pem.is_empty() => Some(crate::tls::server_tls(&pem)?),
        _ => None,
    };

    let shutdown = Arc::new(Notify::new());
    let incoming = accept_loop(
        listener,
        tls.as_ref().map(|t| t.config.clone()),
        TLS_HANDSHAKE_TIMEOUT,
    );
    let router = router(ProviderService::new(provider), shutdown.clone());

    let stop_signal = {
        let shutdown = shutdown.clone();
        let debug = options.mode == Mode::Debug;
        let socket_dir = dir.path().to_owned();
        let signals = Signals::install();
        async move {
            wait_for_exit(shutdown, debug, socket_dir, signals).await;
        }
    };

    if options.mode == Mode::Plugin {
        exit_with_parent(parent, dir.path().to_owned());
    }
    match options.mode {
        Mode::Plugin => {
            let line = handshake_line(&socket, tls.as_ref().map(|t| t.certificate_der.as_slice()));
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(line.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(ServeError::Handshake)?;
        }
        Mode::Debug => print_reattach(&options.address, &socket).map_err(ServeError::Handshake)?,
    }
    tracing::info!(socket = %socket.display(), tls = tls.is_some(), "serving tfplugin6");

    let served = router
        .serve_with_incoming_shutdown(incoming, stop_signal)
        .await;
    drop(dir);
    served.map_err(ServeError::from)
}

/// Ends the process once Terraform is gone. go-plugin stops its plugins on every way out except
/// its own death (`kill -9`, an OOM kill, a crash); then nobody will ever call Shutdown and the
/// provider would live on. The parent's death shows as a new parent process ID (init or a
/// subreaper adopts the orphan). A thread rather than a task, so it runs even when every
/// runtime worker is busy. Not in debug mode, where the parent is a developer's shell.
fn exit_with_parent(parent: u32, socket_dir: PathBuf) {
    let watcher = std::thread::Builder::new()
        .name("parent-watch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(PARENT_POLL);
                if std::os::unix::process::parent_id() != parent {
                    tracing::warn!(parent, "Terraform (the parent process) is gone; exiting");
                    let _ = std::fs::remove_dir_all(&socket_dir);
                    std::process::exit(1);
                }
            }
        });
    if let Err(e) = watcher {
        tracing::warn!(error = %e, "cannot watch the parent process; the provider will not exit on its own if Terraform dies");
    }
}

/// Builds the gRPC router with every service Terraform's plugin client talks to.
pub fn router<P: Provider>(
    service: ProviderService<P>,
    shutdown: Arc<Notify>,
) -> tonic::transport::server::Router {
    let provider = pb::provider_server::ProviderServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    tonic::transport::Server::builder()
        .add_service(provider)
        .add_service(ppb::grpc_controller_server::GrpcControllerServer::new(
            Controller { shutdown },
        ))
        .add_service(ppb::grpc_stdio_server::GrpcStdioServer::new(Stdio))
        .add_service(hpb::health_server::HealthServer::new(Health))
}

/// Signal handlers, installed before the handshake line: a Ctrl-C that reaches the process group
/// right after Terraform starts the provider must not find the default action (exit) in place.
struct Signals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Self {
            interrupt: signal(SignalKind::interrupt()).ok(),
            terminate: signal(SignalKind::terminate()).ok(),
        }
    }
}

/// SIGINT is ignored (Ctrl-C reaches the whole process group and Terraform follows it with
/// StopProvider); the process ends on the controller's Shutdown or on SIGTERM. In debug mode a
/// developer's Ctrl-C ends it.
async fn wait_for_exit(
    shutdown: Arc<Notify>,
    debug: bool,
    socket_dir: PathBuf,
    mut signals: Signals,
) {
    let Signals {
        interrupt,
        terminate,
    } = &mut signals;
    loop {
        tokio::select! {
            () = shutdown.notified() => break,
            Some(()) = async { match terminate.as_mut() { Some(s) => s.recv().await, None => None } } => break,
            Some(()) = async { match interrupt.as_mut() { Some(s) => s.recv().await, None => None } } => {
                if debug {
                    break;
                }
                tracing::debug!("ignoring SIGINT; waiting for StopProvider");
            }
        }
    }
    // Give the Shutdown response a moment to reach Terraform, then stop even if a client keeps
    // its connection open: go-plugin SIGKILLs after 2 s otherwise.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(250)).await;
        // The graceful path removes the socket too; this covers a shutdown that took longer.
        let _ = std::fs::remove_dir_all(&socket_dir);
        std::process::exit(0);
    });
}

/// The directory holding the plugin socket, private to this user and removed when dropped.
#[derive(Debug)]
struct SocketDir(PathBuf);

impl SocketDir {
    fn create() -> Result<Self, ServeError> {
        // Unix socket paths are limited to about 104 bytes, so keep the directory short.
        let base = std::env::var_os("PLUGIN_UNIX_SOCKET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let dir = base.join(format!("tfplug-{}-{nanos:x}", std::process::id()));
        // Only this user may reach the socket, whatever the umask: without AutoMTLS (debug mode,
        // old clients) it is the only barrier.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| ServeError::Socket {
                path: dir.clone(),
                source,
            })?;
        Ok(Self(dir))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn print_reattach(address: &str, socket: &std::path::Path) -> std::io::Result<()> {
    let config = serde_json::json!({
        address: {
            "Protocol": "grpc",
            "ProtocolVersion": 6,
            "Pid": std::process::id(),
            // Without Test=true go-plugin never records protocol 6 and Terraform crashes.
            "Test": true,
            "Addr": {"Network": "unix", "String": socket.display().to_string()},
        }
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "Provider started. To attach Terraform CLI, set the TF_REATTACH_PROVIDERS environment variable with the following:\n\n\tTF_REATTACH_PROVIDERS='{config}'\n"
    )?;
    stdout.flush()
}

/// The connections [`accept_loop`] yields, ready for the gRPC server.
pub type Incoming = ReceiverStream<Result<Io, std::io::Error>>;

/// Accepts connections and completes TLS handshakes off the accept path, so one slow or
/// failing client never blocks another; a handshake that takes longer than
/// `handshake_timeout` is abandoned and its connection closed.
pub fn accept_loop(
    listener: UnixListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    handshake_timeout: Duration,
) -> Incoming {
    let (tx, rx) = mpsc::channel(16);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            };
            let tx = tx.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let io = match acceptor {
                    None => Io::Plain(stream),
                    Some(acceptor) => {
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await
                        {
                            Ok(Ok(tls)) => Io::Tls(Box::new(tls)),
                            Ok(Err(e)) => {
                                tracing::error!(error = %e, "TLS handshake with Terraform failed");
                                return;
                            }
                            Err(_) => {
                                tracing::warn!(
                                    timeout_s = handshake_timeout.as_secs_f64(),
                                    "a client on the plugin socket did not complete its TLS handshake in time; closed it"
                                );
                                return;
                            }
                        }
                    }
                };
                let _ = tx.send(Ok(io)).await;
            });
        }
    });
    ReceiverStream::new(rx)
}

/// A served connection, plaintext or TLS.
#[derive(Debug)]
pub enum Io {
    Plain(UnixStream),
    Tls(Box<tokio_rustls::server::TlsStream<UnixStream>>),
}

impl Connected for Io {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// go-plugin's controller: Shutdown ends the process promptly (otherwise the client waits 2 s
/// per process and then SIGKILLs it).
#[derive(Debug)]
struct Controller {
    shutdown: Arc<Notify>,
}

#[tonic::async_trait]
impl ppb::grpc_controller_server::GrpcController for Controller {
    async fn shutdown(
        &self,
        _request: Request<ppb::Empty>,
    ) -> Result<Response<ppb::Empty>, Status> {
        tracing::debug!("shutdown requested by Terraform");
        self.shutdown.notify_one();
        Ok(Response::new(ppb::Empty {}))
    }
}

/// go-plugin's stdio forwarding. Nothing is forwarded: the provider never writes to stdout, and
/// stderr already reaches Terraform as the log stream.
#[derive(Debug)]
struct Stdio;

#[tonic::async_trait]
impl ppb::grpc_stdio_server::GrpcStdio for Stdio {
    type StreamStdioStream = futures_util::stream::Pending<Result<ppb::StdioData, Status>>;

    async fn stream_stdio(
        &self,
        _request: Request<ppb::Empty>,
    ) -> Result<Response<Self::StreamStdioStream>, Status> {
        Ok(Response::new(futures_util::stream::pending()))
    }
}

/// grpc.health.v1 reporting the `plugin` service as SERVING, as go-plugin servers do.
#[derive(Debug)]
struct Health;

#[tonic::async_trait]
impl hpb::health_server::Health for Health {
    type WatchStream =
        futures_util::stream::Once<std::future::Ready<Result<hpb::HealthCheckResponse, Status>>>;

    async fn check(
        &self,
        _request: Request<hpb::HealthCheckRequest>,
    ) -> Result<Response<hpb::HealthCheckResponse>, Status> {
        Ok(Response::new(hpb::HealthCheckResponse {
            status: hpb::health_check_response::ServingStatus::Serving as i32,
        }))
    }

    async fn watch(
        &self,
        _request: Request<hpb::HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Ok(Response::new(futures_util::stream::once(
            std::future::ready(Ok(hpb::HealthCheckResponse {
                status: hpb::health_check_response::ServingStatus::Serving as i32,
            })),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_accepts_any_order() {
        for offer in ["5,6", "6,5", "6", " 5 , 6 "] {
            assert_eq!(negotiate(Some(offer)).ok(), Some(6), "{offer}");
        }
        assert!(negotiate(Some("5")).is_err());
        assert_eq!(negotiate(None).ok(), Some(6));
    }

    #[test]
    fn handshake_line_uses_unpadded_base64() {
        let line = handshake_line(std::path::Path::new("/tmp/p.sock"), Some(&[1, 2, 3, 4]));
        assert_eq!(line, "1|6|unix|/tmp/p.sock|grpc|AQIDBA\n");
        let plain = handshake_line(std::path::Path::new("/tmp/p.sock"), None);
        assert_eq!(plain, "1|6|unix|/tmp/p.sock|grpc|\n");
    }
}
