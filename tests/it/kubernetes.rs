//! The Kubernetes provider against a genuine kube-apiserver (started by `scripts/services up
//! kubernetes`, which exports KUBECONFIG and MLOPS_TEST_KUBERNETES). There is no controller
//! manager: a test plays the controller where it needs one, marking objects ready through the
//! status subresource. Checks go through a plain kube client, not through mlops' own read path.
//! Models are pinned GCS objects on fake-gcs-server, so these tests need both services.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use mlops_provider_kubernetes::kube;
use serde_json::{Value, json};

use crate::common::{TestEnv, change, flat, paths};
use crate::gcp::{emulator, put_object, unique, versioned_bucket};

mod seldon;

/// The kubeconfig of the test apiserver (the test fails when it is not running).
fn kubeconfig() -> String {
    crate::common::service("KUBECONFIG", Some("MLOPS_TEST_KUBERNETES"), "kubernetes")
}

fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    let api_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    ApiResource { group: group.into(), version: version.into(), api_version, kind: kind.into(), plural: plural.into() }
}

fn isvc_ar() -> ApiResource {
    ar("serving.kserve.io", "v1beta1", "InferenceService", "inferenceservices")
}
fn deployment_ar() -> ApiResource {
    ar("apps", "v1", "Deployment", "deployments")
}
fn service_ar() -> ApiResource {
    ar("", "v1", "Service", "services")
}
fn crd_ar() -> ApiResource {
    ar("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions")
}

const CRD_NAME: &str = "inferenceservices.serving.kserve.io";

/// Tests that need the CRD hold this for reading; the one that removes it holds it for writing.
fn crd_lock() -> &'static RwLock<()> {
    static L: OnceLock<RwLock<()>> = OnceLock::new();
    L.get_or_init(|| RwLock::new(()))
}

struct Cluster {
    rt: tokio::runtime::Runtime,
    client: kube::Client,
    kubeconfig: String,
}

impl Cluster {
    fn new(kubeconfig: &str) -> Cluster {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let client = rt.block_on(async {
            let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
            let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
            kube::Client::try_from(config).unwrap()
        });
        Cluster { rt, client, kubeconfig: kubeconfig.to_string() }
    }

