//! SageMaker endpoints: an EndpointConfig of production variants, and the Endpoint serving it.
//!
//! What an EndpointConfig fixes (each variant's model and instance type) is hashed into its name;
//! weights and instance counts are attributes of their own. So a change of model or instance type
//! creates a new config, `UpdateEndpoint` switches to it, and the old config is deleted once the
//! endpoint is InService again; a weight- or capacity-only change is one
//! `UpdateEndpointWeightsAndCapacities`, with no new config.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_sagemaker::types::{
    DesiredWeightAndCapacity, ProductionVariant, ProductionVariantInstanceType, VariantProperty, VariantPropertyType,
};
use mlops_provider_core::rollout::Rollout;
use mlops_provider_core::{
    Address, ApplyRequest, ConfigDiagnostic, Dependencies, Desired, ErrorKind, LiveState, Operation, PriorState,
    Progress, ProviderError, ResourceConfig, Value, ValuePath, attributes_of,
};
use serde_json::json;

use crate::{
    Aws, diag, error_code, error_message, first_poll, labels_from_tags, labels_of, next_poll, sagemaker_name, scaling,
    sdk_error, short_hash, str_of,
};

const DEFAULT_WAIT: Duration = Duration::from_secs(3600);
/// What a rollout's wait allows beyond its steps and bake: the new fleet coming up.
const DEPLOY_ALLOWANCE: Duration = Duration::from_secs(600);

fn endpoint_name(address: &Address) -> String {
    address.name.replace(['_', '.'], "-")
}

/// A weight as compared: SageMaker keeps f32, the spec writes decimals.
fn weight(w: f64) -> Value {
    json!((w * 1000.0).round() / 1000.0)
}

pub(crate) fn check(config: &ResourceConfig) -> Vec<ConfigDiagnostic> {
    let b = &config.body;
    let mut out = Vec::new();
    // Other providers' settings are refused by the engine; `max_replicas` is portable but has no
    // SageMaker meaning without autoscaling.
    if b.get("max_replicas").is_some() && b.get("autoscaling").is_none() {
        out.push(diag(
            ValuePath::key("max_replicas"),
            "`max_replicas` alone sets up no autoscaling on SageMaker; it would be ignored".into(),
            "write `autoscaling: { min, max, target: { metric: invocations_per_instance, value: N } }`",
        ));
    }
    out.extend(mlops_provider_core::autoscaling::check(config, Some(&scaling::SUPPORT)));
    out.extend(mlops_provider_core::rollout::check(config, Some(&crate::rollout::SUPPORT)));
    if b.pointer("/traffic/canary_percent").is_some() {
        out.push(diag(
            ValuePath::keys(&["traffic", "canary_percent"]),
            "on AWS a canary is a weighted production variant; `traffic.canary_percent` would be ignored".into(),
            "declare `variants: [{name: blue, weight: 90}, {name: green, model: models.NEW, weight: 10}]`",
        ));
    }
    let variants = b.get("variants").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut seen = std::collections::BTreeSet::new();
    for (i, v) in variants.iter().enumerate() {
        let name = v.get("name").and_then(Value::as_str).unwrap_or_default();
        if !seen.insert(name.to_string()) {
            out.push(diag(
                ValuePath(vec!["variants".into(), i.to_string(), "name".into()]),
                format!("variant `{name}` is declared twice"),
                "give every variant its own name",
            ));
        }
        if v.get("instance_type").is_none() && b.get("instance_type").is_none() {
            out.push(diag(
                ValuePath(vec!["variants".into(), i.to_string()]),
                format!("variant `{name}` has no `instance_type`"),
                "set `instance_type` on the variant or on the endpoint, e.g. ml.m5.large",
            ));
        }
    }
    if variants.is_empty() && b.get("instance_type").is_none() {
        out.push(diag(
            ValuePath::root(),
            format!("{} is a SageMaker endpoint and needs an `instance_type`", config.address),
            "e.g. `instance_type: ml.m5.large`",
        ));
    }
    out.extend(mlops_provider_core::check_duration(ValuePath::key("wait_timeout"), b.get("wait_timeout")));
    out
}

struct VariantSpec {
    name: String,
    model_name: String,
    instance_type: String,
    count: i64,
    weight: f64,
}

