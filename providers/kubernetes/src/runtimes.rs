//! KServe model formats and serving runtimes. An InferenceService declares its model's format
//! (KServe's name for it, from the model's `framework` where that is unambiguous, or the
//! endpoint's `model_format`), and optionally the ServingRuntime or ClusterServingRuntime to
//! serve it with (`serving_runtime`) and the inference protocol (`protocol_version`). A named
//! runtime is read at plan time: it must exist, be enabled, and support the format (and version)
//! and the protocol, or the plan fails at the line that names it.

use kube::Api;
use kube::core::DynamicObject;
use mlops_provider_core::{ProviderError, ResourceConfig, Value, ValuePath};
use serde_json::json;

use crate::{Cluster, api_resource, kube_error};

/// KServe's format name for a model framework, where the framework names one format.
pub(crate) fn format_of_framework(framework: &str) -> Option<&'static str> {
    Some(match framework.to_ascii_lowercase().as_str() {
        "sklearn" | "scikit-learn" => "sklearn",
        "xgboost" => "xgboost",
        "lightgbm" => "lightgbm",
        "tensorflow" | "keras" => "tensorflow",
        "pytorch" | "torch" => "pytorch",
        "onnx" => "onnx",
        "triton" | "tensorrt" => "triton",
        "mlflow" => "mlflow",
        "huggingface" | "transformers" => "huggingface",
        _ => return None,
    })
}

/// The format an InferenceService declares (`modelFormat`): the endpoint's `model_format`, else
/// the model's framework as KServe names it.
pub(crate) fn model_format(
    config: &ResourceConfig,
    model: &mlops_provider_core::Attributes,
    model_name: &str,
) -> Result<Value, ProviderError> {
    if let Some(given) = config.body.get("model_format") {
        let mut format = json!({ "name": given.get("name").and_then(Value::as_str).unwrap_or_default() });
        if let Some(v) = given.get("version").and_then(Value::as_str) {
            format["version"] = json!(v);
        }
        return Ok(format);
    }
    let framework = model.get("framework").and_then(Value::as_str).ok_or_else(|| {
        ProviderError::invalid(format!(
            "KServe picks its serving runtime from the model's format: give {model_name} a `framework` (e.g. sklearn, xgboost), or set `model_format` here"
        ))
        .at(ValuePath::key("model"))
    })?;
    let name = format_of_framework(framework).ok_or_else(|| {
        ProviderError::invalid(format!(
            "{model_name}'s framework `{framework}` names no KServe model format; set `model_format: {{ name: … }}` here \
             to the format your serving runtime supports (KServe's own: sklearn, xgboost, lightgbm, tensorflow, pytorch, \
             onnx, triton, mlflow, huggingface)"
        ))
        .at(ValuePath::key("model"))
    })?;
    Ok(json!({ "name": name }))
}

/// The plan-time warning for a format whose KServe runtime is going away.
pub(crate) fn format_warning(format: &Value) -> Option<String> {
    (format.get("name").and_then(Value::as_str) == Some("pytorch")).then(|| {
        "KServe serves the pytorch format with TorchServe, which is in limited maintenance and being removed from KServe \
         (pytorch/serve#3396, kserve#4568): consider exporting to onnx and serving it on Triton"
            .to_string()
    })
}

/// True when a runtime's `supportedModelFormats` holds `format` (its version too, when both give one).
fn supports(runtime: &Value, format: &Value) -> bool {
    let (name, version) = (format.get("name").and_then(Value::as_str), format.get("version").and_then(Value::as_str));
    runtime.pointer("/spec/supportedModelFormats").and_then(Value::as_array).is_some_and(|formats| {
        formats.iter().any(|f| {
            f.get("name").and_then(Value::as_str) == name
                && match (version, f.get("version").and_then(Value::as_str)) {
                    (Some(want), Some(have)) => want == have,
                    _ => true,
                }
        })
    })
}

/// A runtime's protocols; KServe's default is `v1` when it lists none.
fn protocols(runtime: &Value) -> Vec<String> {
    match runtime.pointer("/spec/protocolVersions").and_then(Value::as_array) {
        Some(list) => list.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        None => vec!["v1".into()],
    }
}

