//! A feature store on feast: an entity, a file data source and a feature view over them (and the
//! feature services mlops made for the view), in one Feast project.

use super::*;

/// Feature views in the Feast registry.
pub(crate) struct FeatureViews(pub(crate) Arc<FeastRegistry>);

fn feature_type(t: &str) -> ValueType {
    match t {
        "integral" => ValueType::Int64,
        "fractional" => ValueType::Double,
        _ => ValueType::String,
    }
}

fn type_name(v: i32) -> &'static str {
    match ValueType::try_from(v) {
        Ok(ValueType::Int64) | Ok(ValueType::Int32) => "integral",
        Ok(ValueType::Double) | Ok(ValueType::Float) => "fractional",
        Ok(ValueType::String) => "string",
        _ => "unsupported",
    }
}

fn tags_of(m: &HashMap<String, String>) -> BTreeMap<String, String> {
    m.iter().filter(|(k, _)| !k.starts_with("mlops.")).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// A failed call as a provider error; `Ok(None)` for "not found".
fn status<T>(r: Result<tonic::Response<T>, tonic::Status>, what: &str) -> Result<Option<T>, ProviderError> {
    match r {
        Ok(r) => Ok(Some(r.into_inner())),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(s) => {
            let kind = match s.code() {
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => ErrorKind::Unavailable,
                tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => ErrorKind::Invalid,
                tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => ErrorKind::Invalid,
                tonic::Code::AlreadyExists | tonic::Code::Aborted => ErrorKind::Conflict,
                _ => ErrorKind::Failed,
            };
            let msg = s.message().lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(s.message()).trim();
            Err(ProviderError::new(kind, format!("Feast registry: {what}: {:?}: {msg}", s.code())))
        }
    }
}

/// The objects a feature store is made of, named.
struct Names {
    view: String,
    entity: String,
    source: String,
}

impl Names {
    /// The names a record holds in its outputs, each else `fallback`'s.
    fn recorded(prior: &PriorState, fallback: &Names) -> Names {
        let name = |key: &str, or: &str| prior.outputs.get(key).and_then(Value::as_str).unwrap_or(or).to_string();
        Names {
            view: name("feature_view", &fallback.view),
            entity: name("entity", &fallback.entity),
            source: name("data_source", &fallback.source),
        }
    }
}

impl FeastRegistry {
    /// A request with the bearer token Feast's clients would send, if the server wants one.
    fn request<T>(&self, message: T) -> Result<tonic::Request<T>, ProviderError> {
        let mut req = tonic::Request::new(message);
        let token = match self.auth.as_str() {
            "kubernetes" => std::fs::read_to_string(SERVICE_ACCOUNT_TOKEN)
                .ok()
                .or_else(|| std::env::var("LOCAL_K8S_TOKEN").ok())
                .ok_or("no service-account token (and LOCAL_K8S_TOKEN is not set)"),
            "oidc" => std::env::var("FEAST_OIDC_TOKEN").map_err(|_| "FEAST_OIDC_TOKEN is not set"),
            _ => return Ok(req),
        };
        let token = token.map_err(|e| ProviderError::invalid(format!("Feast `{}` auth: {e}", self.auth)))?;
        let value = format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| ProviderError::invalid("the Feast auth token is not a valid header value"))?;
        req.metadata_mut().insert("authorization", value);
        Ok(req)
    }

    async fn client(&self) -> Result<RegistryServerClient<Channel>, ProviderError> {
        let channel = self
            .channel
            .get_or_try_init(|| async {
                self.endpoint.connect().await.map_err(|e| {
                    ProviderError::new(
                        ErrorKind::Unavailable,
                        format!(
                            "the Feast registry server at {} did not answer: {}",
                            self.url,
                            mlops_provider_core::error_chain(&e)
                        ),
                    )
                })
            })
            .await?;
        Ok(RegistryServerClient::new(channel.clone()))
    }

    fn names(address: &Address, body: &Value) -> Names {
        let view = address.name.replace('-', "_");
        let entity = body.get("entity").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| view.clone());
        Names { source: format!("{view}_source"), view, entity }
    }

    fn owned(&self, tags: &HashMap<String, String>) -> bool {
        tags.get(OWNER) == Some(&self.stack)
    }

    /// What is live for a feature view named `view`: `None` when it does not exist.
    async fn live(&self, view: &str, require_owned: bool) -> Result<Option<LiveState>, ProviderError> {
        let mut c = self.client().await?;
        let req = fr::GetFeatureViewRequest { name: view.into(), project: self.project.clone(), allow_cache: false };
        let Some(fv) = status(c.get_feature_view(self.request(req)?).await, &format!("get feature view {view}"))?
        else {
            return Ok(None);
        };
        let spec = fv.spec.unwrap_or_default();
        if require_owned && !self.owned(&spec.tags) {
            return Ok(None);
        }
        let entity_name = spec.entities.first().cloned().unwrap_or_default();
        let req = fr::GetEntityRequest { name: entity_name.clone(), project: self.project.clone(), allow_cache: false };
        let entity = status(c.get_entity(self.request(req)?).await, &format!("get entity {entity_name}"))?
            .and_then(|e| e.spec)
            .unwrap_or_default();
        let source = spec.batch_source.clone().unwrap_or_default();
        let path = match &source.options {
            Some(data_source::Options::FileOptions(f)) => json!(f.uri),
            _ => Value::Null,
        };
        let features: BTreeMap<String, &str> =
            spec.features.iter().map(|f| (f.name.clone(), type_name(f.value_type))).collect();
        let key_type = spec.entity_columns.first().map(|c| type_name(c.value_type)).unwrap_or("string");
        let mut a = Attributes::new();
        a.insert("entity".into(), json!(entity.name));
        a.insert("record_identifier".into(), json!(entity.join_key));
        a.insert("record_identifier_type".into(), json!(key_type));
        a.insert("event_time".into(), json!(source.timestamp_field));
        a.insert("source".into(), json!({ "path": path }));
        a.insert("features".into(), json!(features));
        a.insert("ttl_seconds".into(), json!(spec.ttl.map(|d| d.seconds).unwrap_or(0)));
        a.insert("online".into(), json!(spec.online));
        a.insert("offline".into(), json!(spec.offline));
        a.insert("labels".into(), json!(tags_of(&spec.tags)));
        a.insert("feature_services".into(), json!(self.services_of(view).await?.into_keys().collect::<Vec<_>>()));
        let outputs = Attributes::from([
            ("feature_view".to_string(), json!(spec.name)),
            ("entity".to_string(), json!(entity.name)),
            ("data_source".to_string(), json!(source.name)),
            ("project".to_string(), json!(self.project)),
        ]);
        Ok(Some(LiveState { attributes: a, outputs }))
    }

    /// The feature services mlops made for `view`, by name.
    async fn services_of(&self, view: &str) -> Result<BTreeMap<String, fc::FeatureService>, ProviderError> {
        let mut c = self.client().await?;
        let req =
            fr::ListFeatureServicesRequest { project: self.project.clone(), allow_cache: false, ..Default::default() };
        let list =
            status(c.list_feature_services(self.request(req)?).await, "list feature services")?.unwrap_or_default();
        Ok(list
            .feature_services
            .into_iter()
            .filter_map(|s| {
                let spec = s.spec.as_ref()?;
                (self.owned(&spec.tags) && spec.tags.get(VIEW_TAG).map(String::as_str) == Some(view))
                    .then(|| (spec.name.clone(), s.clone()))
            })
            .collect())
    }

    /// Makes the feature services of `view` the `wanted` ones, each serving all of its features.
    async fn sync_services(
        &self,
        view: &fc::FeatureViewSpec,
        wanted: &[String],
        progress: &dyn Progress,
    ) -> Result<(), ProviderError> {
        let mut c = self.client().await?;
        let project = self.project.clone();
        for name in wanted {
            let mut tags: HashMap<String, String> = view.tags.clone();
            tags.insert(VIEW_TAG.into(), view.name.clone());
            let service = fc::FeatureService {
                spec: Some(fc::FeatureServiceSpec {
                    name: name.clone(),
                    project: project.clone(),
                    features: vec![fc::FeatureViewProjection {
                        feature_view_name: view.name.clone(),
                        feature_columns: view.features.clone(),
                        batch_source: view.batch_source.clone(),
                        view_type: "featureView".into(),
                        ..Default::default()
                    }],
                    tags,
                    ..Default::default()
                }),
                meta: Some(Default::default()),
            };
            progress.report(&format!("applying feature service {name}"));
            let req = fr::ApplyFeatureServiceRequest {
                feature_service: Some(service),
                project: project.clone(),
                commit: true,
            };
            status(c.apply_feature_service(self.request(req)?).await, "apply feature service")?;
        }
        for name in self.services_of(&view.name).await?.into_keys().filter(|n| !wanted.contains(n)) {
            progress.report(&format!("deleting feature service {name}"));
            let req = fr::DeleteFeatureServiceRequest { name, project: project.clone(), commit: true };
            status(c.delete_feature_service(self.request(req)?).await, "delete feature service")?;
        }
        Ok(())
    }

    async fn delete_objects(&self, names: &Names, progress: &dyn Progress) -> Result<(), ProviderError> {
        let mut c = self.client().await?;
        let project = self.project.clone();
        // Services first: they name the view.
        for name in self.services_of(&names.view).await?.into_keys() {
            let req = fr::DeleteFeatureServiceRequest { name, project: project.clone(), commit: true };
            status(c.delete_feature_service(self.request(req)?).await, "delete feature service")?;
        }
        let req = fr::GetFeatureViewRequest { name: names.view.clone(), project: project.clone(), allow_cache: false };
        if let Some(fv) = status(c.get_feature_view(self.request(req)?).await, "get feature view")? {
            if !self.owned(&fv.spec.unwrap_or_default().tags) {
                return Err(ProviderError::new(
                    ErrorKind::Conflict,
                    format!(
                        "feature view {} is not marked as this stack's (tag {OWNER}); mlops leaves it in place",
                        names.view
                    ),
                ));
            }
            progress.report(&format!("deleting feature view {}", names.view));
            let req = fr::DeleteFeatureViewRequest { name: names.view.clone(), project: project.clone(), commit: true };
            status(c.delete_feature_view(self.request(req)?).await, "delete feature view")?;
        }
        let req = fr::GetDataSourceRequest { name: names.source.clone(), project: project.clone(), allow_cache: false };
        if status(c.get_data_source(self.request(req)?).await, "get data source")?.is_some_and(|s| self.owned(&s.tags))
        {
            let req =
                fr::DeleteDataSourceRequest { name: names.source.clone(), project: project.clone(), commit: true };
            status(c.delete_data_source(self.request(req)?).await, "delete data source")?;
        }
        let req = fr::GetEntityRequest { name: names.entity.clone(), project: project.clone(), allow_cache: false };
        let entity = status(c.get_entity(self.request(req)?).await, "get entity")?.and_then(|e| e.spec);
        if entity.is_some_and(|e| self.owned(&e.tags)) {
            let req = fr::DeleteEntityRequest { name: names.entity.clone(), project, commit: true };
            status(c.delete_entity(self.request(req)?).await, "delete entity")?;
        }
        Ok(())
    }
}

