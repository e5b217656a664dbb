//! The engine: resolve → refresh → diff → plan, and apply. It never prints; the CLI renders.

pub mod apply;
pub mod diff;
pub mod images;
pub mod recheck;
pub mod runs;
pub mod signature;
pub mod tags;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use mlops_provider_core::{
    Address, Dependencies, DependencyView, Desired, Provider, ProviderError, ResourceConfig, Value, ValuePath,
};

use crate::lineage::{LineageError, ResourceRecord, State};
use crate::plan::{self, Action, Drift, DriftKind, LineageBase, Plan, RecordedState, ResourceChange, SourceInfo};
use crate::registry::Registry;
use crate::spec::{LoadedSpec, closest};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum EngineError {
    #[error("{address}: {error}")]
    #[diagnostic(code(engine::provider))]
    Provider { address: Address, error: ProviderError },
    #[error("could not read the live state of {} resource(s):\n{}", .0.len(), .0.iter().map(|(a, e)| format!("  {a}: {e}")).collect::<Vec<_>>().join("\n"))]
    #[diagnostic(code(engine::refresh), help("nothing was changed; fix the cause and run the command again"))]
    Refresh(Vec<(Address, ProviderError)>),
    #[error("could not compute what the spec wants of {} resource(s) from their inputs:\n{}", .0.len(), .0.iter().map(|(a, e)| format!("  {a}: {e}")).collect::<Vec<_>>().join("\n"))]
    #[diagnostic(
        code(engine::desired),
        help(
            "nothing was changed; fix the inputs named above (source files, artifacts, references) and run the command again"
        )
    )]
    Desired(Vec<(Address, ProviderError)>),
    #[error("cannot roll back {} resource(s): the recorded versions cannot be produced any more:\n{}", .0.len(), .0.iter().map(|(a, e)| format!("  {a}: {e}")).collect::<Vec<_>>().join("\n"))]
    #[diagnostic(
        code(engine::unrestorable),
        help("nothing was changed; restore what is named above, or roll back to a point whose versions still exist")
    )]
    Unrestorable(Vec<(Address, ProviderError)>),
    #[error("`{0}` is not a resource of this stack")]
    #[diagnostic(code(engine::unknown_target))]
    UnknownTarget(String, #[help] Option<String>),
    #[error("the saved plan is stale and was not applied; nothing was changed:\n{}", .0.iter().map(|r| format!("  - {r}")).collect::<Vec<_>>().join("\n"))]
    #[diagnostic(code(plan::stale), help("run `mlops plan --out FILE` again, review it, and apply the new plan"))]
    Stale(Vec<String>),
    #[error("{0}")]
    #[diagnostic(code(plan::invalid))]
    PlanFile(String),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Lineage(#[from] LineageError),
    /// A provider could not be built from its block: its name, and why.
    #[error("provider `{name}` is unavailable")]
    #[diagnostic(code(engine::provider_unavailable))]
    ProviderUnavailable {
        name: String,
        #[source]
        source: ProviderError,
    },
}

/// A loaded spec with its providers instantiated.
pub struct Stack {
    pub spec: LoadedSpec,
    pub registry: Registry,
    pub environment: String,
    providers: BTreeMap<String, Arc<dyn Provider>>,
    /// The provider blocks of the spec, each held once.
    blocks: BTreeMap<String, Arc<Value>>,
    /// Image digests resolved in this run, by image as written: one registry call per image, not
    /// per resource that runs it.
    digests: Arc<std::sync::Mutex<BTreeMap<String, String>>>,
}

impl Stack {
    pub fn new(spec: LoadedSpec, registry: Registry) -> Result<Self, EngineError> {
        let mut providers = BTreeMap::new();
        for r in &spec.resources {
            let name = &r.config.provider;
            if providers.contains_key(name) {
                continue;
            }
            // Built by validation already when it was for this environment: once a run.
            let built = spec.providers.built.get(name).filter(|_| spec.providers.environment == registry.environment);
            let p = match built {
                Some(p) => p.clone(),
                None => {
                    let block = spec.json.pointer(&format!("/providers/{name}")).cloned().unwrap_or(Value::Null);
                    registry
                        .instantiate(name, &block, spec.base_dir(), &spec.spec.project)
                        .map_err(|source| EngineError::ProviderUnavailable { name: name.clone(), source })?
                }
            };
            providers.insert(name.clone(), p);
        }
        let environment = registry.environment.clone();
        let blocks = spec
            .json
            .get("providers")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), Arc::new(v.clone()))).collect())
            .unwrap_or_default();
        Ok(Stack { spec, registry, environment, providers, blocks, digests: Default::default() })
    }

    pub fn project(&self) -> &str {
        &self.spec.spec.project
    }

    /// The same stack, its spec without `drop` (see [`LoadedSpec::without`]).
    pub fn without(&self, drop: &BTreeSet<Address>) -> Stack {
        Stack {
            spec: self.spec.without(drop),
            registry: self.registry.clone(),
            environment: self.environment.clone(),
            providers: self.providers.clone(),
            blocks: self.blocks.clone(),
            digests: self.digests.clone(),
        }
    }

    /// Whether the spec has a block for provider `name`.
    pub fn configures(&self, name: &str) -> bool {
        self.blocks.contains_key(name)
    }

    /// A provider's block, shared: every change of the provider holds the same one.
    pub fn provider_block(&self, name: &str) -> Arc<Value> {
        self.blocks.get(name).cloned().unwrap_or_else(|| Arc::new(Value::Null))
    }

    /// The provider for a spec resource, or for a recorded one that left the spec. Always
    /// configured from the current spec (never from a plan file or a lineage record, which anyone
    /// can edit): a resource whose provider the spec no longer configures cannot be touched.
    pub fn provider(&self, name: &str) -> Result<Arc<dyn Provider>, EngineError> {
        if let Some(p) = self.providers.get(name) {
            return Ok(p.clone());
        }
        let configured = self.spec.json.get("providers").and_then(Value::as_object);
        // With no provider block at all, the registry's default provider is implied.
        if configured.is_some_and(|c| !c.is_empty() && !c.contains_key(name)) {
            return Err(EngineError::ProviderUnavailable {
                name: name.to_string(),
                source: ProviderError::invalid(format!(
                    "the spec no longer configures it; add `providers: {{ {name}: ... }}` back to change or delete what it manages"
                )),
            });
        }
        let block = self.provider_block(name);
        self.registry
            .instantiate(name, &block, self.spec.base_dir(), self.project())
            .map_err(|source| EngineError::ProviderUnavailable { name: name.to_string(), source })
    }
}

