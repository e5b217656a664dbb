//! What datasets on every store share: the files of a `source`, their manifest, the writes an
//! apply makes, and what a rollback cannot find in the source.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::{ApplyRequest, Attributes, Desired, ProviderError, ResourceConfig, Value, ValuePath};

/// Every regular file under `dir`, by its path relative to `dir` with `/` separators (a
/// dataset's `source`). Symlinks and special files are not part of a dataset.
pub fn source_files(dir: &std::path::Path) -> Result<BTreeMap<String, PathBuf>, ProviderError> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| {
            ProviderError::invalid(format!("cannot list {}: {e}", d.display())).at(ValuePath::key("source"))
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() {
                let rel = path.strip_prefix(dir).unwrap_or(&path);
                // A name that is not UTF-8 cannot be carried as an object key: refused at plan.
                let Some(rel) = rel.components().map(|c| c.as_os_str().to_str()).collect::<Option<Vec<_>>>() else {
                    return Err(ProviderError::invalid(format!(
                        "the source file {} has a name that is not UTF-8: rename it",
                        path.display()
                    ))
                    .at(ValuePath::key("source")));
                };
                out.insert(rel.join("/"), path);
            }
        }
    }
    Ok(out)
}

/// What under a dataset's `source` is not part of it (symlinks, sockets, devices, FIFOs), each
/// as a warning naming the file: never silently left out.
pub fn skipped_source_entries(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            let path = entry.path();
            if ft.is_dir() {
                stack.push(path);
            } else if !ft.is_file() {
                let rel = path.strip_prefix(dir).unwrap_or(&path).display().to_string();
                out.push(skipped_source_entry(&rel, ft.is_symlink()));
            }
        }
    }
    out.sort();
    out
}

/// The warning for an entry `rel` under a dataset's `source` that is not a regular file.
pub fn skipped_source_entry(rel: &str, symlink: bool) -> String {
    let what = if symlink { "a symlink" } else { "not a regular file" };
    format!("source file {rel} is {what}: it is not part of the dataset")
}

/// A per-file manifest entry of a provider (its checksums and size, as its store reports them).
pub type EntryOf = fn(&std::path::Path) -> Result<Value, ProviderError>;

/// A dataset's desired `files`: each file of its `source` with `entry_of`'s manifest entry
/// (computed on a blocking thread). Without `prune`, `files` only constrains the files the source
/// has (remote files it lacks are left alone). Nothing is added without a `source`.
pub async fn dataset_manifest(
    config: &ResourceConfig,
    entry_of: EntryOf,
    desired: &mut Desired,
) -> Result<(), ProviderError> {
    let Some(src) = config.local_path("source") else { return Ok(()) };
    let files = tokio::task::spawn_blocking(move || -> Result<Value, ProviderError> {
        if !src.is_dir() {
            return Err(ProviderError::invalid(format!("dataset source {} is not a directory", src.display()))
                .at(ValuePath::key("source")));
        }
        let mut m = serde_json::Map::new();
        for (rel, path) in source_files(&src)? {
            m.insert(rel, entry_of(&path)?);
        }
        Ok(Value::Object(m))
    })
    .await
    .map_err(|e| ProviderError::failed(format!("checksum task failed: {e}")))??;
    desired.attributes.insert("files".into(), files);
    if let Some(src) = config.local_path("source") {
        desired.warnings.extend(skipped_source_entries(&src));
    }
    if !config.body.get("prune").and_then(Value::as_bool).unwrap_or(false) {
        desired.subset.insert("files".into());
    }
    Ok(())
}

/// What a dataset apply has to write: each file whose desired manifest entry is not the live one,
/// with its path under the source, and their bytes in all (for the transfer bar).
pub struct SyncPlan {
    pub writes: Vec<(String, PathBuf, Value)>,
    pub total_bytes: u64,
}

/// A dataset state's `files` manifest.
fn files_of(attributes: Option<&Attributes>) -> Option<&serde_json::Map<String, Value>> {
    attributes.and_then(|a| a.get("files")).and_then(Value::as_object)
}

/// The writes of a dataset apply (see [`SyncPlan`]).
pub fn sync_plan(req: &ApplyRequest<'_>) -> Result<SyncPlan, ProviderError> {
    let want = files_of(Some(&req.desired.attributes)).into_iter().flatten();
    let live = files_of(req.live.map(|l| &l.attributes));
    let src = req.config.local_path("source");
    let mut writes = Vec::new();
    let mut total_bytes = 0;
    for (rel, entry) in want {
        if live.and_then(|l| l.get(rel)) == Some(entry) {
            continue;
        }
        let src = src.as_ref().ok_or_else(|| ProviderError::invalid("dataset has files but no source"))?;
        let path = src.join(rel);
        total_bytes += std::fs::metadata(&path).map_or(0, |m| m.len());
        writes.push((rel.clone(), path, entry.clone()));
    }
    Ok(SyncPlan { writes, total_bytes })
}

/// The files of a pinned dataset manifest (`rel → entry`) that its `source` folder cannot produce:
/// missing there, or with another entry (`entry_of` computes a file's: its checksums). What a
/// rollback must find elsewhere (an object version, a generation the bucket kept).
pub fn not_in_source(
    config: &ResourceConfig,
    want: &serde_json::Map<String, Value>,
    entry_of: impl Fn(&std::path::Path) -> Result<Value, ProviderError>,
) -> Result<Vec<String>, ProviderError> {
    let src = config.local_path("source");
    let mut out = Vec::new();
    for (rel, entry) in want {
        let have = match &src {
            Some(s) if s.join(rel).is_file() => Some(entry_of(&s.join(rel))?),
            _ => None,
        };
        if have.as_ref() != Some(entry) {
            out.push(rel.clone());
        }
    }
    Ok(out)
}

/// The refusal of a rollback whose recorded files are in neither the source nor `kept` (the
/// object versions or generations the store keeps at `place`).
pub fn unrestorable_files(gone: &[String], place: &str, kept: &str) -> ProviderError {
    ProviderError::invalid(format!(
        "the recorded bytes of {} object(s) are in neither the source nor {place}'s kept {kept} ({}): one was deleted",
        gone.len(),
        gone.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
    ))
}
