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

/// `mlops check --format junit`: a JUnit report as Jenkins and GitLab read it (checked with PyPI
/// junitparser): a test case per resource of the plan, the blocked endpoint failing with the
/// policy's code, its message and its line; the others passing; exit 3 as in text.
#[test]
#[ignore = "needs PyPI junitparser: `eval \"$(scripts/services up validators)\"`, then `cargo test -- --include-ignored`"]
fn check_writes_a_junit_report_jenkins_and_gitlab_read() {
    let python = crate::common::service("MLOPS_TEST_VALIDATORS_PYTHON", None, "validators");
    let env = with_policies("  allowed_instance_types: [ml.m5.large]\n");
    let run = env.mlops(&["check", "--format", "junit"]);
    assert_eq!(run.status, 3, "{}", run.stderr);
    env.write("report.xml", &run.stdout);
    let read = std::process::Command::new(&python)
        .arg("-c")
        .arg(
            r#"
import json, sys
from junitparser import JUnitXml
out = []
for suite in JUnitXml.fromfile(sys.argv[1]):
    cases = [{"name": c.name, "classname": c.classname,
              "results": [{"kind": type(r).__name__, "type": r.type, "message": r.message, "text": r.text} for r in c.result]}
             for c in suite]
    out.append({"name": suite.name, "tests": suite.tests, "failures": suite.failures, "cases": cases})
print(json.dumps(out))
"#,
        )
        .arg(env.path().join("report.xml"))
        .output()
        .unwrap();
    assert!(read.status.success(), "{}", String::from_utf8_lossy(&read.stderr));
    let suites = crate::common::printed_json(&String::from_utf8_lossy(&read.stdout), "junitparser");
    let plan: serde_json::Value = serde_json::from_str(&env.mlops(&["plan", "--json"]).ok().stdout).unwrap();
    let resources = plan["changes"].as_array().unwrap().len();
    let suite = &suites[0];
    assert_eq!(suite["name"], "quickstart/default");
    assert_eq!(suite["tests"], resources + 1, "{suite}");
    assert_eq!(suite["failures"], 1, "{suite}");
    let cases = suite["cases"].as_array().unwrap();
    let failing: Vec<&serde_json::Value> =
        cases.iter().filter(|c| !c["results"].as_array().unwrap().is_empty()).collect();
    assert_eq!(failing.len(), 1, "{suite}");
    assert_eq!(failing[0]["name"], "endpoints.churn-api");
    assert_eq!(failing[0]["classname"], "mlops.quickstart.default");
    let result = &failing[0]["results"][0];
    assert_eq!(result["kind"], "Failure");
    assert_eq!(result["type"], "policy::instance_type");
    assert!(result["message"].as_str().unwrap().contains("uses instance type `local.cpu`"), "{result}");
    assert!(result["text"].as_str().unwrap().starts_with("mlops.yaml:38: "), "{result}");
    assert!(cases.iter().any(|c| c["name"] == "(the plan)"), "{suite}");

    // Passing: every case passes, exit 0.
    env.write("mlops.yaml", &env.read("mlops.yaml").replace("[ml.m5.large]", "[ml.m5.large, local.cpu]"));
    let ok = env.mlops(&["check", "--format", "junit"]).ok();
    assert!(ok.stdout.contains("failures=\"0\""), "{}", ok.stdout);
}

/// The team's own rules in Rego, as conftest writes them: a `policy/` folder beside the spec with
/// `deny` and `warn` rules in package `main` over the plan JSON, and `data.mlops.state`. A deny
/// naming a resource is shown at its line and blocks (exit 3); a warning does not; the apply
/// records the verdict; a syntax error is a clear error; `--policy DIR` adds a folder.
#[test]
fn rego_policies_in_the_conftest_style_gate_the_plan() {
    let env = TestEnv::quickstart();
    env.write(
        "policy/endpoints.rego",
        r#"package main

import rego.v1

# Every endpoint that is created or changed runs at least three replicas.
deny contains msg if {
  some change in input.changes
  startswith(change.address, "endpoints.")
  change.action in {"create", "update"}
  change.desired.replicas < 3
  msg := sprintf("%s runs %d replica(s); endpoints need at least 3", [change.address, change.desired.replicas])
}

warn contains msg if {
  count(data.mlops.state) == 0
  msg := "nothing is recorded yet: this is the stack's first apply"
}
"#,
    );
    env.write("policy/endpoints_test.rego", "package main\n\nthis is not rego, and conftest's tests are not read\n");
    env.commit("policies");
    let plan: serde_json::Value = serde_json::from_str(&env.mlops(&["plan", "--json"]).ok().stdout).unwrap();
    let endpoint = plan["changes"].as_array().unwrap().iter().find(|c| c["address"] == "endpoints.churn-api").unwrap();
    assert_eq!(endpoint["desired"]["replicas"], 2, "{endpoint}");

    let run = env.mlops(&["check"]);
    assert_eq!(run.status, 3, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("policy::rego"), "{}", run.stderr);
    assert!(
        run.stderr.contains("main.deny: endpoints.churn-api runs 2 replica(s); endpoints need at least 3"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("churn-api:"), "points at the endpoint: {}", run.stderr);
    assert!(run.stderr.contains("main.warn: nothing is recorded yet"), "{}", run.stderr);
    let json: serde_json::Value = serde_json::from_str(&env.mlops(&["check", "--json"]).stdout).unwrap();
    assert_eq!(json["passed"], false);
    assert_eq!(json["violations"][0]["address"], "endpoints.churn-api");
    assert!(json["violations"][0]["line"].as_u64().is_some(), "{json}");
    assert_eq!(json["warnings"][0]["code"], "policy::rego");

    // Three replicas pass; the apply records the verdict; with a state the warning is gone.
    env.write("mlops.yaml", &env.read("mlops.yaml").replace("instance_count: 2", "instance_count: 3"));
    env.commit("three replicas");
    let ok = env.mlops(&["check"]);
    assert_eq!(ok.status, 0, "{}{}", ok.stdout, ok.stderr);
    env.mlops(&["apply", "--auto-approve"]).ok();
    let msg = env.git(&["log", "-1", "--format=%B", "refs/mlops/lineage/quickstart/default"]);
    assert!(msg.contains("Policy: passed"), "{msg}");
    let again = env.mlops(&["check"]);
    assert!(!again.stderr.contains("nothing is recorded yet"), "{}", again.stderr);

    // Another folder for one run; a rule about no resource points at nothing in particular.
    env.write(
        "extra/all.rego",
        "package main\n\nimport rego.v1\n\ndeny contains \"no apply on Fridays\" if { input.project == \"quickstart\" }\n",
    );
    let extra = env.mlops(&["check", "--policy", "extra", "--json"]);
    assert_eq!(extra.status, 3);
    let json: serde_json::Value = serde_json::from_str(&extra.stdout).unwrap();
    assert_eq!(json["violations"][0]["message"], "main.deny: no apply on Fridays");
    assert_eq!(json["violations"][0]["address"], serde_json::Value::Null);

    // Not Rego: a clear error naming the file, nothing else.
    env.write("policy/broken.rego", "package main\n\ndeny contains msg if {\n");
    let broken = env.mlops(&["check"]);
    assert_eq!(broken.status, 1, "{}", broken.stderr);
    assert!(broken.stderr.contains("is not valid Rego") && broken.stderr.contains("broken.rego"), "{}", broken.stderr);
}