fn describe(format: &Value) -> String {
    let name = format.get("name").and_then(Value::as_str).unwrap_or_default();
    match format.get("version").and_then(Value::as_str) {
        Some(v) => format!("{name} (version {v})"),
        None => name.to_string(),
    }
}

/// True when KServe would pick `runtime` for `format` on its own: enabled, the format listed with
/// `autoSelect: true`, and the protocol among its protocols.
fn auto_selects(runtime: &Value, format: &Value, protocol: &str) -> bool {
    let (name, version) = (format.get("name").and_then(Value::as_str), format.get("version").and_then(Value::as_str));
    runtime.pointer("/spec/disabled").and_then(Value::as_bool) != Some(true)
        && protocols(runtime).iter().any(|p| p == protocol)
        && runtime.pointer("/spec/supportedModelFormats").and_then(Value::as_array).is_some_and(|formats| {
            formats.iter().any(|f| {
                f.get("name").and_then(Value::as_str) == name
                    && f.get("autoSelect").and_then(Value::as_bool) == Some(true)
                    && match (version, f.get("version").and_then(Value::as_str)) {
                        (Some(want), Some(have)) => want == have,
                        _ => true,
                    }
            })
        })
}

impl Cluster {
    /// Without `serving_runtime`, KServe picks a runtime that auto-selects the format and protocol:
    /// a plan-time warning when the cluster has runtimes and none of them does (none is read when
    /// the cluster serves no runtimes at all).
    async fn auto_selected(
        &self,
        config: &ResourceConfig,
        namespace: &str,
        format: &Value,
    ) -> Result<Option<String>, ProviderError> {
        let (client, _, url) = self.client().await?;
        let namespaced = api_resource("serving.kserve.io", "v1alpha1", "ServingRuntime", "servingruntimes");
        let cluster = api_resource("serving.kserve.io", "v1alpha1", "ClusterServingRuntime", "clusterservingruntimes");
        let protocol = config.str("protocol_version").unwrap_or("v1");
        let mut served = false;
        for api in [
            Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &namespaced),
            Api::<DynamicObject>::all_with(client.clone(), &cluster),
        ] {
            match api.list(&Default::default()).await {
                Ok(list) => {
                    served = true;
                    let values = list.items.iter().map(|o| serde_json::to_value(o).expect("objects serialize"));
                    if values.into_iter().any(|r| auto_selects(&r, format, protocol)) {
                        return Ok(None);
                    }
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(kube_error(&format!("list serving runtimes on {url}"), e)),
            }
        }
        Ok(served.then(|| {
            format!(
                "no ServingRuntime in {namespace} nor ClusterServingRuntime on {url} auto-selects {} with protocol {protocol}: \
                 KServe will find no runtime for this model; install one, or name it with `serving_runtime`",
                describe(format)
            )
        }))
    }