fn variants(config: &ResourceConfig, deps: &Dependencies) -> Result<Vec<VariantSpec>, ProviderError> {
    let b = &config.body;
    let listed = b.get("variants").and_then(Value::as_array).cloned().unwrap_or_default();
    let listed = if listed.is_empty() { vec![json!({ "name": "primary" })] } else { listed };
    let mut out = Vec::new();
    for (i, v) in listed.iter().enumerate() {
        let path = if b.get("variants").is_some() {
            ValuePath(vec!["variants".into(), i.to_string(), "model".into()])
        } else {
            ValuePath::key("model")
        };
        let model = v.get("model").or_else(|| b.get("model")).and_then(Value::as_str).unwrap_or_default();
        let addr: Option<Address> = model.parse().ok();
        let model_name = addr
            .as_ref()
            .and_then(|a| deps.get(a))
            .and_then(|d| d.attributes.get("model_name"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ProviderError::invalid(format!(
                    "{model} is not a SageMaker model: a SageMaker endpoint serves models on aws"
                ))
                .at(path.clone())
            })?;
        out.push(VariantSpec {
            name: v.get("name").and_then(Value::as_str).unwrap_or("primary").to_string(),
            model_name: model_name.to_string(),
            instance_type: v
                .get("instance_type")
                .or_else(|| b.get("instance_type"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            count: v.get("instance_count").or_else(|| b.get("instance_count")).and_then(Value::as_i64).unwrap_or(1),
            weight: v.get("weight").and_then(Value::as_f64).unwrap_or(1.0),
        });
    }
    Ok(out)
}

pub(crate) async fn desired(p: &Aws, config: &ResourceConfig, deps: &Dependencies) -> Result<Desired, ProviderError> {
    let vs = variants(config, deps)?;
    let identity: Vec<Value> = vs
        .iter()
        .map(|v| json!({ "name": v.name, "model_name": v.model_name, "instance_type": v.instance_type }))
        .collect();
    let identity = Value::Array(identity);
    let name = endpoint_name(&config.address);
    let config_name = sagemaker_name(&name, &short_hash(&[&identity]));
    let mut d = Desired::default();
    let a = &mut d.attributes;
    a.insert("endpoint_name".into(), json!(name));
    a.insert("config_name".into(), json!(config_name));
    a.insert("variants".into(), identity.clone());
    a.insert("weights".into(), Value::Object(vs.iter().map(|v| (v.name.clone(), weight(v.weight))).collect()));
    let names: Vec<String> = vs.iter().map(|v| v.name.clone()).collect();
    let autoscaling = scaling::desired(config, &names);
    let scaled = scaling::is_on(Some(&autoscaling));
    // An autoscaled endpoint's counts are the autoscaler's (see the `scaling` module).
    if !scaled {
        a.insert("capacity".into(), Value::Object(vs.iter().map(|v| (v.name.clone(), json!(v.count))).collect()));
    }
    a.insert("autoscaling".into(), autoscaling);
    a.insert("status".into(), json!("InService"));
    a.insert("labels".into(), json!(labels_of(config)));
    crate::rollout::check_alarms(p, config).await?;
    let rollout = Rollout::of(config).map(|r| r.expected().as_secs()).unwrap_or_default();
    d.expected_wait_secs = Some(600 + rollout);
    // A Failed endpoint cannot be updated, only deleted and created again.
    let live = read_with(p, &name, Some((&config_name, &identity)), scaled).await?;
    if live.as_ref().and_then(|l| l.attributes.get("status")).and_then(Value::as_str) == Some("Failed") {
        d.force_new.insert("status".into());
    }
    p.reads.keep(config.address.to_string(), (name, scaled, live));
    Ok(d)
}

pub(crate) async fn read(
    p: &Aws,
    address: &Address,
    prior: Option<&PriorState>,
    desired: Option<&Desired>,
) -> Result<Option<LiveState>, ProviderError> {
    let name = desired
        .and_then(|d| d.attributes.get("endpoint_name"))
        .or_else(|| prior.and_then(|p| p.attributes.get("endpoint_name")))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| endpoint_name(address));
    // Application Auto Scaling is asked only about an endpoint mlops scales, or scaled.
    let scaled = scaling::is_on(desired.and_then(|d| d.attributes.get("autoscaling")))
        || scaling::is_on(prior.and_then(|p| p.attributes.get("autoscaling")));
    match p.reads.take(&address.to_string()) {
        Some((seen, seen_scaled, live)) if seen == name && seen_scaled == scaled => Ok(live),
        _ => read_named(p, &name, scaled).await,
    }
}

pub(crate) async fn read_named(p: &Aws, name: &str, scaled: bool) -> Result<Option<LiveState>, ProviderError> {
    read_with(p, name, None, scaled).await
}

/// Reads the endpoint. `known`: a config name and the variants it was made from; SageMaker
/// endpoint configs are immutable and mlops names them by a hash of their variants, so when the
/// endpoint runs that config its variants are known without a DescribeEndpointConfig.
/// With `scaled`, also what Application Auto Scaling holds for it, and the instance counts as
/// outputs (the autoscaler's, not compared).
async fn read_with(
    p: &Aws,
    name: &str,
    known: Option<(&str, &Value)>,
    scaled: bool,
) -> Result<Option<LiveState>, ProviderError> {
    let c = p.clients().await?;
    let e = match c.sm.describe_endpoint().endpoint_name(name).send().await {
        Ok(e) => e,
        Err(e)
            if error_code(&e).as_deref() == Some("ValidationException")
                && error_message(&e).contains("Could not find") =>
        {
            return Ok(None);
        }
        Err(e) => return Err(sdk_error(&format!("describe endpoint {name}"), e)),
    };
    let config_name = e.endpoint_config_name().unwrap_or_default().to_string();
    let cfg = match known {
        Some((known_name, _)) if known_name == config_name => None,
        _ => Some(
            c.sm.describe_endpoint_config()
                .endpoint_config_name(&config_name)
                .send()
                .await
                .map_err(|err| sdk_error(&format!("describe endpoint config {config_name}"), err))?,
        ),
    };
    let configured = cfg.as_ref().map(|c| c.production_variants()).unwrap_or_default();
    let identity: Value = match (&cfg, known) {
        (None, Some((_, identity))) => identity.clone(),
        _ => configured
            .iter()
            .map(|v| {
                json!({
                    "name": v.variant_name(),
                    "model_name": v.model_name(),
                    "instance_type": v.instance_type().map(|t| t.as_str()),
                })
            })
            .collect(),
    };
    let mut weights = serde_json::Map::new();
    let mut capacity = serde_json::Map::new();
    for v in e.production_variants() {
        let vname = v.variant_name().unwrap_or_default().to_string();
        let configured = configured.iter().find(|c| c.variant_name() == Some(vname.as_str()));
        let w = v.current_weight().or(v.desired_weight()).or(configured.and_then(|c| c.initial_variant_weight()));
        let n = v
            .current_instance_count()
            .or(v.desired_instance_count())
            .or(configured.and_then(|c| c.initial_instance_count()));
        weights.insert(vname.clone(), w.map(|w| weight(f64::from(w))).unwrap_or(Value::Null));
        capacity.insert(vname, json!(n));
    }
    let model_names: Vec<Value> = identity
        .as_array()
        .map(|vs| vs.iter().map(|v| v.get("model_name").cloned().unwrap_or(Value::Null)).collect())
        .unwrap_or_default();
    let arn = e.endpoint_arn().unwrap_or_default().to_string();
    let tags = p.sm_tags_of(&arn).await?;
    let autoscaling = if scaled {
        let names: Vec<String> = weights.keys().cloned().collect();
        scaling::read(p, name, &names).await?
    } else {
        json!({})
    };
    let mut attributes = attributes_of(json!({
        "endpoint_name": name,
        "config_name": config_name,
        "variants": identity,
        "weights": weights,
        "autoscaling": autoscaling,
        "status": e.endpoint_status().map(|s| s.as_str()),
        "labels": labels_from_tags(&tags),
    }));
    let mut outputs = attributes_of(json!({
        "endpoint_arn": arn,
        "endpoint_name": name,
        "config_name": config_name,
        "model_names": model_names,
        "failure_reason": e.failure_reason(),
    }));
    if scaled {
        outputs.insert("instance_counts".into(), Value::Object(capacity));
    } else {
        attributes.insert("capacity".into(), Value::Object(capacity));
    }
    Ok(Some(LiveState { attributes, outputs }))
}

/// The `instance_count` a variant of the spec sets itself.
fn variant_count(config: &ResourceConfig, variant: &str) -> Option<i64> {
    let variants = config.body.get("variants").and_then(Value::as_array)?;
    let v = variants.iter().find(|v| v.get("name").and_then(Value::as_str) == Some(variant))?;
    v.get("instance_count").and_then(Value::as_i64)
}

/// Each variant's name and instance type: what an autoscaled endpoint cannot change while scaled.
fn variant_shapes(variants: Option<&Value>) -> Vec<(String, String)> {
    variants
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|v| (str_of(v.get("name")), str_of(v.get("instance_type"))))
        .collect()
}

