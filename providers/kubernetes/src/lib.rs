//! The Kubernetes provider: endpoints served on a cluster, by server-side apply.
//!
//! - `runtime: kserve` → a `serving.kserve.io/v1beta1` InferenceService (model format and
//!   `storageUri` from the referenced model, replicas, `canaryTrafficPercent`).
//! - `runtime: deployment` → a Deployment + Service running a serving image, the model's
//!   artifact URI passed in as `MODEL_URI`.
//! - `runtime: seldon` → a Seldon Core v2 `mlops.seldon.io/v1alpha1` Model (`storageUri` and
//!   `requirements` from the referenced model, replicas, the Server when named); a rollout adds
//!   a candidate Model and an Experiment for its steps (see `seldon`).
//!
//! Every object is written with server-side apply under the field manager `mlops`. The plan's
//! desired state is the server's own answer to a dry-run apply (`dryRun=All`), cut down to the
//! fields mlops sets, so defaults and normalisation never show as changes; live objects are cut
//! down the same way, so server-set fields (status, managedFields, resourceVersion) never do.
//! A dry run that collides with another field manager puts the conflict in the plan, and apply
//! refuses it unless forced.

mod endpoint;
mod errors;
mod import;
mod manifests;
mod readiness;
mod rollout;
mod runtimes;
mod schema;
mod seldon;
pub use schema::entry;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
pub use kube;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, Status};
use kube::{Client, Config};
use mlops_provider_core::{
    Address, ApplyRequest, Attributes, ConfigDiagnostic, Dependencies, Desired, ErrorKind, Kind, LiveState, PriorState,
    Progress, Provider, ProviderContext, ProviderError, ResourceConfig, ResourceType, Value, ValuePath, attributes_of,
};
use serde_json::json;

use errors::*;
use manifests::*;
use readiness::*;

/// The field manager every write uses.
pub const FIELD_MANAGER: &str = "mlops";
/// The annotation naming the spec address an object belongs to.
pub const ADDRESS_ANNOTATION: &str = "mlops.dev/address";
const DIGEST_ANNOTATION: &str = "mlops.dev/model-digest";
const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
const PROJECT_LABEL: &str = "mlops.dev/project";
const SELECTOR_LABEL: &str = "mlops.dev/endpoint";
const DEFAULT_WAIT: Duration = Duration::from_secs(600);
const POLL: Duration = Duration::from_millis(500);

/// Builds the provider from its `providers.kubernetes` block.
pub fn factory(block: &Value, ctx: &ProviderContext) -> Result<Arc<dyn Provider>, ProviderError> {
    let s = |k: &str| block.get(k).and_then(Value::as_str).map(str::to_string);
    let cluster = Arc::new(Cluster {
        kubeconfig: s("kubeconfig").map(|p| ctx.base_dir.join(p)),
        context: s("context"),
        namespace: s("namespace"),
        kserve_namespace: s("kserve_namespace").unwrap_or_else(|| "kserve".into()),
        project: ctx.project.clone(),
        client: tokio::sync::OnceCell::new(),
        reads: Default::default(),
        kserve_served: tokio::sync::OnceCell::new(),
        seldon_served: tokio::sync::OnceCell::new(),
        hpa_api: tokio::sync::OnceCell::new(),
    });
    Ok(Arc::new(KubernetesProvider { endpoints: endpoint::Endpoints(cluster) }))
}

/// The provider: it serves one kind, endpoints.
pub struct KubernetesProvider {
    endpoints: endpoint::Endpoints,
}

