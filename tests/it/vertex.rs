//! The Vertex AI test service (`scripts/services up vertex`, scripts/vertex_server.py), generated
//! from Google's discovery document `aiplatform.v1.json`. Checked through Google's own
//! discovery-based Python client (`googleapiclient.discovery`), built from the same document and
//! pointed at the service: what it sends is what Google's client would send to Vertex AI.

use std::process::Command;

use serde_json::{Value, json};

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
    crate::common::printed_json(&text, "the Vertex client")
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
         eid = 'twice-' + str(time.time_ns())\n\
         wait(eps.create(parent=loc, endpointId=eid, body={'displayName': 'twice'}).execute())\n\
         out['duplicate'] = error(eps.create(parent=loc, endpointId=eid, body={'displayName': 'twice'}))\n\
         # What Vertex AI refuses beyond the schemas (Google's reference pages).\n\
         ms, fgs = ai.projects().locations().models(), ai.projects().locations().featureGroups()\n\
         out['required_display_name'] = error(eps.create(parent=loc, body={}))\n\
         out['required_big_query'] = error(fgs.create(parent=loc, featureGroupId='g' + str(time.time_ns()), body={}))\n\
         out['missing_parent'] = error(fgs.features().create(parent=loc + '/featureGroups/nope', featureId='f', body={}))\n\
         out['bad_id'] = error(eps.create(parent=loc, endpointId='Bad-Id!', body={'displayName': 'x'}))\n\
         out['int32_overflow'] = error(ms.upload(parent=loc, body={'model': {'displayName': 'm', 'containerSpec': \
           {'imageUri': 'i', 'ports': [{'containerPort': 2 ** 40}]}}}))\n\
         out['inflight'] = error(eps.create(parent=loc, endpointId=eid + 'b', body={'displayName': 'a'}).execute() and \
           eps.create(parent=loc, endpointId=eid + 'b', body={'displayName': 'b'}))\n\
         ep = loc + '/endpoints/' + eid\n\
         out['bad_mask'] = error(eps.patch(name=ep, updateMask='nonsense_field,name', body={'displayName': 'x'}))\n\
         out['name_kept'] = eps.get(name=ep).execute()['displayName']\n\
         up = wait(ms.upload(parent=loc, body={'model': {'displayName': 'm', 'artifactUri': 'gs://b/m/', \
           'containerSpec': {'imageUri': 'i'}}}).execute())['response']['model']\n\
         out['deploy_without_resources'] = error(eps.deployModel(endpoint=ep, body={'deployedModel': {'model': up}}))\n\
         res = {'machineSpec': {'machineType': 'n1-standard-2'}, 'minReplicaCount': 1}\n\
         d = wait(eps.deployModel(endpoint=ep, body={'deployedModel': {'model': up, 'dedicatedResources': res}}).execute())\n\
         did = d['response']['deployedModel']['id']\n\
         out['delete_deployed_model'] = error(ms.delete(name=up))\n\
         out['undeploy_ghost'] = error(eps.undeployModel(endpoint=ep, body={'deployedModelId': did, 'trafficSplit': {'ghost': 100}}))\n\
         out['deploy_metadata'] = d['metadata']['@type']\n\
         g = 'g' + str(time.time_ns())\n\
         op = fgs.create(parent=loc, featureGroupId=g, body={'bigQuery': {'bigQuerySource': {'inputUri': 'bq://p.d.t'}}}).execute()\n\
         out['create_metadata'] = op['metadata']['@type']\n\
         label = 'l' + str(time.time_ns())\n\
         wait(eps.create(parent=loc, body={'displayName': 'labelled', 'labels': {'team': label}}).execute())\n\
         out['filtered'] = [e['displayName'] for e in eps.list(parent=loc, filter='labels.team=' + label).execute().get('endpoints', [])]\n\
         print(json.dumps(out))",
    );
    for (case, status) in [
        ("required_display_name", "INVALID_ARGUMENT"),
        ("required_big_query", "INVALID_ARGUMENT"),
        ("missing_parent", "NOT_FOUND"),
        ("bad_id", "INVALID_ARGUMENT"),
        ("int32_overflow", "INVALID_ARGUMENT"),
        ("inflight", "ALREADY_EXISTS"),
        ("bad_mask", "INVALID_ARGUMENT"),
        ("deploy_without_resources", "INVALID_ARGUMENT"),
        ("delete_deployed_model", "FAILED_PRECONDITION"),
        ("undeploy_ghost", "INVALID_ARGUMENT"),
    ] {
        assert_eq!(e[case]["status"], status, "{case}: {}", e[case]);
    }
    assert_eq!(e["delete_deployed_model"]["code"], 400, "Google answers FAILED_PRECONDITION with 400");
    assert_eq!(e["name_kept"], "twice", "a refused mask changes nothing");
    assert!(
        e["deploy_metadata"].as_str().unwrap().ends_with(".DeployModelOperationMetadata"),
        "{}",
        e["deploy_metadata"]
    );
    assert!(
        e["create_metadata"].as_str().unwrap().ends_with(".CreateFeatureGroupOperationMetadata"),
        "{}",
        e["create_metadata"]
    );
    assert_eq!(e["filtered"], json!(["labelled"]), "list honours filter");
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

