//! Vertex AI endpoints: an endpoint on gcp serves a gcp model registered in Vertex (`vertex:`)
//! on dedicated resources (`instance_type` → machine type, `instance_count` → min replicas,
//! `max_replicas` → max, or `autoscaling`). A new model version is deployed next to the old one
//! with all the traffic (a canary's share, or a rollout's first step, the old one keeping the
//! rest), and the old deployed model is undeployed only once the new one serves
//! (create-before-destroy); a replica-only change is `mutateDeployedModel`. Each deployed model is
//! named `mlops-<source>` after the model version it serves, which is how a read knows it; the
//! newest of those is what mlops serves.

use std::collections::{BTreeMap, HashMap};

use google_cloud_aiplatform_v1::client::EndpointService;
use google_cloud_aiplatform_v1::model::{
    AutoscalingMetricSpec, DedicatedResources, DeployedModel, Endpoint, MachineSpec,
};
use google_cloud_lro::Poller;
use mlops_provider_core::autoscaling::{Autoscaling, AutoscalingSupport, Metric};
use mlops_provider_core::rollout::{Rollout, RolloutSupport, Strategy};

use super::vertex::{OWN_LABELS, not_found, vertex_error};
use super::*;

const SERVING_PREFIX: &str = "mlops-";

/// Vertex AI scales a deployed model between its min and max replicas on a metric target.
const AUTOSCALING: AutoscalingSupport = AutoscalingSupport {
    what: "Vertex AI (autoscalingMetricSpecs)",
    metrics: &[Metric::Cpu],
    cooldowns: false,
    instead: "Vertex AI scales dedicated resources on CPU (or accelerator) utilisation",
};

/// A rollout on Vertex AI: mlops moves the endpoint's traffic split in steps; a deployment that
/// fails moves nothing (there are no alarms to watch).
const ROLLOUT: RolloutSupport = RolloutSupport {
    what: "Vertex AI (traffic split steps driven by mlops)",
    strategies: &Strategy::ALL,
    percent: (1, 99),
    linear: (1, 99),
    alarms: None,
};

/// The Vertex metric of CPU utilisation.
const CPU_METRIC: &str = "aiplatform.googleapis.com/prediction/online/cpu/utilization";

/// A Vertex endpoint id from a spec name: lowercase letters, digits and `-`, starting with a letter.
fn endpoint_id(name: &str) -> String {
    let id: String =
        name.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    if id.starts_with(|c: char| c.is_ascii_lowercase()) { id } else { format!("e-{id}") }
}

/// The autoscaling metric targets a desired state asks for.
fn scale_on(want: &Attributes) -> Vec<AutoscalingMetricSpec> {
    want.get("scale_on")
        .filter(|v| !v.is_null())
        .map(|v| {
            let metric = v.get("metric").and_then(Value::as_str).unwrap_or(CPU_METRIC);
            let target = v.get("target").and_then(Value::as_i64).unwrap_or(60) as i32;
            vec![AutoscalingMetricSpec::new().set_metric_name(metric).set_target(target)]
        })
        .unwrap_or_default()
}

impl Gcp {
    async fn endpoints(&self) -> Result<&EndpointService, ProviderError> {
        self.vertex_endpoints
            .get_or_try_init(|| async {
                let b = self.vertex_builder(EndpointService::builder());
                b.build().await.map_err(|e| ProviderError::invalid(format!("Vertex AI client: {}", chain(&e))))
            })
            .await
    }

    /// The endpoint's resource name: the one lineage recorded (an imported endpoint keeps its
    /// own), else made of the stack's project and the spec name.
    pub(crate) fn endpoint_name(&self, address: &Address, recorded: Option<&Attributes>) -> String {
        match recorded.and_then(|o| o.get("endpoint")).and_then(Value::as_str) {
            Some(name) => name.to_string(),
            None => {
                format!("{}/endpoints/{}", self.location(), endpoint_id(&format!("{}-{}", self.stack, address.name)))
            }
        }
    }

    /// A full resource name from an id or a name (`mlops import`).
    fn endpoint_named(&self, id: &str) -> String {
        if id.starts_with("projects/") { id.to_string() } else { format!("{}/endpoints/{id}", self.location()) }
    }