/// The cluster: the block's settings, the client, what was found served, the read cache.
pub(crate) struct Cluster {
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    namespace: Option<String>,
    kserve_namespace: String,
    project: String,
    client: tokio::sync::OnceCell<(Client, String, String)>,
    /// The objects `desired` fetched per endpoint (by namespace and kind), for its `read`.
    reads: mlops_provider_core::ReadCache<BTreeMap<(String, &'static str), Option<Value>>>,
    /// KServe was found served, once per run (a missing one is asked again, and reported).
    kserve_served: tokio::sync::OnceCell<()>,
    /// Seldon Core v2 was found served, once per run.
    seldon_served: tokio::sync::OnceCell<()>,
    /// The HorizontalPodAutoscaler API the cluster serves (`autoscaling/v2`, or `v2beta2` before
    /// Kubernetes 1.23), found once per run.
    hpa_api: tokio::sync::OnceCell<&'static str>,
}

/// One kind of object an endpoint is made of, under the attribute that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    InferenceService,
    Deployment,
    Service,
    /// The HorizontalPodAutoscaler of a Deployment with `autoscaling`.
    Autoscaler,
    /// A Seldon Core v2 Model (`runtime: seldon`).
    SeldonModel,
    /// The Seldon Core v2 Experiment of a rollout in progress (never in the desired state).
    Experiment,
}

/// A kind's API as kube's dynamic client addresses it (`group` empty for the core API).
fn api_resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    let api_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    ApiResource { group: group.into(), version: version.into(), api_version, kind: kind.into(), plural: plural.into() }
}

impl Part {
    const ALL: [Part; 6] = [
        Part::InferenceService,
        Part::Deployment,
        Part::Service,
        Part::Autoscaler,
        Part::SeldonModel,
        Part::Experiment,
    ];

    fn attribute(self) -> &'static str {
        match self {
            Part::InferenceService => "inference_service",
            Part::Deployment => "deployment",
            Part::Service => "service",
            Part::Autoscaler => "autoscaler",
            Part::SeldonModel => "seldon_model",
            Part::Experiment => "experiment",
        }
    }

    fn resource(self) -> ApiResource {
        match self {
            Part::InferenceService => {
                api_resource("serving.kserve.io", "v1beta1", "InferenceService", "inferenceservices")
            }
            Part::Deployment => api_resource("apps", "v1", "Deployment", "deployments"),
            Part::Service => api_resource("", "v1", "Service", "services"),
            Part::Autoscaler => {
                api_resource("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers")
            }
            Part::SeldonModel => api_resource("mlops.seldon.io", "v1alpha1", "Model", "models"),
            Part::Experiment => api_resource("mlops.seldon.io", "v1alpha1", "Experiment", "experiments"),
        }
    }

    fn from_kind(kind: &str) -> Option<Part> {
        Part::ALL.into_iter().find(|p| p.resource().kind == kind)
    }
}

use mlops_provider_core::error_chain as chain;

use mlops_provider_core::autoscaling::{AutoscalingSupport, Metric};
use mlops_provider_core::rollout::{RolloutSupport, Strategy};

/// KServe's predictor autoscaling (`scaleMetric`/`scaleTarget`, Knative's or a HorizontalPodAutoscaler).
const KSERVE_AUTOSCALING: AutoscalingSupport = AutoscalingSupport {
    what: "KServe",
    metrics: &[Metric::Cpu, Metric::Concurrency],
    cooldowns: false,
    instead: "`invocations_per_instance` is a SageMaker metric",
};

/// KServe's canary (`canaryTrafficPercent`, Serverless mode), raised step by step by mlops,
/// which checks readiness at each step and resets to the previous model when one fails.
const KSERVE_ROLLOUT: RolloutSupport = RolloutSupport {
    what: "KServe (canaryTrafficPercent, stepped by mlops)",
    strategies: &Strategy::ALL,
    percent: (1, 99),
    linear: (1, 99),
    alarms: None,
};

/// A HorizontalPodAutoscaler (autoscaling/v2) on resource metrics.
const DEPLOYMENT_AUTOSCALING: AutoscalingSupport = AutoscalingSupport {
    what: "a HorizontalPodAutoscaler on resource metrics",
    metrics: &[Metric::Cpu],
    cooldowns: true,
    instead: "request metrics need a custom metrics adapter; use `runtime: kserve` for `concurrency`",
};

/// A name Kubernetes accepts for a Service (and so for everything else): a DNS-1035 label.
fn valid_k8s_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn wait_timeout(config: &ResourceConfig) -> Duration {
    config.str("wait_timeout").and_then(mlops_provider_core::parse_duration).unwrap_or(DEFAULT_WAIT)
}