/// Where googleapiclient checks a request itself before sending it (a path parameter's pattern, a
/// required parameter, a parameter the method does not have, an enum, an integer), the service
/// refuses the same request sent raw, as Vertex AI's front end does for clients that do not
/// check. Request bodies googleapiclient sends unchecked: the cases of the test above all reached
/// the service (they came back as HttpError, not as the client's TypeError).
#[test]
#[ignore = "needs the Vertex AI test service: `eval \"$(scripts/services up vertex)\"`, then `cargo test -- --include-ignored`"]
fn the_service_refuses_what_googleapiclient_refuses_before_sending() {
    let url = crate::common::service("VERTEX_ENDPOINT", None, "vertex");
    let r = vertex(&format!(
        "eps, fgs = ai.projects().locations().endpoints(), ai.projects().locations().featureGroups()\n\
         def client(call):\n    try:\n        call()\n        return None\n    \
         except (TypeError, ValueError) as e:\n        return str(e)\n\
         def raw(verb, path):\n    resp, content = httplib2.Http().request({url:?} + path, verb)\n    \
         return {{'code': resp.status, 'status': json.loads(content)['error']['status'] if resp.status >= 400 else None}}\n\
         cases = {{\n\
           'pattern': (lambda: eps.get(name='endpoints/x'), ('GET', '/v1/endpoints/x')),\n\
           'required': (lambda: eps.list(), ('GET', '/v1/projects/test/locations//endpoints')),\n\
           'unknown': (lambda: eps.list(parent=loc, colour='red'), ('GET', '/v1/' + loc + '/endpoints?colour=red')),\n\
           'enum': (lambda: eps.list(parent=loc, alt='xml'), ('GET', '/v1/' + loc + '/endpoints?alt=xml')),\n\
           'integer': (lambda: eps.list(parent=loc, pageSize='ten'), ('GET', '/v1/' + loc + '/endpoints?pageSize=ten')),\n\
         }}\n\
         out = {{k: {{'client': client(c), 'service': raw(*req)}} for k, (c, req) in cases.items()}}\n\
         # googleapiclient casts without a range check: the service alone refuses an int32 overflow\n\
         # or a boolean that is neither true nor false.\n\
         out['range'] = {{'client': client(lambda: eps.list(parent=loc, pageSize=2 ** 40)), 'service': error(eps.list(parent=loc, pageSize=2 ** 40))}}\n\
         out['boolean'] = raw('DELETE', '/v1/' + loc + '/featureGroups/g?force=maybe')\n\
         out['fine'] = raw('GET', '/v1/' + loc + '/endpoints?pageSize=5&alt=json&%24.xgafv=2')\n\
         # Google's generated REST clients (the Rust one among them) ask for enums as numbers.\n\
         out['enum_encoding'] = raw('GET', '/v1/' + loc + '/endpoints?%24alt=json%3Benum-encoding%3Dint')\n\
         print(json.dumps(out))"
    ));
    for (case, said, status) in [
        ("pattern", "does not match the pattern", "NOT_FOUND"),
        ("required", "Missing required parameter", "NOT_FOUND"),
        ("unknown", "unexpected keyword argument", "INVALID_ARGUMENT"),
        ("enum", "is not an allowed value", "INVALID_ARGUMENT"),
        ("integer", "invalid literal for int()", "INVALID_ARGUMENT"),
    ] {
        let client =
            r[case]["client"].as_str().unwrap_or_else(|| panic!("{case}: googleapiclient sent it: {}", r[case]));
        assert!(client.contains(said), "{case}: googleapiclient said {client}");
        assert_eq!(r[case]["service"]["status"], status, "{case}: {}", r[case]);
    }
    assert_eq!(r["range"]["client"], Value::Null, "googleapiclient sends 2**40");
    assert_eq!(r["range"]["service"]["status"], "INVALID_ARGUMENT", "{}", r["range"]);
    assert_eq!(r["boolean"]["status"], "INVALID_ARGUMENT", "{}", r["boolean"]);
    assert_eq!(r["fine"]["code"], 200, "{}", r["fine"]);
    assert_eq!(r["enum_encoding"]["code"], 200, "{}", r["enum_encoding"]);
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
    /// The stack's project (unique per test: Vertex names are made from it).
    project: String,
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
        let project = bucket.replace('-', "");
        let env = crate::common::TestEnv::new();
        env.write(
            "mlops.yaml",
            &format!(
                "version: 1\nproject: {project}\nimages: {{ pin: tag }}\nproviders:\n  gcp: {{ project: test, region: us-central1 }}\nmodels:\n  \
                 churn:\n    artifact: gs://{bucket}/churn/model.bst\n    framework: xgboost\n    \
                 image: us-docker.pkg.dev/vertex-ai/prediction/xgboost-cpu.1-7:latest\n    labels: {{ team: ml }}\n    \
                 vertex: {{ display_name: churn-{bucket}, aliases: [champion] }}\n"
            ),
        );
        env.commit("vertex stack");
        VertexStack { env, gcs, url, bucket, project }
    }

    fn mlops(&self, args: &[&str]) -> crate::common::Run {
        self.env.mlops_env(args, &[("STORAGE_EMULATOR_HOST", &self.gcs), ("VERTEX_ENDPOINT", &self.url)])
    }

    /// Appends `yaml` to the committed spec and commits it; returns the spec before.
    fn append(&self, yaml: &str) -> String {
        let spec = self.env.read("mlops.yaml");
        self.env.write("mlops.yaml", &format!("{spec}{yaml}"));
        self.env.commit("append");
        spec
    }

    /// The Vertex model mlops recorded, as Google's client reads it: its default version and v1.
    fn model(&self) -> Value {
        let rec: Value = serde_json::from_str(
            &self
                .env
                .git(&["show", &format!("refs/mlops/lineage/{}/default:resources/models/churn.json", self.project)]),
        )
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
    assert!(run.stdout.contains(&format!("uploading Vertex model {}-churn", s.project)), "{}", run.stdout);
    let m = s.model();
    let d = &m["default"];
    assert_eq!(d["versionId"], "1");
    assert_eq!(d["displayName"], format!("churn-{}", s.bucket));
    assert_eq!(d["artifactUri"], format!("gs://{}/churn/", s.bucket), "the artifact's folder");
    assert_eq!(d["containerSpec"]["imageUri"], "us-docker.pkg.dev/vertex-ai/prediction/xgboost-cpu.1-7:latest");
    assert_eq!(d["versionAliases"], serde_json::json!(["default", "champion"]));
    assert_eq!(
        (d["labels"]["team"].as_str(), d["labels"]["mlops-project"].as_str()),
        (Some("ml"), Some(s.project.as_str()))
    );
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
    let rec: Value = serde_json::from_str(
        &s.env.git(&["show", &format!("refs/mlops/lineage/{}/default:resources/models/churn.json", s.project)]),
    )
    .unwrap();
    assert_eq!(rec["outputs"]["vertex_version"], "2", "{rec}");

    // Labels changed in the console: drift, and the next apply puts them back in place.
    let name = m["default"]["name"].as_str().unwrap().to_string();
    vertex(&format!(
        "ai.projects().locations().models().patch(name={name:?}, updateMask='labels', body={{'labels': \
         {{'team': 'someone-else', 'managed-by': 'mlops', 'mlops-project': {:?}, 'mlops-source': {:?}}}}}).execute()\nprint('null')",
        s.project,
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
    s.env.write("mlops.yaml", &format!("version: 1\nproject: {}\nproviders:\n  gcp: {{ project: test }}\n", s.project));
    s.env.commit("remove");
    // Deleting a Vertex model deletes every version in it: tagged, and refused without the flag.
    let refused = s.mlops(&["apply", "--auto-approve"]);
    assert_eq!(refused.status, 1, "{}{}", refused.stdout, refused.stderr);
    assert!(refused.stdout.contains("[data-destroying"), "{}", refused.stdout);
    assert!(refused.stderr.contains("--allow-data-loss"), "{}", refused.stderr);
    let kept = vertex(&format!("print(json.dumps(ai.projects().locations().models().get(name={name:?}).execute()))"));
    assert_eq!(kept["name"], name.as_str(), "nothing deleted: {kept}");
    s.mlops(&["apply", "--auto-approve", "--allow-data-loss"]).ok();
    let gone = vertex(&format!("print(json.dumps(error(ai.projects().locations().models().get(name={name:?}))))"));
    assert_eq!(gone["status"], "NOT_FOUND", "{gone}");
}

#[cfg(feature = "gcp")]
#[test]
#[ignore = "needs fake-gcs-server and the Vertex AI test service: `eval \"$(scripts/services up gcp vertex)\"`, then `cargo test -- --include-ignored`"]
fn a_vertex_endpoint_moves_to_a_new_version_new_first_and_records_a_failed_deploy() {
    let s = VertexStack::new();
    let spec = s.append(
        "endpoints:\n  api:\n    model: models.churn\n    instance_type: n1-standard-2\n    \
             instance_count: 1\n    max_replicas: 2\n    labels: { team: ml }\n",
    );
    s.mlops(&["apply", "--auto-approve"]).ok();
    let name = format!("projects/test/locations/us-central1/endpoints/{}-api", s.project);
    let endpoint = |_: &VertexStack| {
        vertex(&format!("print(json.dumps(ai.projects().locations().endpoints().get(name={name:?}).execute()))"))
    };
    let e = endpoint(&s);
    let deployed = e["deployedModels"].as_array().unwrap();
    assert_eq!(deployed.len(), 1, "{e}");
    let first = deployed[0]["id"].as_str().unwrap().to_string();
    assert_eq!(deployed[0]["modelVersionId"], "1");
    assert_eq!(deployed[0]["dedicatedResources"]["machineSpec"]["machineType"], "n1-standard-2");
    assert_eq!(e["trafficSplit"], serde_json::json!({ first.clone(): 100 }));
    assert_eq!(e["labels"]["mlops-project"], s.project.as_str());
    let plan = s.mlops(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status, 0, "{}{}", plan.stdout, plan.stderr);

    // New bytes: a new model version, deployed next to the old with all the traffic, then the
    // old one undeployed (in that order in the output).
    crate::gcp::put_object(&s.gcs, &s.bucket, "churn/model.bst", "weights v2");
    let plan = s.mlops(&["plan", "--json"]).ok();
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    let c = crate::common::change(&plan, "endpoints.api");
    assert_eq!(c["action"], "update");
    assert_eq!(crate::common::paths(c), ["serving"]);
    let run = s.mlops(&["apply", "--auto-approve"]).ok();
    let (deploy, undeploy) =
        (run.stdout.find("deploying ").unwrap(), run.stdout.find("undeploying the previous").unwrap_or(0));
    assert!(deploy < undeploy, "the new version serves before the old one goes:\n{}", run.stdout);
    let e = endpoint(&s);
    let deployed = e["deployedModels"].as_array().unwrap();
    assert_eq!(deployed.len(), 1, "{e}");
    assert_eq!(deployed[0]["modelVersionId"], "2");
    let second = deployed[0]["id"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert_eq!(e["trafficSplit"], serde_json::json!({ second.clone(): 100 }));

    // Replicas only: the same deployed model, mutated in place.
    s.env.write(
        "mlops.yaml",
        &s.env
            .read("mlops.yaml")
            .replace("instance_count: 1\n    max_replicas: 2", "instance_count: 2\n    max_replicas: 3"),
    );
    s.env.commit("replicas");
    let run = s.mlops(&["apply", "--auto-approve"]).ok();
    assert!(run.stdout.contains("in place"), "{}", run.stdout);
    let e = endpoint(&s);
    assert_eq!(e["deployedModels"][0]["id"], second.as_str());
    assert_eq!(e["deployedModels"][0]["dedicatedResources"]["minReplicaCount"], 2);
    assert_eq!(e["deployedModels"][0]["dedicatedResources"]["maxReplicaCount"], 3);

    // A machine type out of stock: the deployment's operation fails, the apply says so, lineage
    // records the endpoint as it is (still serving the old deployment), and the plan after the
    // spec is fixed has nothing to do.
    s.env.write(
        "mlops.yaml",
        &s.env.read("mlops.yaml").replace("instance_type: n1-standard-2", "instance_type: a2-megagpu-16g"),
    );
    s.env.commit("stockout");
    let run = s.mlops(&["apply", "--auto-approve"]);
    assert_ne!(run.status, 0, "{}", run.stdout);
    assert!(
        run.stdout.contains("not available") || run.stderr.contains("not available"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    let message = s.env.git(&["log", "-1", "--format=%B", &format!("refs/mlops/lineage/{}/default", s.project)]);
    assert!(message.contains("Result: partial"), "{message}");
    assert_eq!(
        endpoint(&s)["trafficSplit"],
        serde_json::json!({ second.clone(): 100 }),
        "the old deployment still serves"
    );
    s.env.write(
        "mlops.yaml",
        &s.env.read("mlops.yaml").replace("instance_type: a2-megagpu-16g", "instance_type: n1-standard-2"),
    );
    s.env.commit("fixed");
    let plan = s.mlops(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status, 0, "{}{}", plan.stdout, plan.stderr);

    // Someone else deploys a model and takes 30% of the traffic: drift on the split, put back.
    let model = endpoint(&s)["deployedModels"][0]["model"].as_str().unwrap().to_string();
    vertex(&format!(
        "wait(ai.projects().locations().endpoints().deployModel(endpoint={name:?}, \
         body={{'deployedModel': {{'model': {model:?}, 'displayName': 'manual', 'dedicatedResources': {{'machineSpec': \
         {{'machineType': 'n1-standard-2'}}, 'minReplicaCount': 1, 'maxReplicaCount': 1}}}}, \
         'trafficSplit': {{'0': 30, {second:?}: 70}}}}).execute())\nprint('null')"
    ));
    let plan = s.mlops(&["plan"]);
    assert!(plan.stdout.contains("changed outside mlops"), "{}", plan.stdout);
    assert!(plan.stdout.contains("traffic"), "{}", plan.stdout);
    s.mlops(&["apply", "--auto-approve"]).ok();
    assert_eq!(endpoint(&s)["trafficSplit"][second.as_str()], 100);

    // Removed from the spec: undeployed and deleted.
    s.env.write("mlops.yaml", &spec);
    s.env.commit("no endpoint");
    s.mlops(&["apply", "--auto-approve"]).ok();
    let gone = vertex(&format!("print(json.dumps(error(ai.projects().locations().endpoints().get(name={name:?}))))"));
    assert_eq!(gone["status"], "NOT_FOUND", "{gone}");
}

#[cfg(feature = "gcp")]
#[test]
#[ignore = "needs fake-gcs-server and the Vertex AI test service: `eval \"$(scripts/services up gcp vertex)\"`, then `cargo test -- --include-ignored`"]
fn a_vertex_model_and_endpoint_made_elsewhere_are_imported_and_adopted() {
    let s = VertexStack::new();
    // Made with Google's client, outside mlops.
    let made = vertex(&format!(
        "ms, eps = ai.projects().locations().models(), ai.projects().locations().endpoints()\n\
         up = wait(ms.upload(parent=loc, body={{'model': {{'displayName': 'by-hand', 'artifactUri': 'gs://{b}/churn/', \
           'containerSpec': {{'imageUri': 'us-docker.pkg.dev/vertex-ai/prediction/xgboost-cpu.1-7:latest'}}}}}}).execute())['response']\n\
         ep = wait(eps.create(parent=loc, endpointId='byhand-{p}', body={{'displayName': 'by-hand'}}).execute())['response']['name']\n\
         print(json.dumps({{'model': up['model'], 'endpoint': ep}}))",
        b = s.bucket,
        p = s.project
    ));
    let (model, endpoint) = (made["model"].as_str().unwrap(), made["endpoint"].as_str().unwrap());
    s.append("endpoints:\n  api:\n    model: models.churn\n    instance_type: n1-standard-2\n");
    s.mlops(&["import", "models.churn", model]).ok();
    s.mlops(&["import", "endpoints.api", &format!("byhand-{}", s.project)]).ok();
    let rec = |what: &str| -> Value {
        serde_json::from_str(
            &s.env.git(&["show", &format!("refs/mlops/lineage/{}/default:resources/{what}.json", s.project)]),
        )
        .unwrap()
    };
    assert_eq!(rec("models/churn")["outputs"]["vertex_model"], model);
    assert_eq!(rec("endpoints/api")["outputs"]["endpoint"], endpoint);
    // Labelled as this stack's (through Google's client), so mlops may now change and delete them.
    let labels = vertex(&format!(
        "print(json.dumps([ai.projects().locations().models().get(name={model:?}).execute()['labels'], \
         ai.projects().locations().endpoints().get(name={endpoint:?}).execute()['labels']]))"
    ));
    assert_eq!(labels[0]["mlops-project"], s.project.as_str());
    assert_eq!(labels[1]["mlops-project"], s.project.as_str());
    // The next apply brings them to the spec: the same endpoint (not a new one) now serves.
    s.mlops(&["apply", "--auto-approve"]).ok();
    let e =
        vertex(&format!("print(json.dumps(ai.projects().locations().endpoints().get(name={endpoint:?}).execute()))"));
    assert_eq!(e["deployedModels"].as_array().unwrap().len(), 1, "{e}");
    assert_eq!(e["deployedModels"][0]["model"], model);
    let plan = s.mlops(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status, 0, "{}{}", plan.stdout, plan.stderr);
}

#[cfg(feature = "gcp")]
#[test]
#[ignore = "needs fake-gcs-server and the Vertex AI test service: `eval \"$(scripts/services up gcp vertex)\"`, then `cargo test -- --include-ignored`"]
fn the_vertex_example_applies_converges_and_is_destroyed() {
    use crate::gcp::{emulator, put_object, unique, versioned_bucket};
    let (gcs, url) = (emulator(), crate::common::service("VERTEX_ENDPOINT", None, "vertex"));
    let env = crate::common::TestEnv::new();
    crate::common::copy_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gcp-vertex"), env.path());
    let (models, project) = (unique("acme-ml-models"), unique("churn-vertex").replace('-', ""));
    let spec = env
        .read("mlops.yaml")
        .replace("gs://acme-ml-models/", &format!("gs://{models}/"))
        .replace("project: churn-vertex", &format!("project: {project}"));
    env.write("mlops.yaml", &spec);
    env.commit("example");
    versioned_bucket(&gcs, &models);
    put_object(&gcs, &models, "churn/model.bst", "xgboost weights");
    let with = [("STORAGE_EMULATOR_HOST", gcs.as_str()), ("VERTEX_ENDPOINT", url.as_str())];
    // Policies see the Vertex endpoint's machine type and replicas like any other endpoint's.
    env.write("mlops.yaml", &format!("{spec}policies:\n  allowed_instance_types: [n1-standard-2]\n"));
    let check = env.mlops_env(&["check"], &with);
    assert_eq!(check.status, 3, "{}{}", check.stdout, check.stderr);
    assert!(
        check.stderr.contains("policy::instance_type") && check.stderr.contains("n1-standard-4"),
        "{}",
        check.stderr
    );
    env.write("mlops.yaml", &spec);
    let run = env.mlops_env(&["apply", "--auto-approve"], &with).ok();
    assert!(run.stdout.contains("Apply complete! Resources: 2 added"), "{}", run.stdout);
    assert!(env.mlops_env(&["plan"], &with).ok().stdout.contains("No changes."));
    let e = vertex(&format!(
        "print(json.dumps(ai.projects().locations().endpoints().get(name='projects/acme-ml/locations/us-central1/endpoints/{project}-churn-api').execute()))"
    ));
    assert_eq!(e["deployedModels"][0]["dedicatedResources"]["machineSpec"]["machineType"], "n1-standard-4");
    assert_eq!(e["deployedModels"][0]["dedicatedResources"]["maxReplicaCount"], 3);
    env.write("mlops.yaml", &format!("version: 1\nproject: {project}\nproviders:\n  gcp: {{ project: acme-ml }}\n"));
    env.commit("destroy");
    let run = env.mlops_env(&["apply", "--auto-approve", "--allow-data-loss"], &with).ok();
    assert!(run.stdout.contains("2 destroyed"), "{}", run.stdout);
}

#[cfg(feature = "gcp")]
#[test]
#[ignore = "needs fake-gcs-server and the Vertex AI test service: `eval \"$(scripts/services up gcp vertex)\"`, then `cargo test -- --include-ignored`"]
fn a_model_uploaded_but_not_recorded_is_adopted_and_someone_elses_is_refused() {
    let s = VertexStack::new();
    // As an apply killed right after the upload leaves it: this stack's model under its id.
    let upload = |project: &str| {
        vertex(&format!(
            "up = wait(ai.projects().locations().models().upload(parent=loc, body={{'modelId': '{p}-churn', 'model': \
             {{'displayName': 'x', 'artifactUri': 'gs://{b}/churn/', 'containerSpec': {{'imageUri': 'i'}}, \
             'labels': {{'mlops-project': {project:?}}}}}}}).execute())['response']\nprint(json.dumps(up))",
            p = s.project,
            b = s.bucket
        ))
    };
    let made = upload(&s.project);
    let run = s.mlops(&["apply", "--auto-approve"]).ok();
    assert!(
        run.stdout.contains("uploading a new version of Vertex model"),
        "adopted, not uploaded again:\n{}",
        run.stdout
    );
    assert_eq!(s.model()["default"]["name"], made["model"]);

    // Someone else's model under the id a new stack would use: refused, pointing at import.
    let other = VertexStack::new();
    vertex(&format!(
        "wait(ai.projects().locations().models().upload(parent=loc, body={{'modelId': '{p}-churn', 'model': \
         {{'displayName': 'theirs', 'artifactUri': 'gs://b/x/', 'containerSpec': {{'imageUri': 'i'}}, \
         'labels': {{'mlops-project': 'someone-else'}}}}}}).execute())\nprint('null')",
        p = other.project
    ));
    let run = other.mlops(&["apply", "--auto-approve"]);
    assert_ne!(run.status, 0, "{}", run.stdout);
    assert!(run.stdout.contains("is not this stack's") && run.stdout.contains("mlops import"), "{}", run.stdout);
}

#[cfg(feature = "gcp")]
#[test]
#[ignore = "needs fake-gcs-server and the Vertex AI test service: `eval \"$(scripts/services up gcp vertex)\"`, then `cargo test -- --include-ignored`"]
fn a_vertex_canary_keeps_the_previous_version_until_promoted() {
    let s = VertexStack::new();
    s.append("endpoints:\n  api:\n    model: models.churn\n    instance_type: n1-standard-2\n    traffic: { canary_percent: 20 }\n");
    s.mlops(&["apply", "--auto-approve"]).ok();
    let name = format!("projects/test/locations/us-central1/endpoints/{}-api", s.project);
    let endpoint =
        || vertex(&format!("print(json.dumps(ai.projects().locations().endpoints().get(name={name:?}).execute()))"));
    let split = |e: &Value| -> Vec<(String, i64)> {
        let mut v: Vec<(String, i64)> = e["deployedModels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["modelVersionId"].as_str().unwrap().to_string(),
                    e["trafficSplit"][d["id"].as_str().unwrap()].as_i64().unwrap_or(0),
                )
            })
            .collect();
        v.sort();
        v
    };
    // The first version has nothing to share with: all the traffic, and nothing left to do.
    assert_eq!(split(&endpoint()), [("1".to_string(), 100)]);
    let plan = s.mlops(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status, 0, "{}{}", plan.stdout, plan.stderr);

    // A new version is the canary: 20%, the previous one keeps 80%.
    crate::gcp::put_object(&s.gcs, &s.bucket, "churn/model.bst", "weights v2");
    s.mlops(&["apply", "--auto-approve"]).ok();
    assert_eq!(split(&endpoint()), [("1".to_string(), 80), ("2".to_string(), 20)]);
    let plan = s.mlops(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status, 0, "the canary is what the spec asks for:\n{}{}", plan.stdout, plan.stderr);

    // Promotion: `canary_percent` leaves the spec; the new version takes all, the old one goes.
    s.env.write("mlops.yaml", &s.env.read("mlops.yaml").replace("    traffic: { canary_percent: 20 }\n", ""));
    s.env.commit("promote");
    let plan = s.mlops(&["plan", "--json"]).ok();
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(crate::common::paths(crate::common::change(&plan, "endpoints.api")), ["traffic"]);
    s.mlops(&["apply", "--auto-approve"]).ok();
    assert_eq!(split(&endpoint()), [("2".to_string(), 100)]);
    let plan = s.mlops(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status, 0, "{}{}", plan.stdout, plan.stderr);
}

#[cfg(feature = "gcp")]
#[test]
#[ignore = "needs fake-gcs-server and the Vertex AI test service: `eval \"$(scripts/services up gcp vertex)\"`, then `cargo test -- --include-ignored`"]
fn vertex_autoscaling_is_the_deployed_models_metric_target_and_bounds() {
    let s = VertexStack::new();
    s.append(
        "endpoints:\n  api:\n    model: models.churn\n    instance_type: n1-standard-2\n    \
             autoscaling: { min: 2, max: 5, target: { metric: cpu, value: 65 } }\n",
    );
    s.mlops(&["apply", "--auto-approve"]).ok();
    let name = format!("projects/test/locations/us-central1/endpoints/{}-api", s.project);
    let resources = || {
        vertex(&format!(
            "print(json.dumps(ai.projects().locations().endpoints().get(name={name:?}).execute()['deployedModels'][0]['dedicatedResources']))"
        ))
    };
    let r = resources();
    assert_eq!((r["minReplicaCount"].as_i64(), r["maxReplicaCount"].as_i64()), (Some(2), Some(5)), "{r}");
    assert_eq!(
        r["autoscalingMetricSpecs"][0]["metricName"],
        "aiplatform.googleapis.com/prediction/online/cpu/utilization"
    );
    assert_eq!(r["autoscalingMetricSpecs"][0]["target"], 65);
    let plan = s.mlops(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status, 0, "{}{}", plan.stdout, plan.stderr);
    // A new target and bounds: in place on the same deployed model.
    s.env.write(
        "mlops.yaml",
        &s.env.read("mlops.yaml").replace(
            "min: 2, max: 5, target: { metric: cpu, value: 65 }",
            "min: 1, max: 8, target: { metric: cpu, value: 50 }",
        ),
    );
    s.env.commit("retarget");
    let run = s.mlops(&["apply", "--auto-approve"]).ok();
    assert!(run.stdout.contains("in place"), "{}", run.stdout);
    let r = resources();
    assert_eq!((r["minReplicaCount"].as_i64(), r["maxReplicaCount"].as_i64()), (Some(1), Some(8)), "{r}");
    assert_eq!(r["autoscalingMetricSpecs"][0]["target"], 50);
    // Vertex cannot track concurrency: refused at validate, at its line.
    s.env.write(
        "mlops.yaml",
        &s.env.read("mlops.yaml").replace("metric: cpu, value: 50", "metric: concurrency, value: 50"),
    );
    let run = s.mlops(&["validate"]);
    assert_ne!(run.status, 0);
    assert!(run.stderr.contains("Vertex AI (autoscalingMetricSpecs) cannot track `concurrency`"), "{}", run.stderr);
}

#[cfg(feature = "gcp")]
#[test]
#[ignore = "needs fake-gcs-server and the Vertex AI test service: `eval \"$(scripts/services up gcp vertex)\"`, then `cargo test -- --include-ignored`"]
fn a_vertex_rollout_moves_the_traffic_split_in_steps_then_undeploys_the_old_version() {
    let s = VertexStack::new();
    s.append(
        "endpoints:\n  api:\n    model: models.churn\n    instance_type: n1-standard-2\n    \
             rollout: { strategy: linear, step: { percent: 50, interval: 1s }, bake: 1s }\n",
    );
    s.mlops(&["apply", "--auto-approve"]).ok();
    crate::gcp::put_object(&s.gcs, &s.bucket, "churn/model.bst", "weights v2");
    let plan = s.mlops(&["plan", "--json"]).ok();
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    let c = crate::common::change(&plan, "endpoints.api");
    let tag = c["tags"].as_array().unwrap().iter().find(|t| t["tag"] == "rollout").expect("a rollout tag");
    assert_eq!(tag["steps"], serde_json::json!([50, 100]), "{tag}");
    let run = s.mlops(&["apply", "--auto-approve"]).ok();
    let at = |needle: &str| run.stdout.find(needle).unwrap_or_else(|| panic!("{needle:?} not in:\n{}", run.stdout));
    assert!(at("serves 50% of the traffic") < at("rollout step 2/2: 100%"));
    assert!(at("rollout step 2/2: 100%") < at("baking 1s"));
    assert!(at("baking 1s") < at("undeploying the previous deployed model"));
    let name = format!("projects/test/locations/us-central1/endpoints/{}-api", s.project);
    let e = vertex(&format!("print(json.dumps(ai.projects().locations().endpoints().get(name={name:?}).execute()))"));
    let deployed = e["deployedModels"].as_array().unwrap();
    assert_eq!(deployed.len(), 1, "{e}");
    assert_eq!(deployed[0]["modelVersionId"], "2");
    assert_eq!(e["trafficSplit"][deployed[0]["id"].as_str().unwrap()], 100);
    let plan = s.mlops(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status, 0, "{}{}", plan.stdout, plan.stderr);
}

#[cfg(feature = "gcp")]
#[test]
#[ignore = "needs fake-gcs-server and the Vertex AI test service: `eval \"$(scripts/services up gcp vertex)\"`, then `cargo test -- --include-ignored`"]
fn a_feature_store_is_a_feature_group_an_online_store_and_a_view_and_a_new_key_destroys_data() {
    let s = VertexStack::new();
    let spec = s.append("feature_stores:\n  customers:\n    provider: gcp\n    record_identifier: customer_id\n    \
             event_time: ts\n    features: { customer_id: string, ts: string, tenure: integral, spend: fractional }\n    \
             bigquery: { table: bq://test.features.customers }\n    labels: { team: ml }\n");
    s.mlops(&["apply", "--auto-approve"]).ok();
    let id = format!("{}_customers", s.project);
    let look = |id: &str| {
        vertex(&format!(
            "g = ai.projects().locations().featureGroups()\n\
             group = error(g.get(name=loc + '/featureGroups/{id}'))\n\
             if group and group.get('status') == 'NOT_FOUND':\n    print('null'); raise SystemExit\n\
             fs = g.features().list(parent=loc + '/featureGroups/{id}').execute().get('features', [])\n\
             view = ai.projects().locations().featureOnlineStores().featureViews().get(name=loc + '/featureOnlineStores/{id}/featureViews/{id}').execute()\n\
             print(json.dumps({{'group': g.get(name=loc + '/featureGroups/{id}').execute(), 'features': sorted(f['versionColumnName'] + ':' + f['labels']['mlops-type'] for f in fs), 'view': view}}))"
        ))
    };
    let r = look(&id);
    assert_eq!(r["group"]["bigQuery"]["bigQuerySource"]["inputUri"], "bq://test.features.customers");
    assert_eq!(r["group"]["bigQuery"]["entityIdColumns"], serde_json::json!(["customer_id"]));
    assert_eq!(r["group"]["bigQuery"]["timeSeries"]["timestampColumn"], "ts");
    assert_eq!(r["features"], serde_json::json!(["spend:fractional", "tenure:integral"]));
    let ids = &r["view"]["featureRegistrySource"]["featureGroups"][0]["featureIds"];
    assert_eq!(ids, &serde_json::json!(["spend", "tenure"]), "{r}");
    let plan = s.mlops(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status, 0, "{}{}", plan.stdout, plan.stderr);

    // A feature added: in place, the view follows.
    s.env.write(
        "mlops.yaml",
        &s.env.read("mlops.yaml").replace("spend: fractional }", "spend: fractional, churned: integral }"),
    );
    s.env.commit("add a feature");
    let run = s.mlops(&["apply", "--auto-approve"]).ok();
    assert!(run.stdout.contains("1 changed"), "{}", run.stdout);
    let r = look(&id);
    assert_eq!(r["features"], serde_json::json!(["churned:integral", "spend:fractional", "tenure:integral"]));
    assert_eq!(
        r["view"]["featureRegistrySource"]["featureGroups"][0]["featureIds"],
        serde_json::json!(["churned", "spend", "tenure"])
    );

    // Another record identifier: a replacement that drops the online data, refused without the flag.
    s.env.write(
        "mlops.yaml",
        &s.env
            .read("mlops.yaml")
            .replace("record_identifier: customer_id", "record_identifier: account_id")
            .replace("customer_id: string,", "customer_id: string, account_id: string,"),
    );
    s.env.commit("new key");
    let plan = s.mlops(&["plan", "--json"]).ok();
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    let c = crate::common::change(&plan, "feature_stores.customers");
    assert_eq!((c["action"].as_str(), c["data_destroying"].as_bool()), (Some("replace"), Some(true)), "{c}");
    let refused = s.mlops(&["apply", "--auto-approve"]);
    assert_ne!(refused.status, 0, "{}", refused.stdout);
    s.mlops(&["apply", "--auto-approve", "--allow-data-loss"]).ok();
    assert_eq!(look(&id)["group"]["bigQuery"]["entityIdColumns"], serde_json::json!(["account_id"]));

    // Removed from the spec: the view, the online store and the group are deleted.
    s.env.write("mlops.yaml", &spec);
    s.env.commit("no feature store");
    s.mlops(&["apply", "--auto-approve", "--allow-data-loss"]).ok();
    assert_eq!(look(&id), Value::Null);
}

/// `mlops rollback` on Vertex AI: two releases of the model (a new object, a new container) and of
/// the endpoint's machine type and replicas; rolled back to the first, the default model version
/// is one with v1's artifact folder, container and source, deployed on v1's machine type and
/// replica bounds with all the traffic (read through Google's discovery client), and
/// `state --at now` equals `state --at` v1 for both.
#[cfg(feature = "gcp")]
#[test]
#[ignore = "needs fake-gcs-server and the Vertex AI test service: `eval \"$(scripts/services up gcp vertex)\"`, then `cargo test -- --include-ignored`"]
fn a_rollback_serves_the_recorded_model_version_on_the_recorded_machines() {
    let s = VertexStack::new();
    s.append(
        "endpoints:\n  api:\n    model: models.churn\n    instance_type: n1-standard-2\n    \
             instance_count: 1\n    max_replicas: 2\n",
    );
    s.mlops(&["apply", "--auto-approve"]).ok();
    let v1 = s.env.lineage(&s.project)[0].clone();
    let name = format!("projects/test/locations/us-central1/endpoints/{}-api", s.project);
    let served = || {
        vertex(&format!(
            "e = ai.projects().locations().endpoints().get(name={name:?}).execute()\n\
             d = e['deployedModels'][0]\n\
             m = ai.projects().locations().models().get(name=d['model'] + '@' + d['modelVersionId']).execute()\n\
             r = d['dedicatedResources']\n\
             print(json.dumps([len(e['deployedModels']), m['artifactUri'], m['containerSpec']['imageUri'], \
               m['labels']['mlops-source'], 'default' in m['versionAliases'], r['machineSpec']['machineType'], \
               r['minReplicaCount'], r['maxReplicaCount'], e['trafficSplit'][d['id']]]))"
        ))
    };
    let at_v1 = served();
    assert_eq!(at_v1[1], format!("gs://{}/churn/", s.bucket), "{at_v1}");
    assert_eq!(at_v1[5], "n1-standard-2", "{at_v1}");

    crate::gcp::put_object(&s.gcs, &s.bucket, "churn/v2/model.bst", "weights v2");
    let spec = s
        .env
        .read("mlops.yaml")
        .replace("/churn/model.bst", "/churn/v2/model.bst")
        .replace("xgboost-cpu.1-7:latest", "xgboost-cpu.2-0:latest")
        .replace("instance_type: n1-standard-2", "instance_type: n1-standard-4")
        .replace("instance_count: 1\n    max_replicas: 2", "instance_count: 2\n    max_replicas: 3");
    s.env.write("mlops.yaml", &spec);
    s.env.commit("v2");
    s.mlops(&["apply", "--auto-approve"]).ok();
    let at_v2 = served();
    assert_eq!(
        (at_v2[1].clone(), at_v2[5].clone()),
        (json!(format!("gs://{}/churn/v2/", s.bucket)), json!("n1-standard-4"))
    );

    let plan = s.mlops(&["rollback", &v1, "--out", "rb.json"]).ok();
    assert!(plan.stdout.contains("# rollback: back to lineage"), "{}", plan.stdout);
    s.mlops(&["apply", "rb.json"]).ok();
    assert_eq!(served(), at_v1, "v1's artifact, container and source serve on v1's machines");
    let state =
        |at: &str| -> Value { serde_json::from_str(&s.mlops(&["state", "--at", at, "--json"]).ok().stdout).unwrap() };
    let (now, then) = (state("now"), state(&v1));
    for address in ["models.churn", "endpoints.api"] {
        let attributes = |st: &Value| {
            let r = st["resources"].as_array().unwrap().iter().find(|r| r["address"] == address).unwrap();
            r["record"]["attributes"].clone()
        };
        assert_eq!(attributes(&now), attributes(&then), "{address} is recorded as it was at v1");
    }
}
