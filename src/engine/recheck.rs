//! A saved plan is a claim, not an instruction: at apply (and `check`) the plan is made again
//! from the spec, the lineage tip and the live reads, and every field that decides what the apply
//! does or what lineage and policies believe must come out the same. Pure: no I/O.

use std::collections::BTreeMap;

use mlops_provider_core::Address;
use serde::Serialize;

use crate::plan::{Plan, ResourceChange};

/// Why `saved` is not the plan the world gives now (`fresh`), one line per differing field;
/// empty when they agree. Times, the mlops version and the dirty flag are not compared.
pub fn differences(saved: &Plan, fresh: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = |name: &str, a: &dyn Erased, b: &dyn Erased| differ(&mut out, "", name, a, b);
    field("lineage.ref", &saved.lineage.ref_name, &fresh.lineage.ref_name);
    field("lineage.base", &saved.lineage.base, &fresh.lineage.base);
    field("targets", &saved.targets, &fresh.targets);
    field("promotion", &saved.promotion, &fresh.promotion);
    field("summary", &saved.summary, &fresh.summary);
    field("drift", &saved.drift, &fresh.drift);
    let theirs: BTreeMap<&Address, &ResourceChange> = fresh.changes.iter().map(|c| (&c.address, c)).collect();
    let ours: BTreeMap<&Address, &ResourceChange> = saved.changes.iter().map(|c| (&c.address, c)).collect();
    for (a, c) in &theirs {
        if !ours.contains_key(a) {
            out.push(format!(
                "the plan file leaves out {a}, which the spec, lineage and live state give as {}",
                c.action.name()
            ));
        }
    }
    for (a, c) in &ours {
        let Some(f) = theirs.get(a) else {
            out.push(format!(
                "the plan file has {a} ({}), which the spec, lineage and live state do not give",
                c.action.name()
            ));
            continue;
        };
        let at = format!("{a}: ");
        let mut field = |name: &str, x: &dyn Erased, y: &dyn Erased| differ(&mut out, &at, name, x, y);
        field("action", &c.action, &f.action);
        field("provider", &c.provider, &f.provider);
        field("data_destroying", &c.data_destroying, &f.data_destroying);
        field("tags", &c.tags, &f.tags);
        field("depends_on", &c.depends_on, &f.depends_on);
        field("replace_reasons", &c.replace_reasons, &f.replace_reasons);
        field("create_before_destroy", &c.create_before_destroy, &f.create_before_destroy);
        field("force_new", &c.force_new, &f.force_new);
        field("subset", &c.subset, &f.subset);
        field("attributes", &c.attributes, &f.attributes);
        field("desired", &c.desired, &f.desired);
        field("prior", &c.prior, &f.prior);
        field("live", &c.live, &f.live);
        field("live_fingerprint", &c.live_fingerprint, &f.live_fingerprint);
    }
    out
}

/// One line in `out` when the plan file's field `name` (of the change `at` names, if any) is not
/// what the world gives.
fn differ(out: &mut Vec<String>, at: &str, name: &str, saved: &dyn Erased, fresh: &dyn Erased) {
    if saved.json() != fresh.json() {
        out.push(format!(
            "{at}the plan file's {name} is {}, but the spec, lineage and live state give {}",
            saved.short(),
            fresh.short()
        ));
    }
}

/// Any serializable field, compared and shown by its JSON.
trait Erased {
    fn json(&self) -> serde_json::Value;
    /// The JSON, cut to a line a person reads.
    fn short(&self) -> String {
        let s = self.json().to_string();
        if s.chars().count() > 120 {
            format!("{}…", s.chars().take(120).collect::<String>())
        } else {
            format!("`{s}`")
        }
    }
}

