//! The `mesh-waypoint` command.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use mesh_waypoint::args::Args;
use tracing::error;

fn main() -> ExitCode {
    let args = Args::parse();
    mesh_runtime::logging::init(args.common.log_format);
    let runtime = match args.common.runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mesh-waypoint: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(mesh_waypoint::serve::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "mesh-waypoint stopped");
            eprintln!("mesh-waypoint: {e}");
            ExitCode::FAILURE
        }
    }
}
