//! The objects an endpoint is made of, as mlops applies them (an InferenceService, a Deployment
//! and its Service, or a Seldon Model), and what they are compared by.

use super::*;
use mlops_provider_core::autoscaling::Autoscaling;

/// `value` cut down to the shape of `template`: objects keep the keys the template has, lists
/// are cut element by element, scalars are kept as they are.
pub fn prune(value: &Value, template: &Value) -> Value {
    match (value, template) {
        (Value::Object(v), Value::Object(t)) => {
            Value::Object(t.keys().filter_map(|k| v.get(k).map(|x| (k.clone(), prune(x, &t[k])))).collect())
        }
        (Value::Array(v), Value::Array(t)) => Value::Array(
            v.iter().enumerate().map(|(i, x)| t.get(i).map(|ti| prune(x, ti)).unwrap_or_else(|| x.clone())).collect(),
        ),
        _ => value.clone(),
    }
}

pub(crate) fn str_map(v: Option<&Value>) -> serde_json::Map<String, Value> {
    v.and_then(Value::as_object).cloned().unwrap_or_default()
}

impl Cluster {
    /// The objects an endpoint is made of, as mlops would apply them.
    pub(crate) fn manifests(
        &self,
        config: &ResourceConfig,
        deps: &Dependencies,
        namespace: &str,
    ) -> Result<Vec<(Part, Value)>, ProviderError> {
        let name = &config.address.name;
        let body = &config.body;
        let runtime = config.str("runtime").unwrap_or("kserve");
        let model_addr: Option<Address> = config.str("model").and_then(|m| m.parse().ok());
        let model = model_addr.as_ref().and_then(|a| deps.get(a)).map(|d| &d.attributes).ok_or_else(|| {
            ProviderError::invalid("the endpoint's model is not part of this plan").at(ValuePath::key("model"))
        })?;
        let uri = model.get("artifact").and_then(Value::as_str).filter(|u| u.contains("://")).ok_or_else(|| {
            ProviderError::invalid(format!(
                "{} has no artifact URI the cluster can pull (a local file cannot be served on Kubernetes)",
                model_addr.as_ref().map(|a| a.to_string()).unwrap_or_default()
            ))
            .at(ValuePath::key("model"))
        })?;
        // What rolls the pods when the bytes change under the same URI: the model's digest, else
        // its version (a registry version, a generation), else the URI itself (a model whose
        // provider knows no digest: a registry source).
        let digest = ["artifact_digest", "artifact_version", "generation"]
            .iter()
            .filter_map(|k| model.get(*k).filter(|v| !v.is_null()))
            .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
            .next()
            .map_or_else(|| json!(uri), |d| json!(d));

        let mut labels = str_map(body.get("labels"));
        labels.insert(MANAGED_BY.into(), json!("mlops"));
        labels.insert(PROJECT_LABEL.into(), json!(self.project));
        let metadata = |_: Part| {
            json!({
                "name": name,
                "namespace": namespace,
                "labels": labels,
                "annotations": { ADDRESS_ANNOTATION: config.address.to_string() },
            })
        };
        let mut env = str_map(model.get("environment"));
        env.extend(str_map(body.get("env")));
        let mut env: Vec<Value> = env.into_iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
        let mut resources = serde_json::Map::new();
        if let Some(r) = body.get("resources") {
            let mut q = serde_json::Map::new();
            for (k, key) in [("cpu", "cpu"), ("memory", "memory"), ("gpu", "nvidia.com/gpu")] {
                if let Some(v) = r.get(k) {
                    q.insert(key.into(), json!(v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())));
                }
            }
            if !q.is_empty() {
                resources.insert("requests".into(), Value::Object(q.clone()));
                resources.insert("limits".into(), Value::Object(q));
            }
        }
        let replicas = body.get("instance_count").and_then(Value::as_u64).unwrap_or(1);
        let autoscaling = Autoscaling::of(config);

        if runtime == "kserve" {
            let model_name = model_addr.as_ref().map(|a| a.to_string()).unwrap_or_default();
            let format = crate::runtimes::model_format(config, model, &model_name)?;
            let mut model_spec = json!({ "modelFormat": format, "storageUri": uri });
            if let Some(r) = config.str("serving_runtime") {
                model_spec["runtime"] = json!(r);
            }
            if let Some(p) = config.str("protocol_version") {
                model_spec["protocolVersion"] = json!(p);
            }
            if !resources.is_empty() {
                model_spec["resources"] = Value::Object(resources);
            }
            if !env.is_empty() {
                model_spec["env"] = Value::Array(env);
            }
            let mut predictor = json!({
                "minReplicas": replicas,
                "maxReplicas": body.get("max_replicas").and_then(Value::as_u64).unwrap_or(replicas),
                "annotations": { DIGEST_ANNOTATION: digest },
                "model": model_spec,
            });
            if let Some(a) = &autoscaling {
                predictor["minReplicas"] = json!(a.min);
                predictor["maxReplicas"] = json!(a.max);
                predictor["scaleMetric"] = json!(if a.metric == Metric::Cpu { "cpu" } else { "concurrency" });
                predictor["scaleTarget"] = json!(a.target.round() as u64);
            }
            if let Some(c) = body.pointer("/traffic/canary_percent") {
                predictor["canaryTrafficPercent"] = c.clone();
            }
            let isvc = json!({
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                "metadata": metadata(Part::InferenceService),
                "spec": { "predictor": predictor },
            });
            return Ok(vec![(Part::InferenceService, isvc)]);
        }