    /// Checks the runtime `config` names against `format` and its `protocol_version`: a
    /// ServingRuntime in `namespace` first, then a ClusterServingRuntime, as KServe looks them up.
    /// Without one, the warning of [`Cluster::auto_selected`], if any.
    pub(crate) async fn check_serving_runtime(
        &self,
        config: &ResourceConfig,
        namespace: &str,
        format: &Value,
    ) -> Result<Option<String>, ProviderError> {
        let Some(name) = config.str("serving_runtime") else {
            return self.auto_selected(config, namespace, format).await;
        };
        let (client, _, url) = self.client().await?;
        let namespaced = api_resource("serving.kserve.io", "v1alpha1", "ServingRuntime", "servingruntimes");
        let cluster = api_resource("serving.kserve.io", "v1alpha1", "ClusterServingRuntime", "clusterservingruntimes");
        let apis = [
            (
                Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &namespaced),
                format!("ServingRuntime {namespace}/{name}"),
            ),
            (Api::<DynamicObject>::all_with(client.clone(), &cluster), format!("ClusterServingRuntime {name}")),
        ];
        let mut found = None;
        for (api, what) in &apis {
            match api.get_opt(name).await {
                Ok(Some(o)) => {
                    found = Some((serde_json::to_value(o).expect("objects serialize"), what.clone()));
                    break;
                }
                Ok(None) => {}
                // A cluster whose KServe serves no runtimes of this scope has none of them.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(kube_error(&format!("get {what} from {url}"), e)),
            }
        }
        let at = ValuePath::key("serving_runtime");
        let Some((runtime, what)) = found else {
            let mut others = Vec::new();
            for (api, _) in &apis {
                if let Ok(list) = api.list(&Default::default()).await {
                    for o in list.items {
                        let v = serde_json::to_value(&o).expect("objects serialize");
                        if supports(&v, format) {
                            others.extend(o.metadata.name);
                        }
                    }
                }
            }
            let hint = if others.is_empty() {
                format!("no runtime on the cluster supports {}: install one", describe(format))
            } else {
                format!("runtimes that support {}: {}", describe(format), others.join(", "))
            };
            return Err(ProviderError::invalid(format!(
                "serving runtime `{name}` is neither a ServingRuntime in namespace {namespace} nor a ClusterServingRuntime on {url}; {hint}"
            ))
            .at(at));
        };
        if runtime.pointer("/spec/disabled").and_then(Value::as_bool) == Some(true) {
            return Err(ProviderError::invalid(format!("{what} is disabled (spec.disabled: true) on {url}")).at(at));
        }
        if !supports(&runtime, format) {
            let listed: Vec<String> = runtime
                .pointer("/spec/supportedModelFormats")
                .and_then(Value::as_array)
                .map(|l| l.iter().map(describe).collect())
                .unwrap_or_default();
            return Err(ProviderError::invalid(format!(
                "{what} does not support the model format {} (it supports: {}); set `model_format`, or name a runtime that supports it",
                describe(format),
                if listed.is_empty() { "nothing".into() } else { listed.join(", ") }
            ))
            .at(at));
        }
        if let Some(protocol) = config.str("protocol_version") {
            let served = protocols(&runtime);
            if !served.iter().any(|p| p == protocol) {
                return Err(ProviderError::invalid(format!(
                    "{what} does not serve protocol {protocol} (it serves: {})",
                    served.join(", ")
                ))
                .at(ValuePath::key("protocol_version")));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frameworks_map_to_kserve_formats_only_where_unambiguous() {
        assert_eq!(format_of_framework("scikit-learn"), Some("sklearn"));
        assert_eq!(format_of_framework("Keras"), Some("tensorflow"));
        assert_eq!(format_of_framework("torch"), Some("pytorch"));
        assert_eq!(format_of_framework("catboost"), None);
    }

    #[test]
    fn a_runtime_supports_a_format_by_name_and_by_version_when_both_give_one() {
        let triton = json!({"spec": {"supportedModelFormats": [
            {"name": "onnx", "version": "1"}, {"name": "tensorflow"}], "protocolVersions": ["v2", "grpc-v2"]}});
        assert!(supports(&triton, &json!({"name": "onnx"})));
        assert!(supports(&triton, &json!({"name": "onnx", "version": "1"})));
        assert!(!supports(&triton, &json!({"name": "onnx", "version": "2"})));
        assert!(supports(&triton, &json!({"name": "tensorflow", "version": "2"})));
        assert!(!supports(&triton, &json!({"name": "sklearn"})));
        assert_eq!(protocols(&triton), ["v2", "grpc-v2"]);
        assert_eq!(protocols(&json!({"spec": {}})), ["v1"]);
        let xgb = json!({"spec": {"supportedModelFormats": [{"name": "xgboost", "version": "1", "autoSelect": true},
            {"name": "sklearn"}]}});
        assert!(auto_selects(&xgb, &json!({"name": "xgboost"}), "v1"));
        assert!(!auto_selects(&xgb, &json!({"name": "xgboost"}), "v2"), "v1 only when it lists no protocols");
        assert!(!auto_selects(&xgb, &json!({"name": "sklearn"}), "v1"), "listed without autoSelect");
        assert!(!auto_selects(&xgb, &json!({"name": "xgboost", "version": "2"}), "v1"));
    }
}
