//! Vertex AI Feature Store, as Google documents it now (the Feature Registry and an online
//! store; the `featurestores`/`entityTypes` API is its legacy predecessor): a feature store on
//! gcp is a feature group over a BigQuery table (`bigquery.table`), its entity id column the
//! spec's `record_identifier` and its time-series column `event_time`, a feature per spec feature
//! (the BigQuery column of the same name; the spec's type is recorded as its `mlops-type` label,
//! BigQuery's column type is what Vertex serves), and, unless `online: false`, an online store
//! (Optimized) with a feature view over the group's features.
//!
//! Another table, record identifier or event time is a new feature group: a replacement that
//! drops the online store's data (`data-destroying`). Adding or removing features changes the
//! registry and the view in place.

use std::collections::BTreeMap;

use google_cloud_aiplatform_v1::client::{FeatureOnlineStoreAdminService, FeatureRegistryService};
use google_cloud_aiplatform_v1::model::{
    BigQuerySource, Feature, FeatureGroup, FeatureOnlineStore, FeatureView, feature_group, feature_online_store,
    feature_view,
};
use google_cloud_lro::Poller;

use super::vertex::{not_found, vertex_error};
use super::*;

/// A Vertex feature registry or online store id: lowercase letters, digits and `_`.
fn fs_id(name: &str) -> String {
    let id: String =
        name.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    if id.starts_with(|c: char| c.is_ascii_lowercase()) { id } else { format!("f_{id}") }
}

impl Gcp {
    async fn registry(&self) -> Result<&FeatureRegistryService, ProviderError> {
        self.vertex_registry
            .get_or_try_init(|| async {
                let b = self.vertex_builder(FeatureRegistryService::builder());
                b.build().await.map_err(|e| ProviderError::invalid(format!("Vertex AI client: {}", chain(&e))))
            })
            .await
    }

    async fn online_admin(&self) -> Result<&FeatureOnlineStoreAdminService, ProviderError> {
        self.vertex_online
            .get_or_try_init(|| async {
                let b = self.vertex_builder(FeatureOnlineStoreAdminService::builder());
                b.build().await.map_err(|e| ProviderError::invalid(format!("Vertex AI client: {}", chain(&e))))
            })
            .await
    }

    /// The feature group's and the online store's id: the stack's project and the spec name.
    fn group_id(&self, address: &Address) -> String {
        fs_id(&format!("{}_{}", self.stack, address.name))
    }

    fn group_name(&self, address: &Address) -> String {
        format!("{}/featureGroups/{}", self.location(), self.group_id(address))
    }

    fn store_name(&self, address: &Address) -> String {
        format!("{}/featureOnlineStores/{}", self.location(), self.group_id(address))
    }

    fn view_name(&self, address: &Address) -> String {
        format!("{}/featureViews/{}", self.store_name(address), self.group_id(address))
    }

    pub(crate) fn feature_store_check(config: &ResourceConfig) -> Vec<ConfigDiagnostic> {
        match config.body.pointer("/bigquery/table").and_then(Value::as_str) {
            Some(t) if t.starts_with("bq://") && t.trim_start_matches("bq://").split('.').count() == 3 => vec![],
            Some(t) => vec![ConfigDiagnostic::unsupported(
                ValuePath::keys(&["bigquery", "table"]),
                format!("`{t}` is not a BigQuery table URI"),
                "write `bq://PROJECT.DATASET.TABLE`",
            )],
            None => vec![ConfigDiagnostic::unsupported(
                ValuePath::root(),
                format!("{} is a Vertex AI feature store and needs the BigQuery table it serves", config.address),
                "add `bigquery: { table: bq://PROJECT.DATASET.TABLE }`",
            )],
        }
    }

