//! `mesh-demo`: both guide scenarios end to end on loopback. `mesh-demo` runs both, `mesh-demo payments` or
//! `mesh-demo bookinfo` one. It starts its proxies as processes of this same executable
//! (`mesh-demo ztunnel ...`, `mesh-demo waypoint ...`, the reference binaries' own command lines).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Runs the payments and Bookinfo scenarios on loopback: two node proxies and a waypoint per scenario, the
/// backends, a token issuer, real HTTP requests; prints each result against what the guide says. Exits 1 if
/// any differs.
#[derive(Parser)]
#[command(name = "mesh-demo", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// The payments guide.
    Payments,
    /// The Bookinfo guide.
    Bookinfo,
    /// A node proxy (the mesh-ztunnel command line).
    #[command(hide = true)]
    Ztunnel(Box<mesh_ztunnel::args::Args>),
    /// A waypoint (the mesh-waypoint command line).
    #[command(hide = true)]
    Waypoint(Box<mesh_waypoint::args::Args>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        // The reference binaries' own entry points.
        Some(Command::Ztunnel(args)) => {
            let config = args.config();
            mesh_runtime::command::run_proxy("mesh-ztunnel", &args.common, |source, shutdown| async move {
                mesh_ztunnel::run(config?, source, shutdown).await
            })
        }
        Some(Command::Waypoint(args)) => {
            let config = args.config();
            mesh_runtime::command::run_proxy("mesh-waypoint", &args.common, |source, shutdown| async move {
                mesh_waypoint::run(config?, source, shutdown).await
            })
        }
        scenario => scenarios(scenario),
    }
}

fn scenarios(which: Option<Command>) -> ExitCode {
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread().enable_all().build() else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(async {
        let mut ok = true;
        if !matches!(which, Some(Command::Bookinfo)) {
            ok &= mesh_demo::payments::run().await?;
            println!();
        }
        if !matches!(which, Some(Command::Payments)) {
            ok &= mesh_demo::bookinfo::run().await?;
        }
        Ok::<_, mesh_demo::DemoError>(ok)
    });
    match result {
        Ok(true) => {
            println!("\nevery result is the one the guides give");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("\nsome results differ from the guides (FAIL above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("mesh-demo: {e}");
            ExitCode::FAILURE
        }
    }
}
