//! The embedded `local` provider: everything lives in a folder on disk (default `.mlops/local`).
//!
//! - a dataset is a directory mirrored from its `source`, versioned by a sha256 content manifest
//!   (dataset.rs);
//! - a model is an artifact copied into a local registry, each new digest a new version (model.rs);
//! - a feature store is its schema, and a records folder a replacement would destroy
//!   (feature_store.rs);
//! - an endpoint is a serving record pointing at a model version, with replicas and traffic
//!   (endpoint.rs).
//!
//! Live state is read from disk every time, so a file edited under the root is drift. This file
//! holds the store under the root, its file primitives, and the provider's one kind dispatch.

mod dataset;
mod endpoint;
mod feature_store;
mod model;
mod schema;
pub use schema::entry;

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use mlops_provider_core::{
    Address, ApplyRequest, ConfigDiagnostic, Dependencies, Desired, ErrorKind, Kind, LiveState, Operation, Progress,
    Provider, ProviderContext, ProviderError, ResourceConfig, ResourceType, Value, ValuePath,
};
use serde_json::json;
use sha2::{Digest, Sha256};

pub const DEFAULT_ROOT: &str = ".mlops/local";

/// Builds the provider from its `providers.local` block.
pub fn factory(block: &Value, ctx: &ProviderContext) -> Result<Arc<dyn Provider>, ProviderError> {
    let given = block.get("root").and_then(Value::as_str).unwrap_or(DEFAULT_ROOT);
    let root = ctx.base_dir.join(given);
    // Never inside a Git directory: writing there corrupts the repository lineage lives in.
    let resolved = normalize(&root);
    if resolved.components().any(|c| c.as_os_str() == ".git") || is_git_dir(&resolved) {
        return Err(ProviderError::invalid(format!(
            "the local provider's root `{given}` is inside a Git directory ({}); choose a folder of the work tree, e.g. `.mlops/local`",
            resolved.display()
        ))
        .at(ValuePath::key("root")));
    }
    Ok(Arc::new(LocalProvider::new(root)))
}

/// `path` with `.` and `..` resolved lexically, made absolute (symlinks are checked separately).
fn normalize(path: &Path) -> PathBuf {
    let abs =
        if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().unwrap_or_default().join(path) };
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// A bare repository or a `.git` folder under another name: it has HEAD, objects/ and refs/.
fn is_git_dir(path: &Path) -> bool {
    path.ancestors().any(|p| p.join("HEAD").is_file() && p.join("objects").is_dir() && p.join("refs").is_dir())
}

/// The provider: one [`ResourceType`] per kind, each over the same store.
pub struct LocalProvider {
    store: Store,
    datasets: dataset::Datasets,
    models: model::Models,
    feature_stores: feature_store::FeatureStores,
    endpoints: endpoint::Endpoints,
}

impl LocalProvider {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let store = Store { root: root.into() };
        LocalProvider {
            datasets: dataset::Datasets(store.clone()),
            models: model::Models(store.clone()),
            feature_stores: feature_store::FeatureStores(store.clone()),
            endpoints: endpoint::Endpoints(store.clone()),
            store,
        }
    }

    pub fn root(&self) -> &Path {
        &self.store.root
    }
}

/// The folder under the root that holds every object, each kind in its own subfolder (the kind
/// files add their paths).
#[derive(Clone, Debug)]
pub(crate) struct Store {
    root: PathBuf,
}

impl Store {
    /// `path` (under the root), refused when a folder or file on the way there is a symlink: a
    /// link placed under the root must not lead writes or deletes out of it.
    fn contained(&self, path: &Path) -> Result<PathBuf, ProviderError> {
        let rel = path.strip_prefix(&self.root).map_err(|_| {
            ProviderError::failed(format!("{} is outside the local root {}", path.display(), self.root.display()))
        })?;
        let mut cur = self.root.clone();
        for c in rel.components() {
            cur.push(c);
            if fs::symlink_metadata(&cur).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(ProviderError::new(
                    ErrorKind::Conflict,
                    format!(
                        "{} is a symbolic link; the local provider never follows a link out of its root (remove it)",
                        cur.display()
                    ),
                ));
            }
        }
        Ok(path.to_path_buf())
    }
    /// The state an apply just wrote, read back (it must be there).
    fn written(&self, address: &Address, state: Option<LiveState>) -> Result<LiveState, ProviderError> {
        state.ok_or_else(|| ProviderError::failed(format!("{address} is missing right after it was written")))
    }

    /// An object to adopt (`mlops import`): the local store names each by its spec name, so `id`
    /// must be that name.
    fn import(
        &self,
        config: &ResourceConfig,
        id: &str,
        read: impl FnOnce(&str) -> Result<Option<LiveState>, ProviderError>,
    ) -> Result<LiveState, ProviderError> {
        let address = &config.address;
        if id != address.name {
            return Err(ProviderError::invalid(format!(
                "the local store names objects by their spec name: import {address} as `{}`",
                address.name
            )));
        }
        read(id)?.ok_or_else(|| {
            ProviderError::invalid(format!("the local store under {} holds no {address}", self.root.display()))
        })
    }
}

/// A name the local provider can use as a portable directory name (case-insensitive filesystems too).
fn valid_local_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
}

fn io_err(what: &str, path: &Path, e: io::Error) -> ProviderError {
    ProviderError::new(ErrorKind::Failed, format!("{what} {}: {e}", path.display()))
}

