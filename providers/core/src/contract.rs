//! The contract: a [`Provider`] is a backend with its clients; each kind of resource it serves is
//! a [`ResourceType`] (as Terraform's provider protocol names a resource type in every request).
//! The engine asks the provider for the kind's type once and calls it; a kind a provider does not
//! serve is a validate error at the resource's line.

use async_trait::async_trait;

use crate::{
    Address, ApplyRequest, ConfigDiagnostic, Dependencies, Desired, Kind, LiveState, PriorState, Progress,
    ProviderError, Resolved, ResourceConfig, TrainingRun,
};

/// A backend: its name, what identifies versions and moves traffic in its attributes, the
/// references it resolves, and the kinds of resource it serves.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The provider type, as written under `providers:` (`local`, `aws`, ...).
    fn name(&self) -> &str;

    /// The type serving `kind`, or `None` when this provider does not serve it. The one place a
    /// provider dispatches on the kind.
    fn resource(&self, kind: Kind) -> Option<&dyn ResourceType>;

    /// Attributes that identify a version of what a resource holds (bytes, generations, digests):
    /// what a promotion pins and a rollback restores. Per-environment values (replicas) are not.
    fn version_attributes(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether the provider runs container images (a model's or an endpoint's `image`): those are
    /// pinned by digest at plan time (the spec's `images: { pin: digest }`, the default).
    fn runs_images(&self) -> bool {
        false
    }

    /// The manifest digest of `image` when it lives in this provider's own registry (ECR for aws),
    /// asked through the provider's API and credentials; `None` for an image it does not hold,
    /// which the engine resolves through the OCI distribution API instead.
    async fn image_digest(&self, image: &str) -> Result<Option<String>, ProviderError> {
        let _ = image;
        Ok(None)
    }

    /// Attributes (or the last segment of an attribute path) whose change moves serving traffic:
    /// a change to one is tagged `traffic-shift`.
    fn traffic_attributes(&self) -> &'static [&'static str] {
        &[]
    }

    /// Attributes (or the last segment of an attribute path) whose change an endpoint's
    /// `rollout:` steps through (the model it serves): such a change is tagged `rollout`.
    fn rollout_attributes(&self) -> &'static [&'static str] {
        &[]
    }

    /// Checks this provider makes of a resource of any kind it serves (its naming rules), before
    /// the kind's own [`ResourceType::check`]. No I/O.
    fn check(&self, config: &ResourceConfig) -> Vec<ConfigDiagnostic> {
        let _ = config;
        Vec::new()
    }

    /// What `reference` (one of the schemes its entry's `references` lists) names now. Called at
    /// plan time for other providers' resources, and again before a saved plan is applied.
    async fn resolve(&self, reference: &str) -> Result<Resolved, ProviderError> {
        Err(ProviderError::invalid(format!("the {} provider does not resolve `{reference}`", self.name())))
    }

    /// The training run `reference` names (a model's `produced_by`, in one of the schemes its
    /// entry's `runs` lists), as its tracker records it now. Called at plan time.
    async fn training_run(&self, reference: &str) -> Result<TrainingRun, ProviderError> {
        Err(ProviderError::invalid(format!("the {} provider does not know training runs (`{reference}`)", self.name())))
    }
}

impl dyn Provider {
    /// The type serving `kind`; an error naming the provider when it serves none (validation
    /// refuses such a resource first, so this is a guard, not a message users see).
    pub fn type_of(&self, kind: Kind) -> Result<&dyn ResourceType, ProviderError> {
        self.resource(kind)
            .ok_or_else(|| ProviderError::invalid(format!("the {} provider does not serve {kind}", self.name())))
    }
}

/// One kind of resource a provider serves: how its configuration becomes desired attributes, how
/// its live state is read, changed and deleted, and what a delete or a rollback means for it.
#[async_trait]
pub trait ResourceType: Send + Sync {
    /// Checks only this type can make (values its backend cannot honour). No I/O.
    fn check(&self, config: &ResourceConfig) -> Vec<ConfigDiagnostic> {
        let _ = config;
        Vec::new()
    }

    /// The desired state of a resource. May read local files (to digest them), and the backend
    /// to learn what it needs (a read it makes may be kept for the `read` that follows).
    async fn desired(&self, config: &ResourceConfig, deps: &Dependencies) -> Result<Desired, ProviderError>;