/// Deregisters every variant `autoscaling` (an attribute as read) scales.
async fn deregister_all(
    p: &Aws,
    name: &str,
    autoscaling: Option<&Value>,
    progress: &dyn Progress,
) -> Result<(), ProviderError> {
    for variant in autoscaling.and_then(Value::as_object).into_iter().flat_map(|m| m.keys()) {
        scaling::deregister(p, name, variant, progress).await?;
    }
    Ok(())
}

fn per_variant<'a>(want: &'a mlops_provider_core::Attributes, key: &str, variant: &str) -> Option<&'a Value> {
    want.get(key).and_then(|m| m.get(variant))
}

async fn create_config(p: &Aws, req: &ApplyRequest<'_>, progress: &dyn Progress) -> Result<String, ProviderError> {
    let c = p.clients().await?;
    let want = &req.desired.attributes;
    let config_name = str_of(want.get("config_name"));
    if c.sm.describe_endpoint_config().endpoint_config_name(&config_name).send().await.is_ok() {
        return Ok(config_name);
    }
    // An autoscaled variant starts at `instance_count`, else its minimum.
    let initial = mlops_provider_core::autoscaling::Autoscaling::of(req.config)
        .map(|a| a.initial(req.config) as i64)
        .unwrap_or(1);
    let mut variants = Vec::new();
    for v in want.get("variants").and_then(Value::as_array).into_iter().flatten() {
        let vname = str_of(v.get("name"));
        variants.push(
            ProductionVariant::builder()
                .variant_name(&vname)
                .model_name(str_of(v.get("model_name")))
                .instance_type(ProductionVariantInstanceType::from(str_of(v.get("instance_type")).as_str()))
                .initial_instance_count(
                    per_variant(want, "capacity", &vname)
                        .and_then(Value::as_i64)
                        .or_else(|| variant_count(req.config, &vname))
                        .unwrap_or(initial) as i32,
                )
                .initial_variant_weight(
                    per_variant(want, "weights", &vname).and_then(Value::as_f64).unwrap_or(1.0) as f32
                )
                .build(),
        );
    }
    progress.report(&format!("creating endpoint config {config_name}"));
    c.sm.create_endpoint_config()
        .endpoint_config_name(&config_name)
        .set_production_variants(Some(variants))
        .set_tags(Some(Aws::sm_tags(&p.tags(req.config))))
        .send()
        .await
        .map_err(|e| sdk_error(&format!("create endpoint config {config_name}"), e))?;
    Ok(config_name)
}

