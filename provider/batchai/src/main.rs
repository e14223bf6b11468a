//! Entry point of `terraform-provider-batchai`: serves the provider to Terraform, or with
//! `--debug` to a developer who attaches Terraform through `TF_REATTACH_PROVIDERS`, or runs the
//! node agent (`agent ...`) so provider and agent versions always match.
use std::io::Write as _;
use std::process::ExitCode;

/// What `--help` prints. Serving keeps stdout for the handshake line alone; `--help` and
/// `--version` are commands a person types, so they answer on stdout like any other tool.
const USAGE: &str = "\
usage: terraform-provider-batchai [--debug | --version | --help]
       terraform-provider-batchai agent join --store URL --cluster NAME [--work-dir DIR] [--address IP]

The Batch AI provider for Terraform and OpenTofu. Terraform starts this binary itself when a
configuration uses the provider; it is not meant to be run by hand except as below.

  --debug      serve the provider for a debugger: prints a TF_REATTACH_PROVIDERS value to set
               in the shell that runs Terraform, and serves until Ctrl-C
  --version    print the version and exit
  -h, --help   print this help and exit
  agent join   make this machine a node of a cluster whose control store is a blob container
               (local.control_store): the store's credential goes in BATCHAI_STORE_CREDENTIAL
               as key:<account key> or sas:<SAS token>; runs until stopped (SIGTERM drains)
  agent ...    run a cluster node's agent (the provider starts these itself)

Environment:
  TF_LOG, TF_LOG_PROVIDER   log level of the provider's own events (trace, debug, info, ...)
  BATCHAI_LOG_LIBRARIES=1   also log gRPC, HTTP/2 and TLS library internals
  BATCHAI_AGENT_LOG=debug   more detail in the node agents' logs
  BATCHAI_STORE_CREDENTIAL  the control store's credential for `agent join`
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match args.first().map(String::as_str) {
        None => tfplug::Mode::Plugin,
        Some("--debug" | "-debug") => tfplug::Mode::Debug,
        Some("agent") => {
            return match batchai::run_agent(&args[1..]) {
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    eprintln!("terraform-provider-batchai agent: {e:#}");
                    ExitCode::from(1)
                }
            };
        }
        Some("--help" | "-help" | "-h" | "help") => return answer(USAGE),
        Some("--version" | "-version" | "version") => {
            return answer(&format!(
                "terraform-provider-batchai {}\n",
                env!("CARGO_PKG_VERSION")
            ));
        }
        Some(other) => {
            eprint!("terraform-provider-batchai: unknown argument {other:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.len() > 1 {
        eprint!(
            "terraform-provider-batchai: unexpected argument {:?}\n\n{USAGE}",
            args[1]
        );
        return ExitCode::from(2);
    }
    match batchai::run(mode) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("terraform-provider-batchai: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Prints the answer to a command a person typed on stdout (the one place outside the
/// handshake where the binary writes there).
fn answer(text: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    }
}
