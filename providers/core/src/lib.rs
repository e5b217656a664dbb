//! The contract between the mlops engine and its providers.
//!
//! A provider turns a resource's configuration into desired attributes, reads the
//! live state of what it manages, and applies changes. It never prints: progress goes
//! through [`Progress`], problems come back as [`ProviderError`] or [`ConfigDiagnostic`],
//! and the engine maps attribute paths back to source lines.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

pub mod autoscaling;
mod contract;
mod dataset;
pub mod dvc;
pub mod rollout;
mod state;
pub use contract::{FEATURE_RECORDS_NOT_RESTORED, Provider, ResourceType, records_destroyed};
pub use dataset::{
    EntryOf, SyncPlan, dataset_manifest, not_in_source, skipped_source_entries, skipped_source_entry, source_files,
    sync_plan, unrestorable_files,
};
pub use state::{LiveState, PriorState, ResourceState};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
pub use serde_json::Value;

/// The four kinds of resource a spec declares, in the order the spec lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Dataset,
    Model,
    FeatureStore,
    Endpoint,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Dataset, Kind::Model, Kind::FeatureStore, Kind::Endpoint];

    /// The spec section and address prefix: `datasets`, `models`, `feature_stores`, `endpoints`.
    pub fn section(self) -> &'static str {
        match self {
            Kind::Dataset => "datasets",
            Kind::Model => "models",
            Kind::FeatureStore => "feature_stores",
            Kind::Endpoint => "endpoints",
        }
    }

    pub fn from_section(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.section() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.section())
    }
}

/// A resource's address: `kind.name`, e.g. `models.churn-xgb`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    pub kind: Kind,
    pub name: String,
}

impl Address {
    pub fn new(kind: Kind, name: impl Into<String>) -> Self {
        Address { kind, name: name.into() }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind.section(), self.name)
    }
}

/// Why a string is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("`{0}` is not an address: expected `kind.name`, e.g. `models.churn-xgb`")]
    Shape(String),
    #[error("`{0}` is not a resource kind: expected one of datasets, models, feature_stores, endpoints")]
    UnknownKind(String),
    #[error(
        "`{0}` is not a valid resource name: use letters, digits, `-`, `_` and `.`, starting with a letter or digit"
    )]
    BadName(String),
}

/// True for names the spec accepts at all; providers may be stricter.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, name) = s.split_once('.').ok_or_else(|| AddressError::Shape(s.to_string()))?;
        let kind = Kind::from_section(kind).ok_or_else(|| AddressError::UnknownKind(kind.to_string()))?;
        if !is_valid_name(name) {
            return Err(AddressError::BadName(name.to_string()));
        }
        Ok(Address::new(kind, name))
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Attribute name → value. Ordered, so that renderings and digests are stable.
pub type Attributes = BTreeMap<String, Value>;

/// A path into a resource's configuration or attributes, e.g. `["traffic", "canary_percent"]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ValuePath(pub Vec<String>);

impl ValuePath {
    pub fn root() -> Self {
        ValuePath(Vec::new())
    }
    pub fn key(k: impl Into<String>) -> Self {
        ValuePath(vec![k.into()])
    }
    pub fn join(&self, k: impl Into<String>) -> Self {
        let mut v = self.0.clone();
        v.push(k.into());
        ValuePath(v)
    }
    /// A path of keys: `ValuePath::keys(&["traffic", "canary_percent"])`.
    pub fn keys(ks: &[&str]) -> Self {
        ValuePath(ks.iter().map(|k| k.to_string()).collect())
    }
}

impl fmt::Display for ValuePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            let plain = !seg.is_empty() && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            match (i, plain) {
                (0, true) => f.write_str(seg)?,
                (_, true) => write!(f, ".{seg}")?,
                (_, false) => write!(f, "[{seg:?}]")?,
            }
        }
        Ok(())
    }
}

/// A resource as declared: what a provider needs to compute the desired state.
#[derive(Clone, Debug)]
pub struct ResourceConfig {
    pub address: Address,
    /// The provider block that manages it (`local`, `aws`, ...).
    pub provider: String,
    /// The resource's body as written in the spec, after `${env:...}` interpolation.
    pub body: Value,
    /// Resources this one references (`trained_on`, `model`, `depends_on`).
    pub dependencies: Vec<Address>,
    /// The directory relative paths in the spec are resolved against.
    pub base_dir: PathBuf,
}

impl ResourceConfig {
    pub fn str(&self, key: &str) -> Option<&str> {
        self.body.get(key).and_then(Value::as_str)
    }

    /// A local path the spec gives (`./data`, or `file://./data`), relative to the spec file.
    pub fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.str(key).map(|p| self.base_dir.join(p.strip_prefix("file://").unwrap_or(p)))
    }
}