async fn delete_config(p: &Aws, name: &str, progress: &dyn Progress) -> Result<(), ProviderError> {
    let c = p.clients().await?;
    match c.sm.delete_endpoint_config().endpoint_config_name(name).send().await {
        Ok(_) => {
            progress.report(&format!("deleted endpoint config {name}"));
            Ok(())
        }
        Err(e) if error_code(&e).as_deref() == Some("ValidationException") => Ok(()),
        Err(e) => Err(sdk_error(&format!("delete endpoint config {name}"), e)),
    }
}

/// Waits until the endpoint is InService; Failed, or the timeout, is an error.
async fn wait(p: &Aws, name: &str, timeout: Duration, progress: &dyn Progress) -> Result<(), ProviderError> {
    let c = p.clients().await?;
    let started = Instant::now();
    let mut pause = first_poll(c.emulated);
    let mut last = String::new();
    loop {
        let e =
            c.sm.describe_endpoint()
                .endpoint_name(name)
                .send()
                .await
                .map_err(|e| sdk_error(&format!("describe endpoint {name}"), e))?;
        let status = e.endpoint_status().map(|s| s.as_str().to_string()).unwrap_or_default();
        match status.as_str() {
            "InService" => return Ok(()),
            "Failed" | "OutOfService" | "UpdateRollbackFailed" => {
                return Err(ProviderError::failed(format!(
                    "endpoint {name} is {status}: {}",
                    e.failure_reason().unwrap_or("no FailureReason given")
                )));
            }
            _ => {}
        }
        if status != last {
            progress.report(&format!("endpoint {name} is {status}"));
            last = status.clone();
        }
        if started.elapsed() >= timeout {
            return Err(ProviderError::new(
                ErrorKind::Timeout,
                format!(
                    "endpoint {name} was still {status} after {}s (wait_timeout); SageMaker goes on deploying it: \
                     `mlops plan` shows where it got to",
                    timeout.as_secs()
                ),
            ));
        }
        tokio::time::sleep(pause.min(timeout.saturating_sub(started.elapsed()).max(Duration::from_millis(50)))).await;
        pause = next_poll(pause, c.emulated);
    }
}

