//! The `mesh-ztunnel` command.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use mesh_runtime::logging;
use mesh_ztunnel::args::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    logging::init(args.common.log_format);
    let runtime = match args.common.runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mesh-ztunnel: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(mesh_ztunnel::serve::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesh-ztunnel: {e}");
            ExitCode::FAILURE
        }
    }
}
