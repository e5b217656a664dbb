//! The Kubernetes provider: endpoints served on a cluster, by server-side apply.
//!
//! - `runtime: kserve` → a `serving.kserve.io/v1beta1` InferenceService (model format and
//!   `storageUri` from the referenced model, replicas, `canaryTrafficPercent`).
//! - `runtime: deployment` → a Deployment + Service running a serving image, the model's
//!   artifact URI passed in as `MODEL_URI`.
//!
//! Every object is written with server-side apply under the field manager `mlops`. The plan's
//! desired state is the server's own answer to a dry-run apply (`dryRun=All`), cut down to the
//! fields mlops sets, so defaults and normalisation never show as changes; live objects are cut
//! down the same way, so server-set fields (status, managedFields, resourceVersion) never do.
//! A dry run that collides with another field manager puts the conflict in the plan, and apply
//! refuses it unless forced.

mod errors;
mod manifests;
mod readiness;
mod rollout;
mod schema;
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
    Progress, Provider, ProviderContext, ProviderError, ResourceConfig, Value, ValuePath, attributes_of,
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
    Ok(Arc::new(KubernetesProvider {
        kubeconfig: s("kubeconfig").map(|p| ctx.base_dir.join(p)),
        context: s("context"),
        namespace: s("namespace"),
        kserve_namespace: s("kserve_namespace").unwrap_or_else(|| "kserve".into()),
        project: ctx.project.clone(),
        client: tokio::sync::OnceCell::new(),
        reads: Default::default(),
        kserve_served: tokio::sync::OnceCell::new(),
        hpa_api: tokio::sync::OnceCell::new(),
    }))
}

pub struct KubernetesProvider {
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
}

impl Part {
    const ALL: [Part; 4] = [Part::InferenceService, Part::Deployment, Part::Service, Part::Autoscaler];