        if runtime == "seldon" {
            let model_name = model_addr.as_ref().map(|a| a.to_string()).unwrap_or_default();
            let requirement = crate::seldon::requirement(config, model, &model_name)?;
            let mut spec = json!({ "storageUri": uri, "requirements": [requirement], "replicas": replicas });
            if let Some(max) = body.get("max_replicas").and_then(Value::as_u64) {
                spec["minReplicas"] = json!(replicas);
                spec["maxReplicas"] = json!(max);
            }
            if let Some(server) = config.str("serving_runtime") {
                spec["server"] = json!(server);
            }
            if let Some(memory) = body.pointer("/resources/memory") {
                spec["memory"] = json!(memory.as_str().map(str::to_string).unwrap_or_else(|| memory.to_string()));
            }
            let mut metadata = metadata(Part::SeldonModel);
            metadata["annotations"][DIGEST_ANNOTATION] = digest;
            let model = json!({
                "apiVersion": "mlops.seldon.io/v1alpha1",
                "kind": "Model",
                "metadata": metadata,
                "spec": spec,
            });
            return Ok(vec![(Part::SeldonModel, model)]);
        }

        let image = body.get("image").or_else(|| model.get("image")).and_then(Value::as_str).ok_or_else(|| {
            ProviderError::invalid("`runtime: deployment` needs a serving image: set `image` here or on the model")
                .at(ValuePath::key("image"))
        })?;
        let port = body.get("port").and_then(Value::as_u64).unwrap_or(8080);
        env.push(json!({"name": "MODEL_URI", "value": uri}));
        let mut container = json!({
            "name": "server",
            "image": image,
            "ports": [{ "name": "http", "containerPort": port, "protocol": "TCP" }],
            "env": env,
        });
        if let Some(args) = body.get("args").filter(|a| a.as_array().is_some_and(|a| !a.is_empty())) {
            container["args"] = args.clone();
        }
        if !resources.is_empty() {
            container["resources"] = Value::Object(resources);
        }
        let selector = json!({ SELECTOR_LABEL: name });
        let mut pod_labels = labels.clone();
        pod_labels.insert(SELECTOR_LABEL.into(), json!(name));
        let mut deployment = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata(Part::Deployment),
            "spec": {
                "replicas": replicas,
                "selector": { "matchLabels": selector },
                "template": {
                    "metadata": { "labels": pod_labels, "annotations": { DIGEST_ANNOTATION: digest } },
                    "spec": { "containers": [container] },
                },
            },
        });
        let service = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(Part::Service),
            "spec": {
                "selector": selector,
                "ports": [{ "name": "http", "port": 80, "targetPort": port, "protocol": "TCP" }],
            },
        });
        let Some(a) = autoscaling else {
            return Ok(vec![(Part::Deployment, deployment), (Part::Service, service)]);
        };
        // The autoscaler owns the replica count: mlops does not set it, so it never fights it.
        if let Some(spec) = deployment["spec"].as_object_mut() {
            spec.remove("replicas");
        }
        let window = |d: Option<std::time::Duration>| d.map(|d| json!({ "stabilizationWindowSeconds": d.as_secs() }));
        let mut hpa_spec = json!({
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": name },
            "minReplicas": a.min,
            "maxReplicas": a.max,
            "metrics": [{ "type": "Resource", "resource": {
                "name": "cpu", "target": { "type": "Utilization", "averageUtilization": a.target.round() as u64 } } }],
        });
        let mut behavior = serde_json::Map::new();
        if let Some(w) = window(a.scale_in_cooldown) {
            behavior.insert("scaleDown".into(), w);
        }
        if let Some(w) = window(a.scale_out_cooldown) {
            behavior.insert("scaleUp".into(), w);
        }
        if !behavior.is_empty() {
            hpa_spec["behavior"] = Value::Object(behavior);
        }
        let hpa = json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": metadata(Part::Autoscaler),
            "spec": hpa_spec,
        });
        Ok(vec![(Part::Deployment, deployment), (Part::Service, service), (Part::Autoscaler, hpa)])
    }

    /// What a manifest is compared by: everything but identity (kind, name, namespace).
    pub(crate) fn template(manifest: &Value) -> Value {
        let mut t = manifest.clone();
        if let Some(m) = t.as_object_mut() {
            m.remove("apiVersion");
            m.remove("kind");
        }
        if let Some(meta) = t.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("name");
            meta.remove("namespace");
        }
        t
    }

    pub(crate) fn identity(part: Part, name: &str, namespace: &str, attributes: &Value) -> Value {
        let r = part.resource();
        let mut m = attributes.clone();
        m["apiVersion"] = json!(r.api_version);
        m["kind"] = json!(r.kind);
        m["metadata"]["name"] = json!(name);
        m["metadata"]["namespace"] = json!(namespace);
        m
    }
}
