//! A model on mlflow: a registered model, the version mlops registered from its `artifact`, and
//! the aliases the spec points at that version.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use mlops_provider_core::{
    Address, ApplyRequest, Attributes, ConfigDiagnostic, Dependencies, Desired, ErrorKind, LiveState, Operation,
    PriorState, Progress, ProviderError, ResourceConfig, ResourceType, Value, ValuePath, source_files,
};
use reqwest::Method;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{DIGEST, FRAMEWORK, OWNER, Tracking};

/// Registered models on the tracking server.
pub(crate) struct Models(pub(crate) std::sync::Arc<Tracking>);

/// A registered model as read: its fields, and its versions by number.
struct Registered {
    description: Option<String>,
    tags: BTreeMap<String, String>,
    aliases: BTreeMap<String, String>,
}

pub(crate) fn tag_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t.get("key")?.as_str()?.to_string(), t.get("value")?.as_str()?.to_string())))
        .collect()
}

fn tag_list(m: &BTreeMap<String, String>) -> Value {
    Value::Array(m.iter().map(|(k, v)| json!({"key": k, "value": v})).collect())
}

/// Tags that are the user's (not mlops's own markers).
fn user_tags(m: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    m.iter().filter(|(k, _)| !k.starts_with("mlops.")).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The strings of a list value (`aliases`).
fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array).into_iter().flatten().filter_map(|a| a.as_str().map(str::to_string)).collect()
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
        .collect()
}

impl Tracking {
    fn name_of(config: &ResourceConfig) -> String {
        config.str("registered_model").unwrap_or(&config.address.name).to_string()
    }

