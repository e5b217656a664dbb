//! SageMaker Feature Groups. Adding features is an in-place `UpdateFeatureGroup`; anything else
//! SageMaker cannot change (record identifier, event time, a feature's type or removal, stores,
//! role) needs a new group, destroying the stored records: the plan marks it `data-destroying`
//! and apply refuses it without `--allow-data-loss`.

use std::time::{Duration, Instant};

use aws_sdk_sagemaker::types::{
    FeatureDefinition, FeatureType, OfflineStoreConfig, OnlineStoreConfig, S3StorageConfig,
};
use mlops_provider_core::{
    Address, ApplyRequest, ConfigDiagnostic, Desired, ErrorKind, LiveState, Operation, Progress, ProviderError,
    ResourceConfig, Value, ValuePath, attributes_of,
};
use serde_json::json;

use crate::{Aws, diag, error_code, first_poll, parse_s3, sdk_error, str_of};

fn group_name(address: &Address) -> String {
    address.name.replace('.', "-")
}

pub(crate) fn check(config: &ResourceConfig) -> Vec<ConfigDiagnostic> {
    let mut out = Vec::new();
    let b = &config.body;
    let name = group_name(&config.address);
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        out.push(ConfigDiagnostic {
            path: ValuePath::root(),
            code: "spec::invalid_name".into(),
            message: format!("`{}` is not a valid SageMaker feature group name", config.address.name),
            help: Some("use up to 64 letters, digits, `-` and `_`, starting and ending with a letter or digit".into()),
        });
    }
    if b.get("offline").and_then(Value::as_bool).unwrap_or(true) {
        match b.get("offline_uri").and_then(Value::as_str) {
            None => out.push(diag(
                ValuePath::root(),
                format!("{} keeps an offline store (the default) and needs `offline_uri`", config.address),
                "add `offline_uri: s3://BUCKET/PREFIX` and `execution_role`, or set `offline: false`",
            )),
            Some(u) if parse_s3(u).is_none() => out.push(diag(
                ValuePath::key("offline_uri"),
                format!("`{u}` is not an s3:// URI"),
                "e.g. `offline_uri: s3://acme-features/churn`",
            )),
            _ => {}
        }
        if b.get("execution_role").is_none() {
            out.push(diag(
                ValuePath::root(),
                format!("{} keeps an offline store and needs `execution_role`", config.address),
                "the IAM role SageMaker writes the offline store as: `execution_role: arn:aws:iam::ACCOUNT:role/NAME`",
            ));
        }
    }
    out
}

pub(crate) async fn desired(p: &Aws, config: &ResourceConfig) -> Result<Desired, ProviderError> {
    let b = &config.body;
    let mut d = Desired::default();
    let a = &mut d.attributes;
    a.insert("group_name".into(), json!(group_name(&config.address)));
    for key in ["record_identifier", "event_time", "features"] {
        a.insert(key.into(), b.get(key).cloned().unwrap_or(Value::Null));
    }
    let offline = b.get("offline").and_then(Value::as_bool).unwrap_or(true);
    a.insert("online".into(), json!(b.get("online").and_then(Value::as_bool).unwrap_or(true)));
    a.insert("offline".into(), json!(offline));
    if offline {
        a.insert("offline_uri".into(), b.get("offline_uri").cloned().unwrap_or(Value::Null));
        a.insert("execution_role".into(), b.get("execution_role").cloned().unwrap_or(Value::Null));
    }
    for key in ["group_name", "record_identifier", "event_time", "online", "offline", "offline_uri", "execution_role"] {
        d.force_new.insert(key.into());
    }
    // Features can be added in place; a removed or retyped one needs a new group.
    let name = group_name(&config.address);
    let live = read_named(p, &name).await?;
    p.reads.keep(config.address.to_string(), (name, false, live.clone()));
    if let Some(live) = live {
        let have = live.attributes.get("features").and_then(Value::as_object).cloned().unwrap_or_default();
        let want = b.get("features").and_then(Value::as_object).cloned().unwrap_or_default();
        if have.iter().any(|(k, v)| want.get(k) != Some(v)) {
            d.force_new.insert("features".into());
        }
    }
    d.replace_destroys_data = true;
    Ok(d)
}

pub(crate) async fn read(p: &Aws, address: &Address) -> Result<Option<LiveState>, ProviderError> {
    let name = group_name(address);
    match p.reads.take(&address.to_string()) {
        Some((seen, _, live)) if seen == name => Ok(live),
        _ => read_named(p, &name).await,
    }
}

