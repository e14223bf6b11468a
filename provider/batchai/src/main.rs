//! Entry point of `terraform-provider-batchai`: serves the provider to Terraform, or with
//! `--debug` to a developer who attaches Terraform through `TF_REATTACH_PROVIDERS`, or runs the
//! node agent (`agent ...`) so provider and agent versions always match.
use std::process::ExitCode;

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
        Some("--version" | "version") => {
            eprintln!("terraform-provider-batchai {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!(
                "terraform-provider-batchai: unknown argument {other:?}\n\nusage: terraform-provider-batchai [--debug | --version | agent --root DIR --cluster NAME --node ID]"
            );
            return ExitCode::from(2);
        }
    };
    match batchai::run(mode) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("terraform-provider-batchai: {e:#}");
            ExitCode::from(1)
        }
    }
}
