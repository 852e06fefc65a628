//! What the proxies' `main` functions share: logs, the settings from the command line, the configuration
//! source (the files of `--config`, checked once before anything starts, so that a typo stops the start with
//! every error, file, document and field; or the Kubernetes API with `--kubernetes`), the runtime, and
//! SIGTERM / SIGINT as the shutdown signal.

use std::fmt::Display;
use std::process::ExitCode;

use crate::args::CommonArgs;
use crate::config::CommonConfig;
use crate::logging;
use crate::shutdown::{self, Shutdown};
use crate::source::{ConfigSource, FileSource};
use crate::state::MeshState;

/// Runs a proxy from its command line: `run` gets the configuration source and a shutdown signal that
/// SIGTERM or SIGINT triggers. Exits 1 with the reason if the settings or the files are invalid,
/// a listener cannot be bound, or the proxy fails.
pub fn run_proxy<F, Fut, E>(name: &str, common: &CommonArgs, run: F) -> ExitCode
where
    F: FnOnce(Box<dyn ConfigSource>, Shutdown) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    run_proxy_with(name, common, None, run)
}

/// [`run_proxy`] with a configuration source the caller made (istiod's xDS, say) in place of the one the common
/// arguments name.
pub fn run_proxy_with<F, Fut, E>(
    name: &str,
    common: &CommonArgs,
    source: Option<Box<dyn ConfigSource>>,
    run: F,
) -> ExitCode
where
    F: FnOnce(Box<dyn ConfigSource>, Shutdown) -> Fut,
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
    let runtime = match common.runtime() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    let result = runtime.block_on(async {
        let source = match source {
            Some(given) => given,
            None => self::source(common, &config).await?,
        };
        let (trigger, shutdown) = shutdown::channel();
        tokio::spawn(trigger.on_signal());
        run(source, shutdown).await.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// The source the command line names: the Kubernetes API with `--kubernetes`, else the files of `--config`,
/// checked once now.
async fn source(common: &CommonArgs, config: &CommonConfig) -> Result<Box<dyn ConfigSource>, String> {
    if common.kubernetes {
        #[cfg(feature = "kubernetes")]
        {
            let source =
                crate::kubernetes::KubeSource::connect(common.kubeconfig.clone()).await.map_err(|e| e.to_string())?;
            return Ok(Box::new(source));
        }
        #[cfg(not(feature = "kubernetes"))]
        return Err("--kubernetes: this build has no Kubernetes support (the `kubernetes` feature)".to_owned());
    }
    if common.config.is_empty() {
        return Err("no configuration source: name manifests with --config, or use --kubernetes (or istiod's \
                    XDS_ADDRESS, for mesh-ztunnel)"
            .to_owned());
    }
    let files = common.file_source();
    check_files(&files, config)?;
    Ok(Box::new(files))
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
