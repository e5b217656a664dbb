//! Seldon Core v2 (`runtime: seldon`): an endpoint is a `Model` named after it, which Seldon
//! schedules on a Server with the capability its format needs (`requirements`), or on the
//! Server `serving_runtime` names. Clients keep calling the endpoint's name.
//!
//! A `rollout:` that moves the Model to another artifact is driven by mlops: the new version is
//! loaded as a candidate Model (`NAME-canary`), an Experiment (`NAME`, `default: NAME`) splits
//! the traffic sent to the endpoint between the two at each step's weight, each step must be
//! Ready and still Ready after its interval; the last step promotes the new version (the
//! endpoint's Model takes the new artifact) and removes the Experiment and the candidate. A step
//! that is not ready removes them (`rollback: auto`): the endpoint's Model never stopped serving
//! the version it served before. What a kill leaves of a rollout reads as not ready, so the next
//! apply finishes or removes it.

use mlops_provider_core::rollout::{Rollout, RolloutSupport, Strategy};
use mlops_provider_core::{Attributes, ConfigDiagnostic};

use super::*;

/// Seldon's canary: an Experiment's candidate weights, stepped by mlops.
pub(crate) const SELDON_ROLLOUT: RolloutSupport = RolloutSupport {
    what: "Seldon Core v2 (an Experiment's candidate weights, stepped by mlops)",
    strategies: &Strategy::ALL,
    percent: (1, 99),
    linear: (1, 99),
    alarms: None,
};

/// The suffix of the candidate Model a rollout loads the new version as.
const CANARY_SUFFIX: &str = "-canary";

pub(crate) fn canary_name(name: &str) -> String {
    format!("{name}{CANARY_SUFFIX}")
}

/// The capabilities of the Servers Seldon Core v2 installs (`SELDON_SERVER_CAPABILITIES` of its
/// stock ServerConfigs), for a Server that lists none of its own.
fn stock_capabilities(server_config: &str) -> Option<&'static [&'static str]> {
    Some(match server_config {
        "mlserver" => &[
            "alibi-detect",
            "alibi-explain",
            "huggingface",
            "lightgbm",
            "mlflow",
            "python",
            "sklearn",
            "spark-mlib",
            "xgboost",
        ],
        "triton" => &["dali", "fil", "onnx", "openvino", "python", "pytorch", "tensorflow", "tensorrt"],
        _ => return None,
    })
}

/// The capability a Model requires of its Server: the endpoint's `model_format`, else the model's
/// framework by its KServe format name, which Seldon's capabilities share (but `triton`, a model
/// repository, which names no one backend).
pub(crate) fn requirement(
    config: &ResourceConfig,
    model: &Attributes,
    model_name: &str,
) -> Result<String, ProviderError> {
    let format = crate::runtimes::model_format(config, model, model_name)?;
    let name = format.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    if name == "triton" && config.body.get("model_format").is_none() {
        return Err(ProviderError::invalid(format!(
            "{model_name} is a Triton model repository, which names no Seldon capability: set `model_format: {{ name: onnx }}` \
             (or tensorrt, pytorch, tensorflow, python) to the backend it holds"
        ))
        .at(ValuePath::key("model")));
    }
    Ok(name)
}

/// The settings Seldon has no place for, refused at their line.
pub(crate) fn check(config: &ResourceConfig) -> Vec<ConfigDiagnostic> {
    let diag = ConfigDiagnostic::unsupported;
    let body = &config.body;
    let mut out = Vec::new();
    if body.pointer("/traffic/canary_percent").is_some() {
        out.push(diag(
            ValuePath::keys(&["traffic", "canary_percent"]),
            "a Seldon canary is an Experiment mlops steps through a rollout, not a standing share".into(),
            "write `rollout: { strategy: canary, step: { percent: 10, interval: 5m } }` instead",
        ));
    }
    if body.get("autoscaling").is_some() {
        out.push(diag(
            ValuePath::key("autoscaling"),
            "Seldon Core v2 scales a Model itself, between its minReplicas and maxReplicas: `autoscaling` would be ignored"
                .into(),
            "remove it, and bound the replicas with `instance_count` (the minimum) and `max_replicas`",
        ));
    }
    for key in ["cpu", "gpu"] {
        if body.pointer(&format!("/resources/{key}")).is_some() {
            out.push(diag(
                ValuePath::keys(&["resources", key]),
                format!("a Seldon Model asks its Server for memory only: `resources.{key}` would be ignored"),
                "size the Seldon Server (its pods) instead, and keep `resources: { memory: … }` here",
            ));
        }
    }
    if config.str("protocol_version") == Some("v1") {
        out.push(diag(
            ValuePath::key("protocol_version"),
            "Seldon Core v2 serves the Open Inference Protocol (v2) only".into(),
            "remove `protocol_version`, or set it to v2",
        ));
    }
    if body.pointer("/model_format/version").is_some() {
        out.push(diag(
            ValuePath::keys(&["model_format", "version"]),
            "Seldon matches a Model to a Server by capability name only: the version would be ignored".into(),
            "remove `version`",
        ));
    }
    if body.get("rollout").is_some() && config.address.name.len() + CANARY_SUFFIX.len() > 63 {
        out.push(diag(
            ValuePath::root(),
            format!(
                "a rollout loads the new version as Model `{}`, longer than Kubernetes' 63 characters",
                canary_name(&config.address.name)
            ),
            "shorten the endpoint's name",
        ));
    }
    out
}