    pub(crate) fn endpoint_check(config: &ResourceConfig) -> Vec<ConfigDiagnostic> {
        let diag = ConfigDiagnostic::unsupported;
        let mut out = Vec::new();
        if config.str("instance_type").is_none() {
            out.push(diag(
                ValuePath::root(),
                format!("{} is a Vertex AI endpoint and needs an `instance_type` (a machine type)", config.address),
                "e.g. `instance_type: n1-standard-4`",
            ));
        }
        out.extend(mlops_provider_core::autoscaling::check_bounds(config));
        out.extend(mlops_provider_core::autoscaling::check(config, Some(&AUTOSCALING)));
        out.extend(mlops_provider_core::rollout::check(config, Some(&ROLLOUT)));

        out.extend(mlops_provider_core::check_duration(
            ValuePath::key("wait_timeout"),
            config.body.get("wait_timeout"),
        ));
        out
    }

    pub(crate) async fn endpoint_desired(
        &self,
        config: &ResourceConfig,
        deps: &Dependencies,
    ) -> Result<Desired, ProviderError> {
        let model: Option<Address> = config.str("model").and_then(|m| m.parse().ok());
        let source = model
            .as_ref()
            .and_then(|m| deps.get(m))
            .and_then(|d| d.attributes.get("vertex"))
            .and_then(|v| v.get("source"))
            .cloned()
            .ok_or_else(|| {
                ProviderError::invalid(format!(
                    "{} is not in the Vertex AI Model Registry: give it `vertex: {{}}` to serve it on a Vertex endpoint",
                    config.str("model").unwrap_or_default()
                ))
                .at(ValuePath::key("model"))
            })?;
        let autoscaling = Autoscaling::of(config);
        let (min, max) = match &autoscaling {
            Some(a) => (a.min, a.max),
            None => {
                let min = config.body.get("instance_count").and_then(Value::as_u64).unwrap_or(1);
                (min, config.body.get("max_replicas").and_then(Value::as_u64).unwrap_or(min))
            }
        };
        // A canary exists while the version changes: the new one takes its share and the one
        // serving now keeps the rest, until `canary_percent` leaves the spec (the promotion).
        let traffic = match config.body.pointer("/traffic/canary_percent").and_then(Value::as_u64) {
            Some(p) => {
                let live = self.endpoint_read(&self.endpoint_name(&config.address, None)).await?;
                let (serving, previous) = live
                    .as_ref()
                    .map(|l| (l.attributes.get("serving"), l.outputs.get("previous").filter(|p| !p.is_null())))
                    .unwrap_or((None, None));
                let changing = serving.is_some_and(|s| !s.is_null() && *s != source);
                if changing || (serving == Some(&source) && previous.is_some()) { p } else { 100 }
            }
            None => 100,
        };
        let attributes = attributes_of(json!({
            "display_name": config.address.name,
            "serving": source,
            "machine_type": config.str("instance_type"),
            "replicas": { "min": min, "max": max },
            "scale_on": autoscaling.map(|a| json!({ "metric": CPU_METRIC, "target": a.target.round() as i64 })),
            "traffic": traffic,
            "labels": config.body.get("labels").cloned().unwrap_or_else(|| json!({})),
        }));
        Ok(Desired { attributes, create_before_destroy: true, expected_wait_secs: Some(900), ..Default::default() })
    }

    /// The deployed models mlops made, newest first: the first is what it serves (or the
    /// canary), the second what served before (during a canary).
    fn ours(e: &Endpoint) -> Vec<&DeployedModel> {
        let mut v: Vec<&DeployedModel> =
            e.deployed_models.iter().filter(|d| d.display_name.starts_with(SERVING_PREFIX)).collect();
        v.sort_by_key(|d| std::cmp::Reverse(d.create_time.as_ref().map(|t| (t.seconds(), t.nanos()))));
        v
    }

