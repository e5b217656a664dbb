//! Properties: for generated valid specs, plan → apply → plan is all NoOp; diff(x, x) is NoOp.

use std::collections::BTreeMap;

use mlops::engine::{self, PlanRequest, Stack, apply};
use mlops::lineage::{Lineage, Record};
use mlops::plan::{Action, SourceInfo};
use mlops::registry::Registry;
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Gen {
    datasets: BTreeMap<String, Vec<(String, String)>>,
    models: Vec<(String, String, Vec<usize>)>,
    endpoints: Vec<(usize, u32, u32)>,
    /// Each feature store's extra feature names (a set: YAML keys are unique).
    stores: Vec<std::collections::BTreeSet<String>>,
}

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,8}"
}

fn stacks() -> impl Strategy<Value = Gen> {
    (
        proptest::collection::btree_map(
            name(),
            proptest::collection::vec(("[a-z]{1,6}\\.csv", "[ -~]{0,40}"), 0..4),
            1..4,
        ),
        proptest::collection::vec((name(), "[ -~]{1,40}"), 0..3),
        proptest::collection::vec((0usize..3, 1u32..5, 0u32..=100), 0..3),
        proptest::collection::vec(proptest::collection::btree_set("[a-z]{1,8}", 0..3), 0..2),
    )
        .prop_map(|(datasets, models, endpoints, stores)| {
            let nds = datasets.len();
            let models: BTreeMap<String, String> = models.into_iter().collect();
            let models = models
                .into_iter()
                .enumerate()
                .map(|(i, (n, content))| (format!("m{i}-{n}"), content, vec![i % nds]))
                .collect();
            Gen { datasets, models, endpoints, stores }
        })
}

fn write_spec(g: &Gen, dir: &std::path::Path) -> String {
    let mut y = String::from("version: 1\nproject: prop\nproviders:\n  local: {}\ndatasets:\n");
    let names: Vec<&String> = g.datasets.keys().collect();
    for (name, files) in &g.datasets {
        let src = dir.join("src").join(name);
        std::fs::create_dir_all(&src).unwrap();
        for (f, content) in files {
            std::fs::write(src.join(f), content).unwrap();
        }
        y.push_str(&format!("  {name}:\n    source: ./src/{name}\n"));
    }
    if !g.models.is_empty() {
        y.push_str("models:\n");
    }
    for (name, content, trained) in &g.models {
        std::fs::write(dir.join(format!("{name}.bin")), content).unwrap();
        let refs: Vec<String> = trained.iter().map(|i| format!("datasets.{}", names[*i])).collect();
        y.push_str(&format!("  {name}:\n    artifact: ./{name}.bin\n    trained_on: [{}]\n", refs.join(", ")));
    }
    if !g.stores.is_empty() {
        y.push_str("feature_stores:\n");
    }
    for (i, extra) in g.stores.iter().enumerate() {
        y.push_str(&format!("  fs{i}:\n    record_identifier: id\n    event_time: ts\n    features:\n      id: string\n      ts: string\n"));
        for f in extra {
            y.push_str(&format!("      x{f}: fractional\n"));
        }
    }
    if !g.models.is_empty() && !g.endpoints.is_empty() {
        y.push_str("endpoints:\n");
        for (i, (m, count, canary)) in g.endpoints.iter().enumerate() {
            let model = &g.models[m % g.models.len()].0;
            y.push_str(&format!(
                "  ep{i}:\n    model: models.{model}\n    instance_count: {count}\n    traffic: {{canary_percent: {canary}}}\n"
            ));
        }
    }
    y
}

fn source() -> SourceInfo {
    SourceInfo { spec: "mlops.yaml".into(), dirty: true, ..Default::default() }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn plan_apply_plan_is_all_noop(g in stacks()) {
        let dir = tempfile::tempdir().unwrap();
        mlops::lineage::init_repository(dir.path()).unwrap();
        let yaml = write_spec(&g, dir.path());
        let path = dir.path().join("mlops.yaml");
        std::fs::write(&path, &yaml).unwrap();
        let env = |_: &str| None;
        let spec = mlops::spec::load_file(&path, "mlops.yaml", &env, &Registry::builtin(), &Default::default())
            .unwrap_or_else(|d| panic!("generated spec is invalid: {d:?}\n{yaml}"));
        let stack = Stack::new(spec, Registry::builtin()).unwrap();
        let lineage = Lineage::open(dir.path(), "prop", "default").unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let state = lineage.state().unwrap();
        let plan = rt.block_on(engine::plan(&stack, state.clone(), source(), &PlanRequest::default())).unwrap();
        prop_assert!(plan.changes.iter().all(|c| c.action == Action::Create));
        let report = rt.block_on(apply::apply(&stack, &state, &plan, 4, &Default::default(), &Default::default(), &|_e| {}));
        prop_assert_eq!(report.failed, 0, "{:?}", report.outcomes);
        lineage.record(state.tip.as_deref(), Record::new(&plan.document(), &report.outcomes, &report.records, &state)).unwrap();
        let state = lineage.state().unwrap();
        let again = rt.block_on(engine::plan(&stack, state.clone(), source(), &PlanRequest::default())).unwrap();
        let not_noop: Vec<_> = again.changes.iter().filter(|c| c.action != Action::NoOp).map(|c| (&c.address, &c.attributes)).collect();
        prop_assert!(not_noop.is_empty(), "{:?}\n{}", not_noop, yaml);
        prop_assert!(again.drift.is_empty(), "{:?}", again.drift);
    }

    #[test]
    fn diff_of_equal_attributes_is_noop(v in proptest::collection::btree_map("[a-z]{1,4}", any::<i64>().prop_map(serde_json::Value::from), 0..8)) {
        let d = mlops::provider::Desired { attributes: v.clone(), ..Default::default() };
        let l = mlops::plan::RecordedState { attributes: v, outputs: Default::default() };
        prop_assert_eq!(engine::diff::decide(Some(&d), Some(&l)).action, Action::NoOp);
    }

    #[test]
    fn address_display_parse_round_trip(kind in 0usize..4, name in "[A-Za-z0-9][A-Za-z0-9._-]{0,20}") {
        let a = mlops::provider::Address::new(mlops::provider::Kind::ALL[kind], name);
        let parsed: mlops::provider::Address = a.to_string().parse().unwrap();
        prop_assert_eq!(parsed, a);
    }
}
