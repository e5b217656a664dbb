//! `mlops import endpoints.NAME [NAMESPACE/]NAME`: adopts the objects an endpoint of the spec's
//! runtime is made of (an InferenceService, a Seldon Model, or a Deployment and its Service, with
//! its HorizontalPodAutoscaler when the spec autoscales), made by someone else. They are labelled
//! and annotated as mlops's own (a server-side apply of those metadata fields only, under the
//! field manager `mlops`), and recorded as they are; the next plan shows what the spec changes.

use super::*;

impl Cluster {
    pub(crate) async fn import_endpoint(&self, config: &ResourceConfig, id: &str) -> Result<LiveState, ProviderError> {
        let (_, default_ns, url) = self.client().await?;
        let address = &config.address;
        let (namespace, name) = id.split_once('/').unwrap_or((default_ns.as_str(), id));
        if namespace != default_ns {
            return Err(ProviderError::invalid(format!(
                "this stack's endpoints live in namespace {default_ns}, not {namespace}: set `namespace` in the kubernetes \
                 provider block, or move the object"
            )));
        }
        if name != address.name {
            return Err(ProviderError::invalid(format!(
                "the objects of {address} are named `{}` on the cluster, not `{name}`: import `{}`, or rename the endpoint",
                address.name, address.name
            )));
        }
        let runtime = config.str("runtime").unwrap_or("kserve");
        let parts: &[Part] = match runtime {
            "kserve" => &[Part::InferenceService],
            "seldon" => &[Part::SeldonModel],
            _ if config.body.get("autoscaling").is_some() => &[Part::Deployment, Part::Service, Part::Autoscaler],
            _ => &[Part::Deployment, Part::Service],
        };
        for part in parts {
            let kind = part.resource().kind;
            let Some(o) = self.get(namespace, *part, name).await? else {
                return Err(ProviderError::invalid(format!(
                    "{kind} {namespace}/{name} does not exist on {url} (`runtime: {runtime}` is made of {})",
                    parts.iter().map(|p| p.resource().kind).collect::<Vec<_>>().join(" + ")
                )));
            };
            if let Some(owner) = owner_of(&o).filter(|o| *o != address.to_string()) {
                return Err(ProviderError::invalid(format!(
                    "{kind} {namespace}/{name} is mlops's already, for {owner}: it was left alone"
                )));
            }
        }
        // Everything exists and is no one else's in mlops: only now is anything written.
        let mut desired = Desired::default();
        for part in parts {
            let kind = part.resource().kind;
            let metadata = json!({
                "name": name,
                "namespace": namespace,
                "labels": { MANAGED_BY: "mlops", PROJECT_LABEL: self.project },
                "annotations": { ADDRESS_ANNOTATION: address.to_string() },
            });
            let labelled = self
                .ssa(&json!({ "kind": kind, "metadata": metadata }), *part, false, false)
                .await
                .map_err(|e| kube_error(&format!("label {kind} {namespace}/{name} as mlops's on {url}"), e))?;
            desired.attributes.insert(part.attribute().into(), as_recorded(&labelled));
        }
        desired.attributes.insert("namespace".into(), json!(namespace));
        desired.attributes.insert("runtime".into(), json!(runtime));
        self.read_endpoint(address, None, Some(&desired))
            .await?
            .ok_or_else(|| ProviderError::failed(format!("{namespace}/{name} is missing right after it was imported")))
    }
}

/// An object as an import records it: its spec, labels and annotations, without what the server
/// sets (status, uid, resourceVersion, managed fields) or kubectl's last-applied copy.
fn as_recorded(o: &Value) -> Value {
    let mut metadata = serde_json::Map::new();
    for key in ["labels", "annotations"] {
        if let Some(Value::Object(m)) = o.pointer(&format!("/metadata/{key}")) {
            let mut m = m.clone();
            m.remove("kubectl.kubernetes.io/last-applied-configuration");
            metadata.insert(key.into(), Value::Object(m));
        }
    }
    let mut out = json!({ "metadata": metadata });
    if let Some(spec) = o.get("spec") {
        out["spec"] = spec.clone();
    }
    out
}