/// Options of `plan`.
#[derive(Clone, Debug)]
pub struct PlanRequest {
    pub targets: Vec<Address>,
    pub parallelism: usize,
    /// For `promote`: the source environment, its lineage commit, and the versions it recorded.
    pub promotion: Option<(crate::plan::Promotion, Pins)>,
}

impl Default for PlanRequest {
    fn default() -> Self {
        PlanRequest { targets: vec![], parallelism: 10, promotion: None }
    }
}

/// The addresses a plan covers: every resource, or the targets and what they depend on.
pub fn select(stack: &Stack, state: &State, targets: &[Address]) -> Result<BTreeSet<Address>, EngineError> {
    let spec_addrs: BTreeSet<Address> = stack.spec.resources.iter().map(|r| r.config.address.clone()).collect();
    if targets.is_empty() {
        return Ok(spec_addrs.into_iter().chain(state.resources.keys().cloned()).collect());
    }
    let mut out = BTreeSet::new();
    let mut todo: Vec<Address> = Vec::new();
    for t in targets {
        if !spec_addrs.contains(t) && !state.resources.contains_key(t) {
            let all: Vec<String> = spec_addrs.iter().chain(state.resources.keys()).map(|a| a.to_string()).collect();
            return Err(EngineError::UnknownTarget(
                t.to_string(),
                closest(&t.to_string(), &all).map(|s| format!("did you mean `{s}`?")),
            ));
        }
        todo.push(t.clone());
    }
    while let Some(a) = todo.pop() {
        if !out.insert(a.clone()) {
            continue;
        }
        if let Some(r) = stack.spec.resource(&a) {
            todo.extend(r.config.dependencies.iter().cloned());
        }
    }
    Ok(out)
}

