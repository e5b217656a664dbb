//! A Kubernetes endpoint: a KServe InferenceService, or a Deployment + Service (+ an autoscaler),
//! planned by a server-side dry run and written by server-side apply.

use super::*;

/// Endpoints on the cluster.
pub(crate) struct Endpoints(pub(crate) Arc<Cluster>);

impl Cluster {
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
        if runtime == "seldon" {
            self.require_seldon().await?;
        }
        let name = &config.address.name;
        let mut d = Desired::default();
        let mut fetched = BTreeMap::new();
        for (part, manifest) in self.manifests(config, deps, &namespace)? {
            if let Some(format) = manifest.pointer("/spec/predictor/model/modelFormat") {
                d.warnings.extend(self.check_serving_runtime(config, &namespace, format).await?);
                d.warnings.extend(crate::runtimes::format_warning(format));
            }
            if let Some(requirement) = manifest.pointer("/spec/requirements/0").and_then(Value::as_str) {
                self.check_seldon_server(config, &namespace, requirement).await?;
                d.warnings.extend(crate::seldon::unplaced(config, deps));
            }
            let kind = part.resource().kind;
            let live = self.get(&namespace, part, name).await?;
            if part == Part::SeldonModel {
                crate::seldon::check_reload(live.as_ref(), &manifest)?;
            }
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
        d.expected_wait_secs = Some(if runtime == "deployment" { 60 } else { 180 + rollout });
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

    pub(crate) async fn read_endpoint(
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
                    runtime = Some(match part {
                        Part::InferenceService => "kserve",
                        Part::SeldonModel | Part::Experiment => "seldon",
                        _ => "deployment",
                    });
                    namespace = Some(ns.clone());
                }
                let template = source.get(part.attribute()).cloned().unwrap_or(Value::Null);
                attributes.insert(part.attribute().into(), prune(&o, &template));
                ready &= readiness(part, &o).0;
                objects.push(self.object_ref(part, &ns, &o));
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
                    Part::SeldonModel => {
                        // Seldon serves every Model of a namespace through its mesh Service.
                        url = json!(format!("http://seldon-mesh.{ns}.svc.cluster.local/v2/models/{name}"));
                        digest = annotation("/metadata/annotations");
                    }
                    Part::Autoscaler | Part::Experiment => {}
                }
            }
        }
        let (Some(runtime), Some(namespace)) = (runtime, namespace) else {
            return Ok(None);
        };
        if runtime == "seldon" {
            // What a rollout left (killed, or failed without `rollback: auto`): not ready until
            // an apply finishes or removes it, and recorded so that a delete finds it.
            let leftovers = self.seldon_leftovers(&namespace, address).await?;
            ready &= leftovers.is_empty();
            objects.extend(leftovers);
        }
        attributes.insert("ready".into(), json!(ready));
        attributes.insert("namespace".into(), json!(namespace));
        attributes.insert("runtime".into(), json!(runtime));
        let outputs = attributes_of(json!({ "objects": objects, "url": url, "model_digest": digest }));
        Ok(Some(LiveState { attributes, outputs }))
    }

    /// The error, with what is live when something was written before it.
    pub(crate) async fn with_state(
        &self,
        e: ProviderError,
        address: &Address,
        desired: &Desired,
        changed: bool,
    ) -> ProviderError {
        if !changed {
            return e;
        }
        match self.read_endpoint(address, None, Some(desired)).await {
            Ok(Some(live)) => e.with_state(live),
            _ => e,
        }
    }
}

#[async_trait]
impl ResourceType for Endpoints {
    fn check(&self, config: &ResourceConfig) -> Vec<ConfigDiagnostic> {
        let diag = ConfigDiagnostic::unsupported;
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
                "add `runtime: kserve` (an InferenceService), `runtime: seldon` (a Seldon Core v2 Model) or \
                 `runtime: deployment` (a Deployment + Service)",
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
        match runtime {
            Some("seldon") => out.extend(crate::seldon::check(config)),
            Some("deployment") => {
                out.extend(mlops_provider_core::autoscaling::check(config, Some(&DEPLOYMENT_AUTOSCALING)))
            }
            _ => out.extend(mlops_provider_core::autoscaling::check(config, Some(&KSERVE_AUTOSCALING))),
        }
        if runtime == Some("seldon") {
            out.extend(mlops_provider_core::rollout::check(config, Some(&crate::seldon::SELDON_ROLLOUT)));
        } else if runtime == Some("deployment") && config.body.get("rollout").is_some() {
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

        // One runtime's settings on the other: refused at their line, never ignored.
        let (foreign, why, help): (&[&str], &str, &str) = match runtime {
            Some("deployment") => (
                &["model_format", "serving_runtime", "protocol_version"],
                "applies to `runtime: kserve`; a Deployment runs `image` as it is",
                "remove it, or use `runtime: kserve` to serve the model with a KServe serving runtime",
            ),
            Some("kserve") => (
                &["image", "args", "port"],
                "applies to `runtime: deployment`; KServe picks its server from the model's framework",
                "remove it, or use `runtime: deployment` to run your own serving image",
            ),
            Some("seldon") => (
                &["image", "args", "port", "env"],
                "has no place on a Seldon Model: the Seldon Server that loads it runs the container",
                "remove it, and set it on the Seldon Server (or use `runtime: deployment` to run your own image)",
            ),
            _ => (&[], "", ""),
        };
        for key in foreign.iter().filter(|k| config.body.get(**k).is_some()) {
            out.push(diag(ValuePath::key(*key), format!("`{key}` {why}"), help));
        }
        out.extend(mlops_provider_core::autoscaling::check_bounds(config));
        out.extend(mlops_provider_core::check_duration(
            ValuePath::key("wait_timeout"),
            config.body.get("wait_timeout"),
        ));
        out
    }

    async fn desired(&self, config: &ResourceConfig, deps: &Dependencies) -> Result<Desired, ProviderError> {
        self.0.desired_endpoint(config, deps).await
    }

    async fn read(
        &self,
        address: &Address,
        prior: Option<&PriorState>,
        desired: Option<&Desired>,
    ) -> Result<Option<LiveState>, ProviderError> {
        self.0.read_endpoint(address, prior, desired).await
    }

    /// The objects as recorded (storage URI, model digest, image, replicas, canary share,
    /// autoscaler), their runtime and namespace: applied again as a forward change is.
    fn restored_attributes(&self) -> &'static [&'static str] {
        &["inference_service", "deployment", "service", "autoscaler", "seldon_model", "runtime", "namespace"]
    }

