//! An endpoint's portable `rollout:` block: how a new model version takes the traffic (all at
//! once, a canary step then the rest, or linear steps), how long each step waits, how long the
//! new version bakes before the old one goes, and what rolls it back. Read once for every
//! provider, with the checks they share: each setting honoured or refused at its line.

use std::time::Duration;

use crate::{ConfigDiagnostic, ResourceConfig, Value, ValuePath, check_duration, parse_duration};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    AllAtOnce,
    Canary,
    Linear,
}

impl Strategy {
    pub const ALL: [Strategy; 3] = [Strategy::AllAtOnce, Strategy::Canary, Strategy::Linear];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::AllAtOnce => "all-at-once",
            Strategy::Canary => "canary",
            Strategy::Linear => "linear",
        }
    }

    fn parse(s: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// An endpoint's `rollout:`, as the schema admits it.
#[derive(Clone, Debug, PartialEq)]
pub struct Rollout {
    pub strategy: Strategy,
    /// The share of the traffic (percent) a canary's first step or each linear step moves.
    pub percent: u64,
    /// The wait between steps.
    pub interval: Duration,
    /// The wait after the last step before the old version is removed.
    pub bake: Duration,
    /// What aborts and rolls back the rollout while it runs (the provider says what an alarm is).
    pub alarms: Vec<String>,
    /// `rollback: auto` (the default): an alarm or a failed step rolls back by itself.
    pub auto_rollback: bool,
}

impl Rollout {
    /// The endpoint's `rollout:`, if it has one the schema admitted.
    pub fn of(config: &ResourceConfig) -> Option<Rollout> {
        let r = config.body.get("rollout")?;
        let strategy = r.get("strategy").and_then(Value::as_str).and_then(Strategy::parse)?;
        let duration = |v: Option<&Value>| v.and_then(Value::as_str).and_then(parse_duration).unwrap_or_default();
        Some(Rollout {
            strategy,
            percent: r.pointer("/step/percent").and_then(Value::as_u64).unwrap_or(100),
            interval: duration(r.pointer("/step/interval")),
            bake: duration(r.get("bake")),
            alarms: r
                .get("alarms")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default(),
            auto_rollback: r.get("rollback").and_then(Value::as_str) != Some("manual"),
        })
    }

    /// The new version's share after each step, ending at 100.
    pub fn steps(&self) -> Vec<u64> {
        let p = self.percent.clamp(1, 100);
        match self.strategy {
            Strategy::AllAtOnce => vec![100],
            Strategy::Canary if p < 100 => vec![p, 100],
            Strategy::Canary => vec![100],
            Strategy::Linear => {
                let mut out: Vec<u64> = (1..).map(|i| i * p).take_while(|s| *s < 100).collect();
                out.push(100);
                out
            }
        }
    }

    /// How long the steps and the bake take, at least.
    pub fn expected(&self) -> Duration {
        let waits = self.steps().len().saturating_sub(1) as u32;
        self.interval * waits + self.bake
    }
}

/// What a provider's rollout can honour.
pub struct RolloutSupport {
    /// What the provider calls it, for messages: "SageMaker deployment guardrails".
    pub what: &'static str,
    pub strategies: &'static [Strategy],
    /// The step sizes (percent) it accepts, inclusive: a canary's first step, and a linear step.
    pub percent: (u64, u64),
    pub linear: (u64, u64),
    /// What an alarm name means to it, or `None` when it has no alarms.
    pub alarms: Option<&'static str>,
}

/// The shared checks of an endpoint's `rollout:` for a provider that supports it as `support`
/// says; `None` refuses the block at its line.
pub fn check(config: &ResourceConfig, support: Option<&RolloutSupport>) -> Vec<ConfigDiagnostic> {
    let Some(block) = config.body.get("rollout") else { return vec![] };
    let Some(support) = support else {
        return vec![ConfigDiagnostic::unsupported(
            ValuePath::keys(&["rollout"]),
            format!("the {} provider cannot roll out step by step: `rollout` would be ignored", config.provider),
            "remove it, or serve the endpoint where rollouts are driven (aws, or kubernetes with `runtime: kserve`)",
        )];
    };
    let mut out = Vec::new();
    let strategy = block.get("strategy").and_then(Value::as_str).and_then(Strategy::parse);
    if let Some(s) = strategy.filter(|s| !support.strategies.contains(s)) {
        let can: Vec<&str> = support.strategies.iter().map(|s| s.name()).collect();
        out.push(ConfigDiagnostic::unsupported(
            ValuePath::keys(&["rollout", "strategy"]),
            format!("{} has no `{}` rollout", support.what, s.name()),
            format!("use one of: {}", can.join(", ")),
        ));
    }
    let step = block.get("step");
    match (strategy, step) {
        (Some(Strategy::AllAtOnce), Some(_)) => out.push(ConfigDiagnostic::unsupported(
            ValuePath::keys(&["rollout", "step"]),
            "an `all-at-once` rollout has no steps: `step` would be ignored",
            "remove `step`, or use `strategy: canary` or `linear`",
        )),
        (Some(s @ (Strategy::Canary | Strategy::Linear)), None) => out.push(ConfigDiagnostic::unsupported(
            ValuePath::keys(&["rollout"]),
            format!("a `{}` rollout needs its `step`", s.name()),
            "add `step: { percent: 10, interval: 5m }`",
        )),
        _ => {}
    }
    if let Some(p) = step.and_then(|s| s.get("percent")).and_then(Value::as_u64) {
        let (lo, hi) = if strategy == Some(Strategy::Linear) { support.linear } else { support.percent };
        if p < lo || p > hi {
            let what = strategy.map_or("", |s| s.name());
            out.push(ConfigDiagnostic::unsupported(
                ValuePath::keys(&["rollout", "step", "percent"]),
                format!("{} takes {what} steps of {lo} to {hi} percent, not {p}", support.what),
                format!("choose a step between {lo} and {hi}"),
            ));
        }
    }
    out.extend(check_duration(ValuePath::keys(&["rollout", "step", "interval"]), step.and_then(|s| s.get("interval"))));
    out.extend(check_duration(ValuePath::keys(&["rollout", "bake"]), block.get("bake")));
    if config.body.pointer("/traffic/canary_percent").is_some() {
        out.push(ConfigDiagnostic::unsupported(
            ValuePath::keys(&["traffic", "canary_percent"]),
            "`rollout` moves the traffic step by step: a fixed `traffic.canary_percent` would fight it",
            "remove `traffic.canary_percent`, or `rollout`",
        ));
    }
    let alarms = block.get("alarms").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    if alarms && support.alarms.is_none() {
        out.push(ConfigDiagnostic::unsupported(
            ValuePath::keys(&["rollout", "alarms"]),
            format!("{} has no alarms to watch: `alarms` would be ignored", support.what),
            "remove `alarms`; readiness at each step still aborts a failing rollout",
        ));
    }
    if block.get("rollback").and_then(Value::as_str) == Some("manual") && alarms {
        out.push(ConfigDiagnostic::unsupported(
            ValuePath::keys(&["rollout", "rollback"]),
            "`rollback: manual` with `alarms`: the alarms would only be watched, never acted on",
            "use `rollback: auto`, or remove `alarms`",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn steps_and_expected_duration() {
        let c = crate::test_endpoint(json!({ "rollout": {
            "strategy": "linear", "step": { "percent": 30, "interval": "5m" }, "bake": "10m", "alarms": ["a"] } }));
        let r = Rollout::of(&c).unwrap();
        assert_eq!(r.steps(), [30, 60, 90, 100]);
        assert_eq!(r.expected(), Duration::from_secs(3 * 300 + 600));
        assert!(r.auto_rollback);
        let canary = crate::test_endpoint(
            json!({ "rollout": { "strategy": "canary", "step": { "percent": 10, "interval": "1m" } } }),
        );
        assert_eq!(Rollout::of(&canary).unwrap().steps(), [10, 100]);
        let all = crate::test_endpoint(json!({ "rollout": { "strategy": "all-at-once", "bake": "1m" } }));
        assert_eq!(Rollout::of(&all).unwrap().steps(), [100]);
    }

    #[test]
    fn what_the_provider_cannot_honour_is_refused_at_its_line() {
        const S: RolloutSupport = RolloutSupport {
            what: "X",
            strategies: &[Strategy::Canary],
            percent: (1, 50),
            linear: (1, 50),
            alarms: None,
        };
        let c = crate::test_endpoint(
            json!({ "rollout": { "strategy": "linear", "step": { "percent": 60, "interval": "1m" }, "alarms": ["a"] } }),
        );
        let paths: Vec<String> = check(&c, Some(&S)).iter().map(|d| d.path.to_string()).collect();
        assert_eq!(paths, ["rollout.strategy", "rollout.step.percent", "rollout.alarms"]);
        let beside = crate::test_endpoint(json!({ "traffic": { "canary_percent": 10 },
            "rollout": { "strategy": "canary", "step": { "percent": 10, "interval": "1m" } } }));
        assert_eq!(check(&beside, Some(&S))[0].path.to_string(), "traffic.canary_percent");
        let no_step = crate::test_endpoint(json!({ "rollout": { "strategy": "canary" } }));
        assert_eq!(check(&no_step, Some(&S))[0].path.to_string(), "rollout");
        assert_eq!(check(&c, None)[0].path.to_string(), "rollout");
    }
}
