//! DVC-versioned datasets: `source: dvc://PATH.dvc` names a DVC pointer file (relative to the
//! spec). The version is DVC's own: the output's md5 (`….dir` for a folder), size and file count,
//! read from the pointer without downloading anything. Where the bytes live is the DVC remote the
//! repository's `.dvc/config` names (`config.local` over it, as DVC reads them): the object of
//! md5 `abcdef…` is `REMOTE/files/md5/ab/cdef…` (DVC 3; DVC 2 pointers, without `hash: md5`,
//! use `REMOTE/ab/cdef…`). A pipeline stage's output is `dvc://dvc.lock#STAGE` (its one output)
//! or `dvc://dvc.lock#STAGE:PATH`, as `dvc repro` recorded it. A provider whose storage holds the
//! remote checks the objects are there, through [`Remote`]: the checks are all here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ProviderError, ResourceConfig, ValuePath};

pub const SCHEME: &str = "dvc://";

/// One DVC-tracked output, as its pointer and the repository's remote describe it.
#[derive(Clone, Debug, PartialEq)]
pub struct DvcOutput {
    /// The pointer file.
    pub pointer: PathBuf,
    /// The output's path, as the pointer names it (relative to the pointer's folder).
    pub path: String,
    /// DVC's md5 of the file, or of the folder's listing (`….dir`).
    pub md5: String,
    pub size: Option<u64>,
    pub nfiles: Option<u64>,
    /// The remote's name and URL.
    pub remote: String,
    pub url: String,
    /// DVC 3's layout (`files/md5/…`), else DVC 2's.
    pub files_layout: bool,
}

impl DvcOutput {
    pub fn is_dir(&self) -> bool {
        self.md5.ends_with(".dir")
    }

    /// The remote key (under the remote's URL) of the object with md5 `md5`.
    pub fn key_of(&self, md5: &str) -> String {
        let (head, tail) = md5.split_at(2.min(md5.len()));
        if self.files_layout { format!("files/md5/{head}/{tail}") } else { format!("{head}/{tail}") }
    }

    /// What lineage records of the output: its version and where it lives.
    pub fn attribute(&self) -> Value {
        json!({
            "md5": self.md5,
            "size": self.size,
            "nfiles": self.nfiles,
            "path": self.path,
            "remote": self.remote,
            "url": self.url,
            "layout": if self.files_layout { "files/md5" } else { "v2" },
        })
    }
}

impl DvcOutput {
    /// The output lineage recorded ([`DvcOutput::attribute`]), as far as finding its objects
    /// needs: `None` when the record lacks its md5 or remote URL.
    pub fn from_attribute(recorded: &Value) -> Option<DvcOutput> {
        let field = |k: &str| recorded.get(k).and_then(Value::as_str).map(str::to_string);
        Some(DvcOutput {
            pointer: PathBuf::new(),
            path: field("path").unwrap_or_default(),
            md5: field("md5").filter(|m| !m.is_empty())?,
            size: recorded.get("size").and_then(Value::as_u64),
            nfiles: recorded.get("nfiles").and_then(Value::as_u64),
            remote: field("remote").unwrap_or_default(),
            url: field("url")?,
            files_layout: field("layout").as_deref() != Some("v2"),
        })
    }
}

/// The files of a folder output, from its `.dir` listing (DVC's JSON list of `{md5, relpath}`):
/// relative path → md5. (The caller checks the listing's own md5 first.)
pub fn dir_listing(bytes: &[u8]) -> Result<BTreeMap<String, String>, String> {
    #[derive(Deserialize)]
    struct Entry {
        md5: String,
        relpath: String,
    }
    let entries: Vec<Entry> = serde_json::from_slice(bytes).map_err(|e| format!("not a DVC folder listing: {e}"))?;
    Ok(entries.into_iter().map(|e| (e.relpath, e.md5)).collect())
}

