//! Errors: invalid manifests and invalid check requests.

use std::fmt;

/// One invalid field of a resource or request: where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `spec.rules[0].from[0].source.principals[1]`.
    pub field: String,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
}

impl FieldError {
    /// An error at `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.field.is_empty() {
            write!(f, "{}: ", Cut(&self.field))?;
        }
        write!(f, "{}", Cut(&self.message))
    }
}

/// At most this many errors are displayed of a list; a count stands for the rest.
pub const MAX_DISPLAYED_ERRORS: usize = 20;
/// At most this many bytes of one field path or message are displayed.
pub const MAX_DISPLAYED_BYTES: usize = 1024;

/// Text displayed up to [`MAX_DISPLAYED_BYTES`], so that a huge value quoted in a message cannot make the
/// message huge.
struct Cut<'a>(&'a str);

impl fmt::Display for Cut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() <= MAX_DISPLAYED_BYTES {
            return f.write_str(self.0);
        }
        let mut end = MAX_DISPLAYED_BYTES;
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "{}... ({} more bytes)", &self.0[..end], self.0.len() - end)
    }
}

/// Displays the first [`MAX_DISPLAYED_ERRORS`] items separated by `sep`, then how many were left out.
fn bounded<T: fmt::Display>(items: &[T], sep: &str) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().take(MAX_DISPLAYED_ERRORS).enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(&item.to_string());
    }
    if items.len() > MAX_DISPLAYED_ERRORS {
        out.push_str(&format!("{sep}... and {} more errors", items.len() - MAX_DISPLAYED_ERRORS));
    }
    out
}

/// Why one document of a manifest could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The text is not YAML.
    #[error("document {document}: invalid YAML: {}", Cut(.message))]
    Yaml {
        /// 1-based index of the document in the stream.
        document: usize,
        /// The parser's message, with its line and column.
        message: String,
    },
    /// The document is not a Kubernetes object (no `kind`, not a mapping, ...).
    #[error("document {document}: {}", Cut(.message))]
    NotAnObject {
        /// 1-based index of the document in the stream.
        document: usize,
        /// What is missing.
        message: String,
    },
    /// The manifest is larger than one apply reads ([`crate::MeshConfig::max_manifest_bytes`]).
    #[error("manifest of {bytes} bytes exceeds the limit of {limit} bytes (MeshConfig.max_manifest_bytes)")]
    TooLarge {
        /// Size of the manifest.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The mesh's settings are invalid, so nothing is applied.
    #[error("mesh config: {}", join(.0))]
    Config(Vec<FieldError>),
    /// A resource of a kind this crate evaluates fails validation.
    #[error("{} (document {document}): {}", Cut(.resource), join(.errors))]
    Invalid {
        /// 1-based index of the document in the stream.
        document: usize,
        /// `Kind namespace/name`.
        resource: String,
        /// Every invalid field found.
        errors: Vec<FieldError>,
    },
}

impl ManifestError {
    /// The 1-based index of the document.
    pub fn document(&self) -> usize {
        match self {
            ManifestError::Yaml { document, .. }
            | ManifestError::NotAnObject { document, .. }
            | ManifestError::Invalid { document, .. } => *document,
            ManifestError::TooLarge { .. } | ManifestError::Config(_) => 0,
        }
    }
}

fn join(errors: &[FieldError]) -> String {
    bounded(errors, "; ")
}

/// A manifest could not be applied; nothing of it was. Holds every problem found; displays the first
/// [`MAX_DISPLAYED_ERRORS`] and a count of the others.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", bounded(.0, "\n"))]
pub struct ApplyError(pub Vec<ManifestError>);

/// A check request that cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid check request: {0}")]
pub struct RequestError(pub FieldError);
