"""moto server with the SageMaker parts mlops needs and moto 5.2.5 lacks.

Run with the venv's python: `python scripts/moto_server.py -H 127.0.0.1 -p PORT`.

Added, following the SageMaker API reference (action names, parameters, error codes, status names):
- UpdateEndpoint (with RetainAllVariantProperties and ExcludeRetainedVariantProperties: a variant
  of the same name keeps its instance count and weight, as an autoscaled endpoint needs);
  DeleteModelPackage; DeleteModelPackageGroup; ListFeatureGroups; DeleteFeatureGroup;
  UpdateFeatureGroup (FeatureAdditions). UpdateEndpointWeightsAndCapacities keeps the weight or
  count a variant leaves out (moto clears it).
- Deployment guardrails: UpdateEndpoint's DeploymentConfig (blue/green, ALL_AT_ONCE, CANARY or
  LINEAR steps with their wait, the termination wait as the bake) keeps the endpoint `Updating` for
  the steps and the bake; an alarm of its AutoRollbackConfiguration in ALARM state in moto's
  CloudWatch (`set_alarm_state`) before the bake ends rolls it back: InService on the old config
  with a FailureReason naming the alarm. The DeploymentConfig is validated as SageMaker does: a
  CANARY needs its CanarySize (at most half the fleet), a LINEAR step is 10-50% of the fleet (an
  INSTANCE_COUNT counted against the new config's instances), and every alarm must exist.
- An endpoint lifecycle: CreateEndpoint leaves the endpoint `Creating`, UpdateEndpoint and
  UpdateEndpointWeightsAndCapacities leave it `Updating`; after MOTO_SAGEMAKER_ENDPOINT_DELAY seconds
  (default 2) it is `InService`, or, when a production variant asks for an instance type listed in
  MOTO_SAGEMAKER_UNAVAILABLE_INSTANCE_TYPES (default ml.p3.16xlarge), `Failed` with AWS's capacity
  FailureReason (a failed update rolls back: InService on the old config, FailureReason set).
  Updating an endpoint that is not InService is a ValidationException, as on AWS.
- Feature groups: OnlineStoreConfig kept and described, OfflineStoreConfig optional, and
  DescribeFeatureGroup of a missing group is ResourceNotFound (moto answers HTTP 500). A group is
  `Creating` for MOTO_SAGEMAKER_FEATURE_GROUP_DELAY seconds (default 1) before `Created`, and
  `Deleting` as long before it is gone; creating a group whose name is still taken (Deleting) is
  ResourceInUse, updating one that is not Created a ResourceInUse too, as on AWS.
- An endpoint whose model's ModelDataUrl names no S3 object goes to `Failed` with SageMaker's
  FailureReason (moto brings it InService).
"""

import os
import sys
import time

from moto.core.responses import ActionResult, EmptyResult
from moto.sagemaker import models as sm
from moto.sagemaker.exceptions import ConflictException, ResourceInUseException, ResourceNotFound, ValidationError
from moto.sagemaker.responses import SageMakerResponse
from moto.sagemaker.utils import arn_formatter

DELAY = float(os.environ.get("MOTO_SAGEMAKER_ENDPOINT_DELAY", "2"))
FG_DELAY = float(os.environ.get("MOTO_SAGEMAKER_FEATURE_GROUP_DELAY", "1"))
UNAVAILABLE = {
    t.strip()
    for t in os.environ.get("MOTO_SAGEMAKER_UNAVAILABLE_INSTANCE_TYPES", "ml.p3.16xlarge").split(",")
    if t.strip()
}
CAPACITY_REASON = (
    "Unable to provision requested ML compute capacity due to InsufficientInstanceCapacity error. "
    "Please retry using a different ML instance type or after some time."
)


def _unavailable(backend, config_name):
    config = backend.endpoint_configs.get(config_name)
    if config is None:
        return None
    for v in config.production_variants:
        if v.get("InstanceType") in UNAVAILABLE:
            return v.get("InstanceType")
    return None


def _missing_model_data(backend, config_name):
    """The first ModelDataUrl of the config's models that names no S3 object, if any."""
    from moto.s3.models import s3_backends

    config = backend.endpoint_configs.get(config_name)
    if config is None:
        return None
    s3 = s3_backends[backend.account_id]["aws"]
    for v in config.production_variants:
        model = backend._models.get(v.get("ModelName"))
        if model is None:
            continue
        containers = [model.primary_container] if model.primary_container else list(model.containers or [])
        for c in containers:
            url = (c or {}).get("ModelDataUrl")
            if not url or not url.startswith("s3://"):
                continue
            bucket, _, key = url[len("s3://"):].partition("/")
            try:
                found = s3.get_object(bucket, key)
            except Exception:
                found = None
            if found is None:
                return url
    return None