/// The refusal of a provider that does not read DVC remotes, when `config`'s source is `dvc://`.
pub fn unsupported_here(config: &ResourceConfig, provider: &str) -> Option<crate::ConfigDiagnostic> {
    let source = config.str("source").filter(|s| s.starts_with(SCHEME))?;
    Some(crate::ConfigDiagnostic::unsupported(
        ValuePath::key("source"),
        format!("the {provider} provider does not read DVC remotes (`{source}`)"),
        "put this dataset on the provider of its DVC remote: aws for s3://, gcp for gs://",
    ))
}

/// Whether `config`'s source is a DVC output.
pub fn is_dvc(config: &ResourceConfig) -> bool {
    config.str("source").is_some_and(|s| s.starts_with(SCHEME))
}

/// The storage a provider reaches a DVC remote in (S3, GCS): mlops writes nothing there, it
/// checks that the objects `dvc push` sends are there.
#[async_trait::async_trait]
pub trait Remote: Send + Sync {
    /// The remotes it reads, for messages: `s3://`.
    fn scheme(&self) -> &'static str;
    /// A remote URL's bucket and key prefix (ending in `/`, or empty); `None` when not its scheme.
    fn location(&self, url: &str) -> Option<(String, String)>;
    /// Whether object `key` of `bucket` holds the bytes of md5 `md5` (true too where the store
    /// cannot tell an object's md5, e.g. a multipart upload: its presence is what can be known).
    async fn holds(&self, bucket: &str, key: &str, md5: &str) -> Result<bool, ProviderError>;
    /// Object `key` of `bucket`, `None` when it is missing.
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, ProviderError>;
}

/// What a DVC dataset's settings cannot hold (no I/O): a `uri` or `prune`, which belong to a
/// dataset mlops uploads.
pub fn check(config: &ResourceConfig) -> Vec<crate::ConfigDiagnostic> {
    ["uri", "prune"]
        .into_iter()
        .filter(|key| config.body.get(*key).is_some())
        .map(|key| {
            crate::ConfigDiagnostic::unsupported(
                ValuePath::key(key),
                format!("`{key}` is for a dataset mlops uploads; a DVC dataset lives in its DVC remote"),
                "remove it: `dvc push` writes the data, mlops checks and records it",
            )
        })
        .collect()
}

/// The pointer's output, with its remote's bucket and prefix in `store`.
fn located(store: &dyn Remote, config: &ResourceConfig) -> Result<(DvcOutput, String, String), ProviderError> {
    let out = output(config)?.expect("a dvc:// source");
    let Some((bucket, prefix)) = store.location(&out.url) else {
        return Err(ProviderError::invalid(format!(
            "the DVC remote `{}` is {}; the {} provider reads remotes on {} (give this dataset the provider of its remote)",
            out.remote,
            out.url,
            config.provider,
            store.scheme()
        ))
        .at(ValuePath::key("source")));
    };
    Ok((out, bucket, prefix))
}

/// The objects of `md5` missing from the remote (each named by its key), after reading the
/// folder listing where `md5` is one (its bytes must hash to the listed md5).
async fn missing(
    store: &dyn Remote,
    out: &DvcOutput,
    bucket: &str,
    prefix: &str,
    md5: &str,
) -> Result<Vec<String>, ProviderError> {
    let key = format!("{prefix}{}", out.key_of(md5));
    if !md5.ends_with(".dir") {
        return Ok(if store.holds(bucket, &key, md5).await? { vec![] } else { vec![key] });
    }
    let Some(listing) = store.get(bucket, &key).await? else { return Ok(vec![key]) };
    let url = format!("{}{bucket}/{key}", store.scheme());
    let digest = hex::encode(<md5::Md5 as md5::Digest>::digest(&listing));
    if digest != md5.trim_end_matches(".dir") {
        return Err(ProviderError::invalid(format!(
            "{url} is not the folder listing {md5} names (its md5 is {digest})"
        ))
        .at(ValuePath::key("source")));
    }
    let files = dir_listing(&listing)
        .map_err(|e| ProviderError::invalid(format!("{url}: {e}")).at(ValuePath::key("source")))?;
    let mut gone = Vec::new();
    for file_md5 in files.values() {
        let key = format!("{prefix}{}", out.key_of(file_md5));
        if !store.holds(bucket, &key, file_md5).await? {
            gone.push(key);
        }
    }
    Ok(gone)
}

