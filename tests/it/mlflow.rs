//! The MLflow provider against a real MLflow tracking server (`scripts/services up mlflow`, which
//! exports MLFLOW_TRACKING_URI). Every check goes through MLflow's own Python client
//! (`mlflow.MlflowClient`), never through mlops's reads.

use std::process::Command;

use serde_json::Value;

use crate::common::TestEnv;
use crate::gcp::unique;

const IGNORE: &str =
    "needs an MLflow server: `eval \"$(scripts/services up mlflow)\"`, then `cargo test -- --include-ignored`";

/// Runs `code` with MlflowClient as `c` against the test server; its last line printed is JSON.
pub(crate) fn mlflow(code: &str) -> Value {
    let python = crate::common::service("MLOPS_TEST_MLFLOW_PYTHON", None, "mlflow");
    let uri = crate::common::service("MLFLOW_TRACKING_URI", None, "mlflow");
    let script = format!(
        "import json, mlflow\nfrom mlflow import MlflowClient\nc = MlflowClient(tracking_uri={uri:?}, registry_uri={uri:?})\n{code}"
    );
    let out =
        Command::new(python).args(["-c", &script]).env("MLFLOW_TRACKING_URI", &uri).output().expect("python runs");
    assert!(out.status.success(), "python failed:\n{script}\n{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    crate::common::printed_json(&text, "the MLflow client")
}

/// The registered model as MLflow's client sees it: description, tags, aliases and versions.
pub(crate) fn registered(name: &str) -> Value {
    mlflow(&format!(
        "from mlflow.exceptions import MlflowException\n\
         try:\n    m = c.get_registered_model({name:?})\n\
         except MlflowException:\n    print('null'); raise SystemExit\n\
         vs = c.search_model_versions(\"name='{name}'\")\n\
         print(json.dumps({{'description': m.description, 'tags': m.tags, 'aliases': m.aliases,\n\
           'versions': {{v.version: {{'source': v.source, 'tags': v.tags}} for v in vs}}}}))"
    ))
}

struct Registry {
    env: TestEnv,
    name: String,
    uri: String,
}

impl Registry {
    fn new() -> Registry {
        let env = TestEnv::new();
        let name = unique("churn");
        let uri = crate::common::service("MLFLOW_TRACKING_URI", None, "mlflow");
        env.write("model/model.pkl", "weights v1");
        env.write(
            "mlops.yaml",
            &format!(
                "version: 1\nproject: reg\nproviders:\n  mlflow: {{ tracking_uri: {uri} }}\n\
                 models:\n  churn:\n    provider: mlflow\n    registered_model: {name}\n    artifact: ./model/model.pkl\n\
                 \x20   description: churn classifier\n    aliases: [champion]\n    labels: {{ team: growth }}\n\
                 \x20   version_tags: {{ framework: xgboost }}\n"
            ),
        );
        env.commit("spec");
        Registry { env, name, uri }
    }

    fn mlops(&self, args: &[&str]) -> crate::common::Run {
        self.env.mlops(args)
    }
}

#[test]
#[ignore = "needs an MLflow server: `eval \"$(scripts/services up mlflow)\"`, then `cargo test -- --include-ignored`"]
fn registers_a_model_version_and_alias_then_new_bytes_add_a_version() {
    let _ = IGNORE;
    let r = Registry::new();
    let run = r.mlops(&["apply", "--auto-approve"]).ok();
    assert!(run.stdout.contains("Apply complete! Resources: 1 added"), "{}", run.stdout);
    let m = registered(&r.name);
    assert_eq!(m["description"], "churn classifier");
    assert_eq!(m["tags"]["team"], "growth");
    assert_eq!(m["tags"]["mlops.project"], "reg", "marked as this stack's");
    assert_eq!(m["aliases"], serde_json::json!({"champion": "1"}));
    assert_eq!(m["versions"]["1"]["tags"]["framework"], "xgboost");
    // The version's bytes, downloaded by MLflow's own client from its source.
    let source = m["versions"]["1"]["source"].as_str().unwrap().to_string();
    assert!(source.starts_with("mlflow-artifacts:/mlops/reg/"), "{source}");
    let bytes = mlflow(&format!(
        "import os, tempfile\nd = mlflow.artifacts.download_artifacts(artifact_uri={source:?}, dst_path=tempfile.mkdtemp())\n\
         print(json.dumps(open(os.path.join(d, 'model.pkl')).read()))"
    ));
    assert_eq!(bytes, "weights v1");
    let record: Value =
        serde_json::from_str(&r.env.git(&["show", "refs/mlops/lineage/reg/default:resources/models/churn.json"]))
            .unwrap();
    assert_eq!(record["outputs"]["version"], 1, "{record}");
    assert!(record["attributes"]["artifact_digest"].as_str().unwrap().starts_with("sha256:"));

    let plan = r.mlops(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status, 0, "no changes after apply: {}{}", plan.stdout, plan.stderr);

    // New bytes: a new version, the alias moves to it, the old version stays.
    r.env.write("model/model.pkl", "weights v2");
    r.env.commit("v2");
    let plan = r.mlops(&["plan"]).ok();
    assert!(plan.stdout.contains("~ models.churn # will be updated in place"), "{}", plan.stdout);
    assert!(plan.stdout.contains("model-version-change"), "{}", plan.stdout);
    r.mlops(&["apply", "--auto-approve"]).ok();
    let m = registered(&r.name);
    assert_eq!(m["aliases"], serde_json::json!({"champion": "2"}));
    assert_eq!(m["versions"].as_object().unwrap().len(), 2, "version 1 is kept: {m}");
    assert_eq!(r.mlops(&["plan", "--detailed-exitcode"]).status, 0);
}

#[test]
#[ignore = "needs an MLflow server: `eval \"$(scripts/services up mlflow)\"`, then `cargo test -- --include-ignored`"]
fn an_alias_moved_by_hand_is_drift_and_makes_a_saved_plan_stale() {
    let r = Registry::new();
    r.mlops(&["apply", "--auto-approve"]).ok();
    r.env.write("model/model.pkl", "weights v2");
    r.env.commit("v2");
    r.mlops(&["apply", "--auto-approve"]).ok();
    r.env.write("model/model.pkl", "weights v3");
    r.env.commit("v3");
    r.mlops(&["plan", "--out", "saved.json"]).ok();

    // Someone points champion back at version 1 and edits a version tag.
    mlflow(&format!(
        "c.set_registered_model_alias({0:?}, 'champion', '1')\nc.set_model_version_tag({0:?}, '2', 'framework', 'sklearn')\nprint('null')",
        r.name
    ));
    let stale = r.mlops(&["apply", "saved.json"]);
    assert_eq!(stale.status, 1, "{}{}", stale.stdout, stale.stderr);
    assert!(stale.stderr.contains("stale"), "{}", stale.stderr);
    assert_eq!(registered(&r.name)["versions"].as_object().unwrap().len(), 2, "nothing registered");

    r.env.write("model/model.pkl", "weights v2");
    let plan = r.mlops(&["plan", "--json"]).ok();
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    let change = crate::common::change(&plan, "models.churn");
    assert_eq!(change["action"], "update", "{change}");
    let paths = crate::common::paths(change);
    assert!(paths.iter().any(|p| p.starts_with("aliases")), "{paths:?}");
    assert!(paths.iter().any(|p| p.starts_with("version_tags")), "{paths:?}");
    r.mlops(&["apply", "--auto-approve"]).ok();
    let m = registered(&r.name);
    assert_eq!(m["aliases"]["champion"], "2");
    assert_eq!(m["versions"]["2"]["tags"]["framework"], "xgboost");
}

#[test]
#[ignore = "needs an MLflow server: `eval \"$(scripts/services up mlflow)\"`, then `cargo test -- --include-ignored`"]
fn rollback_points_the_alias_back_without_registering_again() {
    let r = Registry::new();
    r.mlops(&["apply", "--auto-approve"]).ok();
    let first = r.env.lineage("reg")[0].clone();
    r.env.write("model/model.pkl", "weights v2");
    r.env.commit("v2");
    r.mlops(&["apply", "--auto-approve"]).ok();
    assert_eq!(registered(&r.name)["aliases"]["champion"], "2");

    let run = r.mlops(&["rollback", &first, "--out", "rb.json"]).ok();
    assert!(run.stdout.contains("[rollback]"), "{}", run.stdout);
    r.mlops(&["apply", "rb.json"]).ok();
    let m = registered(&r.name);
    assert_eq!(m["aliases"]["champion"], "1", "{m}");
    assert_eq!(m["versions"].as_object().unwrap().len(), 2, "no version registered for the rollback: {m}");
}

#[test]
#[ignore = "needs an MLflow server: `eval \"$(scripts/services up mlflow)\"`, then `cargo test -- --include-ignored`"]
fn someone_elses_model_is_not_adopted_but_can_be_imported_and_deletes_are_ours_only() {
    let r = Registry::new();
    // A registered model of the same name, made by hand with MLflow's client.
    mlflow(&format!(
        "c.create_registered_model({0:?}, description='by hand')\n\
         v = c.create_model_version({0:?}, 's3://elsewhere/model', tags={{'framework': 'xgboost'}})\n\
         c.set_registered_model_alias({0:?}, 'champion', v.version)\nprint('null')",
        r.name
    ));
    let refused = r.mlops(&["apply", "--auto-approve"]);
    assert_ne!(refused.status, 0);
    let text = format!("{}{}", refused.stdout, refused.stderr);
    assert!(text.contains("not created by this stack"), "{text}");
    let m = registered(&r.name);
    assert_eq!(m["versions"].as_object().unwrap().len(), 1, "nothing registered: {m}");
    assert_eq!(m["description"], "by hand");

    let run = r.mlops(&["import", "models.churn", &r.name]).ok();
    assert!(run.stdout.contains("models.churn"), "{}", run.stdout);
    let plan = r.mlops(&["plan", "--json"]).ok();
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    let change = crate::common::change(&plan, "models.churn");
    assert_eq!(change["action"], "update", "an imported model is updated, not created: {change}");
    r.mlops(&["apply", "--auto-approve"]).ok();
    let m = registered(&r.name);
    assert_eq!(m["description"], "churn classifier");
    assert_eq!(m["aliases"]["champion"], "2", "{m}");

    // Removed from the spec: deleted, now that it is marked as this stack's.
    r.env.write(
        "mlops.yaml",
        &format!("version: 1\nproject: reg\nproviders:\n  mlflow: {{ tracking_uri: {} }}\n", r.uri),
    );
    r.env.commit("remove");
    // Deleting a registered model deletes its versions: data-destroying, refused without the flag.
    let plan = r.mlops(&["plan"]).ok();
    assert!(plan.stdout.contains("[data-destroying"), "{}", plan.stdout);
    assert!(
        plan.stdout.contains(&format!("deletes registered model {} and every version in it", r.name)),
        "{}",
        plan.stdout
    );
    let refused = r.mlops(&["apply", "--auto-approve"]);
    assert_eq!(refused.status, 1, "{}", refused.stdout);
    assert!(refused.stderr.contains("--allow-data-loss"), "{}", refused.stderr);
    assert_eq!(registered(&r.name)["versions"].as_object().unwrap().len(), 2, "nothing deleted");
    r.mlops(&["apply", "--auto-approve", "--allow-data-loss"]).ok();
    assert_eq!(registered(&r.name), Value::Null, "deleted");
}

/// A run logged by MLflow's own client: two parameters, an input dataset and the model file.
/// Returns its id and the dataset digest MLflow computed.
fn training_run(model_file: &std::path::Path) -> (String, String) {
    let run = mlflow(&format!(
        "import pandas as pd\n\
         with mlflow.start_run(run_name='train-churn') as r:\n\
         \x20   mlflow.log_params({{'lr': 0.1, 'depth': 6}})\n\
         \x20   ds = mlflow.data.from_pandas(pd.DataFrame({{'a': [1, 2]}}), source='s3://bucket/train.csv', name='training-data')\n\
         \x20   mlflow.log_input(ds, context='training')\n\
         \x20   mlflow.log_artifact({:?})\n\
         print(json.dumps({{'id': r.info.run_id, 'digest': c.get_run(r.info.run_id).inputs.dataset_inputs[0].dataset.digest}}))",
        model_file.to_string_lossy()
    ));
    (run["id"].as_str().unwrap().to_string(), run["digest"].as_str().unwrap().to_string())
}

fn produced_by_spec(reference: &str) -> String {
    let uri = crate::common::service("MLFLOW_TRACKING_URI", None, "mlflow");
    format!(
        "version: 1\nproject: runs\nproviders:\n  local: {{ root: .mlops/local }}\n  mlflow: {{ tracking_uri: {uri} }}\n\
         datasets:\n  training-data: {{ provider: local, source: ./data }}\n\
         models:\n  churn:\n    provider: local\n    artifact: ./model/model.bin\n\
         \x20   trained_on: [datasets.training-data]\n    produced_by: {reference}\n\
         endpoints:\n  churn-api: {{ provider: local, model: models.churn }}\n"
    )
}

#[test]
#[ignore = "needs an MLflow server: `eval \"$(scripts/services up mlflow)\"`, then `cargo test -- --include-ignored`"]
fn a_model_produced_by_a_run_records_the_run_and_graphs_run_model_endpoint() {
    let env = TestEnv::new();
    env.write("data/train.csv", "a\n1\n2\n");
    env.write("model/model.bin", "weights from the run");
    let (run_id, dataset_digest) = training_run(&env.join("model/model.bin"));
    env.write("mlops.yaml", &produced_by_spec(&format!("mlflow://runs/{run_id}/model.bin")));
    env.commit("spec");

    let plan = env.mlops(&["plan"]).ok();
    assert!(plan.stdout.contains("produced_by"), "the plan shows the run: {}", plan.stdout);
    env.mlops(&["apply", "--auto-approve"]).ok();
    let record: Value =
        serde_json::from_str(&env.git(&["show", "refs/mlops/lineage/runs/default:resources/models/churn.json"]))
            .unwrap();
    let run = &record["attributes"]["produced_by"];
    assert_eq!(run["run_id"], run_id.as_str(), "{record}");
    assert_eq!(run["status"], "FINISHED");
    assert_eq!(run["name"], "train-churn");
    // The parameters' digest: sha256 of `key=value` lines, sorted, as MLflow's client lists them.
    let params = mlflow(&format!(
        "import hashlib\np = sorted(f'{{k}}={{v}}' for k, v in c.get_run({run_id:?}).data.params.items())\n\
         print(json.dumps('sha256:' + hashlib.sha256('\\n'.join(p).encode()).hexdigest()))"
    ));
    assert_eq!(run["params_digest"], params);
    assert_eq!(run["inputs"][0]["name"], "training-data");
    assert_eq!(run["inputs"][0]["digest"], dataset_digest.as_str());
    assert_eq!(run["inputs"][0]["source"], "s3://bucket/train.csv");
    assert_eq!(run["artifact"]["sha256"], record["attributes"]["artifact_digest"], "the logged file is the artifact");
    assert_eq!(env.mlops(&["plan", "--detailed-exitcode"]).status, 0, "the run recorded, nothing to change");

    let graph: Value = serde_json::from_str(&env.mlops(&["graph", "--format", "json"]).ok().stdout).unwrap();
    let edge = |from: &str, to: &str| {
        graph["edges"].as_array().unwrap().iter().find(|e| e["from"] == from && e["to"] == to).cloned()
    };
    let node = format!("mlflow://runs/{run_id}");
    let produced = edge(&node, "models.churn").unwrap_or_else(|| panic!("run → model: {graph}"));
    assert_eq!(produced["relation"], "produced");
    assert_eq!(produced["version"], params);
    assert_eq!(edge("models.churn", "endpoints.churn-api").unwrap()["relation"], "serves");
    assert_eq!(edge("datasets.training-data", "models.churn").unwrap()["relation"], "trained_on");
    let run_node = graph["nodes"].as_array().unwrap().iter().find(|n| n["address"] == node.as_str()).cloned();
    assert_eq!(run_node.unwrap()["kind"], "run");
    let mermaid = env.mlops(&["graph"]).ok().stdout;
    assert!(
        mermaid.contains(&format!("mlflow___runs_{run_id}[\"mlflow://runs/{run_id}<br/>run train-churn\"]")),
        "{mermaid}"
    );

    let audit = env.mlops(&["audit", "export"]).ok().stdout;
    let line =
        audit.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).find(|l| l["address"] == "models.churn");
    assert_eq!(line.unwrap()["produced_by"], node.as_str(), "{audit}");

    // A new run with new bytes, then a rollback: the first run comes back with its artifact.
    let first = env.lineage("runs")[0].clone();
    env.write("model/model.bin", "weights from the second run");
    let (second, _) = training_run(&env.join("model/model.bin"));
    env.write("mlops.yaml", &produced_by_spec(&format!("mlflow://runs/{second}/model.bin")));
    env.commit("retrained");
    env.mlops(&["apply", "--auto-approve"]).ok();
    let run_of = |env: &TestEnv| -> Value {
        let text = env.git(&["show", "refs/mlops/lineage/runs/default:resources/models/churn.json"]);
        serde_json::from_str::<Value>(&text).unwrap()["attributes"]["produced_by"]["run_id"].clone()
    };
    assert_eq!(run_of(&env), second.as_str());
    env.mlops(&["rollback", &first, "--out", "rollback.json"]).ok();
    env.mlops(&["apply", "rollback.json"]).ok();
    assert_eq!(run_of(&env), run_id.as_str(), "the recorded run is restored with its artifact");
}

