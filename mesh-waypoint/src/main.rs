//! The `mesh-waypoint` command.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use mesh_waypoint::args::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    let config = args.config();
    let status_of = args.gateway_class.clone();
    let kubeconfig = args.common.kubeconfig.clone();
    mesh_runtime::command::run_proxy("mesh-waypoint", &args.common, |source, shutdown| async move {
        let config = config.map_err(|e| e.to_string())?;
        if let Some(class) = status_of {
            report_status(kubeconfig, class, shutdown.clone()).await?;
        }
        mesh_waypoint::run(config, source, shutdown).await.map_err(|e| e.to_string())
    })
}

/// Starts the status controller of `class`.
#[cfg(feature = "kubernetes")]
async fn report_status(
    kubeconfig: Option<std::path::PathBuf>,
    class: String,
    shutdown: mesh_runtime::shutdown::Shutdown,
) -> Result<(), String> {
    let (client, _) = mesh_runtime::kubernetes::client(kubeconfig).await.map_err(|e| e.to_string())?;
    tokio::spawn(mesh_waypoint::controller::run(client, class, shutdown));
    Ok(())
}

#[cfg(not(feature = "kubernetes"))]
async fn report_status(
    _: Option<std::path::PathBuf>,
    _: String,
    _: mesh_runtime::shutdown::Shutdown,
) -> Result<(), String> {
    Err("--gateway-class: this build has no Kubernetes support (the `kubernetes` feature)".to_owned())
}
