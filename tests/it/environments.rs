//! Environments: overrides per `--env`, and a lineage of their own.

use crate::common::TestEnv;

fn staged() -> TestEnv {
    let env = TestEnv::quickstart();
    let spec = env.read("mlops.yaml");
    env.write(
        "mlops.yaml",
        &format!(
            "{spec}\nenvironments:\n  staging:\n    providers: {{ local: {{ root: .mlops/staging }} }}\n    endpoints: {{ churn-api: {{ instance_count: 1 }} }}\n  prod:\n    providers: {{ local: {{ root: .mlops/prod }} }}\n    endpoints: {{ churn-api: {{ instance_count: 4, traffic: {{ canary_percent: 5 }} }} }}\n"
        ),
    );
    env.commit("environments");
    env
}

#[test]
fn each_environment_has_its_overrides_and_its_own_lineage() {
    let env = staged();
    env.mlops(&["--env", "staging", "apply", "--auto-approve"]).ok();
    let ep: serde_json::Value = serde_json::from_str(&env.read(".mlops/staging/endpoints/churn-api.json")).unwrap();
    assert_eq!(ep["spec"]["replicas"], 1);
    assert!(!env.join(".mlops/prod").exists());
    let refs = env.git(&["for-each-ref", "--format=%(refname)", "refs/mlops/"]);
    assert_eq!(refs.trim(), "refs/mlops/lineage/quickstart/staging");

    let prod = env.mlops(&["--env", "prod", "plan", "--json"]).ok();
    let prod: serde_json::Value = serde_json::from_str(&prod.stdout).unwrap();
    assert_eq!(prod["environment"], "prod");
    assert_eq!(prod["lineage"]["ref"], "refs/mlops/lineage/quickstart/prod");
    assert_eq!(prod["summary"]["create"], 4, "prod has its own, empty lineage");
    let ep = prod["changes"].as_array().unwrap().iter().find(|c| c["address"] == "endpoints.churn-api").unwrap();
    assert_eq!(ep["desired"]["replicas"], 4);
    assert_eq!(ep["desired"]["canary_percent"], 5);
    env.mlops(&["--env", "prod", "apply", "--auto-approve"]).ok();
    assert!(env.mlops(&["--env", "staging", "plan"]).ok().stdout.contains("No changes."));
    assert_eq!(env.lineage_of("quickstart", "prod").len(), 1);
    assert_eq!(env.lineage_of("quickstart", "staging").len(), 1);
}

#[test]
fn unknown_environments_and_overrides_are_errors() {
    let env = staged();
    let run = env.mlops(&["--env", "qa", "validate"]);
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("spec::unknown_environment"), "{}", run.stderr);
    assert!(run.stderr.contains("declared: prod, staging"), "{}", run.stderr);

    let spec = env.read("mlops.yaml");
    env.write(
        "mlops.yaml",
        &spec.replace(
            "endpoints: { churn-api: { instance_count: 1 } }",
            "endpoints: { churn-apii: { instance_count: 1 } }",
        ),
    );
    let run = env.mlops(&["--env", "staging", "validate"]);
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("spec::unknown_override"), "{}", run.stderr);
    let bad = env.mlops(&["--env", "Prod!", "plan"]);
    assert_eq!(bad.status, 1);
}