/// The spec address an object's annotation names, when mlops made it.
pub(crate) fn owner_of(o: &Value) -> Option<&str> {
    let managed = o.pointer(&format!("/metadata/labels/{}", MANAGED_BY.replace('/', "~1"))).and_then(Value::as_str);
    let address = o.pointer(&format!("/metadata/annotations/{}", ADDRESS_ANNOTATION.replace('/', "~1")));
    address.and_then(Value::as_str).filter(|_| managed == Some("mlops"))
}

impl Cluster {
    /// The client, the namespace endpoints go to, and the cluster URL (for messages).
    async fn client(&self) -> Result<&(Client, String, String), ProviderError> {
        self.client
            .get_or_try_init(|| async {
                let options = KubeConfigOptions { context: self.context.clone(), ..Default::default() };
                let mut config = match &self.kubeconfig {
                    Some(path) => {
                        let kc = Kubeconfig::read_from(path).map_err(|e| {
                            ProviderError::invalid(format!("cannot read kubeconfig {}: {}", path.display(), chain(&e)))
                        })?;
                        Config::from_custom_kubeconfig(kc, &options).await.map_err(|e| {
                            ProviderError::invalid(format!("kubeconfig {}: {}", path.display(), chain(&e)))
                        })?
                    }
                    None if self.context.is_some() => Config::from_kubeconfig(&options)
                        .await
                        .map_err(|e| ProviderError::invalid(format!("kubeconfig: {}", chain(&e))))?,
                    None => Config::infer().await.map_err(|e| {
                        ProviderError::invalid(format!(
                            "no Kubernetes connection: set `kubeconfig` in the provider block, KUBECONFIG, or run in a cluster ({})",
                            chain(&e)
                        ))
                    })?,
                };
                config.connect_timeout = Some(Duration::from_secs(3));
                config.read_timeout = Some(Duration::from_secs(30));
                let namespace = self.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
                let url = config.cluster_url.to_string();
                let client = Client::try_from(config)
                    .map_err(|e| ProviderError::invalid(format!("Kubernetes client: {}", chain(&e))))?;
                Ok((client, namespace, url))
            })
            .await
    }

