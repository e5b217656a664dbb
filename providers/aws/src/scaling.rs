//! Autoscaling of a SageMaker endpoint's variants through Application Auto Scaling: per variant,
//! a scalable target (`sagemaker:variant:DesiredInstanceCount` between `min` and `max`) and one
//! target-tracking policy named `mlops-<endpoint>-<variant>`.
//!
//! The endpoint's `autoscaling` attribute holds, per variant, what the target and the policy say.
//! An autoscaled endpoint's instance counts belong to the autoscaler: they leave the compared
//! attributes (recorded as the output `instance_counts`), so a scale-out is never drift and an
//! apply never resets it (a model change keeps them with `RetainAllVariantProperties`).

use aws_sdk_applicationautoscaling::types::{
    MetricType, PolicyType, PredefinedMetricSpecification, ScalableDimension, ServiceNamespace,
    TargetTrackingScalingPolicyConfiguration,
};
use mlops_provider_core::autoscaling::{Autoscaling, AutoscalingSupport, Metric};
use mlops_provider_core::{Progress, ProviderError, ResourceConfig, Value};
use serde_json::json;

use crate::{Aws, sdk_error};

pub(crate) const SUPPORT: AutoscalingSupport = AutoscalingSupport {
    what: "SageMaker (Application Auto Scaling)",
    metrics: &[Metric::InvocationsPerInstance, Metric::Concurrency],
    cooldowns: true,
    instead: "a SageMaker variant scales on its requests, not on CPU",
};

/// Application Auto Scaling's default cooldown for SageMaker variants, written explicitly so
/// what is read back is what was asked.
const DEFAULT_COOLDOWN_SECS: u64 = 300;

fn resource_id(endpoint: &str, variant: &str) -> String {
    format!("endpoint/{endpoint}/variant/{variant}")
}

fn policy_name(endpoint: &str, variant: &str) -> String {
    format!("mlops-{endpoint}-{variant}")
}

fn metric_type(m: Metric) -> MetricType {
    match m {
        Metric::Concurrency => MetricType::SageMakerVariantConcurrentRequestsPerModelHighResolution,
        _ => MetricType::SageMakerVariantInvocationsPerInstance,
    }
}

/// The desired `autoscaling` attribute: the same target and policy for each variant; an empty
/// map for an endpoint without `autoscaling`.
pub(crate) fn desired(config: &ResourceConfig, variants: &[String]) -> Value {
    let Some(a) = Autoscaling::of(config) else { return json!({}) };
    let secs = |d: Option<std::time::Duration>| d.map(|d| d.as_secs()).unwrap_or(DEFAULT_COOLDOWN_SECS);
    let one = json!({
        "min": a.min,
        "max": a.max,
        "metric": metric_type(a.metric).as_str(),
        "target": a.target,
        "scale_in_cooldown": secs(a.scale_in_cooldown),
        "scale_out_cooldown": secs(a.scale_out_cooldown),
    });
    Value::Object(variants.iter().map(|v| (v.clone(), one.clone())).collect())
}

/// Whether an `autoscaling` attribute scales anything.
pub(crate) fn is_on(attribute: Option<&Value>) -> bool {
    attribute.and_then(Value::as_object).is_some_and(|m| !m.is_empty())
}

/// What Application Auto Scaling holds for the endpoint's variants (those with a scalable target).
pub(crate) async fn read(p: &Aws, endpoint: &str, variants: &[String]) -> Result<Value, ProviderError> {
    let c = p.clients().await?;
    let ids: Vec<String> = variants.iter().map(|v| resource_id(endpoint, v)).collect();
    let targets = c
        .aas
        .describe_scalable_targets()
        .service_namespace(ServiceNamespace::Sagemaker)
        .scalable_dimension(ScalableDimension::SageMakerVariantDesiredInstanceCount)
        .set_resource_ids(Some(ids))
        .send()
        .await
        .map_err(|e| sdk_error(&format!("describe the scalable targets of endpoint {endpoint}"), e))?;
    let mut out = serde_json::Map::new();
    for t in targets.scalable_targets() {
        let Some(variant) = t.resource_id().rsplit('/').next().filter(|v| variants.iter().any(|x| x == v)) else {
            continue;
        };
        let policies = c
            .aas
            .describe_scaling_policies()
            .service_namespace(ServiceNamespace::Sagemaker)
            .resource_id(t.resource_id())
            .scalable_dimension(ScalableDimension::SageMakerVariantDesiredInstanceCount)
            .policy_names(policy_name(endpoint, variant))
            .send()
            .await
            .map_err(|e| sdk_error(&format!("describe the scaling policy of {}", t.resource_id()), e))?;
        let config = policies.scaling_policies().first().and_then(|p| p.target_tracking_scaling_policy_configuration());
        out.insert(
            variant.to_string(),
            json!({
                "min": t.min_capacity(),
                "max": t.max_capacity(),
                "metric": config.and_then(|c| c.predefined_metric_specification()).map(|m| m.predefined_metric_type().as_str()),
                "target": config.map(|c| c.target_value()),
                "scale_in_cooldown": config.and_then(|c| c.scale_in_cooldown()),
                "scale_out_cooldown": config.and_then(|c| c.scale_out_cooldown()),
            }),
        );
    }
    Ok(Value::Object(out))
}

