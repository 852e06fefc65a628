//! Checks one request against manifests from the command line, in the shared check-request shape.
//!
//! ```text
//! cargo run --example check -- policies/*.yaml < request.json      # request on stdin (JSON or YAML)
//! cargo run --example check -- policies/*.yaml --request request.yaml --now 1800000000
//! ```
//!
//! Prints the decision as JSON and exits 0 when allowed, 1 when denied, 2 on invalid input.

use std::io::Read;
use std::process::ExitCode;

use mesh_policy::{CheckRequest, Mesh};

fn main() -> ExitCode {
    match run() {
        Ok(allowed) => ExitCode::from(if allowed { 0 } else { 1 }),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool, String> {
    let mut manifests = Vec::new();
    let mut request_path = None;
    let mut now = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--request" => request_path = Some(args.next().ok_or("--request needs a file")?),
            "--now" => {
                let v = args.next().ok_or("--now needs Unix seconds")?;
                now = Some(v.parse::<u64>().map_err(|_| format!("--now: {v:?} is not Unix seconds"))?);
            }
            "-h" | "--help" => return Err("usage: check MANIFEST... [--request FILE] [--now UNIX_SECONDS]".into()),
            _ => manifests.push(arg),
        }
    }
    let mut mesh = Mesh::default();
    for path in &manifests {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let report = mesh.apply_yaml(&text).map_err(|e| format!("{path}: {e}"))?;
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
    }
    let text = match request_path {
        Some(path) => std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?,
        None => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(|e| format!("stdin: {e}"))?;
            s
        }
    };
    // YAML is a superset of JSON: one parser takes both.
    let request: CheckRequest = serde_yaml_ng::from_str(&text).map_err(|e| format!("invalid check request: {e}"))?;
    let decision = match now {
        Some(now) => mesh.check_at(&request, now),
        None => mesh.check(&request),
    }
    .map_err(|e| e.to_string())?;
    let json = serde_json::to_string_pretty(&decision).map_err(|e| e.to_string())?;
    println!("{json}");
    Ok(decision.allowed)
}
