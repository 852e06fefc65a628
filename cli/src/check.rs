//! `mesh-policy check`: one request in the shared check-request shape.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use mesh_policy::{CheckRequest, Decision};

use crate::output::Style;
use crate::{Format, Manifests, input};

#[derive(Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    manifests: Manifests,
    /// The request, JSON or YAML in the shape of shared/spec/check-request.md (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    request: PathBuf,
    /// Unix seconds at which raw tokens are validated; default: now.
    #[arg(long)]
    now: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

pub(crate) fn now_or_clock(now: Option<u64>) -> u64 {
    now.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    })
}

pub(crate) fn run(args: &CheckArgs) -> Result<ExitCode, String> {
    let (mesh, _) = input::mesh(&args.manifests)?;
    let request: CheckRequest = input::document(&args.request)?;
    let decision = mesh.check_at(&request, now_or_clock(args.now)).map_err(|e| e.to_string())?;
    match args.format {
        Format::Json => out!("{}", serde_json::to_string_pretty(&decision).map_err(|e| e.to_string())?),
        Format::Text => out!("{}", line(&decision, Style::stdout())),
    }
    Ok(ExitCode::from(if decision.allowed { 0 } else { 1 }))
}

/// `ALLOW at ztunnel: allowed by ns/name rule 0: ...`, coloured on a terminal.
pub(crate) fn line(d: &Decision, style: Style) -> String {
    let verdict = if d.allowed { style.good("ALLOW") } else { style.error("DENY") };
    let status = d.status.map(|s| format!(" ({s})")).unwrap_or_default();
    format!("{verdict} at {}{status}: {}", d.enforcement.as_str(), d.reason)
}