#[async_trait]
impl ResourceType for FeatureViews {
    fn check(&self, config: &ResourceConfig) -> Vec<ConfigDiagnostic> {
        let mut out = Vec::new();
        if config.body.pointer("/source/path").and_then(Value::as_str).is_none() {
            out.push(ConfigDiagnostic {
                path: ValuePath::root(),
                code: "feast::no_source".into(),
                message: format!("{} needs a data source on Feast: `source: {{ path: … }}`", config.address),
                help: Some("add `source: { path: data/NAME.parquet }` (a Parquet file or folder)".into()),
            });
        }
        if let Some(ttl) = config.str("ttl")
            && parse_duration(ttl).is_none()
        {
            out.push(ConfigDiagnostic {
                path: ValuePath::key("ttl"),
                code: "spec::invalid_value".into(),
                message: format!("`{ttl}` is not a duration"),
                help: Some("write e.g. `24h`, `90m` or `3600s`".into()),
            });
        }
        out
    }

    /// The recorded definition, applied again as a forward change is (a replacement it forces
    /// is data-destroying, as ever).
    fn restored_attributes(&self) -> &'static [&'static str] {
        &[
            "entity",
            "record_identifier",
            "record_identifier_type",
            "event_time",
            "source",
            "features",
            "ttl_seconds",
            "online",
            "offline",
            "feature_services",
        ]
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
        let b = &config.body;
        let names = FeastRegistry::names(&config.address, b);
        let key = b.get("record_identifier").and_then(Value::as_str).unwrap_or_default();
        let event_time = b.get("event_time").and_then(Value::as_str).unwrap_or_default();
        let all: BTreeMap<String, String> = b
            .get("features")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("string").to_string()))
            .collect();
        let key_type = all.get(key).cloned().unwrap_or_else(|| "string".into());
        // The key and the event time are the entity's and the source's, not features of the view.
        let features: BTreeMap<&String, &String> =
            all.iter().filter(|(k, _)| k.as_str() != key && k.as_str() != event_time).collect();
        let ttl = b.get("ttl").and_then(Value::as_str).and_then(parse_duration).map(|d| d.as_secs()).unwrap_or(0);
        let mut a = Attributes::new();
        a.insert("entity".into(), json!(names.entity));
        a.insert("record_identifier".into(), json!(key));
        a.insert("record_identifier_type".into(), json!(key_type));
        a.insert("event_time".into(), json!(event_time));
        a.insert("source".into(), json!({ "path": b.pointer("/source/path") }));
        a.insert("features".into(), json!(features));
        a.insert("ttl_seconds".into(), json!(ttl));
        a.insert("online".into(), json!(b.get("online").and_then(Value::as_bool).unwrap_or(true)));
        a.insert("offline".into(), json!(b.get("offline").and_then(Value::as_bool).unwrap_or(true)));
        a.insert("labels".into(), b.get("labels").cloned().unwrap_or_else(|| json!({})));
        let mut services: Vec<&str> = b
            .get("feature_services")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        services.sort_unstable();
        services.dedup();
        a.insert("feature_services".into(), json!(services));
        Ok(Desired {
            attributes: a,
            // Another key (or entity) makes the stored rows unreachable: a replace that destroys data.
            force_new: ["entity", "record_identifier", "record_identifier_type"].map(String::from).into(),
            replace_destroys_data: true,
            ..Default::default()
        })
    }

    async fn read(
        &self,
        address: &Address,
        prior: Option<&PriorState>,
        _desired: Option<&Desired>,
    ) -> Result<Option<LiveState>, ProviderError> {
        let view = prior
            .and_then(|p| p.outputs.get("feature_view"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| address.name.replace('-', "_"));
        self.0.live(&view, prior.is_none()).await
    }

    async fn apply(&self, request: ApplyRequest<'_>, progress: &dyn Progress) -> Result<LiveState, ProviderError> {
        let want = &request.desired.attributes;
        let names = FeastRegistry::names(request.address, &request.config.body);
        let mut c = self.0.client().await?;
        let project = self.0.project.clone();
        if request.operation == Operation::Create && !request.options.force_conflicts {
            let req =
                fr::GetFeatureViewRequest { name: names.view.clone(), project: project.clone(), allow_cache: false };
            if let Some(fv) = status(c.get_feature_view(self.0.request(req)?).await, "get feature view")?
                && !self.0.owned(&fv.spec.unwrap_or_default().tags)
            {
                return Err(ProviderError::new(
                    ErrorKind::Conflict,
                    format!(
                        "a feature view `{}` exists in Feast project {project} and was not created by this stack; adopt it with `mlops import {} {}` or apply with --force-conflicts",
                        names.view, request.address, names.view
                    ),
                ));
            }
        }
        if request.operation == Operation::Replace
            && let Some(prior) = request.prior
        {
            let old = Names::recorded(prior, &names);
            self.0.delete_objects(&old, progress).await?;
        }
        let mut tags: HashMap<String, String> = want
            .get("labels")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
            .collect();
        tags.insert(OWNER.into(), self.0.stack.clone());
        let s = |k: &str| want.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let key = s("record_identifier");
        let key_type = feature_type(&s("record_identifier_type")) as i32;

        progress.report(&format!("applying entity {}", names.entity));
        let entity = fc::Entity {
            spec: Some(fc::EntitySpecV2 {
                name: names.entity.clone(),
                project: project.clone(),
                value_type: key_type,
                join_key: key.clone(),
                tags: tags.clone(),
                ..Default::default()
            }),
            meta: Some(Default::default()),
        };
        let req = fr::ApplyEntityRequest { entity: Some(entity), project: project.clone(), commit: true };
        status(c.apply_entity(self.0.request(req)?).await, "apply entity")?;

        let source = fc::DataSource {
            name: names.source.clone(),
            project: project.clone(),
            r#type: data_source::SourceType::BatchFile as i32,
            timestamp_field: s("event_time"),
            data_source_class_type: FILE_SOURCE_CLASS.into(),
            tags: tags.clone(),
            options: Some(data_source::Options::FileOptions(data_source::FileOptions {
                file_format: Some(fc::FileFormat {
                    format: Some(file_format::Format::ParquetFormat(Default::default())),
                }),
                uri: want
                    .get("source")
                    .and_then(|s| s.get("path"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                ..Default::default()
            })),
            ..Default::default()
        };
        progress.report(&format!("applying data source {}", names.source));
        let req =
            fr::ApplyDataSourceRequest { data_source: Some(source.clone()), project: project.clone(), commit: true };
        status(c.apply_data_source(self.0.request(req)?).await, "apply data source")?;

        let features = want
            .get("features")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(name, t)| fc::FeatureSpecV2 {
                name: name.clone(),
                value_type: feature_type(t.as_str().unwrap_or("string")) as i32,
                ..Default::default()
            })
            .collect();
        let ttl = want.get("ttl_seconds").and_then(Value::as_i64).unwrap_or(0);
        let view = fc::FeatureView {
            spec: Some(fc::FeatureViewSpec {
                name: names.view.clone(),
                project: project.clone(),
                entities: vec![names.entity.clone()],
                features,
                entity_columns: vec![fc::FeatureSpecV2 { name: key, value_type: key_type, ..Default::default() }],
                tags,
                ttl: Some(prost_types::Duration { seconds: ttl, nanos: 0 }),
                batch_source: Some(source),
                online: want.get("online").and_then(Value::as_bool).unwrap_or(true),
                offline: want.get("offline").and_then(Value::as_bool).unwrap_or(true),
                version: "latest".into(),
                ..Default::default()
            }),
            meta: Some(Default::default()),
        };
        progress.report(&format!("applying feature view {}", names.view));
        let view_spec = view.spec.clone().unwrap_or_default();
        let req = fr::ApplyFeatureViewRequest {
            project: project.clone(),
            commit: true,
            base_feature_view: Some(fr::apply_feature_view_request::BaseFeatureView::FeatureView(view)),
        };
        status(c.apply_feature_view(self.0.request(req)?).await, "apply feature view")?;
        let services: Vec<String> = want
            .get("feature_services")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        self.0.sync_services(&view_spec, &services, progress).await?;
        self.0.live(&names.view, false).await?.ok_or_else(|| {
            ProviderError::new(
                ErrorKind::Conflict,
                format!("feature view {} is gone right after it was applied", names.view),
            )
        })
    }

    async fn delete(
        &self,
        address: &Address,
        prior: &PriorState,
        progress: &dyn Progress,
    ) -> Result<(), ProviderError> {
        let unknown = Names { view: address.name.replace('-', "_"), entity: String::new(), source: String::new() };
        self.0.delete_objects(&Names::recorded(prior, &unknown), progress).await
    }

    async fn import(&self, _config: &ResourceConfig, id: &str) -> Result<LiveState, ProviderError> {
        self.0.live(id, false).await?.ok_or_else(|| {
            ProviderError::invalid(format!("Feast project {} has no feature view `{id}`", self.0.project))
        })
    }

    /// The registry objects go; the source file keeps the offline records, but what was
    /// materialized into the online store is no longer served.
    fn delete_destroys_data(&self, address: &Address, live: &LiveState) -> Option<String> {
        let view = live.outputs.get("feature_view").and_then(Value::as_str).unwrap_or(&address.name);
        Some(format!(
            "deleting {address} removes feature view {view} from the Feast registry: its online-store records are no longer served"
        ))
    }
}