impl<T: Serialize> Erased for T {
    fn json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, LineageBase, SourceInfo, Summary};

    fn plan() -> Plan {
        Plan {
            format_version: 1,
            mlops_version: "0".into(),
            project: "p".into(),
            environment: "default".into(),
            created_at: "t".into(),
            source: SourceInfo::default(),
            lineage: LineageBase { ref_name: "refs/mlops/lineage/p/default".into(), base: None },
            targets: vec![],
            promotion: None,
            summary: Summary { update: 1, ..Summary::default() },
            changes: vec![ResourceChange::for_test("datasets.d", Action::Update)],
            drift: vec![],
        }
    }

    /// Every leaf and node of `v`, by JSON pointer.
    fn pointers(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
        out.push(at.clone());
        match v {
            serde_json::Value::Object(m) => m.iter().for_each(|(k, c)| pointers(c, format!("{at}/{k}"), out)),
            serde_json::Value::Array(a) => {
                a.iter().enumerate().for_each(|(i, c)| pointers(c, format!("{at}/{i}"), out))
            }
            _ => {}
        }
    }

    /// Fields the recheck leaves to the freshness check (spec digest, provider blocks, format,
    /// stack) or that say nothing about what happens (times, versions, the dirty flag).
    const CHECKED_ELSEWHERE: [&str; 8] = [
        "/format_version",
        "/mlops_version",
        "/project",
        "/environment",
        "/created_at",
        "/source",
        "/changes/0/provider_config",
        "/changes/1/provider_config",
    ];

    proptest::proptest! {
        /// Every edit of a saved plan that still loads is refused, or touches only what other
        /// checks own: none is believed.
        #[test]
        fn every_mutation_of_a_saved_plan_is_refused_or_checked_elsewhere(pick in 0usize..10_000, value in 0u8..7) {
            let mut fresh = plan();
            let mut second = fresh.changes[0].clone();
            second.address = "endpoints.e".parse().unwrap();
            second.action = Action::Create;
            second.depends_on = vec!["datasets.d".parse().unwrap()];
            second.desired = Some([("instance_count".to_string(), serde_json::json!(2))].into_iter().collect());
            second.tags = vec![crate::plan::ChangeTag::LongRunning { expected_wait_secs: 60 }];
            fresh.changes.push(second);
            fresh.summary = Plan::summarize(&fresh.changes, &fresh.drift);
            let json = serde_json::to_value(&fresh).unwrap();
            let mut all = Vec::new();
            pointers(&json, String::new(), &mut all);
            let at = &all[pick % all.len()];
            let replacement = match value {
                0 => serde_json::Value::Null,
                1 => serde_json::json!(true),
                2 => serde_json::json!(0),
                3 => serde_json::json!("delete"),
                4 => serde_json::json!([]),
                5 => serde_json::json!({}),
                _ => serde_json::json!("datasets.d"),
            };
            let mut edited = json.clone();
            match edited.pointer_mut(at) {
                Some(slot) => *slot = replacement,
                None => return Ok(()),
            }
            if edited == json {
                return Ok(());
            }
            let Ok(saved) = serde_json::from_value::<Plan>(edited.clone()) else { return Ok(()) };
            // Loads, but serializes back the same: the edit had no effect on the plan value.
            if serde_json::to_value(&saved).unwrap() == json {
                return Ok(());
            }
            let owned_elsewhere = CHECKED_ELSEWHERE.iter().any(|p| at.starts_with(p));
            proptest::prop_assert!(
                !differences(&saved, &fresh).is_empty() || owned_elsewhere,
                "the edit at {at} was believed"
            );
        }
    }

    #[test]
    fn equal_plans_agree_whatever_their_times() {
        let mut other = plan();
        other.created_at = "later".into();
        other.source.dirty = true;
        assert!(differences(&plan(), &other).is_empty());
    }

    #[test]
    fn an_edited_action_is_named() {
        let mut saved = plan();
        saved.changes[0].action = Action::Delete;
        let d = differences(&saved, &plan());
        assert_eq!(
            d,
            [
                "datasets.d: the plan file's action is `\"delete\"`, but the spec, lineage and live state give `\"update\"`"
            ]
        );
    }

    #[test]
    fn a_dropped_change_and_a_zeroed_summary_are_named() {
        let mut saved = plan();
        saved.changes.clear();
        saved.summary = Summary::default();
        let d = differences(&saved, &plan());
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].starts_with("the plan file's summary"), "{d:?}");
        assert!(d[1].contains("leaves out datasets.d"), "{d:?}");
    }
}
