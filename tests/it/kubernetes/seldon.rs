//! `runtime: seldon` against the test kube-apiserver with Seldon Core v2's CRDs installed from
//! tests/fixtures/seldon-core-v2-crds.yaml. The tests play Seldon's controller (the `Controller`
//! of the parent module marks Models and Experiments Ready) and check through a plain kube client.

use super::*;

pub(super) fn model_ar() -> ApiResource {
    ar("mlops.seldon.io", "v1alpha1", "Model", "models")
}
pub(super) fn experiment_ar() -> ApiResource {
    ar("mlops.seldon.io", "v1alpha1", "Experiment", "experiments")
}
fn server_ar() -> ApiResource {
    ar("mlops.seldon.io", "v1alpha1", "Server", "servers")
}

/// The status Seldon's controller reports for a Model or an Experiment at `generation`: Ready,
/// or a Model that failed to load.
pub(super) fn status(o: &Value, generation: i64, fails: bool) -> Value {
    if fails {
        return json!({"observedGeneration": generation, "conditions": [
            {"type": "ModelReady", "status": "False", "reason": "ModelFailed", "message": "load failed: bad artifact"},
            {"type": "Ready", "status": "False", "reason": "ModelFailed", "message": "load failed: bad artifact"}]});
    }
    let n = o.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    json!({"observedGeneration": generation, "replicas": n, "availableReplicas": n,
           "conditions": [{"type": "ModelReady", "status": "True"}, {"type": "Ready", "status": "True"}]})
}

impl Cluster {
    /// Installs Seldon Core v2's Model, Experiment and Server CRDs kept in the repo (idempotent)
    /// and waits until they are served.
    pub(super) fn install_seldon_crds(&self) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seldon-core-v2-crds.yaml");
        for doc in std::fs::read_to_string(path).unwrap().split("\n---\n") {
            let crd: Value = serde_saphyr::from_str(doc).unwrap();
            let name = crd["metadata"]["name"].as_str().unwrap().to_string();
            self.ssa_cluster(&crd_ar(), &name, crd);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let served = self.rt.block_on(self.client.list_api_group_resources("mlops.seldon.io/v1alpha1"));
            let names: Vec<String> =
                served.map(|l| l.resources.into_iter().map(|r| r.name).collect()).unwrap_or_default();
            if ["models", "experiments", "servers"].iter().all(|n| names.iter().any(|m| m == n)) {
                return;
            }
            assert!(Instant::now() < deadline, "the Seldon CRDs are not served");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A Seldon Server in `ns` on one of Seldon's stock ServerConfigs, as a cluster admin makes one.
    fn seldon_server(&self, ns: &str, name: &str, server_config: &str) {
        let object = json!({"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Server", "metadata": {"name": name},
            "spec": {"serverConfig": server_config, "replicas": 1}});
        self.ssa(ns, &server_ar(), name, "cluster-admin", object);
    }
}

impl K8s {
    /// A stack serving the GCS-pinned xgboost model on Seldon as `endpoints`, with Seldon's CRDs
    /// and an MLServer and a Triton Server in the namespace.
    fn seldon(endpoints: &str) -> K8s {
        let k = K8s::new(endpoints);
        k.cluster.install_seldon_crds();
        k.cluster.seldon_server(&k.ns, "mlserver", "mlserver");
        k.cluster.seldon_server(&k.ns, "triton", "triton");
        k
    }

    fn seldon_model(&self, name: &str) -> Option<Value> {
        self.cluster.get(&self.ns, &model_ar(), name)
    }

