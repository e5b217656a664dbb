//! `produced_by: dagster://ASSET/KEY` against a real Dagster webserver (`scripts/services up
//! dagster`, which exports DAGSTER_URL, DAGSTER_HOME and MLOPS_TEST_DAGSTER): the test
//! materializes its own assets with Dagster's CLI into the webserver's instance, and checks what
//! mlops records against Dagster's own Python API (`DagsterInstance`), not mlops's reads.

use serde_json::Value;

use crate::common::{TestEnv, flat, service};

/// Two assets with data versions: the training data, and the model trained on it, which writes
/// `model.bin` beside the spec and logs its sha256 as metadata.
const DEFS: &str = r#"import hashlib, pathlib
from dagster import asset, Definitions, DataVersion, Output

@asset(code_version="1")
def training_data():
    data = pathlib.Path("data.csv").read_bytes()
    return Output(data, data_version=DataVersion(hashlib.sha256(data).hexdigest()))

@asset(code_version="1", key_prefix=["churn"])
def model(training_data):
    weights = b"weights for " + training_data
    pathlib.Path("model.bin").write_bytes(weights)
    return Output(weights, metadata={"sha256": hashlib.sha256(weights).hexdigest()})

defs = Definitions(assets=[training_data, model])
"#;

fn dagster(env: &TestEnv, args: &[&str]) -> String {
    let bin = service("MLOPS_TEST_DAGSTER", None, "dagster");
    let out = std::process::Command::new(&bin).args(args).current_dir(env.path()).output().expect("dagster runs");
    assert!(out.status.success(), "dagster {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What Dagster's own instance says of `key`'s latest materialization: its run id and the input
/// data version it recorded for `training_data`.
fn latest(env: &TestEnv, key: &[&str]) -> (String, String) {
    let bin = service("MLOPS_TEST_DAGSTER", None, "dagster");
    let python = std::path::Path::new(&bin).with_file_name("python");
    let script = format!(
        "import json\nfrom dagster import DagsterInstance, AssetKey\ni = DagsterInstance.get()\n\
         e = i.get_latest_materialization_event(AssetKey({key:?}))\n\
         print(json.dumps([e.run_id, e.asset_materialization.tags['dagster/input_data_version/training_data']]))"
    );
    let out = std::process::Command::new(python).args(["-c", &script]).current_dir(env.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = crate::common::printed_json(&String::from_utf8_lossy(&out.stdout), "dagster");
    (v[0].as_str().unwrap().to_string(), v[1].as_str().unwrap().to_string())
}

const SPEC: &str = "version: 1\nproject: runs\nproviders:\n  local: { root: .mlops/local }\n  dagster: {}\n\
                    models:\n  churn:\n    artifact: ./model.bin\n    produced_by: dagster://churn/model\n";

#[test]
#[ignore = "needs a Dagster webserver: `eval \"$(scripts/services up dagster)\"`, then `cargo test -- --include-ignored`"]
fn a_model_produced_by_a_dagster_asset_records_its_materialization_run_and_inputs() {
    let env = TestEnv::new();
    let url = service("DAGSTER_URL", None, "dagster");
    // As a user has it after `scripts/services up dagster`: the webserver from DAGSTER_URL.
    let mlops = |args: &[&str]| env.mlops_env(args, &[("DAGSTER_URL", url.as_str())]);
    env.write("defs.py", DEFS);
    env.write("model.bin", "not trained yet");
    env.write("data.csv", "id,x\n1,2\n");
    env.write("mlops.yaml", SPEC);
    env.write(".gitignore", "__pycache__/\n");
    // Not materialized yet (a unique key per test run would need unique defs: this key may exist
    // from an earlier run on a shared instance, so the refusal is checked on another key).
    env.write("other.yaml", &SPEC.replace("dagster://churn/model", "dagster://never/materialized"));
    let refused = mlops(&["plan", "--file", "other.yaml"]);
    assert_eq!(refused.status, 1, "{}{}", refused.stdout, refused.stderr);
    assert!(flat(&refused.stderr).contains("has no materialization of asset"), "{}", refused.stderr);

    dagster(&env, &["asset", "materialize", "-f", "defs.py", "--select", "*"]);
    env.commit("a model Dagster made");
    let (run_id, input_version) = latest(&env, &["churn", "model"]);
    mlops(&["apply", "--auto-approve"]).ok();
    let record: Value =
        serde_json::from_str(&env.git(&["show", "refs/mlops/lineage/runs/default:resources/models/churn.json"]))
            .unwrap();
    let run = &record["attributes"]["produced_by"];
    assert_eq!(run["run_id"], run_id.as_str(), "{record}");
    assert_eq!(run["status"], "FINISHED", "Dagster's SUCCESS");
    assert_eq!(run["inputs"][0]["name"], "training_data", "{run}");
    assert_eq!(run["inputs"][0]["digest"], input_version.as_str());
    assert_eq!(
        run["artifact"]["sha256"], record["attributes"]["artifact_digest"],
        "the logged digest is the artifact's"
    );
    assert_eq!(run["link"], format!("{url}/runs/{run_id}"));
    assert_eq!(mlops(&["plan", "--detailed-exitcode"]).status, 0, "recorded, nothing to change");
    let graph: Value = serde_json::from_str(&mlops(&["graph", "--format", "json"]).ok().stdout).unwrap();
    let node = format!("dagster://churn/model@{run_id}");
    assert!(
        graph["edges"].as_array().unwrap().iter().any(|e| e["from"] == node.as_str() && e["to"] == "models.churn"),
        "run → model: {graph}"
    );

    // Bytes that are not what the materialization logged: refused at plan, nothing applied.
    let applies = env.lineage("runs").len();
    env.write("model.bin", "weights from somewhere else");
    let refused = mlops(&["apply", "--auto-approve"]);
    assert_eq!(refused.status, 1, "{}", refused.stdout);
    assert!(flat(&refused.stderr).contains("is not the file the run logged"), "{}", refused.stderr);
    assert_eq!(env.lineage("runs").len(), applies);
}
