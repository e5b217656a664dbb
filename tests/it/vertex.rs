//! The Vertex AI test service (`scripts/services up vertex`, scripts/vertex_server.py), generated
//! from Google's discovery document `aiplatform.v1.json`. Checked through Google's own
//! discovery-based Python client (`googleapiclient.discovery`), built from the same document and
//! pointed at the service: what it sends is what Google's client would send to Vertex AI.

use std::process::Command;

use serde_json::Value;

/// Runs `code` with `ai` (the discovery client), `loc` (a location) and `wait(op)` against the
/// test service; the last line printed is JSON.
pub(crate) fn vertex(code: &str) -> Value {
    let python = crate::common::service("MLOPS_TEST_VERTEX_PYTHON", None, "vertex");
    let url = crate::common::service("VERTEX_ENDPOINT", None, "vertex");
    let script = format!(
        "import json, os, time, httplib2, googleapiclient\n\
         from googleapiclient import discovery\nfrom googleapiclient.errors import HttpError\n\
         doc = open(os.path.join(os.path.dirname(googleapiclient.__file__), 'discovery_cache/documents/aiplatform.v1.json')).read()\n\
         ai = discovery.build_from_document(doc, http=httplib2.Http(), client_options={{'api_endpoint': {url:?}}})\n\
         loc = 'projects/test/locations/us-central1'\n\
         def wait(op):\n    while not op.get('done'):\n        time.sleep(0.1)\n        \
         op = ai.projects().locations().operations().get(name=op['name']).execute()\n    return op\n\
         def error(call):\n    try:\n        call.execute()\n        return None\n    \
         except HttpError as e:\n        return json.loads(e.content)['error']\n\
         {code}"
    );
    let out = Command::new(python).args(["-c", &script]).output().expect("python runs");
    assert!(out.status.success(), "python failed:\n{script}\n{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("null")).unwrap_or(Value::Null)
}

#[test]
#[ignore = "needs the Vertex AI test service: `eval \"$(scripts/services up vertex)\"`, then `cargo test -- --include-ignored`"]
fn the_service_refuses_what_the_discovery_document_does_not_allow() {
    let e = vertex(
        "eps = ai.projects().locations().endpoints()\n\
         out = {\n\
           'unknown_field': error(eps.create(parent=loc, body={'displayName': 'e', 'trafficSplitt': {}})),\n\
           'wrong_type': error(eps.create(parent=loc, body={'displayName': 5})),\n\
           'nested_unknown': error(eps.create(parent=loc, body={'displayName': 'e', 'encryptionSpec': {'kmsKey': 'k'}})),\n\
           'bad_enum': error(ai.projects().locations().models().upload(parent=loc, body={'model': {'displayName': 'm', \
             'containerSpec': {'imageUri': 'i'}, 'supportedDeploymentResourcesTypes': ['NOT_A_TYPE']}})),\n\
           'missing': error(eps.get(name=loc + '/endpoints/404404')),\n\
         }\n\
         wait(eps.create(parent=loc, endpointId='9001', body={'displayName': 'twice'}).execute())\n\
         out['duplicate'] = error(eps.create(parent=loc, endpointId='9001', body={'displayName': 'twice'}))\n\
         print(json.dumps(out))",
    );
    for (case, status) in [
        ("unknown_field", "INVALID_ARGUMENT"),
        ("wrong_type", "INVALID_ARGUMENT"),
        ("nested_unknown", "INVALID_ARGUMENT"),
        ("bad_enum", "INVALID_ARGUMENT"),
        ("missing", "NOT_FOUND"),
        ("duplicate", "ALREADY_EXISTS"),
    ] {
        assert_eq!(e[case]["status"], status, "{case}: {}", e[case]);
    }
    assert_eq!(e["unknown_field"]["code"], 400);
    assert!(
        e["unknown_field"]["message"].as_str().unwrap().contains("Unknown name \"trafficSplitt\""),
        "{}",
        e["unknown_field"]
    );
    assert!(
        e["nested_unknown"]["message"].as_str().unwrap().contains("at 'encryptionSpec'"),
        "{}",
        e["nested_unknown"]
    );
}

#[test]
#[ignore = "needs the Vertex AI test service: `eval \"$(scripts/services up vertex)\"`, then `cargo test -- --include-ignored`"]
fn models_endpoints_and_deployments_behave_as_long_running_operations() {
    let r = vertex(
        "ms, eps = ai.projects().locations().models(), ai.projects().locations().endpoints()\n\
         spec = {'displayName': 'churn', 'artifactUri': 'gs://b/churn/v1/', 'containerSpec': {'imageUri': 'img:1'}}\n\
         op = ms.upload(parent=loc, body={'model': spec}).execute()\n\
         first_done = op['done']\n\
         up = wait(op)['response']\n\
         v2 = wait(ms.upload(parent=loc, body={'parentModel': up['model'], 'model': dict(spec, artifactUri='gs://b/churn/v2/', versionAliases=['champion'])}).execute())['response']\n\
         model = ms.get(name=up['model']).execute()\n\
         v1 = ms.get(name=up['model'] + '@1').execute()\n\
         ep = wait(eps.create(parent=loc, body={'displayName': 'api'}).execute())['response']['name']\n\
         res = lambda m: {'machineSpec': {'machineType': m}, 'minReplicaCount': 1, 'maxReplicaCount': 2}\n\
         d1 = wait(eps.deployModel(endpoint=ep, body={'deployedModel': {'model': up['model'] + '@1', 'dedicatedResources': res('n1-standard-2')}, 'trafficSplit': {'0': 100}}).execute())\n\
         first = d1['response']['deployedModel']['id']\n\
         d2 = wait(eps.deployModel(endpoint=ep, body={'deployedModel': {'model': up['model'], 'dedicatedResources': res('n1-standard-2')}, 'trafficSplit': {'0': 90, first: 10}}).execute())\n\
         second = d2['response']['deployedModel']['id']\n\
         split = eps.get(name=ep).execute()['trafficSplit']\n\
         busy = error(eps.undeployModel(endpoint=ep, body={'deployedModelId': second}))\n\
         wait(eps.undeployModel(endpoint=ep, body={'deployedModelId': first, 'trafficSplit': {second: 100}}).execute())\n\
         wait(eps.mutateDeployedModel(endpoint=ep, body={'deployedModel': {'id': second, 'dedicatedResources': {'minReplicaCount': 2, 'maxReplicaCount': 4}}, \
           'updateMask': 'dedicatedResources.minReplicaCount,dedicatedResources.maxReplicaCount'}).execute())\n\
         after = eps.get(name=ep).execute()\n\
         stockout = wait(eps.deployModel(endpoint=ep, body={'deployedModel': {'model': up['model'], 'dedicatedResources': res('a2-megagpu-16g')}}).execute())\n\
         not_empty = error(eps.delete(name=ep))\n\
         print(json.dumps({'first_done': first_done, 'up': up, 'v2': v2, 'model': model, 'v1': v1, 'split': split, 'first': first,\n\
           'second': second, 'busy': busy, 'after': after, 'stockout': stockout, 'not_empty': not_empty}))",
    );
    assert_eq!(r["first_done"], false, "a mutation answers an unfinished operation");
    assert_eq!(r["up"]["modelVersionId"], "1");
    assert_eq!(r["v2"]["modelVersionId"], "2");
    assert_eq!(r["v2"]["model"], r["up"]["model"], "a new version of the same model");
    assert_eq!(r["model"]["versionId"], "2", "the newest version is the default");
    assert_eq!(r["model"]["versionAliases"], serde_json::json!(["default", "champion"]));
    assert_eq!(r["v1"]["artifactUri"], "gs://b/churn/v1/");
    let (first, second) = (r["first"].as_str().unwrap(), r["second"].as_str().unwrap());
    assert_eq!(r["split"][first], 10);
    assert_eq!(r["split"][second], 90);
    assert_eq!(r["busy"]["status"], "INVALID_ARGUMENT", "undeploying a model that still serves needs a new split");
    let deployed = r["after"]["deployedModels"].as_array().unwrap();
    assert_eq!(deployed.len(), 1);
    assert_eq!(deployed[0]["id"], second);
    assert_eq!(deployed[0]["dedicatedResources"]["minReplicaCount"], 2);
    assert_eq!(deployed[0]["dedicatedResources"]["maxReplicaCount"], 4);
    assert_eq!(r["after"]["trafficSplit"], serde_json::json!({ second: 100 }));
    assert_eq!(r["stockout"]["error"]["code"], 8, "RESOURCE_EXHAUSTED: {}", r["stockout"]);
    assert_eq!(r["not_empty"]["status"], "FAILED_PRECONDITION");
}

/// A committed stack with one GCS-pinned model registered in Vertex AI, on both test services.
#[cfg(feature = "gcp")]
struct VertexStack {
    env: crate::common::TestEnv,
    gcs: String,
    url: String,
    bucket: String,
}

#[cfg(feature = "gcp")]
impl VertexStack {
    fn new() -> VertexStack {
        use crate::gcp::{emulator, put_object, unique, versioned_bucket};
        let gcs = emulator();
        let url = crate::common::service("VERTEX_ENDPOINT", None, "vertex");
        let bucket = unique("vx");
        versioned_bucket(&gcs, &bucket);
        put_object(&gcs, &bucket, "churn/model.bst", "weights v1");
        let env = crate::common::TestEnv::new();
        env.write(
            "mlops.yaml",
            &format!(
                "version: 1\nproject: vx\nproviders:\n  gcp: {{ project: test, region: us-central1 }}\nmodels:\n  \
                 churn:\n    artifact: gs://{bucket}/churn/model.bst\n    framework: xgboost\n    \
                 image: us-docker.pkg.dev/vertex-ai/prediction/xgboost-cpu.1-7:latest\n    labels: {{ team: ml }}\n    \
                 vertex: {{ display_name: churn-{bucket}, aliases: [champion] }}\n"
            ),
        );
        env.commit("vertex stack");
        VertexStack { env, gcs, url, bucket }
    }

    fn mlops(&self, args: &[&str]) -> crate::common::Run {
        self.env.mlops_env(args, &[("STORAGE_EMULATOR_HOST", &self.gcs), ("VERTEX_ENDPOINT", &self.url)])
    }

    /// The Vertex model mlops recorded, as Google's client reads it: its default version and v1.
    fn model(&self) -> Value {
        let rec: Value =
            serde_json::from_str(&self.env.git(&["show", "refs/mlops/lineage/vx/default:resources/models/churn.json"]))
                .unwrap();
        let name = rec["outputs"]["vertex_model"].as_str().expect("the Vertex model is recorded").to_string();
        vertex(&format!(
            "ms = ai.projects().locations().models()\n\
             got = error(ms.get(name={name:?}))\n\
             if got and got.get('status') == 'NOT_FOUND':\n    print('null'); raise SystemExit\n\
             print(json.dumps({{'default': ms.get(name={name:?}).execute(), 'v1': ms.get(name={name:?} + '@1').execute()}}))"
        ))
    }
}

#[cfg(feature = "gcp")]
#[test]
#[ignore = "needs fake-gcs-server and the Vertex AI test service: `eval \"$(scripts/services up gcp vertex)\"`, then `cargo test -- --include-ignored`"]
fn a_model_goes_to_the_vertex_registry_and_new_bytes_are_a_new_version() {
    let s = VertexStack::new();
    let run = s.mlops(&["apply", "--auto-approve"]).ok();
    assert!(run.stdout.contains("uploading Vertex model churn"), "{}", run.stdout);
    let m = s.model();
    let d = &m["default"];
    assert_eq!(d["versionId"], "1");
    assert_eq!(d["displayName"], format!("churn-{}", s.bucket));
    assert_eq!(d["artifactUri"], format!("gs://{}/churn/", s.bucket), "the artifact's folder");
    assert_eq!(d["containerSpec"]["imageUri"], "us-docker.pkg.dev/vertex-ai/prediction/xgboost-cpu.1-7:latest");
    assert_eq!(d["versionAliases"], serde_json::json!(["default", "champion"]));
    assert_eq!((d["labels"]["team"].as_str(), d["labels"]["mlops-project"].as_str()), (Some("ml"), Some("vx")));
    let plan = s.mlops(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status, 0, "{}{}", plan.stdout, plan.stderr);

    // New bytes behind the same URI: a new version of the same model, the default now; v1 kept.
    crate::gcp::put_object(&s.gcs, &s.bucket, "churn/model.bst", "weights v2");
    let run = s.mlops(&["apply", "--auto-approve"]).ok();
    assert!(run.stdout.contains("uploading a new version of Vertex model"), "{}", run.stdout);
    let m = s.model();
    assert_eq!(m["default"]["versionId"], "2");
    assert_eq!(m["default"]["name"], m["v1"]["name"], "the same model");
    assert_eq!(m["default"]["versionAliases"], serde_json::json!(["default", "champion"]));
    assert_eq!(m["v1"]["versionAliases"], serde_json::json!([]), "the aliases moved to the new version");
    let rec: Value =
        serde_json::from_str(&s.env.git(&["show", "refs/mlops/lineage/vx/default:resources/models/churn.json"]))
            .unwrap();
    assert_eq!(rec["outputs"]["vertex_version"], "2", "{rec}");

    // Labels changed in the console: drift, and the next apply puts them back in place.
    let name = m["default"]["name"].as_str().unwrap().to_string();
    vertex(&format!(
        "ai.projects().locations().models().patch(name={name:?}, updateMask='labels', body={{'labels': \
         {{'team': 'someone-else', 'managed-by': 'mlops', 'mlops-project': 'vx', 'mlops-source': {:?}}}}}).execute()\nprint('null')",
        m["default"]["labels"]["mlops-source"].as_str().unwrap()
    ));
    let plan = s.mlops(&["plan"]);
    assert!(plan.stdout.contains("changed outside mlops"), "{}", plan.stdout);
    assert!(plan.stdout.contains("vertex.labels.team"), "{}", plan.stdout);
    s.mlops(&["apply", "--auto-approve"]).ok();
    let m = s.model();
    assert_eq!(m["default"]["labels"]["team"], "ml");
    assert_eq!(m["default"]["versionId"], "2", "in place, no new version");

    // Removed from the spec: the Vertex model this stack uploaded is deleted.
    s.env.write("mlops.yaml", "version: 1\nproject: vx\nproviders:\n  gcp: { project: test }\n");
    s.env.commit("remove");
    s.mlops(&["apply", "--auto-approve"]).ok();
    let gone = vertex(&format!("print(json.dumps(error(ai.projects().locations().models().get(name={name:?}))))"));
    assert_eq!(gone["status"], "NOT_FOUND", "{gone}");
}
