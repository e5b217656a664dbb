//! A local dataset: a folder under the root mirrored from its `source`, versioned by a sha256
//! content manifest. Only files mlops wrote are its own: anything else there is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use mlops_provider_core::{
    Address, ApplyRequest, ConfigDiagnostic, Dependencies, Desired, ErrorKind, LiveState, Operation, PriorState,
    Progress, ProviderError, ResourceConfig, ResourceType, Value, ValuePath, attributes_of,
};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{
    Owned, Store, TMP_SUFFIX, blocking, copy_atomic, io_err, labels, normalize, on_thread, read_json,
    remove_dir_if_exists, remove_file_if_exists, sha256_file, write_json,
};

pub(crate) struct Datasets(pub(crate) Store);

impl Store {
    pub(crate) fn dataset_dir(&self, name: &str) -> PathBuf {
        self.root.join("datasets").join(name)
    }
    /// The files mlops wrote into a dataset's folder: anything else there is not mlops's to touch.
    fn dataset_owned(&self, name: &str) -> PathBuf {
        self.root.join("datasets").join(format!(".{name}.owned.json"))
    }
    fn dataset_meta(&self, name: &str) -> PathBuf {
        self.root.join("datasets").join(format!("{name}.json"))
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

    fn read_dataset(&self, name: &str) -> Result<Option<LiveState>, ProviderError> {
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

    fn apply_dataset(&self, req: &Owned, progress: &dyn Progress) -> Result<LiveState, ProviderError> {
        let name = &req.address.name;
        let dir = self.contained(&self.dataset_dir(name))?;
        self.contained(&self.dataset_meta(name))?;
        if req.operation == Operation::Replace {
            remove_dir_if_exists(&dir)?;
        }
        let attrs = &req.desired.attributes;
        let want: BTreeMap<String, String> =
            serde_json::from_value(attrs.get("files").cloned().unwrap_or_default()).unwrap_or_default();
        let have = if dir.is_dir() { manifest(&dir)? } else { BTreeMap::new() };
        // Owned before written: a kill mid-copy leaves only files mlops knows are its own.
        let owned_path = self.contained(&self.dataset_owned(name))?;
        let mut owned = self.owned_files(name)?.unwrap_or_else(|| have.keys().cloned().collect());
        owned.extend(want.keys().cloned());
        write_json(&owned_path, &json!(owned))?;
        let src = req.config.local_path("source");
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
        self.written(&req.address, self.read_dataset(name)?)
    }

    fn delete_dataset(&self, name: &str) -> Result<(), ProviderError> {
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
}

#[async_trait]
impl ResourceType for Datasets {
    fn check(&self, config: &ResourceConfig) -> Vec<ConfigDiagnostic> {
        if let Some(refused) = mlops_provider_core::dvc::unsupported_here(config, "local") {
            return vec![refused];
        }
        let mut out = Vec::new();
        if let Some(src) = config.local_path("source") {
            let (src, root) = (normalize(&src), normalize(&self.0.root));
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
        out
    }

    async fn desired(&self, config: &ResourceConfig, _deps: &Dependencies) -> Result<Desired, ProviderError> {
        let mut d = Desired::default();
        let files = match config.local_path("source") {
            Some(src) => {
                if !src.is_dir() {
                    return Err(ProviderError::invalid(format!("dataset source {} is not a directory", src.display()))
                        .at(ValuePath::key("source")));
                }
                let (files, skipped) = source_manifest(&src)?;
                d.warnings.extend(skipped);
                files
            }
            None => BTreeMap::new(),
        };
        let foreign = self.0.foreign_files(&config.address.name)?;
        if !foreign.is_empty() {
            d.conflicts.push(format!(
                "{} holds {} file(s) mlops did not write ({}); apply would replace or delete them",
                self.0.dataset_dir(&config.address.name).display(),
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
        Ok(d)
    }

    async fn read(
        &self,
        address: &Address,
        _prior: Option<&PriorState>,
        _desired: Option<&Desired>,
    ) -> Result<Option<LiveState>, ProviderError> {
        self.0.read_dataset(&address.name)
    }

    async fn apply(&self, request: ApplyRequest<'_>, progress: &dyn Progress) -> Result<LiveState, ProviderError> {
        let (store, req) = (self.0.clone(), Owned::of(&request));
        on_thread(progress, move |p| store.apply_dataset(&req, p)).await
    }

    async fn delete(
        &self,
        address: &Address,
        _prior: &PriorState,
        _progress: &dyn Progress,
    ) -> Result<(), ProviderError> {
        let (store, name) = (self.0.clone(), address.name.clone());
        blocking(move || store.delete_dataset(&name)).await
    }

    async fn restorable(
        &self,
        config: &ResourceConfig,
        desired: &Desired,
        _deps: &Dependencies,
    ) -> Result<(), ProviderError> {
        // The dataset folder holds today's files: the recorded ones must still be in the source.
        let want: BTreeMap<String, String> =
            serde_json::from_value(desired.attributes.get("files").cloned().unwrap_or_default()).unwrap_or_default();
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

    async fn import(&self, config: &ResourceConfig, id: &str) -> Result<LiveState, ProviderError> {
        self.0.import(config, id, |name| self.0.read_dataset(name))
    }
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

/// A source folder's manifest (as [`manifest`]) and a warning for each entry that is not part of
/// the dataset (symlinks, special files), in one walk. Refuses, at plan time and naming the
/// file, a source file the local store cannot hold as it is named: a name that is not UTF-8, one
/// ending in the store's temporary suffix (the store would take it for a leftover), or one too
/// long to write beside its temporary name.
fn source_manifest(src: &Path) -> Result<(BTreeMap<String, String>, Vec<String>), ProviderError> {
    // NAME_MAX is 255 bytes; the temporary name adds a dot and the suffix.
    const LONGEST: usize = 255 - 1 - TMP_SUFFIX.len();
    let (mut files, mut skipped) = (BTreeMap::new(), Vec::new());
    let mut stack = vec![src.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = fs::read_dir(&d).map_err(|e| io_err("cannot list", &d, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_err("cannot list", &d, e))?;
            let path = entry.path();
            let refuse = |why: String| {
                Err(ProviderError::invalid(format!("the source file {} {why}", path.display()))
                    .at(ValuePath::key("source")))
            };
            let name = entry.file_name();
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
            let ft = entry.file_type().map_err(|e| io_err("cannot stat", &path, e))?;
            let rel = path.strip_prefix(src).unwrap_or(&path);
            let rel = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() {
                files.insert(rel, sha256_file(&path)?);
            } else {
                skipped.push(mlops_provider_core::skipped_source_entry(&rel, ft.is_symlink()));
            }
        }
    }
    skipped.sort();
    Ok((files, skipped))
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

#[cfg(test)]
mod tests {
    use super::*;
    use mlops_provider_core::{Kind, Operation};

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
        let store = Store { root: tmp.path().join("root") };
        let p = Datasets(store.clone());
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
        fs::write(store.dataset_dir("train").join("a.csv"), "tampered").unwrap();
        let live = p.read(&cfg.address, None, None).await.unwrap().unwrap();
        assert_ne!(live.attributes.get("digest"), d.attributes.get("digest"));
    }
}
