//! `mlops stacks`: the stacks of a repository built in the test (a training stack and a serving
//! stack with two environments, and a spec Git ignores), and which of them a change affects.

use serde_json::{Value, json};

use crate::common::TestEnv;

fn repo() -> (TestEnv, String) {
    let env = TestEnv::new();
    env.write(
        "training/mlops.yaml",
        "version: 1\nproject: training\nproviders:\n  local: {}\ndatasets:\n  train: { source: ./data }\n\
         models:\n  churn: { artifact: ../artifacts/churn.json, trained_on: [datasets.train] }\n",
    );
    env.write("training/data/a.csv", "id,x\n1,2\n");
    env.write("artifacts/churn.json", "{\"weights\": [1]}\n");
    env.write(
        "serving/mlops.yaml",
        "version: 1\nproject: serving\nproviders:\n  local: {}\nmodels:\n  m: { artifact: file://model.json }\n\
         endpoints:\n  api: { model: models.m }\nenvironments:\n  prod: { endpoints: { api: { instance_count: 2 } } }\n",
    );
    env.write("serving/model.json", "{}\n");
    env.write("scratch/mlops.yaml", "version: 1\nproject: scratch\n");
    env.write(".gitignore", "scratch/\n");
    env.commit("two stacks");
    let base = env.git(&["rev-parse", "HEAD"]).trim().to_string();
    (env, base)
}

fn stacks(env: &TestEnv, args: &[&str]) -> Value {
    let mut all = vec!["stacks", "--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&env.mlops(&all).ok().stdout).unwrap()
}

fn ids(v: &Value) -> Vec<&str> {
    v.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect()
}

#[test]
fn every_spec_git_tracks_is_a_stack_per_environment_and_ignored_ones_are_not() {
    let (env, _) = repo();
    let all = stacks(&env, &[]);
    assert_eq!(ids(&all), ["serving:default", "serving:prod", "training:default"]);
    assert_eq!(
        all[2],
        json!({ "id": "training:default", "spec": "training/mlops.yaml", "project": "training", "environment": "default" })
    );
    // The same from a subfolder: ids are from the repository root.
    let sub = serde_json::from_str::<Value>(&env.mlops(&["-C", "serving", "stacks", "--json"]).ok().stdout).unwrap();
    assert_eq!(ids(&sub), ids(&all));
    let text = env.mlops(&["stacks"]).ok().stdout;
    assert!(text.contains("training:default  (project training, training/mlops.yaml)"), "{text}");
}

#[test]
fn changed_lists_only_the_stacks_whose_spec_or_inputs_changed_with_the_files() {
    let (env, base) = repo();
    assert_eq!(stacks(&env, &["--changed", "--base", &base]), json!([]), "nothing changed");
    let none = env.mlops(&["stacks", "--changed", "--base", &base]).ok().stdout;
    assert!(none.contains("No stack is affected."), "{none}");

    // A dataset file of the training stack, committed: training only, naming the file.
    env.write("training/data/b.csv", "id,x\n3,4\n");
    env.commit("more data");
    let changed = stacks(&env, &["--changed", "--base", &base]);
    assert_eq!(ids(&changed), ["training:default"]);
    assert_eq!(changed[0]["reasons"], json!(["training/data/b.csv"]));

    // An artifact outside the stack's folder it reads, uncommitted: still training.
    env.write("artifacts/churn.json", "{\"weights\": [2]}\n");
    let changed = stacks(&env, &["--changed", "--base", &base]);
    assert_eq!(changed[0]["reasons"], json!(["artifacts/churn.json", "training/data/b.csv"]));

    // The serving spec: both of its environments; a file no stack reads affects none.
    env.write("serving/mlops.yaml", &env.read("serving/mlops.yaml").replace("instance_count: 2", "instance_count: 3"));
    env.write("README.md", "notes\n");
    let changed = stacks(&env, &["--changed", "--base", &base]);
    assert_eq!(ids(&changed), ["serving:default", "serving:prod", "training:default"]);
    assert_eq!(changed[0]["reasons"], json!(["serving/mlops.yaml"]));
}

#[test]
fn a_base_git_does_not_know_is_a_clear_error() {
    let (env, _) = repo();
    let run = env.mlops(&["stacks", "--changed", "--base", "no-such-branch"]);
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(run.stderr.contains("stacks::git"), "{}", run.stderr);
    assert!(run.stderr.contains("no-such-branch"), "{}", run.stderr);
}