    fn bucket(&self) -> String {
        let spec = self.env.read("mlops.yaml");
        spec.split("gs://").nth(1).unwrap().split('/').next().unwrap().to_string()
    }
}

const SELDON: &str = r#"  churn-seldon:
    runtime: seldon
    model: models.churn
    serving_runtime: mlserver
    instance_count: 2
    max_replicas: 4
    resources: { memory: 1Gi }
    wait_timeout: 30s
"#;

#[test]
#[ignore = "needs the test apiserver and fake-gcs-server: `eval \"$(scripts/services up gcp kubernetes)\"`, then `cargo test -- --include-ignored`"]
fn a_seldon_model_is_applied_with_its_requirements_and_a_server_that_cannot_load_it_is_refused_at_plan() {
    let k = K8s::seldon(SELDON);
    let _controller = k.controller();
    let run = k.mlops(&["apply", "--auto-approve"]).ok();
    assert!(run.stdout.contains("Apply complete! Resources: 2 added"), "{}", run.stdout);
    // Read back through the test's own client.
    let model = k.seldon_model("churn-seldon").expect("the Seldon Model exists");
    let spec = &model["spec"];
    assert!(spec["storageUri"].as_str().unwrap().ends_with("/churn/model.bst"), "{spec}");
    assert_eq!(spec["requirements"], json!(["xgboost"]), "from the model's framework: {spec}");
    assert_eq!(spec["server"], "mlserver");
    assert_eq!((&spec["replicas"], &spec["minReplicas"], &spec["maxReplicas"]), (&json!(2), &json!(2), &json!(4)));
    assert_eq!(spec["memory"], "1Gi");
    assert_eq!(model["metadata"]["labels"]["app.kubernetes.io/managed-by"], "mlops");
    assert_eq!(model["metadata"]["annotations"]["mlops.dev/address"], "endpoints.churn-seldon");
    let record = k.lineage_record("endpoints.churn-seldon");
    assert_eq!(record["attributes"]["runtime"], "seldon", "{record}");
    let objects = record["outputs"]["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!((&objects[0]["kind"], &objects[0]["uid"]), (&json!("Model"), &model["metadata"]["uid"]));
    k.wait_until_no_changes();

    // Out of band: someone scales the Model. The plan shows it as drift and as their field; an
    // apply that takes it puts it back.
    k.cluster.merge(&k.ns, &model_ar(), "churn-seldon", "someone", json!({"spec": {"replicas": 5}}));
    let plan = k.plan_json();
    assert_eq!(change(&plan, "endpoints.churn-seldon")["action"], "update", "{plan}");
    let text = k.mlops(&["plan"]).ok().stdout;
    assert!(text.contains("replicas") && text.contains('5'), "{text}");
    let refused = k.mlops(&["apply", "--auto-approve"]);
    assert!(refused.stderr.contains("conflict with \"someone\""), "another owner's field: {}", refused.stderr);
    k.mlops(&["apply", "--auto-approve", "--force-conflicts"]).ok();
    assert_eq!(k.seldon_model("churn-seldon").unwrap()["spec"]["replicas"], 2);
    k.wait_until_no_changes();

    let spec = k.env.read("mlops.yaml");
    let refused = |edited: &str, says: &str, line: usize| {
        k.env.write("mlops.yaml", edited);
        let plan = k.mlops(&["plan"]);
        assert_eq!(plan.status, 1, "{}{}", plan.stdout, plan.stderr);
        assert!(crate::common::flat(&plan.stderr).contains(says), "{says}:\n{}", plan.stderr);
        assert!(plan.stderr.contains(&format!("mlops.yaml:{line}:")), "at line {line}:\n{}", plan.stderr);
        k.env.write("mlops.yaml", &spec);
    };
    let server_line = line_after(&spec, "churn-seldon:", "serving_runtime:");
    refused(
        &spec.replace("serving_runtime: mlserver", "serving_runtime: no-such-server"),
        "Seldon Server `no-such-server` does not exist in namespace",
        server_line,
    );
    refused(
        &spec.replace("serving_runtime: mlserver", "serving_runtime: triton"),
        "cannot load a `xgboost` model (its capabilities: dali, fil, onnx",
        server_line,
    );
    refused(
        &spec.replace("resources: { memory: 1Gi }", "resources: { memory: 1Gi, cpu: \"2\" }"),
        "a Seldon Model asks its Server for memory only",
        line_after(&spec, "churn-seldon:", "resources:"),
    );
    refused(
        &spec.replace("    wait_timeout: 30s", "    traffic: { canary_percent: 10 }\n    wait_timeout: 30s"),
        "a Seldon canary is an Experiment mlops steps through a rollout",
        line_after(&spec, "churn-seldon:", "wait_timeout:"),
    );
    refused(
        &spec.replace(
            "    max_replicas: 4\n",
            "    autoscaling: { min: 2, max: 4, target: { metric: cpu, value: 70 } }\n",
        ),
        "Seldon Core v2 scales a Model itself",
        line_after(&spec, "churn-seldon:", "max_replicas:"),
    );
    // New bytes under the same URI: Seldon would keep serving what it loaded.
    put_object(&k.gcs, &k.bucket(), "churn/model.bst", "weights v1, retrained");
    refused(
        &spec,
        "Seldon Core v2 loads a Model's artifact only when its storageUri changes",
        line_after(&spec, "churn-seldon:", "model: models.churn"),
    );
    // Each refusal changed nothing.
    assert_eq!(k.seldon_model("churn-seldon").unwrap()["spec"]["server"], "mlserver");
}

#[test]
#[ignore = "needs the test apiserver and fake-gcs-server: `eval \"$(scripts/services up gcp kubernetes)\"`, then `cargo test -- --include-ignored`"]
fn a_seldon_rollout_steps_the_experiment_weights_and_a_step_not_ready_removes_the_candidate() {
    let k = K8s::seldon(
        r#"  churn-seldon:
    runtime: seldon
    model: models.churn
    rollout: { strategy: linear, step: { percent: 40, interval: 1s }, bake: 1s }
    wait_timeout: 4s
"#,
    );
    let bucket = k.bucket();
    put_object(&k.gcs, &bucket, "churn-v2/model.bst", "weights v2");
    put_object(&k.gcs, &bucket, "broken/model.bst", "weights that fail to load");
    {
        let _controller = k.controller();
        k.mlops(&["apply", "--auto-approve"]).ok();
    }
    // Watches the Experiment's candidate weights through a plain client while the rollout runs.
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (seen, stop, kc, ns) = (seen.clone(), stop.clone(), k.cluster.kubeconfig.clone(), k.ns.clone());
        std::thread::spawn(move || {
            let c = Cluster::new(&kc);
            while !stop.load(Ordering::SeqCst) {
                let v = c.get(&ns, &experiment_ar(), "churn-seldon").map(|o| o["spec"]["candidates"].clone());
                let v = v.unwrap_or(Value::Null);
                let mut s = seen.lock().unwrap();
                if s.last() != Some(&v) {
                    s.push(v);
                }
                drop(s);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    k.edit_spec("churn/model.bst", "churn-v2/model.bst");
    let plan = k.plan_json();
    let c = change(&plan, "endpoints.churn-seldon");
    let tag = c["tags"].as_array().unwrap().iter().find(|t| t["tag"] == "rollout").expect("a rollout tag");
    assert_eq!(tag["steps"], json!([40, 80, 100]), "{tag}");
    let controller = k.controller();
    let run = k.mlops(&["apply", "--auto-approve"]).ok();
    assert!(run.stdout.contains("rollout step 1/3: 40%"), "{}", run.stdout);
    assert!(run.stdout.contains("rollout step 3/3: 100%"), "{}", run.stdout);
    let model = k.seldon_model("churn-seldon").unwrap();
    assert!(model["spec"]["storageUri"].as_str().unwrap().ends_with("churn-v2/model.bst"), "promoted: {model}");
    assert!(k.seldon_model("churn-seldon-canary").is_none(), "the candidate is gone after the promotion");
    assert!(k.cluster.get(&k.ns, &experiment_ar(), "churn-seldon").is_none(), "so is the Experiment");
    drop(controller);
    stop.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    let seen = seen.lock().unwrap().clone();
    let weights = |old: u64, new: u64| json!([{"name": "churn-seldon", "weight": old}, {"name": "churn-seldon-canary", "weight": new}]);
    assert!(
        seen.windows(3).any(|w| w == [weights(60, 40), weights(20, 80), Value::Null]),
        "the Experiment must go 40% → 80% → removed: {seen:?}"
    );
    k.wait_until_no_changes();

    // A version that never loads: the first step fails, the candidate and Experiment go, and the
    // endpoint's Model still serves v2.
    k.edit_spec("churn-v2/model.bst", "broken/model.bst");
    let _controller = Controller::failing(&k.cluster.kubeconfig, &k.ns, Some("broken"));
    let run = k.mlops(&["apply", "--auto-approve"]);
    assert_ne!(run.status, 0, "{}", run.stdout);
    assert!(run.stderr.contains("Apply rolled back"), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("rollout step 1 (40%) failed"), "{}", run.stdout);
    let model = k.seldon_model("churn-seldon").unwrap();
    assert!(model["spec"]["storageUri"].as_str().unwrap().ends_with("churn-v2/model.bst"), "{model}");
    assert!(k.seldon_model("churn-seldon-canary").is_none(), "the failed candidate was removed");
    assert!(k.cluster.get(&k.ns, &experiment_ar(), "churn-seldon").is_none());
    let message = k.env.git(&["log", "-1", "--format=%B", "refs/mlops/lineage/k8s/default"]);
    assert!(message.contains("Result: rolled-back"), "{message}");
    assert_eq!(change(&k.plan_json(), "endpoints.churn-seldon")["action"], "update", "the change is still pending");
}

#[test]
#[ignore = "needs the test apiserver and fake-gcs-server: `eval \"$(scripts/services up gcp kubernetes)\"`, then `cargo test -- --include-ignored`"]
fn what_a_killed_seldon_rollout_left_is_finished_by_the_next_apply_and_delete_removes_only_this_stacks_objects() {
    let k = K8s::seldon(SELDON);
    let _controller = k.controller();
    k.mlops(&["apply", "--auto-approve"]).ok();
    k.wait_until_no_changes();
    // A kill between two steps leaves the candidate and the Experiment, as mlops wrote them.
    let owned = |name: &str| {
        json!({"name": name, "labels": {"app.kubernetes.io/managed-by": "mlops", "mlops.dev/project": "k8s"},
               "annotations": {"mlops.dev/address": "endpoints.churn-seldon"}})
    };
    let uri = k.seldon_model("churn-seldon").unwrap()["spec"]["storageUri"].clone();
    k.cluster.ssa(
        &k.ns,
        &model_ar(),
        "churn-seldon-canary",
        "mlops",
        json!({
        "apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Model", "metadata": owned("churn-seldon-canary"),
        "spec": {"storageUri": uri, "requirements": ["xgboost"]}}),
    );
    k.cluster.ssa(
        &k.ns,
        &experiment_ar(),
        "churn-seldon",
        "mlops",
        json!({
        "apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Experiment", "metadata": owned("churn-seldon"),
        "spec": {"default": "churn-seldon", "candidates": [
            {"name": "churn-seldon", "weight": 60}, {"name": "churn-seldon-canary", "weight": 40}]}}),
    );
    // Someone else's Model beside it.
    k.cluster.ssa(
        &k.ns,
        &model_ar(),
        "other-model",
        "someone",
        json!({
        "apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Model", "metadata": {"name": "other-model"},
        "spec": {"storageUri": "gs://elsewhere/model", "requirements": ["sklearn"]}}),
    );

    // Never "No changes" while the rollout's objects split the traffic.
    let plan = k.plan_json();
    assert_eq!(change(&plan, "endpoints.churn-seldon")["action"], "update", "{plan}");
    let run = k.mlops(&["apply", "--auto-approve"]).ok();
    assert!(run.stdout.contains("deleting Experiment"), "{}", run.stdout);
    assert!(k.cluster.get(&k.ns, &experiment_ar(), "churn-seldon").is_none());
    assert!(k.seldon_model("churn-seldon-canary").is_none());
    k.wait_until_no_changes();

    // Left again, then the endpoint removed: its Model, Experiment and candidate go, the other stays.
    k.cluster.ssa(
        &k.ns,
        &experiment_ar(),
        "churn-seldon",
        "mlops",
        json!({
        "apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Experiment", "metadata": owned("churn-seldon"),
        "spec": {"default": "churn-seldon", "candidates": [{"name": "churn-seldon", "weight": 100}]}}),
    );
    let spec = k.env.read("mlops.yaml");
    k.env.write("mlops.yaml", &spec[..spec.find("endpoints:\n").unwrap()]);
    k.env.commit("no endpoints");
    assert_eq!(change(&k.plan_json(), "endpoints.churn-seldon")["action"], "delete");
    k.mlops(&["apply", "--auto-approve"]).ok();
    assert!(k.seldon_model("churn-seldon").is_none());
    assert!(k.cluster.get(&k.ns, &experiment_ar(), "churn-seldon").is_none());
    assert!(k.seldon_model("other-model").is_some(), "not ours, not deleted");
}

#[test]
#[ignore = "needs the test apiserver and fake-gcs-server: `eval \"$(scripts/services up gcp kubernetes)\"`, then `cargo test -- --include-ignored`"]
fn existing_models_are_imported_labelled_as_mlopss_recorded_and_then_managed() {
    let k = K8s::seldon(&format!(
        "{SELDON}  churn-isvc:\n    runtime: kserve\n    model: models.churn\n    wait_timeout: 30s\n"
    ));
    let _controller = k.controller();
    let uri = format!("gs://{}/churn/model.bst", k.bucket());
    // Made before mlops, with kubectl's server-side apply.
    k.cluster.ssa(
        &k.ns,
        &model_ar(),
        "churn-seldon",
        "kubectl",
        json!({
        "apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Model", "metadata": {"name": "churn-seldon"},
        "spec": {"storageUri": uri, "requirements": ["xgboost"], "replicas": 1}}),
    );
    k.cluster.ssa(
        &k.ns,
        &isvc_ar(),
        "churn-isvc",
        "kubectl",
        json!({
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "churn-isvc"},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "xgboost"}, "storageUri": uri}}}}),
    );
    let uid = k.seldon_model("churn-seldon").unwrap()["metadata"]["uid"].clone();

