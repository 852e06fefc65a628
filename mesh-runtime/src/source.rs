//! Where configuration comes from: the Kubernetes YAML the cluster model and the policies are read from.
//!
//! A [`ConfigSource`] sends the whole configuration, as named documents, at start and after every change; the
//! proxy replaces everything it holds with each update ([`crate::state::MeshState::apply`]). [`FileSource`]
//! reads files and directories and notices changes by polling their modification times and sizes; a source
//! that watches the Kubernetes API implements the same trait and nothing else in the proxy changes.
//!
//! A file being written must never be read half-way: a policy cut before its selector's last characters, or
//! a file cut before its policy document, still parses, and would widen access. So a changed file is read
//! only once it has stayed the same across two polls, and an empty file is taken as one being written (the
//! configuration in force stays). Writers should still replace files by rename (write a temporary file in
//! the same directory, then `mv` it over the old one), which is atomic; Kubernetes ConfigMap volumes do.

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
    /// Directories nest deeper than [`MAX_DEPTH`] (a symbolic link to a parent, say).
    #[error("{path}: directories nest deeper than {MAX_DEPTH} levels (a link to a parent directory?)")]
    TooDeep {
        /// The directory where the limit was reached.
        path: String,
    },
    /// A configuration server cannot be reached, or refuses a request (the Kubernetes API, say). The source
    /// retries; the configuration in force stays.
    #[error("{server}: {kind}: {reason}; retrying, the configuration in force stays")]
    Unreachable {
        /// The server, described.
        server: String,
        /// What it was reading.
        kind: String,
        /// What went wrong.
        reason: String,
    },
    /// A file is empty: being written, or truncated. It is not applied (removing every resource it held would
    /// be an outage); the configuration in force stays until it has content.
    #[error("{path} is empty (being written?); the configuration in force is kept until it has content")]
    EmptyFile {
        /// The file.
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

impl ConfigSource for Box<dyn ConfigSource> {
    fn describe(&self) -> String {
        (**self).describe()
    }

    fn run(self: Box<Self>, updates: mpsc::Sender<ConfigUpdate>) -> SourceTask {
        (*self).run(updates)
    }
}

/// Files and directories (their `.yaml`, `.yml` and `.json` files, as [`manifest_files`] lists them), polled
/// for changes; a change is read once it has settled (unchanged across two polls).
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
            let text = text.strip_prefix('\u{feff}').map(str::to_owned).unwrap_or(text);
            if text.trim().is_empty() {
                return Err(SourceError::EmptyFile { path: file.display().to_string() });
            }
            documents.push(Document { name: file.display().to_string(), text });
        }
        Ok(documents)
    }

    fn files(&self) -> Result<Vec<PathBuf>, SourceError> {
        manifest_files(&self.paths)
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
            // What was last read, and what the previous poll saw.
            let mut read = self.fingerprint();
            let mut seen = read.clone();
            if updates.send(self.load()).await.is_err() {
                return;
            }
            loop {
                tokio::time::sleep(self.interval).await;
                let now = self.fingerprint();
                let settled = now == seen;
                seen = now;
                // Read a change only once it has settled: a file still being written changes between polls.
                if !settled || seen == read {
                    continue;
                }
                read = seen.clone();
                if updates.send(self.load()).await.is_err() {
                    return;
                }
            }
        })
    }
}

/// How deep [`manifest_files`] descends into directories.
pub const MAX_DEPTH: usize = 32;

/// The manifest files `paths` name, as both the proxies and the `mesh-policy` command read them: a file as
/// it is; a directory's `.yaml`, `.yml` and `.json` files, recursively, in name order. Hidden files and
/// directories (a leading `.`) are left out: editors' temporary files, and the `..data` and timestamped
/// directories of a Kubernetes ConfigMap volume, whose files the visible links already name. A directory
/// with no manifest anywhere below it is an error, as is a path that cannot be read.
pub fn manifest_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, SourceError> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| unreadable(path, &e))?;
        if !meta.is_dir() {
            files.push(path.clone());
            continue;
        }
        let before = files.len();
        walk(path, 0, &mut files)?;
        if files.len() == before {
            return Err(SourceError::Empty { path: path.display().to_string() });
        }
    }
    Ok(files)
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), SourceError> {
    if depth >= MAX_DEPTH {
        return Err(SourceError::TooDeep { path: dir.display().to_string() });
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| unreadable(dir, &e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| !is_hidden(p))
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            walk(&entry, depth + 1, out)?;
        } else if entry.is_file() && is_config(&entry) {
            out.push(entry);
        }
    }
    Ok(())
}

