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
        if self.field.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.field, self.message) }
    }
}

/// Why one document of a manifest could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The text is not YAML.
    #[error("document {document}: invalid YAML: {message}")]
    Yaml {
        /// 1-based index of the document in the stream.
        document: usize,
        /// The parser's message, with its line and column.
        message: String,
    },
    /// The document is not a Kubernetes object (no `kind`, not a mapping, ...).
    #[error("document {document}: {message}")]
    NotAnObject {
        /// 1-based index of the document in the stream.
        document: usize,
        /// What is missing.
        message: String,
    },
    /// A resource of a kind this crate evaluates fails validation.
    #[error("{resource} (document {document}): {}", join(.errors))]
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
        }
    }
}

fn join(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// A manifest could not be applied; nothing of it was. Lists every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ApplyError(pub Vec<ManifestError>);

/// A check request that cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid check request: {0}")]
pub struct RequestError(pub FieldError);
