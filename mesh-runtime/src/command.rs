//! What the proxies' `main` functions share: logs, the settings from the command line, the configuration
//! files checked once before anything starts (a typo stops the start with every error, file, document and
//! field, rather than leaving a proxy waiting), the runtime, and SIGTERM / SIGINT as the shutdown signal.

use std::fmt::Display;
use std::process::ExitCode;

use crate::args::CommonArgs;
use crate::config::CommonConfig;
use crate::logging;
use crate::shutdown::{self, Shutdown};
use crate::source::FileSource;
use crate::state::MeshState;

/// Runs a proxy from its command line: `run` gets the settings, the configuration files and a shutdown
/// signal that SIGTERM or SIGINT triggers. Exits 1 with the reason if the settings or the files are invalid,
/// a listener cannot be bound, or the proxy fails.
pub fn run_proxy<F, Fut, E>(name: &str, common: &CommonArgs, run: F) -> ExitCode
where
    F: FnOnce(CommonConfig, FileSource, Shutdown) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    logging::init(common.log_format);
    let fail = |what: &dyn Display| {
        tracing::error!(error = %what, "{name} stopped");
        eprintln!("{name}: {what}");
        ExitCode::FAILURE
    };
    let config = match common.config() {
        Ok(config) => config,
        Err(e) => return fail(&e),
    };
    let source = common.file_source();
    if let Err(e) = check_files(&source, &config) {
        return fail(&e);
    }
    let runtime = match common.runtime() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    let result = runtime.block_on(async {
        let (trigger, shutdown) = shutdown::channel();
        tokio::spawn(trigger.on_signal());
        run(config, source, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Reads the files and compiles them once: an unreadable or invalid configuration is an error listing every
/// problem.
pub fn check_files(source: &FileSource, config: &CommonConfig) -> Result<(), String> {
    let documents = source.load().map_err(|e| format!("configuration: {e}"))?;
    MeshState::new(config.mesh.clone())
        .apply(&documents)
        .map(drop)
        .map_err(|errors| format!("configuration is invalid:\n  {}", errors.join("\n  ")))
}