fn is_config(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

fn is_hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
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
    fn directories_are_read_recursively_and_a_configmap_volume_once() -> Result<(), Box<dyn std::error::Error>> {
        // A ConfigMap volume: the data in a hidden timestamped directory, `..data` linking to it, and one
        // visible link per key.
        let dir = tempfile::tempdir()?;
        let volume = dir.path().join("policies");
        std::fs::create_dir_all(volume.join("..2026_12_07_10_00_00.1"))?;
        std::fs::write(volume.join("..2026_12_07_10_00_00.1/deny.yaml"), "deny")?;
        std::os::unix::fs::symlink("..2026_12_07_10_00_00.1", volume.join("..data"))?;
        std::os::unix::fs::symlink("..data/deny.yaml", volume.join("deny.yaml"))?;
        std::fs::create_dir_all(dir.path().join("team/sub"))?;
        std::fs::write(dir.path().join("team/sub/allow.yml"), "\u{feff}allow")?;
        std::fs::write(dir.path().join("team/.allow.yaml.swp"), "x")?;
        std::fs::write(dir.path().join("a.json"), "a")?;
        let docs = FileSource::new(vec![dir.path().into()], Duration::from_secs(1)).load()?;
        let texts: Vec<&str> = docs.iter().map(|d| d.text.as_str()).collect();
        assert_eq!(texts, ["a", "deny", "allow"], "{docs:?}");
        assert!(docs[1].name.ends_with("policies/deny.yaml"), "{docs:?}");
        Ok(())
    }

    #[test]
    fn a_link_to_a_parent_directory_is_an_error_not_a_loop() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("a.yaml"), "a")?;
        std::os::unix::fs::symlink(dir.path(), dir.path().join("loop"))?;
        let err = manifest_files(&[dir.path().into()]);
        assert!(matches!(err, Err(SourceError::TooDeep { .. })), "{err:?}");
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

    /// A file written in pieces, as an editor or `kubectl get -o yaml > file` writes it: cut at every line,
    /// the rest following within one poll. Only the whole file is ever read.
    #[tokio::test]
    async fn a_file_being_written_is_read_only_once_it_has_settled() -> Result<(), Box<dyn std::error::Error>> {
        use std::io::Write;
        let whole = "kind: A\nmetadata: {name: one}\n---\nkind: B\nmetadata: {name: two}\nspec:\n  rules:\n  - {}\n";
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("p.yaml");
        std::fs::write(&file, "kind: Start\n")?;
        let interval = Duration::from_millis(150);
        let (tx, mut rx) = mpsc::channel(64);
        tokio::spawn(Box::new(FileSource::new(vec![file.clone()], interval)).run(tx));
        assert_eq!(rx.recv().await.ok_or("closed")??[0].text, "kind: Start\n");
        let cuts: Vec<usize> = whole.match_indices('\n').map(|(i, _)| i + 1).filter(|&i| i < whole.len()).collect();
        for (n, cut) in cuts.iter().enumerate() {
            // Truncate, write the first part, then the rest a little later (well within one poll).
            let mut out = std::fs::File::create(&file)?;
            out.write_all(&whole.as_bytes()[..*cut])?;
            out.flush()?;
            tokio::time::sleep(Duration::from_millis(20)).await;
            out.write_all(&whole.as_bytes()[*cut..])?;
            drop(out);
            let update = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await?.ok_or("closed")??;
            assert_eq!(update[0].text, whole, "cut {n} at byte {cut}: only the whole file may be read");
            // Something else in between, so that the next write is a change.
            std::fs::write(&file, format!("kind: Between{n}\n"))?;
            let between = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await?.ok_or("closed")??;
            assert_eq!(between[0].text, format!("kind: Between{n}\n"));
        }
        // An emptied file is not applied: the source reports it, the configuration in force stays.
        std::fs::write(&file, "")?;
        let emptied = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await?.ok_or("closed")?;
        assert!(matches!(emptied, Err(SourceError::EmptyFile { .. })), "{emptied:?}");
        Ok(())
    }
}