pub(crate) async fn apply(
    p: &Aws,
    req: &ApplyRequest<'_>,
    progress: &dyn Progress,
) -> Result<LiveState, ProviderError> {
    let c = p.clients().await?;
    let want = &req.desired.attributes;
    let name = str_of(want.get("endpoint_name"));
    let rollout = Rollout::of(req.config);
    let mut timeout =
        req.config.str("wait_timeout").and_then(mlops_provider_core::parse_duration).unwrap_or(DEFAULT_WAIT);
    let mut live = req.live.cloned();
    let scaled = scaling::is_on(want.get("autoscaling"));
    // What Application Auto Scaling holds now (an endpoint replaced or switched to other
    // variants is deregistered first, as AWS requires).
    let mut live_scaling = live.as_ref().and_then(|l| l.attributes.get("autoscaling")).cloned();
    let read_scaled = scaled || scaling::is_on(live_scaling.as_ref());
    // Anything that changed something records what is live if it then fails.
    let with_state = |e: ProviderError| async {
        match read_named(p, &name, read_scaled).await {
            Ok(Some(l)) => e.with_state(l),
            _ => e,
        }
    };

    if req.operation == Operation::Replace && live.is_some() {
        deregister_all(p, &name, live_scaling.take().as_ref(), progress).await?;
        progress.report(&format!("deleting endpoint {name}, which cannot be updated in its state"));
        c.sm.delete_endpoint()
            .endpoint_name(&name)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("delete endpoint {name}"), e))?;
        let deadline = Instant::now() + timeout;
        while read_named(p, &name, false).await?.is_some() {
            if Instant::now() > deadline {
                return Err(ProviderError::new(ErrorKind::Timeout, format!("endpoint {name} was not deleted in time")));
            }
            tokio::time::sleep(first_poll(c.emulated)).await;
        }
        live = None;
    }

    let mut old_config = None;
    match &live {
        None => {
            let config_name = create_config(p, req, progress).await?;
            progress.report(&format!("creating endpoint {name}"));
            c.sm.create_endpoint()
                .endpoint_name(&name)
                .endpoint_config_name(&config_name)
                .set_tags(Some(Aws::sm_tags(&p.tags(req.config))))
                .send()
                .await
                .map_err(|e| sdk_error(&format!("create endpoint {name}"), e))?;
        }
        Some(l) => {
            let status = str_of(l.attributes.get("status"));
            if status != "InService" && req.options.wait {
                // Still deploying from an earlier apply: let it settle before changing it.
                wait(p, &name, timeout, progress).await?;
            }
            let live_config = str_of(l.attributes.get("config_name"));
            if live_config != str_of(want.get("config_name")) {
                let config_name = create_config(p, req, progress).await?;
                // Another model on the same variants keeps the counts the autoscaler set; other
                // variants or instance types cannot be updated while autoscaled (AWS refuses).
                let same_variants =
                    variant_shapes(l.attributes.get("variants")) == variant_shapes(want.get("variants"));
                if !same_variants {
                    deregister_all(p, &name, live_scaling.take().as_ref(), progress).await?;
                }
                let retain = scaled && same_variants;
                progress.report(&format!(
                    "switching endpoint {name} to {config_name}{}",
                    if retain { ", keeping the autoscaled instance counts" } else { "" }
                ));
                let mut update = c.sm.update_endpoint().endpoint_name(&name).endpoint_config_name(&config_name);
                if let Some(r) = &rollout {
                    let steps: Vec<String> = r.steps().iter().map(|s| format!("{s}%")).collect();
                    progress.report(&format!(
                        "rolling out {}: {}, {}s between steps, {}s bake{}",
                        r.strategy.name(),
                        steps.join(" → "),
                        r.interval.as_secs(),
                        r.bake.as_secs(),
                        if r.auto_rollback && !r.alarms.is_empty() {
                            format!("; rolled back by SageMaker if {} goes into ALARM", r.alarms.join(" or "))
                        } else {
                            String::new()
                        }
                    ));
                    timeout = timeout.max(r.expected() + DEPLOY_ALLOWANCE);
                    update = update.deployment_config(crate::rollout::deployment_config(r));
                }
                if retain {
                    update = update.retain_all_variant_properties(true).exclude_retained_variant_properties(
                        VariantProperty::builder().variant_property_type(VariantPropertyType::DesiredWeight).build(),
                    );
                }
                update.send().await.map_err(|e| sdk_error(&format!("update endpoint {name}"), e))?;
                old_config = Some(live_config);
            } else if l.attributes.get("weights") != want.get("weights")
                || l.attributes.get("capacity") != want.get("capacity")
            {
                let mut desired = Vec::new();
                for v in want.get("variants").and_then(Value::as_array).into_iter().flatten() {
                    let vname = str_of(v.get("name"));
                    // An autoscaled variant's count is left to the autoscaler.
                    let count = per_variant(want, "capacity", &vname).and_then(Value::as_i64).map(|n| n as i32);
                    desired.push(
                        DesiredWeightAndCapacity::builder()
                            .variant_name(&vname)
                            .desired_weight(
                                per_variant(want, "weights", &vname).and_then(Value::as_f64).unwrap_or(1.0) as f32
                            )
                            .set_desired_instance_count(count)
                            .build(),
                    );
                }
                progress
                    .report(&format!("updating weights and capacities of endpoint {name} in place (no new config)"));
                c.sm.update_endpoint_weights_and_capacities()
                    .endpoint_name(&name)
                    .set_desired_weights_and_capacities(Some(desired))
                    .send()
                    .await
                    .map_err(|e| sdk_error(&format!("update weights and capacities of endpoint {name}"), e))?;
            }
            if let Some(arn) = l.outputs.get("endpoint_arn").and_then(Value::as_str) {
                p.sync_sm_tags(arn, &p.tags(req.config)).await?;
            }
        }
    }

    if req.options.wait {
        progress.report(&format!("waiting up to {}s for endpoint {name} to be InService", timeout.as_secs()));
        if let Err(e) = wait(p, &name, timeout, progress).await {
            return Err(with_state(e).await);
        }
        if let Some(old) = &old_config {
            // InService again: on the new config, or rolled back to the old one.
            let now = read_named(p, &name, false).await?;
            let serving = now.as_ref().and_then(|l| l.attributes.get("config_name")).and_then(Value::as_str);
            if serving == Some(old.as_str()) {
                let reason = now
                    .as_ref()
                    .and_then(|l| l.outputs.get("failure_reason"))
                    .and_then(Value::as_str)
                    .unwrap_or("no FailureReason given")
                    .to_string();
                delete_config(p, &str_of(want.get("config_name")), progress).await?;
                return Err(with_state(ProviderError::new(
                    ErrorKind::RolledBack,
                    format!("SageMaker rolled the update of endpoint {name} back to {old}: {reason}"),
                ))
                .await);
            }
            progress.report(&format!("endpoint {name} serves {}", str_of(want.get("config_name"))));
            delete_config(p, old, progress).await?;
        }
    }
    // Scaling policies go on once the endpoint serves the variants they scale.
    if let Err(e) = scaling::apply(p, &name, want.get("autoscaling"), live_scaling.as_ref(), progress).await {
        return Err(with_state(e).await);
    }
    read_named(p, &name, scaled)
        .await?
        .ok_or_else(|| ProviderError::failed(format!("endpoint {name} is missing right after it was applied")))
}