fn refuse_missing(store: &dyn Remote, out: &DvcOutput, bucket: &str, gone: &[String], what: &str) -> ProviderError {
    ProviderError::invalid(format!(
        "{what}: the DVC remote `{}` ({}{bucket}) lacks {} object(s) of {} ({}); run `dvc push`",
        out.remote,
        store.scheme(),
        gone.len(),
        out.md5,
        gone.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
    ))
    .at(ValuePath::key("source"))
}

fn attributes(config: &ResourceConfig, dvc: Value) -> crate::Attributes {
    let mut a = crate::attributes_of(json!({ "source": config.str("source"), "dvc": dvc }));
    for key in ["labels", "description"] {
        if let Some(v) = config.body.get(key) {
            a.insert(key.into(), v.clone());
        }
    }
    a
}

/// The pointer's version, once the remote is found to hold all of it.
pub async fn desired(store: &dyn Remote, config: &ResourceConfig) -> Result<crate::Desired, ProviderError> {
    let (out, bucket, prefix) = located(store, config)?;
    let gone = missing(store, &out, &bucket, &prefix, &out.md5).await?;
    if !gone.is_empty() {
        return Err(refuse_missing(store, &out, &bucket, &gone, &format!("{} is not pushed", out.pointer.display())));
    }
    Ok(crate::Desired { attributes: attributes(config, out.attribute()), ..Default::default() })
}

/// The recorded version, while the remote still holds it (there is nothing else to read: the
/// pointer is the spec's, the remote DVC's). Gone from the remote: `None`, and the plan says so.
pub async fn read(
    store: &dyn Remote,
    prior: Option<&crate::PriorState>,
) -> Result<Option<crate::LiveState>, ProviderError> {
    let Some(recorded) = prior.and_then(|p| p.attributes.get("dvc")) else { return Ok(None) };
    let Some(output) = DvcOutput::from_attribute(recorded) else { return Ok(None) };
    let Some((bucket, prefix)) = store.location(&output.url) else { return Ok(None) };
    if !missing(store, &output, &bucket, &prefix, &output.md5).await?.is_empty() {
        return Ok(None);
    }
    let attributes = prior.map(|p| p.attributes.clone()).unwrap_or_default();
    Ok(Some(crate::LiveState { attributes, outputs: crate::attributes_of(json!({ "version": output.md5 })) }))
}

/// A rollback's recorded md5 must still be in the remote.
pub async fn restorable(
    store: &dyn Remote,
    config: &ResourceConfig,
    desired: &crate::Desired,
) -> Result<(), ProviderError> {
    let (out, bucket, prefix) = located(store, config)?;
    let Some(md5) = desired.attributes.get("dvc").and_then(|d| d.get("md5")).and_then(Value::as_str) else {
        return Ok(());
    };
    let gone = missing(store, &out, &bucket, &prefix, md5).await?;
    if gone.is_empty() {
        return Ok(());
    }
    Err(refuse_missing(store, &out, &bucket, &gone, "the recorded version cannot be re-pointed to"))
}

/// Applying records what the plan found: the objects are checked again, nothing is written.
pub async fn apply(
    store: &dyn Remote,
    config: &ResourceConfig,
    desired: &crate::Desired,
) -> Result<crate::LiveState, ProviderError> {
    restorable(store, config, desired).await?;
    let md5 = desired.attributes.get("dvc").and_then(|d| d.get("md5")).cloned().unwrap_or_default();
    Ok(crate::LiveState {
        attributes: desired.attributes.clone(),
        outputs: crate::attributes_of(json!({ "version": md5 })),
    })
}

#[derive(Deserialize)]
struct Pointer {
    #[serde(default)]
    outs: Vec<Out>,
}

