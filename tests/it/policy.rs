//! `mlops check`: each policy rule passes and fails; exit 0 (passed), 3 (blocked), 1 (error).

use crate::common::TestEnv;

fn with_policies(policies: &str) -> TestEnv {
    let env = TestEnv::quickstart();
    let spec = env.read("mlops.yaml");
    env.write("mlops.yaml", &format!("{spec}\npolicies:\n{policies}"));
    env
}

#[track_caller]
fn passes(policies: &str) {
    let env = with_policies(policies);
    let run = env.mlops(&["check"]);
    assert_eq!(run.status, 0, "{policies}\n{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("the plan passes every policy"), "{}", run.stdout);
}

#[track_caller]
fn blocks(policies: &str, code: &str, line_text: &str) -> TestEnv {
    let env = with_policies(policies);
    let run = env.mlops(&["check"]);
    assert_eq!(run.status, 3, "{policies}\n{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains(code), "{}", run.stderr);
    assert!(run.stderr.contains(line_text), "points at the offending line: {}", run.stderr);
    env
}

#[test]
fn allowed_instance_types() {
    passes("  allowed_instance_types: [local.cpu, local.gpu]\n");
    blocks("  allowed_instance_types: [ml.m5.large]\n", "policy::instance_type", "instance_type: local.cpu");
}

#[test]
fn replica_bounds_per_environment() {
    passes("  replicas: { min: 1, max: 2 }\n");
    blocks("  replicas: { max: 1 }\n", "policy::replicas", "instance_count: 2");
    // Environment overrides win over the defaults.
    passes("  replicas: { max: 1 }\n  environments:\n    default: { replicas: { max: 4 } }\n");
}

#[test]
fn rollouts_required_in_the_environments_named() {
    passes("  require_rollout_for: [prod]\n");
    let env = blocks("  require_rollout_for: [prod, default]\n", "policy::rollout_required", "churn-api:");
    let run = env.mlops(&["check"]);
    assert!(run.stderr.contains("which environment `default` requires"), "{}", run.stderr);
}

#[test]
fn endpoints_serve_only_approved_models() {
    passes("  require_approved_models: true\n");
    let env = TestEnv::quickstart();
    let spec = env.read("mlops.yaml").replace("approval: Approved", "approval: PendingManualApproval");
    env.write("mlops.yaml", &format!("{spec}\npolicies:\n  require_approved_models: true\n"));
    let run = env.mlops(&["check"]);
    assert_eq!(run.status, 3);
    assert!(run.stderr.contains("policy::unapproved_model"), "{}", run.stderr);
    assert!(run.stderr.contains("whose registry approval is PendingManualApproval"), "{}", run.stderr);
}

#[test]
fn datasets_must_be_versioned() {
    passes("  require_versioned_datasets: true\n");
    let env = TestEnv::quickstart();
    let spec = env.read("mlops.yaml").replace("    source: ./data/train\n", "");
    env.write("mlops.yaml", &format!("{spec}\npolicies:\n  require_versioned_datasets: true\n"));
    let run = env.mlops(&["check"]);
    assert_eq!(run.status, 3);
    assert!(run.stderr.contains("policy::unversioned_dataset"), "{}", run.stderr);
}

#[test]
fn required_labels() {
    let env = TestEnv::quickstart();
    let spec = env.read("mlops.yaml");
    let labelled = spec
        .replace("    framework: sklearn\n", "    framework: sklearn\n    labels: { owner: ml-platform }\n")
        .replace("    event_time: event_time\n", "    event_time: event_time\n    labels: { owner: ml-platform }\n")
        .replace("    instance_count: 2\n", "    instance_count: 2\n    labels: { owner: ml-platform }\n");
    env.write("mlops.yaml", &format!("{labelled}\npolicies:\n  required_labels: [owner]\n"));
    assert_eq!(env.mlops(&["check"]).status, 0);
    let env = blocks("  required_labels: [owner]\n", "policy::missing_labels", "churn-clf");
    let json = env.mlops(&["check", "--json"]);
    assert_eq!(json.status, 3);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let blocked: Vec<&str> =
        v["violations"].as_array().unwrap().iter().map(|x| x["address"].as_str().unwrap()).collect();
    assert_eq!(blocked, ["models.churn-clf", "feature_stores.customer", "endpoints.churn-api"]);
    assert_eq!(v["passed"], false);
}

#[test]
fn no_data_destroying_change() {
    passes("  forbid_data_destroying: true\n");
    let env = with_policies("  forbid_data_destroying: true\n");
    env.mlops(&["apply", "--auto-approve"]).ok();
    let spec = env.read("mlops.yaml");
    env.write("mlops.yaml", &spec.replace("record_identifier: customer_id", "record_identifier: tenure_months"));
    env.mlops(&["plan", "--out", "p.json"]).ok();
    let run = env.mlops(&["check", "p.json"]);
    assert_eq!(run.status, 3, "{}", run.stderr);
    assert!(run.stderr.contains("policy::data_destroying"), "{}", run.stderr);
}

#[test]
fn github_annotations_and_error_exit() {
    let env = with_policies("  allowed_instance_types: [ml.m5.large]\n");
    let run = env.mlops_env(&["check"], &[("GITHUB_ACTIONS", "true")]);
    assert_eq!(run.status, 3);
    assert!(
        run.stdout.contains("::error file=mlops.yaml,line=38,title=policy::instance_type::endpoints.churn-api uses instance type `local.cpu`"),
        "{}",
        run.stdout
    );
    // An error is 1, not 3.
    env.write("mlops.yaml", "version: 1\nproject: broken\nmodles: {}\n");
    assert_eq!(env.mlops(&["check"]).status, 1);
    assert_eq!(env.mlops(&["check", "missing.json"]).status, 1);
}