    async fn registered(&self, name: &str) -> Result<Option<Registered>, ProviderError> {
        let Some(v) = self.client.call(Method::GET, "registered-models/get", &[("name", name)], None).await? else {
            return Ok(None);
        };
        let m = &v["registered_model"];
        Ok(Some(Registered {
            description: m.get("description").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string),
            tags: tag_map(m.get("tags")),
            aliases: m
                .get("aliases")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|a| Some((a.get("alias")?.as_str()?.to_string(), a.get("version")?.as_str()?.to_string())))
                .collect(),
        }))
    }

    /// Every version of a registered model, by number.
    async fn versions(&self, name: &str) -> Result<BTreeMap<u64, Value>, ProviderError> {
        let filter = format!("name='{}'", name.replace('\'', "\\'"));
        let mut out = BTreeMap::new();
        let mut token = String::new();
        loop {
            let mut q = vec![("filter", filter.as_str()), ("max_results", "1000")];
            if !token.is_empty() {
                q.push(("page_token", token.as_str()));
            }
            let page = self.client.call(Method::GET, "model-versions/search", &q, None).await?.unwrap_or_default();
            for v in page.get("model_versions").and_then(Value::as_array).into_iter().flatten() {
                if let Some(n) = v.get("version").and_then(Value::as_str).and_then(|s| s.parse().ok()) {
                    out.insert(n, v.clone());
                }
            }
            match page.get("next_page_token").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                Some(t) => token = t.to_string(),
                None => return Ok(out),
            }
        }
    }

    /// The live state with `version` as the one the resource describes.
    fn state(&self, name: &str, reg: &Registered, version: Option<(u64, &Value)>) -> LiveState {
        let mut a = Attributes::new();
        a.insert("registered_model".into(), json!(name));
        a.insert("description".into(), json!(reg.description));
        a.insert("tags".into(), json!(user_tags(&reg.tags)));
        let mut outputs = Attributes::new();
        outputs.insert("registered_model".into(), json!(name));
        match version {
            Some((n, v)) => {
                let tags = tag_map(v.get("tags"));
                a.insert("artifact".into(), v.get("source").cloned().unwrap_or(Value::Null));
                a.insert("artifact_digest".into(), json!(tags.get(DIGEST)));
                a.insert("framework".into(), json!(tags.get(FRAMEWORK)));
                a.insert("version_tags".into(), json!(user_tags(&tags)));
                let mut aliases: Vec<&String> =
                    reg.aliases.iter().filter(|(_, v)| **v == n.to_string()).map(|(k, _)| k).collect();
                aliases.sort();
                a.insert("aliases".into(), json!(aliases));
                outputs.insert("version".into(), json!(n));
                outputs.insert("model_uri".into(), json!(format!("models:/{name}/{n}")));
                outputs.insert("artifact_version".into(), json!(n.to_string()));
            }
            None => {
                for k in ["artifact", "artifact_digest", "framework"] {
                    a.insert(k.into(), Value::Null);
                }
                a.insert("version_tags".into(), json!({}));
                a.insert("aliases".into(), json!([]));
            }
        }
        LiveState { attributes: a, outputs }
    }

    /// Which version the resource describes: the one registered from the desired bytes (a
    /// re-plan, or a rollback to bytes registered before), else the recorded one, else none.
    fn current<'a>(
        versions: &'a BTreeMap<u64, Value>,
        desired: Option<&Attributes>,
        recorded: Option<u64>,
    ) -> Option<(u64, &'a Value)> {
        let same = |v: &Value| {
            let Some(d) = desired else { return false };
            match d.get("artifact_digest").and_then(Value::as_str) {
                Some(digest) => tag_map(v.get("tags")).get(DIGEST).map(String::as_str) == Some(digest),
                None => v.get("source") == d.get("artifact") && d.get("artifact").is_some_and(|s| !s.is_null()),
            }
        };
        versions
            .iter()
            .rev()
            .find(|(_, v)| same(v))
            .or_else(|| recorded.and_then(|n| versions.get_key_value(&n)))
            .map(|(n, v)| (*n, v))
    }

    /// A version registered from the desired bytes: an existing one (same digest or source), or
    /// a new one (the artifact uploaded through the server's proxy first).
    async fn ensure_version(
        &self,
        name: &str,
        config: &ResourceConfig,
        want: &Attributes,
        progress: &dyn Progress,
    ) -> Result<(u64, Value), ProviderError> {
        let versions = self.versions(name).await?;
        if let Some((n, v)) = Self::current(&versions, Some(want), None) {
            return Ok((n, v.clone()));
        }
        let source = want.get("artifact").and_then(Value::as_str).unwrap_or_default().to_string();
        if let Some(local) = local_artifact(config) {
            let files = artifact_files(&local)?;
            progress.report(&format!("uploading {} file(s) to {source}", files.len()));
            let prefix = source.trim_start_matches("mlflow-artifacts:/");
            for (rel, path) in &files {
                let bytes = tokio::fs::read(path).await.map_err(|e| {
                    ProviderError::invalid(format!("cannot read {}: {e}", path.display()))
                        .at(ValuePath::key("artifact"))
                })?;
                self.client.upload(&format!("{prefix}/{rel}"), bytes).await?;
            }
            // The bytes may have changed since the plan: register only what was planned.
            if artifact_digest(&local)? != want.get("artifact_digest").and_then(Value::as_str).unwrap_or_default() {
                return Err(ProviderError::new(
                    ErrorKind::Conflict,
                    format!("{} changed after the plan was made; plan again", local.display()),
                )
                .at(ValuePath::key("artifact")));
            }
        }
        let mut tags = string_map(want.get("version_tags"));
        tags.insert(OWNER.into(), self.project.clone());
        if let Some(d) = want.get("artifact_digest").and_then(Value::as_str) {
            tags.insert(DIGEST.into(), d.to_string());
        }
        if let Some(f) = want.get("framework").and_then(Value::as_str) {
            tags.insert(FRAMEWORK.into(), f.to_string());
        }
        progress.report(&format!("registering a new version of {name}"));
        let body = json!({"name": name, "source": source, "tags": tag_list(&tags)});
        let created =
            self.client.call(Method::POST, "model-versions/create", &[], Some(&body)).await?.unwrap_or_default();
        let n: u64 = created["model_version"]["version"].as_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
            ProviderError::failed(format!("MLflow did not say which version it created for {name}: {created}"))
        })?;
        // Registration can be asynchronous: wait until the version is READY.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let q = [("name", name), ("version", &n.to_string())];
            let v = self.client.call(Method::GET, "model-versions/get", &q, None).await?.unwrap_or_default();
            let mv = v["model_version"].clone();
            match mv.get("status").and_then(Value::as_str) {
                Some("READY") | None => return Ok((n, mv)),
                Some("FAILED_REGISTRATION") => {
                    return Err(ProviderError::failed(format!(
                        "MLflow failed to register version {n} of {name}: {}",
                        mv.get("status_message").and_then(Value::as_str).unwrap_or("no reason given")
                    )));
                }
                _ if tokio::time::Instant::now() > deadline => {
                    return Err(ProviderError::new(
                        ErrorKind::Timeout,
                        format!("version {n} of {name} was not READY after 2 minutes"),
                    ));
                }
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// Makes the registered model and the version what `want` says; returns the live state.
    async fn converge(&self, request: &ApplyRequest<'_>, progress: &dyn Progress) -> Result<LiveState, ProviderError> {
        let want = &request.desired.attributes;
        let name = want.get("registered_model").and_then(Value::as_str).unwrap_or_default().to_string();
        let description = want.get("description").and_then(Value::as_str);
        let tags = string_map(want.get("tags"));
        let reg = match self.registered(&name).await? {
            None => {
                let mut all = tags.clone();
                all.insert(OWNER.into(), self.project.clone());
                let mut body = json!({"name": name, "tags": tag_list(&all)});
                if let Some(d) = description {
                    body["description"] = json!(d);
                }
                progress.report(&format!("creating registered model {name}"));
                self.client.call(Method::POST, "registered-models/create", &[], Some(&body)).await?;
                Registered { description: description.map(str::to_string), tags: all, aliases: BTreeMap::new() }
            }
            Some(reg) => {
                let ours = reg.tags.get(OWNER) == Some(&self.project);
                if !ours && request.prior.is_none() && !request.options.force_conflicts {
                    return Err(ProviderError::new(
                        ErrorKind::Conflict,
                        format!(
                            "a registered model `{name}` exists and was not created by this stack; adopt it with `mlops import {} {name}` or apply with --force-conflicts",
                            request.address
                        ),
                    ));
                }
                if reg.description.as_deref() != description {
                    let body = json!({"name": name, "description": description.unwrap_or_default()});
                    self.client.call(Method::PATCH, "registered-models/update", &[], Some(&body)).await?;
                }
                let live = user_tags(&reg.tags);
                for (k, v) in &tags {
                    if live.get(k) != Some(v) {
                        let body = json!({"name": name, "key": k, "value": v});
                        self.client.call(Method::POST, "registered-models/set-tag", &[], Some(&body)).await?;
                    }
                }
                for k in live.keys().filter(|k| !tags.contains_key(*k)) {
                    let body = json!({"name": name, "key": k});
                    self.client.call(Method::DELETE, "registered-models/delete-tag", &[], Some(&body)).await?;
                }
                if !ours {
                    let body = json!({"name": name, "key": OWNER, "value": self.project});
                    self.client.call(Method::POST, "registered-models/set-tag", &[], Some(&body)).await?;
                }
                reg
            }
        };
        let (n, version) = self.ensure_version(&name, request.config, want, progress).await?;
        let version_no = n.to_string();
        // Version tags: the spec's, over whatever is there (mlops's own markers kept).
        let want_vt = string_map(want.get("version_tags"));
        let live_vt = user_tags(&tag_map(version.get("tags")));
        for (k, v) in &want_vt {
            if live_vt.get(k) != Some(v) {
                let body = json!({"name": name, "version": version_no, "key": k, "value": v});
                self.client.call(Method::POST, "model-versions/set-tag", &[], Some(&body)).await?;
            }
        }
        for k in live_vt.keys().filter(|k| !want_vt.contains_key(*k)) {
            let body = json!({"name": name, "version": version_no, "key": k});
            self.client.call(Method::DELETE, "model-versions/delete-tag", &[], Some(&body)).await?;
        }
        let framework = want.get("framework").and_then(Value::as_str);
        if tag_map(version.get("tags")).get(FRAMEWORK).map(String::as_str) != framework {
            let (method, path, body) = match framework {
                Some(f) => (
                    Method::POST,
                    "model-versions/set-tag",
                    json!({"name": name, "version": version_no, "key": FRAMEWORK, "value": f}),
                ),
                None => (
                    Method::DELETE,
                    "model-versions/delete-tag",
                    json!({"name": name, "version": version_no, "key": FRAMEWORK}),
                ),
            };
            self.client.call(method, path, &[], Some(&body)).await?;
        }
        // Aliases: the spec's point at this version; others that pointed at a version of this
        // resource (the recorded one, or this one) are removed.
        let aliases = strings(want.get("aliases"));
        for a in &aliases {
            if reg.aliases.get(a) != Some(&version_no) {
                progress.report(&format!("pointing alias {a} of {name} at version {n}"));
                let body = json!({"name": name, "alias": a, "version": version_no});
                self.client.call(Method::POST, "registered-models/alias", &[], Some(&body)).await?;
            }
        }
        let recorded =
            request.prior.and_then(|p| p.outputs.get("version")).and_then(Value::as_u64).map(|v| v.to_string());
        for (a, v) in &reg.aliases {
            if !aliases.contains(a) && (*v == version_no || Some(v) == recorded.as_ref()) {
                let body = json!({"name": name, "alias": a});
                self.client.call(Method::DELETE, "registered-models/alias", &[], Some(&body)).await?;
            }
        }
        let reg = self.registered(&name).await?.ok_or_else(|| {
            ProviderError::new(ErrorKind::Conflict, format!("registered model {name} disappeared during apply"))
        })?;
        let versions = self.versions(&name).await?;
        Ok(self.state(&name, &reg, versions.get_key_value(&n).map(|(n, v)| (*n, v))))
    }

    async fn delete_registered(&self, name: &str, progress: &dyn Progress) -> Result<(), ProviderError> {
        let Some(reg) = self.registered(name).await? else { return Ok(()) };
        if reg.tags.get(OWNER) != Some(&self.project) {
            return Err(ProviderError::new(
                ErrorKind::Conflict,
                format!(
                    "registered model {name} is not marked as this stack's (tag {OWNER}); mlops leaves it in place"
                ),
            ));
        }
        progress.report(&format!("deleting registered model {name} and its versions"));
        let body = json!({"name": name});
        self.client.call(Method::DELETE, "registered-models/delete", &[], Some(&body)).await?;
        Ok(())
    }
}

