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

#[test]
fn promote_plans_exactly_the_version_differences_between_two_lineages() {
    let env = staged();
    env.mlops(&["--env", "staging", "apply", "--auto-approve"]).ok();
    env.mlops(&["--env", "prod", "apply", "--auto-approve"]).ok();
    // A new model and new data reach staging only.
    env.write("model/churn-clf.json", "{\"retrained\": 2}\n");
    env.write("data/train/2026-12.csv", "customer_id,tenure_months,monthly_spend,churned\nc-9,1,9.9,1\n");
    env.commit("v2");
    env.mlops(&["--env", "staging", "apply", "--auto-approve"]).ok();
    let staging_model: serde_json::Value = serde_json::from_str(
        &env.git(&["show", "refs/mlops/lineage/quickstart/staging:resources/models/churn-clf.json"]),
    )
    .unwrap();
    // Work goes on: the source moves past what staging tested.
    env.write("model/churn-clf.json", "{\"retrained\": 3, \"untested\": true}\n");

    let run = env.mlops(&["promote", "staging", "prod", "--json", "--out", "promote.json"]).ok();
    let plan: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(plan["environment"], "prod");
    assert_eq!(plan["promotion"]["from"], "staging");
    let changed: Vec<(&str, &str)> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] != "no-op")
        .map(|c| (c["address"].as_str().unwrap(), c["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        changed,
        [("datasets.churn-train", "update"), ("models.churn-clf", "update"), ("endpoints.churn-api", "update")]
    );
    let model = plan["changes"].as_array().unwrap().iter().find(|c| c["address"] == "models.churn-clf").unwrap();
    assert_eq!(
        model["desired"]["artifact_digest"], staging_model["attributes"]["artifact_digest"],
        "staging's version, not the source's"
    );
    let ep = plan["changes"].as_array().unwrap().iter().find(|c| c["address"] == "endpoints.churn-api").unwrap();
    let paths: Vec<&str> = ep["attributes"].as_array().unwrap().iter().map(|a| a["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["model_digest"], "prod keeps its own replicas and canary");

    // The local provider can only ship what the source holds: the apply refuses the untested bytes.
    let run = env.mlops(&["--env", "prod", "apply", "promote.json"]);
    assert_eq!(run.status, 1);
    env.write("model/churn-clf.json", "{\"retrained\": 2}\n");
    env.mlops(&["promote", "staging", "prod", "--out", "promote.json"]).ok();
    env.mlops(&["--env", "prod", "apply", "promote.json"]).ok();
    let prod_model: serde_json::Value =
        serde_json::from_str(&env.git(&["show", "refs/mlops/lineage/quickstart/prod:resources/models/churn-clf.json"]))
            .unwrap();
    assert_eq!(prod_model["attributes"]["artifact_digest"], staging_model["attributes"]["artifact_digest"]);
    assert!(env.mlops(&["promote", "staging", "prod"]).ok().stdout.contains("No changes."));
}

#[test]
fn environment_names_and_directories_are_checked_by_the_argument_parser() {
    let env = crate::common::TestEnv::quickstart();
    for (args, why) in [
        (vec!["--env", "Prod!", "plan"], "invalid value 'Prod!' for '--env <NAME>': environment names are 1 to 63"),
        (vec!["promote", "staging", "PROD"], "invalid value 'PROD' for '<TO>': environment names are 1 to 63"),
        (vec!["-C", "nowhere", "plan"], "invalid value 'nowhere' for '-C <DIR>': no such directory"),
    ] {
        let run = env.mlops(&args);
        assert_eq!(run.status, 1, "a usage error, never 2 (changes): {args:?}\n{}", run.stderr);
        assert!(run.stderr.contains(why), "{args:?} names the value and the option: {}", run.stderr);
    }
    // Nothing was planned or recorded by any of them.
    assert!(env.lineage("quickstart").is_empty());
}
