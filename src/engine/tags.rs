//! ML-aware change tags: what a reviewer of a long plan must not miss. Pure.

use mlops_provider_core::{Desired, Kind, Value};

use crate::engine::diff::top_attribute;
use crate::plan::{Action, ChangeTag, ResourceChange};

/// The last segment of an attribute path: `deployment.spec.replicas` → `replicas`.
fn last_segment(path: &str) -> &str {
    path.rsplit(['.', '[']).next().unwrap_or(path).trim_end_matches(']').trim_matches('"')
}

/// Attributes that identify the model bytes (or where they are: a model whose artifact moved to
/// another location is another version of it).
const MODEL_BYTES: [&str; 4] = ["artifact_digest", "model_digest", "generation", "artifact"];

/// The tags of a change. `traffic`: the attributes (or last segments of attribute paths) whose
/// change moves serving traffic, as the change's provider names them.
pub fn tags(change: &ResourceChange, desired: Option<&Desired>, traffic: &[&str]) -> Vec<ChangeTag> {
    let mut out = Vec::new();
    if change.action == Action::NoOp {
        return out;
    }
    if change.data_destroying {
        let reason = match change.action {
            Action::Delete => format!("deleting {} destroys its stored records", change.address),
            _ => format!(
                "replacing {} (forced by {}) destroys its stored records",
                change.address,
                change.replace_reasons.join(", ")
            ),
        };
        out.push(ChangeTag::DataDestroying { reason });
    }
    if change.address.kind == Kind::Endpoint && change.action != Action::Create {
        let moves_traffic = |p: &str| traffic.contains(&top_attribute(p)) || traffic.contains(&last_segment(p));
        for a in change.attributes.iter().filter(|a| moves_traffic(&a.path)) {
            out.push(ChangeTag::TrafficShift {
                attribute: a.path.clone(),
                before: a.before.clone(),
                after: a.after.clone(),
            });
        }
    }
    // A model reference that names another version now: the versions it names, before and after.
    let reference_changed = change.attributes.iter().any(|a| top_attribute(&a.path) == crate::engine::ARTIFACT_REF);
    let before = change.live.as_ref().and_then(|l| l.attributes.get(crate::engine::ARTIFACT_REF));
    let now = change.desired.as_ref().and_then(|d| d.get(crate::engine::ARTIFACT_REF)).filter(|_| reference_changed);
    let moved = match (before, now) {
        (Some(b), Some(n)) if b.get("version") != n.get("version") => Some((b, n)),
        _ => None,
    };
    // The bytes' digest as the provider pinned them (an object's checksum, a folder's manifest).
    let digest = |attrs: Option<&mlops_provider_core::Attributes>| -> Option<Value> {
        attrs.and_then(|m| m.get("artifact_digest").or_else(|| m.get("model_digest"))).cloned()
    };
    if let Some((before, now)) = moved {
        // A reference's own digest where its registry knows one, else the pinned bytes'.
        out.push(ChangeTag::ModelVersionChange {
            from_version: before.get("version").cloned(),
            from_digest: before
                .get("digest")
                .cloned()
                .filter(|d| !d.is_null())
                .or_else(|| digest(change.live.as_ref().map(|l| &l.attributes))),
            to_digest: now.get("digest").cloned().filter(|d| !d.is_null()).or_else(|| digest(change.desired.as_ref())),
            reference: now.get("reference").and_then(Value::as_str).map(str::to_string),
            to_version: now.get("version").cloned(),
        });
    } else if matches!(change.address.kind, Kind::Model | Kind::Endpoint) {
        if let Some(a) = change.attributes.iter().find(|a| MODEL_BYTES.contains(&a.path.as_str()) && a.before.is_some())
        {
            let outputs = change.live.as_ref().map(|l| &l.outputs);
            let from_version = outputs.and_then(crate::plan::version_in).cloned();
            out.push(ChangeTag::ModelVersionChange {
                from_version,
                from_digest: digest(change.live.as_ref().map(|l| &l.attributes)).or_else(|| a.before.clone()),
                to_digest: digest(change.desired.as_ref()).or_else(|| a.after.clone()),
                reference: None,
                to_version: None,
            });
        }
    }
    // The same image as written, another manifest behind it now.
    let image_ref = |attrs: Option<&mlops_provider_core::Attributes>| {
        attrs.and_then(|a| a.get(crate::engine::images::IMAGE_REF)).cloned()
    };
    if let (Some(before), Some(now)) =
        (image_ref(change.live.as_ref().map(|l| &l.attributes)), image_ref(change.desired.as_ref()))
    {
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        if s(&before, "image") == s(&now, "image") && s(&before, "digest") != s(&now, "digest") {
            out.push(ChangeTag::ImageMoved {
                image: s(&now, "image"),
                from_digest: s(&before, "digest"),
                to_digest: s(&now, "digest"),
            });
        }
    }
    if let Some(secs) = desired.and_then(|d| d.expected_wait_secs) {
        out.push(ChangeTag::LongRunning { expected_wait_secs: secs });
    }
    for detail in desired.map(|d| d.conflicts.as_slice()).unwrap_or_default() {
        out.push(ChangeTag::Conflict { detail: detail.clone() });
    }
    out
}