#[derive(Deserialize)]
struct Out {
    md5: Option<String>,
    size: Option<u64>,
    nfiles: Option<u64>,
    hash: Option<String>,
    path: String,
    remote: Option<String>,
}

/// The DVC output `config`'s `source` names, or `None` when its source is not `dvc://`. Errors
/// are at the `source` line: a missing or unreadable pointer, one without an md5 (never `dvc
/// add`ed), a repository without `.dvc/config` or without the remote.
pub fn output(config: &ResourceConfig) -> Result<Option<DvcOutput>, ProviderError> {
    let Some(reference) = config.str("source").and_then(|s| s.strip_prefix(SCHEME)) else { return Ok(None) };
    let at = || ValuePath::key("source");
    // `FILE.dvc`, or `dvc.lock#STAGE` / `dvc.lock#STAGE:OUT` for a pipeline stage's output.
    let (rel, stage) = match reference.split_once('#') {
        Some((file, selector)) => (file, Some(selector)),
        None => (reference, None),
    };
    let pointer = config.base_dir.join(rel);
    let text = std::fs::read_to_string(&pointer).map_err(|e| {
        ProviderError::invalid(format!("cannot read the DVC pointer {}: {e}", pointer.display())).at(at())
    })?;
    let outs = match stage {
        None => {
            let parsed: Pointer = serde_saphyr::from_str(&text).map_err(|e| {
                ProviderError::invalid(format!("{} is not a DVC pointer file: {e}", pointer.display())).at(at())
            })?;
            parsed.outs
        }
        Some(selector) => stage_outs(&pointer, &text, selector)?,
    };
    let [out] = outs.as_slice() else {
        return Err(ProviderError::invalid(match stage {
            None => format!(
                "{} has {} outputs; a dataset is one DVC output (one `.dvc` file per dataset)",
                pointer.display(),
                outs.len()
            ),
            Some(selector) => format!(
                "stage `{selector}` of {} has {} outputs ({}); name one: `#{selector}:PATH`",
                pointer.display(),
                outs.len(),
                outs.iter().map(|o| o.path.as_str()).collect::<Vec<_>>().join(", ")
            ),
        })
        .at(at()));
    };
    let md5 =
        out.md5.clone().filter(|m| m.len() > 2 && m.trim_end_matches(".dir").bytes().all(|b| b.is_ascii_hexdigit()));
    let Some(md5) = md5 else {
        return Err(ProviderError::invalid(format!(
            "{} records no md5 for `{}`: run `dvc add` (or `dvc commit`) and commit the pointer",
            pointer.display(),
            out.path
        ))
        .at(at()));
    };
    let folder = pointer.parent().unwrap_or(Path::new("."));
    let root = folder
        .ancestors()
        .find(|d| d.join(".dvc").join("config").is_file())
        .ok_or_else(|| {
            ProviderError::invalid(format!(
                "no DVC repository holds {}: no `.dvc/config` in its folder or above (run `dvc init` and `dvc remote add -d NAME URL`)",
                pointer.display()
            ))
            .at(at())
        })?;
    let mut settings = read_config(&root.join(".dvc").join("config"))?;
    if let Ok(local) = std::fs::read_to_string(root.join(".dvc").join("config.local")) {
        for (section, values) in parse_config(&local) {
            settings.entry(section).or_default().extend(values);
        }
    }
    let remote = match out.remote.clone().or_else(|| settings.get("core").and_then(|c| c.get("remote")).cloned()) {
        Some(r) => r,
        None => {
            return Err(ProviderError::invalid(format!(
                "the DVC repository at {} has no default remote: run `dvc remote add -d NAME URL` (where `dvc push` sends the data)",
                root.display()
            ))
            .at(at()));
        }
    };
    let url = settings.get(&format!("remote \"{remote}\"")).and_then(|r| r.get("url")).cloned().ok_or_else(|| {
        ProviderError::invalid(format!(
            "the DVC repository at {} names remote `{remote}` but does not define it",
            root.display()
        ))
        .at(at())
    })?;
    Ok(Some(DvcOutput {
        pointer,
        path: out.path.clone(),
        md5,
        size: out.size,
        nfiles: out.nfiles,
        remote,
        url,
        files_layout: out.hash.as_deref() == Some("md5"),
    }))
}

