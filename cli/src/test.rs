//! `mesh-policy test`: scenario files, with a report and JUnit XML for CI systems.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use mesh_policy::scenario::Scenario;

use crate::output::Style;
use crate::{Manifests, input};

#[derive(Args)]
pub(crate) struct TestArgs {
    #[command(flatten)]
    manifests: Manifests,
    /// Scenario files (manifests, cases, traces and invalid manifests with their expectations). The manifests
    /// given with -f are applied first, then each scenario's own.
    #[arg(required = true, value_name = "SCENARIO")]
    scenarios: Vec<PathBuf>,
    /// Also write the report as JUnit XML to this file.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
}

struct Suite {
    name: String,
    cases: Vec<(String, Vec<String>)>,
}

pub(crate) fn run(args: &TestArgs) -> Result<ExitCode, String> {
    let shared = input::files(&args.manifests.files)?;
    let shared_text: String = shared.iter().map(|f| format!("{}\n---\n", f.text)).collect();
    let style = Style::stdout();
    let mut suites = Vec::new();
    for file in input::files(&args.scenarios)? {
        let mut scenario = Scenario::from_yaml(&file.text).map_err(|e| format!("{}: {e}", file.name))?;
        if !shared_text.is_empty() {
            scenario.manifests = format!("{shared_text}{}", scenario.manifests);
        }
        if scenario.mesh.is_none() {
            scenario.mesh = Some(input::config(&args.manifests));
        }
        let cases = match scenario.run() {
            Ok(results) => results.into_iter().map(|r| (r.name, r.failures)).collect(),
            Err(e) => vec![("manifests apply".to_owned(), vec![e.to_string()])],
        };
        suites.push(Suite { name: file.name, cases });
    }
    let (mut passed, mut failed) = (0, 0);
    for suite in &suites {
        out!("{}", suite.name);
        for (name, failures) in &suite.cases {
            if failures.is_empty() {
                passed += 1;
                out!("  {} {name}", style.good("ok  "));
            } else {
                failed += 1;
                out!("  {} {name}", style.error("FAIL"));
                for f in failures {
                    out!("       {f}");
                }
            }
        }
    }
    out!("{passed} passed, {failed} failed");
    if let Some(path) = &args.junit {
        std::fs::write(path, junit(&suites)).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(ExitCode::from(u8::from(failed > 0)))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn junit(suites: &[Suite]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"mesh-policy\">\n");
    for s in suites {
        let failures = s.cases.iter().filter(|(_, f)| !f.is_empty()).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\">",
            escape(&s.name),
            s.cases.len()
        );
        for (name, fails) in &s.cases {
            let _ = write!(out, "    <testcase classname=\"{}\" name=\"{}\"", escape(&s.name), escape(name));
            if fails.is_empty() {
                out.push_str("/>\n");
            } else {
                let _ = writeln!(
                    out,
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                    escape(&fails[0]),
                    escape(&fails.join("\n"))
                );
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}