    pub(crate) fn feature_store_desired(config: &ResourceConfig) -> Desired {
        let rid = config.str("record_identifier").unwrap_or_default();
        let ts = config.str("event_time").unwrap_or_default();
        let features: BTreeMap<String, Value> = config
            .body
            .get("features")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter(|(k, _)| *k != rid && *k != ts).map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let attributes = attributes_of(json!({
            "table": config.body.pointer("/bigquery/table"),
            "entity_id_columns": [rid],
            "timestamp_column": ts,
            "features": features,
            "online": config.body.get("online").and_then(Value::as_bool).unwrap_or(true),
            "labels": config.body.get("labels").cloned().unwrap_or_else(|| json!({})),
        }));
        let mut d =
            Desired { attributes, replace_destroys_data: true, expected_wait_secs: Some(300), ..Default::default() };
        for key in ["table", "entity_id_columns", "timestamp_column"] {
            d.force_new.insert(key.into());
        }
        d
    }

    pub(crate) async fn feature_store_read(&self, address: &Address) -> Result<Option<LiveState>, ProviderError> {
        let registry = self.registry().await?;
        let name = self.group_name(address);
        let g = match registry.get_feature_group().set_name(&name).send().await {
            Ok(g) => g,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(vertex_error(&format!("get Vertex feature group {name}"), e)),
        };
        let features = registry
            .list_features()
            .set_parent(&name)
            .send()
            .await
            .map_err(|e| vertex_error(&format!("list the features of {name}"), e))?;
        let features: BTreeMap<String, Value> = features
            .features
            .iter()
            .map(|f| (f.version_column_name.clone(), json!(f.labels.get("mlops-type"))))
            .collect();
        let online = match self.online_admin().await?.get_feature_view().set_name(self.view_name(address)).send().await
        {
            Ok(_) => true,
            Err(e) if not_found(&e) => false,
            Err(e) => return Err(vertex_error(&format!("get the feature view of {name}"), e)),
        };
        let bq = g.big_query();
        let labels: BTreeMap<&String, &String> =
            g.labels.iter().filter(|(k, _)| !super::vertex::OWN_LABELS.contains(&k.as_str())).collect();
        let attributes = attributes_of(json!({
            "table": bq.and_then(|b| b.big_query_source.as_ref()).map(|s| s.input_uri.clone()),
            "entity_id_columns": bq.map(|b| b.entity_id_columns.clone()),
            "timestamp_column": bq.and_then(|b| b.time_series.as_ref()).map(|t| t.timestamp_column.clone()),
            "features": features,
            "online": online,
            "labels": labels,
        }));
        let outputs = attributes_of(json!({
            "feature_group": name,
            "online_store": online.then(|| self.store_name(address)),
            "feature_view": online.then(|| self.view_name(address)),
        }));
        Ok(Some(LiveState { attributes, outputs }))
    }

