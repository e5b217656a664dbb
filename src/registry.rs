//! The providers compiled into this build, by the name used under `providers:`. The only place
//! in the engine that names a provider.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use mlops_provider_core::{Kind, Provider, ProviderContext, ProviderEntry, ProviderError, Value};

/// Provider types a build may include, by cargo feature (named when one is missing).
const KNOWN: [&str; 7] = ["local", "aws", "gcp", "kubernetes", "mlflow", "feast", "dagster"];

/// A kind's provider settings, each with the providers that own it.
type SettingOwners = BTreeMap<String, Vec<&'static str>>;

#[derive(Clone)]
pub struct Registry {
    entries: BTreeMap<&'static str, ProviderEntry>,
    pub environment: String,
    /// The spec's JSON Schema for these providers, and its validator: built on first use.
    schema: Arc<OnceLock<(Value, jsonschema::Validator)>>,
    /// Per kind, each provider setting and the providers that own it: built on first use.
    owners: Arc<OnceLock<BTreeMap<Kind, SettingOwners>>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Registry {
    pub fn empty() -> Self {
        Registry {
            entries: BTreeMap::new(),
            environment: "default".into(),
            schema: Default::default(),
            owners: Default::default(),
        }
    }

    /// Every provider enabled by cargo features.
    pub fn builtin() -> Self {
        #[allow(unused_mut)]
        let mut r = Self::empty();
        #[cfg(feature = "local")]
        r.register(mlops_provider_local::entry());
        #[cfg(feature = "aws")]
        r.register(mlops_provider_aws::entry());
        #[cfg(feature = "gcp")]
        r.register(mlops_provider_gcp::entry());
        #[cfg(feature = "kubernetes")]
        r.register(mlops_provider_kubernetes::entry());
        #[cfg(feature = "mlflow")]
        r.register(mlops_provider_mlflow::entry());
        #[cfg(feature = "feast")]
        r.register(mlops_provider_feast::entry());
        #[cfg(feature = "dagster")]
        r.register(mlops_provider_dagster::entry());
        r
    }

    /// The same providers, for another environment.
    pub fn with_environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = environment.into();
        self
    }

    pub fn register(&mut self, entry: ProviderEntry) {
        self.entries.insert(entry.name, entry);
        self.schema = Default::default();
        self.owners = Default::default();
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.entries.keys().copied().collect()
    }

    pub fn entries(&self) -> impl Iterator<Item = &ProviderEntry> {
        self.entries.values()
    }

    /// Provider types a build may include but this one does not.
    pub fn missing(&self) -> impl Iterator<Item = &'static str> + '_ {
        KNOWN.into_iter().filter(|n| !self.entries.contains_key(n))
    }

    /// The provider that claims a resource naming none (by its URI scheme, ...), if one does.
    pub fn claimant(&self, kind: Kind, body: &Value) -> Option<&'static str> {
        self.entries.values().find(|e| (e.claims)(kind, body)).map(|e| e.name)
    }

    /// The providers that own a setting `key` of a resource of `kind` (empty for portable fields).
    pub fn setting_owners(&self, kind: Kind, key: &str) -> &[&'static str] {
        let owners = self.owners.get_or_init(|| {
            Kind::ALL
                .into_iter()
                .map(|k| {
                    let mut by_key = SettingOwners::new();
                    for e in self.entries.values() {
                        for (key, _) in (e.settings)(k) {
                            by_key.entry(key).or_default().push(e.name);
                        }
                    }
                    (k, by_key)
                })
                .collect()
        });
        owners.get(&kind).and_then(|m| m.get(key)).map(Vec::as_slice).unwrap_or_default()
    }

    /// The spec's JSON Schema with these providers' blocks and settings, and its validator.
    pub fn schema(&self) -> &(Value, jsonschema::Validator) {
        self.schema.get_or_init(|| {
            let schema = crate::spec::model::assemble_schema(self);
            let validator = jsonschema::validator_for(&schema).expect("the assembled schema is valid");
            (schema, validator)
        })
    }

    pub fn instantiate(
        &self,
        name: &str,
        block: &Value,
        base_dir: &Path,
        project: &str,
    ) -> Result<Arc<dyn Provider>, ProviderError> {
        let Some(entry) = self.entries.get(name) else {
            return Err(ProviderError::invalid(if KNOWN.contains(&name) {
                format!("the `{name}` provider is not part of this build (cargo feature `{name}`)")
            } else {
                format!("there is no provider called `{name}`")
            }));
        };
        let ctx = ProviderContext {
            base_dir: base_dir.to_path_buf(),
            project: project.to_string(),
            environment: self.environment.clone(),
        };
        (entry.factory)(block, &ctx)
    }
}
