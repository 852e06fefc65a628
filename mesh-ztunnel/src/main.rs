//! The `mesh-ztunnel` command.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use mesh_ztunnel::args::Args;

fn main() -> ExitCode {
    // Istio's ztunnel chart runs the image with the arguments `proxy ztunnel`: accepted and left out.
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "proxy") && argv.get(2).is_some_and(|a| a == "ztunnel") {
        argv.drain(1..3);
    }
    let args = Args::parse_from(argv);
    let config = args.config();
    let xds = args.istiod.source(&args.node, std::env::vars());
    if xds.is_some() && args.common.kubernetes {
        eprintln!("mesh-ztunnel: XDS_ADDRESS (--xds-address) and --kubernetes name two configuration sources; use one");
        return ExitCode::FAILURE;
    }
    let xds = xds.map(|s| Box::new(s) as Box<dyn mesh_runtime::source::ConfigSource>);
    mesh_runtime::command::run_proxy_with("mesh-ztunnel", &args.common, xds, |source, shutdown| async move {
        mesh_ztunnel::run(config?, source, shutdown).await
    })
}