    fn api(&self, client: &Client, namespace: &str, part: Part) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), namespace, &self.resource_of(part))
    }

    /// A part's API, with the HorizontalPodAutoscaler version the cluster serves (once found).
    fn resource_of(&self, part: Part) -> ApiResource {
        let mut r = part.resource();
        if let (Part::Autoscaler, Some(v)) = (part, self.hpa_api.get()) {
            r.version = v.rsplit('/').next().unwrap_or(v).to_string();
            r.api_version = v.to_string();
        }
        r
    }

    /// Finds the HorizontalPodAutoscaler API the cluster serves, when `part` is one.
    async fn discover(&self, part: Part) -> Result<(), ProviderError> {
        if part != Part::Autoscaler {
            return Ok(());
        }
        self.hpa_api
            .get_or_try_init(|| async {
                let (client, _, url) = self.client().await?;
                for v in ["autoscaling/v2", "autoscaling/v2beta2"] {
                    match client.list_api_group_resources(v).await {
                        Ok(l) if l.resources.iter().any(|r| r.name == "horizontalpodautoscalers") => return Ok(v),
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => return Err(kube_error(&format!("discover {v} on {url}"), e)),
                    }
                }
                Err(ProviderError::invalid(format!(
                    "the cluster at {url} serves no HorizontalPodAutoscaler (autoscaling/v2 or v2beta2)"
                ))
                .at(ValuePath::key("autoscaling")))
            })
            .await
            .map(|_| ())
    }

    async fn get(&self, namespace: &str, part: Part, name: &str) -> Result<Option<Value>, ProviderError> {
        self.discover(part).await?;
        let (client, _, url) = self.client().await?;
        let kind = part.resource().kind;
        match self.api(client, namespace, part).get_opt(name).await {
            Ok(o) => Ok(o.map(|o| serde_json::to_value(o).expect("objects serialize"))),
            // A kind the cluster does not serve has no objects.
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(kube_error(&format!("get {kind} {namespace}/{name} from {url}"), e)),
        }
    }

    /// Fails with a plan-time error that says so when the cluster does not serve InferenceServices.
    async fn require_kserve(&self) -> Result<(), ProviderError> {
        let missing = |url: &str| {
            format!(
                "KServe is not installed on the cluster at {url}: it does not serve InferenceService \
                 (serving.kserve.io/v1beta1). Install KServe, or serve this endpoint with `runtime: deployment`"
            )
        };
        self.kserve_served
            .get_or_try_init(|| self.require_served("serving.kserve.io/v1beta1", &["inferenceservices"], missing))
            .await
            .map(|_| ())
    }

    /// Fails with a plan-time error that says so when the cluster does not serve Seldon Core v2's
    /// Models and Experiments.
    async fn require_seldon(&self) -> Result<(), ProviderError> {
        let missing = |url: &str| {
            format!(
                "Seldon Core v2 is not installed on the cluster at {url}: it does not serve Model and Experiment \
                 (mlops.seldon.io/v1alpha1). Install Seldon Core v2, or serve this endpoint with `runtime: kserve`"
            )
        };
        let plurals = &["models", "experiments"];
        self.seldon_served
            .get_or_try_init(|| self.require_served("mlops.seldon.io/v1alpha1", plurals, missing))
            .await
            .map(|_| ())
    }

    /// Whether the cluster serves every one of `plurals` in `group_version`; an error at the
    /// endpoint's `runtime` saying `missing` when it does not.
    async fn require_served(
        &self,
        group_version: &str,
        plurals: &[&str],
        missing: impl Fn(&str) -> String,
    ) -> Result<(), ProviderError> {
        let (client, _, url) = self.client().await?;
        let missing = || ProviderError::invalid(missing(url)).at(ValuePath::key("runtime"));
        match client.list_api_group_resources(group_version).await {
            Ok(list) if plurals.iter().all(|p| list.resources.iter().any(|r| r.name == *p)) => Ok(()),
            Ok(_) => Err(missing()),
            Err(kube::Error::Api(s)) if s.code == 404 => Err(missing()),
            Err(e) => Err(kube_error(&format!("discover {group_version} on {url}"), e)),
        }
    }

    /// KServe's default deployment mode, from its `inferenceservice-config` ConfigMap.
    async fn kserve_deployment_mode(&self) -> Result<Option<String>, ProviderError> {
        let (client, _, url) = self.client().await?;
        let cm = api_resource("", "v1", "ConfigMap", "configmaps");
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &self.kserve_namespace, &cm);
        let found = api.get_opt("inferenceservice-config").await.map_err(|e| {
            kube_error(&format!("read {}/inferenceservice-config from {url}", self.kserve_namespace), e)
        })?;
        let deploy = found.as_ref().and_then(|o| o.data.pointer("/data/deploy")).and_then(Value::as_str);
        Ok(deploy
            .and_then(|d| serde_json::from_str::<Value>(d).ok())
            .and_then(|d| d.get("defaultDeploymentMode").and_then(Value::as_str).map(str::to_string)))
    }

    /// Server-side apply of one object (a dry run when `dry_run`).
    async fn ssa(&self, manifest: &Value, part: Part, dry_run: bool, force: bool) -> Result<Value, kube::Error> {
        let (client, _, _) = self.client().await.map_err(|e| kube::Error::Service(e.message.into()))?;
        self.discover(part).await.map_err(|e| kube::Error::Service(e.message.into()))?;
        let mut manifest = manifest.clone();
        manifest["apiVersion"] = json!(self.resource_of(part).api_version);
        let name = manifest.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let namespace = manifest.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
        let mut pp = PatchParams::apply(FIELD_MANAGER);
        pp.dry_run = dry_run;
        pp.force = force;
        let o = self.api(client, namespace, part).patch(name, &pp, &Patch::Apply(&manifest)).await?;
        Ok(serde_json::to_value(o).expect("objects serialize"))
    }

    /// An object as lineage records it: enough to find it again and to delete only it (its uid).
    fn object_ref(&self, part: Part, namespace: &str, o: &Value) -> Value {
        json!({
            "kind": part.resource().kind,
            "api_version": self.resource_of(part).api_version,
            "namespace": namespace,
            "name": o.pointer("/metadata/name"),
            "uid": o.pointer("/metadata/uid"),
            "generation": o.pointer("/metadata/generation"),
        })
    }

    async fn delete_objects(&self, objects: &[Value], progress: &dyn Progress) -> Result<(), ProviderError> {
        let (client, _, url) = self.client().await?;
        for o in objects {
            let s = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            let (kind, namespace, name, uid) = (s("kind"), s("namespace"), s("name"), s("uid"));
            let Some(part) = Part::from_kind(&kind) else { continue };
            // (`get` finds the API version a HorizontalPodAutoscaler is served at.)
            let Some(live) = self.get(&namespace, part, &name).await? else { continue };
            let live_uid = live.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
            let managed = live.pointer(&format!("/metadata/labels/{}", MANAGED_BY.replace('/', "~1")));
            if live_uid != uid || managed.and_then(Value::as_str) != Some("mlops") {
                return Err(ProviderError::new(
                    ErrorKind::Conflict,
                    format!(
                        "{kind} {namespace}/{name} is not the object mlops created (uid {live_uid}, recorded {uid}); \
                         it was left alone: delete it yourself if it should go"
                    ),
                ));
            }
            progress.report(&format!("deleting {kind} {namespace}/{name}"));
            let dp = DeleteParams {
                preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
                ..DeleteParams::background()
            };
            match self.api(client, &namespace, part).delete(&name, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(st)) if st.code == 404 => {}
                Err(e) => return Err(kube_error(&format!("delete {kind} {namespace}/{name} on {url}"), e)),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Provider for KubernetesProvider {
    fn name(&self) -> &str {
        "kubernetes"
    }

    /// Endpoints only: datasets and models stay on a store or a registry, which it serves from.
    fn resource(&self, kind: Kind) -> Option<&dyn ResourceType> {
        match kind {
            Kind::Endpoint => Some(&self.endpoints),
            _ => None,
        }
    }

    fn runs_images(&self) -> bool {
        true
    }

    fn version_attributes(&self) -> &'static [&'static str] {
        &["artifact_digest", "generation"]
    }

    fn traffic_attributes(&self) -> &'static [&'static str] {
        &["canary_percent", "replicas", "traffic", "canaryTrafficPercent", "minReplicas", "maxReplicas"]
    }

    fn rollout_attributes(&self) -> &'static [&'static str] {
        // The predictor's model: where it is, and the digest that rolls it when the bytes change.
        &["storageUri", DIGEST_ANNOTATION]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_the_template_shape() {
        let live = json!({
            "metadata": {"labels": {"a": "1", "b": "2"}, "resourceVersion": "9", "managedFields": []},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [
                {"name": "s", "image": "i", "terminationMessagePath": "/dev/x"}
            ]}}},
            "status": {"availableReplicas": 1}
        });
        let template = json!({
            "metadata": {"labels": {"a": "x"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "s", "image": "j"}]}}}
        });
        assert_eq!(
            prune(&live, &template),
            json!({
                "metadata": {"labels": {"a": "1"}},
                "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "s", "image": "i"}]}}}
            })
        );
    }

    #[test]
    fn names() {
        assert!(valid_k8s_name("churn-api"));
        assert!(!valid_k8s_name("Churn"));
        assert!(!valid_k8s_name("1api"));
        assert!(!valid_k8s_name("api-"));
        assert!(!valid_k8s_name("a.b"));
        assert!(!valid_k8s_name(&"a".repeat(64)));
    }

    #[test]
    fn readiness_of_a_deployment_needs_the_current_generation() {
        let mut d = json!({"metadata": {"generation": 2}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "updatedReplicas": 2, "availableReplicas": 2}});
        assert!(!readiness(Part::Deployment, &d).0);
        d["status"]["observedGeneration"] = json!(2);
        assert!(readiness(Part::Deployment, &d).0);
        let isvc = json!({"metadata": {"generation": 1}, "status": {"conditions": [
            {"type": "Ready", "status": "False", "reason": "RevisionMissing", "message": "no revision"}]}});
        let (ok, line) = readiness(Part::InferenceService, &isvc);
        assert!(!ok);
        assert!(line.contains("RevisionMissing"), "{line}");
    }
}
