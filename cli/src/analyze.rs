//! `mesh-policy analyze`: findings as text, JSON or SARIF (for code-review tools).

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use mesh_policy::resource::ResourceId;
use mesh_policy::{Finding, Severity};
use serde_json::{Value, json};

use crate::output::Style;
use crate::{Manifests, input};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AnalyzeFormat {
    Text,
    Json,
    Sarif,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FailOn {
    Error,
    Warning,
    Info,
    Never,
}

#[derive(Args)]
pub(crate) struct AnalyzeArgs {
    #[command(flatten)]
    manifests: Manifests,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: AnalyzeFormat,
    /// Exit 1 when a finding of this severity or above exists.
    #[arg(long, value_enum, default_value = "error")]
    fail_on: FailOn,
}

pub(crate) fn run(args: &AnalyzeArgs) -> Result<ExitCode, String> {
    let (mesh, files) = input::mesh(&args.manifests)?;
    let findings = mesh.analyze();
    let locations = input::locations(&files);
    match args.format {
        AnalyzeFormat::Text => text(&findings, &locations),
        AnalyzeFormat::Json => {
            out!("{}", serde_json::to_string_pretty(&findings).map_err(|e| e.to_string())?);
        }
        AnalyzeFormat::Sarif => {
            out!("{}", serde_json::to_string_pretty(&sarif(&findings, &locations)).map_err(|e| e.to_string())?);
        }
    }
    let threshold = match args.fail_on {
        FailOn::Error => Some(Severity::Error),
        FailOn::Warning => Some(Severity::Warning),
        FailOn::Info => Some(Severity::Info),
        FailOn::Never => None,
    };
    let fail = threshold.is_some_and(|t| findings.iter().any(|f| f.severity >= t));
    Ok(ExitCode::from(u8::from(fail)))
}

fn text(findings: &[Finding], locations: &BTreeMap<ResourceId, (String, usize)>) {
    let style = Style::stdout();
    for f in findings {
        let severity = match f.severity {
            Severity::Error => style.error("error"),
            Severity::Warning => style.warning("warning"),
            Severity::Info => style.dim("info"),
        };
        let first = f.resources.first();
        let at = first
            .and_then(|r| locations.get(&r.resource))
            .map(|(file, line)| format!("{file}:{line}: "))
            .unwrap_or_default();
        let what = first.map(|r| format!("{r}: ")).unwrap_or_default();
        out!("{at}{severity}[{}] {what}{}", f.code, f.message);
        for r in f.resources.iter().skip(1) {
            out!("    {} {r}", style.dim("see"));
        }
        out!("    {} {}", style.dim("fix:"), f.fix);
    }
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    out!("{} errors, {} warnings, {} infos", count(Severity::Error), count(Severity::Warning), count(Severity::Info));
}

/// SARIF 2.1.0: one rule per code, one result per finding, located at the document of its first resource.
fn sarif(findings: &[Finding], locations: &BTreeMap<ResourceId, (String, usize)>) -> Value {
    let mut rules: BTreeMap<&str, Value> = BTreeMap::new();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            rules.entry(f.code).or_insert_with(|| {
                json!({"id": f.code, "shortDescription": {"text": f.code.replace('-', " ")}, "help": {"text": f.fix}})
            });
            let level = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
                Severity::Info => "note",
            };
            let located: Vec<Value> = f
                .resources
                .iter()
                .filter_map(|r| {
                    let (file, line) = locations.get(&r.resource)?;
                    Some(json!({
                        "physicalLocation": {"artifactLocation": {"uri": file}, "region": {"startLine": line}},
                        "logicalLocations": [{"fullyQualifiedName": r.to_string(), "kind": "resource"}],
                    }))
                })
                .take(1)
                .collect();
            json!({
                "ruleId": f.code,
                "level": level,
                "message": {"text": format!("{} Fix: {}", f.message, f.fix)},
                "locations": located,
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "mesh-policy", "version": env!("CARGO_PKG_VERSION"), "rules": rules.into_values().collect::<Vec<_>>()}},
            "results": results,
        }],
    })
}