    let wrong = k.mlops(&["import", "endpoints.churn-seldon", "another-name"]);
    assert_eq!(wrong.status, 1, "{}", wrong.stdout);
    assert!(crate::common::flat(&wrong.stderr).contains("are named `churn-seldon` on the cluster"), "{}", wrong.stderr);
    let missing = k.mlops(&["import", "endpoints.churn-api", "churn-api"]);
    assert_eq!(missing.status, 1, "not in the spec: {}", missing.stdout);
    for (address, id) in [
        ("endpoints.churn-seldon", "churn-seldon".to_string()),
        ("endpoints.churn-isvc", format!("{}/churn-isvc", k.ns)),
    ] {
        let run = k.mlops(&["import", address, &id]).ok();
        assert!(run.stdout.contains(address), "{}", run.stdout);
    }
    // Labelled and annotated as mlops's, seen through the test's own client; nothing else changed.
    let model = k.seldon_model("churn-seldon").unwrap();
    assert_eq!(model["metadata"]["annotations"]["mlops.dev/address"], "endpoints.churn-seldon");
    assert_eq!(model["metadata"]["labels"]["app.kubernetes.io/managed-by"], "mlops");
    assert_eq!((&model["metadata"]["uid"], &model["spec"]["replicas"]), (&uid, &json!(1)));
    let isvc = k.cluster.get(&k.ns, &isvc_ar(), "churn-isvc").unwrap();
    assert_eq!(isvc["metadata"]["annotations"]["mlops.dev/address"], "endpoints.churn-isvc");
    let record = k.lineage_record("endpoints.churn-seldon");
    assert_eq!(record["outputs"]["objects"][0]["uid"], uid, "{record}");
    assert_eq!(record["attributes"]["seldon_model"]["spec"]["replicas"], 1, "recorded as found: {record}");
    let again = k.mlops(&["import", "endpoints.churn-seldon", "churn-seldon"]);
    assert_eq!(again.status, 1, "importing twice is refused");

