//! A local endpoint: a serving record pointing at a model version, with replicas and traffic
//! (a canary splits it between the new version and the one served before).

use std::path::PathBuf;

use async_trait::async_trait;
use mlops_provider_core::{
    Address, ApplyRequest, ConfigDiagnostic, Dependencies, Desired, LiveState, Operation, PriorState, Progress,
    ProviderError, ResourceConfig, ResourceType, Value, attributes_of,
};
use serde_json::json;

use crate::{Owned, Store, blocking, labels, on_thread, read_json, remove_file_if_exists, write_json};

pub(crate) struct Endpoints(pub(crate) Store);

impl Store {
    fn endpoint_file(&self, name: &str) -> PathBuf {
        self.root.join("endpoints").join(format!("{name}.json"))
    }

    fn read_endpoint(&self, name: &str) -> Result<Option<LiveState>, ProviderError> {
        let Some(record) = read_json(&self.endpoint_file(name))? else {
            return Ok(None);
        };
        let attributes = attributes_of(record.get("spec").cloned().unwrap_or_default());
        let outputs = attributes_of(json!({
            "model_version": record.get("model_version").cloned().unwrap_or(Value::Null),
            "traffic": record.get("traffic").cloned().unwrap_or(json!([])),
            "url": format!("local://endpoints/{name}"),
        }));
        Ok(Some(LiveState { attributes, outputs }))
    }

    fn apply_endpoint(&self, req: &Owned, progress: &dyn Progress) -> Result<LiveState, ProviderError> {
        let path = self.contained(&self.endpoint_file(&req.address.name))?;
        let attrs = &req.desired.attributes;
        let previous = read_json(&path)?;
        let model: Option<Address> = attrs.get("model").and_then(Value::as_str).and_then(|m| m.parse().ok());
        let model_version = model
            .as_ref()
            .and_then(|m| req.deps.get(m))
            .and_then(|d| d.outputs.as_ref())
            .and_then(|o| o.get("version"))
            .cloned()
            .ok_or_else(|| {
                ProviderError::failed("the endpoint's model has no registered version: apply the model first")
            })?;
        let canary = attrs.get("canary_percent").and_then(Value::as_u64).unwrap_or(0);
        let prev_version = previous.as_ref().and_then(|p| p.get("model_version")).cloned();
        let traffic = match prev_version {
            Some(prev) if canary > 0 && prev != model_version && req.operation != Operation::Replace => json!([
                {"model_version": model_version, "percent": canary},
                {"model_version": prev, "percent": 100 - canary},
            ]),
            _ => json!([{"model_version": model_version, "percent": 100}]),
        };
        progress.report(&format!("serving model version {model_version}"));
        write_json(&path, &json!({ "spec": attrs, "model_version": model_version, "traffic": traffic }))?;
        self.written(&req.address, self.read_endpoint(&req.address.name)?)
    }
}

#[async_trait]
impl ResourceType for Endpoints {
    /// An emulated endpoint has nothing to scale, and switches versions at once.
    fn check(&self, config: &ResourceConfig) -> Vec<ConfigDiagnostic> {
        let mut out = mlops_provider_core::autoscaling::check(config, None);
        out.extend(mlops_provider_core::rollout::check(config, None));
        out
    }

    async fn desired(&self, config: &ResourceConfig, deps: &Dependencies) -> Result<Desired, ProviderError> {
        let mut d = Desired::default();
        let model = config.str("model").unwrap_or_default();
        let model_addr: Option<Address> = model.parse().ok();
        let model_digest = model_addr
            .as_ref()
            .and_then(|a| deps.get(a))
            .and_then(|v| v.attributes.get("artifact_digest"))
            .cloned()
            .unwrap_or(Value::Null);
        d.attributes.insert("model".into(), json!(model));
        d.attributes.insert("model_digest".into(), model_digest);
        d.attributes
            .insert("instance_type".into(), config.body.get("instance_type").cloned().unwrap_or(json!("local.cpu")));
        d.attributes.insert("replicas".into(), config.body.get("instance_count").cloned().unwrap_or(json!(1)));
        let canary = config.body.pointer("/traffic/canary_percent").cloned().unwrap_or(json!(0));
        d.attributes.insert("canary_percent".into(), canary);
        d.attributes.insert("labels".into(), labels(config));
        // A serving record is bound to its instance type, like an endpoint config.
        d.force_new.insert("instance_type".into());
        Ok(d)
    }

    async fn read(
        &self,
        address: &Address,
        _prior: Option<&PriorState>,
        _desired: Option<&Desired>,
    ) -> Result<Option<LiveState>, ProviderError> {
        self.0.read_endpoint(&address.name)
    }

    async fn apply(&self, request: ApplyRequest<'_>, progress: &dyn Progress) -> Result<LiveState, ProviderError> {
        let (store, req) = (self.0.clone(), Owned::of(&request));
        on_thread(progress, move |p| store.apply_endpoint(&req, p)).await
    }

    async fn delete(
        &self,
        address: &Address,
        _prior: &PriorState,
        _progress: &dyn Progress,
    ) -> Result<(), ProviderError> {
        let file = self.0.contained(&self.0.endpoint_file(&address.name))?;
        blocking(move || remove_file_if_exists(&file)).await
    }

    /// The recorded serving settings: instance type, replicas and canary share (its model's
    /// digest follows the model, which restores its bytes).
    fn restored_attributes(&self) -> &'static [&'static str] {
        &["instance_type", "replicas", "canary_percent"]
    }

    /// An endpoint carries no bytes of its own: it follows its model, which restores them.
    async fn restorable(
        &self,
        _config: &ResourceConfig,
        _desired: &Desired,
        _deps: &Dependencies,
    ) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn import(&self, config: &ResourceConfig, id: &str) -> Result<LiveState, ProviderError> {
        self.0.import(config, id, |name| self.0.read_endpoint(name))
    }
}
