//! The plan: a value. Saved as versioned JSON (`schemas/plan.schema.json`), rendered, applied later.

use std::collections::BTreeMap;

use mlops_provider_core::{Address, Attributes, Value};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change of the JSON form.
pub const PLAN_FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "mlops plan")]
pub struct Plan {
    /// Always 1 for this format.
    pub format_version: u32,
    /// The mlops version that made the plan.
    pub mlops_version: String,
    pub project: String,
    pub environment: String,
    /// RFC 3339.
    pub created_at: String,
    pub source: SourceInfo,
    pub lineage: LineageBase,
    /// `--target` addresses, if the plan was limited.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Set by `mlops promote`: versions are those recorded in another environment's lineage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<Promotion>,
    pub summary: Summary,
    /// Every resource considered, in apply order of kinds, NoOps included.
    pub changes: Vec<ResourceChange>,
    /// Live objects that changed outside mlops since the last apply.
    #[serde(default)]
    pub drift: Vec<Drift>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SourceInfo {
    /// The spec file, relative to the repository's top.
    pub spec: String,
    /// sha256 of the spec file's bytes.
    pub spec_digest: String,
    /// The repository's HEAD commit, if it has one.
    pub commit: Option<String>,
    /// True when the spec or a file it reads differs from HEAD.
    pub dirty: bool,
    /// Other stacks' recorded values the spec used (`${stack:…}`), each with the lineage commit
    /// it was read from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<crate::stacks::Upstream>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Promotion {
    /// The environment the versions come from.
    pub from: String,
    /// Its lineage commit the versions were read at.
    pub lineage_commit: String,
    /// Set by `mlops rollback`: the versions are this environment's own, recorded at
    /// `lineage_commit`; resources created after it are deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rollback: bool,
}

impl Promotion {
    /// One line for the top of a rendered plan.
    pub fn describe(&self) -> String {
        let at = &self.lineage_commit[..12.min(self.lineage_commit.len())];
        if self.rollback {
            format!("Rollback: every version back to lineage {at}, as recorded then")
        } else {
            format!("Promotion: the versions environment `{}` recorded at lineage {at}", self.from)
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LineageBase {
    /// `refs/mlops/lineage/<project>/<environment>`.
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// The lineage commit the plan was computed against; `null` before the first apply.
    pub base: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    pub delete: usize,
    pub no_op: usize,
    pub drifted: usize,
    /// Live objects that match the spec but that lineage does not record, or records in another
    /// state (a lost or moved-back lineage ref, an apply killed before it recorded): apply
    /// records them as they are live.
    #[serde(default)]
    pub unrecorded: usize,
}

impl Summary {
    pub fn changes(&self) -> usize {
        self.create + self.update + self.replace + self.delete + self.unrecorded
    }
}

/// What happens to a resource. The JSON names are stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    NoOp,
    Create,
    Update,
    Replace,
    Delete,
}

impl Action {
    pub fn symbol(self) -> &'static str {
        match self {
            Action::NoOp => " ",
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
        }
    }
    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            Action::NoOp => "no-op",
            Action::Create => "create",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Delete => "delete",
        }
    }
    pub fn verb(self) -> &'static str {
        match self {
            Action::NoOp => "unchanged",
            Action::Create => "create",
            Action::Update => "update in place",
            Action::Replace => "replace",
            Action::Delete => "delete",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResourceChange {
    #[schemars(with = "String")]
    pub address: Address,
    pub provider: String,
    pub action: Action,
    /// Addresses this resource depends on (spec references, or recorded ones for a delete).
    #[schemars(with = "Vec<String>")]
    #[serde(default)]
    pub depends_on: Vec<Address>,
    /// Attribute-level differences between live (before) and desired (after).
    #[serde(default)]
    pub attributes: Vec<AttributeChange>,
    /// For a replace: the attributes that cannot change in place.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replace_reasons: Vec<String>,
    /// A replace or delete that destroys stored data (e.g. a feature store's records).
    #[serde(default)]
    pub data_destroying: bool,
    /// A replace that creates the new object first and deletes the old one once everything that
    /// depends on it has moved (the provider's `create_before_destroy`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_before_destroy: bool,
    /// What the provider warns about without refusing (a source file left out of a dataset).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// ML-aware flags a reviewer should not miss, computed by the engine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<ChangeTag>,
    /// The desired attributes the apply will write; `null` for a delete.
    pub desired: Option<Attributes>,
    /// Desired attributes that cannot change in place (a change to one forces a replace), as the
    /// provider said at plan time: the apply gets exactly what the plan decided.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub force_new: std::collections::BTreeSet<String>,
    /// Map attributes that constrain only the keys they list (live entries under other keys are
    /// left alone).
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub subset: std::collections::BTreeSet<String>,
    /// The live state when planned; `null` if it did not exist. Shared with `prior` when the
    /// two are equal (the usual case: one copy per unchanged resource, not two).
    pub live: Option<std::sync::Arc<RecordedState>>,
    /// sha256 of the live state when planned ("absent" if it did not exist): the apply
    /// refuses to go on when it changed.
    pub live_fingerprint: String,
    /// The last applied state, from lineage.
    pub prior: Option<std::sync::Arc<RecordedState>>,
    /// The provider block used, recorded so a later delete can find the resource (shared between
    /// the changes of one provider).
    #[serde(default)]
    #[schemars(with = "Value")]
    pub provider_config: std::sync::Arc<Value>,
}

/// A saved plan that cannot be used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PlanFileError {
    #[error("cannot read {file}: {source}")]
    #[diagnostic(code(plan::unreadable))]
    Unreadable {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file} is not an mlops plan: {detail}")]
    #[diagnostic(code(plan::invalid), help("save one with `mlops plan --out FILE`"))]
    NotAPlan { file: String, detail: String },
    #[error("{file} is a plan of format version {found}; this mlops reads version {PLAN_FORMAT_VERSION}")]
    #[diagnostic(
        code(plan::unsupported_format),
        help("plan and apply with the same mlops release: run `mlops plan --out FILE` again with this one")
    )]
    UnsupportedFormat { file: String, found: String },
}