pub(crate) async fn read_named(p: &Aws, name: &str) -> Result<Option<LiveState>, ProviderError> {
    let c = p.clients().await?;
    let g = match c.sm.describe_feature_group().feature_group_name(name).send().await {
        Ok(g) => g,
        Err(e) if error_code(&e).as_deref() == Some("ResourceNotFound") => return Ok(None),
        Err(e) => return Err(sdk_error(&format!("describe feature group {name}"), e)),
    };
    let features: serde_json::Map<String, Value> = g
        .feature_definitions()
        .iter()
        .filter_map(|f| Some((f.feature_name()?.to_string(), json!(f.feature_type()?.as_str().to_lowercase()))))
        .collect();
    let offline = g.offline_store_config();
    let mut attributes = attributes_of(json!({
        "group_name": name,
        "record_identifier": g.record_identifier_feature_name(),
        "event_time": g.event_time_feature_name(),
        "features": features,
        "online": g.online_store_config().and_then(|o| o.enable_online_store()).unwrap_or(false),
        "offline": offline.is_some(),
    }));
    if let Some(o) = offline {
        attributes.insert("offline_uri".into(), json!(o.s3_storage_config().map(|s| s.s3_uri())));
        attributes.insert("execution_role".into(), json!(g.role_arn()));
    }
    let outputs = attributes_of(json!({
        "feature_group_arn": g.feature_group_arn(),
        "status": g.feature_group_status().map(|s| s.as_str()),
        "offline_store_uri": offline.and_then(|o| o.s3_storage_config()).and_then(|s| s.resolved_output_s3_uri()),
    }));
    Ok(Some(LiveState { attributes, outputs }))
}

fn definitions(features: &serde_json::Map<String, Value>) -> Vec<FeatureDefinition> {
    features
        .iter()
        .map(|(name, t)| {
            let t = match t.as_str().unwrap_or_default() {
                "integral" => FeatureType::Integral,
                "fractional" => FeatureType::Fractional,
                _ => FeatureType::String,
            };
            FeatureDefinition::builder().feature_name(name).feature_type(t).build()
        })
        .collect()
}