    fn endpoint_state(e: &Endpoint) -> LiveState {
        let ours = Self::ours(e);
        let serving = ours.first().copied();
        let previous = ours.get(1).map(|d| d.display_name.trim_start_matches(SERVING_PREFIX).to_string());
        let resources = serving.and_then(|d| d.dedicated_resources());
        let labels: BTreeMap<&String, &String> =
            e.labels.iter().filter(|(k, _)| !OWN_LABELS.contains(&k.as_str())).collect();
        let attributes = attributes_of(json!({
            "display_name": e.display_name,
            "serving": serving.map(|d| d.display_name.trim_start_matches(SERVING_PREFIX).to_string()),
            "machine_type": resources.and_then(|r| r.machine_spec.as_ref()).map(|m| m.machine_type.clone()),
            "replicas": resources.map(|r| json!({ "min": r.min_replica_count, "max": r.max_replica_count })),
            "scale_on": resources
                .and_then(|r| r.autoscaling_metric_specs.first())
                .map(|m| json!({ "metric": m.metric_name, "target": m.target })),
            "traffic": serving.and_then(|d| e.traffic_split.get(&d.id)),
            "labels": labels,
        }));
        let split: BTreeMap<&String, &i32> = e.traffic_split.iter().collect();
        let deployed: Vec<Value> = e
            .deployed_models
            .iter()
            .map(|d| json!({ "id": d.id, "model": d.model, "version": d.model_version_id, "name": d.display_name }))
            .collect();
        let outputs = attributes_of(json!({
            "endpoint": e.name,
            "deployed_models": deployed,
            "traffic_split": split,
            "version": serving.map(|d| d.model_version_id.clone()),
            "previous": previous,
        }));
        LiveState { attributes, outputs }
    }

    pub(crate) async fn endpoint_read(&self, name: &str) -> Result<Option<LiveState>, ProviderError> {
        let client = self.endpoints().await?;
        match client.get_endpoint().set_name(name).send().await {
            Ok(e) => Ok(Some(Self::endpoint_state(&e))),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(vertex_error(&format!("get Vertex endpoint {name}"), e)),
        }
    }

    /// An existing endpoint adopted into lineage (`mlops import`): labelled as this stack's.
    pub(crate) async fn endpoint_import(&self, id: &str) -> Result<LiveState, ProviderError> {
        let name = self.endpoint_named(id);
        let client = self.endpoints().await?;
        let e = match client.get_endpoint().set_name(&name).send().await {
            Ok(e) => e,
            Err(e) if not_found(&e) => {
                return Err(ProviderError::invalid(format!("Vertex endpoint `{name}` does not exist")));
            }
            Err(e) => return Err(vertex_error(&format!("get Vertex endpoint {name}"), e)),
        };
        let labels = self.owned_labels(e.labels.clone());
        self.update_endpoint(&name, Endpoint::new().set_name(&name).set_labels(labels), "labels").await?;
        self.endpoint_read(&name)
            .await?
            .ok_or_else(|| ProviderError::failed(format!("Vertex endpoint {name} vanished while it was imported")))
    }

    /// The error, with what is live when something changed before it (recorded as partial).
    async fn with_endpoint_state(&self, e: ProviderError, name: &str) -> ProviderError {
        match self.endpoint_read(name).await {
            Ok(Some(live)) => e.with_state(live),
            _ => e,
        }
    }

