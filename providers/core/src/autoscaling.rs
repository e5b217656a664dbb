//! An endpoint's portable `autoscaling:` block, read once for every provider, and the checks
//! every provider shares: bounds in order, and each setting either honoured by the provider or
//! refused at its line (never silently ignored).

use std::time::Duration;

use crate::{ConfigDiagnostic, ResourceConfig, Value, ValuePath, check_duration, parse_duration};

/// What the autoscaler tracks (the spec's `autoscaling.target.metric`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Requests per replica per minute (SageMaker's `SageMakerVariantInvocationsPerInstance`).
    InvocationsPerInstance,
    /// CPU utilisation of a replica, in percent of what it requests.
    Cpu,
    /// Requests in flight per replica.
    Concurrency,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::InvocationsPerInstance, Metric::Cpu, Metric::Concurrency];

    pub fn name(self) -> &'static str {
        match self {
            Metric::InvocationsPerInstance => "invocations_per_instance",
            Metric::Cpu => "cpu",
            Metric::Concurrency => "concurrency",
        }
    }

    fn parse(s: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == s)
    }
}

/// An endpoint's `autoscaling:`, as the schema admits it.
#[derive(Clone, Debug, PartialEq)]
pub struct Autoscaling {
    pub min: u64,
    pub max: u64,
    pub metric: Metric,
    pub target: f64,
    pub scale_in_cooldown: Option<Duration>,
    pub scale_out_cooldown: Option<Duration>,
}

impl Autoscaling {
    /// The endpoint's `autoscaling:`, if it has one the schema admitted.
    pub fn of(config: &ResourceConfig) -> Option<Autoscaling> {
        let a = config.body.get("autoscaling")?;
        let cooldown = |k: &str| a.get(k).and_then(Value::as_str).and_then(parse_duration);
        Some(Autoscaling {
            min: a.get("min").and_then(Value::as_u64)?,
            max: a.get("max").and_then(Value::as_u64)?,
            metric: a.pointer("/target/metric").and_then(Value::as_str).and_then(Metric::parse)?,
            target: a.pointer("/target/value").and_then(Value::as_f64)?,
            scale_in_cooldown: cooldown("scale_in_cooldown"),
            scale_out_cooldown: cooldown("scale_out_cooldown"),
        })
    }

    /// The replica count an endpoint starts with: `instance_count`, else `min`.
    pub fn initial(&self, config: &ResourceConfig) -> u64 {
        config.body.get("instance_count").and_then(Value::as_u64).unwrap_or(self.min).clamp(self.min, self.max)
    }
}

/// What a provider's autoscaler can honour.
pub struct AutoscalingSupport {
    /// What the provider calls its autoscaler, for messages: "SageMaker (Application Auto Scaling)".
    pub what: &'static str,
    /// The metrics it can track, each with a hint when it cannot.
    pub metrics: &'static [Metric],
    /// Whether `scale_in_cooldown`/`scale_out_cooldown` mean anything to it.
    pub cooldowns: bool,
    /// Where to go instead, for the help of a refusal.
    pub instead: &'static str,
}

/// The portable replica bounds in order: `max_replicas` is not below `instance_count`.
pub fn check_bounds(config: &ResourceConfig) -> Option<ConfigDiagnostic> {
    let min = config.body.get("instance_count").and_then(Value::as_u64).unwrap_or(1);
    let max = config.body.get("max_replicas").and_then(Value::as_u64).filter(|m| *m < min)?;
    Some(ConfigDiagnostic::unsupported(
        ValuePath::key("max_replicas"),
        format!("`max_replicas` ({max}) is below `instance_count` ({min})"),
        "raise max_replicas or lower instance_count",
    ))
}

