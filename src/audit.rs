//! Questions an audit asks of lineage: the stack at a point in time, the lineage graph, the
//! change log as a table, and whether the chain is intact. Reads only; never changes anything.

pub mod bom;
pub mod dsse;
pub mod provenance;
pub mod report;

use std::collections::{BTreeMap, BTreeSet};

use mlops_provider_core::{Address, Value};
use serde::Serialize;

use crate::lineage::{Entry, Index, Lineage, LineageError, Needle, ResourceRecord};
use crate::plan::{Action, OutcomeStatus};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum AuditError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Lineage(#[from] LineageError),
    #[error("{message}")]
    #[diagnostic(code(audit::when))]
    When {
        message: String,
        #[help]
        help: String,
    },
}

/// A point in history, as a person names it.
fn when_error(message: impl Into<String>, lineage: &Lineage) -> AuditError {
    AuditError::When {
        message: message.into(),
        help: format!(
            "WHEN is `now`, a time (RFC 3339, e.g. 2026-05-01T12:00:00Z, or a date, meaning its end in UTC), a time ago as Git writes it (`2.hours.ago`, `1 day ago`, `yesterday`), a lineage revision (`lineage~3`, a commit of `git log {}`), or a source commit an apply was made from",
            lineage.ref_name
        ),
    }
}

/// A time: RFC 3339, `YYYY-MM-DD` (the end of that day, UTC), or a time ago as Git's approxidate
/// writes it (`2.hours.ago`, `1 day ago`, `yesterday`: a day ago).
pub fn parse_time(s: &str) -> Option<i64> {
    parse_time_at(s, chrono::Utc::now().timestamp())
}

/// [`parse_time`] with the present at `now` (seconds since the epoch).
fn parse_time_at(s: &str, now: i64) -> Option<i64> {
    if let Some(ago) = parse_ago(s) {
        return Some(now - ago);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp());
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(23, 59, 59)?.and_utc().timestamp())
}

/// Seconds ago: `N UNIT ago` with dots or spaces between the words (`2.hours.ago`), the unit
/// singular or plural (seconds, minutes, hours, days, weeks, months of 30 days, years of 365), or
/// `yesterday`.
fn parse_ago(s: &str) -> Option<i64> {
    let s = s.trim().to_ascii_lowercase();
    if s == "yesterday" {
        return Some(86_400);
    }
    let words: Vec<&str> = s.split(['.', ' ', '_']).filter(|w| !w.is_empty()).collect();
    let [n, unit, "ago"] = words[..] else { return None };
    let n: i64 = n.parse().ok()?;
    let seconds = match unit.strip_suffix('s').unwrap_or(unit) {
        "second" | "sec" => 1,
        "minute" | "min" => 60,
        "hour" => 3_600,
        "day" => 86_400,
        "week" => 604_800,
        "month" => 2_592_000,
        "year" => 31_536_000,
        _ => return None,
    };
    n.checked_mul(seconds)
}

/// The index position of the lineage commit that stood at `when`.
pub fn locate(lineage: &Lineage, index: &Index, when: &str) -> Result<usize, AuditError> {
    let last = index
        .len()
        .checked_sub(1)
        .ok_or_else(|| when_error(format!("{} has no applies recorded", lineage.ref_name), lineage))?;
    if when == "now" {
        return Ok(last);
    }
    if let Some(t) = parse_time(when) {
        return (0..index.len()).rev().find(|&i| index.seconds(i) <= t).ok_or_else(|| {
            let first =
                chrono::DateTime::from_timestamp(index.seconds(0), 0).map(|t| t.to_rfc3339()).unwrap_or_default();
            when_error(format!("nothing was applied at or before {when}: the first apply is from {first}"), lineage)
        });
    }
    let id =
        lineage.resolve(when).map_err(|_| when_error(format!("`{when}` is neither a time nor a revision"), lineage))?;
    let id = id.to_string();
    if let Some(i) = index.position(&id) {
        return Ok(i);
    }
    // A source commit: the last apply made from it.
    let needle = format!("\"Source-Commit\":\"{id}\"");
    (0..index.len()).rev().find(|&i| index.line(i).contains(&needle)).ok_or_else(|| {
        when_error(
            format!("`{when}` ({}) is not in this stack's lineage, and no apply was made from it", &id[..12]),
            lineage,
        )
    })
}

