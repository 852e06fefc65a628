//! `mesh-policy`: check, trace, analyze and test Istio security policies from the manifests, where Python is not
//! (CI pipelines, pre-merge hooks). Every command reads manifests from files, directories and stdin (`-`).

#[macro_use]
mod output;
mod analyze;
mod check;
mod input;
mod test;
mod trace;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Check, trace, analyze and test Istio security policies (AuthorizationPolicy, RequestAuthentication,
/// PeerAuthentication) as an ambient mesh enforces them, from the manifests alone.
#[derive(Parser)]
#[command(name = "mesh-policy", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check one request at its enforcement point. Exit 0 allowed, 1 denied, 2 error.
    Check(check::CheckArgs),
    /// Follow a connection or request from a Pod (or an address) to a destination through every hop.
    /// Exit 0 allowed, 1 denied, 2 error.
    Trace(trace::TraceArgs),
    /// Report the mistakes that silently leave a service open or break it. Exit 1 when a finding at or above
    /// --fail-on exists, 2 on error.
    Analyze(analyze::AnalyzeArgs),
    /// Run scenario files (manifests, requests, traces and expected results). Exit 1 when a case fails.
    Test(test::TestArgs),
}

/// Where the manifests come from, and the mesh's settings.
#[derive(Args, Clone)]
struct Manifests {
    /// A manifest file, a directory (its *.yaml, *.yml and *.json files, recursively, hidden ones skipped, as
    /// the proxies read their --config), or `-` for stdin. Repeatable.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    files: Vec<PathBuf>,
    /// Root namespace, trust domain and aliases: the proxies' options of the same names.
    #[command(flatten)]
    model: mesh_runtime::args::ModelArgs,
    /// The JWKS document behind a jwksUri: URI=FILE. Repeatable.
    #[arg(long = "jwks", value_name = "URI=FILE")]
    jwks: Vec<String>,
}

/// Output formats of check and trace.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// For people.
    Text,
    /// The shared JSON shape.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Trace(args) => trace::run(&args),
        Command::Analyze(args) => analyze::run(&args),
        Command::Test(args) => test::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{} {e}", output::Style::stderr().error("error:"));
            ExitCode::from(2)
        }
    }
}