/// What a provider sees of a resource this one depends on.
#[derive(Clone, Debug, Default)]
pub struct DependencyView {
    /// The dependency's desired attributes, as planned.
    pub attributes: Attributes,
    /// Its live outputs (identifiers, versions), when it has been applied.
    pub outputs: Option<Attributes>,
}

pub type Dependencies = BTreeMap<Address, DependencyView>;

/// The state a provider wants a resource in.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Desired {
    pub attributes: Attributes,
    /// Attributes that cannot change in place: a change to any of them forces a Replace.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub force_new: BTreeSet<String>,
    /// A Replace destroys stored data (e.g. a feature store's records).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace_destroys_data: bool,
    /// A Replace creates the new object first and deletes the old one only once everything that
    /// depends on it has moved (what the old object left is `outputs.deposed` until `finish`):
    /// shown in the plan. Otherwise the old object is deleted first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_before_destroy: bool,
    /// Map attributes that only constrain the keys they list: live entries under other keys are
    /// not differences (e.g. remote objects a dataset without `prune` leaves alone).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub subset: BTreeSet<String>,
    /// How long a change to this resource usually takes (e.g. an endpoint deployment), when that
    /// is long enough to warn about: the plan tags such changes `long-running`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_wait_secs: Option<u64>,
    /// Fields the change would take from another owner (e.g. a Kubernetes field manager), or an
    /// object of the same name this tool did not create: shown in the plan, and `apply` refuses
    /// them without `--force-conflicts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
    /// What the plan should warn about without refusing (a source file left out of a dataset).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The operations a provider is asked to perform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Create,
    Update,
    Replace,
}

/// One change for a provider to make.
#[derive(Clone, Debug)]
pub struct ApplyRequest<'a> {
    pub address: &'a Address,
    pub operation: Operation,
    pub desired: &'a Desired,
    pub config: &'a ResourceConfig,
    pub prior: Option<&'a PriorState>,
    /// The live state when the plan was made (preconditions are taken against it).
    pub live: Option<&'a LiveState>,
    /// Dependencies with their outputs as applied in this run or recorded before.
    pub dependencies: &'a Dependencies,
    pub options: &'a ApplyOptions,
}

/// How the user asked `apply` to behave.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// Take fields other owners hold (`--force-conflicts`).
    pub force_conflicts: bool,
    /// Wait for long operations (deployments) to finish; `--no-wait` turns it off.
    pub wait: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions { force_conflicts: false, wait: true }
    }
}

/// Where a provider reports progress of a long step. Never printed by the provider itself.
pub trait Progress: Send + Sync {
    fn report(&self, message: &str);
    /// Bytes of a transfer done so far (a dataset upload): `done` of `total`. On a terminal this
    /// is a bar; elsewhere it is not printed.
    fn transfer(&self, done: u64, total: u64) {
        let _ = (done, total);
    }
}

/// A progress sink that drops every message.
pub struct NoProgress;
impl Progress for NoProgress {
    fn report(&self, _message: &str) {}
}

/// A problem with a resource's configuration that only its provider can see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigDiagnostic {
    /// Path inside the resource body; empty for the resource's name.
    pub path: ValuePath,
    /// Stable code, e.g. `spec::invalid_name`.
    pub code: String,
    pub message: String,
    pub help: Option<String>,
}

impl ConfigDiagnostic {
    /// `spec::unsupported_value`: a value this provider cannot honour (and will not ignore).
    pub fn unsupported(path: ValuePath, message: impl Into<String>, help: impl Into<String>) -> Self {
        ConfigDiagnostic {
            path,
            code: "spec::unsupported_value".into(),
            message: message.into(),
            help: Some(help.into()),
        }
    }
}

/// The entries of a JSON object as attributes (empty for anything else).
pub fn attributes_of(v: Value) -> Attributes {
    match v {
        Value::Object(m) => m.into_iter().collect(),
        _ => Attributes::new(),
    }
}

/// What went wrong in a provider call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Bad configuration (a file that does not exist, a value the backend rejects).
    Invalid,
    /// The backend could not be reached, or kept failing after retries.
    Unavailable,
    /// Someone else changed the object under us.
    Conflict,
    /// A wait for a long operation ran out of time.
    Timeout,
    /// The operation ran and failed.
    Failed,
    /// The backend rolled the change back by itself (an alarm fired, a step failed): what served
    /// before still serves, and the change is still pending.
    #[serde(rename = "rolled-back")]
    RolledBack,
}

impl ErrorKind {
    /// The kind as written in plans, lineage and exports (`invalid`, `unavailable`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Invalid => "invalid",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Failed => "failed",
            ErrorKind::RolledBack => "rolled-back",
        }
    }
}