impl Plan {
    /// Reads a saved plan (`mlops plan --out FILE`), refusing one of another format version
    /// before reading anything else of it.
    pub fn read_file(path: &std::path::Path, shown: &str) -> Result<Plan, PlanFileError> {
        let bytes =
            std::fs::read(path).map_err(|source| PlanFileError::Unreadable { file: shown.to_string(), source })?;
        Plan::from_bytes(&bytes, shown)
    }

    /// A saved plan's bytes as a plan (see [`Plan::read_file`]).
    pub fn from_bytes(bytes: &[u8], shown: &str) -> Result<Plan, PlanFileError> {
        let not_a_plan = |detail: String| PlanFileError::NotAPlan { file: shown.to_string(), detail };
        let value: Value = serde_json::from_slice(bytes).map_err(|e| not_a_plan(e.to_string()))?;
        match value.get("format_version") {
            Some(v) if v.as_u64() == Some(u64::from(PLAN_FORMAT_VERSION)) => {}
            Some(v) => return Err(PlanFileError::UnsupportedFormat { file: shown.to_string(), found: v.to_string() }),
            None => return Err(not_a_plan("it has no `format_version`".into())),
        }
        serde_json::from_value(value).map_err(|e| not_a_plan(e.to_string()))
    }
}

impl ResourceChange {
    /// A change with nothing but an address and an action, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_test(address: &str, action: Action) -> Self {
        ResourceChange {
            address: address.parse().expect("a test address"),
            provider: "test".into(),
            action,
            depends_on: vec![],
            attributes: vec![],
            replace_reasons: vec![],
            data_destroying: false,
            create_before_destroy: false,
            tags: vec![],
            warnings: vec![],
            desired: None,
            force_new: Default::default(),
            subset: Default::default(),
            live: None,
            live_fingerprint: "absent".into(),
            prior: None,
            provider_config: Default::default(),
        }
    }

    /// Live and as the spec wants it, but not in lineage: nothing to change, something to record.
    pub fn is_unrecorded(&self) -> bool {
        self.action == Action::NoOp && self.prior.is_none() && self.live.is_some()
    }

    /// Live and as the spec wants it, but lineage records another state (an apply killed after
    /// changing it and before recording, a lineage ref moved back): nothing to change, the live
    /// state to record, so lineage never stays behind what is live.
    ///
    /// Only what the record is believed for counts: an attribute the spec sets (within the keys
    /// it lists, for a map that constrains only those) or the version the outputs carry. What the
    /// backend moves by itself (an autoscaler's replica count, a status) is not a record behind.
    pub fn is_behind(&self) -> bool {
        if self.action != Action::NoOp {
            return false;
        }
        let (Some(prior), Some(live)) = (&self.prior, &self.live) else { return false };
        if std::sync::Arc::ptr_eq(prior, live) || prior == live {
            return false;
        }
        if version_in(&prior.outputs) != version_in(&live.outputs) {
            return true;
        }
        let Some(desired) = &self.desired else { return false };
        desired.iter().any(|(key, want)| {
            let (p, l) = (prior.attributes.get(key), live.attributes.get(key));
            match (want, p, l) {
                (Value::Object(want), Some(Value::Object(p)), Some(Value::Object(l))) if self.subset.contains(key) => {
                    want.keys().any(|k| p.get(k) != l.get(k))
                }
                _ => p != l,
            }
        })
    }

    /// Nothing to change but something to record: [`Self::is_unrecorded`] or [`Self::is_behind`].
    pub fn is_to_record(&self) -> bool {
        self.is_unrecorded() || self.is_behind()
    }
}