    /// Every recorded object is whole in the record; the bytes its storage URI names are the
    /// model's to vouch for (its own `restorable`), and an image is restored as recorded.
    async fn restorable(
        &self,
        _config: &ResourceConfig,
        _desired: &Desired,
        _deps: &Dependencies,
    ) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn apply(&self, request: ApplyRequest<'_>, progress: &dyn Progress) -> Result<LiveState, ProviderError> {
        let address = request.address;
        // What `desired` saw before this change is not what a later read must see.
        self.0.reads.take(&address.to_string());
        let name = &address.name;
        let attrs = &request.desired.attributes;
        let (_, default_ns, url) = self.0.client().await?;
        let namespace = attrs.get("namespace").and_then(Value::as_str).unwrap_or(default_ns).to_string();
        let parts = Cluster::parts_of(attrs);
        // Autoscaling removed: the Deployment takes its replica count back from the autoscaler
        // mlops made (its HorizontalPodAutoscaler is deleted below, once this is applied).
        let had_autoscaler =
            request.prior.and_then(|p| p.outputs.get("objects")).and_then(Value::as_array).is_some_and(|os| {
                os.iter().any(|o| o.get("kind").and_then(Value::as_str) == Some("HorizontalPodAutoscaler"))
            });
        let take_back = had_autoscaler && !parts.contains(&Part::Autoscaler);
        // Another model on KServe or Seldon with a `rollout:`: stepped by mlops.
        if let Some(r) = mlops_provider_core::rollout::Rollout::of(request.config).filter(|_| request.options.wait)
            && Cluster::moves_model(request.live, attrs)
        {
            match parts.as_slice() {
                [Part::InferenceService] => return self.0.roll_out(&request, &r, &namespace, progress).await,
                [Part::SeldonModel] => return self.0.roll_out_seldon(&request, &r, &namespace, progress).await,
                _ => {}
            }
        }
        let mut changed = false;
        for part in &parts {
            let force = request.options.force_conflicts || (take_back && *part == Part::Deployment);
            let kind = part.resource().kind;
            // Exactly what the plan showed: the planned fields, with the object's identity.
            let manifest = Cluster::identity(*part, name, &namespace, &attrs[part.attribute()]);
            progress.report(&format!(
                "server-side apply of {kind} {namespace}/{name}{}",
                if force { " (forced)" } else { "" }
            ));
            if let Err(e) = self.0.ssa(&manifest, *part, false, force).await {
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
                return Err(self.0.with_state(err, address, request.desired, changed).await);
            }
            changed = true;
        }
        // Objects lineage recorded that this endpoint no longer has (another runtime or namespace):
        // deleted once the new ones are ready, and kept on record until then.
        let mut leftovers: Vec<Value> = request
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
        // What an interrupted Seldon rollout left: the Model as applied serves all the traffic.
        if parts == [Part::SeldonModel] {
            leftovers.extend(self.0.seldon_leftovers(&namespace, address).await?);
        }
        let keep_on_record = |mut e: ProviderError| {
            if let Some(Value::Array(objects)) = e.state.as_mut().and_then(|s| s.outputs.get_mut("objects")) {
                objects.extend(leftovers.iter().cloned());
            }
            e
        };
        if request.options.wait {
            let timeout = wait_timeout(request.config);
            progress.report(&format!("waiting up to {}s for {namespace}/{name} to be ready", timeout.as_secs()));
            if let Err(e) = self.0.wait_ready(&parts, &namespace, name, timeout, progress).await {
                return Err(keep_on_record(self.0.with_state(e, address, request.desired, true).await));
            }
        }
        if let Err(e) = self.0.delete_objects(&leftovers, progress).await {
            return Err(keep_on_record(self.0.with_state(e, address, request.desired, true).await));
        }
        self.0
            .read_endpoint(address, None, Some(request.desired))
            .await?
            .ok_or_else(|| ProviderError::failed(format!("{namespace}/{name} is missing right after it was applied")))
    }

    async fn import(&self, config: &ResourceConfig, id: &str) -> Result<LiveState, ProviderError> {
        self.0.import_endpoint(config, id).await
    }

    async fn delete(
        &self,
        address: &Address,
        prior: &PriorState,
        progress: &dyn Progress,
    ) -> Result<(), ProviderError> {
        let mut objects = prior.outputs.get("objects").and_then(Value::as_array).cloned().unwrap_or_default();
        // A Seldon rollout's Experiment and candidate, even when a kill kept them off the record.
        if prior.attributes.contains_key(Part::SeldonModel.attribute()) {
            let (_, default_ns, _) = self.0.client().await?;
            let ns = prior.attributes.get("namespace").and_then(Value::as_str).unwrap_or(default_ns).to_string();
            objects.extend(self.0.seldon_leftovers(&ns, address).await?);
        }
        self.0.delete_objects(&objects, progress).await
    }
}
