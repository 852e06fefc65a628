//! The CA workload certificates come from: Istio's plug-in CA files (`ca-cert.pem`, `ca-key.pem`,
//! `root-cert.pem`, `cert-chain.pem`) read from a directory, or a root generated at start, optionally written
//! in the same layout so that other proxies (and Istio's ztunnel) can share it.

use std::path::{Path, PathBuf};

use mesh_identity::ca::{CaError, CaOptions, LocalCa, PluginCaPem};
use mesh_identity::spiffe::TrustDomain;
use rustls_pki_types::UnixTime;

/// Where the CA comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CaSource {
    /// Istio's plug-in CA files in this directory.
    Dir(PathBuf),
    /// A root generated at start, written to the directory if one is given.
    Generate {
        /// Where to write the plug-in files (refused if `ca-key.pem` is there already).
        write_to: Option<PathBuf>,
    },
}

/// The CA could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CaSetupError {
    /// A file of the plug-in layout could not be read.
    #[error(
        "CA directory {dir}: cannot read {file}: {reason} (expected Istio's plug-in files ca-cert.pem, ca-key.pem, root-cert.pem and optionally cert-chain.pem)"
    )]
    Unreadable {
        /// The directory.
        dir: String,
        /// The file.
        file: &'static str,
        /// What the system said.
        reason: String,
    },
    /// The files do not make a CA.
    #[error("CA directory {dir}: {source}")]
    Invalid {
        /// The directory.
        dir: String,
        /// What is wrong.
        source: CaError,
    },
    /// Generating the root failed.
    #[error("generating a root CA: {0}")]
    Generate(CaError),
    /// Writing the generated CA failed, or would overwrite a CA.
    #[error("writing the CA to {dir}: {reason}")]
    Write {
        /// The directory.
        dir: String,
        /// Why.
        reason: String,
    },
}

impl CaSource {
    /// Loads or generates the CA for `trust_domain` at `now`.
    pub fn load(&self, trust_domain: &TrustDomain, now: UnixTime) -> Result<LocalCa, CaSetupError> {
        match self {
            CaSource::Dir(dir) => load_dir(dir, trust_domain),
            CaSource::Generate { write_to } => {
                let ca = LocalCa::new_root(trust_domain.clone(), &CaOptions::default(), now)
                    .map_err(CaSetupError::Generate)?;
                if let Some(dir) = write_to {
                    write_dir(&ca, dir)?;
                }
                Ok(ca)
            }
        }
    }
}

fn load_dir(dir: &Path, trust_domain: &TrustDomain) -> Result<LocalCa, CaSetupError> {
    let read = |file: &'static str, optional: bool| -> Result<String, CaSetupError> {
        match std::fs::read_to_string(dir.join(file)) {
            Ok(text) => Ok(text),
            Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(CaSetupError::Unreadable { dir: dir.display().to_string(), file, reason: e.to_string() }),
        }
    };
    let files = PluginCaPem {
        ca_cert: read("ca-cert.pem", false)?,
        ca_key: read("ca-key.pem", false)?,
        root_cert: read("root-cert.pem", false)?,
        cert_chain: read("cert-chain.pem", true)?,
    };
    LocalCa::from_plugin_pem(trust_domain.clone(), &files)
        .map_err(|source| CaSetupError::Invalid { dir: dir.display().to_string(), source })
}

/// Writes `ca` to `dir` in Istio's plug-in layout, the key readable by the owner only.
pub fn write_dir(ca: &LocalCa, dir: &Path) -> Result<(), CaSetupError> {
    let fail = |reason: String| CaSetupError::Write { dir: dir.display().to_string(), reason };
    if dir.join("ca-key.pem").exists() {
        return Err(fail("a CA is there already (ca-key.pem); use --ca-dir to load it".into()));
    }
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    let files = ca.to_plugin_pem();
    for (name, text) in [
        ("ca-cert.pem", &files.ca_cert),
        ("root-cert.pem", &files.root_cert),
        ("cert-chain.pem", &files.cert_chain),
        ("ca-key.pem", &files.ca_key),
    ] {
        write_private(&dir.join(name), text, name == "ca-key.pem").map_err(|e| fail(format!("{name}: {e}")))?;
    }
    Ok(())
}

fn write_private(path: &Path, text: &str, private: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    options.open(path)?.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_ca_written_to_a_directory_loads_back() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let td = TrustDomain::new("cluster.local")?;
        let now = UnixTime::now();
        let generated = CaSource::Generate { write_to: Some(dir.path().join("ca")) }.load(&td, now)?;
        let loaded = CaSource::Dir(dir.path().join("ca")).load(&td, now)?;
        assert_eq!(generated.root_certificate(), loaded.root_certificate());
        // Never overwritten.
        let again = CaSource::Generate { write_to: Some(dir.path().join("ca")) }.load(&td, now);
        assert!(matches!(again, Err(CaSetupError::Write { .. })));
        Ok(())
    }

    #[test]
    fn a_missing_ca_directory_names_the_file_and_the_layout() -> Result<(), Box<dyn std::error::Error>> {
        let td = TrustDomain::new("cluster.local")?;
        let err = CaSource::Dir("/nonexistent/ca".into()).load(&td, UnixTime::now()).err().ok_or("loaded")?;
        let text = err.to_string();
        assert!(text.contains("ca-cert.pem") && text.contains("/nonexistent/ca"), "{text}");
        Ok(())
    }
}
