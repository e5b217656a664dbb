//! load + validate + diff + render at 10,000 resources.
//!
//! `cargo bench --bench engine`; figures are per iteration of each stage. The desired states come
//! from the local provider (no source folders, one shared artifact), the live states are the
//! desired ones with 1% of the resources changed, so the diff and renderers have work to do.

use std::collections::{BTreeMap, BTreeSet};

use criterion::{Criterion, criterion_group, criterion_main};
use mlops::engine::{self, PlanRequest, Stack};
use mlops::lineage::State;
use mlops::plan::{RecordedState, SourceInfo};
use mlops::registry::Registry;
use mlops::render::{Style, text};
use serde_json::json;

const N: usize = 10_000;

fn spec_yaml() -> String {
    let per = N / 4;
    let mut y = String::from("version: 1\nproject: bench\nproviders:\n  local: {}\ndatasets:\n");
    for i in 0..per {
        y.push_str(&format!("  ds-{i}:\n    description: dataset {i}\n    labels: {{owner: team-{}}}\n", i % 7));
    }
    y.push_str("models:\n");
    for i in 0..per {
        y.push_str(&format!(
            "  m-{i}:\n    artifact: ./model.bin\n    framework: xgboost\n    trained_on: [datasets.ds-{i}]\n    registry: {{group: g{}, approval: Approved}}\n",
            i % 10
        ));
    }
    y.push_str("feature_stores:\n");
    for i in 0..per {
        y.push_str(&format!(
            "  fs-{i}:\n    record_identifier: id\n    event_time: ts\n    features: {{id: string, ts: string, f{i}: fractional}}\n"
        ));
    }
    y.push_str("endpoints:\n");
    for i in 0..per {
        y.push_str(&format!("  ep-{i}:\n    model: models.m-{i}\n    instance_count: {}\n", 1 + i % 3));
    }
    y
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.bin"), b"weights").unwrap();
    let yaml = spec_yaml();
    let path = dir.path().join("mlops.yaml");
    let env = |_: &str| None;
    let registry = Registry::builtin();

    let mut g = c.benchmark_group("10k_resources");
    g.sample_size(10);
    g.bench_function("load_validate", |b| {
        b.iter(|| {
            mlops::spec::load_bytes(&path, "mlops.yaml", yaml.as_bytes(), &env, &registry, &Default::default()).unwrap()
        })
    });

    let spec =
        mlops::spec::load_bytes(&path, "mlops.yaml", yaml.as_bytes(), &env, &registry, &Default::default()).unwrap();
    let stack = Stack::new(spec, registry.clone()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let selected: BTreeSet<_> = stack.spec.resources.iter().map(|r| r.config.address.clone()).collect();
    g.bench_function("desired_states", |b| {
        b.iter(|| {
            rt.block_on(engine::desired_states(&stack, &selected, 10, &Default::default(), false, &Default::default()))
                .unwrap()
        })
    });
    let desired = rt
        .block_on(engine::desired_states(&stack, &selected, 10, &Default::default(), false, &Default::default()))
        .unwrap();
    let live: BTreeMap<_, _> = desired
        .iter()
        .enumerate()
        .map(|(i, (a, d))| {
            let mut attributes = d.attributes.clone();
            if i % 100 == 0 {
                attributes.insert("labels".into(), json!({"owner": "someone-else"}));
            }
            (a.clone(), Some(std::sync::Arc::new(RecordedState { attributes, outputs: Default::default() })))
        })
        .collect();
    let source = SourceInfo { spec: "mlops.yaml".into(), ..Default::default() };
    let state = State::default();
    let request = PlanRequest::default();
    g.bench_function("diff", |b| {
        b.iter(|| {
            engine::assemble(
                &stack,
                state.clone(),
                source.clone(),
                &request,
                &selected,
                desired.clone(),
                engine::Observed { priors: Default::default(), live: live.clone() },
            )
        })
    });
    let plan = engine::assemble(
        &stack,
        state.clone(),
        source.clone(),
        &request,
        &selected,
        desired.clone(),
        engine::Observed { priors: Default::default(), live: live.clone() },
    );
    assert_eq!(plan.summary.update, N / 100);
    g.bench_function("render_text", |b| b.iter(|| text::plan(&plan, &Style::PLAIN)));
    g.bench_function("render_json", |b| b.iter(|| plan.to_json()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