fn sha256_file(path: &Path) -> Result<String, ProviderError> {
    let mut f = fs::File::open(path).map_err(|e| io_err("cannot read", path, e))?;
    let mut h = Sha256::new();
    // On the stack: a heap buffer per file is an allocation (and fresh pages) per file hashed.
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(|e| io_err("cannot read", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// Temporary files end with this; a killed apply can leave one, which the next sync removes and
/// which no manifest counts.
const TMP_SUFFIX: &str = ".mlops-tmp";

fn tmp_path(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    dir.join(format!(".{}{TMP_SUFFIX}", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ProviderError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| io_err("cannot create", dir, e))?;
    let tmp = tmp_path(path);
    fs::write(&tmp, bytes).map_err(|e| io_err("cannot write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_err("cannot write", path, e))
}

fn write_json(path: &Path, v: &Value) -> Result<(), ProviderError> {
    let mut s = serde_json::to_string_pretty(v).expect("JSON values serialize");
    s.push('\n');
    write_atomic(path, s.as_bytes())
}

fn read_json(path: &Path) -> Result<Option<Value>, ProviderError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            ProviderError::failed(format!("{} is not valid JSON ({e}); fix or remove it", path.display()))
        }),
        // A parent that is not a folder means the object does not exist either.
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => Ok(None),
        Err(e) => Err(io_err("cannot read", path, e)),
    }
}

fn copy_atomic(from: &Path, to: &Path) -> Result<(), ProviderError> {
    let dir = to.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| io_err("cannot create", dir, e))?;
    let tmp = tmp_path(to);
    fs::copy(from, &tmp).map_err(|e| io_err("cannot copy", from, e))?;
    fs::rename(&tmp, to).map_err(|e| io_err("cannot write", to, e))
}

fn labels(config: &ResourceConfig) -> Value {
    config.body.get("labels").cloned().unwrap_or_else(|| json!({}))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ProviderError> + Send + 'static,
) -> Result<T, ProviderError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ProviderError::failed(format!("local provider task failed: {e}")))?
}

fn remove_dir_if_exists(p: &Path) -> Result<(), ProviderError> {
    match fs::remove_dir_all(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("cannot remove", p, e)),
        _ => Ok(()),
    }
}

fn remove_file_if_exists(p: &Path) -> Result<(), ProviderError> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("cannot remove", p, e)),
        _ => Ok(()),
    }
}

/// An apply request's parts, owned, for the blocking thread that writes them.
pub(crate) struct Owned {
    address: Address,
    operation: Operation,
    desired: Desired,
    config: ResourceConfig,
    deps: Dependencies,
}

impl Owned {
    fn of(request: &ApplyRequest<'_>) -> Self {
        Owned {
            address: request.address.clone(),
            operation: request.operation,
            desired: request.desired.clone(),
            config: request.config.clone(),
            deps: request.dependencies.clone(),
        }
    }
}

/// Runs `work` on a blocking thread, passing its progress on to `progress` as it happens.
async fn on_thread<T: Send + 'static>(
    progress: &dyn Progress,
    work: impl FnOnce(&dyn Progress) -> Result<T, ProviderError> + Send + 'static,
) -> Result<T, ProviderError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let sink = Forward(tx);
    let work = blocking(move || work(&sink));
    tokio::pin!(work);
    loop {
        tokio::select! {
            result = &mut work => {
                while let Ok(r) = rx.try_recv() {
                    forward(progress, r);
                }
                return result;
            }
            Some(r) = rx.recv() => forward(progress, r),
        }
    }
}

/// Progress from the blocking thread, passed to the caller's as it happens.
enum Report {
    Message(String),
    Transfer(u64, u64),
}
struct Forward(tokio::sync::mpsc::UnboundedSender<Report>);
impl Progress for Forward {
    fn report(&self, message: &str) {
        let _ = self.0.send(Report::Message(message.to_string()));
    }
    fn transfer(&self, done: u64, total: u64) {
        let _ = self.0.send(Report::Transfer(done, total));
    }
}

fn forward(progress: &dyn Progress, report: Report) {
    match report {
        Report::Message(m) => progress.report(&m),
        Report::Transfer(done, total) => progress.transfer(done, total),
    }
}

// Reads run inline in each kind: they are small file reads, and a thread handoff per resource (a
// blocking task each) cost more than the reads themselves in a 10,000-resource plan.
#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &str {
        "local"
    }

    fn resource(&self, kind: Kind) -> Option<&dyn ResourceType> {
        Some(match kind {
            Kind::Dataset => &self.datasets,
            Kind::Model => &self.models,
            Kind::FeatureStore => &self.feature_stores,
            Kind::Endpoint => &self.endpoints,
        })
    }

    fn version_attributes(&self) -> &'static [&'static str] {
        &["files", "digest", "artifact_digest"]
    }

    fn traffic_attributes(&self) -> &'static [&'static str] {
        &["canary_percent", "replicas", "traffic"]
    }

    /// Local names become folder names, whatever the kind.
    fn check(&self, config: &ResourceConfig) -> Vec<ConfigDiagnostic> {
        if valid_local_name(&config.address.name) {
            return Vec::new();
        }
        vec![ConfigDiagnostic {
            path: ValuePath::root(),
            code: "spec::invalid_name".into(),
            message: format!("`{}` is not a valid name for the local provider", config.address.name),
            help: Some(
                "local names become folder names: use 1 to 64 lowercase letters, digits, `-` or `_`, starting with a letter or digit"
                    .into(),
            ),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_local_name("churn-xgb_2"));
        assert!(!valid_local_name("Churn"));
        assert!(!valid_local_name("a.b"));
        assert!(!valid_local_name(""));
        assert!(!valid_local_name(&"a".repeat(65)));
    }
}