/// Who last changed a resource, as of some point.
#[derive(Clone, Debug, Serialize)]
pub struct LastApplied {
    pub lineage_commit: String,
    pub time: String,
    pub applied_by: String,
    pub source_commit: Option<String>,
    pub action: Action,
}

#[derive(Clone, Debug, Serialize)]
pub struct ResourceAt {
    pub address: String,
    pub provider: String,
    /// The version it had: registry version, manifest digest, generation...
    pub version: Option<String>,
    pub last_applied: Option<LastApplied>,
    pub record: ResourceRecord,
}

#[derive(Clone, Debug, Serialize)]
pub struct StateAt {
    pub lineage_ref: String,
    pub lineage_commit: String,
    pub time: String,
    pub applied_by: String,
    pub source_commit: Option<String>,
    pub resources: Vec<ResourceAt>,
}

fn source_of(e: &Entry) -> Option<String> {
    e.trailers.get("Source-Commit").filter(|s| *s != "none").cloned()
}

/// Every resource as it stood at `when`, each with the apply that last changed it.
pub fn state_at(lineage: &Lineage, when: &str) -> Result<StateAt, AuditError> {
    let index = lineage.index()?;
    let at = locate(lineage, &index, when)?;
    let head = index.entry(at)?;
    let id = gix::ObjectId::from_hex(head.commit.as_bytes()).map_err(|e| LineageError::Git(e.into()))?;
    let records = lineage.resources_at(id)?;
    // Walk back until every resource has its last apply: as far as the oldest change needs.
    let mut pending: BTreeMap<String, Needle> =
        records.keys().map(|a| (a.to_string(), Needle::new(&a.to_string()))).collect();
    let mut last: BTreeMap<String, LastApplied> = BTreeMap::new();
    for i in (0..=at).rev() {
        if pending.is_empty() {
            break;
        }
        if !pending.values().any(|n| index.mentions(i, n)) {
            continue;
        }
        let e = index.entry(i)?;
        for c in &e.changes {
            if c.status == OutcomeStatus::Applied && pending.remove(&c.address).is_some() {
                last.insert(
                    c.address.clone(),
                    LastApplied {
                        lineage_commit: e.commit.clone(),
                        time: e.time.clone(),
                        applied_by: e.applied_by.clone(),
                        source_commit: source_of(&e),
                        action: c.action,
                    },
                );
            }
        }
    }
    let resources = records
        .into_values()
        .map(|r| ResourceAt {
            address: r.address.to_string(),
            provider: r.provider.clone(),
            version: crate::plan::version_text(&r.outputs),
            last_applied: last.remove(&r.address.to_string()),
            record: r,
        })
        .collect();
    Ok(StateAt {
        lineage_ref: lineage.ref_name.clone(),
        lineage_commit: head.commit.clone(),
        time: head.time.clone(),
        applied_by: head.applied_by.clone(),
        source_commit: source_of(&head),
        resources,
    })
}

