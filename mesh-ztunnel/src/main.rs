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
    let remote_ca = args.istiod.remote_ca(std::env::vars());
    if remote_ca.is_some() && (args.common.ca_dir.is_some() || args.common.write_ca.is_some()) {
        eprintln!(
            "mesh-ztunnel: certificates come from istiod's CA (CA_ADDRESS, else XDS_ADDRESS), so --ca-dir and \
             --write-ca do not apply; add --fake-ca (FAKE_CA=true) to issue from the local CA instead"
        );
        return ExitCode::FAILURE;
    }
    let xds = xds.map(|s| Box::new(s) as Box<dyn mesh_runtime::source::ConfigSource>);
    mesh_runtime::command::run_proxy_with("mesh-ztunnel", &args.common, xds, |source, shutdown| async move {
        let config = config?;
        match remote_ca {
            Some(ca) => {
                let pki = mesh_runtime::pki::Pki::remote(&config.common, std::sync::Arc::new(ca))?;
                mesh_ztunnel::run_with_pki(config, source, pki, shutdown).await
            }
            None => mesh_ztunnel::run(config, source, shutdown).await,
        }
    })
}