def _model_data_reason(url):
    return (
        f'Failed to download model data for container "container_1" from URL: "{url}". Please ensure that '
        "there is an object located at the URL and that the role passed to CreateModel has permissions to "
        "download the object."
    )


# --- endpoint lifecycle -------------------------------------------------------------------------

_original_response_object = sm.FakeEndpoint.response_object.fget


def _firing(backend, names):
    """The alarms among `names` in ALARM state in moto's CloudWatch."""
    from moto.cloudwatch.models import cloudwatch_backends

    alarms = cloudwatch_backends[backend.account_id][backend.region_name].alarms
    return [n for n in names if n in alarms and alarms[n].state_value == "ALARM"]


def _step_percent(routing, key, bounds, fleet):
    """A CanarySize or LinearStepSize as a share of the fleet (percent), refused as SageMaker
    refuses it: missing, of an unknown type, or outside `bounds` of the variant's instances
    (an INSTANCE_COUNT is counted against the new config's fleet)."""
    size = routing.get(key)
    kind = routing.get("Type")
    if not size:
        raise ValidationError(message=f"TrafficRoutingConfiguration.{key} is required for {kind} traffic routing.")
    unit, value = size.get("Type"), int(size.get("Value", 0))
    if unit == "CAPACITY_PERCENT":
        percent = value
    elif unit == "INSTANCE_COUNT":
        percent = 100 * value / max(fleet, 1)
    else:
        raise ValidationError(message=f"{key}.Type must be INSTANCE_COUNT or CAPACITY_PERCENT, not {unit}.")
    low, high = bounds
    if value < 1 or not low <= percent <= high:
        raise ValidationError(
            message=f"{key} must be {low}-{high}% of the variant's total instance count ({fleet}), not {value} {unit}."
        )
    return percent