/// The shared checks of an endpoint's `autoscaling:` for a provider that supports it as `support`
/// says; `None` support refuses the block at its line.
pub fn check(config: &ResourceConfig, support: Option<&AutoscalingSupport>) -> Vec<ConfigDiagnostic> {
    let Some(block) = config.body.get("autoscaling") else { return vec![] };
    let mut out = Vec::new();
    let Some(support) = support else {
        out.push(ConfigDiagnostic::unsupported(
            ValuePath::keys(&["autoscaling"]),
            format!("the {} provider has no autoscaler: `autoscaling` would be ignored", config.provider),
            "remove it, or serve the endpoint where it can autoscale (aws, or kubernetes)",
        ));
        return out;
    };
    if config.body.get("max_replicas").is_some() {
        out.push(ConfigDiagnostic::unsupported(
            ValuePath::keys(&["max_replicas"]),
            "`max_replicas` and `autoscaling` both bound the replicas",
            "keep `autoscaling: { min, max }` and remove `max_replicas`",
        ));
    }
    let (min, max) = (block.get("min").and_then(Value::as_u64), block.get("max").and_then(Value::as_u64));
    if let (Some(min), Some(max)) = (min, max) {
        if max < min {
            out.push(ConfigDiagnostic::unsupported(
                ValuePath::keys(&["autoscaling", "max"]),
                format!("`autoscaling.max` ({max}) is below `autoscaling.min` ({min})"),
                "raise max or lower min",
            ));
        }
        if let Some(n) = config.body.get("instance_count").and_then(Value::as_u64).filter(|n| *n < min || *n > max) {
            out.push(ConfigDiagnostic::unsupported(
                ValuePath::keys(&["instance_count"]),
                format!("`instance_count` ({n}) is outside `autoscaling` ({min} to {max})"),
                "with autoscaling, `instance_count` is the count the endpoint starts with: keep it between min and max, or remove it",
            ));
        }
    }
    let metric = block.pointer("/target/metric").and_then(Value::as_str).and_then(Metric::parse);
    if let Some(m) = metric.filter(|m| !support.metrics.contains(m)) {
        let can: Vec<&str> = support.metrics.iter().map(|m| m.name()).collect();
        out.push(ConfigDiagnostic::unsupported(
            ValuePath::keys(&["autoscaling", "target", "metric"]),
            format!("{} cannot track `{}`", support.what, m.name()),
            format!("it tracks: {}; {}", can.join(", "), support.instead),
        ));
    }
    if !support.cooldowns {
        for k in ["scale_in_cooldown", "scale_out_cooldown"] {
            if block.get(k).is_some() {
                out.push(ConfigDiagnostic::unsupported(
                    ValuePath::keys(&["autoscaling", k]),
                    format!("{} has no cooldowns: `{k}` would be ignored", support.what),
                    "remove it",
                ));
            }
        }
    }
    for k in ["scale_in_cooldown", "scale_out_cooldown"] {
        out.extend(check_duration(ValuePath::keys(&["autoscaling", k]), block.get(k)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SUPPORT: AutoscalingSupport =
        AutoscalingSupport { what: "X", metrics: &[Metric::Cpu], cooldowns: false, instead: "use cpu" };

    #[test]
    fn reads_the_block_and_refuses_what_the_provider_cannot_honour() {
        let c = crate::test_endpoint(json!({ "instance_count": 9, "autoscaling": {
            "min": 2, "max": 4, "target": { "metric": "concurrency", "value": 5 }, "scale_in_cooldown": "5m" } }));
        let a = Autoscaling::of(&c).unwrap();
        assert_eq!((a.min, a.max, a.metric, a.target), (2, 4, Metric::Concurrency, 5.0));
        assert_eq!(a.scale_in_cooldown, Some(Duration::from_secs(300)));
        assert_eq!(a.initial(&c), 4);
        let paths: Vec<String> = check(&c, Some(&SUPPORT)).iter().map(|d| d.path.to_string()).collect();
        assert_eq!(paths, ["instance_count", "autoscaling.target.metric", "autoscaling.scale_in_cooldown"]);
        let none = check(&c, None);
        assert_eq!(none.len(), 1);
        assert_eq!(none[0].path.to_string(), "autoscaling");
        assert!(check(&crate::test_endpoint(json!({})), None).is_empty());
        let bounds = check_bounds(&crate::test_endpoint(json!({ "instance_count": 3, "max_replicas": 2 })));
        assert_eq!(bounds.map(|d| d.path.to_string()).as_deref(), Some("max_replicas"));
        assert!(check_bounds(&crate::test_endpoint(json!({ "max_replicas": 2 }))).is_none());
    }
}
