//! Loads a scenario (the embedded payments scenario by default, or the file given as the first argument),
//! applies its manifests and prints every check with its decision and reason.
//!
//! ```text
//! cargo run --example payments
//! cargo run --example payments -- examples/scenarios/bookinfo.yaml
//! ```

use std::process::ExitCode;

use mesh_policy::scenario::Scenario;

fn main() -> ExitCode {
    let text = match std::env::args().nth(1) {
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("cannot read {path}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => mesh_examples::PAYMENTS.to_owned(),
    };
    let scenario = match Scenario::from_yaml(&text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("not a scenario file: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mesh = match scenario.mesh() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("the manifests do not apply:\n{e}");
            return ExitCode::FAILURE;
        }
    };
    println!("scenario {}: {} resources applied", scenario.name, mesh.len());
    if let Some(d) = &scenario.description {
        println!("{}", d.trim());
    }
    let mut unexpected = 0;
    for case in &scenario.cases {
        println!("\n- {}", case.name);
        match mesh.check(&case.request) {
            Ok(decision) => {
                println!("  {decision}");
                let mismatches = case.expect.mismatches(&decision);
                for m in &mismatches {
                    println!("  UNEXPECTED {m}");
                }
                unexpected += usize::from(!mismatches.is_empty());
            }
            Err(e) => {
                println!("  ERROR {e}");
                unexpected += 1;
            }
        }
    }
    println!("\n{} checks, {unexpected} unexpected", scenario.cases.len());
    if unexpected == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