/// The plan-time warning for what the model carries that a Seldon Model cannot: its
/// `environment` (the Server's pods have their own).
pub(crate) fn unplaced(config: &ResourceConfig, deps: &Dependencies) -> Option<String> {
    let model: Address = config.str("model")?.parse().ok()?;
    let env = deps.get(&model)?.attributes.get("environment")?.as_object().filter(|e| !e.is_empty())?;
    let keys: Vec<&str> = env.keys().map(String::as_str).collect();
    Some(format!(
        "{model}'s `environment` ({}) does not reach a Seldon Model: set it on the Seldon Server that loads it",
        keys.join(", ")
    ))
}

/// Refuses new bytes under the storageUri the live Model already loaded: Seldon loads a Model's
/// artifact when its spec changes, and only the recorded digest would.
pub(crate) fn check_reload(live: Option<&Value>, manifest: &Value) -> Result<(), ProviderError> {
    let Some(live) = live else { return Ok(()) };
    let digest =
        |o: &Value| o.pointer(&format!("/metadata/annotations/{}", DIGEST_ANNOTATION.replace('/', "~1"))).cloned();
    let uri = manifest.pointer("/spec/storageUri").and_then(Value::as_str).unwrap_or_default();
    let same_uri = live.pointer("/spec/storageUri").and_then(Value::as_str) == Some(uri);
    let (was, now) = (digest(live), digest(manifest));
    if !same_uri || was.is_none() || was == now {
        return Ok(());
    }
    let name = live.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let show = |d: Option<Value>| {
        d.map(|d| d.as_str().map(str::to_string).unwrap_or_else(|| d.to_string())).unwrap_or_default()
    };
    Err(ProviderError::invalid(format!(
        "Seldon Model {name} loaded {uri} at {}; the bytes there are now {}, and Seldon Core v2 loads a Model's artifact \
         only when its storageUri changes: this version would never be served. Write the new version under its own \
         path (the model's `artifact`), or delete the Model so that the next apply loads it afresh",
        show(was),
        show(now)
    ))
    .at(ValuePath::key("model")))
}