/// Spec resources in dependency order, grouped in waves that can run concurrently.
pub fn waves(stack: &Stack, selected: &BTreeSet<Address>) -> Vec<Vec<Address>> {
    let mut waiting: BTreeMap<&Address, usize> = BTreeMap::new();
    let mut unblocks: BTreeMap<&Address, Vec<&Address>> = BTreeMap::new();
    for r in stack.spec.resources.iter().filter(|r| selected.contains(&r.config.address)) {
        let deps: BTreeSet<&Address> = r.config.dependencies.iter().filter(|d| selected.contains(*d)).collect();
        waiting.insert(&r.config.address, deps.len());
        for d in deps {
            unblocks.entry(d).or_default().push(&r.config.address);
        }
    }
    let mut wave: Vec<&Address> = waiting.iter().filter(|(_, n)| **n == 0).map(|(a, _)| *a).collect();
    let mut out: Vec<Vec<Address>> = Vec::new();
    let mut placed = 0;
    while !wave.is_empty() {
        let mut next = Vec::new();
        for a in &wave {
            for d in unblocks.get(*a).into_iter().flatten() {
                let n = waiting.get_mut(*d).expect("every selected resource has an entry");
                *n -= 1;
                if *n == 0 {
                    next.push(*d);
                }
            }
        }
        next.sort();
        placed += wave.len();
        out.push(wave.into_iter().cloned().collect());
        wave = next;
    }
    if placed < waiting.len() {
        // Validation rejects cycles; never lose a resource regardless.
        out.push(waiting.iter().filter(|(_, n)| **n > 0).map(|(a, _)| (*a).clone()).collect());
    }
    out
}

/// Desired states of the selected spec resources, dependencies first.
/// Versions pinned by a promotion: address → attributes recorded in the source environment.
pub type Pins = BTreeMap<Address, mlops_provider_core::Attributes>;

/// Pins the version attributes of `desired` (the provider's `version_attributes`: what `promote`
/// carries from one environment to another; instance counts and other per-environment values stay
/// as they are) to `pinned`'s, and the `restored` ones (a rollback's: see
/// `ResourceType::restored_attributes`) present or absent as `pinned` has them; true when that
/// changed any.
fn pin(
    desired: &mut Desired,
    pinned: Option<&mlops_provider_core::Attributes>,
    versions: &[&str],
    restored: &[&str],
) -> bool {
    let Some(pinned) = pinned else { return false };
    let mut changed = false;
    for &key in versions {
        if let (Some(slot), Some(v)) = (desired.attributes.get_mut(key), pinned.get(key)) {
            if slot != v {
                *slot = v.clone();
                changed = true;
            }
        }
    }
    for &key in restored {
        let now = desired.attributes.get(key);
        if now != pinned.get(key) {
            match pinned.get(key) {
                Some(v) => desired.attributes.insert(key.to_string(), v.clone()),
                None => desired.attributes.remove(key),
            };
            changed = true;
        }
    }
    changed
}

/// Whether `address` depends on a resource a rollback refused.
fn behind_refused(stack: &Stack, address: &Address, refused: &BTreeSet<Address>) -> bool {
    stack.spec.resource(address).is_some_and(|r| r.config.dependencies.iter().any(|d| refused.contains(d)))
}

/// Why a desired state is missing: `true` when the provider cannot restore a rollback's pin.
type DesiredError = (bool, ProviderError);

/// The attribute recording what a model's `artifact` reference resolved to at plan time.
pub const ARTIFACT_REF: &str = "artifact_ref";

/// Attributes only lineage knows (what the plan resolved or verified), never read back from a
/// live object: carried from the prior record into the live state, and into the applied record.
pub const RECORDED_ONLY: [&str; 4] = [ARTIFACT_REF, images::IMAGE_REF, signature::SIGNATURE, runs::PRODUCED_BY];

/// A config with its artifact reference resolved, and the resolution to record.
type Resolution = (ResourceConfig, Value);

