//! The providers compiled into this build, by the name used under `providers:`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use mlops_provider_core::{Provider, ProviderContext, ProviderFactory, Value};

/// Provider types the spec knows about but this build does not (yet) include.
const KNOWN: [&str; 4] = ["local", "aws", "gcp", "kubernetes"];

#[derive(Clone)]
pub struct Registry {
    factories: BTreeMap<&'static str, ProviderFactory>,
    pub environment: String,
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Registry {
    pub fn empty() -> Self {
        Registry { factories: BTreeMap::new(), environment: "default".into() }
    }

    /// Every provider enabled by cargo features.
    pub fn builtin() -> Self {
        #[allow(unused_mut)]
        let mut r = Self::empty();
        #[cfg(feature = "local")]
        r.register("local", mlops_provider_local::factory);
        #[cfg(feature = "aws")]
        r.register("aws", mlops_provider_aws::factory);
        #[cfg(feature = "gcp")]
        r.register("gcp", mlops_provider_gcp::factory);
        #[cfg(feature = "kubernetes")]
        r.register("kubernetes", mlops_provider_kubernetes::factory);
        r
    }

    /// The same providers, for another environment.
    pub fn with_environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = environment.into();
        self
    }

    pub fn register(&mut self, name: &'static str, factory: ProviderFactory) {
        self.factories.insert(name, factory);
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.factories.keys().copied().collect()
    }

    pub fn instantiate(
        &self,
        name: &str,
        block: &Value,
        base_dir: &Path,
        project: &str,
    ) -> Result<Arc<dyn Provider>, String> {
        let Some(factory) = self.factories.get(name) else {
            return Err(if KNOWN.contains(&name) {
                format!("the `{name}` provider is not part of this build (cargo feature `{name}`)")
            } else {
                format!("there is no provider called `{name}`")
            });
        };
        let ctx = ProviderContext {
            base_dir: base_dir.to_path_buf(),
            project: project.to_string(),
            environment: self.environment.clone(),
        };
        factory(block, &ctx).map_err(|e| e.message)
    }
}