impl Cluster {
    /// Checks the Server `serving_runtime` names (if any): it must exist in `namespace` and have
    /// the capability the Model requires.
    pub(crate) async fn check_seldon_server(
        &self,
        config: &ResourceConfig,
        namespace: &str,
        requirement: &str,
    ) -> Result<(), ProviderError> {
        let Some(name) = config.str("serving_runtime") else { return Ok(()) };
        let (client, _, url) = self.client().await?;
        let api: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            namespace,
            &api_resource("mlops.seldon.io", "v1alpha1", "Server", "servers"),
        );
        let at = ValuePath::key("serving_runtime");
        let server = match api.get_opt(name).await {
            Ok(Some(o)) => serde_json::to_value(o).expect("objects serialize"),
            Ok(None) => {
                let others: Vec<String> = api
                    .list(&Default::default())
                    .await
                    .map(|l| l.items.into_iter().filter_map(|o| o.metadata.name).collect())
                    .unwrap_or_default();
                let hint = if others.is_empty() { "none".into() } else { others.join(", ") };
                return Err(ProviderError::invalid(format!(
                    "Seldon Server `{name}` does not exist in namespace {namespace} on {url} (Servers there: {hint})"
                ))
                .at(at));
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                return Err(ProviderError::invalid(format!(
                    "the cluster at {url} serves no Seldon Servers (mlops.seldon.io/v1alpha1): Server `{name}` cannot exist"
                ))
                .at(at));
            }
            Err(e) => return Err(kube_error(&format!("get Server {namespace}/{name} from {url}"), e)),
        };
        let list = |p: &str| -> Vec<String> {
            server
                .pointer(p)
                .and_then(Value::as_array)
                .map(|l| l.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default()
        };
        let mut capabilities = list("/spec/capabilities");
        if capabilities.is_empty() {
            let config_name = server.pointer("/spec/serverConfig").and_then(Value::as_str).unwrap_or_default();
            let Some(stock) = stock_capabilities(config_name) else {
                // A custom ServerConfig: its capabilities are in its pods' environment, not here.
                return Ok(());
            };
            capabilities = stock.iter().map(|c| c.to_string()).collect();
        }
        capabilities.extend(list("/spec/extraCapabilities"));
        if capabilities.iter().any(|c| c == requirement) {
            return Ok(());
        }
        Err(ProviderError::invalid(format!(
            "Seldon Server {namespace}/{name} cannot load a `{requirement}` model (its capabilities: {})",
            capabilities.join(", ")
        ))
        .at(at))
    }

    /// What a rollout of `address` left on the cluster (the Experiment and the candidate Model,
    /// made by mlops for this address), as lineage records objects.
    pub(crate) async fn seldon_leftovers(
        &self,
        namespace: &str,
        address: &Address,
    ) -> Result<Vec<Value>, ProviderError> {
        let mut found = Vec::new();
        for (part, name) in [(Part::Experiment, address.name.clone()), (Part::SeldonModel, canary_name(&address.name))]
        {
            if let Some(o) = self.get(namespace, part, &name).await?
                && crate::owner_of(&o) == Some(address.to_string().as_str())
            {
                found.push(self.object_ref(part, namespace, &o));
            }
        }
        Ok(found)
    }

    /// Rolls the endpoint's Model out step by step (see the module).
    pub(crate) async fn roll_out_seldon(
        &self,
        request: &ApplyRequest<'_>,
        rollout: &Rollout,
        namespace: &str,
        progress: &dyn Progress,
    ) -> Result<LiveState, ProviderError> {
        let (address, name) = (request.address, &request.address.name);
        let force = request.options.force_conflicts;
        let part = Part::SeldonModel;
        let desired = Self::identity(part, name, namespace, &request.desired.attributes[part.attribute()]);
        let canary = canary_name(name);
        let mut candidate = desired.clone();
        candidate["metadata"]["name"] = json!(canary);
        let timeout = wait_timeout(request.config);
        let steps = rollout.steps();
        let mut promoted = false;
        for (i, share) in steps.iter().enumerate() {
            progress.report(&format!(
                "rollout step {}/{}: {share}% of the traffic to the new model of {namespace}/{name}",
                i + 1,
                steps.len()
            ));
            let step = async {
                if *share < 100 {
                    self.ssa(&candidate, part, false, force)
                        .await
                        .map_err(|e| kube_error(&format!("apply Model {namespace}/{canary}"), e))?;
                    let experiment = self.experiment(request, namespace, &canary, *share);
                    self.ssa(&experiment, Part::Experiment, false, force)
                        .await
                        .map_err(|e| kube_error(&format!("apply Experiment {namespace}/{name}"), e))?;
                    self.wait_ready(&[part], namespace, &canary, timeout, progress).await?;
                    self.wait_ready(&[Part::Experiment], namespace, name, timeout, progress).await?;
                    self.still_ready(
                        &[(part, &canary), (Part::Experiment, name)],
                        namespace,
                        rollout.interval,
                        progress,
                    )
                    .await
                } else {
                    // Promotion: the endpoint's own Model takes the new version, then the
                    // Experiment and the candidate go.
                    promoted = true;
                    self.ssa(&desired, part, false, force)
                        .await
                        .map_err(|e| kube_error(&format!("apply Model {namespace}/{name}"), e))?;
                    self.wait_ready(&[part], namespace, name, timeout, progress).await?;
                    let leftovers = self.seldon_leftovers(namespace, address).await?;
                    self.delete_objects(&leftovers, progress).await?;
                    self.still_ready(&[(part, name)], namespace, rollout.bake, progress).await
                }
            };
            if let Err(e) = step.await {
                return Err(self.abort_seldon(request, rollout, promoted, (i + 1, *share), e, progress).await);
            }
        }
        self.read_endpoint(address, None, Some(request.desired))
            .await?
            .ok_or_else(|| ProviderError::failed(format!("{namespace}/{name} is missing right after it was applied")))
    }