/// A flag on a change. The JSON form is `{"tag": "data-destroying", ...}`; the tag names are stable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "tag", rename_all = "kebab-case")]
pub enum ChangeTag {
    /// Stored data is destroyed; `apply` refuses it without `--allow-data-loss`.
    DataDestroying { reason: String },
    /// Serving traffic moves: canary share or replicas.
    TrafficShift { attribute: String, before: Option<Value>, after: Option<Value> },
    /// The model bytes served or registered change.
    ModelVersionChange {
        /// The live version (registry version, generation) before the change, if known.
        from_version: Option<Value>,
        from_digest: Option<Value>,
        to_digest: Option<Value>,
        /// The model reference (`models:/churn@champion`) that now names another version, when
        /// the model's artifact is one; with the version it names now.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to_version: Option<Value>,
    },
    /// The image's tag names another manifest than when it was last applied (someone pushed to
    /// it): what serves would change without the spec changing.
    ImageMoved { image: String, from_digest: String, to_digest: String },
    /// The change usually takes long (an endpoint deployment): the expected wait in seconds.
    LongRunning { expected_wait_secs: u64 },
    /// The change takes a field another owner holds (another field manager of the object), or adopts an
    /// object this tool did not create; `apply` refuses it without `--force-conflicts`.
    Conflict { detail: String },
    /// Part of a rollback to the versions recorded at this lineage commit; `leaves` is what it
    /// does not bring back (a feature store's stored records).
    Rollback {
        to_commit: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leaves: Option<String>,
    },
    /// Lineage recorded the resource under other settings of its provider (a local `root:`, an
    /// account, a project) and nothing is there under the current ones: what exists under the
    /// recorded settings is left in place and forgotten, never called deleted.
    ProviderMoved { from: Value, to: Value },
    /// The new model version takes the traffic in steps (the endpoint's `rollout:`): the share
    /// after each step, the wait between steps, the bake, and what rolls it back.
    Rollout {
        strategy: String,
        steps: Vec<u64>,
        interval_secs: u64,
        bake_secs: u64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        alarms: Vec<String>,
        auto_rollback: bool,
        expected_secs: u64,
    },
}

impl ChangeTag {
    pub fn name(&self) -> &'static str {
        match self {
            ChangeTag::DataDestroying { .. } => "data-destroying",
            ChangeTag::TrafficShift { .. } => "traffic-shift",
            ChangeTag::ModelVersionChange { .. } => "model-version-change",
            ChangeTag::ImageMoved { .. } => "image-moved",
            ChangeTag::LongRunning { .. } => "long-running",
            ChangeTag::Conflict { .. } => "conflict",
            ChangeTag::Rollback { .. } => "rollback",
            ChangeTag::ProviderMoved { .. } => "provider-moved",
            ChangeTag::Rollout { .. } => "rollout",
        }
    }

    /// The details, in one line for humans (without the tag's name).
    pub fn describe(&self) -> String {
        let show = |v: &Option<Value>| match v {
            None => "none".to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        };
        match self {
            ChangeTag::DataDestroying { reason } => reason.clone(),
            ChangeTag::TrafficShift { attribute, before, after } => {
                format!("{attribute} {} → {}", show(before), show(after))
            }
            ChangeTag::ModelVersionChange { reference: Some(r), from_version, to_version, .. } => {
                format!("{r} moved from version {} to {}", show(from_version), show(to_version))
            }
            ChangeTag::ModelVersionChange { from_version, from_digest, to_digest, .. } => {
                format!("from version {} ({}) to {}", show(from_version), show(from_digest), show(to_digest))
            }
            ChangeTag::ImageMoved { image, from_digest, to_digest } => {
                format!("{image} moved from {from_digest} to {to_digest} since it was applied")
            }
            ChangeTag::LongRunning { expected_wait_secs } => {
                format!("expect about {} min", expected_wait_secs.div_ceil(60))
            }
            ChangeTag::Conflict { detail } => detail.clone(),
            ChangeTag::Rollback { to_commit, leaves } => {
                let to = format!("back to lineage {}", &to_commit[..12.min(to_commit.len())]);
                match leaves {
                    Some(l) => format!("{to}: {l}"),
                    None => to,
                }
            }
            ChangeTag::ProviderMoved { from, to } => format!(
                "recorded under provider settings {from}, now {to}: what exists under the recorded settings is left in place and forgotten"
            ),
            ChangeTag::Rollout { strategy, steps, interval_secs, bake_secs, alarms, auto_rollback, expected_secs } => {
                let steps: Vec<String> = steps.iter().map(|s| format!("{s}%")).collect();
                let watch = match (alarms.is_empty(), auto_rollback) {
                    (false, true) => format!("; rolled back if {} goes into ALARM", alarms.join(" or ")),
                    (true, true) => "; rolled back if a step fails".to_string(),
                    _ => String::new(),
                };
                format!(
                    "{strategy} {}, {interval_secs}s between steps, {bake_secs}s bake: at least {} min{watch}",
                    steps.join(" → "),
                    expected_secs.div_ceil(60)
                )
            }
        }
    }
}