/// The artifact as a local path, when it is one (not a URI of a store MLflow reads itself).
fn local_artifact(config: &ResourceConfig) -> Option<std::path::PathBuf> {
    let a = config.str("artifact")?;
    (a.starts_with("file://") || !a.contains(":/")).then(|| config.local_path("artifact")).flatten()
}

/// The files of a local artifact: the file itself, or every file of the folder.
fn artifact_files(path: &Path) -> Result<BTreeMap<String, std::path::PathBuf>, ProviderError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        ProviderError::invalid(format!("the artifact {} cannot be read: {e}", path.display()))
            .at(ValuePath::key("artifact"))
    })?;
    if meta.is_dir() {
        return source_files(path).map_err(|e| e.at(ValuePath::key("artifact")));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    Ok(BTreeMap::from([(name, path.to_path_buf())]))
}

/// `sha256:` of the artifact's bytes (a folder: of each file's path and digest, in order).
fn artifact_digest(path: &Path) -> Result<String, ProviderError> {
    let files = artifact_files(path)?;
    let mut whole = Sha256::new();
    for (rel, p) in &files {
        let bytes = std::fs::read(p).map_err(|e| {
            ProviderError::invalid(format!("cannot read {}: {e}", p.display())).at(ValuePath::key("artifact"))
        })?;
        whole.update(rel.as_bytes());
        whole.update([0]);
        whole.update(Sha256::digest(&bytes));
    }
    Ok(format!("sha256:{}", hex::encode(whole.finalize())))
}

