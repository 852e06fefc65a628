//! The `mesh-waypoint` command.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use mesh_waypoint::args::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    let config = args.config();
    mesh_runtime::command::run_proxy("mesh-waypoint", &args.common, |_, source, shutdown| async move {
        mesh_waypoint::run(config?, source, shutdown).await
    })
}