/// A resource whose `artifact` is a reference another provider resolves (`models:/…`): its
/// config with the artifact resolved, and the resolution, recorded as [`ARTIFACT_REF`]. Under a
/// promotion or rollback, the recorded resolution is used instead of asking again.
async fn resolve_artifact(
    stack: &Stack,
    config: &ResourceConfig,
    pinned: Option<&mlops_provider_core::Attributes>,
) -> Result<Option<Resolution>, ProviderError> {
    let Some(reference) = config.str("artifact") else { return Ok(None) };
    let Some(entry) = stack.registry.entries().find(|e| e.references.iter().any(|s| reference.starts_with(s))) else {
        return Ok(None);
    };
    let recorded = pinned
        .and_then(|p| p.get(ARTIFACT_REF))
        .filter(|r| r.get("reference").and_then(Value::as_str) == Some(reference));
    let value = match recorded {
        Some(r) => r.clone(),
        None => {
            let resolver = stack.provider(entry.name).map_err(unavailable)?;
            let r = resolver.resolve(reference).await.map_err(|e| e.at(ValuePath::key("artifact")))?;
            serde_json::json!({ "reference": reference, "version": r.version, "uri": r.uri, "digest": r.digest })
        }
    };
    let mut config = config.clone();
    point_artifact(&mut config, &value);
    Ok(Some((config, value)))
}

/// Why a provider another resource needs (a resolver, a run's tracker) cannot be used, with the
/// provider's own reason rather than only its name.
pub(crate) fn unavailable(e: EngineError) -> ProviderError {
    match e {
        EngineError::ProviderUnavailable { name, source } => {
            ProviderError::new(source.kind, format!("the {name} provider: {}", source.message))
        }
        e => ProviderError::invalid(e.to_string()),
    }
}

/// A resource's `image` pinned by digest (see [`images`]) on a provider that runs images, unless
/// the spec says `images: { pin: tag }`: its config deploying `name@digest`, and the resolution to
/// record as [`images::IMAGE_REF`]. A promotion carries the digest recorded for the same image; a
/// rollback restores the recorded one, refused when its registry no longer has it.
async fn resolve_image(
    stack: &Stack,
    provider: &dyn Provider,
    config: &ResourceConfig,
    pinned: Option<&mlops_provider_core::Attributes>,
    restore: bool,
) -> Result<Option<Resolution>, DesiredError> {
    let by_tag = stack.spec.spec.images.as_ref().is_some_and(|i| i.pin == crate::spec::model::ImagePin::Tag);
    let Some(image) = config.str("image").filter(|_| provider.runs_images() && !by_tag) else { return Ok(None) };
    let recorded = pinned.and_then(|p| p.get(images::IMAGE_REF));
    let value = match recorded {
        Some(r) if restore => {
            // The provider's own registry first (ECR), else the OCI distribution API.
            let there = match provider.image_digest(&images::pinned(r).unwrap_or_default()).await {
                Ok(Some(_)) => true,
                Err(e) if e.kind == mlops_provider_core::ErrorKind::Invalid => false,
                Err(e) => return Err((false, e)),
                Ok(None) => images::still_there(r).await.map_err(|e| (false, e))?,
            };
            if !there {
                return Err((
                    true,
                    ProviderError::invalid(format!(
                        "the image {} ({} then) is no longer in its registry",
                        images::pinned(r).unwrap_or_default(),
                        r.get("image").and_then(Value::as_str).unwrap_or_default()
                    )),
                ));
            }
            r.clone()
        }
        Some(r) if r.get("image").and_then(Value::as_str) == Some(image) => r.clone(),
        _ => {
            let known = stack.digests.lock().unwrap_or_else(|e| e.into_inner()).get(image).cloned();
            let digest = match known {
                Some(d) => d,
                None => {
                    let d = match provider.image_digest(image).await.map_err(|e| (false, e))? {
                        Some(digest) => digest,
                        None => images::digest_of(image).await.map_err(|e| (false, e))?,
                    };
                    stack.digests.lock().unwrap_or_else(|e| e.into_inner()).insert(image.to_string(), d.clone());
                    d
                }
            };
            serde_json::json!({ "image": image, "digest": digest })
        }
    };
    let mut config = config.clone();
    point_image(&mut config, &value);
    Ok(Some((config, value)))
}

/// Points a resource's `image` at the digest it was resolved to (an [`images::IMAGE_REF`] value).
pub(crate) fn point_image(config: &mut ResourceConfig, image_ref: &Value) {
    if let Some(pinned) = images::pinned(image_ref) {
        config.body["image"] = Value::String(pinned);
    }
}

