//! A local model: its artifact copied into a registry folder under the root, each new digest a
//! new version; `current` names the version the model is at.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use mlops_provider_core::{
    Address, ApplyRequest, Attributes, ConfigDiagnostic, Dependencies, Desired, ErrorKind, Kind, LiveState, Operation,
    PriorState, Progress, ProviderError, ResourceConfig, ResourceType, Value, ValuePath, attributes_of,
};
use serde_json::json;

use crate::{
    Owned, Store, blocking, copy_atomic, labels, on_thread, read_json, remove_dir_if_exists, sha256_file, write_atomic,
    write_json,
};

pub(crate) struct Models(pub(crate) Store);

impl Store {
    fn model_dir(&self, name: &str) -> PathBuf {
        self.root.join("models").join(name)
    }

    fn read_model(&self, name: &str) -> Result<Option<LiveState>, ProviderError> {
        let dir = self.model_dir(name);
        let Some(versions) = VersionStore::read(&dir)? else {
            return Ok(None);
        };
        let current = versions.current;
        let Some(entry) = versions.version(current)? else {
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

    fn apply_model(&self, req: &Owned, progress: &dyn Progress) -> Result<LiveState, ProviderError> {
        let dir = self.contained(&self.model_dir(&req.address.name))?;
        if req.operation == Operation::Replace {
            remove_dir_if_exists(&dir)?;
        }
        let attrs = &req.desired.attributes;
        let mut versions = VersionStore::read(&dir)?.unwrap_or_else(|| VersionStore::empty(&dir));
        let digest = attrs.get("artifact_digest").and_then(Value::as_str).unwrap_or_default().to_string();
        let mut meta: Attributes = attrs.clone();
        meta.remove("artifact_digest");
        let trained_on: BTreeMap<String, Value> = req
            .config
            .dependencies
            .iter()
            .filter(|a| a.kind == Kind::Dataset)
            .map(|a| {
                let v = req
                    .deps
                    .get(a)
                    .and_then(|d| d.outputs.as_ref())
                    .and_then(|o| o.get("version"))
                    .cloned()
                    .unwrap_or(Value::Null);
                (a.to_string(), v)
            })
            .collect();
        // The bytes are registered already (the current version, or an earlier one a rollback or
        // a revert asks for): point at that version, register nothing new.
        let version = match versions.holding(&digest)? {
            Some(v) => {
                if v != versions.current {
                    progress.report(&format!("pointing at registered version {v}"));
                }
                let mut entry = versions.version(v)?.unwrap_or_else(|| json!({"version": v}));
                // Same bytes: metadata (approval, labels...) changes in place.
                entry["attributes"] = json!(meta);
                versions.write_version(v, &entry)?;
                v
            }
            None => {
                let from = req
                    .config
                    .local_path("artifact")
                    .ok_or_else(|| ProviderError::invalid("a local model needs an `artifact` file"))?;
                let now = sha256_file(&from)?;
                if now != digest {
                    return Err(ProviderError::new(
                        ErrorKind::Conflict,
                        format!("{} changed since the plan was made (plan {digest}, now {now})", from.display()),
                    ));
                }
                let next = versions.latest + 1;
                progress.report(&format!("registering version {next}"));
                copy_atomic(&from, &dir.join(format!("v{next}")).join("artifact"))?;
                versions.write_version(
                    next,
                    &json!({
                        "version": next,
                        "digest": digest,
                        "source": from.display().to_string(),
                        "attributes": meta,
                        "trained_on": trained_on,
                    }),
                )?;
                versions.latest = next;
                next
            }
        };
        versions.current = version;
        versions.write()?;
        self.written(&req.address, self.read_model(&req.address.name)?)
    }
}

#[async_trait]
impl ResourceType for Models {
    fn check(&self, config: &ResourceConfig) -> Vec<ConfigDiagnostic> {
        if config.str("artifact").is_some_and(|a| a.contains("://") && !a.starts_with("file://")) {
            return vec![ConfigDiagnostic {
                path: ValuePath::key("artifact"),
                code: "spec::unsupported_value".into(),
                message: "the local provider registers artifacts from local files only".into(),
                help: Some("use a path relative to the spec file, e.g. `./model/model.bin`".into()),
            }];
        }
        Vec::new()
    }

    async fn desired(&self, config: &ResourceConfig, _deps: &Dependencies) -> Result<Desired, ProviderError> {
        let mut d = Desired::default();
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
        d.attributes.insert("environment".into(), config.body.get("environment").cloned().unwrap_or_else(|| json!({})));
        if let Some(reg) = config.body.get("registry") {
            d.attributes.insert("registry".into(), reg.clone());
        }
        d.attributes.insert("labels".into(), labels(config));
        Ok(d)
    }

    async fn read(
        &self,
        address: &Address,
        _prior: Option<&PriorState>,
        _desired: Option<&Desired>,
    ) -> Result<Option<LiveState>, ProviderError> {
        self.0.read_model(&address.name)
    }

    async fn apply(&self, request: ApplyRequest<'_>, progress: &dyn Progress) -> Result<LiveState, ProviderError> {
        let (store, req) = (self.0.clone(), Owned::of(&request));
        on_thread(progress, move |p| store.apply_model(&req, p)).await
    }

    async fn delete(
        &self,
        address: &Address,
        _prior: &PriorState,
        _progress: &dyn Progress,
    ) -> Result<(), ProviderError> {
        let dir = self.0.contained(&self.0.model_dir(&address.name))?;
        blocking(move || remove_dir_if_exists(&dir)).await
    }

    /// The registry folder holds every registered version's bytes: a delete loses them all.
    fn delete_destroys_data(&self, address: &Address, live: &LiveState) -> Option<String> {
        let version = live.outputs.get("version").and_then(Value::as_u64).unwrap_or(0);
        Some(format!("deleting {address} destroys its local registry: version {version} and every version before it"))
    }

    async fn restorable(
        &self,
        config: &ResourceConfig,
        desired: &Desired,
        _deps: &Dependencies,
    ) -> Result<(), ProviderError> {
        let digest = desired.attributes.get("artifact_digest").and_then(Value::as_str).unwrap_or_default();
        let dir = self.0.model_dir(&config.address.name);
        if VersionStore::read(&dir)?.map(|r| r.holding(digest)).transpose()?.flatten().is_some() {
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

    async fn import(&self, config: &ResourceConfig, id: &str) -> Result<LiveState, ProviderError> {
        self.0.import(config, id, |name| self.0.read_model(name))
    }
}

/// A model's versions under the local root: `registry.json` names the current and the latest
/// version; each version keeps its artifact and `version.json` in `v<N>/`, and `digests/<hex>`
/// names the version holding those bytes. An apply touches one version, whatever the history
/// holds. (Folders written before kept every version in `registry.json`'s `versions`: still
/// read, and moved out on the next write.)
struct VersionStore {
    dir: PathBuf,
    current: u64,
    latest: u64,
    /// The old single-file form's versions, until the next write moves them out.
    legacy: Vec<Value>,
}

impl VersionStore {
    fn empty(dir: &Path) -> VersionStore {
        VersionStore { dir: dir.to_path_buf(), current: 0, latest: 0, legacy: vec![] }
    }

    fn read(dir: &Path) -> Result<Option<VersionStore>, ProviderError> {
        let Some(v) = read_json(&dir.join("registry.json"))? else { return Ok(None) };
        let legacy = v.get("versions").and_then(Value::as_array).cloned().unwrap_or_default();
        let number = |v: &Value| v.get("version").and_then(Value::as_u64);
        let latest = v
            .get("latest")
            .and_then(Value::as_u64)
            .unwrap_or_else(|| legacy.iter().filter_map(number).max().unwrap_or(0));
        Ok(Some(VersionStore {
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