    pub(crate) async fn feature_store_apply(
        &self,
        request: &ApplyRequest<'_>,
        progress: &dyn Progress,
    ) -> Result<LiveState, ProviderError> {
        let address = request.address;
        let want = &request.desired.attributes;
        let registry = self.registry().await?;
        let admin = self.online_admin().await?;
        let (group, id) = (self.group_name(address), self.group_id(address));
        let mut live = request.live.cloned();
        if request.operation == Operation::Replace && live.is_some() {
            progress.report(&format!("replacing Vertex feature group {group}: its online data is dropped"));
            self.feature_store_delete(address, progress).await?;
            live = None;
        }
        let labels = self.owned_labels(string_map(want.get("labels")));
        let features: BTreeMap<String, String> = want
            .get("features")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
            .unwrap_or_default();
        let had: BTreeMap<String, Value> = live
            .as_ref()
            .and_then(|l| l.attributes.get("features"))
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let text = |k: &str| want.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        match &live {
            None => {
                let bq = feature_group::BigQuery::new()
                    .set_big_query_source(BigQuerySource::new().set_input_uri(text("table")))
                    .set_entity_id_columns(
                        want.get("entity_id_columns")
                            .and_then(Value::as_array)
                            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect::<Vec<_>>())
                            .unwrap_or_default(),
                    )
                    .set_time_series(
                        feature_group::big_query::TimeSeries::new().set_timestamp_column(text("timestamp_column")),
                    );
                progress
                    .report(&format!("creating Vertex feature group {group} over {} (long-running)", text("table")));
                registry
                    .create_feature_group()
                    .set_parent(self.location())
                    .set_feature_group_id(&id)
                    .set_feature_group(FeatureGroup::new().set_big_query(bq).set_labels(labels.clone()))
                    .poller()
                    .until_done()
                    .await
                    .map_err(|e| vertex_error(&format!("create Vertex feature group {group}"), e))?;
            }
            Some(l) if l.attributes.get("labels") != want.get("labels") => {
                progress.report(&format!("updating the labels of Vertex feature group {group}"));
                registry
                    .update_feature_group()
                    .set_feature_group(FeatureGroup::new().set_name(&group).set_labels(labels.clone()))
                    .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["labels"]))
                    .poller()
                    .until_done()
                    .await
                    .map_err(|e| vertex_error(&format!("update Vertex feature group {group}"), e))?;
            }
            Some(_) => {}
        }
        let fail = |e: ProviderError| async { self.with_feature_state(e, address).await };
        for (f, ty) in features.iter().filter(|(f, ty)| had.get(*f) != Some(&json!(ty))) {
            if had.contains_key(f) {
                // Another recorded type: the feature is written again.
                if let Err(e) = self.delete_feature(&group, f).await {
                    return Err(fail(e).await);
                }
            }
            progress.report(&format!("adding feature {f} ({ty}) to {group}"));
            let feature = Feature::new().set_version_column_name(f).set_labels([("mlops-type", ty.as_str())]);
            if let Err(e) = registry
                .create_feature()
                .set_parent(&group)
                .set_feature_id(fs_id(f))
                .set_feature(feature)
                .poller()
                .until_done()
                .await
            {
                return Err(fail(vertex_error(&format!("create feature {f} of {group}"), e)).await);
            }
        }
        for f in had.keys().filter(|f| !features.contains_key(*f)) {
            progress.report(&format!("removing feature {f} from {group}"));
            if let Err(e) = self.delete_feature(&group, f).await {
                return Err(fail(e).await);
            }
        }
        let online = want.get("online").and_then(Value::as_bool).unwrap_or(true);
        let was_online =
            live.as_ref().and_then(|l| l.attributes.get("online")).and_then(Value::as_bool).unwrap_or(false);
        let source = feature_view::FeatureRegistrySource::new().set_feature_groups([
            feature_view::feature_registry_source::FeatureGroup::new()
                .set_feature_group_id(&id)
                .set_feature_ids(features.keys().map(|f| fs_id(f))),
        ]);
        let (store, view) = (self.store_name(address), self.view_name(address));
        let result = if online && !was_online {
            progress.report(&format!("creating online store {store} and its feature view (long-running)"));
            let created = admin
                .create_feature_online_store()
                .set_parent(self.location())
                .set_feature_online_store_id(&id)
                .set_feature_online_store(
                    FeatureOnlineStore::new()
                        .set_optimized(feature_online_store::Optimized::default())
                        .set_labels(labels.clone()),
                )
                .poller()
                .until_done()
                .await;
            match created {
                Err(e) if !e.status().is_some_and(|s| s.code == google_cloud_gax::error::rpc::Code::AlreadyExists) => {
                    Err(vertex_error(&format!("create online store {store}"), e))
                }
                _ => admin
                    .create_feature_view()
                    .set_parent(&store)
                    .set_feature_view_id(&id)
                    .set_feature_view(FeatureView::new().set_feature_registry_source(source).set_labels(labels))
                    .poller()
                    .until_done()
                    .await
                    .map(|_| ())
                    .map_err(|e| vertex_error(&format!("create feature view {view}"), e)),
            }
        } else if online && features.keys().collect::<Vec<_>>() != had.keys().collect::<Vec<_>>() {
            progress.report(&format!("updating the features of feature view {view}"));
            admin
                .update_feature_view()
                .set_feature_view(FeatureView::new().set_name(&view).set_feature_registry_source(source))
                .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["feature_registry_source"]))
                .poller()
                .until_done()
                .await
                .map(|_| ())
                .map_err(|e| vertex_error(&format!("update feature view {view}"), e))
        } else if !online && was_online {
            self.delete_online(address, progress).await
        } else {
            Ok(())
        };
        if let Err(e) = result {
            return Err(fail(e).await);
        }
        self.feature_store_read(address).await?.ok_or_else(|| {
            ProviderError::failed(format!("Vertex feature group {group} is missing right after it was applied"))
        })
    }

    async fn with_feature_state(&self, e: ProviderError, address: &Address) -> ProviderError {
        match self.feature_store_read(address).await {
            Ok(Some(live)) => e.with_state(live),
            _ => e,
        }
    }

    async fn delete_feature(&self, group: &str, feature: &str) -> Result<(), ProviderError> {
        let name = format!("{group}/features/{}", fs_id(feature));
        match self.registry().await?.delete_feature().set_name(&name).poller().until_done().await {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(vertex_error(&format!("delete feature {name}"), e)),
        }
    }

    async fn delete_online(&self, address: &Address, progress: &dyn Progress) -> Result<(), ProviderError> {
        let admin = self.online_admin().await?;
        let (store, view) = (self.store_name(address), self.view_name(address));
        progress.report(&format!("deleting feature view {view} and online store {store} (their online data)"));
        match admin.delete_feature_view().set_name(&view).poller().until_done().await {
            Ok(_) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(vertex_error(&format!("delete feature view {view}"), e)),
        }
        match admin.delete_feature_online_store().set_name(&store).set_force(true).poller().until_done().await {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(vertex_error(&format!("delete online store {store}"), e)),
        }
    }

    /// Deletes the view, the online store and the feature group (with its features), when the
    /// group is this stack's.
    pub(crate) async fn feature_store_delete(
        &self,
        address: &Address,
        progress: &dyn Progress,
    ) -> Result<(), ProviderError> {
        let registry = self.registry().await?;
        let group = self.group_name(address);
        let g = match registry.get_feature_group().set_name(&group).send().await {
            Ok(g) => g,
            Err(e) if not_found(&e) => return Ok(()),
            Err(e) => return Err(vertex_error(&format!("get Vertex feature group {group}"), e)),
        };
        self.require_ours(&g.labels, &format!("Vertex feature group {group}"), false)?;
        self.delete_online(address, progress).await?;
        progress.report(&format!("deleting Vertex feature group {group} and its features"));
        match registry.delete_feature_group().set_name(&group).set_force(true).poller().until_done().await {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(vertex_error(&format!("delete Vertex feature group {group}"), e)),
        }
    }
}