    pub(crate) async fn endpoint_apply(
        &self,
        request: &ApplyRequest<'_>,
        progress: &dyn Progress,
    ) -> Result<LiveState, ProviderError> {
        let address = request.address;
        let name = self.endpoint_name(address, request.prior.map(|p| &p.outputs));
        let client = self.endpoints().await?;
        let want = &request.desired.attributes;
        let labels = self.owned_labels(string_map(want.get("labels")));
        let mut live = match client.get_endpoint().set_name(&name).send().await {
            Ok(e) => Some(e),
            Err(e) if not_found(&e) => None,
            Err(e) => return Err(vertex_error(&format!("get Vertex endpoint {name}"), e)),
        };
        // Not in lineage but there (an apply killed after the create): adopted only when it is
        // this stack's.
        if let Some(e) = live.as_ref().filter(|_| request.prior.is_none()) {
            self.require_ours(&e.labels, &format!("Vertex endpoint {name}"), true)?;
        }
        if live.is_none() {
            progress.report(&format!("creating Vertex endpoint {name} (long-running)"));
            let endpoint = Endpoint::new().set_display_name(address.name.clone()).set_labels(labels.clone());
            let created = client
                .create_endpoint()
                .set_parent(self.location())
                .set_endpoint_id(name.rsplit('/').next().unwrap_or_default())
                .set_endpoint(endpoint)
                .poller()
                .until_done()
                .await
                .map_err(|e| vertex_error(&format!("create Vertex endpoint {name}"), e))?;
            live = Some(created);
        }
        let current = live.expect("created above");
        let state = Self::endpoint_state(&current);
        let had = &state.attributes;
        let ours = Self::ours(&current);
        let serving = ours.first().map(|d| (*d).clone());
        let share = want.get("traffic").and_then(Value::as_i64).unwrap_or(100) as i32;
        let s = |k: &str| want.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let n = |k: &str| want.get("replicas").and_then(|r| r.get(k)).and_then(Value::as_i64).unwrap_or(1) as i32;
        let redeploy = had.get("serving") != want.get("serving") || had.get("machine_type") != want.get("machine_type");
        if redeploy {
            // The model version to serve: what the model's apply recorded.
            let model = request
                .config
                .str("model")
                .and_then(|m| m.parse::<Address>().ok())
                .and_then(|m| request.dependencies.get(&m))
                .and_then(|d| d.outputs.as_ref())
                .ok_or_else(|| ProviderError::failed(format!("the model of {address} has no Vertex model recorded")))?;
            let (Some(model_name), Some(version)) = (
                model.get("vertex_model").and_then(Value::as_str),
                model.get("vertex_version").and_then(Value::as_str),
            ) else {
                return Err(ProviderError::failed(format!("the model of {address} has no Vertex model recorded")));
            };
            let resources = DedicatedResources::new()
                .set_machine_spec(MachineSpec::new().set_machine_type(s("machine_type")))
                .set_min_replica_count(n("min"))
                .set_max_replica_count(n("max"))
                .set_autoscaling_metric_specs(scale_on(want));
            let deployed = DeployedModel::new()
                .set_model(format!("{model_name}@{version}"))
                .set_display_name(format!("{SERVING_PREFIX}{}", s("serving")))
                .set_dedicated_resources(resources);
            // A rollout moves the traffic in steps from the version serving now.
            let rollout = Rollout::of(request.config).filter(|_| serving.is_some());
            let steps: Vec<i32> =
                rollout.as_ref().map(|r| r.steps().iter().map(|s| *s as i32).collect()).unwrap_or_default();
            let share = steps.first().copied().unwrap_or(share);
            // The new one's share once it serves (all of it, a canary's or the first step's, the
            // one serving now keeping the rest); the others at 0 until undeployed.
            let mut split: HashMap<String, i32> = current.deployed_models.iter().map(|d| (d.id.clone(), 0)).collect();
            split.insert("0".into(), share);
            let keep = serving.as_ref().filter(|_| share < 100).map(|d| d.id.clone());
            if let Some(k) = &keep {
                split.insert(k.clone(), 100 - share);
            }
            progress.report(&format!(
                "deploying {model_name} version {version} to {name} on {} (long-running)",
                s("machine_type")
            ));
            let done = client
                .deploy_model()
                .set_endpoint(&name)
                .set_deployed_model(deployed)
                .set_traffic_split(split)
                .poller()
                .until_done()
                .await;
            let new = match done {
                Ok(r) => r.deployed_model.map(|d| d.id).unwrap_or_default(),
                Err(e) => {
                    let e = vertex_error(&format!("deploy to Vertex endpoint {name}"), e);
                    return Err(self.with_endpoint_state(e, &name).await);
                }
            };
            progress.report(&format!("deployed model {new} serves {share}% of the traffic of {name}"));
            let mut keep = keep;
            if let (Some(r), Some(previous)) = (&rollout, keep.clone()) {
                for (i, step) in steps.iter().enumerate().skip(1) {
                    progress.report(&format!("waiting {}s before rollout step {}", r.interval.as_secs(), i + 1));
                    tokio::time::sleep(r.interval).await;
                    progress.report(&format!(
                        "rollout step {}/{}: {step}% of the traffic of {name} to deployed model {new}",
                        i + 1,
                        steps.len()
                    ));
                    let split: HashMap<String, i32> = current
                        .deployed_models
                        .iter()
                        .map(|d| (d.id.clone(), if d.id == previous { 100 - step } else { 0 }))
                        .chain([(new.clone(), *step)])
                        .collect();
                    let update = Endpoint::new().set_name(&name).set_traffic_split(split);
                    if let Err(e) = self.update_endpoint(&name, update, "traffic_split").await {
                        return Err(self.with_endpoint_state(e, &name).await);
                    }
                }
                if !r.bake.is_zero() {
                    progress.report(&format!("baking {}s before the previous version is undeployed", r.bake.as_secs()));
                    tokio::time::sleep(r.bake).await;
                }
                keep = None;
            }
            for old in ours.iter().filter(|d| d.id != new && Some(&d.id) != keep.as_ref()) {
                progress.report(&format!("undeploying the previous deployed model {} from {name}", old.id));
                if let Err(e) = self.undeploy(&name, &old.id).await {
                    return Err(self.with_endpoint_state(e, &name).await);
                }
            }
        } else if let Some(d) = &serving {
            if had.get("replicas") != want.get("replicas") || had.get("scale_on") != want.get("scale_on") {
                progress.report(&format!("changing the replicas of deployed model {} in place", d.id));
                let resources = DedicatedResources::new()
                    .set_min_replica_count(n("min"))
                    .set_max_replica_count(n("max"))
                    .set_autoscaling_metric_specs(scale_on(want));
                let mutated = DeployedModel::new().set_id(d.id.clone()).set_dedicated_resources(resources);
                let mask = google_cloud_wkt::FieldMask::default().set_paths([
                    "dedicated_resources.min_replica_count",
                    "dedicated_resources.max_replica_count",
                    "dedicated_resources.autoscaling_metric_specs",
                ]);
                if let Err(e) = client
                    .mutate_deployed_model()
                    .set_endpoint(&name)
                    .set_deployed_model(mutated)
                    .set_update_mask(mask)
                    .poller()
                    .until_done()
                    .await
                {
                    let e = vertex_error(&format!("change the replicas on {name}"), e);
                    return Err(self.with_endpoint_state(e, &name).await);
                }
            }
            if had.get("traffic") != want.get("traffic") {
                // The canary's share, the previous version keeping the rest; or, at 100, the
                // promotion: the previous versions mlops deployed are undeployed.
                let previous = ours.get(1).map(|p| p.id.clone()).filter(|_| share < 100);
                progress.report(&format!("giving deployed model {} {share}% of the traffic of {name}", d.id));
                let split: HashMap<String, i32> = current
                    .deployed_models
                    .iter()
                    .map(|x| {
                        let pct = if x.id == d.id {
                            share
                        } else if Some(&x.id) == previous.as_ref() {
                            100 - share
                        } else {
                            0
                        };
                        (x.id.clone(), pct)
                    })
                    .collect();
                self.update_endpoint(&name, Endpoint::new().set_name(&name).set_traffic_split(split), "traffic_split")
                    .await?;
                for old in ours.iter().skip(1).filter(|x| Some(&x.id) != previous.as_ref()) {
                    progress.report(&format!("undeploying the previous deployed model {} from {name}", old.id));
                    if let Err(e) = self.undeploy(&name, &old.id).await {
                        return Err(self.with_endpoint_state(e, &name).await);
                    }
                }
            }
        }
        if had.get("labels") != want.get("labels") || had.get("display_name") != want.get("display_name") {
            let e = Endpoint::new().set_name(&name).set_display_name(address.name.clone()).set_labels(labels);
            self.update_endpoint(&name, e, "labels,display_name").await?;
        }
        self.endpoint_read(&name).await?.ok_or_else(|| {
            ProviderError::failed(format!("Vertex endpoint {name} is missing right after it was applied"))
        })
    }

