//! Attribute-level differences and the choice of action. Pure: no I/O.

use std::collections::BTreeSet;

use mlops_provider_core::{Attributes, Desired, Value, ValuePath};

use crate::plan::{Action, AttributeChange, RecordedState};

/// Differences from `before` to `after`. Maps are compared key by key so a dataset's changed
/// file shows as `files["a.csv"]`; lists and scalars are compared whole. With `after_keys_only`,
/// attributes `after` does not mention are ignored (computed ones the spec does not set).
pub fn diff_attributes(before: &Attributes, after: &Attributes, after_keys_only: bool) -> Vec<AttributeChange> {
    let mut out = Vec::new();
    let keys: BTreeSet<&String> =
        if after_keys_only { after.keys().collect() } else { before.keys().chain(after.keys()).collect() };
    for k in keys {
        diff_value(&ValuePath::key(k.clone()), before.get(k), after.get(k), &mut out);
    }
    out
}

fn diff_value(path: &ValuePath, before: Option<&Value>, after: Option<&Value>, out: &mut Vec<AttributeChange>) {
    match (before, after) {
        (Some(a), Some(b)) if a == b => {}
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                diff_value(&path.join(k.clone()), a.get(k), b.get(k), out);
            }
        }
        (None, None) => {}
        (a, b) => out.push(AttributeChange {
            path: path.to_string(),
            before: a.cloned(),
            after: b.cloned(),
            forces_replacement: false,
        }),
    }
}

/// The top-level attribute a change path belongs to: `files["a"]` → `files`.
pub fn top_attribute(path: &str) -> &str {
    let end = path.find(['.', '[']).unwrap_or(path.len());
    &path[..end]
}

/// The decision for one resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub action: Action,
    pub attributes: Vec<AttributeChange>,
    pub replace_reasons: Vec<String>,
    pub data_destroying: bool,
}

/// Desired vs live; `None` desired means the resource left the spec.
pub fn decide(desired: Option<&Desired>, live: Option<&RecordedState>) -> Decision {
    match (desired, live) {
        (None, live) => Decision {
            action: Action::Delete,
            attributes: live.map(|l| diff_attributes(&l.attributes, &Attributes::new(), false)).unwrap_or_default(),
            replace_reasons: vec![],
            data_destroying: false,
        },
        (Some(d), None) => Decision {
            action: Action::Create,
            attributes: diff_attributes(&Attributes::new(), &d.attributes, true),
            replace_reasons: vec![],
            data_destroying: false,
        },
        (Some(d), Some(l)) => {
            let mut live = l.attributes.clone();
            for key in &d.subset {
                if let (Some(Value::Object(have)), Some(Value::Object(want))) =
                    (live.get_mut(key), d.attributes.get(key))
                {
                    have.retain(|k, _| want.contains_key(k));
                }
            }
            let mut attributes = diff_attributes(&live, &d.attributes, true);
            let mut reasons: Vec<String> = Vec::new();
            for a in attributes.iter_mut() {
                let top = top_attribute(&a.path);
                if d.force_new.contains(top) {
                    a.forces_replacement = true;
                    if !reasons.iter().any(|r| r == top) {
                        reasons.push(top.to_string());
                    }
                }
            }
            let action = if attributes.is_empty() {
                Action::NoOp
            } else if reasons.is_empty() {
                Action::Update
            } else {
                Action::Replace
            };
            Decision {
                data_destroying: action == Action::Replace && d.replace_destroys_data,
                action,
                attributes,
                replace_reasons: reasons,
            }
        }
    }
}

/// Drift: what changed between the last apply (prior) and now (live), over the prior's attributes.
pub fn drift(prior: &RecordedState, live: &RecordedState) -> Vec<AttributeChange> {
    diff_attributes(&prior.attributes, &live.attributes, false)
        .into_iter()
        .filter(|c| prior.attributes.contains_key(top_attribute(&c.path)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(v: Value) -> Attributes {
        v.as_object().unwrap().clone().into_iter().collect()
    }

    #[test]
    fn equal_is_noop() {
        let d = Desired { attributes: attrs(json!({"a": 1, "m": {"x": "1"}})), ..Default::default() };
        let l = RecordedState { attributes: d.attributes.clone(), outputs: Attributes::new() };
        assert_eq!(decide(Some(&d), Some(&l)).action, Action::NoOp);
    }

    #[test]
    fn nested_map_changes_are_per_key_and_force_new_replaces() {
        let mut d =
            Desired { attributes: attrs(json!({"files": {"a": "1", "b": "2"}, "t": "x"})), ..Default::default() };
        let l = RecordedState {
            attributes: attrs(json!({"files": {"a": "1", "c": "3"}, "t": "y", "extra": 1})),
            outputs: Attributes::new(),
        };
        let dec = decide(Some(&d), Some(&l));
        assert_eq!(dec.action, Action::Update);
        let paths: Vec<&str> = dec.attributes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["files.b", "files.c", "t"]);
        d.force_new.insert("t".into());
        let dec = decide(Some(&d), Some(&l));
        assert_eq!(dec.action, Action::Replace);
        assert_eq!(dec.replace_reasons, ["t"]);
    }

    #[test]
    fn top_attribute_of_paths() {
        assert_eq!(top_attribute("files[\"a.csv\"]"), "files");
        assert_eq!(top_attribute("traffic.canary_percent"), "traffic");
        assert_eq!(top_attribute("image"), "image");
    }
}