#[derive(Deserialize)]
struct Lock {
    #[serde(default)]
    stages: BTreeMap<String, Stage>,
}

#[derive(Deserialize)]
struct Stage {
    #[serde(default)]
    outs: Vec<Out>,
}

/// The outputs `selector` (`STAGE`, or `STAGE:PATH` for one of them) names in a `dvc.lock`.
fn stage_outs(lock: &Path, text: &str, selector: &str) -> Result<Vec<Out>, ProviderError> {
    let at = || ValuePath::key("source");
    let parsed: Lock = serde_saphyr::from_str(text)
        .map_err(|e| ProviderError::invalid(format!("{} is not a dvc.lock file: {e}", lock.display())).at(at()))?;
    let (name, path) = match selector.split_once(':') {
        Some((name, path)) => (name, Some(path)),
        None => (selector, None),
    };
    let Some(stage) = parsed.stages.into_iter().find_map(|(n, s)| (n == name).then_some(s)) else {
        return Err(ProviderError::invalid(format!(
            "{} has no stage `{name}`: run `dvc repro {name}` (or name one of its stages) and commit the lock file",
            lock.display()
        ))
        .at(at()));
    };
    match path {
        None => Ok(stage.outs),
        Some(path) => {
            let listed: Vec<String> = stage.outs.iter().map(|o| o.path.clone()).collect();
            let found: Vec<Out> = stage.outs.into_iter().filter(|o| o.path == path).collect();
            if found.is_empty() {
                return Err(ProviderError::invalid(format!(
                    "stage `{name}` of {} has no output `{path}` (its outputs: {})",
                    lock.display(),
                    listed.join(", ")
                ))
                .at(at()));
            }
            Ok(found)
        }
    }
}

fn read_config(path: &Path) -> Result<BTreeMap<String, BTreeMap<String, String>>, ProviderError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ProviderError::invalid(format!("cannot read {}: {e}", path.display())).at(ValuePath::key("source"))
    })?;
    Ok(parse_config(&text))
}

/// DVC's config (an INI file, as `configobj` writes it): section → key → value. Section names
/// lose their quotes: `['remote "store"']` is `remote "store"`.
fn parse_config(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().trim_matches('\'').to_string();
            out.entry(section.clone()).or_default();
        } else if let Some((k, v)) = line.split_once('=') {
            out.entry(section.clone()).or_default().insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_dvc_writes_names_its_remotes() {
        let config = parse_config(
            "[core]\n    remote = store\n['remote \"store\"']\n    url = s3://dvc-store/cache\n    endpointurl = http://127.0.0.1:9\n",
        );
        assert_eq!(config["core"]["remote"], "store");
        assert_eq!(config["remote \"store\""]["url"], "s3://dvc-store/cache");
    }

    #[test]
    fn objects_are_keyed_as_dvc_lays_them_out() {
        let mut out = DvcOutput {
            pointer: "data.csv.dvc".into(),
            path: "data.csv".into(),
            md5: "f69f5b72bc79a92dc70c63c9aa142e36".into(),
            size: Some(4),
            nfiles: None,
            remote: "store".into(),
            url: "s3://b/cache".into(),
            files_layout: true,
        };
        assert_eq!(out.key_of(&out.md5), "files/md5/f6/9f5b72bc79a92dc70c63c9aa142e36");
        out.files_layout = false;
        assert_eq!(out.key_of("7836547ee3aaee03b907f6cec48e596c.dir"), "78/36547ee3aaee03b907f6cec48e596c.dir");
        assert!(!out.is_dir());
        out.pointer = PathBuf::new();
        assert_eq!(DvcOutput::from_attribute(&out.attribute()), Some(out), "what lineage records is the output again");
    }
}