/// Vertex AI feature stores: a feature group over BigQuery, an online store and a feature view.
pub(crate) struct FeatureStores(pub(crate) Arc<Gcp>);

#[async_trait]
impl ResourceType for FeatureStores {
    fn check(&self, config: &ResourceConfig) -> Vec<ConfigDiagnostic> {
        Gcp::feature_store_check(config)
    }

    /// The recorded definition, applied again as a forward change is (a replacement it forces
    /// is data-destroying, as ever).
    fn restored_attributes(&self) -> &'static [&'static str] {
        &["table", "entity_id_columns", "timestamp_column", "features", "online", "labels"]
    }

    fn rollback_leaves(&self) -> Option<&'static str> {
        Some(mlops_provider_core::FEATURE_RECORDS_NOT_RESTORED)
    }

    /// The definition is whole in the record.
    async fn restorable(
        &self,
        _config: &ResourceConfig,
        _desired: &Desired,
        _deps: &Dependencies,
    ) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn desired(&self, config: &ResourceConfig, _deps: &Dependencies) -> Result<Desired, ProviderError> {
        Ok(Gcp::feature_store_desired(config))
    }

    async fn read(
        &self,
        address: &Address,
        _prior: Option<&PriorState>,
        _desired: Option<&Desired>,
    ) -> Result<Option<LiveState>, ProviderError> {
        self.0.feature_store_read(address).await
    }

    async fn apply(&self, request: ApplyRequest<'_>, progress: &dyn Progress) -> Result<LiveState, ProviderError> {
        self.0.feature_store_apply(&request, progress).await
    }

    async fn delete(
        &self,
        address: &Address,
        _prior: &PriorState,
        progress: &dyn Progress,
    ) -> Result<(), ProviderError> {
        self.0.feature_store_delete(address, progress).await
    }

    /// The online store's synced records go with it.
    fn delete_destroys_data(&self, address: &Address, _live: &LiveState) -> Option<String> {
        mlops_provider_core::records_destroyed(address)
    }
}