    // The next plan shows what the spec changes; kubectl's fields are taken only when forced.
    let plan = k.plan_json();
    let c = change(&plan, "endpoints.churn-seldon");
    assert_eq!(c["action"], "update", "{c}");
    k.mlops(&["apply", "--auto-approve", "--force-conflicts"]).ok();
    let model = k.seldon_model("churn-seldon").unwrap();
    assert_eq!(
        (&model["metadata"]["uid"], &model["spec"]["replicas"], &model["spec"]["server"]),
        (&uid, &json!(2), &json!("mlserver"))
    );
    k.wait_until_no_changes();
}

#[test]
#[ignore = "needs the test apiserver and fake-gcs-server: `eval \"$(scripts/services up gcp kubernetes)\"`, then `cargo test -- --include-ignored`"]
fn a_seldon_rollback_serves_the_recorded_model_again_through_the_rollout() {
    let k = K8s::seldon(&SELDON.replace(
        "    wait_timeout: 30s\n",
        "    rollout: { strategy: canary, step: { percent: 25, interval: 0s } }\n    wait_timeout: 30s\n",
    ));
    let _controller = k.controller();
    k.mlops(&["apply", "--auto-approve"]).ok();
    k.wait_until_no_changes();
    let v1 = k.env.lineage("k8s")[0].clone();
    let uri_v1 = k.seldon_model("churn-seldon").unwrap()["spec"]["storageUri"].clone();
    put_object(&k.gcs, &k.bucket(), "churn-v2/model.bst", "weights v2");
    k.edit_spec("churn/model.bst", "churn-v2/model.bst");
    k.mlops(&["apply", "--auto-approve"]).ok();
    k.wait_until_no_changes();
    assert_ne!(k.seldon_model("churn-seldon").unwrap()["spec"]["storageUri"], uri_v1);

    let plan = k.mlops(&["rollback", &v1, "--out", "rb.json"]).ok();
    let line = plan.stdout.lines().find(|l| l.contains("~ endpoints.churn-seldon")).expect("the endpoint is restored");
    assert!(line.contains("rollback"), "{line}");
    let run = k.mlops(&["apply", "rb.json"]).ok();
    assert!(run.stdout.contains("rollout step 1/2: 25%"), "restored through the rollout: {}", run.stdout);
    let model = k.seldon_model("churn-seldon").unwrap();
    assert_eq!(model["spec"]["storageUri"], uri_v1, "v1 serves again: {model}");
    assert!(k.cluster.get(&k.ns, &experiment_ar(), "churn-seldon").is_none());
}