/// Points a resource's `artifact` at what its reference resolved to (an [`ARTIFACT_REF`] value).
pub(crate) fn point_artifact(config: &mut ResourceConfig, reference: &Value) {
    let uri = reference.get("uri").and_then(Value::as_str).unwrap_or_default();
    config.body["artifact"] = Value::String(uri.to_string());
}

pub async fn desired_states(
    stack: &Stack,
    selected: &BTreeSet<Address>,
    parallelism: usize,
    pins: &Pins,
    // A rollback: each provider confirms it can still produce the pinned versions.
    restore: bool,
    // What lineage recorded (a signature verified for a version still pinned is not read again).
    recorded: &State,
) -> Result<BTreeMap<Address, Desired>, EngineError> {
    let mut out: BTreeMap<Address, Desired> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut unrestorable = Vec::new();
    // Refused by a rollback: what depends on one is still asked (it may be refused on its own
    // account), but failing for want of it is not another error.
    let mut refused: BTreeSet<Address> = BTreeSet::new();
    for wave in waves(stack, selected) {
        let results: Vec<(Address, Result<Desired, DesiredError>)> = stream::iter(wave)
            .map(|a| {
                let out = &out;
                async move {
                    let r = stack.spec.resource(&a).expect("waves come from the spec");
                    let deps: Dependencies = r
                        .config
                        .dependencies
                        .iter()
                        .filter_map(|d| {
                            out.get(d).map(|des| {
                                (d.clone(), DependencyView { attributes: des.attributes.clone(), outputs: None })
                            })
                        })
                        .collect();
                    let resolved = match resolve_artifact(stack, &r.config, pins.get(&a)).await {
                        Ok(r) => r,
                        Err(e) => return (a, Err((false, e))),
                    };
                    let (config, reference) = match &resolved {
                        Some((config, reference)) => (config, Some(reference)),
                        None => (&r.config, None),
                    };
                    let res = match stack.provider(&r.config.provider) {
                        Ok(p) => {
                            async {
                                let rt = p.type_of(a.kind).map_err(|e| (false, e))?;
                                let imaged = resolve_image(stack, &*p, config, pins.get(&a), restore).await?;
                                let config = imaged.as_ref().map_or(config, |(c, _)| c);
                                let mut d = rt.desired(config, &deps).await.map_err(|e| (false, e))?;
                                let recorded = recorded.resources.get(&a).map(|r| &r.attributes);
                                let base = stack.spec.base_dir();
                                if let Some(verified) = signature::of(rt, config, &d, &r.config.body, base, recorded)
                                    .await
                                    .map_err(|e| (false, e))?
                                {
                                    d.attributes.insert(signature::SIGNATURE.into(), verified);
                                }
                                let artifact_digest = d.attributes.get("artifact_digest");
                                if let Some(run) =
                                    runs::resolve(stack, &r.config.body, pins.get(&a), restore, artifact_digest)
                                        .await
                                        .map_err(|e| (false, e.at(ValuePath::key(runs::PRODUCED_BY))))?
                                {
                                    d.attributes.insert(runs::PRODUCED_BY.into(), run);
                                }
                                if let Some(reference) = reference {
                                    d.attributes.insert(ARTIFACT_REF.into(), reference.clone());
                                }
                                if let Some((_, image)) = imaged {
                                    d.attributes.insert(images::IMAGE_REF.into(), image);
                                }
                                // Pinned before dependents see it: an endpoint follows its promoted model.
                                let restored = if restore { rt.restored_attributes() } else { &[] };
                                if pin(&mut d, pins.get(&a), p.version_attributes(), restored) && restore {
                                    rt.restorable(&r.config, &d, &deps).await.map_err(|e| (true, e))?;
                                }
                                Ok(d)
                            }
                            .await
                        }
                        Err(e) => Err((false, ProviderError::invalid(e.to_string()))),
                    };
                    (a, res)
                }
            })
            .buffer_unordered(parallelism.max(1))
            .collect()
            .await;
        for (a, r) in results {
            match r {
                Ok(d) => {
                    out.insert(a, d);
                }
                Err((true, e)) => {
                    refused.insert(a.clone());
                    unrestorable.push((a, e));
                }
                Err((false, _)) if behind_refused(stack, &a, &refused) => {
                    refused.insert(a);
                }
                Err((false, e)) => errors.push((a, e)),
            }
        }
        if !errors.is_empty() {
            break;
        }
    }
    if !errors.is_empty() {
        // A backend that cannot be reached is a read failure; anything else is the inputs'.
        let unreachable = errors.iter().any(|(_, e)| {
            matches!(e.kind, mlops_provider_core::ErrorKind::Unavailable | mlops_provider_core::ErrorKind::Timeout)
        });
        return Err(if unreachable { EngineError::Refresh(errors) } else { EngineError::Desired(errors) });
    }
    // Every resource is checked before refusing: the refusal names all that cannot be restored.
    if !unrestorable.is_empty() {
        return Err(EngineError::Unrestorable(unrestorable));
    }
    Ok(out)
}