/// The lineage graph: resources as nodes (with versions), dependencies as edges labelled with the
/// version of the input recorded when the dependent was applied.
#[derive(Clone, Debug, Serialize)]
pub struct Graph {
    pub lineage_commit: String,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Node {
    pub address: String,
    pub kind: String,
    pub version: Option<String>,
    /// For endpoints: the traffic split as recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic: Option<Value>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// `trained_on` (dataset → model), `serves` (model → endpoint), `produced` (training run →
    /// model, labelled with the run's parameters digest) or `depends_on`.
    pub relation: String,
    /// The input's version when `to` was applied.
    pub version: Option<String>,
}

pub fn graph(state: &StateAt) -> Graph {
    let mut nodes = state
        .resources
        .iter()
        .map(|r| Node {
            address: r.address.clone(),
            kind: r.record.address.kind.section().to_string(),
            version: r.version.clone(),
            traffic: r.record.outputs.get("traffic").cloned(),
        })
        .collect::<Vec<_>>();
    let mut edges = Vec::new();
    // Runs already drawn: one node per run, however many models it produced.
    let mut runs = BTreeSet::new();
    for r in &state.resources {
        // The training run that produced a model: a node of its own, an edge run → model.
        if let Some(run) = r.record.attributes.get(crate::engine::runs::PRODUCED_BY) {
            let from = run_address(run);
            if runs.insert(from.clone()) {
                let name = run.get("name").or_else(|| run.get("run_id")).map(value_text).unwrap_or_default();
                let version = Some(format!("run {name}"));
                nodes.push(Node { address: from.clone(), kind: "run".into(), version, traffic: None });
            }
            let version = run.get("params_digest").map(value_text);
            edges.push(Edge { from, to: r.address.clone(), relation: "produced".into(), version });
        }
        for dep in &r.record.depends_on {
            let relation = relation(dep.kind, r.record.address.kind);
            let version = r.record.inputs.get(&dep.to_string()).filter(|v| !v.is_null()).map(value_text);
            edges.push(Edge { from: dep.to_string(), to: r.address.clone(), relation: relation.into(), version });
        }
    }
    Graph { lineage_commit: state.lineage_commit.clone(), nodes, edges }
}

/// The part of the lineage graph a plan changes: its changed resources and what they depend on or
/// feed, each node labelled with its action, for the pull-request comment.
pub fn plan_graph(plan: &crate::plan::Plan) -> Graph {
    use crate::plan::ChangeTag;
    let changed: BTreeSet<&Address> =
        plan.changes.iter().filter(|c| c.action != Action::NoOp).map(|c| &c.address).collect();
    let mut keep: BTreeSet<&Address> = changed.clone();
    for c in &plan.changes {
        for d in &c.depends_on {
            if changed.contains(&c.address) || changed.contains(d) {
                keep.insert(&c.address);
                keep.insert(d);
            }
        }
    }
    let nodes = plan
        .changes
        .iter()
        .filter(|c| keep.contains(&c.address))
        .map(|c| {
            let to = c.tags.iter().find_map(|t| match t {
                ChangeTag::ModelVersionChange { to_digest: Some(d), .. } => Some(value_text(d)),
                _ => None,
            });
            let version = match (c.action, to) {
                (Action::NoOp, _) => None,
                (a, Some(d)) => Some(format!("{} {} → {}", a.symbol(), a.name(), short(&d))),
                (a, None) => Some(format!("{} {}", a.symbol(), a.name())),
            };
            Node { address: c.address.to_string(), kind: c.address.kind.section().to_string(), version, traffic: None }
        })
        .collect();
    let edges = plan
        .changes
        .iter()
        .filter(|c| keep.contains(&c.address))
        .flat_map(|c| {
            c.depends_on.iter().filter(|d| keep.contains(d)).map(move |d| Edge {
                from: d.to_string(),
                to: c.address.to_string(),
                relation: relation(d.kind, c.address.kind).into(),
                version: None,
            })
        })
        .collect();
    Graph { lineage_commit: plan.lineage.base.clone().unwrap_or_default(), nodes, edges }
}

fn relation(from: mlops_provider_core::Kind, to: mlops_provider_core::Kind) -> &'static str {
    use mlops_provider_core::Kind;
    match (from, to) {
        (Kind::Dataset, Kind::Model) => "trained_on",
        (Kind::Model, Kind::Endpoint) => "serves",
        _ => "depends_on",
    }
}

/// A training run's node: the reference without the file it names (`mlflow://runs/ID`).
/// A run's node in the graph: the reference up to its run id, else the reference and the run it
/// resolved to.
fn run_address(run: &Value) -> String {
    let reference = run.get("reference").and_then(Value::as_str).unwrap_or_default();
    let id = run.get("run_id").and_then(Value::as_str).unwrap_or_default();
    match reference.find(id) {
        Some(at) if !id.is_empty() => reference[..at + id.len()].to_string(),
        // A reference to what a run made (an asset), not to the run: the run it resolved to.
        _ if !id.is_empty() => format!("{reference}@{id}"),
        _ => reference.to_string(),
    }
}