#[test]
#[ignore = "needs an MLflow server: `eval \"$(scripts/services up mlflow)\"`, then `cargo test -- --include-ignored`"]
fn a_model_whose_artifact_is_not_what_its_run_logged_is_refused_at_the_line() {
    let env = TestEnv::new();
    env.write("data/train.csv", "a\n1\n");
    env.write("model/model.bin", "weights from the run");
    let (run_id, _) = training_run(&env.join("model/model.bin"));
    // Bytes swapped after training: not what the run logged.
    env.write("model/model.bin", "other weights");
    env.write("mlops.yaml", &produced_by_spec(&format!("mlflow://runs/{run_id}/model.bin")));
    env.commit("spec");
    let refused = env.mlops(&["apply", "--auto-approve"]);
    assert_eq!(refused.status, 1, "{}{}", refused.stdout, refused.stderr);
    let text = crate::common::flat(&refused.stderr);
    assert!(text.contains("is not the file the run logged"), "{text}");
    assert!(text.contains("mlops.yaml:13"), "at the line of produced_by: {text}");
    assert!(env.lineage("runs").is_empty(), "nothing applied");
    assert!(!env.join(".mlops/local").exists(), "nothing created");

    // A run still running, a run that does not exist and a file it did not log: each refused.
    let running = mlflow("r = c.create_run('0')\nprint(json.dumps(r.info.run_id))");
    for (reference, says) in [
        (format!("mlflow://runs/{}", running.as_str().unwrap()), "is RUNNING"),
        ("mlflow://runs/0123456789abcdef".to_string(), "has no run"),
        (format!("mlflow://runs/{run_id}/missing.bin"), "logged no artifact `missing.bin`"),
    ] {
        env.write("mlops.yaml", &produced_by_spec(&reference));
        let refused = env.mlops(&["plan"]);
        assert_eq!(refused.status, 1, "{reference}: {}{}", refused.stdout, refused.stderr);
        assert!(crate::common::flat(&refused.stderr).contains(says), "{reference}: {}", refused.stderr);
    }
}
