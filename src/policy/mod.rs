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
    let mut verdict = Verdict { violations: evaluate(plan, rules, body), warnings: vec![] };
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

/// Every violation of `rules` by the resources the plan leaves in place (deletes excepted).
/// `body` gives a resource's body as the spec declares it.
pub fn evaluate<'a>(plan: &Plan, rules: &PolicyRules, body: &dyn Fn(&Address) -> Option<&'a Value>) -> Vec<Violation> {
    let mut out = Vec::new();
    for c in plan.changes.iter().filter(|c| c.action != Action::Delete) {
        let a = &c.address;
        let v = |code, message: String, field: Option<&str>| Violation {
            code,
            address: Some(a.clone()),
            message,
            field: field.map(str::to_string),
        };
        if rules.forbid_data_destroying == Some(true) && c.data_destroying {
            out.push(v(
                "policy::data_destroying",
                format!("{a} would destroy stored data ({})", c.action.verb()),
                None,
            ));
        }
        if a.kind == Kind::Endpoint {
            // What the spec declares, whichever provider serves it: the endpoint itself, or each
            // of its production variants (which default to the endpoint's values).
            let b = body(a);
            let declared = b.and_then(|b| b.get("variants")).and_then(Value::as_array).is_some_and(|v| !v.is_empty());
            // A variant's value, with where it is written: `variants.N.KEY`, or the endpoint's `KEY`.
            let field = |i: usize, v: &Value, k: &str| -> Option<(Value, String)> {
                match v.get(k) {
                    Some(x) if declared => Some((x.clone(), format!("variants.{i}.{k}"))),
                    _ => b.and_then(|b| b.get(k)).map(|x| (x.clone(), k.to_string())),
                }
            };
            let variants: Vec<Value> = b
                .and_then(|b| b.get("variants"))
                .and_then(Value::as_array)
                .filter(|v| !v.is_empty())
                .cloned()
                .unwrap_or_else(|| vec![Value::Object(Default::default())]);
            if let Some(allowed) = &rules.allowed_instance_types {
                let mut types: Vec<(String, String)> = variants
                    .iter()
                    .enumerate()
                    .filter_map(|(i, var)| field(i, var, "instance_type"))
                    .filter_map(|(t, at)| Some((t.as_str()?.to_string(), at)))
                    .collect();
                if types.is_empty() {
                    // The provider's default (e.g. local's), if it has one.
                    types.extend(
                        desired(c, "instance_type")
                            .and_then(Value::as_str)
                            .map(|t| (t.to_string(), "instance_type".into())),
                    );
                }
                types.dedup();
                for (it, at) in types.iter().filter(|(it, _)| !allowed.contains(it)) {
                    out.push(v(
                        "policy::instance_type",
                        format!("{a} uses instance type `{it}`; allowed: {}", allowed.join(", ")),
                        Some(at),
                    ));
                }
            }
            if let Some(bounds) = &rules.replicas {
                for (i, var) in variants.iter().enumerate() {
                    let (n, at) = field(i, var, "instance_count")
                        .map(|(n, at)| (n.as_u64().unwrap_or(1), at))
                        .unwrap_or((1, "instance_count".into()));
                    let low = bounds.min.is_some_and(|m| n < m as u64);
                    let high = bounds.max.is_some_and(|m| n > m as u64);
                    if low || high {
                        out.push(v(
                            "policy::replicas",
                            format!(
                                "{a} has {n} replica(s); allowed: {}..={}",
                                bounds.min.map(|m| m.to_string()).unwrap_or_default(),
                                bounds.max.map(|m| m.to_string()).unwrap_or_default()
                            ),
                            Some(&at),
                        ));
                    }
                }
            }
            let rollout_required = rules.require_rollout_for.as_ref().is_some_and(|e| e.contains(&plan.environment));
            if rollout_required && b.and_then(|b| b.get("rollout")).is_none() {
                out.push(v(
                    "policy::rollout_required",
                    format!(
                        "{a} has no `rollout:`, which environment `{}` requires: a new model would take all the traffic at once, unwatched",
                        plan.environment
                    ),
                    None,
                ));
            }
            if rules.require_approved_models == Some(true) {
                let mut models: Vec<(Option<Address>, String)> = variants
                    .iter()
                    .enumerate()
                    .map(|(i, var)| match field(i, var, "model") {
                        Some((m, at)) => (m.as_str().and_then(|m| m.parse().ok()), at),
                        None => (None, "model".into()),
                    })
                    .collect();
                models.dedup_by(|x, y| x.0 == y.0);
                for (model, at) in models {
                    let approval = model.as_ref().and_then(|m| {
                        plan.change(m)
                            .and_then(|mc| mc.desired.as_ref())
                            .and_then(|d| d.get("registry"))
                            .and_then(|r| r.get("approval"))
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .or_else(|| {
                                body(m)
                                    .and_then(|b| b.pointer("/registry/approval"))
                                    .and_then(Value::as_str)
                                    .map(str::to_string)
                            })
                    });
                    if approval.as_deref() != Some("Approved") {
                        out.push(v(
                            "policy::unapproved_model",
                            format!(
                                "{a} serves {}, whose registry approval is {}",
                                model.map(|m| m.to_string()).unwrap_or_else(|| "no model".into()),
                                approval.unwrap_or_else(|| "not set".into())
                            ),
                            Some(&at),
                        ));
                    }
                }
            }
        }
        let unversioned = a.kind == Kind::Dataset && body(a).and_then(|b| b.get("source")).is_none();
        if rules.require_versioned_datasets == Some(true) && unversioned {
            out.push(v(
                "policy::unversioned_dataset",
                format!("{a} is not versioned by content: give it a `source` folder"),
                None,
            ));
        }
        let unsigned = a.kind == Kind::Model && body(a).and_then(|b| b.get("signature")).is_none();
        if rules.require_signed_models == Some(true) && unsigned {
            out.push(v(
                "policy::unsigned_model",
                format!("{a} is not signed: give it a `signature:` (a model-signing bundle and its key)"),
                None,
            ));
        }
        if let Some(required) = &rules.required_labels {
            let labels = body(a).and_then(|b| b.get("labels")).and_then(Value::as_object);
            let missing: Vec<&str> =
                required.iter().filter(|l| !labels.is_some_and(|m| m.contains_key(*l))).map(String::as_str).collect();
            if !missing.is_empty() {
                out.push(v(
                    "policy::missing_labels",
                    format!("{a} is missing the required label(s) {}", missing.join(", ")),
                    labels.map(|_| "labels"),
                ));
            }
        }
    }
    out
}
