//! The conformance corpus: every scenario file under `tests/conformance/` and `examples/scenarios/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use mesh_policy::scenario::Scenario;

fn run_dir(dir: &Path, total: &mut usize, failures: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries.into_iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")) {
        let text = std::fs::read_to_string(&path).unwrap();
        let scenario = match Scenario::from_yaml(&text) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        match scenario.run() {
            Ok(results) => {
                for r in results {
                    *total += 1;
                    if !r.failures.is_empty() {
                        failures.push(format!("{} / {}:\n    {}", path.display(), r.name, r.failures.join("\n    ")));
                    }
                }
            }
            Err(e) => failures.push(format!("{}: manifests do not apply: {e}", path.display())),
        }
    }
}

#[test]
fn conformance_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut total = 0;
    let mut failures = Vec::new();
    run_dir(&root.join("tests/conformance"), &mut total, &mut failures);
    run_dir(&root.join("../examples/scenarios"), &mut total, &mut failures);
    assert!(failures.is_empty(), "{} of {total} cases failed:\n{}", failures.len(), failures.join("\n"));
    assert!(total >= 10, "the corpus holds only {total} cases");
}