#[async_trait]
impl ResourceType for Models {
    fn check(&self, config: &ResourceConfig) -> Vec<ConfigDiagnostic> {
        let mut out = Vec::new();
        let name = Tracking::name_of(config);
        if name.is_empty() || name.len() > 256 || name.contains('/') || name.contains(':') {
            let path = if config.body.get("registered_model").is_some() { "registered_model" } else { "" };
            out.push(ConfigDiagnostic {
                path: if path.is_empty() { ValuePath::root() } else { ValuePath::key(path) },
                code: "spec::invalid_name".into(),
                message: format!("`{name}` is not a valid MLflow registered model name"),
                help: Some("use 1 to 256 characters without `/` or `:`".into()),
            });
        }
        for (i, a) in config.body.get("aliases").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let s = a.as_str().unwrap_or_default();
            let valid = !s.is_empty()
                && s.len() <= 255
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                && !(s.starts_with('v') && s[1..].chars().all(|c| c.is_ascii_digit()) && s.len() > 1)
                && !s.eq_ignore_ascii_case("latest");
            if !valid {
                out.push(ConfigDiagnostic {
                    path: ValuePath(vec!["aliases".into(), i.to_string()]),
                    code: "mlflow::invalid_alias".into(),
                    message: format!("`{s}` is not an alias MLflow accepts"),
                    help: Some(
                        "letters, digits, `_` and `-`; not `latest` and not `v<number>` (those name versions)".into(),
                    ),
                });
            }
        }
        for key in ["image", "registry", "environment"] {
            if config.body.get(key).is_some() {
                out.push(ConfigDiagnostic::unsupported(
                    ValuePath::key(key),
                    format!("`{key}` has no place in an MLflow registered model; the mlflow provider would ignore it"),
                    "remove it (set it on the endpoint that serves the model)",
                ));
            }
        }
        out
    }

    async fn desired(&self, config: &ResourceConfig, _deps: &Dependencies) -> Result<Desired, ProviderError> {
        let name = Tracking::name_of(config);
        let artifact = config.str("artifact").unwrap_or_default();
        let (source, digest) = match local_artifact(config) {
            Some(path) => {
                let digest = artifact_digest(&path)?;
                let hex = digest.trim_start_matches("sha256:");
                (format!("mlflow-artifacts:/mlops/{}/{name}/{}", self.0.project, &hex[..16]), Some(digest))
            }
            None => (artifact.to_string(), None),
        };
        let mut aliases = strings(config.body.get("aliases"));
        aliases.sort();
        aliases.dedup();
        let mut a = Attributes::new();
        a.insert("registered_model".into(), json!(name));
        a.insert("description".into(), config.body.get("description").cloned().unwrap_or(Value::Null));
        a.insert("tags".into(), json!(string_map(config.body.get("labels"))));
        // The version's source: where a serving provider pulls the bytes from (an endpoint on
        // another provider serving this model reads it as the model's `artifact`).
        a.insert("artifact".into(), json!(source));
        a.insert("artifact_digest".into(), json!(digest));
        a.insert("framework".into(), config.body.get("framework").cloned().unwrap_or(Value::Null));
        a.insert("version_tags".into(), json!(string_map(config.body.get("version_tags"))));
        a.insert("aliases".into(), json!(aliases));
        Ok(Desired {
            attributes: a,
            force_new: ["registered_model".to_string()].into(),
            // Replacing drops the old registered model and every version in it: its history.
            replace_destroys_data: true,
            ..Default::default()
        })
    }

    async fn read(
        &self,
        address: &Address,
        prior: Option<&PriorState>,
        desired: Option<&Desired>,
    ) -> Result<Option<LiveState>, ProviderError> {
        let name = prior
            .and_then(|p| p.outputs.get("registered_model").or_else(|| p.attributes.get("registered_model")))
            .or_else(|| desired.and_then(|d| d.attributes.get("registered_model")))
            .and_then(Value::as_str)
            .unwrap_or(&address.name)
            .to_string();
        let Some(reg) = self.0.registered(&name).await? else { return Ok(None) };
        if prior.is_none() && reg.tags.get(OWNER) != Some(&self.0.project) {
            // Someone else's model of the same name: not this resource (apply refuses to adopt it).
            return Ok(None);
        }
        let versions = self.0.versions(&name).await?;
        let recorded = prior.and_then(|p| p.outputs.get("version")).and_then(Value::as_u64);
        let current = Tracking::current(&versions, desired.map(|d| &d.attributes), recorded);
        Ok(Some(self.0.state(&name, &reg, current)))
    }

    async fn apply(&self, request: ApplyRequest<'_>, progress: &dyn Progress) -> Result<LiveState, ProviderError> {
        let state = self.0.converge(&request, progress).await?;
        if request.operation == Operation::Replace {
            let old = request.prior.and_then(|p| p.outputs.get("registered_model")).and_then(Value::as_str);
            if let Some(old) = old.filter(|o| Some(*o) != state.outputs.get("registered_model").and_then(Value::as_str))
            {
                self.0.delete_registered(old, progress).await.map_err(|e| e.with_state(state.clone()))?;
            }
        }
        Ok(state)
    }

    async fn delete(
        &self,
        address: &Address,
        prior: &PriorState,
        progress: &dyn Progress,
    ) -> Result<(), ProviderError> {
        let name = prior.outputs.get("registered_model").and_then(Value::as_str).unwrap_or(&address.name).to_string();
        self.0.delete_registered(&name, progress).await
    }

    /// Deleting a registered model deletes every version in it: the registry's history.
    fn delete_destroys_data(&self, address: &Address, live: &LiveState) -> Option<String> {
        let name = live.outputs.get("registered_model").and_then(Value::as_str).unwrap_or(&address.name);
        Some(format!("deleting {address} deletes registered model {name} and every version in it"))
    }

    async fn restorable(
        &self,
        config: &ResourceConfig,
        desired: &Desired,
        _deps: &Dependencies,
    ) -> Result<(), ProviderError> {
        let name = Tracking::name_of(config);
        let versions = self.0.versions(&name).await?;
        if Tracking::current(&versions, Some(&desired.attributes), None).is_some() {
            return Ok(());
        }
        Err(ProviderError::invalid(format!(
            "no version of registered model {name} holds the recorded artifact ({}); it was deleted from MLflow",
            desired
                .attributes
                .get("artifact_digest")
                .or_else(|| desired.attributes.get("artifact"))
                .unwrap_or(&Value::Null)
        )))
    }

    async fn import(&self, config: &ResourceConfig, id: &str) -> Result<LiveState, ProviderError> {
        let Some(reg) = self.0.registered(id).await? else {
            return Err(ProviderError::invalid(format!(
                "MLflow at {} has no registered model `{id}`",
                self.0.client.base()
            )));
        };
        let versions = self.0.versions(id).await?;
        // The version the spec's aliases point at, else the newest.
        let aliased =
            strings(config.body.get("aliases")).iter().filter_map(|a| reg.aliases.get(a)?.parse::<u64>().ok()).next();
        let current = aliased.and_then(|n| versions.get_key_value(&n)).or_else(|| versions.iter().next_back());
        Ok(self.0.state(id, &reg, current.map(|(n, v)| (*n, v))))
    }
}