#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    pub kind: ErrorKind,
    pub message: String,
    pub path: Option<ValuePath>,
    /// What is live after an operation that changed something and then failed (e.g. an endpoint
    /// created but never ready): recorded in lineage so nothing that happened is lost.
    pub state: Option<Box<LiveState>>,
}

impl ProviderError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProviderError { kind, message: message.into(), path: None, state: None }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Failed, message)
    }
    pub fn at(mut self, path: ValuePath) -> Self {
        self.path = Some(path);
        self
    }
    /// The error, with what is live after it.
    pub fn with_state(mut self, state: LiveState) -> Self {
        self.state = Some(Box::new(state));
        self
    }
}

/// An error and its whole chain of causes on one line (`outer: cause: root cause`), skipping a
/// cause whose text the line already holds: never just the outermost "service error".
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = s.source();
    }
    out
}

/// A duration as the spec writes it: `90s`, `10m`, `1h`, or a number of seconds.
/// A duration setting `parse_duration` refuses (the schema's pattern admits what overflows),
/// refused at its path.
pub fn check_duration(path: ValuePath, value: Option<&Value>) -> Option<ConfigDiagnostic> {
    let t = value?.as_str()?;
    parse_duration(t)
        .is_none()
        .then(|| ConfigDiagnostic::unsupported(path, format!("`{t}` is not a duration"), "write e.g. 90s, 10m or 1h"))
}

#[cfg(test)]
pub(crate) fn test_endpoint(body: Value) -> ResourceConfig {
    ResourceConfig {
        address: "endpoints.e".parse().unwrap(),
        provider: "p".into(),
        body,
        dependencies: vec![],
        base_dir: Default::default(),
    }
}

pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    Some(std::time::Duration::from_secs(secs))
}

/// Builds a provider from its block under `providers:`.
pub type ProviderFactory = fn(block: &Value, ctx: &ProviderContext) -> Result<Arc<dyn Provider>, ProviderError>;

/// What the engine knows of a provider before any block configures it: how to build it, the
/// settings it owns in the spec, and which resources are its own when they name no provider.
/// Each provider crate exports one (`pub fn entry() -> ProviderEntry`); the registry lists them.
#[derive(Clone, Copy)]
pub struct ProviderEntry {
    /// The name used under `providers:` and in `provider:`.
    pub name: &'static str,
    /// One line: what it manages and where its credentials come from (the block's description).
    pub about: &'static str,
    pub factory: ProviderFactory,
    /// JSON Schema of its block under `providers:` (see [`schema_of`]).
    pub block: fn() -> Value,
    /// JSON Schema properties it adds to a resource of a kind, beyond the portable fields
    /// (see [`properties_of`]); an empty map when it adds none.
    pub settings: fn(Kind) -> serde_json::Map<String, Value>,
    /// Whether a resource that names no provider is its own (by its location's URI scheme, ...).
    pub claims: fn(Kind, &Value) -> bool,
    /// Reference schemes it resolves for other providers (see [`Provider::resolve`]), e.g. a
    /// registry's `models:/`: a model `artifact` written so is resolved by it at plan time.
    pub references: &'static [&'static str],
    /// Schemes of training runs it reads (see [`Provider::training_run`]), e.g. `mlflow://runs/`:
    /// a model's `produced_by` written so is read by it at plan time.
    pub runs: &'static [&'static str],
}

/// A reference (`models:/churn@champion`) as resolved at plan time: what it names now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// Where the bytes are, for the provider that uses them (e.g. `s3://…`, `gs://…`).
    pub uri: String,
    /// The version the reference names now (a registry version number).
    pub version: String,
    /// The bytes' digest, when the registry knows it.
    pub digest: Option<String>,
}

/// A training run as its tracker records it (a model's `produced_by`), resolved at plan time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TrainingRun {
    pub run_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The tracker's word for it: `FINISHED`, `RUNNING`, `FAILED`, ...
    pub status: String,
    /// Where a person looks at it (the tracker's page of the run).
    pub link: String,
    /// `sha256:` of the run's parameters, one `key=value` line each, sorted.
    pub params_digest: String,
    /// The datasets the run logged as its inputs: name, digest, source, as the tracker has them.
    pub inputs: Vec<Value>,
    /// The artifact the reference names, when it names one (a file of the run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact: Option<RunArtifact>,
}

/// A file a training run logged, with its digests in the forms providers record an artifact's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunArtifact {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// `sha256:…`, when the tracker has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// `md5:…`, when the tracker has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
}

/// A `claims` for providers that claim nothing (they are used when named or when alone).
pub fn claims_nothing(_: Kind, _: &Value) -> bool {
    false
}

