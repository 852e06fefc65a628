//! Where configuration comes from: the Kubernetes YAML the cluster model and the policies are read from.
//!
//! A [`ConfigSource`] sends the whole configuration, as named documents, at start and after every change; the
//! proxy replaces everything it holds with each update ([`crate::state::MeshState::apply`]). [`FileSource`]
//! reads files and directories and notices changes by polling their modification times and sizes; a source
//! that watches the Kubernetes API implements the same trait and nothing else in the proxy changes.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

/// One named text of manifests (a file's contents, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Where it comes from, as errors name it (a file path).
    pub name: String,
    /// Multi-document YAML or JSON.
    pub text: String,
}

/// The whole configuration, or why it could not be read (the proxy then keeps what it has).
pub type ConfigUpdate = Result<Vec<Document>, SourceError>;

/// Why a source could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {reason}")]
    Unreadable {
        /// The path.
        path: String,
        /// What the system said.
        reason: String,
    },
    /// A path named on the command line matches no configuration file.
    #[error("{path}: no .yaml, .yml or .json file there")]
    Empty {
        /// The path.
        path: String,
    },
}

/// A future a source runs as.
pub type SourceTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A source of configuration. It sends the whole configuration at start and after every change, until the
/// receiver is dropped.
pub trait ConfigSource: Send + 'static {
    /// What the source reads, for logs and the admin view.
    fn describe(&self) -> String;
    /// Runs the source: one update now, then one after each change.
    fn run(self: Box<Self>, updates: mpsc::Sender<ConfigUpdate>) -> SourceTask;
}

/// Files and directories (their `.yaml`, `.yml` and `.json` files, in name order, not recursing), polled for
/// changes.
#[derive(Debug, Clone)]
pub struct FileSource {
    paths: Vec<PathBuf>,
    interval: Duration,
}

/// What a poll compares: every file's path, length and modification time.
type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

impl FileSource {
    /// Reads `paths`, polling for changes every `interval`.
    pub fn new(paths: Vec<PathBuf>, interval: Duration) -> Self {
        FileSource { paths, interval }
    }

    /// Reads every file now.
    pub fn load(&self) -> Result<Vec<Document>, SourceError> {
        let mut documents = Vec::new();
        for file in self.files()? {
            let text = std::fs::read_to_string(&file).map_err(|e| unreadable(&file, &e))?;
            documents.push(Document { name: file.display().to_string(), text });
        }
        Ok(documents)
    }

    fn files(&self) -> Result<Vec<PathBuf>, SourceError> {
        let mut files = Vec::new();
        for path in &self.paths {
            let meta = std::fs::metadata(path).map_err(|e| unreadable(path, &e))?;
            if !meta.is_dir() {
                files.push(path.clone());
                continue;
            }
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| unreadable(path, &e))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_config(p))
                .collect();
            if found.is_empty() {
                return Err(SourceError::Empty { path: path.display().to_string() });
            }
            found.sort();
            files.extend(found);
        }
        Ok(files)
    }

    fn fingerprint(&self) -> Result<Fingerprint, SourceError> {
        let mut print = Vec::new();
        for file in self.files()? {
            let meta = std::fs::metadata(&file).map_err(|e| unreadable(&file, &e))?;
            print.push((file, meta.len(), meta.modified().ok()));
        }
        Ok(print)
    }
}

impl ConfigSource for FileSource {
    fn describe(&self) -> String {
        let paths: Vec<String> = self.paths.iter().map(|p| p.display().to_string()).collect();
        format!("files {} (polled every {:?})", paths.join(", "), self.interval)
    }

    fn run(self: Box<Self>, updates: mpsc::Sender<ConfigUpdate>) -> SourceTask {
        Box::pin(async move {
            let mut last = self.fingerprint();
            if updates.send(self.load()).await.is_err() {
                return;
            }
            loop {
                tokio::time::sleep(self.interval).await;
                let now = self.fingerprint();
                if now == last {
                    continue;
                }
                last = now;
                if updates.send(self.load()).await.is_err() {
                    return;
                }
            }
        })
    }
}

fn is_config(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

fn unreadable(path: &Path, e: &std::io::Error) -> SourceError {
    SourceError::Unreadable { path: path.display().to_string(), reason: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_reads_its_config_files_in_order_and_skips_others() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("b.yaml"), "b")?;
        std::fs::write(dir.path().join("a.json"), "a")?;
        std::fs::write(dir.path().join("notes.txt"), "x")?;
        let docs = FileSource::new(vec![dir.path().into()], Duration::from_secs(1)).load()?;
        let texts: Vec<&str> = docs.iter().map(|d| d.text.as_str()).collect();
        assert_eq!(texts, ["a", "b"]);
        Ok(())
    }

    #[test]
    fn a_missing_path_and_an_empty_directory_are_errors_naming_them() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let missing = dir.path().join("missing.yaml");
        let err = FileSource::new(vec![missing.clone()], Duration::from_secs(1)).load();
        assert!(matches!(&err, Err(SourceError::Unreadable { path, .. }) if path.contains("missing.yaml")), "{err:?}");
        let err = FileSource::new(vec![dir.path().into()], Duration::from_secs(1)).load();
        assert!(matches!(err, Err(SourceError::Empty { .. })), "{err:?}");
        Ok(())
    }

    #[tokio::test]
    async fn a_change_sends_a_new_update() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("p.yaml");
        std::fs::write(&file, "one")?;
        let (tx, mut rx) = mpsc::channel(4);
        tokio::spawn(Box::new(FileSource::new(vec![file.clone()], Duration::from_millis(20))).run(tx));
        let first = rx.recv().await.ok_or("closed")??;
        assert_eq!(first[0].text, "one");
        std::fs::write(&file, "two, longer")?;
        let second = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await?.ok_or("closed")??;
        assert_eq!(second[0].text, "two, longer");
        Ok(())
    }
}