pub(crate) async fn delete(
    p: &Aws,
    address: &Address,
    prior: &PriorState,
    progress: &dyn Progress,
) -> Result<(), ProviderError> {
    let c = p.clients().await?;
    let name = prior
        .attributes
        .get("endpoint_name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| endpoint_name(address));
    match c.sm.describe_endpoint().endpoint_name(&name).send().await {
        Ok(e) => p.require_owned("SageMaker endpoint", &name, e.endpoint_arn().unwrap_or_default()).await?,
        // Already gone: its configs are still cleaned up below.
        Err(e)
            if error_code(&e).as_deref() == Some("ValidationException")
                && error_message(&e).contains("Could not find") => {}
        Err(e) => return Err(sdk_error(&format!("describe endpoint {name}"), e)),
    }
    deregister_all(p, &name, prior.attributes.get("autoscaling"), progress).await?;
    match c.sm.delete_endpoint().endpoint_name(&name).send().await {
        Ok(_) => progress.report(&format!("deleted endpoint {name}")),
        Err(e)
            if error_code(&e).as_deref() == Some("ValidationException")
                && error_message(&e).contains("Could not find") => {}
        Err(e) => return Err(sdk_error(&format!("delete endpoint {name}"), e)),
    }
    let configs: BTreeMap<String, ()> = [prior.attributes.get("config_name"), prior.outputs.get("config_name")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|c| (c.to_string(), ()))
        .collect();
    for config in configs.keys() {
        delete_config(p, config, progress).await?;
    }
    Ok(())
}

/// SageMaker endpoints: an endpoint config per shape of variants, switched by `UpdateEndpoint`,
/// with autoscaling and rollouts.
pub(crate) struct Endpoints(pub(crate) std::sync::Arc<Aws>);

#[async_trait::async_trait]
impl mlops_provider_core::ResourceType for Endpoints {
    fn check(&self, config: &ResourceConfig) -> Vec<ConfigDiagnostic> {
        check(config)
    }

    async fn desired(&self, config: &ResourceConfig, deps: &Dependencies) -> Result<Desired, ProviderError> {
        desired(&self.0, config, deps).await
    }

    async fn read(
        &self,
        address: &Address,
        prior: Option<&PriorState>,
        desired: Option<&Desired>,
    ) -> Result<Option<LiveState>, ProviderError> {
        read(&self.0, address, prior, desired).await
    }

    async fn apply(&self, request: ApplyRequest<'_>, progress: &dyn Progress) -> Result<LiveState, ProviderError> {
        // What `desired` saw before this change is not what a later read must see.
        self.0.reads.take(&request.address.to_string());
        apply(&self.0, &request, progress).await
    }

    async fn delete(
        &self,
        address: &Address,
        prior: &PriorState,
        progress: &dyn Progress,
    ) -> Result<(), ProviderError> {
        delete(&self.0, address, prior, progress).await
    }

    /// The recorded endpoint config: its variants (models, instance types), weights, instance
    /// counts and autoscaling, switched to through the same update path (and `rollout:`) as a
    /// forward change.
    fn restored_attributes(&self) -> &'static [&'static str] {
        &["config_name", "variants", "weights", "capacity", "autoscaling"]
    }

    /// Every model a recorded variant served is produced by a model of this rollback, or is still
    /// in SageMaker.
    async fn restorable(
        &self,
        _config: &ResourceConfig,
        desired: &Desired,
        deps: &Dependencies,
    ) -> Result<(), ProviderError> {
        let produced: Vec<&str> =
            deps.values().filter_map(|d| d.attributes.get("model_name").and_then(Value::as_str)).collect();
        let c = self.0.clients().await?;
        let mut gone = Vec::new();
        for v in desired.attributes.get("variants").and_then(Value::as_array).into_iter().flatten() {
            let model = str_of(v.get("model_name"));
            if produced.contains(&model.as_str()) {
                continue;
            }
            match c.sm.describe_model().model_name(&model).send().await {
                Ok(_) => {}
                Err(e) if error_code(&e).as_deref() == Some("ValidationException") => {
                    gone.push(format!("{model} (variant {})", str_of(v.get("name"))))
                }
                Err(e) => return Err(sdk_error(&format!("describe model {model}"), e)),
            }
        }
        if gone.is_empty() {
            return Ok(());
        }
        Err(ProviderError::invalid(format!(
            "it served {}, which SageMaker no longer has and no model of this stack makes again",
            gone.join(", ")
        )))
    }

    async fn import(&self, config: &ResourceConfig, id: &str) -> Result<LiveState, ProviderError> {
        let scaled = mlops_provider_core::autoscaling::Autoscaling::of(config).is_some();
        let found = read_named(&self.0, id, scaled).await?;
        let c = self.0.clients().await?;
        let arn =
            c.sm.describe_endpoint()
                .endpoint_name(id)
                .send()
                .await
                .ok()
                .and_then(|e| e.endpoint_arn().map(str::to_string));
        self.0.adopt(config, id, "SageMaker endpoint", found, arn).await
    }
}