/// A resource's state as a plan or lineage holds it: the one state type, in its recorded role.
pub use mlops_provider_core::ResourceState as RecordedState;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AttributeChange {
    /// e.g. `files["train.csv"]`, `traffic.canary_percent`.
    pub path: String,
    /// `null` (absent in JSON) when added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// `null` (absent in JSON) when removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forces_replacement: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Drift {
    #[schemars(with = "String")]
    pub address: Address,
    /// `changed`, or `deleted` when the live object is gone.
    pub kind: DriftKind,
    /// Last applied (before) → live (after).
    #[serde(default)]
    pub attributes: Vec<AttributeChange>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    Changed,
    Deleted,
}

/// A plan and the exact bytes it is recorded as (see [`Plan::document`]).
pub struct PlanDocument<'a> {
    pub plan: &'a Plan,
    pub json: Vec<u8>,
    /// `sha256:…` of `json`.
    pub digest: String,
}

impl<'a> PlanDocument<'a> {
    /// `json` as read back (a journal's plan): recorded as it was written, not serialized again.
    pub fn new(plan: &'a Plan, json: Vec<u8>) -> Self {
        use sha2::{Digest, Sha256};
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&json)));
        PlanDocument { plan, json, digest }
    }
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        self.summary.changes() > 0
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("plans serialize");
        s.push('\n');
        s
    }

    /// The digest recorded as `Plan-Digest` in lineage.
    pub fn digest(&self) -> String {
        self.document().digest
    }

    /// The plan serialized once, with its digest: what an apply writes to its journal, to the
    /// lineage commit's plan.json and to its `Plan-Digest` trailer (at 100,000 resources the
    /// plan is over 100 MB: it is not serialized once per use).
    pub fn document(&self) -> PlanDocument<'_> {
        PlanDocument::new(self, self.to_json().into_bytes())
    }

    pub fn change(&self, address: &Address) -> Option<&ResourceChange> {
        self.changes.iter().find(|c| &c.address == address)
    }

    pub fn summarize(changes: &[ResourceChange], drift: &[Drift]) -> Summary {
        let mut s = Summary { drifted: drift.len(), ..Summary::default() };
        for c in changes {
            match c.action {
                Action::NoOp if c.is_to_record() => s.unrecorded += 1,
                Action::NoOp => s.no_op += 1,
                Action::Create => s.create += 1,
                Action::Update => s.update += 1,
                Action::Replace => s.replace += 1,
                Action::Delete => s.delete += 1,
            }
        }
        s
    }
}

/// The current time, or `MLOPS_NOW` (Unix seconds) for reproducible tests.
pub fn now_rfc3339() -> String {
    let now = std::env::var("MLOPS_NOW")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .unwrap_or_else(chrono::Utc::now);
    now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The version a resource's outputs carry: `version` (datasets, models), `model_version` (the
/// model version an endpoint serves), else `digest`.
pub fn version_in(outputs: &Attributes) -> Option<&Value> {
    ["version", "model_version", "digest"].iter().find_map(|k| outputs.get(*k))
}

/// [`version_in`] as text: strings without quotes.
pub fn version_text(outputs: &Attributes) -> Option<String> {
    version_in(outputs).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
}

/// The JSON Schema of the plan file, as committed in `schemas/plan.schema.json`.
pub fn json_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(Plan)).expect("schema serializes")
}

/// sha256 over a state's canonical JSON (object keys are sorted): equal states, equal prints.
pub fn fingerprint(state: Option<&RecordedState>) -> String {
    use sha2::{Digest, Sha256};
    match state {
        None => "absent".into(),
        Some(s) => {
            let bytes = serde_json::to_vec(s).expect("states serialize");
            format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
        }
    }
}

/// Per-address outcome of an apply, recorded in lineage as `result.json`.
pub type Outcomes = BTreeMap<String, Outcome>;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub action: Action,
    /// `applied`, `failed` or `skipped` (a dependency failed).
    pub status: OutcomeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For a failure: what kind (`invalid`, `unavailable`, `conflict`, `timeout`, `failed`), so
    /// lineage tells an unreachable backend from a bad configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<mlops_provider_core::ErrorKind>,
}

impl Outcome {
    pub fn applied(action: Action) -> Self {
        Outcome { action, status: OutcomeStatus::Applied, error: None, kind: None }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    Applied,
    Failed,
    Skipped,
}
