//! A local feature store: its schema, and a records folder a replacement or a delete destroys.

use std::fs;
use std::path::PathBuf;

use async_trait::async_trait;
use mlops_provider_core::{
    Address, ApplyRequest, Dependencies, Desired, LiveState, Operation, PriorState, Progress, ProviderError,
    ResourceConfig, ResourceType, attributes_of,
};
use serde_json::json;

use crate::{Owned, Store, blocking, io_err, labels, on_thread, read_json, remove_dir_if_exists, write_json};

pub(crate) struct FeatureStores(pub(crate) Store);

impl Store {
    fn feature_store_dir(&self, name: &str) -> PathBuf {
        self.root.join("feature_stores").join(name)
    }

    fn read_feature_store(&self, name: &str) -> Result<Option<LiveState>, ProviderError> {
        let dir = self.feature_store_dir(name);
        let Some(schema) = read_json(&dir.join("schema.json"))? else {
            return Ok(None);
        };
        let outputs = attributes_of(json!({ "path": dir.display().to_string() }));
        Ok(Some(LiveState { attributes: attributes_of(schema), outputs }))
    }

    fn apply_feature_store(&self, req: &Owned, progress: &dyn Progress) -> Result<LiveState, ProviderError> {
        let dir = self.contained(&self.feature_store_dir(&req.address.name))?;
        if req.operation == Operation::Replace {
            progress.report("destroying the old store and its records");
            remove_dir_if_exists(&dir)?;
        }
        fs::create_dir_all(dir.join("records")).map_err(|e| io_err("cannot create", &dir, e))?;
        write_json(&dir.join("schema.json"), &json!(req.desired.attributes))?;
        self.written(&req.address, self.read_feature_store(&req.address.name)?)
    }
}

#[async_trait]
impl ResourceType for FeatureStores {
    async fn desired(&self, config: &ResourceConfig, _deps: &Dependencies) -> Result<Desired, ProviderError> {
        let mut d = Desired::default();
        for key in ["record_identifier", "event_time", "features"] {
            if let Some(v) = config.body.get(key) {
                d.attributes.insert(key.into(), v.clone());
            }
        }
        d.attributes.insert("online".into(), config.body.get("online").cloned().unwrap_or(json!(true)));
        d.attributes.insert("offline".into(), config.body.get("offline").cloned().unwrap_or(json!(true)));
        d.attributes.insert("labels".into(), labels(config));
        // The records are keyed by these: changing them means a new, empty store.
        d.force_new.insert("record_identifier".into());
        d.force_new.insert("event_time".into());
        d.replace_destroys_data = true;
        Ok(d)
    }

    async fn read(
        &self,
        address: &Address,
        _prior: Option<&PriorState>,
        _desired: Option<&Desired>,
    ) -> Result<Option<LiveState>, ProviderError> {
        self.0.read_feature_store(&address.name)
    }

    async fn apply(&self, request: ApplyRequest<'_>, progress: &dyn Progress) -> Result<LiveState, ProviderError> {
        let (store, req) = (self.0.clone(), Owned::of(&request));
        on_thread(progress, move |p| store.apply_feature_store(&req, p)).await
    }

    async fn delete(
        &self,
        address: &Address,
        _prior: &PriorState,
        _progress: &dyn Progress,
    ) -> Result<(), ProviderError> {
        let dir = self.0.contained(&self.0.feature_store_dir(&address.name))?;
        blocking(move || remove_dir_if_exists(&dir)).await
    }

    fn delete_destroys_data(&self, address: &Address, _live: &LiveState) -> Option<String> {
        mlops_provider_core::records_destroyed(address)
    }

    /// The recorded definition, applied again as a forward change is (a replacement it forces
    /// is data-destroying, as ever).
    fn restored_attributes(&self) -> &'static [&'static str] {
        &["record_identifier", "event_time", "features", "online", "offline"]
    }

    fn rollback_leaves(&self) -> Option<&'static str> {
        Some(mlops_provider_core::FEATURE_RECORDS_NOT_RESTORED)
    }

    /// A feature store carries no bytes of its own: its definition is whole in the record.
    async fn restorable(
        &self,
        _config: &ResourceConfig,
        _desired: &Desired,
        _deps: &Dependencies,
    ) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn import(&self, config: &ResourceConfig, id: &str) -> Result<LiveState, ProviderError> {
        self.0.import(config, id, |name| self.0.read_feature_store(name))
    }
}
