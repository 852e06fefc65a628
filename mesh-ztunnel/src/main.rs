//! The `mesh-ztunnel` command.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use mesh_ztunnel::args::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    let config = args.config();
    mesh_runtime::command::run_proxy("mesh-ztunnel", &args.common, |source, shutdown| async move {
        mesh_ztunnel::run(config?, source, shutdown).await
    })
}