/// Brings Application Auto Scaling to `want` from `live`: registers (or updates) the target and
/// puts the policy of each variant that differs, deregisters the variants `want` no longer scales.
pub(crate) async fn apply(
    p: &Aws,
    endpoint: &str,
    want: Option<&Value>,
    live: Option<&Value>,
    progress: &dyn Progress,
) -> Result<(), ProviderError> {
    let empty = serde_json::Map::new();
    let want = want.and_then(Value::as_object).unwrap_or(&empty);
    let live = live.and_then(Value::as_object).unwrap_or(&empty);
    for variant in live.keys().filter(|v| !want.contains_key(*v)) {
        deregister(p, endpoint, variant, progress).await?;
    }
    let c = p.clients().await?;
    for (variant, w) in want.iter().filter(|(v, w)| live.get(*v) != Some(*w)) {
        let id = resource_id(endpoint, variant);
        let n = |k: &str| w.get(k).and_then(Value::as_i64).unwrap_or_default() as i32;
        progress.report(&format!("autoscaling {id} between {} and {} instances", n("min"), n("max")));
        c.aas
            .register_scalable_target()
            .service_namespace(ServiceNamespace::Sagemaker)
            .resource_id(&id)
            .scalable_dimension(ScalableDimension::SageMakerVariantDesiredInstanceCount)
            .min_capacity(n("min"))
            .max_capacity(n("max"))
            .send()
            .await
            .map_err(|e| sdk_error(&format!("register scalable target {id}"), e))?;
        let metric = w.get("metric").and_then(Value::as_str).unwrap_or_default();
        let config = TargetTrackingScalingPolicyConfiguration::builder()
            .target_value(w.get("target").and_then(Value::as_f64).unwrap_or_default())
            .predefined_metric_specification(
                PredefinedMetricSpecification::builder()
                    .predefined_metric_type(MetricType::from(metric))
                    .build()
                    .map_err(|e| ProviderError::invalid(e.to_string()))?,
            )
            .scale_in_cooldown(n("scale_in_cooldown"))
            .scale_out_cooldown(n("scale_out_cooldown"))
            .build()
            .map_err(|e| ProviderError::invalid(e.to_string()))?;
        c.aas
            .put_scaling_policy()
            .policy_name(policy_name(endpoint, variant))
            .service_namespace(ServiceNamespace::Sagemaker)
            .resource_id(&id)
            .scalable_dimension(ScalableDimension::SageMakerVariantDesiredInstanceCount)
            .policy_type(PolicyType::TargetTrackingScaling)
            .target_tracking_scaling_policy_configuration(config)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("put scaling policy of {id}"), e))?;
    }
    Ok(())
}

/// Deregisters one variant's scalable target (its policies go with it); gone already is fine.
pub(crate) async fn deregister(
    p: &Aws,
    endpoint: &str,
    variant: &str,
    progress: &dyn Progress,
) -> Result<(), ProviderError> {
    let c = p.clients().await?;
    let id = resource_id(endpoint, variant);
    match c
        .aas
        .deregister_scalable_target()
        .service_namespace(ServiceNamespace::Sagemaker)
        .resource_id(&id)
        .scalable_dimension(ScalableDimension::SageMakerVariantDesiredInstanceCount)
        .send()
        .await
    {
        Ok(_) => {
            progress.report(&format!("stopped autoscaling {id}"));
            Ok(())
        }
        Err(e) if crate::error_code(&e).as_deref() == Some("ObjectNotFoundException") => Ok(()),
        Err(e) => Err(sdk_error(&format!("deregister scalable target {id}"), e)),
    }
}