/// The recorded states of the lineage tip, shared: an unchanged resource's live state is the
/// same value as its prior (see [`refresh`]).
pub type Priors = BTreeMap<Address, Arc<RecordedState>>;

/// Live states read by [`refresh`]; `None` for what does not exist.
pub type LiveStates = BTreeMap<Address, Option<Arc<RecordedState>>>;

/// What the planner compares the desired states with: the recorded and the live states.
pub struct Observed {
    pub priors: Priors,
    pub live: LiveStates,
}

/// Moves the recorded attributes and outputs out of `state`'s records (which keep the rest:
/// provider, dependencies, inputs) into shared priors.
pub fn take_priors(state: &mut State) -> Priors {
    state
        .resources
        .iter_mut()
        .map(|(a, r)| {
            let s = RecordedState {
                attributes: std::mem::take(&mut r.attributes),
                outputs: std::mem::take(&mut r.outputs),
            };
            (a.clone(), Arc::new(s))
        })
        .collect()
}

/// The priors of some addresses, copied from `state` (which keeps its records whole).
pub fn priors_of<'a>(state: &State, addresses: impl IntoIterator<Item = &'a Address>) -> Priors {
    addresses
        .into_iter()
        .filter_map(|a| {
            let r = state.resources.get(a)?;
            Some((a.clone(), Arc::new(RecordedState { attributes: r.attributes.clone(), outputs: r.outputs.clone() })))
        })
        .collect()
}