pub(crate) fn value_text(v: &Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
}

/// A digest shortened for a label: `sha256:4d22e7946cf4`.
fn short(v: &str) -> String {
    match v.split_once(':') {
        Some((alg, hex)) if hex.len() > 12 => format!("{alg}:{}", &hex[..12]),
        _ => v.to_string(),
    }
}

fn traffic_text(t: &Value) -> Option<String> {
    let parts: Vec<String> = t
        .as_array()?
        .iter()
        .map(|s| {
            let version = s.get("model_version").or_else(|| s.get("version")).map(value_text).unwrap_or_default();
            let pct = s.get("percent").or_else(|| s.get("weight")).map(value_text).unwrap_or_default();
            format!("v{version} {pct}%")
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

fn node_label(n: &Node) -> String {
    let mut label = n.address.clone();
    // A recorded version has no spaces; a plan's node says what happens to it (`~ update`).
    if let Some(v) = &n.version {
        label.push_str(&format!("<br/>{}", if v.contains(' ') { v.clone() } else { format!("version {}", short(v)) }));
    }
    if let Some(t) = n.traffic.as_ref().and_then(traffic_text) {
        label.push_str(&format!("<br/>traffic {t}"));
    }
    label
}

/// Mermaid (renders in GitHub and GitLab comments).
pub fn mermaid(g: &Graph) -> String {
    let id = |a: &str| a.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    let mut out = String::from("graph LR\n");
    for n in &g.nodes {
        out.push_str(&format!("  {}[\"{}\"]\n", id(&n.address), node_label(n).replace('"', "'")));
    }
    for e in &g.edges {
        let label = match &e.version {
            Some(v) => format!("{} @ {}", e.relation, short(v)),
            None => e.relation.clone(),
        };
        out.push_str(&format!("  {} -->|\"{}\"| {}\n", id(&e.from), label, id(&e.to)));
    }
    out
}

/// Graphviz.
pub fn dot(g: &Graph) -> String {
    let mut out = String::from("digraph lineage {\n  rankdir=LR;\n");
    for n in &g.nodes {
        out.push_str(&format!("  \"{}\" [label=\"{}\"];\n", n.address, node_label(n).replace("<br/>", "\\n")));
    }
    for e in &g.edges {
        let label = match &e.version {
            Some(v) => format!("{} @ {}", e.relation, short(v)),
            None => e.relation.clone(),
        };
        out.push_str(&format!("  \"{}\" -> \"{}\" [label=\"{label}\"];\n", e.from, e.to));
    }
    out.push_str("}\n");
    out
}

/// One line of `mlops audit export`: one change of one apply (schemas/audit.schema.json).
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
#[schemars(title = "mlops audit export line")]
pub struct AuditLine {
    /// RFC 3339.
    pub time: String,
    pub applied_by: String,
    /// The CI run that applied it, when recorded.
    pub ci_run: Option<String>,
    /// The pull or merge request, when recorded.
    pub pull_request: Option<String>,
    /// Who approved it, when the CI exposes it.
    pub approved_by: Option<String>,
    pub source_commit: Option<String>,
    pub environment: String,
    pub address: String,
    /// create, update, replace, delete.
    pub action: String,
    /// applied, failed, skipped.
    pub result: String,
    pub error: Option<String>,
    /// For a failure: `invalid`, `unavailable`, `conflict`, `timeout` or `failed`.
    pub error_kind: Option<String>,
    pub version_before: Option<String>,
    pub version_after: Option<String>,
    /// For a model: the training run that produced the version applied (`mlflow://runs/ID`).
    pub produced_by: Option<String>,
    /// The change tags the plan gave it (model-version-change, data-destroying, ...).
    pub tags: Vec<String>,
    /// The policy gates' verdict, when the plan was checked.
    pub policy: Option<String>,
    /// The lineage commit this line comes from: `git cat-file -p <id>` shows it.
    pub lineage_commit: String,
}

/// The changes between `since` and `until` (times), oldest first. The versions before come from
/// the plan each apply carried (its prior state), so no older commit is read.
pub fn export(
    lineage: &Lineage,
    environment: &str,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<Vec<AuditLine>, AuditError> {
    let index = lineage.index()?;
    let mut out = Vec::new();
    for i in 0..index.len() {
        let t = index.seconds(i);
        if since.is_some_and(|s| t < s) || until.is_some_and(|u| t > u) {
            continue;
        }
        let e = index.entry(i)?;
        let id = gix::ObjectId::from_hex(e.commit.as_bytes()).map_err(|e| LineageError::Git(e.into()))?;
        let plan = lineage.plan_at(id)?;
        for c in &e.changes {
            let planned = plan.as_ref().and_then(|p| p.changes.iter().find(|pc| pc.address.to_string() == c.address));
            let before = planned.and_then(|pc| pc.prior.as_ref()).and_then(|p| crate::plan::version_text(&p.outputs));
            let tags = planned.map(|pc| pc.tags.iter().map(|t| t.name().to_string()).collect()).unwrap_or_default();
            let status = match c.status {
                OutcomeStatus::Applied => "applied",
                OutcomeStatus::Failed => "failed",
                OutcomeStatus::Skipped => "skipped",
            };
            out.push(AuditLine {
                time: e.time.clone(),
                applied_by: e.applied_by.clone(),
                ci_run: e.trailers.get("CI-Run").cloned(),
                pull_request: e.trailers.get("Pull-Request").cloned(),
                approved_by: e.trailers.get("Approved-By").cloned(),
                source_commit: source_of(&e),
                environment: environment.to_string(),
                address: c.address.clone(),
                action: c.action.name().to_string(),
                result: status.to_string(),
                error: c.error.clone(),
                error_kind: c.error_kind.map(|k| k.name().to_string()),
                version_before: before,
                version_after: c.outputs.as_ref().and_then(crate::plan::version_text),
                produced_by: planned
                    .and_then(|pc| pc.desired.as_ref())
                    .and_then(|d| d.get(crate::engine::runs::PRODUCED_BY))
                    .map(run_address),
                tags,
                policy: e.trailers.get("Policy").cloned(),
                lineage_commit: e.commit.clone(),
            });
        }
    }
    Ok(out)
}

pub fn audit_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(AuditLine)).expect("schema serializes")
}

/// CSV with a header row; fields quoted when they need it.
pub fn csv(lines: &[AuditLine]) -> String {
    const COLUMNS: [&str; 18] = [
        "time",
        "applied_by",
        "ci_run",
        "pull_request",
        "approved_by",
        "source_commit",
        "environment",
        "address",
        "action",
        "result",
        "error",
        "error_kind",
        "version_before",
        "version_after",
        "produced_by",
        "tags",
        "policy",
        "lineage_commit",
    ];
    let cell = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
    };
    let mut out = COLUMNS.join(",");
    out.push('\n');
    for l in lines {
        let o = |v: &Option<String>| cell(v.as_deref().unwrap_or(""));
        let row = [
            cell(&l.time),
            cell(&l.applied_by),
            o(&l.ci_run),
            o(&l.pull_request),
            o(&l.approved_by),
            o(&l.source_commit),
            cell(&l.environment),
            cell(&l.address),
            cell(&l.action),
            cell(&l.result),
            o(&l.error),
            o(&l.error_kind),
            o(&l.version_before),
            o(&l.version_after),
            o(&l.produced_by),
            cell(&l.tags.join(" ")),
            o(&l.policy),
            cell(&l.lineage_commit),
        ];
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

/// A commit's records checked against the plan it applied: what it did not change is recorded as
/// its parent recorded it, what it recorded without a change is what the plan saw live, and what
/// it applied is what the plan wanted (the plan's desired state is a no-op on the record).
fn records_against_plan(
    plan: &crate::plan::Plan,
    entry: &Entry,
    before: &BTreeMap<Address, ResourceRecord>,
    after: &BTreeMap<Address, ResourceRecord>,
) -> Vec<String> {
    let mut out = Vec::new();
    let touched: BTreeMap<&str, &crate::lineage::EntryChange> =
        entry.changes.iter().map(|c| (c.address.as_str(), c)).collect();
    let state = |r: &ResourceRecord| crate::plan::RecordedState {
        attributes: r.attributes.clone(),
        outputs: r.outputs.clone(),
    };
    let changes: BTreeMap<&Address, &crate::plan::ResourceChange> =
        plan.changes.iter().map(|c| (&c.address, c)).collect();
    // What a replacement left behind is cleaned by a later apply without a change of its own.
    let without_deposed = |r: &ResourceRecord| {
        let mut r = r.clone();
        r.outputs.remove("deposed");
        r
    };
    for (a, record) in after {
        let change = changes.get(a).copied();
        match touched.get(a.to_string().as_str()) {
            Some(t) if t.status == OutcomeStatus::Applied && t.action != Action::Delete => {
                let Some(desired) = change.and_then(|c| c.desired.as_ref()) else { continue };
                let c = change.expect("desired comes from the change");
                let want = mlops_provider_core::Desired {
                    attributes: desired.clone(),
                    subset: c.subset.clone(),
                    ..Default::default()
                };
                let d = crate::engine::diff::decide(Some(&want), Some(&state(record)));
                if d.action != Action::NoOp {
                    let paths: Vec<&str> = d.attributes.iter().map(|x| x.path.as_str()).collect();
                    out.push(format!("{a}'s record is not what its plan applied ({})", paths.join(", ")));
                }
            }
            Some(_) => {}
            None if change.is_some_and(|c| c.is_to_record()) => {
                let live = change.and_then(|c| c.live.as_deref());
                if live != Some(&state(record)) {
                    out.push(format!("{a}'s record is not the live state its plan recorded"));
                }
            }
            // Refreshed by an apply that recorded anyway: as the plan saw it live.
            None if change.and_then(|c| c.live.as_deref()).is_some_and(|l| *l == state(record)) => {}
            None => {
                if before.get(a).map(without_deposed) != Some(without_deposed(record)) {
                    out.push(format!("{a}'s record changed, but its plan did not change or record it"));
                }
            }
        }
    }
    out
}

/// What `mlops verify` found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Verification {
    /// The commits checked.
    pub commits: usize,
    pub problems: Vec<Problem>,
    /// The commit an earlier clean verify recorded, where this one stopped (`None`: from the root).
    pub resumed_from: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    pub commit: String,
    pub problem: String,
}

/// Checks the chain from the tip, straight from Git (never from the index): every commit parses,
/// its Plan-Digest matches its plan, its records agree with its results, it has at most one
/// parent. With `remote_tip`, that the local history contains the remote's (nothing rewritten).
///
/// Unless `full`, the walk stops at the commit the last clean verify recorded (see
/// [`Lineage::verified_tip`]; one recorded without `signed` does not count when it is asked):
/// a history rewritten below it changes every commit id above, so the walk would never meet it
/// and checks everything. A clean verify records the tip it checked.
pub fn verify(
    lineage: &Lineage,
    remote_tip: Option<&str>,
    signed: bool,
    full: bool,
) -> Result<Verification, AuditError> {
    let mut v = Verification::default();
    let tip = lineage.tip()?;
    let mut next = tip;
    let mut seen_remote = remote_tip.is_none();
    let since = if full { None } else { lineage.verified_tip().filter(|(_, s)| *s || !signed).map(|(c, _)| c) };
    // Each commit's records, read once: as a commit's own, then as its child's parent records.
    let mut held: Option<(gix::ObjectId, BTreeMap<Address, ResourceRecord>)> = None;
    while let Some(id) = next {
        let commit = id.to_string();
        if since.as_deref() == Some(commit.as_str()) {
            v.resumed_from = Some(commit);
            // Only the remote's tip is still to find, below: its ids, not their contents.
            let mut below = Some(id);
            while let Some(b) = below.filter(|_| !seen_remote) {
                seen_remote = remote_tip == Some(b.to_string().as_str());
                below = lineage.parents(b)?.first().copied().filter(|p| lineage.has(*p));
            }
            break;
        }
        v.commits += 1;
        let mut problem = |p: String| v.problems.push(Problem { commit: commit.clone(), problem: p });
        if remote_tip == Some(commit.as_str()) {
            seen_remote = true;
        }
        if signed {
            if let Err(why) = lineage.verify_signature(&commit) {
                let why = why.lines().last().unwrap_or("no signature").to_string();
                problem(format!("is not signed by a key this repository trusts ({why})"));
            }
        }
        let parents = lineage.parents(id)?;
        if parents.len() > 1 {
            problem(format!("has {} parents: lineage is a single line of applies", parents.len()));
        }
        let parent_records = match parents.first().filter(|p| lineage.has(**p)) {
            Some(p) => lineage.resources_at(*p).ok().map(|r| (*p, r)),
            None => Some((id, BTreeMap::new())),
        };
        match lineage.entry(id) {
            Err(e) => problem(format!("cannot be read: {e}")),
            Ok(entry) => {
                let plan = match lineage.plan_at(id) {
                    Ok(Some(plan)) => {
                        if entry.trailers.get("Plan-Digest") != Some(&plan.digest()) {
                            problem(format!(
                                "Plan-Digest {} does not match its plan.json ({})",
                                entry.trailers.get("Plan-Digest").map(String::as_str).unwrap_or("missing"),
                                plan.digest()
                            ));
                        }
                        Some(plan)
                    }
                    Ok(None) => {
                        problem("has no plan.json".into());
                        None
                    }
                    Err(e) => {
                        problem(format!("its plan.json cannot be read: {e}"));
                        None
                    }
                };
                let records = match held.take() {
                    Some((at, r)) if at == id => Ok(r),
                    _ => lineage.resources_at(id),
                };
                match records {
                    Err(e) => problem(format!("its resource records cannot be read: {e}")),
                    Ok(records) => {
                        if let (Some(plan), Some((_, before))) = (&plan, &parent_records) {
                            for p in records_against_plan(plan, &entry, before, &records) {
                                problem(p);
                            }
                        }
                        for c in entry.changes.iter().filter(|c| c.status == OutcomeStatus::Applied) {
                            let Ok(a) = c.address.parse::<Address>() else {
                                problem(format!("its result names `{}`, which is no address", c.address));
                                continue;
                            };
                            let held = records.contains_key(&a);
                            if c.action == Action::Delete && held {
                                problem(format!("{} was deleted, but its record is still there", c.address));
                            }
                            if c.action != Action::Delete && !held {
                                problem(format!("{} was applied, but has no record", c.address));
                            }
                        }
                    }
                }
            }
        }
        held = parent_records.filter(|(p, _)| *p != id);
        next = parents.first().copied().filter(|p| lineage.has(*p));
    }
    // The index is a cache, but one that was edited is worth an auditor's notice.
    let index = lineage.index()?;
    if index.distrusted > 0 {
        v.problems.push(Problem {
            commit: String::new(),
            problem: format!(
                "the lineage index had {} line(s) that do not match Git (edited, duplicated or forged): rebuilt from Git",
                index.distrusted
            ),
        });
    }
    if !seen_remote {
        v.problems.push(Problem {
            commit: remote_tip.unwrap_or_default().to_string(),
            problem: "the remote's lineage tip is not in the local history: one of them was rewritten".into(),
        });
    }
    if let Some(tip) = tip.filter(|_| v.problems.is_empty()) {
        lineage.record_verified(&tip.to_string(), signed);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_ago_read_as_git_writes_them() {
        let now = 1_000_000_000;
        assert_eq!(parse_time_at("2.hours.ago", now), Some(now - 7_200));
        assert_eq!(parse_time_at("1 day ago", now), Some(now - 86_400));
        assert_eq!(parse_time_at("3 weeks ago", now), Some(now - 3 * 604_800));
        assert_eq!(parse_time_at("yesterday", now), Some(now - 86_400));
        assert_eq!(parse_time_at("90.minutes.ago", now), Some(now - 5_400));
        assert_eq!(parse_time_at("2026-05-01", now), Some(1_777_679_999));
        for no in ["2.fortnights.ago", "hours.ago", "2 hours", "ago", "-1.x.ago", "lineage~3"] {
            assert_eq!(parse_time_at(no, now), None, "{no}");
        }
    }
}