async fn delete_named(p: &Aws, name: &str, progress: &dyn Progress) -> Result<(), ProviderError> {
    let c = p.clients().await?;
    match c.sm.describe_feature_group().feature_group_name(name).send().await {
        Ok(g) => p.require_owned("feature group", name, g.feature_group_arn().unwrap_or_default()).await?,
        Err(e) if error_code(&e).as_deref() == Some("ResourceNotFound") => return Ok(()),
        Err(e) => return Err(sdk_error(&format!("describe feature group {name}"), e)),
    }
    match c.sm.delete_feature_group().feature_group_name(name).send().await {
        Ok(_) => progress.report(&format!("deleting feature group {name} and its stored records")),
        Err(e) if error_code(&e).as_deref() == Some("ResourceNotFound") => return Ok(()),
        Err(e) => return Err(sdk_error(&format!("delete feature group {name}"), e)),
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while read_named(p, name).await?.is_some() {
        if Instant::now() > deadline {
            return Err(ProviderError::new(
                ErrorKind::Timeout,
                format!("feature group {name} was not deleted in 10 min"),
            ));
        }
        tokio::time::sleep(first_poll(c.emulated)).await;
    }
    Ok(())
}

pub(crate) async fn apply(
    p: &Aws,
    req: &ApplyRequest<'_>,
    progress: &dyn Progress,
) -> Result<LiveState, ProviderError> {
    let c = p.clients().await?;
    let want = &req.desired.attributes;
    let name = group_name(req.address);
    let features = want.get("features").and_then(Value::as_object).cloned().unwrap_or_default();
    if req.operation == Operation::Replace {
        delete_named(p, &name, progress).await?;
    }
    if req.operation == Operation::Update {
        let have =
            req.live.and_then(|l| l.attributes.get("features")).and_then(Value::as_object).cloned().unwrap_or_default();
        let added: serde_json::Map<String, Value> =
            features.iter().filter(|(k, _)| !have.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        if !added.is_empty() {
            progress.report(&format!(
                "adding feature(s) {} in place",
                added.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
            c.sm.update_feature_group()
                .feature_group_name(&name)
                .set_feature_additions(Some(definitions(&added)))
                .send()
                .await
                .map_err(|e| sdk_error(&format!("update feature group {name}"), e))?;
        }
    } else {
        let s = |k: &str| str_of(want.get(k));
        let mut create =
            c.sm.create_feature_group()
                .feature_group_name(&name)
                .record_identifier_feature_name(s("record_identifier"))
                .event_time_feature_name(s("event_time"))
                .set_feature_definitions(Some(definitions(&features)))
                .online_store_config(
                    OnlineStoreConfig::builder()
                        .enable_online_store(want.get("online").and_then(Value::as_bool).unwrap_or(true))
                        .build(),
                )
                .set_tags(Some(Aws::sm_tags(&p.tags(req.config))));
        if want.get("offline").and_then(Value::as_bool).unwrap_or(true) {
            create = create
                .offline_store_config(
                    OfflineStoreConfig::builder()
                        .s3_storage_config(S3StorageConfig::builder().s3_uri(s("offline_uri")).build())
                        .build(),
                )
                .role_arn(s("execution_role"));
        }
        progress.report(&format!("creating feature group {name}"));
        create.send().await.map_err(|e| sdk_error(&format!("create feature group {name}"), e))?;
        // Creating → Created.
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let live = read_named(p, &name).await?;
            let status = live
                .as_ref()
                .and_then(|l| l.outputs.get("status"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            match status.as_str() {
                "Created" => break,
                "CreateFailed" => {
                    return Err(ProviderError::failed(format!("feature group {name} could not be created")));
                }
                _ if Instant::now() > deadline => {
                    return Err(ProviderError::new(
                        ErrorKind::Timeout,
                        format!("feature group {name} still {status} after 10 min"),
                    ));
                }
                _ => tokio::time::sleep(first_poll(c.emulated)).await,
            }
        }
    }
    read_named(p, &name)
        .await?
        .ok_or_else(|| ProviderError::failed(format!("feature group {name} is missing right after it was applied")))
}

pub(crate) async fn delete(p: &Aws, address: &Address, progress: &dyn Progress) -> Result<(), ProviderError> {
    delete_named(p, &group_name(address), progress).await
}

/// SageMaker feature groups: a schema, and the records in its online and offline stores.
pub(crate) struct FeatureGroups(pub(crate) std::sync::Arc<Aws>);

#[async_trait::async_trait]
impl mlops_provider_core::ResourceType for FeatureGroups {
    fn check(&self, config: &ResourceConfig) -> Vec<ConfigDiagnostic> {
        check(config)
    }

    /// The recorded definition, applied again as a forward change is (a replacement it forces
    /// is data-destroying, as ever).
    fn restored_attributes(&self) -> &'static [&'static str] {
        &["record_identifier", "event_time", "features", "online", "offline", "offline_uri", "execution_role"]
    }

    fn rollback_leaves(&self) -> Option<&'static str> {
        Some(mlops_provider_core::FEATURE_RECORDS_NOT_RESTORED)
    }

    /// The definition is whole in the record.
    async fn restorable(
        &self,
        _config: &ResourceConfig,
        _desired: &Desired,
        _deps: &mlops_provider_core::Dependencies,
    ) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn desired(
        &self,
        config: &ResourceConfig,
        _deps: &mlops_provider_core::Dependencies,
    ) -> Result<Desired, ProviderError> {
        desired(&self.0, config).await
    }

    async fn read(
        &self,
        address: &Address,
        _prior: Option<&mlops_provider_core::PriorState>,
        _desired: Option<&Desired>,
    ) -> Result<Option<LiveState>, ProviderError> {
        read(&self.0, address).await
    }

    async fn apply(
        &self,
        request: mlops_provider_core::ApplyRequest<'_>,
        progress: &dyn Progress,
    ) -> Result<LiveState, ProviderError> {
        // What `desired` saw before this change is not what a later read must see.
        self.0.reads.take(&request.address.to_string());
        apply(&self.0, &request, progress).await
    }

    async fn delete(
        &self,
        address: &Address,
        _prior: &mlops_provider_core::PriorState,
        progress: &dyn Progress,
    ) -> Result<(), ProviderError> {
        delete(&self.0, address, progress).await
    }

    fn delete_destroys_data(&self, address: &Address, _live: &LiveState) -> Option<String> {
        mlops_provider_core::records_destroyed(address)
    }

    async fn import(&self, config: &ResourceConfig, id: &str) -> Result<LiveState, ProviderError> {
        let found = read_named(&self.0, id).await?;
        let c = self.0.clients().await?;
        let arn =
            c.sm.describe_feature_group()
                .feature_group_name(id)
                .send()
                .await
                .ok()
                .and_then(|g| g.feature_group_arn().map(str::to_string));
        self.0.adopt(config, id, "SageMaker feature group", found, arn).await
    }
}