/// A `settings` for providers that add no settings to the portable fields.
pub fn no_settings(_: Kind) -> serde_json::Map<String, Value> {
    serde_json::Map::new()
}

/// Whether a resource's location (`uri`, else `artifact`) starts with `scheme` (e.g. `xy://`).
/// The local file or folder a `source` or `artifact` value reads, if it names one: a plain path,
/// `file://PATH`, or a DVC pointer (`dvc://PATH.dvc`). Remote URIs read nothing local.
pub fn local_input(value: &str) -> Option<&str> {
    match value.strip_prefix("file://").or_else(|| value.strip_prefix(dvc::SCHEME)) {
        // A pipeline output (`dvc.lock#STAGE:PATH`) reads the lock file.
        Some(rest) => Some(rest.split_once('#').map_or(rest, |(file, _)| file)),
        None if value.contains("://") => None,
        None => Some(value),
    }
}

pub fn location_has_scheme(body: &Value, scheme: &str) -> bool {
    body.get("uri").or_else(|| body.get("artifact")).and_then(Value::as_str).is_some_and(|u| u.starts_with(scheme))
}

/// The JSON Schema of `T` with every subschema inlined (a fragment that can be placed anywhere).
pub fn schema_of<T: schemars::JsonSchema>() -> Value {
    let settings = schemars::generate::SchemaSettings::draft2020_12().with(|s| s.inline_subschemas = true);
    let mut schema = serde_json::to_value(settings.into_generator().into_root_schema_for::<T>()).unwrap_or_default();
    if let Some(o) = schema.as_object_mut() {
        o.remove("$schema");
        o.remove("title");
    }
    schema
}

/// The properties of `T`'s schema: the settings a struct adds to a resource.
pub fn properties_of<T: schemars::JsonSchema>() -> serde_json::Map<String, Value> {
    match schema_of::<T>().get_mut("properties").map(Value::take) {
        Some(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    }
}

/// What a provider factory may know about where it runs.
#[derive(Clone, Debug)]
pub struct ProviderContext {
    /// The directory of the spec file.
    pub base_dir: PathBuf,
    pub project: String,
    pub environment: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_round_trips() {
        let a: Address = "feature_stores.customer".parse().unwrap();
        assert_eq!(a.kind, Kind::FeatureStore);
        assert_eq!(a.to_string(), "feature_stores.customer");
        assert!("models".parse::<Address>().is_err());
        assert!("widgets.x".parse::<Address>().is_err());
        assert!("models.-x".parse::<Address>().is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(std::time::Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Some(std::time::Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Some(std::time::Duration::from_secs(3600)));
        assert_eq!(parse_duration("45"), Some(std::time::Duration::from_secs(45)));
        assert_eq!(parse_duration("1d"), None);
        assert_eq!(parse_duration("m"), None);
    }

    #[test]
    fn value_path_display() {
        let p = ValuePath(vec!["files".into(), "a b.csv".into()]);
        assert_eq!(p.to_string(), "files[\"a b.csv\"]");
        assert_eq!(ValuePath::keys(&["traffic", "canary_percent"]).to_string(), "traffic.canary_percent");
    }
}

/// A per-run read cache between `desired` and `read`: when computing a desired state needs the
/// live object (a Failed status, the features a group has), the answer is kept here under a key
/// and taken, once, by the `read` of the same resource in the same run, so a plan never asks the
/// backend the same question twice. Taken, never reused, and forgotten by an apply of the
/// resource: a read after a change always goes to the backend.
pub struct ReadCache<T> {
    answers: std::sync::Mutex<BTreeMap<String, T>>,
}

impl<T> Default for ReadCache<T> {
    fn default() -> Self {
        ReadCache { answers: std::sync::Mutex::new(BTreeMap::new()) }
    }
}

impl<T> ReadCache<T> {
    pub fn keep(&self, key: impl Into<String>, answer: T) {
        self.answers.lock().unwrap_or_else(|e| e.into_inner()).insert(key.into(), answer);
    }

    /// The kept answer, removed: the next read of `key` goes to the backend.
    pub fn take(&self, key: &str) -> Option<T> {
        self.answers.lock().unwrap_or_else(|e| e.into_inner()).remove(key)
    }
}

#[cfg(test)]
mod read_cache_tests {
    use super::ReadCache;

    #[test]
    fn an_answer_is_taken_once() {
        let cache = ReadCache::default();
        cache.keep("endpoint:a", 1);
        assert_eq!(cache.take("endpoint:b"), None);
        assert_eq!(cache.take("endpoint:a"), Some(1));
        assert_eq!(cache.take("endpoint:a"), None, "the second read goes to the backend");
    }
}
