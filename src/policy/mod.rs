//! Policy gates, evaluated on a plan: what the apply would leave in place must pass them. The
//! built-in rules of `policies:` here; the team's own in Rego ([`rego`]).

use mlops_provider_core::{Address, Kind, Value};
use serde::Serialize;

use crate::plan::{Action, Plan, ResourceChange};
use crate::spec::model::PolicyRules;

pub mod rego;

/// What the policies say of a plan: violations block it (`mlops check` exits 3), warnings do not.
#[derive(Debug, Default)]
pub struct Verdict {
    pub violations: Vec<Violation>,
    pub warnings: Vec<Violation>,
}

/// The Rego policies the spec has: `policies.rego`, else a `policy/` folder beside the spec if
/// there is one; plus `more` folders or files (e.g. `mlops check --policy DIR`).
pub fn rego_sources(rules: &PolicyRules, spec_dir: &std::path::Path, more: &[String]) -> Vec<String> {
    let mut paths = rules
        .rego
        .clone()
        .unwrap_or_else(|| if spec_dir.join("policy").is_dir() { vec!["policy".to_string()] } else { vec![] });
    paths.extend(more.iter().cloned());
    paths
}

/// The built-in rules, and the Rego policies of `sources` ([`rego_sources`]) over the plan JSON
/// with `state` (the lineage records by address) as `data.mlops.state`; `plan_json` is the plan
/// as the caller already serialized it, if it did. A Rego message naming an address of the plan
/// is located at that resource.
pub fn check<'a>(
    plan: &Plan,
    plan_json: Option<&str>,
    rules: &PolicyRules,
    spec_dir: &std::path::Path,
    sources: &[String],
    state: &crate::lineage::State,
    body: &dyn Fn(&Address) -> Option<&'a Value>,
) -> Result<Verdict, rego::RegoError> {
    let mut verdict = Verdict { violations: evaluate(plan, rules, body)?, warnings: vec![] };
    if sources.is_empty() {
        return Ok(verdict);
    }
    let files = rego::files(spec_dir, sources)?;
    let packages = rules.rego_packages.clone().unwrap_or_else(|| vec!["main".to_string()]);
    let records: serde_json::Map<String, Value> = state
        .resources
        .iter()
        .map(|(a, r)| (a.to_string(), serde_json::to_value(r).expect("records serialize")))
        .collect();
    let input = match plan_json {
        Some(json) => std::borrow::Cow::Borrowed(json),
        None => std::borrow::Cow::Owned(plan.to_json()),
    };
    for f in rego::evaluate(&files, &packages, &input, Value::Object(records))? {
        // The longest address of the plan the message names, if any.
        let address = plan
            .changes
            .iter()
            .map(|c| &c.address)
            .filter(|a| f.message.contains(&a.to_string()))
            .max_by_key(|a| a.to_string().len())
            .cloned();
        let v = Violation { code: "policy::rego", address, message: format!("{}: {}", f.rule, f.message), field: None };
        if f.warn { verdict.warnings.push(v) } else { verdict.violations.push(v) }
    }
    Ok(verdict)
}

/// One rule a planned change breaks.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Violation {
    /// Stable code, e.g. `policy::instance_type`; `policy::rego` for the team's Rego rules.
    pub code: &'static str,
    /// The resource it is about (a Rego message that names none is about the plan).
    #[serde(serialize_with = "crate::policy::as_string")]
    pub address: Option<Address>,
    pub message: String,
    /// Where in the resource's spec body the offending value is (for the diagnostic's label).
    pub field: Option<String>,
}

fn as_string<S: serde::Serializer>(a: &Option<Address>, s: S) -> Result<S::Ok, S::Error> {
    match a {
        Some(a) => s.collect_str(a),
        None => s.serialize_none(),
    }
}

fn desired<'a>(c: &'a ResourceChange, key: &str) -> Option<&'a Value> {
    c.desired.as_ref().and_then(|d| d.get(key))
}

/// The built-in rules, a Rego library bundled with mlops (src/policy/builtin.rego), evaluated by
/// regorus like the team's own rules.
const BUILTIN: &str = include_str!("builtin.rego");

/// The codes the bundled library reports.
const CODES: [&str; 8] = [
    "policy::data_destroying",
    "policy::instance_type",
    "policy::replicas",
    "policy::rollout_required",
    "policy::unapproved_model",
    "policy::unversioned_dataset",
    "policy::unsigned_model",
    "policy::missing_labels",
];

/// Every violation of `rules` by the resources the plan leaves in place (deletes excepted), in
/// the plan's order. `body` gives a resource's body as the spec declares it.
pub fn evaluate<'a>(
    plan: &Plan,
    rules: &PolicyRules,
    body: &dyn Fn(&Address) -> Option<&'a Value>,
) -> Result<Vec<Violation>, rego::RegoError> {
    let mut set = serde_json::to_value(rules).expect("rules serialize");
    if let Some(o) = set.as_object_mut() {
        o.remove("rego");
        o.remove("rego_packages");
        if o.is_empty() {
            return Ok(vec![]);
        }
    }
    let mut changes = Vec::new();
    let mut served: Vec<Address> = Vec::new();
    for (i, c) in plan.changes.iter().enumerate().filter(|(_, c)| c.action != Action::Delete) {
        let b = body(&c.address).cloned().unwrap_or_else(|| serde_json::json!({}));
        if c.address.kind == Kind::Endpoint {
            let variants = b.get("variants").and_then(Value::as_array).into_iter().flatten();
            served.extend(
                std::iter::once(&b)
                    .chain(variants)
                    .filter_map(|v| v.get("model").and_then(Value::as_str))
                    .filter_map(|m| m.parse().ok()),
            );
        }
        let mut change = serde_json::json!({
            "i": i,
            "address": c.address.to_string(),
            "kind": c.address.kind.section(),
            "verb": c.action.verb(),
            "data_destroying": c.data_destroying,
            "body": b,
        });
        if let Some(t) = desired(c, "instance_type") {
            change["instance_type"] = t.clone();
        }
        changes.push(change);
    }
    // A served model's registry approval: as planned, else as the spec declares it.
    let approvals: serde_json::Map<String, Value> = served
        .iter()
        .filter_map(|m| {
            let planned = plan
                .change(m)
                .and_then(|mc| mc.desired.as_ref())
                .and_then(|d| d.get("registry"))
                .and_then(|r| r.get("approval"))
                .and_then(Value::as_str);
            let approval =
                planned.or_else(|| body(m).and_then(|b| b.pointer("/registry/approval")).and_then(Value::as_str));
            approval.map(|a| (m.to_string(), Value::from(a)))
        })
        .collect();
    let input = serde_json::json!({
        "environment": plan.environment,
        "rules": set,
        "changes": changes,
        "approvals": approvals,
    });
    let mut found =
        rego::evaluate_library("builtin.rego", BUILTIN, "data.mlops.builtin.violation", &input.to_string())?;
    let key = |v: &Value| ["i", "rank", "j"].map(|k| v.get(k).and_then(Value::as_u64).unwrap_or(0));
    found.sort_by_key(key);
    Ok(found
        .into_iter()
        .filter_map(|v| {
            let code = CODES.into_iter().find(|c| v.get("code").and_then(Value::as_str) == Some(*c))?;
            Some(Violation {
                code,
                address: v.get("address").and_then(Value::as_str).and_then(|a| a.parse().ok()),
                message: v.get("msg").and_then(Value::as_str).unwrap_or_default().to_string(),
                field: v.get("field").and_then(Value::as_str).map(str::to_string),
            })
        })
        .collect())
}