    fn attribute(self) -> &'static str {
        match self {
            Part::InferenceService => "inference_service",
            Part::Deployment => "deployment",
            Part::Service => "service",
            Part::Autoscaler => "autoscaler",
        }
    }

    fn resource(self) -> ApiResource {
        let (group, version, kind, plural) = match self {
            Part::InferenceService => ("serving.kserve.io", "v1beta1", "InferenceService", "inferenceservices"),
            Part::Deployment => ("apps", "v1", "Deployment", "deployments"),
            Part::Service => ("", "v1", "Service", "services"),
            Part::Autoscaler => ("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
        };
        let api_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
        ApiResource {
            group: group.into(),
            version: version.into(),
            api_version,
            kind: kind.into(),
            plural: plural.into(),
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

impl KubernetesProvider {
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
        self.kserve_served.get_or_try_init(|| self.discover_kserve()).await.map(|_| ())
    }

    async fn discover_kserve(&self) -> Result<(), ProviderError> {
        let (client, _, url) = self.client().await?;
        let missing = || {
            ProviderError::invalid(format!(
                "KServe is not installed on the cluster at {url}: it does not serve InferenceService \
                 (serving.kserve.io/v1beta1). Install KServe, or serve this endpoint with `runtime: deployment`"
            ))
            .at(ValuePath::key("runtime"))
        };
        match client.list_api_group_resources("serving.kserve.io/v1beta1").await {
            Ok(list) if list.resources.iter().any(|r| r.name == "inferenceservices") => Ok(()),
            Ok(_) => Err(missing()),
            Err(kube::Error::Api(s)) if s.code == 404 => Err(missing()),
            Err(e) => Err(kube_error(&format!("discover serving.kserve.io/v1beta1 on {url}"), e)),
        }
    }

    /// KServe's default deployment mode, from its `inferenceservice-config` ConfigMap.
    async fn kserve_deployment_mode(&self) -> Result<Option<String>, ProviderError> {
        let (client, _, url) = self.client().await?;
        let cm = ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            plural: "configmaps".into(),
        };
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

    async fn desired_endpoint(&self, config: &ResourceConfig, deps: &Dependencies) -> Result<Desired, ProviderError> {
        let (_, default_ns, url) = self.client().await?;
        let namespace = default_ns.clone();
        let runtime = config.str("runtime").unwrap_or("kserve");
        if runtime == "kserve" {
            self.require_kserve().await?;
            let canary = if config.body.pointer("/traffic/canary_percent").is_some() {
                Some(ValuePath::keys(&["traffic", "canary_percent"]))
            } else {
                config.body.get("rollout").map(|_| ValuePath::key("rollout"))
            };
            if let Some(at) = canary {
                let mode = self.kserve_deployment_mode().await?;
                if mode.as_deref() == Some("RawDeployment") {
                    return Err(ProviderError::invalid(format!(
                        "KServe on {url} deploys in RawDeployment mode (ConfigMap {}/inferenceservice-config), \
                         which ignores canaryTrafficPercent: this canary would not happen",
                        self.kserve_namespace
                    ))
                    .at(at));
                }
            }
        }
        let name = &config.address.name;
        let mut d = Desired::default();
        let mut fetched = BTreeMap::new();
        for (part, manifest) in self.manifests(config, deps, &namespace)? {
            let kind = part.resource().kind;
            let live = self.get(&namespace, part, name).await?;
            fetched.insert((namespace.clone(), part.attribute()), live.clone());
            if let Some(live) = live {
                let owner = live.pointer(&format!("/metadata/annotations/{}", ADDRESS_ANNOTATION.replace('/', "~1")));
                if owner.and_then(Value::as_str) != Some(&config.address.to_string()) {
                    d.conflicts.push(format!(
                        "{kind} {namespace}/{name} exists and was not created by mlops for {} (annotation {ADDRESS_ANNOTATION} is {})",
                        config.address,
                        owner.map(|o| o.to_string()).unwrap_or_else(|| "absent".into())
                    ));
                }
            }
            let what = format!("dry-run apply of {kind} {namespace}/{name} on {url}");
            let result = match self.ssa(&manifest, part, true, false).await {
                Ok(o) => o,
                Err(e) if api_status(&e).is_some_and(|s| s.code == 409) => {
                    let mut conflicts = conflicts_of(&kind, name, api_status(&e).expect("checked"));
                    // The replica count the autoscaler mlops is removing held is mlops's again.
                    if part == Part::Deployment && self.own_autoscaler(&namespace, &config.address).await? {
                        conflicts.retain(|c| !c.contains(" .spec.replicas:"));
                    }
                    d.conflicts.extend(conflicts);
                    self.ssa(&manifest, part, true, true).await.map_err(|e| kube_error(&what, e))?
                }
                Err(e) if api_status(&e).is_some_and(|s| s.code == 404 && s.message.contains("namespace")) => {
                    return Err(ProviderError::invalid(format!(
                        "namespace {namespace} does not exist on {url}; create it, or set `namespace` in the kubernetes provider block"
                    )));
                }
                Err(e) => return Err(kube_error(&what, e)),
            };
            d.attributes.insert(part.attribute().into(), prune(&result, &Self::template(&manifest)));
        }
        self.reads.keep(config.address.to_string(), fetched);
        d.attributes.insert("runtime".into(), json!(runtime));
        d.attributes.insert("namespace".into(), json!(namespace));
        d.attributes.insert("ready".into(), json!(true));
        // Another kind of object, or another namespace, is another object: created, then the old one deleted.
        d.force_new.insert("runtime".into());
        d.force_new.insert("namespace".into());
        d.create_before_destroy = true;
        let rollout = mlops_provider_core::rollout::Rollout::of(config).map(|r| r.expected().as_secs()).unwrap_or(0);
        d.expected_wait_secs = Some(if runtime == "kserve" { 180 + rollout } else { 60 });
        Ok(d)
    }

    /// Whether the endpoint has a HorizontalPodAutoscaler mlops made for it.
    async fn own_autoscaler(&self, namespace: &str, address: &Address) -> Result<bool, ProviderError> {
        let hpa = self.get(namespace, Part::Autoscaler, &address.name).await?;
        let owner = hpa.as_ref().and_then(|o| {
            o.pointer(&format!("/metadata/annotations/{}", ADDRESS_ANNOTATION.replace('/', "~1")))?
                .as_str()
                .map(String::from)
        });
        Ok(owner.as_deref() == Some(&address.to_string()))
    }

    /// The parts an endpoint has, from what is wanted or what was recorded.
    fn parts_of(attrs: &Attributes) -> Vec<Part> {
        Part::ALL.into_iter().filter(|p| attrs.contains_key(p.attribute())).collect()
    }

    async fn read_endpoint(
        &self,
        address: &Address,
        prior: Option<&PriorState>,
        desired: Option<&Desired>,
    ) -> Result<Option<LiveState>, ProviderError> {
        let (_, default_ns, _) = self.client().await?;
        let ns_of = |a: &Attributes| a.get("namespace").and_then(Value::as_str).unwrap_or(default_ns).to_string();
        // What the spec wants, then what lineage recorded (mid-replacement, the old objects still
        // count as this endpoint's, so a change of runtime or namespace reads as a replacement).
        let mut sources: Vec<(&Attributes, bool)> = Vec::new();
        if let Some(d) = desired {
            sources.push((&d.attributes, false));
        }
        if let Some(p) = prior {
            sources.push((&p.attributes, true));
        }
        let name = &address.name;
        let mut fetched = self.reads.take(&address.to_string()).unwrap_or_default();
        let mut attributes = Attributes::new();
        let mut objects = Vec::new();
        let mut seen: Vec<(Part, String)> = Vec::new();
        let (mut ready, mut url, mut digest) = (true, Value::Null, Value::Null);
        let (mut runtime, mut namespace) = (None, None);
        for (source, recorded) in sources {
            let ns = ns_of(source);
            for part in Self::parts_of(source) {
                if seen.contains(&(part, ns.clone())) {
                    continue;
                }
                seen.push((part, ns.clone()));
                let o = match fetched.remove(&(ns.clone(), part.attribute())) {
                    Some(o) => o,
                    None => self.get(&ns, part, name).await?,
                };
                let Some(o) = o else {
                    ready &= recorded;
                    continue;
                };
                if recorded || runtime.is_none() {
                    runtime = Some(if part == Part::InferenceService { "kserve" } else { "deployment" });
                    namespace = Some(ns.clone());
                }
                let template = source.get(part.attribute()).cloned().unwrap_or(Value::Null);
                attributes.insert(part.attribute().into(), prune(&o, &template));
                ready &= readiness(part, &o).0;
                objects.push(json!({
                    "kind": part.resource().kind,
                    "api_version": self.resource_of(part).api_version,
                    "namespace": ns,
                    "name": name,
                    "uid": o.pointer("/metadata/uid"),
                    "generation": o.pointer("/metadata/generation"),
                }));
                let annotation = |path: &str| {
                    o.pointer(&format!("{path}/{}", DIGEST_ANNOTATION.replace('/', "~1")))
                        .cloned()
                        .unwrap_or(Value::Null)
                };
                match part {
                    Part::InferenceService => {
                        url = o.pointer("/status/url").cloned().unwrap_or(Value::Null);
                        digest = annotation("/spec/predictor/annotations");
                    }
                    Part::Deployment => digest = annotation("/spec/template/metadata/annotations"),
                    Part::Service => url = json!(format!("http://{name}.{ns}.svc.cluster.local")),
                    Part::Autoscaler => {}
                }
            }
        }
        let (Some(runtime), Some(namespace)) = (runtime, namespace) else {
            return Ok(None);
        };
        attributes.insert("ready".into(), json!(ready));
        attributes.insert("namespace".into(), json!(namespace));
        attributes.insert("runtime".into(), json!(runtime));
        let outputs = attributes_of(json!({ "objects": objects, "url": url, "model_digest": digest }));
        Ok(Some(LiveState { attributes, outputs }))
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

    fn check(&self, config: &ResourceConfig) -> Vec<ConfigDiagnostic> {
        let diag = ConfigDiagnostic::unsupported;
        if config.address.kind != Kind::Endpoint {
            return vec![diag(
                ValuePath::key("provider"),
                format!("the kubernetes provider serves endpoints only, not {}", config.address.kind),
                "keep datasets and models on local, gcp or aws; a kubernetes endpoint serves a model from there",
            )];
        }
        let mut out = Vec::new();
        if !valid_k8s_name(&config.address.name) {
            out.push(ConfigDiagnostic {
                path: ValuePath::root(),
                code: "spec::invalid_name".into(),
                message: format!("`{}` is not a valid Kubernetes object name", config.address.name),
                help: Some(
                    "use 1 to 63 lowercase letters, digits and `-`, starting with a letter and not ending with `-`"
                        .into(),
                ),
            });
        }
        let runtime = config.str("runtime");
        if runtime.is_none() {
            out.push(diag(
                ValuePath::root(),
                format!("{} is on kubernetes and needs a `runtime`", config.address),
                "add `runtime: kserve` (an InferenceService) or `runtime: deployment` (a Deployment + Service)",
            ));
        }
        if config.body.get("variants").is_some() {
            out.push(diag(
                ValuePath::key("variants"),
                "`variants` are SageMaker production variants; a Kubernetes endpoint would ignore them".into(),
                "on kubernetes, use `runtime: kserve` with `traffic: { canary_percent: N }`",
            ));
        }
        if config.body.get("instance_type").is_some() {
            out.push(diag(
                ValuePath::key("instance_type"),
                "`instance_type` has no meaning on kubernetes and would be ignored".into(),
                "size the pods with `resources: { cpu: \"1\", memory: 2Gi }` instead",
            ));
        }
        let canary = config.body.pointer("/traffic/canary_percent").and_then(Value::as_u64);
        if runtime == Some("deployment") {
            if canary.is_some() {
                out.push(diag(
                    ValuePath::keys(&["traffic", "canary_percent"]),
                    "a Deployment cannot split traffic between model versions: this canary would be ignored".into(),
                    "use `runtime: kserve` for canaries, or remove `traffic.canary_percent`",
                ));
            }
            if config.body.get("max_replicas").is_some() && config.body.get("autoscaling").is_none() {
                out.push(diag(
                    ValuePath::key("max_replicas"),
                    "`runtime: deployment` scales only with `autoscaling`: `max_replicas` would be ignored".into(),
                    "write `autoscaling: { min, max, target: { metric: cpu, value: 70 } }` (a HorizontalPodAutoscaler)",
                ));
            }
            let cpu_target = config.body.pointer("/autoscaling/target/metric").and_then(Value::as_str) == Some("cpu");
            if cpu_target && config.body.pointer("/resources/cpu").is_none() {
                out.push(diag(
                    ValuePath::keys(&["autoscaling", "target", "metric"]),
                    "a HorizontalPodAutoscaler measures CPU in percent of what the pods request, and these request none"
                        .into(),
                    "set `resources: { cpu: \"500m\" }` on the endpoint",
                ));
            }
        }
        let support = match runtime {
            Some("deployment") => Some(&DEPLOYMENT_AUTOSCALING),
            _ => Some(&KSERVE_AUTOSCALING),
        };
        out.extend(mlops_provider_core::autoscaling::check(config, support));
        if runtime == Some("deployment") && config.body.get("rollout").is_some() {
            out.push(diag(
                ValuePath::key("rollout"),
                "a Deployment replaces its pods by its own rolling update; it cannot split traffic in steps: \
                 `rollout` would be ignored"
                    .into(),
                "use `runtime: kserve` for a canary or linear rollout driven by mlops",
            ));
        } else {
            out.extend(mlops_provider_core::rollout::check(config, Some(&KSERVE_ROLLOUT)));
        }

        if runtime == Some("kserve") {
            for key in ["image", "args", "port"] {
                if config.body.get(key).is_some() {
                    out.push(diag(
                        ValuePath::key(key),
                        format!("`{key}` applies to `runtime: deployment`; KServe picks its server from the model's framework"),
                        "remove it, or use `runtime: deployment` to run your own serving image",
                    ));
                }
            }
        }
        out.extend(mlops_provider_core::autoscaling::check_bounds(config));
        out.extend(mlops_provider_core::check_duration(
            ValuePath::key("wait_timeout"),
            config.body.get("wait_timeout"),
        ));
        out
    }

    async fn desired(&self, config: &ResourceConfig, deps: &Dependencies) -> Result<Desired, ProviderError> {
        match config.address.kind {
            Kind::Endpoint => self.desired_endpoint(config, deps).await,
            k => Err(ProviderError::invalid(format!("the kubernetes provider does not manage {k}"))),
        }
    }

    async fn read(
        &self,
        address: &Address,
        prior: Option<&PriorState>,
        desired: Option<&Desired>,
    ) -> Result<Option<LiveState>, ProviderError> {
        match address.kind {
            Kind::Endpoint => self.read_endpoint(address, prior, desired).await,
            _ => Ok(None),
        }
    }

    async fn apply(&self, request: ApplyRequest<'_>, progress: &dyn Progress) -> Result<LiveState, ProviderError> {
        let address = request.address;
        // What `desired` saw before this change is not what a later read must see.
        self.reads.take(&address.to_string());
        let name = &address.name;
        let attrs = &request.desired.attributes;
        let (_, default_ns, url) = self.client().await?;
        let namespace = attrs.get("namespace").and_then(Value::as_str).unwrap_or(default_ns).to_string();
        let parts = Self::parts_of(attrs);
        // Autoscaling removed: the Deployment takes its replica count back from the autoscaler
        // mlops made (its HorizontalPodAutoscaler is deleted below, once this is applied).
        let had_autoscaler =
            request.prior.and_then(|p| p.outputs.get("objects")).and_then(Value::as_array).is_some_and(|os| {
                os.iter().any(|o| o.get("kind").and_then(Value::as_str) == Some("HorizontalPodAutoscaler"))
            });
        let take_back = had_autoscaler && !parts.contains(&Part::Autoscaler);
        // Another model on KServe with a `rollout:`: stepped by mlops.
        let stepped = parts == [Part::InferenceService] && request.options.wait;
        if let Some(r) = mlops_provider_core::rollout::Rollout::of(request.config).filter(|_| stepped)
            && Self::moves_model(request.live, attrs)
        {
            return self.roll_out(&request, &r, &namespace, progress).await;
        }
        let mut changed = false;
        for part in &parts {
            let force = request.options.force_conflicts || (take_back && *part == Part::Deployment);
            let kind = part.resource().kind;
            // Exactly what the plan showed: the planned fields, with the object's identity.
            let manifest = Self::identity(*part, name, &namespace, &attrs[part.attribute()]);
            progress.report(&format!(
                "server-side apply of {kind} {namespace}/{name}{}",
                if force { " (forced)" } else { "" }
            ));
            if let Err(e) = self.ssa(&manifest, *part, false, force).await {
                let err = match api_status(&e) {
                    Some(s) if s.code == 409 => ProviderError::new(
                        ErrorKind::Conflict,
                        format!(
                            "{}; apply again with --force-conflicts to take these fields",
                            conflicts_of(&kind, name, s).join("; ")
                        ),
                    ),
                    _ => kube_error(&format!("apply {kind} {namespace}/{name} on {url}"), e),
                };
                return Err(self.with_state(err, address, request.desired, changed).await);
            }
            changed = true;
        }
        // Objects lineage recorded that this endpoint no longer has (another runtime or namespace):
        // deleted once the new ones are ready, and kept on record until then.
        let leftovers: Vec<Value> = request
            .prior
            .and_then(|p| p.outputs.get("objects"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|o| {
                o.get("namespace").and_then(Value::as_str) != Some(&namespace)
                    || !parts.iter().any(|p| o.get("kind").and_then(Value::as_str) == Some(&p.resource().kind))
            })
            .collect();
        let keep_on_record = |mut e: ProviderError| {
            if let Some(Value::Array(objects)) = e.state.as_mut().and_then(|s| s.outputs.get_mut("objects")) {
                objects.extend(leftovers.iter().cloned());
            }
            e
        };
        if request.options.wait {
            let timeout = wait_timeout(request.config);
            progress.report(&format!("waiting up to {}s for {namespace}/{name} to be ready", timeout.as_secs()));
            if let Err(e) = self.wait_ready(&parts, &namespace, name, timeout, progress).await {
                return Err(keep_on_record(self.with_state(e, address, request.desired, true).await));
            }
        }
        if let Err(e) = self.delete_objects(&leftovers, progress).await {
            return Err(keep_on_record(self.with_state(e, address, request.desired, true).await));
        }
        self.read_endpoint(address, None, Some(request.desired))
            .await?
            .ok_or_else(|| ProviderError::failed(format!("{namespace}/{name} is missing right after it was applied")))
    }

    async fn delete(
        &self,
        _address: &Address,
        prior: &PriorState,
        progress: &dyn Progress,
    ) -> Result<(), ProviderError> {
        let objects = prior.outputs.get("objects").and_then(Value::as_array).cloned().unwrap_or_default();
        self.delete_objects(&objects, progress).await
    }
}

impl KubernetesProvider {
    /// The error, with what is live when something was written before it.
    async fn with_state(&self, e: ProviderError, address: &Address, desired: &Desired, changed: bool) -> ProviderError {
        if !changed {
            return e;
        }
        match self.read_endpoint(address, None, Some(desired)).await {
            Ok(Some(live)) => e.with_state(live),
            _ => e,
        }
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