    /// The live state of a resource, or `None` if it does not exist. `desired`, when known, says
    /// which fields matter (a provider whose objects carry server-set fields compares only those).
    async fn read(
        &self,
        address: &Address,
        prior: Option<&PriorState>,
        desired: Option<&Desired>,
    ) -> Result<Option<LiveState>, ProviderError>;

    /// Creates, updates or replaces a resource; returns its live state afterwards.
    async fn apply(&self, request: ApplyRequest<'_>, progress: &dyn Progress) -> Result<LiveState, ProviderError>;

    /// Deletes a resource this tool created.
    async fn delete(&self, address: &Address, prior: &PriorState, progress: &dyn Progress)
    -> Result<(), ProviderError>;

    /// Whether deleting `address`, live as `live`, destroys stored data no apply can bring back
    /// (a feature store's records, a registered model's versions, objects no version keeps): the
    /// reason, shown in the plan with the `data-destroying` tag; such a delete needs
    /// `--allow-data-loss`. (Whether a *replace* does is [`Desired::replace_destroys_data`].)
    fn delete_destroys_data(&self, address: &Address, live: &LiveState) -> Option<String> {
        let _ = (address, live);
        None
    }

    /// Removes what a create-before-destroy replacement left behind (outputs `deposed`: e.g. the
    /// previous SageMaker model), once everything depending on the resource has moved off it.
    /// Returns the state without them. Called only when `outputs.deposed` is a non-empty list.
    async fn finish(
        &self,
        address: &Address,
        state: &LiveState,
        progress: &dyn Progress,
    ) -> Result<LiveState, ProviderError> {
        let _ = (address, progress);
        Ok(state.clone())
    }

    /// What a rollback puts back as lineage recorded it, beside the provider's
    /// [`Provider::version_attributes`]: these attributes present or absent as they were then (an
    /// endpoint's serving objects, its traffic, replicas and models). Empty: the versions only.
    fn restored_attributes(&self) -> &'static [&'static str] {
        &[]
    }

    /// What a rollback of this type does not bring back, said in the plan beside the `rollback`
    /// tag (a feature store's stored records: its definition comes back, not its data).
    fn rollback_leaves(&self) -> Option<&'static str> {
        None
    }

    /// Whether `desired`, pinned to versions recorded earlier (`mlops rollback`), can still be
    /// produced: the recorded bytes are still there and still what the backend would serve (a
    /// registry version, a source file, an object version that is the current one). Asked at plan
    /// time, so a rollback that cannot restore is refused before anything changes, naming what is
    /// gone. Every type answers: one that carries no bytes of its own says so. `deps` are its
    /// dependencies' desired states as the rollback pins them (an endpoint's models).
    async fn restorable(
        &self,
        config: &ResourceConfig,
        desired: &Desired,
        deps: &Dependencies,
    ) -> Result<(), ProviderError>;

    /// The SHA-256 (hex) of every file of the model artifact `desired` pinned, read at its pinned
    /// version (one object: one entry named `.`; a folder: each object's path in it), for a
    /// signature check at plan time. `None`: this type cannot read its artifact's bytes.
    async fn artifact_sha256(
        &self,
        config: &ResourceConfig,
        desired: &Desired,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>, ProviderError> {
        let _ = (config, desired);
        Ok(None)
    }

    /// The live state of an existing backend object with identifier `id` (a name, an ARN, a
    /// URI), to adopt it as the resource `config` declares (`mlops import`).
    async fn import(&self, config: &ResourceConfig, id: &str) -> Result<LiveState, ProviderError> {
        let _ = id;
        Err(ProviderError::invalid(format!("the {} provider cannot import {}", config.provider, config.address.kind)))
    }
}

/// What a rollback of a feature store leaves as it is (its `rollback_leaves`).
pub const FEATURE_RECORDS_NOT_RESTORED: &str =
    "the definition comes back as recorded; the stored feature records are not restored";

/// The usual `delete_destroys_data` of a feature store: its stored records go with it.
pub fn records_destroyed(address: &Address) -> Option<String> {
    Some(format!("deleting {address} destroys its stored records"))
}