    /// Undeploys one deployed model (its traffic share must be 0, or it must be the last one).
    async fn undeploy(&self, name: &str, id: &str) -> Result<(), ProviderError> {
        let client = self.endpoints().await?;
        client
            .undeploy_model()
            .set_endpoint(name)
            .set_deployed_model_id(id)
            .poller()
            .until_done()
            .await
            .map(|_| ())
            .map_err(|e| vertex_error(&format!("undeploy {id} from {name}"), e))
    }

    async fn update_endpoint(&self, name: &str, e: Endpoint, mask: &str) -> Result<(), ProviderError> {
        let client = self.endpoints().await?;
        client
            .update_endpoint()
            .set_endpoint(e)
            .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(mask.split(',')))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| vertex_error(&format!("update Vertex endpoint {name}"), e))
    }

    /// Undeploys every model and deletes the endpoint, when it is this stack's.
    pub(crate) async fn endpoint_delete(
        &self,
        address: &Address,
        prior: &PriorState,
        progress: &dyn Progress,
    ) -> Result<(), ProviderError> {
        let name = self.endpoint_name(address, Some(&prior.outputs));
        let client = self.endpoints().await?;
        let e = match client.get_endpoint().set_name(&name).send().await {
            Ok(e) => e,
            Err(e) if not_found(&e) => return Ok(()),
            Err(e) => return Err(vertex_error(&format!("get Vertex endpoint {name}"), e)),
        };
        self.require_ours(&e.labels, &format!("Vertex endpoint {name}"), false)?;
        // Those without traffic first: the last one needs no new traffic split.
        let mut deployed: Vec<&DeployedModel> = e.deployed_models.iter().collect();
        deployed.sort_by_key(|d| e.traffic_split.get(&d.id).copied().unwrap_or(0));
        for d in deployed {
            progress.report(&format!("undeploying deployed model {} from {name}", d.id));
            self.undeploy(&name, &d.id).await?;
        }
        progress.report(&format!("deleting Vertex endpoint {name} (long-running)"));
        match client.delete_endpoint().set_name(&name).poller().until_done().await {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(vertex_error(&format!("delete Vertex endpoint {name}"), e)),
        }
    }
}

