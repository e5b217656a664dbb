//! The embedded `local` provider: everything lives in a folder on disk (default `.mlops/local`).
//!
//! - a dataset is a directory mirrored from its `source`, versioned by a sha256 content manifest;
//! - a model is an artifact copied into a local registry, each new digest a new version;
//! - a feature store is its schema (and a records folder a replacement would destroy);
//! - an endpoint is a serving record pointing at a model version, with replicas and traffic.
//!
//! Live state is read from disk every time, so a file edited under the root is drift.

mod schema;
pub use schema::entry;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use mlops_provider_core::{
    Address, ApplyRequest, Attributes, ConfigDiagnostic, Dependencies, Desired, ErrorKind, Kind, LiveState, Operation,
    PriorState, Progress, Provider, ProviderContext, ProviderError, ResourceConfig, Value, ValuePath, attributes_of,
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
    Ok(Arc::new(LocalProvider { root }))
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

#[derive(Clone, Debug)]
pub struct LocalProvider {
    root: PathBuf,
}

impl LocalProvider {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalProvider { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dataset_dir(&self, name: &str) -> PathBuf {
        self.root.join("datasets").join(name)
    }
    /// The files mlops wrote into a dataset's folder: anything else there is not mlops's to touch.
    fn dataset_owned(&self, name: &str) -> PathBuf {
        self.root.join("datasets").join(format!(".{name}.owned.json"))
    }

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

    /// The files recorded as written by mlops into a dataset's folder, if a list was kept.
    fn owned_files(&self, name: &str) -> Result<Option<BTreeSet<String>>, ProviderError> {
        Ok(read_json(&self.dataset_owned(name))?.and_then(|v| serde_json::from_value(v).ok()))
    }

    /// Files in a dataset's live folder that mlops did not write (none recorded as owned).
    fn foreign_files(&self, name: &str) -> Result<Vec<String>, ProviderError> {
        let dir = self.dataset_dir(name);
        if !dir.is_dir() {
            return Ok(vec![]);
        }
        let owned = match self.owned_files(name)? {
            Some(o) => o,
            // Written before ownership was recorded: the meta file says mlops made the folder.
            None if self.dataset_meta(name).is_file() => return Ok(vec![]),
            None => BTreeSet::new(),
        };
        // Names only: hashing is the read's job.
        let present = mlops_provider_core::source_files(&dir)?;
        Ok(present.into_keys().filter(|f| !f.ends_with(TMP_SUFFIX) && !owned.contains(f)).collect())
    }
    fn dataset_meta(&self, name: &str) -> PathBuf {
        self.root.join("datasets").join(format!("{name}.json"))
    }
    fn model_dir(&self, name: &str) -> PathBuf {
        self.root.join("models").join(name)
    }
    fn feature_store_dir(&self, name: &str) -> PathBuf {
        self.root.join("feature_stores").join(name)
    }
    fn endpoint_file(&self, name: &str) -> PathBuf {
        self.root.join("endpoints").join(format!("{name}.json"))
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
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(|e| io_err("cannot read", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// relative path (with `/`) → sha256 of every regular file under `dir`, sorted.
fn manifest(dir: &Path) -> Result<BTreeMap<String, String>, ProviderError> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = fs::read_dir(&d).map_err(|e| io_err("cannot list", &d, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_err("cannot list", &d, e))?;
            let path = entry.path();
            let ft = entry.file_type().map_err(|e| io_err("cannot stat", &path, e))?;
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() && !entry.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
                let rel = path.strip_prefix(dir).unwrap_or(&path);
                let rel = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
                out.insert(rel, sha256_file(&path)?);
            }
            // Symlinks and other special files are not part of a dataset.
        }
    }
    Ok(out)
}

/// Refuses, at plan time and naming the file, a source file the local store cannot hold as it
/// is named: a name that is not UTF-8, one ending in the store's temporary suffix (the store
/// would take it for a leftover), or one too long to write beside its temporary name.
fn carriable(src: &Path) -> Result<(), ProviderError> {
    // NAME_MAX is 255 bytes; the temporary name adds a dot and the suffix.
    const LONGEST: usize = 255 - 1 - TMP_SUFFIX.len();
    let mut stack = vec![src.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = fs::read_dir(&d).map_err(|e| io_err("cannot list", &d, e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let refuse = |why: String| {
                Err(ProviderError::invalid(format!("the source file {} {why}", path.display()))
                    .at(ValuePath::key("source")))
            };
            let Some(name) = name.to_str() else {
                return refuse("has a name that is not UTF-8: rename it".into());
            };
            if name.ends_with(TMP_SUFFIX) {
                return refuse(format!("ends in `{TMP_SUFFIX}`, the suffix of the store's temporary files: rename it"));
            }
            if name.len() > LONGEST {
                return refuse(format!(
                    "has a name of {} bytes; the local store holds names of at most {LONGEST}",
                    name.len()
                ));
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    Ok(())
}

/// The dataset version: a digest over the sorted manifest.
fn manifest_digest(files: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (path, digest) in files {
        h.update(path.as_bytes());
        h.update([0]);
        h.update(digest.as_bytes());
        h.update([b'\n']);
    }
    format!("sha256:{}", hex::encode(h.finalize()))
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

impl LocalProvider {
    fn desired_sync(&self, config: &ResourceConfig, deps: &Dependencies) -> Result<Desired, ProviderError> {
        let mut d = Desired::default();
        match config.address.kind {
            Kind::Dataset => {
                let files = match config.local_path("source") {
                    Some(src) => {
                        if !src.is_dir() {
                            return Err(ProviderError::invalid(format!(
                                "dataset source {} is not a directory",
                                src.display()
                            ))
                            .at(ValuePath::key("source")));
                        }
                        carriable(&src)?;
                        d.warnings.extend(mlops_provider_core::skipped_source_entries(&src));
                        manifest(&src)?
                    }
                    None => BTreeMap::new(),
                };
                let foreign = self.foreign_files(&config.address.name)?;
                if !foreign.is_empty() {
                    d.conflicts.push(format!(
                        "{} holds {} file(s) mlops did not write ({}); apply would replace or delete them",
                        self.dataset_dir(&config.address.name).display(),
                        foreign.len(),
                        foreign.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
                d.attributes.insert("digest".into(), json!(manifest_digest(&files)));
                d.attributes.insert("files".into(), json!(files));
                d.attributes.insert("labels".into(), labels(config));
                if let Some(desc) = config.str("description") {
                    d.attributes.insert("description".into(), json!(desc));
                }
            }
            Kind::Model => {
                let artifact = config.local_path("artifact").ok_or_else(|| {
                    ProviderError::invalid("a local model needs an `artifact` file").at(ValuePath::key("artifact"))
                })?;
                if !artifact.is_file() {
                    return Err(ProviderError::invalid(format!("model artifact {} is not a file", artifact.display()))
                        .at(ValuePath::key("artifact")));
                }
                d.attributes.insert("artifact_digest".into(), json!(sha256_file(&artifact)?));
                for key in ["image", "framework"] {
                    if let Some(v) = config.body.get(key) {
                        d.attributes.insert(key.into(), v.clone());
                    }
                }
                d.attributes
                    .insert("environment".into(), config.body.get("environment").cloned().unwrap_or_else(|| json!({})));
                if let Some(reg) = config.body.get("registry") {
                    d.attributes.insert("registry".into(), reg.clone());
                }
                d.attributes.insert("labels".into(), labels(config));
            }
            Kind::FeatureStore => {
                for key in ["record_identifier", "event_time", "features"] {
                    if let Some(v) = config.body.get(key) {
                        d.attributes.insert(key.into(), v.clone());
                    }
                }
                d.attributes.insert("online".into(), config.body.get("online").cloned().unwrap_or(json!(true)));
                d.attributes.insert("offline".into(), config.body.get("offline").cloned().unwrap_or(json!(true)));
                d.attributes.insert("labels".into(), labels(config));
                // The records are keyed by these: changing them means a new, empty store.
                d.force_new.insert("record_identifier".into());
                d.force_new.insert("event_time".into());
                d.replace_destroys_data = true;
            }
            Kind::Endpoint => {
                let model = config.str("model").unwrap_or_default();
                let model_addr: Option<Address> = model.parse().ok();
                let model_digest = model_addr
                    .as_ref()
                    .and_then(|a| deps.get(a))
                    .and_then(|v| v.attributes.get("artifact_digest"))
                    .cloned()
                    .unwrap_or(Value::Null);
                d.attributes.insert("model".into(), json!(model));
                d.attributes.insert("model_digest".into(), model_digest);
                d.attributes.insert(
                    "instance_type".into(),
                    config.body.get("instance_type").cloned().unwrap_or(json!("local.cpu")),
                );
                d.attributes.insert("replicas".into(), config.body.get("instance_count").cloned().unwrap_or(json!(1)));
                let canary = config.body.pointer("/traffic/canary_percent").cloned().unwrap_or(json!(0));
                d.attributes.insert("canary_percent".into(), canary);
                d.attributes.insert("labels".into(), labels(config));
                // A serving record is bound to its instance type, like an endpoint config.
                d.force_new.insert("instance_type".into());
            }
        }
        Ok(d)
    }

    fn read_sync(&self, address: &Address) -> Result<Option<LiveState>, ProviderError> {
        let name = &address.name;
        match address.kind {
            Kind::Dataset => {
                let dir = self.dataset_dir(name);
                let Some(meta) = read_json(&self.dataset_meta(name))? else {
                    return Ok(None);
                };
                let files = if dir.is_dir() { manifest(&dir)? } else { BTreeMap::new() };
                let digest = manifest_digest(&files);
                let mut attributes = attributes_of(meta);
                attributes.insert("digest".into(), json!(digest));
                attributes.insert("files".into(), json!(files));
                let outputs = attributes_of(json!({
                    "path": dir.display().to_string(),
                    "version": digest,
                    "file_count": files.len(),
                }));
                Ok(Some(LiveState { attributes, outputs }))
            }
            Kind::Model => {
                let dir = self.model_dir(name);
                let Some(registry) = Registry::read(&dir)? else {
                    return Ok(None);
                };
                let current = registry.current;
                let Some(entry) = registry.version(current)? else {
                    return Err(ProviderError::failed(format!(
                        "{} names current version {current}, which it does not hold",
                        dir.join("registry.json").display()
                    )));
                };
                let mut attributes = attributes_of(entry.get("attributes").cloned().unwrap_or_default());
                let file = dir.join(format!("v{current}")).join("artifact");
                // The digest of what is stored, not of what was recorded: a hand edit is drift.
                let digest = if file.is_file() { json!(sha256_file(&file)?) } else { Value::Null };
                attributes.insert("artifact_digest".into(), digest.clone());
                let outputs = attributes_of(json!({
                    "version": current,
                    "artifact_path": file.display().to_string(),
                    "digest": digest,
                    "trained_on": entry.get("trained_on").cloned().unwrap_or(json!({})),
                }));
                Ok(Some(LiveState { attributes, outputs }))
            }
            Kind::FeatureStore => {
                let dir = self.feature_store_dir(name);
                let Some(schema) = read_json(&dir.join("schema.json"))? else {
                    return Ok(None);
                };
                let outputs = attributes_of(json!({ "path": dir.display().to_string() }));
                Ok(Some(LiveState { attributes: attributes_of(schema), outputs }))
            }
            Kind::Endpoint => {
                let Some(record) = read_json(&self.endpoint_file(name))? else {
                    return Ok(None);
                };
                let attributes = attributes_of(record.get("spec").cloned().unwrap_or_default());
                let outputs = attributes_of(json!({
                    "model_version": record.get("model_version").cloned().unwrap_or(Value::Null),
                    "traffic": record.get("traffic").cloned().unwrap_or(json!([])),
                    "url": format!("local://endpoints/{name}"),
                }));
                Ok(Some(LiveState { attributes, outputs }))
            }
        }
    }

    fn apply_sync(
        &self,
        address: &Address,
        operation: Operation,
        desired: &Desired,
        config: &ResourceConfig,
        deps: &Dependencies,
        progress: &dyn Progress,
    ) -> Result<LiveState, ProviderError> {
        let name = &address.name;
        let attrs = &desired.attributes;
        match address.kind {
            Kind::Dataset => {
                let dir = self.contained(&self.dataset_dir(name))?;
                self.contained(&self.dataset_meta(name))?;
                if operation == Operation::Replace {
                    remove_dir_if_exists(&dir)?;
                }
                let want: BTreeMap<String, String> =
                    serde_json::from_value(attrs.get("files").cloned().unwrap_or_default()).unwrap_or_default();
                let have = if dir.is_dir() { manifest(&dir)? } else { BTreeMap::new() };
                // Owned before written: a kill mid-copy leaves only files mlops knows are its own.
                let owned_path = self.contained(&self.dataset_owned(name))?;
                let mut owned = self.owned_files(name)?.unwrap_or_else(|| have.keys().cloned().collect());
                owned.extend(want.keys().cloned());
                write_json(&owned_path, &json!(owned))?;
                let src = config.local_path("source");
                let todo: Vec<(&String, &String)> = want.iter().filter(|(rel, d)| have.get(*rel) != Some(*d)).collect();
                let size = |rel: &str| src.as_ref().and_then(|s| fs::metadata(s.join(rel)).ok()).map_or(0, |m| m.len());
                let total: u64 = todo.iter().map(|(rel, _)| size(rel)).sum();
                let (mut copied, mut done) = (0usize, 0u64);
                for (rel, digest) in todo {
                    let src = src.as_ref().ok_or_else(|| ProviderError::invalid("dataset has files but no source"))?;
                    let from = src.join(rel);
                    let now = sha256_file(&from)?;
                    if &now != digest {
                        return Err(ProviderError::new(
                            ErrorKind::Conflict,
                            format!("{} changed since the plan was made (plan {digest}, now {now})", from.display()),
                        ));
                    }
                    copy_atomic(&from, &self.contained(&dir.join(rel))?)?;
                    copied += 1;
                    done += size(rel);
                    progress.transfer(done, total);
                }
                let mut removed = 0usize;
                for rel in have.keys().filter(|k| !want.contains_key(*k)) {
                    remove_file_if_exists(&self.contained(&dir.join(rel))?)?;
                    removed += 1;
                }
                remove_leftovers(&dir)?;
                write_json(&owned_path, &json!(want.keys().collect::<Vec<_>>()))?;
                fs::create_dir_all(&dir).map_err(|e| io_err("cannot create", &dir, e))?;
                progress.report(&format!("{copied} file(s) copied, {removed} removed"));
                let mut meta = serde_json::Map::new();
                for (k, v) in attrs {
                    if k != "files" && k != "digest" {
                        meta.insert(k.clone(), v.clone());
                    }
                }
                write_json(&self.dataset_meta(name), &Value::Object(meta))?;
            }
            Kind::Model => {
                let dir = self.contained(&self.model_dir(name))?;
                if operation == Operation::Replace {
                    remove_dir_if_exists(&dir)?;
                }
                let mut registry = Registry::read(&dir)?.unwrap_or_else(|| Registry::empty(&dir));
                let digest = attrs.get("artifact_digest").and_then(Value::as_str).unwrap_or_default().to_string();
                let mut meta: Attributes = attrs.clone();
                meta.remove("artifact_digest");
                let trained_on: BTreeMap<String, Value> = config
                    .dependencies
                    .iter()
                    .filter(|a| a.kind == Kind::Dataset)
                    .map(|a| {
                        let v = deps
                            .get(a)
                            .and_then(|d| d.outputs.as_ref())
                            .and_then(|o| o.get("version"))
                            .cloned()
                            .unwrap_or(Value::Null);
                        (a.to_string(), v)
                    })
                    .collect();
                // The bytes are registered already (the current version, or an earlier one a
                // rollback or a revert asks for): point at that version, register nothing new.
                let version = match registry.holding(&digest)? {
                    Some(v) => {
                        if v != registry.current {
                            progress.report(&format!("pointing at registered version {v}"));
                        }
                        let mut entry = registry.version(v)?.unwrap_or_else(|| json!({"version": v}));
                        // Same bytes: metadata (approval, labels...) changes in place.
                        entry["attributes"] = json!(meta);
                        registry.write_version(v, &entry)?;
                        v
                    }
                    None => {
                        let from = config
                            .local_path("artifact")
                            .ok_or_else(|| ProviderError::invalid("a local model needs an `artifact` file"))?;
                        let now = sha256_file(&from)?;
                        if now != digest {
                            return Err(ProviderError::new(
                                ErrorKind::Conflict,
                                format!(
                                    "{} changed since the plan was made (plan {digest}, now {now})",
                                    from.display()
                                ),
                            ));
                        }
                        let next = registry.latest + 1;
                        progress.report(&format!("registering version {next}"));
                        copy_atomic(&from, &dir.join(format!("v{next}")).join("artifact"))?;
                        registry.write_version(
                            next,
                            &json!({
                                "version": next,
                                "digest": digest,
                                "source": from.display().to_string(),
                                "attributes": meta,
                                "trained_on": trained_on,
                            }),
                        )?;
                        registry.latest = next;
                        next
                    }
                };
                registry.current = version;
                registry.write()?;
            }
            Kind::FeatureStore => {
                let dir = self.contained(&self.feature_store_dir(name))?;
                if operation == Operation::Replace {
                    progress.report("destroying the old store and its records");
                    remove_dir_if_exists(&dir)?;
                }
                fs::create_dir_all(dir.join("records")).map_err(|e| io_err("cannot create", &dir, e))?;
                write_json(&dir.join("schema.json"), &json!(attrs))?;
            }
            Kind::Endpoint => {
                let path = self.contained(&self.endpoint_file(name))?;
                let previous = read_json(&path)?;
                let model: Option<Address> = attrs.get("model").and_then(Value::as_str).and_then(|m| m.parse().ok());
                let model_version = model
                    .as_ref()
                    .and_then(|m| deps.get(m))
                    .and_then(|d| d.outputs.as_ref())
                    .and_then(|o| o.get("version"))
                    .cloned()
                    .ok_or_else(|| {
                        ProviderError::failed("the endpoint's model has no registered version: apply the model first")
                    })?;
                let canary = attrs.get("canary_percent").and_then(Value::as_u64).unwrap_or(0);
                let prev_version = previous.as_ref().and_then(|p| p.get("model_version")).cloned();
                let traffic = match prev_version {
                    Some(prev) if canary > 0 && prev != model_version && operation != Operation::Replace => json!([
                        {"model_version": model_version, "percent": canary},
                        {"model_version": prev, "percent": 100 - canary},
                    ]),
                    _ => json!([{"model_version": model_version, "percent": 100}]),
                };
                progress.report(&format!("serving model version {model_version}"));
                write_json(&path, &json!({ "spec": attrs, "model_version": model_version, "traffic": traffic }))?;
            }
        }
        self.read_sync(address)?
            .ok_or_else(|| ProviderError::failed(format!("{address} is missing right after it was written")))
    }

    fn delete_sync(&self, address: &Address) -> Result<(), ProviderError> {
        let name = &address.name;
        match address.kind {
            Kind::Dataset => {
                let foreign = self.foreign_files(name)?;
                if !foreign.is_empty() {
                    return Err(ProviderError::new(
                        ErrorKind::Conflict,
                        format!(
                            "{} holds file(s) mlops did not write ({}); not deleted: move them away first",
                            self.dataset_dir(name).display(),
                            foreign.join(", ")
                        ),
                    ));
                }
                remove_dir_if_exists(&self.contained(&self.dataset_dir(name))?)?;
                remove_file_if_exists(&self.contained(&self.dataset_owned(name))?)?;
                remove_file_if_exists(&self.contained(&self.dataset_meta(name))?)
            }
            Kind::Model => remove_dir_if_exists(&self.contained(&self.model_dir(name))?),
            Kind::FeatureStore => remove_dir_if_exists(&self.contained(&self.feature_store_dir(name))?),
            Kind::Endpoint => remove_file_if_exists(&self.contained(&self.endpoint_file(name))?),
        }
    }
}

fn remove_dir_if_exists(p: &Path) -> Result<(), ProviderError> {
    match fs::remove_dir_all(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("cannot remove", p, e)),
        _ => Ok(()),
    }
}

/// Temporary files a killed apply left under `dir`.
fn remove_leftovers(dir: &Path) -> Result<(), ProviderError> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                stack.push(entry.path());
            } else if entry.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
                remove_file_if_exists(&entry.path())?;
            }
        }
    }
    Ok(())
}

fn remove_file_if_exists(p: &Path) -> Result<(), ProviderError> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("cannot remove", p, e)),
        _ => Ok(()),
    }
}

/// A model's local registry: `registry.json` names the current and the latest version; each
/// version keeps its artifact and `version.json` in `v<N>/`, and `digests/<hex>` names the
/// version holding those bytes. An apply touches one version, whatever the history holds.
/// (Registries written before kept every version in `registry.json`'s `versions`: still read,
/// and moved out on the next write.)
struct Registry {
    dir: PathBuf,
    current: u64,
    latest: u64,
    /// The old single-file form's versions, until the next write moves them out.
    legacy: Vec<Value>,
}

impl Registry {
    fn empty(dir: &Path) -> Registry {
        Registry { dir: dir.to_path_buf(), current: 0, latest: 0, legacy: vec![] }
    }

    fn read(dir: &Path) -> Result<Option<Registry>, ProviderError> {
        let Some(v) = read_json(&dir.join("registry.json"))? else { return Ok(None) };
        let legacy = v.get("versions").and_then(Value::as_array).cloned().unwrap_or_default();
        let number = |v: &Value| v.get("version").and_then(Value::as_u64);
        let latest = v
            .get("latest")
            .and_then(Value::as_u64)
            .unwrap_or_else(|| legacy.iter().filter_map(number).max().unwrap_or(0));
        Ok(Some(Registry {
            dir: dir.to_path_buf(),
            current: v.get("current").and_then(Value::as_u64).unwrap_or(0),
            latest,
            legacy,
        }))
    }

    fn version(&self, n: u64) -> Result<Option<Value>, ProviderError> {
        if let Some(v) = read_json(&self.dir.join(format!("v{n}")).join("version.json"))? {
            return Ok(Some(v));
        }
        Ok(self.legacy.iter().find(|v| v.get("version").and_then(Value::as_u64) == Some(n)).cloned())
    }

    /// The registered version whose stored artifact has `digest`, if any.
    fn holding(&self, digest: &str) -> Result<Option<u64>, ProviderError> {
        let hex = digest.trim_start_matches("sha256:");
        let named = fs::read_to_string(self.dir.join("digests").join(hex)).ok().and_then(|s| s.trim().parse().ok());
        let legacy = self
            .legacy
            .iter()
            .filter(|v| v.get("digest").and_then(Value::as_str) == Some(digest))
            .filter_map(|v| v.get("version").and_then(Value::as_u64))
            .next_back();
        for n in named.into_iter().chain(legacy) {
            let stored = self.dir.join(format!("v{n}")).join("artifact");
            // What is stored, not what was recorded: a tampered copy is not those bytes.
            if stored.is_file() && sha256_file(&stored)? == digest {
                return Ok(Some(n));
            }
        }
        Ok(None)
    }

    fn write_version(&mut self, n: u64, entry: &Value) -> Result<(), ProviderError> {
        write_json(&self.dir.join(format!("v{n}")).join("version.json"), entry)?;
        if let Some(d) = entry.get("digest").and_then(Value::as_str) {
            let path = self.dir.join("digests").join(d.trim_start_matches("sha256:"));
            if fs::read_to_string(&path).ok().and_then(|s| s.trim().parse::<u64>().ok()) != Some(n) {
                write_atomic(&path, n.to_string().as_bytes())?;
            }
        }
        Ok(())
    }

    fn write(&mut self) -> Result<(), ProviderError> {
        for v in std::mem::take(&mut self.legacy) {
            if let Some(n) = v.get("version").and_then(Value::as_u64)
                && read_json(&self.dir.join(format!("v{n}")).join("version.json"))?.is_none()
            {
                self.write_version(n, &v)?;
            }
        }
        write_json(&self.dir.join("registry.json"), &json!({"current": self.current, "latest": self.latest}))
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

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &str {
        "local"
    }

    fn version_attributes(&self) -> &'static [&'static str] {
        &["files", "digest", "artifact_digest"]
    }

    fn traffic_attributes(&self) -> &'static [&'static str] {
        &["canary_percent", "replicas", "traffic"]
    }

    fn check(&self, config: &ResourceConfig) -> Vec<ConfigDiagnostic> {
        // An emulated endpoint has nothing to scale, and switches versions at once.
        let mut out = mlops_provider_core::autoscaling::check(config, None);
        out.extend(mlops_provider_core::rollout::check(config, None));
        if !valid_local_name(&config.address.name) {
            out.push(ConfigDiagnostic {
                path: ValuePath::root(),
                code: "spec::invalid_name".into(),
                message: format!("`{}` is not a valid name for the local provider", config.address.name),
                help: Some(
                    "local names become folder names: use 1 to 64 lowercase letters, digits, `-` or `_`, starting with a letter or digit"
                        .into(),
                ),
            });
        }
        if let Some(src) = config.local_path("source") {
            let (src, root) = (normalize(&src), normalize(&self.root));
            if src.starts_with(&root) || root.starts_with(&src) {
                out.push(ConfigDiagnostic {
                    path: ValuePath::key("source"),
                    code: "spec::invalid_value".into(),
                    message: format!(
                        "the dataset source {} and the local provider's root {} overlap: the copy would copy itself",
                        src.display(),
                        root.display()
                    ),
                    help: Some(
                        "keep the root (`providers.local.root`) outside every dataset source, e.g. `.mlops/local`"
                            .into(),
                    ),
                });
            }
        }
        if let Some(uri) = config.str("uri") {
            out.push(ConfigDiagnostic {
                path: ValuePath::key("uri"),
                code: "spec::unsupported_value".into(),
                message: format!(
                    "the local provider keeps datasets under its root and does not take a `uri` (`{uri}`)"
                ),
                help: Some("remove `uri`, or use an s3:// or gs:// URI with the aws or gcp provider".into()),
            });
        }
        if config.address.kind == Kind::Model
            && config.str("artifact").is_some_and(|a| a.contains("://") && !a.starts_with("file://"))
        {
            out.push(ConfigDiagnostic {
                path: ValuePath::key("artifact"),
                code: "spec::unsupported_value".into(),
                message: "the local provider registers artifacts from local files only".into(),
                help: Some("use a path relative to the spec file, e.g. `./model/model.bin`".into()),
            });
        }
        out
    }

    // Reads run inline: they are small file reads, and a thread handoff per resource (a blocking
    // task each) cost more than the reads themselves in a 10,000-resource plan.
    async fn desired(&self, config: &ResourceConfig, deps: &Dependencies) -> Result<Desired, ProviderError> {
        self.desired_sync(config, deps)
    }

    async fn read(
        &self,
        address: &Address,
        _prior: Option<&PriorState>,
        _desired: Option<&Desired>,
    ) -> Result<Option<LiveState>, ProviderError> {
        self.read_sync(address)
    }

    /// The local store names each object by its spec name: `id` must be that name.
    async fn import(&self, config: &ResourceConfig, id: &str) -> Result<LiveState, ProviderError> {
        let address = &config.address;
        if id != address.name {
            return Err(ProviderError::invalid(format!(
                "the local store names objects by their spec name: import {address} as `{}`",
                address.name
            )));
        }
        self.read_sync(address)?.ok_or_else(|| {
            ProviderError::invalid(format!("the local store under {} holds no {address}", self.root.display()))
        })
    }

    async fn apply(&self, request: ApplyRequest<'_>, progress: &dyn Progress) -> Result<LiveState, ProviderError> {
        let this = self.clone();
        let (address, op, desired, config, deps) = (
            request.address.clone(),
            request.operation,
            request.desired.clone(),
            request.config.clone(),
            request.dependencies.clone(),
        );
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let sink = Forward(tx);
        let work = blocking(move || this.apply_sync(&address, op, &desired, &config, &deps, &sink));
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

    async fn restorable(&self, config: &ResourceConfig, desired: &Desired) -> Result<(), ProviderError> {
        let name = &config.address.name;
        match config.address.kind {
            Kind::Dataset => {
                // The dataset folder holds today's files: the recorded ones must still be in the source.
                let want: BTreeMap<String, String> =
                    serde_json::from_value(desired.attributes.get("files").cloned().unwrap_or_default())
                        .unwrap_or_default();
                let have = match config.local_path("source") {
                    Some(src) if src.is_dir() => manifest(&src)?,
                    _ => BTreeMap::new(),
                };
                let differ: Vec<&String> = want.keys().filter(|rel| have.get(*rel) != want.get(*rel)).collect();
                if differ.is_empty() {
                    return Ok(());
                }
                Err(ProviderError::invalid(format!(
                    "the recorded files cannot be produced any more: the source no longer holds {} of them as recorded ({}); restore them in the source (e.g. `git checkout <source commit> -- <source folder>`) and plan again",
                    differ.len(),
                    differ.iter().take(5).map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )))
            }
            Kind::Model => {
                let digest = desired.attributes.get("artifact_digest").and_then(Value::as_str).unwrap_or_default();
                let dir = self.model_dir(name);
                if Registry::read(&dir)?.map(|r| r.holding(digest)).transpose()?.flatten().is_some() {
                    return Ok(());
                }
                let artifact = config.local_path("artifact");
                if artifact.as_ref().is_some_and(|a| a.is_file() && sha256_file(a).ok().as_deref() == Some(digest)) {
                    return Ok(());
                }
                Err(ProviderError::invalid(format!(
                    "the recorded artifact {digest} cannot be produced any more: the registry under {} no longer holds it and the artifact file has other bytes",
                    dir.display()
                )))
            }
            // Feature stores and endpoints carry no bytes of their own: nothing to restore.
            Kind::FeatureStore | Kind::Endpoint => Ok(()),
        }
    }

    async fn delete(
        &self,
        address: &Address,
        _prior: &PriorState,
        _progress: &dyn Progress,
    ) -> Result<(), ProviderError> {
        let (this, address) = (self.clone(), address.clone());
        blocking(move || this.delete_sync(&address)).await
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

    #[test]
    fn manifest_digest_depends_on_names_and_contents() {
        let a = BTreeMap::from([("a".to_string(), "sha256:1".to_string())]);
        let b = BTreeMap::from([("b".to_string(), "sha256:1".to_string())]);
        assert_ne!(manifest_digest(&a), manifest_digest(&b));
        assert_eq!(manifest_digest(&a), manifest_digest(&a.clone()));
    }

    #[tokio::test]
    async fn dataset_round_trip_and_drift() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("a.csv"), "x,y\n1,2\n").unwrap();
        fs::write(src.join("sub/b.csv"), "x\n").unwrap();
        let p = LocalProvider::new(tmp.path().join("root"));
        let cfg = ResourceConfig {
            address: Address::new(Kind::Dataset, "train"),
            provider: "local".into(),
            body: json!({"source": "src"}),
            dependencies: vec![],
            base_dir: tmp.path().to_path_buf(),
        };
        let deps = Dependencies::new();
        let d = p.desired(&cfg, &deps).await.unwrap();
        assert!(p.read(&cfg.address, None, None).await.unwrap().is_none());
        let req = ApplyRequest {
            address: &cfg.address,
            operation: Operation::Create,
            desired: &d,
            config: &cfg,
            prior: None,
            live: None,
            dependencies: &deps,
            options: &Default::default(),
        };
        let live = p.apply(req, &mlops_provider_core::NoProgress).await.unwrap();
        assert_eq!(live.attributes.get("files"), d.attributes.get("files"));
        fs::write(p.dataset_dir("train").join("a.csv"), "tampered").unwrap();
        let live = p.read(&cfg.address, None, None).await.unwrap().unwrap();
        assert_ne!(live.attributes.get("digest"), d.attributes.get("digest"));
    }
}
