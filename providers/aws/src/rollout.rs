//! Deployment guardrails: an endpoint's `rollout:` as SageMaker's `DeploymentConfig` on
//! `UpdateEndpoint` (a blue/green update whose traffic routing follows the steps, the bake as its
//! termination wait, the alarms as its auto-rollback configuration). SageMaker runs the steps and
//! rolls back by itself; mlops waits for it and records what the endpoint serves afterwards.

use aws_sdk_sagemaker::types::{
    Alarm, AutoRollbackConfig, BlueGreenUpdatePolicy, CapacitySize, CapacitySizeType, DeploymentConfig,
    TrafficRoutingConfig, TrafficRoutingConfigType,
};
use mlops_provider_core::rollout::{Rollout, RolloutSupport, Strategy};
use mlops_provider_core::{ProviderError, ResourceConfig, ValuePath};

use crate::{Aws, sdk_error};

pub(crate) const SUPPORT: RolloutSupport = RolloutSupport {
    what: "SageMaker deployment guardrails",
    strategies: &Strategy::ALL,
    // A canary is at most half the fleet; a linear step 10 to 50 percent of it.
    percent: (1, 50),
    linear: (10, 50),
    alarms: Some("a CloudWatch alarm"),
};

/// SageMaker's bounds on a blue/green update's whole run.
const MAX_EXECUTION: (u64, u64) = (600, 14400);

/// The DeploymentConfig of `UpdateEndpoint` for the endpoint's rollout.
pub(crate) fn deployment_config(r: &Rollout) -> DeploymentConfig {
    let size = CapacitySize::builder().r#type(CapacitySizeType::CapacityPercent).value(r.percent as i32).build();
    let routing = match r.strategy {
        Strategy::AllAtOnce => TrafficRoutingConfig::builder().r#type(TrafficRoutingConfigType::AllAtOnce),
        Strategy::Canary => TrafficRoutingConfig::builder().r#type(TrafficRoutingConfigType::Canary).canary_size(size),
        Strategy::Linear => {
            TrafficRoutingConfig::builder().r#type(TrafficRoutingConfigType::Linear).linear_step_size(size)
        }
    }
    .wait_interval_in_seconds(r.interval.as_secs() as i32)
    .build();
    // The steps and the bake, and as long again for the new fleet to come up.
    let max = (2 * r.expected().as_secs()).clamp(MAX_EXECUTION.0, MAX_EXECUTION.1);
    let policy = BlueGreenUpdatePolicy::builder()
        .traffic_routing_configuration(routing)
        .termination_wait_in_seconds(r.bake.as_secs() as i32)
        .maximum_execution_timeout_in_seconds(max as i32)
        .build();
    let mut config = DeploymentConfig::builder().blue_green_update_policy(policy);
    if r.auto_rollback && !r.alarms.is_empty() {
        let alarms = r.alarms.iter().map(|a| Alarm::builder().alarm_name(a).build()).collect();
        config = config.auto_rollback_configuration(AutoRollbackConfig::builder().set_alarms(Some(alarms)).build());
    }
    config.build()
}

/// Plan-time: every alarm the rollout names exists in CloudWatch (SageMaker would otherwise
/// refuse the update only once apply has started).
pub(crate) async fn check_alarms(p: &Aws, config: &ResourceConfig) -> Result<(), ProviderError> {
    let Some(r) = Rollout::of(config).filter(|r| !r.alarms.is_empty()) else { return Ok(()) };
    let c = p.clients().await?;
    let found =
        c.cw.describe_alarms()
            .set_alarm_names(Some(r.alarms.clone()))
            .send()
            .await
            .map_err(|e| sdk_error("describe CloudWatch alarms", e))?;
    let names: Vec<&str> = found
        .metric_alarms()
        .iter()
        .filter_map(|a| a.alarm_name())
        .chain(found.composite_alarms().iter().filter_map(|a| a.alarm_name()))
        .collect();
    match r.alarms.iter().enumerate().find(|(_, a)| !names.contains(&a.as_str())) {
        None => Ok(()),
        Some((i, missing)) => Err(ProviderError::invalid(format!(
            "CloudWatch alarm `{missing}` does not exist in {}: the rollout could not be watched",
            c.region
        ))
        .at(ValuePath::keys(&["rollout", "alarms", &i.to_string()]))),
    }
}