    /// The Experiment that sends `share` percent of the endpoint's traffic to `canary`.
    fn experiment(&self, request: &ApplyRequest<'_>, namespace: &str, canary: &str, share: u64) -> Value {
        let name = &request.address.name;
        let labels = request.desired.attributes[Part::SeldonModel.attribute()].pointer("/metadata/labels").cloned();
        json!({
            "apiVersion": "mlops.seldon.io/v1alpha1",
            "kind": "Experiment",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": labels,
                "annotations": { ADDRESS_ANNOTATION: request.address.to_string() },
            },
            "spec": {
                "default": name,
                "resourceType": "model",
                "candidates": [{ "name": name, "weight": 100 - share }, { "name": canary, "weight": share }],
            },
        })
    }

    /// Waits `pause`, then checks every object is still ready: a version that fails under
    /// traffic aborts the rollout too.
    async fn still_ready(
        &self,
        objects: &[(Part, &String)],
        namespace: &str,
        pause: Duration,
        progress: &dyn Progress,
    ) -> Result<(), ProviderError> {
        if pause.is_zero() {
            return Ok(());
        }
        progress.report(&format!("ready; waiting {}s", pause.as_secs()));
        tokio::time::sleep(pause).await;
        for (part, name) in objects {
            let now = self.get(namespace, *part, name).await?;
            let (ok, line) = now.as_ref().map(|o| readiness(*part, o)).unwrap_or((false, "gone".into()));
            if !ok {
                return Err(ProviderError::failed(format!(
                    "{} {namespace}/{name} no longer ready after {}s: {line}",
                    part.resource().kind,
                    pause.as_secs()
                )));
            }
        }
        Ok(())
    }

    /// A step failed: with `rollback: auto` the Experiment and the candidate go (all the traffic
    /// is the endpoint's Model's again) and, when the failure came after the promotion, the
    /// endpoint's Model goes back to the version it served before.
    async fn abort_seldon(
        &self,
        request: &ApplyRequest<'_>,
        rollout: &Rollout,
        promoted: bool,
        (step, share): (usize, u64),
        e: ProviderError,
        progress: &dyn Progress,
    ) -> ProviderError {
        let (address, name) = (request.address, &request.address.name);
        let failed = format!("rollout step {step} ({share}%) failed: {}", e.message);
        if !rollout.auto_rollback {
            return self.with_state(ProviderError::new(e.kind, failed), address, request.desired, true).await;
        }
        progress.report(&format!("{failed}; sending all the traffic of {name} back to the model it served before"));
        let namespace = request.desired.attributes.get("namespace").and_then(Value::as_str).unwrap_or_default();
        let previous = request
            .live
            .and_then(|l| l.attributes.get(Part::SeldonModel.attribute()))
            .map(|v| Self::identity(Part::SeldonModel, name, namespace, v));
        let reset = async {
            if let Some(previous) = previous.filter(|_| promoted) {
                self.ssa(&previous, Part::SeldonModel, false, true)
                    .await
                    .map_err(|e| kube_error(&format!("reset Model {namespace}/{name}"), e))?;
            }
            let leftovers = self.seldon_leftovers(namespace, address).await?;
            self.delete_objects(&leftovers, progress).await
        };
        if let Err(reset) = reset.await {
            let e = ProviderError::failed(format!(
                "{failed}; the reset to the previous model failed too: {}",
                reset.message
            ));
            return self.with_state(e, address, request.desired, true).await;
        }
        let e = ProviderError::new(ErrorKind::RolledBack, format!("{failed}; reset to the model it served before"));
        self.with_state(e, address, request.desired, true).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_servers_have_seldons_capabilities() {
        assert!(stock_capabilities("mlserver").unwrap().contains(&"sklearn"));
        assert!(stock_capabilities("triton").unwrap().contains(&"onnx"));
        assert!(!stock_capabilities("triton").unwrap().contains(&"sklearn"));
        assert_eq!(stock_capabilities("my-server"), None);
    }
}