/// The `rollout` tag of an endpoint change that moves it to another model (one of the
/// provider's `rolled` attributes changes) when its spec declares a `rollout:`.
pub fn rollout(
    change: &ResourceChange,
    rollout: Option<&mlops_provider_core::rollout::Rollout>,
    rolled: &[&str],
) -> Option<ChangeTag> {
    let r = rollout?;
    let moves = change.action == Action::Update
        && change.address.kind == Kind::Endpoint
        && change
            .attributes
            .iter()
            .any(|a| rolled.contains(&top_attribute(&a.path)) || rolled.contains(&last_segment(&a.path)));
    moves.then(|| ChangeTag::Rollout {
        strategy: r.strategy.name().to_string(),
        steps: r.steps(),
        interval_secs: r.interval.as_secs(),
        bake_secs: r.bake.as_secs(),
        alarms: r.alarms.clone(),
        auto_rollback: r.auto_rollback,
        expected_secs: r.expected().as_secs(),
    })
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::plan::AttributeChange;

    /// The tags with a provider's traffic attributes.
    fn tags(change: &ResourceChange, desired: Option<&Desired>) -> Vec<ChangeTag> {
        super::tags(change, desired, &["canary_percent", "replicas", "canaryTrafficPercent"])
    }

    fn change(address: &str, action: Action, attributes: Vec<AttributeChange>) -> ResourceChange {
        ResourceChange { attributes, ..ResourceChange::for_test(address, action) }
    }

    #[test]
    fn long_running_comes_from_the_provider_expected_wait() {
        let c = change("endpoints.api", Action::Create, vec![]);
        let d = Desired { expected_wait_secs: Some(900), ..Default::default() };
        assert_eq!(tags(&c, Some(&d)), [ChangeTag::LongRunning { expected_wait_secs: 900 }]);
        assert_eq!(tags(&c, Some(&d))[0].describe(), "expect about 15 min");
        assert!(tags(&c, Some(&Desired::default())).is_empty());
        let noop = change("endpoints.api", Action::NoOp, vec![]);
        assert!(tags(&noop, Some(&d)).is_empty(), "nothing to wait for when nothing changes");
    }

    #[test]
    fn traffic_shift_from_nested_object_fields() {
        assert_eq!(last_segment("inference_service.spec.predictor.canaryTrafficPercent"), "canaryTrafficPercent");
        assert_eq!(last_segment("deployment.spec.replicas"), "replicas");
        let a = AttributeChange {
            path: "deployment.spec.replicas".into(),
            before: Some(1.into()),
            after: Some(3.into()),
            forces_replacement: false,
        };
        assert_eq!(tags(&change("endpoints.api", Action::Update, vec![a]), None)[0].name(), "traffic-shift");
    }

    #[test]
    fn conflicts_come_from_the_provider() {
        let c = change("endpoints.api", Action::Update, vec![]);
        let d = Desired { conflicts: vec!["spec.replicas is owned by \"hpa\"".into()], ..Default::default() };
        assert_eq!(tags(&c, Some(&d))[0].name(), "conflict");
    }

    #[test]
    fn traffic_shift_only_for_existing_endpoints() {
        let a = AttributeChange {
            path: "canary_percent".into(),
            before: Some(10.into()),
            after: Some(50.into()),
            forces_replacement: false,
        };
        let update = change("endpoints.api", Action::Update, vec![a.clone()]);
        assert_eq!(tags(&update, None)[0].name(), "traffic-shift");
        let create = change("endpoints.api", Action::Create, vec![AttributeChange { before: None, ..a }]);
        assert!(tags(&create, None).is_empty());
    }
}