/// Live states of `addresses`, read concurrently. A live state equal to its prior is returned as
/// the prior itself, so an unchanged resource is held once however large the stack.
pub async fn refresh(
    stack: &Stack,
    state: &State,
    priors: &Priors,
    addresses: impl IntoIterator<Item = Address>,
    desired: &BTreeMap<Address, Desired>,
    parallelism: usize,
) -> Result<LiveStates, EngineError> {
    type Read = Result<Option<Arc<RecordedState>>, ProviderError>;
    let results: Vec<(Address, Read)> = stream::iter(addresses)
        .map(|a| async move {
            let prior = priors.get(&a);
            let provider = match stack.spec.resource(&a) {
                Some(r) => stack.provider(&r.config.provider),
                None => match state.resources.get(&a) {
                    Some(rec) => stack.provider(&rec.provider),
                    None => Err(EngineError::UnknownTarget(a.to_string(), None)),
                },
            };
            let secrets = &stack.spec.secrets;
            let res = match provider {
                Ok(p) => async { p.type_of(a.kind)?.read(&a, prior.map(|p| &**p), desired.get(&a)).await }.await.map(
                    |live| {
                        live.map(|l| {
                            let mut state = l;
                            // What a reference resolved to is known only to lineage: the live object
                            // holds the bytes, not the name they were resolved from.
                            for key in RECORDED_ONLY {
                                if let Some(r) = prior.and_then(|p| p.attributes.get(key)) {
                                    state.attributes.insert(key.into(), r.clone());
                                }
                            }
                            // Values read back are masked as the markers the spec and lineage hold.
                            let places: Vec<&mlops_provider_core::Attributes> =
                                [prior.map(|p| &p.attributes), desired.get(&a).map(|d| &d.attributes)]
                                    .into_iter()
                                    .flatten()
                                    .collect();
                            let known = crate::secrets::markers_of(places.iter().copied());
                            if !secrets.is_empty() || !known.is_empty() {
                                crate::secrets::mask_state(secrets, &mut state, &known, &places);
                            }
                            match prior {
                                Some(p) if **p == state => p.clone(),
                                _ => Arc::new(state),
                            }
                        })
                    },
                ),
                Err(e) => Err(ProviderError::invalid(e.to_string())),
            };
            (a, res)
        })
        .buffer_unordered(parallelism.max(1))
        .collect()
        .await;
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for (a, r) in results {
        match r {
            Ok(l) => {
                out.insert(a, l);
            }
            Err(e) => errors.push((a, e)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        errors.sort_by(|a, b| a.0.cmp(&b.0));
        Err(EngineError::Refresh(errors))
    }
}

/// Builds the plan: desired (spec) vs live (refresh) vs last applied (lineage).
/// The state is taken by value: each recorded resource moves into its change as the prior state
/// (a caller that needs the state afterwards passes a clone).
pub async fn plan(stack: &Stack, state: State, source: SourceInfo, request: &PlanRequest) -> Result<Plan, EngineError> {
    let selected = select(stack, &state, &request.targets)?;
    let no_pins = Pins::new();
    let pins = request.promotion.as_ref().map(|(_, p)| p).unwrap_or(&no_pins);
    let restore = request.promotion.as_ref().is_some_and(|(p, _)| p.rollback);
    let desired = desired_states(stack, &selected, request.parallelism, pins, restore, &state).await?;
    let mut state = state;
    let priors = take_priors(&mut state);
    let live = refresh(stack, &state, &priors, selected.iter().cloned(), &desired, request.parallelism).await?;
    Ok(assemble(stack, state, source, request, &selected, desired, Observed { priors, live }))
}

/// The pure part of planning: from desired, live and prior states to a plan.
pub fn assemble(
    stack: &Stack,
    // Taken by value: each recorded resource moves into its change, never copied.
    mut state: State,
    source: SourceInfo,
    request: &PlanRequest,
    selected: &BTreeSet<Address>,
    // Taken by value: each desired, recorded and live state moves into its change, never copied.
    mut desired: BTreeMap<Address, Desired>,
    observed: Observed,
) -> Plan {
    let Observed { mut priors, mut live } = observed;
    let mut changes = Vec::new();
    let mut drift = Vec::new();
    let spec_order = stack.spec.resources.iter().map(|r| &r.config.address).filter(|a| selected.contains(*a));
    let leaving: Vec<Address> =
        state.resources.keys().filter(|a| selected.contains(*a) && stack.spec.resource(a).is_none()).cloned().collect();
    for address in spec_order.chain(leaving.iter()) {
        let spec_res = stack.spec.resource(address);
        let prior = state.resources.remove(address);
        let live_state = live.remove(address).flatten();
        let want = desired.remove(address);
        let decision = diff::decide(want.as_ref(), live_state.as_deref());
        let prior_state = priors.remove(address);
        let prior = prior.map(|p| {
            let ResourceRecord { provider, provider_config, depends_on, .. } = p;
            (provider, provider_config, depends_on)
        });
        // Recorded under other settings of the same provider, and nothing under the current ones:
        // moved by the spec, not deleted behind mlops's back.
        let moved = match (&prior, &live_state) {
            (Some((provider, recorded, _)), None) if stack.configures(provider) => {
                let now = stack.provider_block(provider);
                (**recorded != *now && !recorded.is_null()).then(|| ((**recorded).clone(), (*now).clone()))
            }
            _ => None,
        };
        if let Some(p) = &prior_state {
            match &live_state {
                None if moved.is_some() => {}
                None => drift.push(Drift { address: address.clone(), kind: DriftKind::Deleted, attributes: vec![] }),
                Some(l) if Arc::ptr_eq(p, l) => {}
                Some(l) => {
                    let d = diff::drift(p, l);
                    if !d.is_empty() {
                        drift.push(Drift { address: address.clone(), kind: DriftKind::Changed, attributes: d });
                    }
                }
            }
        }
        // A resource that left the spec and is already gone needs nothing but forgetting.
        let mut decision = decision;
        if spec_res.is_none() && live_state.is_none() {
            decision.attributes.clear();
        }
        let (provider, provider_config, depends_on) = match spec_res {
            Some(r) => {
                (r.config.provider.clone(), stack.provider_block(&r.config.provider), r.config.dependencies.clone())
            }
            None => prior.expect("leaving resources come from lineage"),
        };
        // What a delete destroys is the provider's to say, per kind and per live object.
        let delete_reason = match (&live_state, decision.action) {
            (Some(live), Action::Delete) => stack
                .provider(&provider)
                .ok()
                .and_then(|p| p.resource(address.kind)?.delete_destroys_data(address, live)),
            _ => None,
        };
        let data_destroying = decision.data_destroying || delete_reason.is_some();
        let mut change = ResourceChange {
            address: address.clone(),
            provider,
            action: decision.action,
            depends_on,
            attributes: decision.attributes,
            replace_reasons: decision.replace_reasons,
            data_destroying,
            create_before_destroy: false,
            tags: Vec::new(),
            desired: None,
            force_new: Default::default(),
            subset: Default::default(),
            warnings: Vec::new(),
            live_fingerprint: plan::fingerprint(live_state.as_deref()),
            live: live_state,
            prior: prior_state,
            provider_config,
        };
        // Tags read the desired attributes from the change, the rest (waits, conflicts) from `want`.
        let mut want = want;
        change.desired = want.as_mut().map(|d| std::mem::take(&mut d.attributes));
        if let Some(w) = &mut want {
            change.force_new = w.force_new.clone();
            change.subset = w.subset.clone();
            change.create_before_destroy = change.action == Action::Replace && w.create_before_destroy;
            change.warnings = std::mem::take(&mut w.warnings);
        }
        let provider = stack.providers.get(&change.provider);
        let traffic = provider.map(|p| p.traffic_attributes()).unwrap_or_default();
        change.tags = tags::tags(&change, want.as_ref(), traffic);
        if let Some(reason) = delete_reason {
            for t in &mut change.tags {
                if let plan::ChangeTag::DataDestroying { reason: r } = t {
                    *r = reason.clone();
                }
            }
        }
        let rollout = spec_res.and_then(|r| mlops_provider_core::rollout::Rollout::of(&r.config));
        let rolled = provider.map(|p| p.rollout_attributes()).unwrap_or_default();
        change.tags.extend(tags::rollout(&change, rollout.as_ref(), rolled));
        if let Some((from, to)) = moved {
            change.tags.push(plan::ChangeTag::ProviderMoved { from, to });
        }
        if let Some((p, _)) = request.promotion.as_ref().filter(|(p, _)| p.rollback) {
            if change.action != Action::NoOp {
                let leaves = provider
                    .and_then(|p| p.resource(change.address.kind))
                    .and_then(|t| t.rollback_leaves())
                    .map(str::to_string);
                change.tags.push(plan::ChangeTag::Rollback { to_commit: p.lineage_commit.clone(), leaves });
            }
        }
        changes.push(change);
    }
    let summary = Plan::summarize(&changes, &drift);
    Plan {
        format_version: plan::PLAN_FORMAT_VERSION,
        mlops_version: env!("CARGO_PKG_VERSION").to_string(),
        project: stack.project().to_string(),
        environment: stack.environment.clone(),
        created_at: plan::now_rfc3339(),
        source,
        lineage: LineageBase {
            ref_name: crate::lineage::ref_name(stack.project(), &stack.environment),
            base: state.tip.clone(),
        },
        targets: request.targets.iter().map(|t| t.to_string()).collect(),
        promotion: request.promotion.as_ref().map(|(p, _)| p.clone()),
        summary,
        changes,
        drift,
    }
}

/// The desired state a plan's change decided, for the provider: attributes, what forces a
/// replace and the subset semantics exactly as planned.
pub fn desired_of(change: &ResourceChange) -> Desired {
    Desired {
        attributes: change.desired.clone().unwrap_or_default(),
        force_new: change.force_new.clone(),
        replace_destroys_data: change.data_destroying,
        create_before_destroy: change.create_before_destroy,
        subset: change.subset.clone(),
        expected_wait_secs: None,
        conflicts: Vec::new(),
        warnings: Vec::new(),
    }
}