/// Vertex AI endpoints: deployed models with traffic splits, autoscaling and rollouts.
pub(crate) struct Endpoints(pub(crate) Arc<Gcp>);

#[async_trait]
impl ResourceType for Endpoints {
    fn check(&self, config: &ResourceConfig) -> Vec<ConfigDiagnostic> {
        Gcp::endpoint_check(config)
    }

    /// The recorded machine type, replica bounds, autoscaling target and traffic share; what it
    /// serves follows its model, which is restored first.
    fn restored_attributes(&self) -> &'static [&'static str] {
        &["machine_type", "replicas", "scale_on", "traffic"]
    }

    /// An endpoint carries no bytes of its own: its model vouches for them.
    async fn restorable(
        &self,
        _config: &ResourceConfig,
        _desired: &Desired,
        _deps: &Dependencies,
    ) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn desired(&self, config: &ResourceConfig, deps: &Dependencies) -> Result<Desired, ProviderError> {
        self.0.endpoint_desired(config, deps).await
    }

    async fn read(
        &self,
        address: &Address,
        prior: Option<&PriorState>,
        _desired: Option<&Desired>,
    ) -> Result<Option<LiveState>, ProviderError> {
        self.0.endpoint_read(&self.0.endpoint_name(address, prior.map(|p| &p.outputs))).await
    }

    async fn apply(&self, request: ApplyRequest<'_>, progress: &dyn Progress) -> Result<LiveState, ProviderError> {
        self.0.endpoint_apply(&request, progress).await
    }

    async fn delete(
        &self,
        address: &Address,
        prior: &PriorState,
        progress: &dyn Progress,
    ) -> Result<(), ProviderError> {
        self.0.endpoint_delete(address, prior, progress).await
    }

    async fn import(&self, _config: &ResourceConfig, id: &str) -> Result<LiveState, ProviderError> {
        self.0.endpoint_import(id).await
    }
}
