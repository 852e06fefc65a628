//! Reading manifests, requests and JWKS documents, with errors that name the file.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use mesh_policy::resource::{Kind, ResourceId};
use mesh_policy::{Mesh, MeshConfig, Source};

use crate::Manifests;

/// A file's name as reported, and its text.
pub(crate) struct File {
    pub(crate) name: String,
    pub(crate) text: String,
}

fn read(path: &Path) -> Result<String, String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|e| format!("stdin: {e}"))?;
        return Ok(text);
    }
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Every manifest file named, directories expanded in name order.
pub(crate) fn files(paths: &[PathBuf]) -> Result<Vec<File>, String> {
    // Files and directories as the proxies read them; `-` where it stands.
    let mut all = Vec::new();
    for p in paths {
        if p == Path::new("-") {
            all.push(p.clone());
        } else {
            all.extend(mesh_runtime::source::manifest_files(std::slice::from_ref(p)).map_err(|e| e.to_string())?);
        }
    }
    all.iter()
        .map(|p| {
            let name = if p == Path::new("-") { "<stdin>".to_owned() } else { p.display().to_string() };
            Ok(File { name, text: read(p)?.trim_start_matches('\u{feff}').to_owned() })
        })
        .collect()
}

/// The mesh's settings from the command line.
pub(crate) fn config(m: &Manifests) -> MeshConfig {
    m.model.mesh_config()
}

/// A mesh with every manifest applied (all or nothing: every invalid document is reported by file, document and
/// field) and the JWKS documents supplied.
pub(crate) fn mesh(m: &Manifests) -> Result<(Mesh, Vec<File>), String> {
    let files = files(&m.files)?;
    let mut mesh = Mesh::new(config(m));
    let sources: Vec<Source<'_>> = files.iter().map(|f| Source { name: &f.name, text: &f.text }).collect();
    mesh.replace_all(&sources).map_err(|e| e.0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))?;
    for spec in &m.jwks {
        let (uri, file) = spec.split_once('=').ok_or_else(|| format!("--jwks {spec:?}: expected URI=FILE"))?;
        let json = read(Path::new(file))?;
        mesh.add_jwks(uri, &json).map_err(|e| format!("--jwks {uri}: {file}: {e}"))?;
    }
    Ok((mesh, files))
}

/// A JSON or YAML document of type `T`, from a file or stdin, with the path of a field that does not fit.
pub(crate) fn document<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = read(path)?;
    let name = if path == Path::new("-") { "<stdin>".to_owned() } else { path.display().to_string() };
    // YAML is a superset of JSON: one parser reads both.
    serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(&text)).map_err(|e| {
        let path = e.path().to_string();
        format!("{name}: {path}: {}", e.into_inner())
    })
}

/// Where each resource was read from: the file and the line its document starts on.
pub(crate) fn locations(files: &[File]) -> BTreeMap<ResourceId, (String, usize)> {
    let mut out = BTreeMap::new();
    for f in files {
        let starts = document_lines(&f.text);
        let Ok(manifest) = mesh_policy::manifest::parse(&f.text) else { continue };
        let line = |document: usize| starts.get(document.saturating_sub(1)).copied().unwrap_or(1);
        for (document, r) in &manifest.resources {
            let meta = r.metadata();
            let ns = meta.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or("default");
            let id = ResourceId::new(r.kind(), ns, meta.name.as_deref().unwrap_or(""));
            out.entry(id).or_insert((f.name.clone(), line(*document)));
        }
        for (document, o) in &manifest.cluster {
            let meta = o.metadata();
            let ns = match o.kind() {
                Kind::Namespace => "",
                _ => meta.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or("default"),
            };
            let id = ResourceId::new(o.kind(), ns, meta.name.as_deref().unwrap_or(""));
            out.entry(id).or_insert((f.name.clone(), line(*document)));
        }
    }
    out
}

/// The 1-based line each YAML document of a stream starts on.
fn document_lines(text: &str) -> Vec<usize> {
    let mut starts = vec![1];
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("---") && i > 0 {
            starts.push(i + 2);
        }
    }
    starts
}