    fn api(&self, ns: Option<&str>, r: &ApiResource) -> Api<DynamicObject> {
        match ns {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, r),
            None => Api::all_with(self.client.clone(), r),
        }
    }

    fn get(&self, ns: &str, r: &ApiResource, name: &str) -> Option<Value> {
        self.rt.block_on(self.api(Some(ns), r).get_opt(name)).unwrap().map(|o| serde_json::to_value(o).unwrap())
    }

    fn create_namespace(&self, name: &str) {
        let ns: DynamicObject =
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
                .unwrap();
        self.rt
            .block_on(self.api(None, &ar("", "v1", "Namespace", "namespaces")).create(&PostParams::default(), &ns))
            .unwrap();
    }

    fn ssa(&self, ns: &str, r: &ApiResource, name: &str, manager: &str, patch: Value) {
        let pp = PatchParams::apply(manager).force();
        self.rt.block_on(self.api(Some(ns), r).patch(name, &pp, &Patch::Apply(patch))).unwrap();
    }

    fn merge(&self, ns: &str, r: &ApiResource, name: &str, manager: &str, patch: Value) {
        let pp = PatchParams { field_manager: Some(manager.into()), ..Default::default() };
        self.rt.block_on(self.api(Some(ns), r).patch(name, &pp, &Patch::Merge(patch))).unwrap();
    }

    fn served(&self) -> bool {
        self.rt
            .block_on(self.client.list_api_group_resources("serving.kserve.io/v1beta1"))
            .is_ok_and(|l| l.resources.iter().any(|r| r.name == "inferenceservices"))
    }

    /// Installs the InferenceService CRD kept in the repo (idempotent) and waits until it is served.
    fn install_crd(&self) {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kserve-inferenceservice-crd.yaml");
        let crd: Value = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        self.ssa_cluster(&crd_ar(), CRD_NAME, crd);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.served() {
            assert!(Instant::now() < deadline, "the InferenceService CRD is not served");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ssa_cluster(&self, r: &ApiResource, name: &str, patch: Value) {
        let pp = PatchParams::apply("mlops-tests").force();
        self.rt.block_on(self.api(None, r).patch(name, &pp, &Patch::Apply(patch))).unwrap();
    }

    /// Installs KServe's ServingRuntime and ClusterServingRuntime CRDs kept in the repo
    /// (idempotent) and waits until both are served.
    fn install_runtime_crds(&self) {
        for kind in ["servingruntime", "clusterservingruntime"] {
            let path =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/kserve-{kind}-crd.yaml"));
            let crd: Value = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            self.ssa_cluster(&crd_ar(), &format!("{kind}s.serving.kserve.io"), crd);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let served = self.rt.block_on(self.client.list_api_group_resources("serving.kserve.io/v1alpha1"));
            let names: Vec<String> =
                served.map(|l| l.resources.into_iter().map(|r| r.name).collect()).unwrap_or_default();
            if ["servingruntimes", "clusterservingruntimes"].iter().all(|n| names.iter().any(|m| m == n)) {
                return;
            }
            assert!(Instant::now() < deadline, "the serving runtime CRDs are not served");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A ServingRuntime in `ns`, or a ClusterServingRuntime when `ns` is `None`, as a cluster
    /// admin installs one: the formats and protocols it supports.
    fn serving_runtime(&self, ns: Option<&str>, name: &str, formats: Value, protocols: Value) {
        let kind = if ns.is_some() { "ServingRuntime" } else { "ClusterServingRuntime" };
        let r = ar("serving.kserve.io", "v1alpha1", kind, &format!("{}s", kind.to_lowercase()));
        let object = json!({"apiVersion": "serving.kserve.io/v1alpha1", "kind": kind, "metadata": {"name": name},
            "spec": {"supportedModelFormats": formats, "protocolVersions": protocols,
                     "containers": [{"name": "kserve-container", "image": "example/server:1"}]}});
        match ns {
            Some(ns) => self.ssa(ns, &r, name, "cluster-admin", object),
            None => self.ssa_cluster(&r, name, object),
        }
    }

    fn remove_crd(&self) {
        let _ = self.rt.block_on(self.api(None, &crd_ar()).delete(CRD_NAME, &DeleteParams::default()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.rt.block_on(self.api(None, &crd_ar()).get_opt(CRD_NAME)).unwrap().is_some() || self.served() {
            assert!(Instant::now() < deadline, "the InferenceService CRD was not removed");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Plays the controllers for one namespace: marks every InferenceService, Seldon Model and
/// Experiment Ready and every Deployment fully available at its current generation. Stops when dropped.
struct Controller {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Controller {
    fn start(kubeconfig: &str, ns: &str) -> Controller {
        Controller::failing(kubeconfig, ns, None)
    }

    /// A controller that never makes ready an InferenceService whose storageUri contains `broken`
    /// (its new revision fails, as KServe reports it).
    fn failing(kubeconfig: &str, ns: &str, broken: Option<&str>) -> Controller {
        let stop = Arc::new(AtomicBool::new(false));
        let broken = broken.map(str::to_string);
        let (flag, kubeconfig, ns) = (stop.clone(), kubeconfig.to_string(), ns.to_string());
        let thread = std::thread::spawn(move || {
            let c = Cluster::new(&kubeconfig);
            while !flag.load(Ordering::SeqCst) {
                c.rt.block_on(async {
                    for r in [isvc_ar(), deployment_ar(), seldon::model_ar(), seldon::experiment_ar()] {
                        let api = c.api(Some(&ns), &r);
                        let Ok(list) = api.list(&Default::default()).await else { continue };
                        for o in list.items {
                            let name = o.metadata.name.clone().unwrap_or_default();
                            let generation = o.metadata.generation.unwrap_or(0);
                            let uri = ["/spec/predictor/model/storageUri", "/spec/storageUri"]
                                .iter()
                                .find_map(|p| o.data.pointer(p).and_then(Value::as_str));
                            let fails = broken.as_deref().is_some_and(|b| uri.is_some_and(|u| u.contains(b)));
                            let status = if r.kind == "InferenceService" && fails {
                                json!({"observedGeneration": generation, "conditions": [
                                    {"type": "Ready", "status": "False", "reason": "RevisionFailed",
                                     "message": "Revision failed: container exited"}]})
                            } else if r.kind == "InferenceService" {
                                json!({"observedGeneration": generation, "url": format!("http://{name}.{ns}.example.com"),
                                       "conditions": [{"type": "Ready", "status": "True"}]})
                            } else if r.kind == "Model" || r.kind == "Experiment" {
                                seldon::status(&o.data, generation, fails)
                            } else {
                                let n = o.data.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
                                json!({"observedGeneration": generation, "replicas": n, "updatedReplicas": n,
                                       "readyReplicas": n, "availableReplicas": n})
                            };
                            if o.data.get("status").and_then(|s| s.get("observedGeneration")) == status.get("observedGeneration") {
                                continue;
                            }
                            let pp = PatchParams { field_manager: Some("test-controller".into()), ..Default::default() };
                            let _ = api.patch_status(&name, &pp, &Patch::Merge(json!({ "status": status }))).await;
                        }
                    }
                });
                std::thread::sleep(Duration::from_millis(150));
            }
        });
        Controller { stop, thread: Some(thread) }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct K8s {
    env: TestEnv,
    cluster: Cluster,
    ns: String,
    gcs: String,
    /// The other services' environment a stack needs (`FEAST_REGISTRY`, `MLFLOW_TRACKING_URI`).
    vars: Vec<(&'static str, String)>,
    _crd: std::sync::RwLockReadGuard<'static, ()>,
}

const ENDPOINTS: &str = r#"  churn-isvc:
    runtime: kserve
    model: models.churn
    instance_count: 1
    max_replicas: 3
    traffic: { canary_percent: 10 }
    wait_timeout: 30s
  churn-api:
    runtime: deployment
    model: models.churn
    instance_count: 2
    port: 8080
    args: ["--model-uri=$(MODEL_URI)"]
    resources: { cpu: 500m, memory: 512Mi }
    env: { LOG_LEVEL: info }
    wait_timeout: 30s
"#;

impl K8s {
    /// A fresh namespace and a committed spec serving one GCS-pinned model two ways.
    fn new(endpoints: &str) -> K8s {
        let kubeconfig = kubeconfig();
        let gcs = emulator();
        let guard = crd_lock().read().unwrap_or_else(|e| e.into_inner());
        let cluster = Cluster::new(&kubeconfig);
        cluster.install_crd();
        let ns = unique("t");
        cluster.create_namespace(&ns);
        let models = unique("models");
        versioned_bucket(&gcs, &models);
        put_object(&gcs, &models, "churn/model.bst", "weights v1");
        let env = TestEnv::new();
        env.write(
            "mlops.yaml",
            &format!(
                "version: 1\nproject: k8s\nimages: {{ pin: tag }}\nproviders:\n  gcp: {{ project: test }}\n  \
                 kubernetes: {{ kubeconfig: {kubeconfig}, namespace: {ns}, kserve_namespace: {ns} }}\n\
                 models:\n  churn:\n    artifact: gs://{models}/churn/model.bst\n    framework: xgboost\n    \
                 image: ghcr.io/example/xgboost-server:1.7\n\
                 endpoints:\n{endpoints}"
            ),
        );
        env.commit("k8s stack");
        K8s { env, cluster, ns, gcs, vars: vec![], _crd: guard }
    }

    /// mlops with the test services' environment, as a user has it after `scripts/services up`.
    fn mlops(&self, args: &[&str]) -> crate::common::Run {
        let mut vars =
            vec![("STORAGE_EMULATOR_HOST", self.gcs.as_str()), ("KUBECONFIG", self.cluster.kubeconfig.as_str())];
        vars.extend(self.vars.iter().map(|(k, v)| (*k, v.as_str())));
        self.env.mlops_env(args, &vars)
    }

    /// examples/`folder` as its header tells a user: the CRD applied to the bare apiserver, the
    /// namespace it names created, the artifact `object` its training job writes put in a
    /// versioned bucket, and the other services' environment `vars`. Only the names a shared
    /// test server needs unique are replaced in `files`: the namespace, the bucket, and `edits`.
    /// Returns the stack and the bucket.
    fn example(
        folder: &str,
        files: &[&str],
        object: &str,
        edits: &[(&str, String)],
        vars: Vec<(&'static str, String)>,
    ) -> (K8s, String) {
        let kubeconfig = kubeconfig();
        let gcs = emulator();
        let guard = crd_lock().read().unwrap_or_else(|e| e.into_inner());
        let cluster = Cluster::new(&kubeconfig);
        cluster.install_crd();
        let ns = unique("ex");
        cluster.create_namespace(&ns);
        let models = unique("models");
        versioned_bucket(&gcs, &models);
        put_object(&gcs, &models, object, "weights v1");
        let env = TestEnv::new();
        crate::common::copy_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(folder),
            env.path(),
        );
        let mut edits = edits.to_vec();
        edits.push(("namespace: ml-serving", format!("namespace: {ns}")));
        edits.push(("gs://acme-ml-models/", format!("gs://{models}/")));
        let mut specs: Vec<String> = files.iter().map(|f| env.read(f)).collect();
        for (from, to) in &edits {
            assert!(specs.iter().any(|s| s.contains(from)), "`{from}` is not in examples/{folder}");
            specs = specs.iter().map(|s| s.replace(from, to)).collect();
        }
        for (file, spec) in files.iter().zip(specs) {
            env.write(file, &spec);
        }
        env.commit("the example");
        (K8s { env, cluster, ns, gcs, vars, _crd: guard }, models)
    }

    fn controller(&self) -> Controller {
        Controller::start(&self.cluster.kubeconfig, &self.ns)
    }

    fn edit_spec(&self, from: &str, to: &str) {
        let spec = self.env.read("mlops.yaml");
        assert!(spec.contains(from), "{from:?} not in the spec");
        self.env.write("mlops.yaml", &spec.replace(from, to));
        self.env.commit("edit");
    }

    /// Waits until the test controller has rolled out the Deployment's current generation.
    fn rolled_out(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let d = self.cluster.get(&self.ns, &deployment_ar(), name).unwrap();
            if d["status"]["observedGeneration"] == d["metadata"]["generation"]
                && d["status"]["availableReplicas"] == d["spec"]["replicas"]
            {
                return;
            }
            assert!(Instant::now() < deadline, "the test controller did not roll out {name}: {}", d["status"]);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Plans until the controller has caught up: nothing left to change (lineage may still record
    /// the objects as they were before they became ready: that is left for an apply to record).
    fn wait_until_nothing_to_change(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let plan = self.plan_json();
            let s = &plan["summary"];
            let changes = ["create", "update", "replace", "delete"].iter().map(|k| s[k].as_u64().unwrap()).sum::<u64>();
            if changes == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "still changes to make: {s}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Plans until the controller has caught up, records what became ready, and checks that
    /// nothing is left to do.
    fn wait_until_no_changes(&self) {
        self.wait_until_nothing_to_change();
        if self.plan_json()["summary"]["unrecorded"].as_u64() != Some(0) {
            self.mlops(&["apply", "--auto-approve"]).ok();
        }
        let plan = self.mlops(&["plan", "--detailed-exitcode"]);
        assert_eq!(plan.status, 0, "nothing left to do:\n{}{}", plan.stdout, plan.stderr);
    }

    /// The storageUri of an InferenceService's predictor, as the apiserver holds it.
    #[cfg(feature = "mlflow")]
    fn storage_uri(&self, name: &str) -> String {
        let isvc = self.cluster.get(&self.ns, &isvc_ar(), name).expect("the InferenceService exists");
        isvc["spec"]["predictor"]["model"]["storageUri"].as_str().unwrap().to_string()
    }

    fn plan_json(&self) -> Value {
        let run = self.mlops(&["plan", "--json"]).ok();
        serde_json::from_str(&run.stdout).unwrap()
    }

    /// The lineage record of `address` in the stack mlops.yaml declares.
    fn lineage_record(&self, address: &str) -> Value {
        let (kind, name) = address.split_once('.').unwrap();
        let spec = self.env.read("mlops.yaml");
        let project = spec.lines().find_map(|l| l.strip_prefix("project: ")).expect("the spec names its project");
        serde_json::from_str(
            &self.env.git(&["show", &format!("refs/mlops/lineage/{project}/default:resources/{kind}/{name}.json")]),
        )
        .unwrap()
    }
}

fn tag_names(change: &Value) -> Vec<String> {
    change["tags"].as_array().unwrap().iter().map(|t| t["tag"].as_str().unwrap().to_string()).collect()
}

#[test]
#[ignore = "needs the test apiserver and fake-gcs-server: `eval \"$(scripts/services up gcp kubernetes)\"`, then `cargo test -- --include-ignored`"]
fn apply_creates_the_inference_service_and_the_deployment_then_nothing_to_do() {
    let k = K8s::new(ENDPOINTS);
    let _controller = k.controller();
    let run = k.mlops(&["apply", "--auto-approve"]).ok();
    assert!(run.stdout.contains("Apply complete! Resources: 3 added"), "{}", run.stdout);

    let isvc = k.cluster.get(&k.ns, &isvc_ar(), "churn-isvc").expect("the InferenceService exists");
    let predictor = &isvc["spec"]["predictor"];
    assert_eq!(predictor["model"]["modelFormat"]["name"], "xgboost");
    assert!(predictor["model"]["storageUri"].as_str().unwrap().starts_with("gs://models-"), "{predictor}");
    assert_eq!(predictor["minReplicas"], 1);
    assert_eq!(predictor["maxReplicas"], 3);
    assert_eq!(predictor["canaryTrafficPercent"], 10);
    assert_eq!(isvc["metadata"]["labels"]["app.kubernetes.io/managed-by"], "mlops");
    assert_eq!(isvc["metadata"]["annotations"]["mlops.dev/address"], "endpoints.churn-isvc");
    let managers: Vec<(&str, &str)> = isvc["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["manager"].as_str().unwrap(), m["operation"].as_str().unwrap()))
        .collect();
    assert!(managers.contains(&("mlops", "Apply")), "{managers:?}");

    let dep = k.cluster.get(&k.ns, &deployment_ar(), "churn-api").expect("the Deployment exists");
    assert_eq!(dep["spec"]["replicas"], 2);
    let container = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "ghcr.io/example/xgboost-server:1.7");
    assert_eq!(container["args"], json!(["--model-uri=$(MODEL_URI)"]));
    assert_eq!(container["resources"]["limits"]["cpu"], "500m");
    let env: Vec<(&str, &str)> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    assert_eq!(env[0], ("LOG_LEVEL", "info"));
    assert!(env[1].0 == "MODEL_URI" && env[1].1.starts_with("gs://models-"), "{env:?}");
    let svc = k.cluster.get(&k.ns, &service_ar(), "churn-api").expect("the Service exists");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(svc["spec"]["selector"]["mlops.dev/endpoint"], "churn-api");

    // Lineage: the objects' uids, so a delete only removes these very objects.
    let rec = k.lineage_record("endpoints.churn-api");
    let uids: Vec<&str> =
        rec["outputs"]["objects"].as_array().unwrap().iter().map(|o| o["uid"].as_str().unwrap()).collect();
    assert_eq!(uids, [dep["metadata"]["uid"].as_str().unwrap(), svc["metadata"]["uid"].as_str().unwrap()]);
    assert_eq!(rec["attributes"]["ready"], true);

    let plan = k.mlops(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status, 0, "{}{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("No changes."), "{}", plan.stdout);
}

#[test]
#[ignore = "needs the test apiserver and fake-gcs-server: `eval \"$(scripts/services up gcp kubernetes)\"`, then `cargo test -- --include-ignored`"]
fn a_field_another_manager_owns_is_a_conflict_refused_without_force() {
    let k = K8s::new(ENDPOINTS);
    let _controller = k.controller();
    k.mlops(&["apply", "--auto-approve"]).ok();
    // An autoscaler takes the replica count with its own server-side apply.
    k.cluster.ssa(
        &k.ns,
        &deployment_ar(),
        "churn-api",
        "autoscaler",
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "churn-api"}, "spec": {"replicas": 5}}),
    );
    k.rolled_out("churn-api");
    k.edit_spec("instance_count: 2", "instance_count: 3");
    let plan = k.plan_json();
    let c = change(&plan, "endpoints.churn-api");
    assert_eq!(c["action"], "update");
    assert_eq!(paths(c), ["deployment.spec.replicas"]);
    let conflict = c["tags"].as_array().unwrap().iter().find(|t| t["tag"] == "conflict").expect("a conflict tag");
    let detail = conflict["detail"].as_str().unwrap();
    assert!(detail.contains(".spec.replicas") && detail.contains("autoscaler"), "{detail}");
    let text = k.mlops(&["plan"]).ok();
    assert!(text.stdout.contains("conflict"), "{}", text.stdout);

    let refused = k.mlops(&["apply", "--auto-approve"]);
    assert_eq!(refused.status, 1, "{}{}", refused.stdout, refused.stderr);
    assert!(refused.stderr.contains("--force-conflicts"), "{}", refused.stderr);
    assert_eq!(k.cluster.get(&k.ns, &deployment_ar(), "churn-api").unwrap()["spec"]["replicas"], 5);
    assert_eq!(k.env.lineage("k8s").len(), 1, "nothing recorded");

    k.mlops(&["apply", "--auto-approve", "--force-conflicts"]).ok();
    let dep = k.cluster.get(&k.ns, &deployment_ar(), "churn-api").unwrap();
    assert_eq!(dep["spec"]["replicas"], 3);
}

#[test]
#[ignore = "needs the test apiserver and fake-gcs-server: `eval \"$(scripts/services up gcp kubernetes)\"`, then `cargo test -- --include-ignored`"]
fn a_field_changed_out_of_band_is_drift() {
    let k = K8s::new(ENDPOINTS);
    let _controller = k.controller();
    k.mlops(&["apply", "--auto-approve"]).ok();
    // `kubectl scale`, in effect; then the controller rolls it out.
    k.cluster.merge(&k.ns, &deployment_ar(), "churn-api", "kubectl", json!({"spec": {"replicas": 4}}));
    k.rolled_out("churn-api");
    let plan = k.plan_json();
    let drift = plan["drift"].as_array().unwrap();
    let d = drift.iter().find(|d| d["address"] == "endpoints.churn-api").expect("drift on churn-api");
    let attrs = d["attributes"].as_array().unwrap();
    assert_eq!(attrs.len(), 1, "{d}");
    assert_eq!(attrs[0]["path"], "deployment.spec.replicas");
    assert_eq!((attrs[0]["before"].clone(), attrs[0]["after"].clone()), (json!(2), json!(4)));
    // And the plan puts it back.
    let c = change(&plan, "endpoints.churn-api");
    assert_eq!(c["action"], "update");
    assert_eq!(paths(c), ["deployment.spec.replicas"]);
    assert!(tag_names(c).contains(&"traffic-shift".to_string()), "{c}");
    let text = k.mlops(&["plan"]).ok();
    assert!(
        text.stdout.contains("changed outside mlops") || text.stdout.to_lowercase().contains("drift"),
        "{}",
        text.stdout
    );
}

#[test]
#[ignore = "needs the test apiserver and fake-gcs-server: `eval \"$(scripts/services up gcp kubernetes)\"`, then `cargo test -- --include-ignored`"]
fn a_canary_change_updates_exactly_that_field() {
    let k = K8s::new(ENDPOINTS);
    let _controller = k.controller();
    k.mlops(&["apply", "--auto-approve"]).ok();
    k.edit_spec("canary_percent: 10", "canary_percent: 50");
    let plan = k.plan_json();
    let c = change(&plan, "endpoints.churn-isvc");
    assert_eq!(c["action"], "update");
    assert_eq!(paths(c), ["inference_service.spec.predictor.canaryTrafficPercent"]);
    let a = &c["attributes"][0];
    assert_eq!((a["before"].clone(), a["after"].clone()), (json!(10), json!(50)));
    assert!(tag_names(c).contains(&"traffic-shift".to_string()), "{c}");
    assert_eq!(change(&plan, "endpoints.churn-api")["action"], "no-op");
    let before = k.cluster.get(&k.ns, &isvc_ar(), "churn-isvc").unwrap();
    k.mlops(&["apply", "--auto-approve"]).ok();
    let after = k.cluster.get(&k.ns, &isvc_ar(), "churn-isvc").unwrap();
    assert_eq!(after["spec"]["predictor"]["canaryTrafficPercent"], 50);
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"], "updated in place");
    assert_eq!(after["spec"]["predictor"]["model"], before["spec"]["predictor"]["model"]);
}

#[test]
#[ignore = "needs the test apiserver and fake-gcs-server: `eval \"$(scripts/services up gcp kubernetes)\"`, then `cargo test -- --include-ignored`"]
fn a_canary_the_cluster_would_ignore_is_a_plan_error() {
    let k = K8s::new(ENDPOINTS);
    // KServe set up for RawDeployment, which ignores canaryTrafficPercent.
    k.cluster.ssa(
        &k.ns,
        &ar("", "v1", "ConfigMap", "configmaps"),
        "inferenceservice-config",
        "kserve",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "inferenceservice-config"},
               "data": {"deploy": "{\"defaultDeploymentMode\": \"RawDeployment\"}"}}),
    );
    let plan = k.mlops(&["plan"]);
    assert_eq!(plan.status, 1, "{}{}", plan.stdout, plan.stderr);
    assert!(plan.stderr.contains("RawDeployment") && plan.stderr.contains("canary"), "{}", plan.stderr);
    // A plain Deployment cannot split traffic at all: caught before any call.
    k.edit_spec("    instance_count: 2\n", "    instance_count: 2\n    traffic: { canary_percent: 20 }\n");
    let v = k.mlops(&["validate"]);
    assert_eq!(v.status, 1, "{}", v.stderr);
    assert!(v.stderr.contains("cannot split traffic"), "{}", v.stderr);
    assert!(v.stderr.contains("mlops.yaml:"), "{}", v.stderr);
}

#[test]
#[ignore = "needs the test apiserver and fake-gcs-server: `eval \"$(scripts/services up gcp kubernetes)\"`, then `cargo test -- --include-ignored`"]
fn not_ready_in_time_is_a_clear_error_recorded_as_partial() {
    let k = K8s::new(&ENDPOINTS.replace("wait_timeout: 30s", "wait_timeout: 2s"));
    // No controller: nothing ever becomes ready.
    let started = Instant::now();
    let run = k.mlops(&["apply", "--auto-approve"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(out.contains("was not ready after 2s"), "{out}");
    assert!(out.contains("0/2 replicas available"), "{out}");
    // The objects exist, and lineage says so, with the result partial.
    assert!(k.cluster.get(&k.ns, &deployment_ar(), "churn-api").is_some());
    let log = k.env.git(&["log", "-1", "--format=%B", "refs/mlops/lineage/k8s/default"]);
    assert!(log.contains("Result: partial"), "{log}");
    let rec = k.lineage_record("endpoints.churn-api");
    assert_eq!(rec["attributes"]["ready"], false);
    let result: Value =
        serde_json::from_str(&k.env.git(&["show", "refs/mlops/lineage/k8s/default:result.json"])).unwrap();
    assert_eq!(result["endpoints.churn-api"]["status"], "failed", "{result}");
    assert_eq!(result["models.churn"]["status"], "applied", "{result}");
    // What is left to do: become ready.
    let plan = k.plan_json();
    let c = change(&plan, "endpoints.churn-api");
    assert_eq!(paths(c), ["ready"]);
    // Once the controller catches up, nothing is left to change, the plan says the objects became
    // ready, and an apply records them as they are.
    let _controller = k.controller();
    k.wait_until_nothing_to_change();
    let text = k.mlops(&["plan"]).ok();
    assert!(text.stdout.contains("~ ready = false → true"), "{}", text.stdout);
    assert!(text.stdout.contains("to record, nothing to change"), "{}", text.stdout);
    k.wait_until_no_changes();
    assert_eq!(k.lineage_record("endpoints.churn-api")["attributes"]["ready"], true);
}

#[test]
#[ignore = "needs the test apiserver and fake-gcs-server: `eval \"$(scripts/services up gcp kubernetes)\"`, then `cargo test -- --include-ignored`"]
fn no_wait_returns_at_once_and_the_plan_shows_what_is_not_ready() {
    let k = K8s::new(ENDPOINTS);
    let run = k.mlops(&["apply", "--auto-approve", "--no-wait"]).ok();
    assert!(run.stdout.contains("Apply complete! Resources: 3 added"), "{}", run.stdout);
    assert_eq!(k.lineage_record("endpoints.churn-isvc")["attributes"]["ready"], false);
    let plan = k.plan_json();
    assert_eq!(paths(change(&plan, "endpoints.churn-isvc")), ["ready"]);
    let _controller = k.controller();
    k.mlops(&["apply", "--auto-approve"]).ok();
    let plan = k.mlops(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status, 0, "{}{}", plan.stdout, plan.stderr);
}

#[test]
#[ignore = "needs the test apiserver and fake-gcs-server: `eval \"$(scripts/services up gcp kubernetes)\"`, then `cargo test -- --include-ignored`"]
fn apiserver_down_is_a_clear_error_within_seconds_and_nothing_is_recorded() {
    let k = K8s::new(ENDPOINTS);
    // The same cluster credentials, at a port where nothing listens.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let kc = std::fs::read_to_string(&k.cluster.kubeconfig).unwrap();
    let kc = regex_free_replace_port(&kc, dead);
    k.env.write("dead-kubeconfig", &kc);
    let spec = k.env.read("mlops.yaml").replace(&k.cluster.kubeconfig, "dead-kubeconfig");
    k.env.write("mlops.yaml", &spec);
    k.env.commit("dead apiserver");
    let started = Instant::now();
    let run = k.mlops(&["apply", "--auto-approve"]);
    let took = started.elapsed();
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(run.stderr.contains("cannot reach the Kubernetes API"), "{}", run.stderr);
    assert!(run.stderr.to_lowercase().contains("connection refused"), "{}", run.stderr);
    assert!(k.env.lineage("k8s").is_empty(), "nothing recorded");
}

/// The kubeconfig with its server's port replaced.
fn regex_free_replace_port(kc: &str, port: u16) -> String {
    let start = kc.find("https://127.0.0.1:").expect("a loopback server") + "https://127.0.0.1:".len();
    let end = start + kc[start..].find(|c: char| !c.is_ascii_digit()).unwrap();
    format!("{}{port}{}", &kc[..start], &kc[end..])
}

#[test]
#[ignore = "needs the test apiserver and fake-gcs-server: `eval \"$(scripts/services up gcp kubernetes)\"`, then `cargo test -- --include-ignored`"]
fn delete_removes_only_what_mlops_created() {
    let k = K8s::new(ENDPOINTS);
    let _controller = k.controller();
    // Someone else's Service under a name the spec is about to use.
    k.cluster.ssa(
        &k.ns,
        &service_ar(),
        "other-api",
        "someone",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "other-api"},
               "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}}),
    );
    let spec = k.env.read("mlops.yaml");
    k.env.write(
        "mlops.yaml",
        &format!("{spec}  other-api:\n    runtime: deployment\n    model: models.churn\n    wait_timeout: 30s\n"),
    );
    k.env.commit("other-api");
    let plan = k.plan_json();
    let c = change(&plan, "endpoints.other-api");
    let detail =
        c["tags"].as_array().unwrap().iter().find(|t| t["tag"] == "conflict").expect("conflict")["detail"].clone();
    assert!(detail.as_str().unwrap().contains("not created by mlops"), "{detail}");
    let refused = k.mlops(&["apply", "--auto-approve"]);
    assert_eq!(refused.status, 1);
    assert!(k.cluster.get(&k.ns, &deployment_ar(), "other-api").is_none(), "nothing applied");
    k.env.write("mlops.yaml", &spec);
    k.env.commit("without other-api");
    k.mlops(&["apply", "--auto-approve"]).ok();

    // Removing the endpoints deletes the objects lineage names, and leaves the foreign one.
    let spec = k.env.read("mlops.yaml");
    let cut = spec.find("endpoints:\n").unwrap();
    k.env.write("mlops.yaml", &spec[..cut]);
    k.env.commit("no endpoints");
    let plan = k.plan_json();
    assert_eq!(change(&plan, "endpoints.churn-api")["action"], "delete");
    k.mlops(&["apply", "--auto-approve"]).ok();
    assert!(k.cluster.get(&k.ns, &deployment_ar(), "churn-api").is_none());
    assert!(k.cluster.get(&k.ns, &service_ar(), "churn-api").is_none());
    assert!(k.cluster.get(&k.ns, &isvc_ar(), "churn-isvc").is_none());
    assert!(k.cluster.get(&k.ns, &service_ar(), "other-api").is_some(), "not ours, not deleted");
}

#[test]
#[ignore = "needs the test apiserver and fake-gcs-server: `eval \"$(scripts/services up gcp kubernetes)\"`, then `cargo test -- --include-ignored`"]
fn a_missing_crd_is_a_plan_error_that_says_so() {
    let kubeconfig = kubeconfig();
    let gcs = emulator();
    // Alone on the cluster while the CRD is gone.
    let _only = crd_lock().write().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::new(&kubeconfig);
    cluster.remove_crd();
    let ns = unique("t");
    cluster.create_namespace(&ns);
    let models = unique("models");
    versioned_bucket(&gcs, &models);
    put_object(&gcs, &models, "m.bst", "w");
    let env = TestEnv::new();
    env.write(
        "mlops.yaml",
        &format!(
            "version: 1\nproject: k8s\nproviders:\n  gcp: {{}}\n  kubernetes: {{ kubeconfig: {kubeconfig}, namespace: {ns} }}\n\
             models:\n  m:\n    artifact: gs://{models}/m.bst\n    framework: sklearn\n\
             endpoints:\n  api:\n    runtime: kserve\n    model: models.m\n"
        ),
    );
    env.commit("kserve");
    let run = env.mlops_env(&["plan"], &[("STORAGE_EMULATOR_HOST", &gcs)]);
    cluster.install_crd();
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("KServe is not installed"), "{}", run.stderr);
    assert!(run.stderr.contains("serving.kserve.io/v1beta1"), "{}", run.stderr);
}

#[test]
#[ignore = "needs the test apiserver and fake-gcs-server: `eval \"$(scripts/services up gcp kubernetes)\"`, then `cargo test -- --include-ignored`"]
fn a_runtime_change_replaces_new_first_then_deletes_the_old_objects() {
    let k = K8s::new(ENDPOINTS);
    let _controller = k.controller();
    k.mlops(&["apply", "--auto-approve"]).ok();
    let old_uid = k.cluster.get(&k.ns, &deployment_ar(), "churn-api").unwrap()["metadata"]["uid"].clone();
    k.edit_spec(
        "    runtime: deployment\n    model: models.churn\n    instance_count: 2\n    port: 8080\n    args: [\"--model-uri=$(MODEL_URI)\"]\n",
        "    runtime: kserve\n    model: models.churn\n    instance_count: 2\n",
    );
    let plan = k.plan_json();
    let c = change(&plan, "endpoints.churn-api");
    assert_eq!(c["action"], "replace");
    assert_eq!(c["replace_reasons"], json!(["runtime"]));
    // Create-before-destroy is explicit in the plan, not only in what apply does.
    assert_eq!(c["create_before_destroy"], true, "{c}");
    let text = k.mlops(&["plan"]).ok().stdout;
    assert!(
        text.contains("will be replaced (forced by runtime), the new one created before the old one is deleted"),
        "{text}"
    );
    let run = k.mlops(&["apply", "--auto-approve"]).ok();
    let wait = run.stdout.find("churn-api: waiting").expect("waited");
    let delete = run.stdout.find("churn-api: deleting Deployment").expect("deleted the old Deployment");
    assert!(wait < delete, "ready first, then delete:\n{}", run.stdout);
    assert!(k.cluster.get(&k.ns, &deployment_ar(), "churn-api").is_none(), "old Deployment {old_uid} gone");
    assert!(k.cluster.get(&k.ns, &service_ar(), "churn-api").is_none());
    assert!(k.cluster.get(&k.ns, &isvc_ar(), "churn-api").is_some());
    k.wait_until_no_changes();
}

/// A model whose artifact is `models:/NAME@champion` in an MLflow registry mlops does not manage:
/// resolved at plan time and pinned in the plan and lineage; an alias moved by hand is a reviewed
/// change (`model-version-change` on the model, the InferenceService's storageUri follows in the
/// same plan), and a saved plan made before the alias moved is refused as stale. The registry is
/// driven through MLflow's own Python client, the cluster read through kube's client.
#[cfg(feature = "mlflow")]
#[test]
#[ignore = "needs the test apiserver, fake-gcs-server and MLflow: `eval \"$(scripts/services up gcp kubernetes mlflow)\"`, then `cargo test -- --include-ignored`"]
fn a_models_alias_reference_is_pinned_at_plan_time_and_a_moved_alias_is_a_reviewed_change() {
    let (k, mlflow_uri) = kserve_beside_mlflow();
    let bucket = unique("registry");
    versioned_bucket(&k.gcs, &bucket);
    put_object(&k.gcs, &bucket, "churn/1/model.bst", "weights v1");
    put_object(&k.gcs, &bucket, "churn/2/model.bst", "weights v2");
    let name = unique("churn");
    crate::mlflow::mlflow(&format!(
        "c.create_registered_model({name:?})\n\
         for n in (1, 2):\n    c.create_model_version({name:?}, f'gs://{bucket}/churn/{{n}}/model.bst')\n\
         c.set_registered_model_alias({name:?}, 'champion', '1')\nprint('null')"
    ));
    let spec = k.env.read("mlops.yaml");
    let spec = spec
        .replace("providers:\n", &format!("providers:\n  mlflow: {{ tracking_uri: {mlflow_uri} }}\n"))
        .replace("models:\n  churn:\n", "models:\n  churn:\n    provider: gcp\n");
    let spec = regex_free_replace_artifact(&spec, &format!("models:/{name}@champion"));
    k.env.write("mlops.yaml", &spec);
    k.env.commit("serve the champion");
    let _controller = k.controller();
    k.mlops(&["apply", "--auto-approve"]).ok();
    let storage = || k.storage_uri("churn-isvc");
    assert_eq!(storage(), format!("gs://{bucket}/churn/1/model.bst"));
    let model = k.lineage_record("models.churn");
    assert_eq!(model["attributes"]["artifact_ref"]["reference"], format!("models:/{name}@champion"));
    assert_eq!(model["attributes"]["artifact_ref"]["version"], "1", "{model}");
    k.wait_until_no_changes();

    // The alias moves (a training pipeline promotes version 2): a reviewed change, not a silent one.
    let set = |v: &str| {
        crate::mlflow::mlflow(&format!("c.set_registered_model_alias({name:?}, 'champion', '{v}')\nprint('null')"));
    };
    set("2");
    let plan = k.plan_json();
    let m = change(&plan, "models.churn");
    assert_eq!(m["action"], "update", "{m}");
    let tag = m["tags"].as_array().unwrap().iter().find(|t| t["tag"] == "model-version-change").expect("tagged");
    assert_eq!(tag["from_version"], "1", "{tag}");
    assert_eq!(tag["to_version"], "2", "{tag}");
    let e = change(&plan, "endpoints.churn-isvc");
    assert_eq!(e["action"], "update", "the endpoint follows in the same plan: {e}");
    assert!(paths(e).iter().any(|p| p.contains("storageUri")), "{:?}", paths(e));
    k.mlops(&["plan", "--out", "saved.json"]).ok();

    // Moved again before the saved plan is applied: it is stale, and nothing changes.
    set("1");
    let stale = k.mlops(&["apply", "saved.json"]);
    assert_eq!(stale.status, 1, "{}{}", stale.stdout, stale.stderr);
    assert!(stale.stderr.contains("now names version 1 of the model, not version 2"), "{}", stale.stderr);
    assert_eq!(storage(), format!("gs://{bucket}/churn/1/model.bst"));

    set("2");
    k.mlops(&["apply", "--auto-approve"]).ok();
    assert_eq!(storage(), format!("gs://{bucket}/churn/2/model.bst"));
    assert_eq!(k.lineage_record("models.churn")["attributes"]["artifact_ref"]["version"], "2");
}

/// The spec with the model's `artifact:` line pointing at `to`.
fn regex_free_replace_artifact(spec: &str, to: &str) -> String {
    spec.lines()
        .map(|l| if l.trim_start().starts_with("artifact: ") { format!("    artifact: {to}") } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// The registry managed here: a model on `provider: mlflow` served by KServe. A new artifact
/// registers a new version, moves the alias, and the InferenceService's storageUri follows in the
/// same plan (tagged `model-version-change`); checked through MlflowClient and kube's client.
#[cfg(feature = "mlflow")]
#[test]
#[ignore = "needs the test apiserver, fake-gcs-server and MLflow: `eval \"$(scripts/services up gcp kubernetes mlflow)\"`, then `cargo test -- --include-ignored`"]
fn an_mlflow_model_served_by_kserve_moves_to_a_new_version_in_one_plan() {
    let (k, mlflow_uri) = kserve_beside_mlflow();
    let name = unique("churn");
    let spec = k
        .env
        .read("mlops.yaml")
        .replace("providers:\n", &format!("providers:\n  mlflow: {{ tracking_uri: {mlflow_uri} }}\n"));
    let spec = spec.replace(
        "models:\n  churn:\n",
        &format!("models:\n  churn:\n    provider: mlflow\n    registered_model: {name}\n    aliases: [champion]\n"),
    );
    let spec = regex_free_replace_artifact(&spec, "gs://registry/churn/v1/");
    let spec = spec.replace("    image: ghcr.io/example/xgboost-server:1.7\n", "");
    k.env.write("mlops.yaml", &spec);
    k.env.commit("registry served by kserve");
    let _controller = k.controller();
    k.mlops(&["apply", "--auto-approve"]).ok();
    let storage = || k.storage_uri("churn-isvc");
    assert_eq!(storage(), "gs://registry/churn/v1/");
    let m = crate::mlflow::registered(&name);
    assert_eq!(m["aliases"]["champion"], "1", "{m}");
    k.wait_until_no_changes();

    let spec = regex_free_replace_artifact(&k.env.read("mlops.yaml"), "gs://registry/churn/v2/");
    k.env.write("mlops.yaml", &spec);
    k.env.commit("v2");
    let plan = k.plan_json();
    let model = change(&plan, "models.churn");
    assert_eq!(model["action"], "update", "{model}");
    assert!(tag_names(model).contains(&"model-version-change".to_string()), "{model}");
    let e = change(&plan, "endpoints.churn-isvc");
    assert_eq!(e["action"], "update", "{e}");
    assert!(paths(e).iter().any(|p| p.contains("storageUri")), "{:?}", paths(e));
    k.mlops(&["apply", "--auto-approve"]).ok();
    assert_eq!(storage(), "gs://registry/churn/v2/");
    let m = crate::mlflow::registered(&name);
    assert_eq!(m["aliases"]["champion"], "2", "{m}");
    assert_eq!(m["versions"]["2"]["source"], "gs://registry/churn/v2/");
    assert_eq!(m["versions"]["1"]["source"], "gs://registry/churn/v1/", "version 1 is kept");
}

/// One InferenceService serving `models.churn`, and the MLflow server's address.
#[cfg(feature = "mlflow")]
fn kserve_beside_mlflow() -> (K8s, String) {
    let mlflow_uri = crate::common::service("MLFLOW_TRACKING_URI", None, "mlflow");
    let k = K8s::new(
        "  churn-isvc:\n    runtime: kserve\n    model: models.churn\n    instance_count: 1\n    wait_timeout: 30s\n",
    );
    (k, mlflow_uri)
}

/// The HorizontalPodAutoscaler API the test apiserver serves (v2 from Kubernetes 1.23, v2beta2 before).
fn hpa_ar(c: &Cluster) -> ApiResource {
    let v2 = c.rt.block_on(c.client.list_api_group_resources("autoscaling/v2")).is_ok();
    ar("autoscaling", if v2 { "v2" } else { "v2beta2" }, "HorizontalPodAutoscaler", "horizontalpodautoscalers")
}

#[test]
#[ignore = "needs the test apiserver and fake-gcs-server: `eval \"$(scripts/services up gcp kubernetes)\"`, then `cargo test -- --include-ignored`"]
fn autoscaling_is_a_horizontal_pod_autoscaler_and_its_replica_changes_are_not_drift() {
    let k = K8s::new(
        r#"  churn-api:
    runtime: deployment
    model: models.churn
    resources: { cpu: 500m }
    autoscaling: { min: 2, max: 6, target: { metric: cpu, value: 70 }, scale_in_cooldown: 5m }
    wait_timeout: 30s
  churn-isvc:
    runtime: kserve
    model: models.churn
    autoscaling: { min: 1, max: 4, target: { metric: concurrency, value: 10 } }
    wait_timeout: 30s
"#,
    );
    let _controller = k.controller();
    k.mlops(&["apply", "--auto-approve"]).ok();

    // Checked through a plain client: the HPA targets the Deployment; the Deployment's replica
    // count is not mlops's (its field manager does not own spec.replicas).
    let hpa = k.cluster.get(&k.ns, &hpa_ar(&k.cluster), "churn-api").expect("the HorizontalPodAutoscaler exists");
    assert_eq!(
        hpa["spec"]["scaleTargetRef"],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "churn-api"})
    );
    assert_eq!((hpa["spec"]["minReplicas"].as_i64(), hpa["spec"]["maxReplicas"].as_i64()), (Some(2), Some(6)));
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 70);
    assert_eq!(hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"], 300);
    let dep = k.cluster.get(&k.ns, &deployment_ar(), "churn-api").unwrap();
    let owned_by_mlops = dep["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["manager"] == "mlops")
        .any(|m| m["fieldsV1"]["f:spec"].get("f:replicas").is_some());
    assert!(!owned_by_mlops, "mlops must not own spec.replicas of an autoscaled Deployment: {dep}");
    let predictor = &k.cluster.get(&k.ns, &isvc_ar(), "churn-isvc").unwrap()["spec"]["predictor"];
    assert_eq!((predictor["minReplicas"].as_i64(), predictor["maxReplicas"].as_i64()), (Some(1), Some(4)));
    assert_eq!((predictor["scaleMetric"].as_str(), predictor["scaleTarget"].as_i64()), (Some("concurrency"), Some(10)));
    let rec = k.lineage_record("endpoints.churn-api");
    let kinds: Vec<&str> =
        rec["outputs"]["objects"].as_array().unwrap().iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Deployment", "Service", "HorizontalPodAutoscaler"]);
    k.wait_until_no_changes();

    // The autoscaler scales the Deployment (as the HPA controller does, through the scale
    // subresource's field manager): not drift, and the next apply leaves it alone.
    k.cluster.merge(
        &k.ns,
        &deployment_ar(),
        "churn-api",
        "horizontal-pod-autoscaler",
        json!({"spec": {"replicas": 5}}),
    );
    k.rolled_out("churn-api");
    let plan = k.mlops(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status, 0, "a scale by the autoscaler must not be drift:\n{}{}", plan.stdout, plan.stderr);
    assert!(!plan.stdout.contains("drift"), "{}", plan.stdout);

    // A change of bounds is an update of the HPA only; the replicas stay the autoscaler's.
    k.edit_spec("min: 2, max: 6", "min: 3, max: 8");
    let run = k.mlops(&["apply", "--auto-approve"]).ok();
    assert!(run.stdout.contains("1 changed"), "{}", run.stdout);
    let hpa = k.cluster.get(&k.ns, &hpa_ar(&k.cluster), "churn-api").unwrap();
    assert_eq!((hpa["spec"]["minReplicas"].as_i64(), hpa["spec"]["maxReplicas"].as_i64()), (Some(3), Some(8)));
    assert_eq!(k.cluster.get(&k.ns, &deployment_ar(), "churn-api").unwrap()["spec"]["replicas"], 5);

    // Autoscaling removed: the HPA mlops created is deleted and the count is mlops's again.
    k.edit_spec(
        "    autoscaling: { min: 3, max: 8, target: { metric: cpu, value: 70 }, scale_in_cooldown: 5m }\n",
        "    instance_count: 2\n",
    );
    k.mlops(&["apply", "--auto-approve"]).ok();
    assert!(k.cluster.get(&k.ns, &hpa_ar(&k.cluster), "churn-api").is_none(), "the HPA must be deleted");
    assert_eq!(k.cluster.get(&k.ns, &deployment_ar(), "churn-api").unwrap()["spec"]["replicas"], 2);
    k.wait_until_no_changes();
}

#[test]
#[ignore = "needs the test apiserver and fake-gcs-server: `eval \"$(scripts/services up gcp kubernetes)\"`, then `cargo test -- --include-ignored`"]
fn a_kserve_rollout_raises_the_canary_step_by_step_and_a_step_not_ready_resets_the_old_model() {
    let k = K8s::new(
        r#"  churn-isvc:
    runtime: kserve
    model: models.churn
    rollout: { strategy: linear, step: { percent: 40, interval: 1s }, bake: 1s }
    wait_timeout: 4s
"#,
    );
    let spec = k.env.read("mlops.yaml");
    let bucket = spec.split("gs://").nth(1).unwrap().split('/').next().unwrap().to_string();
    put_object(&k.gcs, &bucket, "churn-v2/model.bst", "weights v2");
    put_object(&k.gcs, &bucket, "broken/model.bst", "weights that crash");
    {
        let _controller = k.controller();
        k.mlops(&["apply", "--auto-approve"]).ok();
    }
    // Watches canaryTrafficPercent through a plain client while the rollout runs.
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (seen, stop, kc, ns) = (seen.clone(), stop.clone(), k.cluster.kubeconfig.clone(), k.ns.clone());
        std::thread::spawn(move || {
            let c = Cluster::new(&kc);
            while !stop.load(Ordering::SeqCst) {
                if let Some(o) = c.get(&ns, &isvc_ar(), "churn-isvc") {
                    let v = o["spec"]["predictor"]["canaryTrafficPercent"].clone();
                    let mut s = seen.lock().unwrap();
                    if s.last() != Some(&v) {
                        s.push(v);
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    k.edit_spec("churn/model.bst", "churn-v2/model.bst");
    let plan = k.plan_json();
    let c = change(&plan, "endpoints.churn-isvc");
    let tag = c["tags"].as_array().unwrap().iter().find(|t| t["tag"] == "rollout").expect("a rollout tag");
    assert_eq!(tag["steps"], json!([40, 80, 100]), "{tag}");
    let controller = k.controller();
    let run = k.mlops(&["apply", "--auto-approve"]).ok();
    assert!(run.stdout.contains("rollout step 1/3: 40%"), "{}", run.stdout);
    assert!(run.stdout.contains("rollout step 3/3: 100%"), "{}", run.stdout);
    let isvc = k.cluster.get(&k.ns, &isvc_ar(), "churn-isvc").unwrap();
    assert!(isvc["spec"]["predictor"]["model"]["storageUri"].as_str().unwrap().ends_with("churn-v2/model.bst"));
    assert!(isvc["spec"]["predictor"].get("canaryTrafficPercent").is_none(), "all the traffic is the new model's");
    drop(controller);
    stop.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.windows(3).any(|w| w == [json!(40), json!(80), Value::Null]),
        "the canary must go 40 → 80 → removed: {seen:?}"
    );
    k.wait_until_no_changes();

    // A model whose revision never gets ready: the first step fails, the old model is back.
    k.edit_spec("churn-v2/model.bst", "broken/model.bst");
    let _controller = Controller::failing(&k.cluster.kubeconfig, &k.ns, Some("broken"));
    let run = k.mlops(&["apply", "--auto-approve"]);
    assert_ne!(run.status, 0, "{}", run.stdout);
    assert!(run.stderr.contains("Apply rolled back"), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("rollout step 1 (40%) failed"), "{}", run.stdout);
    let isvc = k.cluster.get(&k.ns, &isvc_ar(), "churn-isvc").unwrap();
    assert!(
        isvc["spec"]["predictor"]["model"]["storageUri"].as_str().unwrap().ends_with("churn-v2/model.bst"),
        "reset to the model it served before: {}",
        isvc["spec"]["predictor"]
    );
    assert!(isvc["spec"]["predictor"].get("canaryTrafficPercent").is_none());
    let message = k.env.git(&["log", "-1", "--format=%B", "refs/mlops/lineage/k8s/default"]);
    assert!(message.contains("Result: rolled-back"), "{message}");
    let plan = k.plan_json();
    assert_eq!(change(&plan, "endpoints.churn-isvc")["action"], "update", "the change is still pending");
}

/// examples/kubernetes-kserve as its header tells a user (`scripts/services up gcp kubernetes`),
/// applied, then nothing left to do.
#[test]
#[ignore = "needs the test apiserver and fake-gcs-server: `eval \"$(scripts/services up gcp kubernetes)\"`, then `cargo test -- --include-ignored`"]
fn the_kserve_example_applies_as_its_header_says_and_converges() {
    let (k, _) = K8s::example("kubernetes-kserve", &["mlops.yaml"], "churn/model.bst", &[], vec![]);
    let _controller = k.controller();
    let run = k.mlops(&["apply", "--auto-approve"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("3 added"), "{}", run.stdout);
    let isvc = k.cluster.get(&k.ns, &isvc_ar(), "churn-kserve").expect("the InferenceService exists");
    assert_eq!(isvc["spec"]["predictor"]["minReplicas"], 2, "{isvc}");
    let d = k.cluster.get(&k.ns, &deployment_ar(), "churn-api").expect("the Deployment exists");
    assert_eq!(d["spec"]["replicas"], 3, "{d}");
    k.wait_until_no_changes();
}

/// examples/kubernetes-runtimes as its header tells a user (`scripts/services up gcp kubernetes`,
/// the KServe and Seldon CRDs from the fixtures and the example's `runtimes.yaml` applied), applied, read
/// back through the test's own client, then nothing left to do.
#[test]
#[ignore = "needs the test apiserver and fake-gcs-server: `eval \"$(scripts/services up gcp kubernetes)\"`, then `cargo test -- --include-ignored`"]
fn the_runtimes_example_applies_as_its_header_says_and_converges() {
    let (k, models) = K8s::example("kubernetes-runtimes", &["mlops.yaml"], "fraud/model.onnx", &[], vec![]);
    put_object(&k.gcs, &models, "churn/model.joblib", "sklearn weights");
    k.cluster.install_runtime_crds();
    k.cluster.install_seldon_crds();
    // `kubectl apply -f runtimes.yaml`: each document, as kubectl sends it.
    let runtimes = k.env.read("runtimes.yaml");
    let r = ar("serving.kserve.io", "v1alpha1", "ClusterServingRuntime", "clusterservingruntimes");
    for doc in runtimes.split("\n---\n") {
        let object: Value = serde_saphyr::from_str(doc).unwrap();
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        k.cluster.ssa_cluster(&r, &name, object);
    }
    let _controller = k.controller();
    let run = k.mlops(&["apply", "--auto-approve"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("5 added"), "{}", run.stdout);
    let model = |name: &str| {
        k.cluster.get(&k.ns, &isvc_ar(), name).expect("the InferenceService exists")["spec"]["predictor"]["model"]
            .clone()
    };
    let triton = model("fraud-triton");
    assert_eq!(triton["modelFormat"], json!({"name": "onnx", "version": "1"}), "{triton}");
    assert_eq!(triton["runtime"], "kserve-tritonserver");
    assert_eq!(triton["protocolVersion"], "v2");
    assert_eq!(triton["resources"]["limits"]["nvidia.com/gpu"], "1");
    let mlserver = model("churn-mlserver");
    assert_eq!(mlserver["modelFormat"], json!({"name": "sklearn"}), "scikit-learn is KServe's sklearn: {mlserver}");
    assert_eq!(mlserver["runtime"], "kserve-mlserver");
    let seldon = k.cluster.get(&k.ns, &seldon::model_ar(), "churn-seldon").expect("the Seldon Model exists");
    assert_eq!(seldon["spec"]["requirements"], json!(["sklearn"]), "{seldon}");
    assert_eq!(seldon["spec"]["storageUri"], json!(format!("gs://{models}/churn/model.joblib")));
    k.wait_until_no_changes();
}

/// examples/kubernetes-feast as its header tells a user (`scripts/services up gcp kubernetes
/// feast`: `FEAST_REGISTRY` from their environment), applied, seen through Feast's own SDK, then
/// nothing left to do.
#[cfg(feature = "feast")]
#[test]
#[ignore = "needs the test apiserver, fake-gcs-server and a Feast registry: `eval \"$(scripts/services up gcp kubernetes feast)\"`, then `cargo test -- --include-ignored`"]
fn the_feast_example_applies_as_its_header_says_and_converges() {
    let registry = crate::common::service("FEAST_REGISTRY", None, "feast");
    let _writer = crate::feast::one_writer();
    // Unique on the shared registry: the feature store's name; the Feast project is the one the
    // test registry serves.
    let store = unique("customers");
    let edits = [("customer-features", store.clone()), ("project: churn ", "project: mlops ".to_string())];
    let (k, _) = K8s::example(
        "kubernetes-feast",
        &["mlops.yaml"],
        "churn/model.bst",
        &edits,
        vec![("FEAST_REGISTRY", registry)],
    );
    let _controller = k.controller();
    k.mlops(&["apply", "--auto-approve"]).ok();
    let view = crate::feast::view(&store.replace('-', "_"));
    assert_eq!(view["join_key"], "customer_id", "{view}");
    assert_eq!(view["path"], "s3://acme-ml-features/customers.parquet", "{view}");
    assert!(k.cluster.get(&k.ns, &isvc_ar(), "churn-kserve").is_some(), "the InferenceService exists");
    k.wait_until_no_changes();
}

/// examples/mlflow-kserve as its header tells a user (`scripts/services up gcp kubernetes mlflow`):
/// the registry stack (registry.yaml) registers the artifact and points `champion` at it, the
/// serving stack resolves `models:/churn@champion` to that object, pins it and serves it on KServe;
/// then neither stack has anything left to do.
#[cfg(feature = "mlflow")]
#[test]
#[ignore = "needs the test apiserver, fake-gcs-server and MLflow: `eval \"$(scripts/services up gcp kubernetes mlflow)\"`, then `cargo test -- --include-ignored`"]
fn the_mlflow_kserve_example_applies_as_its_header_says_and_converges() {
    let mlflow = crate::common::service("MLFLOW_TRACKING_URI", None, "mlflow");
    // Unique on the shared tracking server: the registered model's name.
    let registered = unique("churn");
    let edits = [
        ("registered_model: churn", format!("registered_model: {registered}")),
        ("models:/churn@champion", format!("models:/{registered}@champion")),
    ];
    // The training job writes an MLflow model folder: its MLmodel file and the weights.
    let object = "churn/2026-11-28/model.bst";
    let files = ["mlops.yaml", "registry.yaml"];
    let (k, models) = K8s::example("mlflow-kserve", &files, object, &edits, vec![("MLFLOW_TRACKING_URI", mlflow)]);
    put_object(&k.gcs, &models, "churn/2026-11-28/MLmodel", "flavors: { xgboost: { model_format: xgb } }");
    let _controller = k.controller();
    k.mlops(&["-f", "registry.yaml", "apply", "--auto-approve"]).ok();
    let champion = || {
        crate::mlflow::mlflow(&format!(
            "print(json.dumps(c.get_model_version_by_alias({registered:?}, 'champion').source))"
        ))
    };
    let folder = format!("gs://{models}/churn/2026-11-28/");
    assert_eq!(champion(), folder);
    k.mlops(&["apply", "--auto-approve"]).ok();
    let storage = || k.storage_uri("churn-kserve");
    assert_eq!(storage(), folder);
    // Pinned as the folder's manifest: both objects at their generations, its digest the version.
    let record = k.lineage_record("models.churn");
    let files: Vec<&String> = record["attributes"]["files"].as_object().unwrap().keys().collect();
    assert_eq!(files, ["MLmodel", "model.bst"], "{record}");
    let manifest = record["attributes"]["artifact_digest"].as_str().unwrap().to_string();
    assert!(manifest.starts_with("sha256:"), "{record}");
    k.wait_until_no_changes();
    let registry = k.mlops(&["-f", "registry.yaml", "plan", "--detailed-exitcode"]);
    assert_eq!(registry.status, 0, "{}{}", registry.stdout, registry.stderr);

    // Next week's model: a new folder registered and the alias moved, a reviewed change here.
    put_object(&k.gcs, &models, "churn/2026-12-05/model.bst", "weights v2");
    put_object(&k.gcs, &models, "churn/2026-12-05/MLmodel", "flavors: { xgboost: { model_format: xgb } }");
    let spec = k.env.read("registry.yaml").replace("/churn/2026-11-28/", "/churn/2026-12-05/");
    k.env.write("registry.yaml", &spec);
    k.env.commit("next week's model");
    k.mlops(&["-f", "registry.yaml", "apply", "--auto-approve"]).ok();
    let plan = k.plan_json();
    let m = change(&plan, "models.churn");
    let tag = m["tags"].as_array().unwrap().iter().find(|t| t["tag"] == "model-version-change").expect("tagged");
    assert_eq!(tag["from_digest"], manifest.as_str(), "{tag}");
    assert!(
        tag["to_digest"].as_str().unwrap().starts_with("sha256:") && tag["to_digest"] != tag["from_digest"],
        "{tag}"
    );
    k.mlops(&["apply", "--auto-approve"]).ok();
    assert_eq!(storage(), format!("gs://{models}/churn/2026-12-05/"));

    // One file of the pinned folder rewritten behind its back: a new version the plan shows.
    put_object(&k.gcs, &models, "churn/2026-12-05/model.bst", "weights v2, retrained");
    let plan = k.plan_json();
    assert_eq!(change(&plan, "models.churn")["action"], "update", "{plan}");
}

/// `mlops rollback` puts what serves back as it was: three applies of the model (a new object per
/// version, as a training job writes them) and of the serving settings (canary share, image,
/// replicas); rolled back to the first, the InferenceService serves v1's storage URI with v1's
/// canary and the Deployment v1's image and replica count (read through kube's client), and
/// `state --at now` equals `state --at` v1 for both. When v1's bytes are no longer what its URI
/// serves, the rollback is refused, naming them, and nothing changes.
#[test]
#[ignore = "needs the test apiserver and fake-gcs-server: `eval \"$(scripts/services up gcp kubernetes)\"`, then `cargo test -- --include-ignored`"]
fn a_rollback_serves_the_recorded_model_with_the_recorded_canary_image_and_replicas() {
    let k = K8s::new(ENDPOINTS);
    let bucket = unique("versions");
    versioned_bucket(&k.gcs, &bucket);
    let _controller = k.controller();
    let release = |v: u32, canary: u32, replicas: u32| {
        put_object(&k.gcs, &bucket, &format!("churn/v{v}/model.bst"), &format!("weights v{v}"));
        let spec =
            regex_free_replace_artifact(&k.env.read("mlops.yaml"), &format!("gs://{bucket}/churn/v{v}/model.bst"));
        let spec = spec
            .lines()
            .map(|l| match l.trim_start() {
                t if t.starts_with("traffic:") => format!("    traffic: {{ canary_percent: {canary} }}"),
                t if t.starts_with("image:") => format!("    image: ghcr.io/example/xgboost-server:1.{v}"),
                "instance_count: 2" | "instance_count: 3" | "instance_count: 4" => {
                    format!("    instance_count: {}", replicas)
                }
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        k.env.write("mlops.yaml", &(spec + "\n"));
        k.env.commit(&format!("v{v}"));
        k.mlops(&["apply", "--auto-approve"]).ok();
        k.rolled_out("churn-api");
        k.wait_until_no_changes();
        k.env.lineage("k8s")[0].clone()
    };
    let v1 = release(1, 10, 2);
    let served = || {
        let isvc = k.cluster.get(&k.ns, &isvc_ar(), "churn-isvc").unwrap();
        let dep = k.cluster.get(&k.ns, &deployment_ar(), "churn-api").unwrap();
        (
            isvc["spec"]["predictor"]["model"]["storageUri"].as_str().unwrap().to_string(),
            isvc["spec"]["predictor"]["canaryTrafficPercent"].as_u64().unwrap(),
            dep["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap().to_string(),
            dep["spec"]["replicas"].as_u64().unwrap(),
        )
    };
    let at_v1 = served();
    assert_eq!(
        at_v1,
        (format!("gs://{bucket}/churn/v1/model.bst"), 10, "ghcr.io/example/xgboost-server:1.1".to_string(), 2)
    );
    release(2, 30, 3);
    release(3, 50, 4);
    assert_eq!(served().0, format!("gs://{bucket}/churn/v3/model.bst"));

    let plan = k.mlops(&["rollback", &v1, "--out", "rb.json"]).ok();
    for address in ["endpoints.churn-isvc", "endpoints.churn-api"] {
        let line =
            plan.stdout.lines().find(|l| l.contains(&format!("~ {address} # will be updated in place"))).unwrap();
        assert!(line.ends_with("rollback]"), "{line}");
    }
    k.mlops(&["apply", "rb.json"]).ok();
    k.rolled_out("churn-api");
    assert_eq!(served(), at_v1, "v1's model, canary, image and replicas serve again");
    let state =
        |at: &str| -> Value { serde_json::from_str(&k.mlops(&["state", "--at", at, "--json"]).ok().stdout).unwrap() };
    let (now, then) = (state("now"), state(&v1));
    for address in ["endpoints.churn-isvc", "endpoints.churn-api", "models.churn"] {
        let attributes = |s: &Value| {
            let r = s["resources"].as_array().unwrap().iter().find(|r| r["address"] == address).unwrap();
            r["record"]["attributes"].clone()
        };
        assert_eq!(attributes(&now), attributes(&then), "{address} is recorded as it was at v1");
    }

    // v1's object rewritten in place: what its URI serves is no longer v1, so nothing is rolled back.
    let v4 = release(4, 50, 4);
    put_object(&k.gcs, &bucket, "churn/v1/model.bst", "weights v1, retrained");
    let refused = k.mlops(&["rollback", &v1]);
    assert_eq!(refused.status, 1, "{}", refused.stdout);
    assert!(refused.stderr.contains("models.churn"), "{}", refused.stderr);
    assert!(refused.stderr.contains("cannot roll back 1 resource(s)"), "only the model is named: {}", refused.stderr);
    assert!(refused.stderr.contains("now holds generation"), "{}", refused.stderr);
    assert_eq!(k.env.lineage("k8s")[0], v4, "nothing recorded");
    assert_eq!(served().0, format!("gs://{bucket}/churn/v4/model.bst"), "nothing changed");
}

/// The test OCI registry (Distribution 2.8, `scripts/services up registry`): `host:port`.
fn registry() -> String {
    crate::common::service("MLOPS_TEST_REGISTRY", None, "registry")
}

/// Pushes a small image to `repo:tag` on the test registry with the distribution API itself (a
/// config blob, a layer blob, an OCI manifest) and returns its manifest digest. `content` makes
/// it another image.
fn push_image(repo: &str, tag: &str, content: &str) -> String {
    use sha2::Digest;
    let host = registry();
    let upload = |bytes: &[u8]| -> (String, usize) {
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)));
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-D",
                "-",
                "-X",
                "POST",
                &format!("http://{host}/v2/{repo}/blobs/uploads/"),
            ])
            .output()
            .unwrap();
        let headers = String::from_utf8_lossy(&out.stdout).to_string();
        let location = headers
            .lines()
            .find_map(|l| l.strip_prefix("Location: ").or_else(|| l.strip_prefix("location: ")))
            .unwrap_or_else(|| panic!("no upload location: {headers}"))
            .trim()
            .to_string();
        let url = if location.starts_with("http") { location } else { format!("http://{host}{location}") };
        let sep = if url.contains('?') { '&' } else { '?' };
        let out = std::process::Command::new("curl")
            .args(["-sS", "-f", "-X", "PUT", "-H", "content-type: application/octet-stream", "--data-binary", "@-"])
            .arg(format!("{url}{sep}digest={digest}"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(bytes)?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(out.status.success(), "blob upload: {}", String::from_utf8_lossy(&out.stderr));
        (digest, bytes.len())
    };
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"content":"{content}"}}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
    );
    let (config_digest, config_size) = upload(config.as_bytes());
    let (layer_digest, layer_size) = upload(content.as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer_size }],
    })
    .to_string();
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-f",
            "-X",
            "PUT",
            "-H",
            "content-type: application/vnd.oci.image.manifest.v1+json",
            "-d",
            &manifest,
        ])
        .arg(format!("http://{host}/v2/{repo}/manifests/{tag}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "manifest put: {}", String::from_utf8_lossy(&out.stderr));
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(manifest.as_bytes())))
}

/// Images on a real registry: the tag is resolved to its digest at plan time and the Deployment
/// runs `name@sha256:…` (read through kube's client); a tag pushed to again is `image-moved`
/// with both digests; a saved plan made before a push is refused as stale; a rollback brings the
/// recorded digest back, and is refused when its manifest was deleted from the registry.
#[test]
#[ignore = "needs the test apiserver, fake-gcs-server, the OCI registry and the validators: `eval \"$(scripts/services up gcp kubernetes registry validators)\"`, then `cargo test -- --include-ignored`"]
fn images_are_pinned_by_digest_and_a_moved_tag_is_a_reviewed_change() {
    let host = registry();
    let k = K8s::new(
        "  churn-api:\n    runtime: deployment\n    model: models.churn\n    instance_count: 1\n    port: 8080\n    wait_timeout: 30s\n",
    );
    let repo = format!("acme/{}", unique("server"));
    let image = format!("{host}/{repo}:1.7");
    let spec = k
        .env
        .read("mlops.yaml")
        .replace("images: { pin: tag }\n", "")
        .replace("ghcr.io/example/xgboost-server:1.7", &image);
    k.env.write("mlops.yaml", &spec);
    k.env.commit("images from our registry");
    let _controller = k.controller();
    let d1 = push_image(&repo, "1.7", "v1");
    let deployed = || {
        let dep = k.cluster.get(&k.ns, &deployment_ar(), "churn-api").unwrap();
        dep["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap().to_string()
    };
    let plan = k.mlops(&["plan"]).ok();
    assert!(plan.stdout.contains(&format!("{host}/{repo}@{d1}")), "the plan shows the digest:\n{}", plan.stdout);
    k.mlops(&["apply", "--auto-approve"]).ok();
    let v1 = k.env.lineage("k8s")[0].clone();
    assert_eq!(deployed(), format!("{host}/{repo}@{d1}"), "deployed by digest");
    let record = k.lineage_record("models.churn");
    assert_eq!(record["attributes"]["image_ref"], json!({ "image": image, "digest": d1 }), "{record}");
    // The ML-BOM lists the pinned image as a container component, as CycloneDX's validator accepts.
    let bom_text = k.mlops(&["audit", "bom"]).ok().stdout;
    let python = crate::common::service("MLOPS_TEST_VALIDATORS_PYTHON", None, "validators");
    assert_eq!(crate::audit::cyclonedx_errors(&python, &k.env, &bom_text), None);
    let bom: Value = serde_json::from_str(&bom_text).unwrap();
    let containers: Vec<&Value> =
        bom["components"].as_array().unwrap().iter().filter(|c| c["type"] == "container").collect();
    assert_eq!(containers.len(), 1, "one image: {bom}");
    assert_eq!(containers[0]["name"], format!("{host}/{repo}"));
    assert_eq!(containers[0]["version"], d1.as_str());
    assert_eq!(containers[0]["hashes"][0]["content"], d1.trim_start_matches("sha256:"));
    let deps = bom["dependencies"].as_array().unwrap();
    let model_deps = &deps.iter().find(|d| d["ref"] == "models.churn").expect("the model's dependencies")["dependsOn"];
    assert!(
        model_deps.as_array().unwrap().contains(&containers[0]["bom-ref"]),
        "the model runs the image: {model_deps}"
    );
    k.rolled_out("churn-api");
    k.wait_until_no_changes();

    // Someone pushes to the tag: the next plan says so, with both digests.
    let d2 = push_image(&repo, "1.7", "v2");
    let plan = k.plan_json();
    let m = change(&plan, "models.churn");
    let moved = m["tags"].as_array().unwrap().iter().find(|t| t["tag"] == "image-moved").expect("image-moved");
    assert_eq!((&moved["from_digest"], &moved["to_digest"]), (&json!(d1), &json!(d2)), "{moved}");
    assert_eq!(change(&plan, "endpoints.churn-api")["action"], "update");
    k.mlops(&["plan", "--out", "saved.json"]).ok();

    // And again before the saved plan is applied: it is stale, and nothing changes.
    let d3 = push_image(&repo, "1.7", "v3");
    let stale = k.mlops(&["apply", "saved.json"]);
    assert_eq!(stale.status, 1, "{}{}", stale.stdout, stale.stderr);
    assert!(stale.stderr.contains("now names") && stale.stderr.contains(&d3), "{}", stale.stderr);
    assert_eq!(deployed(), format!("{host}/{repo}@{d1}"), "nothing changed");
    k.mlops(&["apply", "--auto-approve"]).ok();
    assert_eq!(deployed(), format!("{host}/{repo}@{d3}"));
    let v3 = k.env.lineage("k8s")[0].clone();
    k.rolled_out("churn-api");

    // Back to v1: the digest recorded then, whatever the tag names now.
    k.mlops(&["rollback", &v1, "--out", "rb.json"]).ok();
    k.mlops(&["apply", "rb.json"]).ok();
    assert_eq!(deployed(), format!("{host}/{repo}@{d1}"), "v1's image by digest");
    k.rolled_out("churn-api");

    // v3's manifest deleted from the registry: a rollback to it is refused, naming the image.
    let out = std::process::Command::new("curl")
        .args(["-sS", "-f", "-X", "DELETE", &format!("http://{host}/v2/{repo}/manifests/{d3}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let before = k.env.lineage("k8s");
    let refused = k.mlops(&["rollback", &v3]);
    assert_eq!(refused.status, 1, "{}", refused.stdout);
    assert!(refused.stderr.contains("is no longer in its registry"), "{}", refused.stderr);
    assert!(refused.stderr.contains("models.churn"), "{}", refused.stderr);
    assert_eq!(k.env.lineage("k8s"), before, "nothing recorded");
    assert_eq!(deployed(), format!("{host}/{repo}@{d1}"), "nothing changed");
}

/// `mlops stacks --format kubernetes` and `--format argo` on the training/serving repository:
/// the apiserver accepts every Job and the Workflow on a server-side dry-run (kube's client, as
/// `kubectl apply --dry-run=server` sends them) and returns them as sent, nothing pruned; the
/// Workflow's DAG is the stacks' (serving depends on training), the Jobs carry their waves.
#[test]
#[ignore = "needs the test apiserver: `eval \"$(scripts/services up kubernetes)\"`, then `cargo test -- --include-ignored`"]
fn the_cluster_recipes_are_accepted_by_the_apiserver_as_written() {
    let cluster = Cluster::new(&kubeconfig());
    let env = crate::stacks::training_and_serving();
    env.git(&["remote", "add", "origin", "https://git.example.com/ml/platform.git"]);
    let ns = unique("recipes");
    cluster.create_namespace(&ns);
    let dry = PostParams { dry_run: true, field_manager: Some("mlops-tests".into()) };
    let yaml = |format: &str| -> Value {
        let out =
            env.mlops(&["stacks", "--format", format, "--run", "apply", "--image", "registry.example.com/mlops:1"]);
        serde_saphyr::from_str(&out.ok().stdout).unwrap()
    };

    let list = yaml("kubernetes");
    let jobs = list["items"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    for (job, (wave, stack)) in jobs.iter().zip([("0", "training:default"), ("1", "serving:default")]) {
        let obj: DynamicObject = serde_json::from_value(job.clone()).unwrap();
        let back = cluster.rt.block_on(cluster.api(Some(&ns), &ar("batch", "v1", "Job", "jobs")).create(&dry, &obj));
        let back = serde_json::to_value(back.unwrap_or_else(|e| panic!("the Job of {stack} is refused: {e}"))).unwrap();
        assert_eq!(back["metadata"]["labels"]["mlops.dev/wave"], wave);
        assert_eq!(back["metadata"]["annotations"]["mlops.dev/stack"], stack);
        let container = &back["spec"]["template"]["spec"]["containers"][0];
        for (field, sent) in job["spec"]["template"]["spec"]["containers"][0].as_object().unwrap() {
            assert_eq!(&container[field], sent, "{field} returned as sent (beside the apiserver's defaults)");
        }
        let script = container["args"][0].as_str().unwrap();
        assert!(
            script.starts_with("git clone --quiet https://git.example.com/ml/platform.git /work\ncd /work\n"),
            "{script}"
        );
    }
    assert_eq!(jobs[0]["metadata"]["name"], "mlops-training-default");

    // The Workflow CRD (a trimmed fixture of Argo's) first; a Workflow it types wrongly is refused.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/argo-workflow-crd.yaml");
    let crd: Value = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    cluster.ssa_cluster(&crd_ar(), "workflows.argoproj.io", crd);
    let workflows = ar("argoproj.io", "v1alpha1", "Workflow", "workflows");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cluster
        .rt
        .block_on(cluster.client.list_api_group_resources("argoproj.io/v1alpha1"))
        .is_ok_and(|l| l.resources.iter().any(|r| r.name == "workflows"))
    {
        assert!(Instant::now() < deadline, "the Workflow CRD is not served");
        std::thread::sleep(Duration::from_millis(100));
    }
    let wf = yaml("argo");
    let obj: DynamicObject = serde_json::from_value(wf.clone()).unwrap();
    let back = cluster.rt.block_on(cluster.api(Some(&ns), &workflows).create(&dry, &obj));
    let back = serde_json::to_value(back.unwrap_or_else(|e| panic!("the Workflow is refused: {e}"))).unwrap();
    assert_eq!(back["spec"], wf["spec"], "returned as sent: nothing pruned");
    let tasks = &back["spec"]["templates"][0]["dag"]["tasks"];
    assert_eq!(
        tasks[1],
        json!({ "name": "mlops-serving-default", "template": "mlops-serving-default", "dependencies": ["mlops-training-default"] })
    );
    let mut nameless = wf.clone();
    nameless["spec"]["templates"][1].as_object_mut().unwrap().remove("name");
    let obj: DynamicObject = serde_json::from_value(nameless).unwrap();
    let refused = cluster.rt.block_on(cluster.api(Some(&ns), &workflows).create(&dry, &obj));
    assert!(refused.is_err(), "a template without a name is refused: the fixture's schema checks");
}

/// The 1-based line of the first line of `spec` that contains `needle` after the line holding `after`.
fn line_after(spec: &str, after: &str, needle: &str) -> usize {
    let start = spec.lines().position(|l| l.contains(after)).expect("the anchor is in the spec");
    start + 1 + spec.lines().skip(start).position(|l| l.contains(needle)).expect("the line is in the spec")
}

#[test]
#[ignore = "needs the test apiserver and fake-gcs-server: `eval \"$(scripts/services up gcp kubernetes)\"`, then `cargo test -- --include-ignored`"]
fn kserve_model_formats_and_serving_runtimes_are_checked_at_plan_and_written_to_the_predictor() {
    // A ClusterServingRuntime is cluster-wide: a name of its own per run.
    let triton = unique("triton");
    let k = K8s::new(&format!(
        "  churn-isvc:\n    runtime: kserve\n    model: models.churn\n    serving_runtime: mlserver\n    \
         protocol_version: v2\n    wait_timeout: 30s\n  churn-onnx:\n    runtime: kserve\n    model: models.churn\n    \
         model_format: {{ name: onnx, version: \"1\" }}\n    serving_runtime: {triton}\n    protocol_version: grpc-v2\n    \
         wait_timeout: 30s\n"
    ));
    k.cluster.install_runtime_crds();
    k.cluster.serving_runtime(
        Some(&k.ns),
        "mlserver",
        json!([{"name": "sklearn", "version": "1"}, {"name": "xgboost", "version": "1"}]),
        json!(["v2"]),
    );
    k.cluster.serving_runtime(
        None,
        &triton,
        json!([{"name": "onnx", "version": "1"}, {"name": "tensorflow"}]),
        json!(["v2", "grpc-v2"]),
    );
    let _controller = k.controller();
    let run = k.mlops(&["apply", "--auto-approve"]).ok();
    assert!(run.stdout.contains("Apply complete! Resources: 3 added"), "{}", run.stdout);
    // Read back through the test's own client, not mlops's reads.
    let model = |name: &str| {
        k.cluster.get(&k.ns, &isvc_ar(), name).expect("the InferenceService exists")["spec"]["predictor"]["model"]
            .clone()
    };
    let isvc = model("churn-isvc");
    assert_eq!(isvc["modelFormat"], json!({"name": "xgboost"}), "from the model's framework: {isvc}");
    assert_eq!(isvc["runtime"], "mlserver");
    assert_eq!(isvc["protocolVersion"], "v2");
    let onnx = model("churn-onnx");
    assert_eq!(onnx["modelFormat"], json!({"name": "onnx", "version": "1"}), "{onnx}");
    assert_eq!(onnx["runtime"], triton.as_str());
    assert_eq!(onnx["protocolVersion"], "grpc-v2");
    assert_eq!(k.mlops(&["plan", "--detailed-exitcode"]).status, 0, "nothing to do after the apply");

    let spec = k.env.read("mlops.yaml");
    let refused = |edited: &str, says: &str, line: usize| {
        k.env.write("mlops.yaml", edited);
        let plan = k.mlops(&["plan"]);
        assert_eq!(plan.status, 1, "{}{}", plan.stdout, plan.stderr);
        assert!(crate::common::flat(&plan.stderr).contains(says), "{says}:\n{}", plan.stderr);
        assert!(plan.stderr.contains(&format!("mlops.yaml:{line}:")), "at line {line}:\n{}", plan.stderr);
        k.env.write("mlops.yaml", &spec);
    };
    let runtime_line = line_after(&spec, "churn-onnx:", "serving_runtime:");
    refused(
        &spec.replace("version: \"1\" }", "version: \"2\" }"),
        "does not support the model format onnx (version 2) (it supports: onnx (version 1), tensorflow)",
        runtime_line,
    );
    refused(
        &spec.replace("serving_runtime: mlserver", "serving_runtime: no-such-runtime"),
        "runtimes that support xgboost: ",
        line_after(&spec, "churn-isvc:", "serving_runtime:"),
    );
    refused(
        &spec.replace("protocol_version: v2", "protocol_version: v1"),
        "does not serve protocol v1 (it serves: v2)",
        line_after(&spec, "churn-isvc:", "protocol_version:"),
    );
    refused(
        &spec.replace("framework: xgboost", "framework: catboost"),
        "framework `catboost` names no KServe model format",
        line_after(&spec, "churn-isvc:", "model: models.churn"),
    );
    // Each refusal changed nothing.
    assert_eq!(model("churn-isvc")["runtime"], "mlserver");
    assert_eq!(k.mlops(&["plan", "--detailed-exitcode"]).status, 0);

    // A Deployment runs its image as it is: KServe's settings are refused before any call.
    k.env.write(
        "mlops.yaml",
        &spec.replace("  churn-isvc:\n    runtime: kserve", "  churn-isvc:\n    runtime: deployment"),
    );
    let v = k.mlops(&["validate"]);
    assert_eq!(v.status, 1, "{}", v.stderr);
    assert!(crate::common::flat(&v.stderr).contains("`serving_runtime` applies to `runtime: kserve`"), "{}", v.stderr);
}

/// Without `serving_runtime`, KServe picks a runtime that auto-selects the format: the plan warns
/// when the cluster has runtimes and none does, and stops warning once one is installed.
#[test]
#[ignore = "needs the test apiserver and fake-gcs-server: `eval \"$(scripts/services up gcp kubernetes)\"`, then `cargo test -- --include-ignored`"]
fn a_format_no_runtime_auto_selects_is_a_plan_warning() {
    let format = unique("fmt");
    let k = K8s::new(&format!(
        "  churn-isvc:\n    runtime: kserve\n    model: models.churn\n    model_format: {{ name: {format} }}\n    wait_timeout: 30s\n"
    ));
    k.cluster.install_runtime_crds();
    let plan = k.mlops(&["plan"]).ok();
    let warning = format!("auto-selects {format} with protocol v1");
    assert!(
        flat(&plan.stdout).contains(&warning) || flat(&plan.stderr).contains(&warning),
        "{}{}",
        plan.stdout,
        plan.stderr
    );
    k.cluster.serving_runtime(None, &format, json!([{"name": format, "autoSelect": true}]), json!(["v1"]));
    let plan = k.mlops(&["plan"]).ok();
    assert!(!plan.stdout.contains(&warning) && !plan.stderr.contains(&warning), "{}{}", plan.stdout, plan.stderr);
}