def _rollout_of(config, backend=None, fleet=1):
    """A DeploymentConfig's blue/green steps: their number and waits, the bake, the alarms.
    Validated as SageMaker validates it (step sizes, alarms that exist) when `backend` is given."""
    if not config:
        return None
    policy = config.get("BlueGreenUpdatePolicy") or {}
    routing = policy.get("TrafficRoutingConfiguration") or {}
    kind = routing.get("Type", "ALL_AT_ONCE")
    wait = int(routing.get("WaitIntervalInSeconds", 0))
    if kind == "CANARY":
        _step_percent(routing, "CanarySize", (0, 50), fleet)
        steps = 2
    elif kind == "LINEAR":
        percent = _step_percent(routing, "LinearStepSize", (10, 50), fleet)
        steps = -(-100 // max(int(percent), 1))
    elif kind == "ALL_AT_ONCE":
        steps = 1
    else:
        raise ValidationError(message=f"TrafficRoutingConfiguration.Type must be ALL_AT_ONCE, CANARY or LINEAR, not {kind}.")
    alarms = [a.get("AlarmName") for a in (config.get("AutoRollbackConfiguration") or {}).get("Alarms", [])]
    if backend is not None and alarms:
        from moto.cloudwatch.models import cloudwatch_backends

        known = cloudwatch_backends[backend.account_id][backend.region_name].alarms
        for name in alarms:
            if name not in known:
                raise ValidationError(message=f"The alarm {name} in AutoRollbackConfiguration does not exist.")
    return {
        "duration": (steps - 1) * wait + int(policy.get("TerminationWaitInSeconds", 0)),
        "alarms": alarms,
        "config": config,
    }


def _settle(endpoint):
    """Moves an endpoint along its lifecycle once its delay has passed."""
    pending = getattr(endpoint, "_mlops_pending", None)
    if pending is None or time.monotonic() < pending["at"]:
        return
    endpoint._mlops_pending = None
    backend = pending["backend"]
    failed_type = _unavailable(backend, pending["config"])
    missing = _missing_model_data(backend, pending["config"]) if pending["kind"] != "weights" else None
    if pending["kind"] == "create":
        if failed_type:
            endpoint.endpoint_status = "Failed"
            endpoint.failure_reason = CAPACITY_REASON
        elif missing:
            endpoint.endpoint_status = "Failed"
            endpoint.failure_reason = _model_data_reason(missing)
        else:
            endpoint.endpoint_status = "InService"
    elif pending["kind"] == "update":
        rollout = pending.get("rollout")
        if rollout and not failed_type:
            # Deployment guardrails: the new fleet serves step by step while the alarms are
            # watched; one in ALARM before the bake ends rolls the endpoint back.
            firing = _firing(backend, rollout["alarms"])
            if firing:
                endpoint.endpoint_status = "InService"
                endpoint.failure_reason = (
                    f"Rolled back the deployment because alarm(s) {', '.join(firing)} went into ALARM state."
                )
                endpoint.last_deployment_config = rollout["config"]
                endpoint.last_modified_time = sm.utcnow()
                return
            if time.monotonic() < pending["at"] + rollout["duration"]:
                endpoint._mlops_pending = pending
                return
        if failed_type or missing:
            # The update is rolled back: the endpoint keeps serving its old config.
            endpoint.endpoint_status = "InService"
            endpoint.failure_reason = CAPACITY_REASON if failed_type else _model_data_reason(missing)
        else:
            config = backend.endpoint_configs[pending["config"]]
            old = {v["VariantName"]: v for v in endpoint.production_variants}
            endpoint.endpoint_config_name = pending["config"]
            endpoint.production_variants = endpoint._process_production_variants(config.production_variants)
            # RetainAllVariantProperties: what a variant of the same name had (e.g. the instance
            # count an autoscaler set) is kept, but for the properties the caller excluded.
            if pending.get("retain"):
                keep = {
                    "DesiredInstanceCount": ("CurrentInstanceCount", "DesiredInstanceCount"),
                    "DesiredWeight": ("CurrentWeight", "DesiredWeight"),
                }
                for v in endpoint.production_variants:
                    before = old.get(v["VariantName"])
                    for prop, keys in keep.items():
                        if before is None or prop in pending.get("exclude", ()):
                            continue
                        for k in keys:
                            if k in before:
                                v[k] = before[k]
            endpoint.endpoint_status = "InService"
            endpoint.failure_reason = None
    else:  # weights and capacities
        endpoint.endpoint_status = "InService"
    endpoint.last_modified_time = sm.utcnow()


def _response_object(self):
    _settle(self)
    return _original_response_object(self)


sm.FakeEndpoint.response_object = property(_response_object)

_original_create_endpoint = sm.SageMakerModelBackend.create_endpoint


def _create_endpoint(self, endpoint_name, endpoint_config_name, tags):
    if endpoint_name in self.endpoints:
        arn = sm.FakeEndpoint.arn_formatter(endpoint_name, self.account_id, self.region_name)
        raise ValidationError(message=f'Cannot create already existing endpoint "{arn}".')
    endpoint = _original_create_endpoint(self, endpoint_name, endpoint_config_name, tags)
    endpoint.endpoint_status = "Creating"
    endpoint._mlops_pending = {"kind": "create", "at": time.monotonic() + DELAY, "config": endpoint_config_name, "backend": self}
    return endpoint


sm.SageMakerModelBackend.create_endpoint = _create_endpoint


def _endpoint_in_service(backend, endpoint_name):
    endpoint = backend.endpoints.get(endpoint_name)
    arn = sm.FakeEndpoint.arn_formatter(endpoint_name, backend.account_id, backend.region_name)
    if endpoint is None:
        raise ValidationError(message=f"Could not find endpoint \"{arn}\".")
    _settle(endpoint)
    if endpoint.endpoint_status != "InService":
        raise ValidationError(message=f"Cannot update in-progress endpoint \"{arn}\".")
    return endpoint


def update_endpoint(self, endpoint_name, endpoint_config_name, retain=False, exclude=(), deployment_config=None):
    endpoint = _endpoint_in_service(self, endpoint_name)
    if endpoint_config_name not in self.endpoint_configs:
        arn = sm.FakeEndpointConfig.arn_formatter(endpoint_config_name, self.account_id, self.region_name)
        raise ValidationError(message=f"Could not find endpoint configuration \"{arn}\".")
    fleet = sum(int(v.get("InitialInstanceCount") or 0) for v in self.endpoint_configs[endpoint_config_name].production_variants)
    rollout = _rollout_of(deployment_config, self, fleet)
    endpoint.endpoint_status = "Updating"
    endpoint.failure_reason = None
    endpoint._mlops_pending = {
        "kind": "update",
        "at": time.monotonic() + DELAY,
        "config": endpoint_config_name,
        "backend": self,
        "retain": retain,
        "exclude": tuple(exclude),
        "rollout": rollout,
    }
    return endpoint.arn


sm.SageMakerModelBackend.update_endpoint = update_endpoint

_original_weights = sm.SageMakerModelBackend.update_endpoint_weights_and_capacities


def _update_weights(self, endpoint_name, desired_weights_and_capacities):
    endpoint = _endpoint_in_service(self, endpoint_name)
    # A weight or a count left out keeps its current value, as on AWS (moto would clear it).
    current = {v["VariantName"]: v for v in endpoint.production_variants}
    for d in desired_weights_and_capacities:
        now = current.get(d.get("VariantName"), {})
        d.setdefault("DesiredWeight", now.get("CurrentWeight"))
        d.setdefault("DesiredInstanceCount", now.get("CurrentInstanceCount"))
    arn = _original_weights(self, endpoint_name, desired_weights_and_capacities)
    endpoint.endpoint_status = "Updating"
    endpoint._mlops_pending = {"kind": "weights", "at": time.monotonic() + DELAY, "config": endpoint.endpoint_config_name, "backend": self}
    return arn


sm.SageMakerModelBackend.update_endpoint_weights_and_capacities = _update_weights


def _r_update_endpoint(self):
    excluded = self._get_param("ExcludeRetainedVariantProperties") or []
    arn = self.sagemaker_backend.update_endpoint(
        endpoint_name=self._get_param("EndpointName"),
        endpoint_config_name=self._get_param("EndpointConfigName"),
        retain=bool(self._get_param("RetainAllVariantProperties")),
        exclude=[e.get("VariantPropertyType") for e in excluded],
        deployment_config=self._get_param("DeploymentConfig"),
    )
    return ActionResult({"EndpointArn": arn})


SageMakerResponse.update_endpoint = _r_update_endpoint

# --- model registry -----------------------------------------------------------------------------


def delete_model_package(self, model_package_name):
    arn = self.model_package_name_mapping.get(model_package_name, model_package_name)
    package = self.model_packages.pop(arn, None)
    if package is None:
        raise ValidationError(message=f"Model package {model_package_name} not found")
    for key in [k for k, v in self.model_package_name_mapping.items() if v == arn]:
        del self.model_package_name_mapping[key]


def delete_model_package_group(self, model_package_group_name):
    if model_package_group_name not in self.model_package_groups:
        raise ValidationError(message=f"ModelPackageGroup {model_package_group_name} does not exist.")
    if any(p.model_package_group_name == model_package_group_name for p in self.model_packages.values()):
        raise ConflictException(
            f"Model Package Group {model_package_group_name} still has model packages: delete them first."
        )
    del self.model_package_groups[model_package_group_name]


sm.SageMakerModelBackend.delete_model_package = delete_model_package
sm.SageMakerModelBackend.delete_model_package_group = delete_model_package_group


def _r_delete_model_package(self):
    self.sagemaker_backend.delete_model_package(self._get_param("ModelPackageName"))
    return EmptyResult()


def _r_delete_model_package_group(self):
    self.sagemaker_backend.delete_model_package_group(self._get_param("ModelPackageGroupName"))
    return EmptyResult()


SageMakerResponse.delete_model_package = _r_delete_model_package
SageMakerResponse.delete_model_package_group = _r_delete_model_package_group

# --- feature groups -----------------------------------------------------------------------------


def _feature_group_arn(backend, name):
    return arn_formatter(region_name=backend.region_name, account_id=backend.account_id, _type="feature-group", _id=name.lower())


def _fg_status(backend, group):
    """A feature group's status along its lifecycle; a group whose deletion finished is removed."""
    status, until = getattr(group, "_mlops_status", ("Created", 0))
    if time.monotonic() < until:
        return status
    if status == "Deleting":
        backend.feature_groups.pop(group.arn, None)
        return None
    group._mlops_status = ("Created", 0)
    return "Created"


def _find_feature_group(backend, name):
    group = backend.feature_groups.get(_feature_group_arn(backend, name))
    if group is None or _fg_status(backend, group) is None:
        raise ResourceNotFound(message=f"Resource Not Found: FeatureGroup with name {name} not found")
    return group


def _resource_in_use(message):
    return ResourceInUseException(message=message)


def _r_create_feature_group(self):
    backend = self.sagemaker_backend
    name = self._get_param("FeatureGroupName")
    taken = backend.feature_groups.get(_feature_group_arn(backend, name))
    if taken is not None and _fg_status(backend, taken) is not None:
        raise _resource_in_use(f"Resource Already Exists: FeatureGroup with name {name} already exists. Choose a different name.")
    offline = self._get_param("OfflineStoreConfig")
    arn = backend.create_feature_group(
        feature_group_name=self._get_param("FeatureGroupName"),
        record_identifier_feature_name=self._get_param("RecordIdentifierFeatureName"),
        event_time_feature_name=self._get_param("EventTimeFeatureName"),
        feature_definitions=self._get_param("FeatureDefinitions"),
        offline_store_config=offline or {"S3StorageConfig": {"S3Uri": ""}},
        role_arn=self._get_param("RoleArn"),
        tags=self._get_param("Tags"),
    )
    group = backend.feature_groups[arn]
    group._mlops_online = self._get_param("OnlineStoreConfig")
    group._mlops_has_offline = offline is not None
    group._mlops_status = ("Creating", time.monotonic() + FG_DELAY)
    return ActionResult({"FeatureGroupArn": arn})


def _r_describe_feature_group(self):
    group = _find_feature_group(self.sagemaker_backend, self._get_param("FeatureGroupName"))
    out = group.describe()
    if getattr(group, "_mlops_online", None):
        out["OnlineStoreConfig"] = group._mlops_online
    if not getattr(group, "_mlops_has_offline", True):
        out.pop("OfflineStoreConfig", None)
    out["Tags"] = group.tags or []
    out["FeatureGroupStatus"] = _fg_status(self.sagemaker_backend, group) or "Deleting"
    return ActionResult(out)


def _r_list_feature_groups(self):
    backend = self.sagemaker_backend
    name_contains = self._get_param("NameContains")
    summaries = []
    for g in list(backend.feature_groups.values()):
        if name_contains and name_contains not in g.feature_group_name:
            continue
        status = _fg_status(backend, g)
        if status is None:
            continue
        summaries.append(
            {
                "FeatureGroupName": g.feature_group_name,
                "FeatureGroupArn": g.arn,
                "CreationTime": g.creation_time,
                "FeatureGroupStatus": status,
            }
        )
    return ActionResult({"FeatureGroupSummaries": summaries})


def _r_delete_feature_group(self):
    backend = self.sagemaker_backend
    group = _find_feature_group(backend, self._get_param("FeatureGroupName"))
    if _fg_status(backend, group) == "Deleting":
        raise _resource_in_use(f"FeatureGroup {group.feature_group_name} is already being deleted.")
    group._mlops_status = ("Deleting", time.monotonic() + FG_DELAY)
    return EmptyResult()


def _r_update_feature_group(self):
    group = _find_feature_group(self.sagemaker_backend, self._get_param("FeatureGroupName"))
    status = _fg_status(self.sagemaker_backend, group)
    if status != "Created":
        raise _resource_in_use(f"FeatureGroup {group.feature_group_name} is {status}: it cannot be updated now.")
    additions = self._get_param("FeatureAdditions") or []
    existing = {d["FeatureName"] for d in group.feature_definitions}
    for a in additions:
        if a["FeatureName"] in existing:
            raise ValidationError(message=f"Feature {a['FeatureName']} already exists in FeatureGroup {group.feature_group_name}.")
    group.feature_definitions = list(group.feature_definitions) + list(additions)
    return ActionResult({"FeatureGroupArn": group.arn})


# ListTags/AddTags/DeleteTags on feature-group ARNs, which SageMaker serves and moto 5.2.5 answers
# with a 500: mlops reads a feature group's ownership tag before it deletes the group.
_get_resource_from_arn = sm.SageMakerModelBackend._get_resource_from_arn


def _resource_from_arn(self, arn):
    if ":feature-group/" in arn:
        group = self.feature_groups.get(arn)
        if group is None:
            raise ValidationError(message=f"Could not find feature-group {arn}")
        if getattr(group, "tags", None) is None:
            group.tags = []
        return group
    return _get_resource_from_arn(self, arn)


sm.SageMakerModelBackend._get_resource_from_arn = _resource_from_arn

SageMakerResponse.create_feature_group = _r_create_feature_group
SageMakerResponse.describe_feature_group = _r_describe_feature_group
SageMakerResponse.list_feature_groups = _r_list_feature_groups
SageMakerResponse.delete_feature_group = _r_delete_feature_group
SageMakerResponse.update_feature_group = _r_update_feature_group


if __name__ == "__main__":
    from moto.server import main

    main(sys.argv[1:])
