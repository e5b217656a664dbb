//! The committed JSON Schemas are generated from the Rust types; this fails when they are stale.
//! Regenerate with `UPDATE_SCHEMAS=1 cargo test --test it schema`.

use std::path::Path;

fn check(file: &str, schema: serde_json::Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas").join(file);
    let want = serde_json::to_string_pretty(&schema).unwrap() + "\n";
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(have == want, "schemas/{file} is stale: run `UPDATE_SCHEMAS=1 cargo test --test it schema` and commit it");
}

#[test]
fn spec_schema_is_current() {
    check("mlops.schema.json", mlops::spec::model::json_schema());
}

#[test]
fn plan_schema_is_current() {
    check("plan.schema.json", mlops::plan::json_schema());
}

#[test]
fn audit_schema_is_current() {
    check("audit.schema.json", mlops::audit::audit_schema());
}

#[test]
fn examples_validate_against_the_committed_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/mlops.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for example in [
        "quickstart",
        "gcp-gcs",
        "gcp-vertex",
        "kubernetes-kserve",
        "kubernetes-runtimes",
        "aws-sagemaker",
        "mlflow-kserve",
        "kubernetes-feast",
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(example).join("mlops.yaml");
        let value: serde_json::Value = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let errors: Vec<String> = validator.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{example}: {errors:?}");
        // And the full validation (semantics, provider checks), offline.
        let env = crate::common::TestEnv::new();
        crate::common::copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(example), env.path());
        // The addresses a user's environment gives (never contacted by validate); without them a
        // provider that needs one is unavailable, as a user would be told.
        let addresses = [("MLFLOW_TRACKING_URI", "http://127.0.0.1:9"), ("FEAST_REGISTRY", "127.0.0.1:9")];
        env.mlops_env(&["validate"], &addresses).ok();
        if example == "mlflow-kserve" {
            env.mlops_env(&["-f", "registry.yaml", "validate"], &addresses).ok();
        }
    }
}

#[test]
fn saved_plans_validate_against_the_plan_schema() {
    let env = crate::common::TestEnv::quickstart();
    env.mlops(&["plan", "--out", "p.json"]).ok();
    let plan: serde_json::Value = serde_json::from_str(&env.read("p.json")).unwrap();
    let validator = jsonschema::validator_for(&mlops::plan::json_schema()).unwrap();
    let errors: Vec<String> = validator.iter_errors(&plan).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
}

/// Provider knowledge lives in provider crates: the engine's sources name no provider, no
/// provider's service and no provider's URI scheme, except the registry's list of compiled-in
/// providers and the CI recipes' list of engines. (Tests and docs may.)
#[test]
fn the_engine_names_no_provider() {
    let pattern = ["sagemaker", "kserve", "s3://", "gs://", "aws", "gcp", "kubernetes"];
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src.clone()];
    let mut found = Vec::new();
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            // The registry lists the compiled-in providers; the recipes name the engines a team
            // runs its CI on (a Kubernetes Job there runs mlops, it is not a provider's object).
            if path.ends_with("src/registry.rs") || path.ends_with("src/render/recipes.rs") {
                continue;
            }
            files += 1;
            let text = std::fs::read_to_string(&path).unwrap().to_lowercase();
            for (n, line) in text.lines().enumerate() {
                if let Some(word) = pattern.iter().find(|w| line.contains(*w)) {
                    found.push(format!("{}:{}: `{word}`", path.strip_prefix(&src).unwrap().display(), n + 1));
                }
            }
        }
    }
    assert!(files > 20, "the walk found the sources ({files} files)");
    assert!(
        found.is_empty(),
        "provider names in the engine (move them into the provider crate):\n{}",
        found.join("\n")
    );
}

/// Every folder under examples/ has a test that applies it as its header tells a user (with only
/// the test services' environment) and plans again to no changes; a new example without one
/// fails here.
#[test]
fn every_example_is_applied_by_a_test() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let applied_by = std::collections::BTreeMap::from([
        ("aws-sagemaker", ("aws.rs", "fn the_aws_example_applies_and_converges(")),
        ("ci", ("ci.rs", "fn the_ci_pipeline_runs_end_to_end(")),
        ("gcp-gcs", ("gcp.rs", "fn the_gcp_example_applies_and_converges(")),
        ("gcp-vertex", ("vertex.rs", "fn the_vertex_example_applies_converges_and_is_destroyed(")),
        ("kubernetes-feast", ("kubernetes.rs", "fn the_feast_example_applies_as_its_header_says_and_converges(")),
        ("kubernetes-kserve", ("kubernetes.rs", "fn the_kserve_example_applies_as_its_header_says_and_converges(")),
        ("kubernetes-runtimes", ("kubernetes.rs", "fn the_runtimes_example_applies_as_its_header_says_and_converges(")),
        ("mlflow-kserve", ("kubernetes.rs", "fn the_mlflow_kserve_example_applies_as_its_header_says_and_converges(")),
        ("monorepo", ("stacks.rs", "fn the_monorepo_example_applies_in_waves_and_its_workflow_is_generated(")),
        ("quickstart", ("lifecycle.rs", "fn quickstart_apply_then_nothing_to_do(")),
    ]);
    let folders: Vec<String> = std::fs::read_dir(root.join("examples"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(folders, applied_by.keys().map(|k| k.to_string()).collect::<Vec<_>>(), "an example without a test");
    for (example, (file, test)) in applied_by {
        let source = std::fs::read_to_string(root.join("tests/it").join(file)).unwrap();
        assert!(source.contains(test), "{example}: {test} is not in tests/it/{file}");
    }
}
