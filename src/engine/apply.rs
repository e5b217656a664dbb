//! Apply: only the plan's changes, in dependency order, independent ones in parallel. A failure
//! stops its dependents; everything else goes on; the report says what happened to each.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use mlops_provider_core::{
    Address, ApplyOptions, ApplyRequest, Attributes, Dependencies, DependencyView, ErrorKind, LiveState, Operation,
    PriorState, Progress, Value,
};

use super::{EngineError, Stack, desired_states, refresh};
use crate::lineage::{ResourceRecord, State};
use crate::plan::{self, Action, Outcome, OutcomeStatus, Outcomes, Plan, ResourceChange};

/// What the apply tells its caller as it goes.
#[derive(Clone, Debug)]
pub enum Event {
    Started {
        address: Address,
        action: Action,
    },
    Progress {
        address: Address,
        message: String,
    },
    /// Bytes moved of a transfer (a dataset upload), `done` of `total`.
    Transfer {
        address: Address,
        done: u64,
        total: u64,
    },
    StillRunning {
        address: Address,
        action: Action,
        elapsed: Duration,
    },
    Finished {
        address: Address,
        action: Action,
        elapsed: Duration,
    },
    Failed {
        address: Address,
        action: Action,
        error: String,
    },
    Skipped {
        address: Address,
        action: Action,
        because: Address,
    },
    /// A change is done (or failed): what the journal keeps until lineage records it.
    Outcome {
        address: Address,
        outcome: Outcome,
        record: Option<ResourceRecord>,
    },
}

pub trait EventSink: Send + Sync {
    fn event(&self, event: Event);
}

impl<F: Fn(Event) + Send + Sync> EventSink for F {
    fn event(&self, event: Event) {
        self(event)
    }
}

/// How often a long step reports that it is still running.
pub const STILL_RUNNING_EVERY: Duration = Duration::from_secs(10);

pub struct ApplyReport {
    pub outcomes: Outcomes,
    /// The state after the apply: what lineage records.
    pub records: BTreeMap<Address, ResourceRecord>,
    pub applied: usize,
    pub failed: usize,
    /// Failed changes that still changed something (recorded with what is live after them).
    pub changed_anyway: usize,
    /// Stopped by an interrupt: the changes not started are reported as skipped.
    pub interrupted: bool,
}

impl ApplyReport {
    pub fn partial(&self) -> bool {
        self.failed > 0
    }

    /// Whether lineage has anything new to record.
    pub fn changed(&self) -> bool {
        self.applied > 0 || self.changed_anyway > 0
    }
}

/// Refuses a plan that no longer matches the world: a changed spec, a moved lineage, a live object
/// changed since the plan, or inputs (source files, environment) that now give other desired values.
pub async fn check_fresh(
    stack: &Stack,
    state: &State,
    plan: &Plan,
    parallelism: usize,
    pins: &super::Pins,
) -> Result<(), EngineError> {
    let mut reasons = Vec::new();
    if plan.format_version != plan::PLAN_FORMAT_VERSION {
        return Err(EngineError::PlanFile(format!(
            "the plan has format version {}; this mlops reads version {}",
            plan.format_version,
            plan::PLAN_FORMAT_VERSION
        )));
    }
    if plan.project != stack.project() || plan.environment != stack.environment {
        return Err(EngineError::PlanFile(format!(
            "the plan is for {}/{}, but this stack is {}/{}",
            plan.project,
            plan.environment,
            stack.project(),
            stack.environment
        )));
    }
    if plan.source.spec_digest != stack.spec.digest {
        reasons.push(format!("the spec {} changed since the plan was made", plan.source.spec));
    }
    if plan.lineage.base != state.tip {
        reasons.push(format!(
            "lineage moved since the plan was made (planned against {}, now {}): another apply ran",
            plan.lineage.base.as_deref().unwrap_or("nothing"),
            state.tip.as_deref().unwrap_or("nothing")
        ));
    }
    // Values read from other stacks' lineage: an upstream that recorded another value since the
    // plan was made makes it stale, named (the inputs check below would only say "inputs").
    for then in &plan.source.upstreams {
        let assumed = match &then.planned {
            Some(p) if !p.known => format!(
                "was left unknown by the plan of {} it assumed ({}), to be known once that was applied",
                then.stack, p.plan
            ),
            Some(p) => format!("was {} in the plan of {} it assumed ({})", then.value, then.stack, p.plan),
            None => format!("was {} when the plan was made", then.value),
        };
        match stack.spec.upstreams.iter().find(|u| u.reference == then.reference) {
            Some(now) if now.value == then.value && then.planned.as_ref().is_none_or(|p| p.known) => {}
            Some(now) => reasons.push(format!(
                "{} {assumed}; {} has since recorded {} (lineage commit {})",
                then.reference,
                now.stack,
                now.value,
                &now.lineage_commit[..12.min(now.lineage_commit.len())]
            )),
            None => reasons.push(format!("the spec no longer uses {}", then.reference)),
        }
    }
    // The provider configuration is the current spec's, never the plan file's: a plan whose
    // recorded configuration differs (edited, or the block changed since) is stale.
    for c in &plan.changes {
        let current = stack.provider_block(&c.provider);
        if *c.provider_config != *current {
            reasons.push(format!(
                "the configuration of provider `{}` for {} is not the spec's (the plan file says {}, the spec {})",
                c.provider, c.address, c.provider_config, current
            ));
        }
    }
    let touched: Vec<&ResourceChange> = plan.changes.iter().filter(|c| c.action != Action::NoOp).collect();
    // Read through the plan's desired states, so providers compare the same fields as at plan time.
    let planned: BTreeMap<Address, mlops_provider_core::Desired> =
        touched.iter().filter(|c| c.desired.is_some()).map(|c| (c.address.clone(), super::desired_of(c))).collect();
    let priors = super::priors_of(state, touched.iter().map(|c| &c.address));
    let live = refresh(stack, state, &priors, touched.iter().map(|c| c.address.clone()), &planned, parallelism).await?;
    for c in &touched {
        let now = plan::fingerprint(live.get(&c.address).and_then(|l| l.as_deref()));
        if now != c.live_fingerprint {
            reasons.push(format!("{} changed in the live world since the plan was made", c.address));
        }
    }
    if reasons.is_empty() {
        // Same spec bytes can still give other values (a source file edited, an env var changed).
        let selected: BTreeSet<Address> =
            plan.changes.iter().filter(|c| c.desired.is_some()).map(|c| c.address.clone()).collect();
        let restore = plan.promotion.as_ref().is_some_and(|p| p.rollback);
        let fresh = desired_states(stack, &selected, parallelism, pins, restore, state).await?;
        for c in &touched {
            if let Some(want) = &c.desired {
                let now = fresh.get(&c.address).map(|d| &d.attributes);
                let then = want.get(super::ARTIFACT_REF);
                if let (Some(then), Some(moved)) = (then, now.and_then(|a| a.get(super::ARTIFACT_REF))) {
                    if then.get("version") != moved.get("version") {
                        reasons.push(format!(
                            "{} now names version {} of the model, not version {} as planned ({})",
                            then["reference"].as_str().unwrap_or_default(),
                            moved["version"].as_str().unwrap_or_default(),
                            then["version"].as_str().unwrap_or_default(),
                            c.address
                        ));
                        continue;
                    }
                }
                let (then, moved) =
                    (want.get(super::images::IMAGE_REF), now.and_then(|a| a.get(super::images::IMAGE_REF)));
                if let (Some(then), Some(moved)) = (then, moved) {
                    if then.get("digest") != moved.get("digest") {
                        reasons.push(format!(
                            "the image {} now names {}, not {} as planned ({})",
                            then["image"].as_str().unwrap_or_default(),
                            moved["digest"].as_str().unwrap_or_default(),
                            then["digest"].as_str().unwrap_or_default(),
                            c.address
                        ));
                        continue;
                    }
                }
                if now != Some(want) {
                    reasons.push(format!(
                        "the inputs of {} (source files, artifacts or environment variables) changed since the plan was made",
                        c.address
                    ));
                }
            }
        }
    }
    if reasons.is_empty() { Ok(()) } else { Err(EngineError::Stale(reasons)) }
}

struct ResourceProgress<'a> {
    address: Address,
    sink: &'a dyn EventSink,
    secrets: &'a crate::secrets::Secrets,
}

impl Progress for ResourceProgress<'_> {
    fn report(&self, message: &str) {
        self.sink.event(Event::Progress { address: self.address.clone(), message: self.secrets.mask_str(message) });
    }
    fn transfer(&self, done: u64, total: u64) {
        self.sink.event(Event::Transfer { address: self.address.clone(), done, total });
    }
}

fn reveal(secrets: &crate::secrets::Secrets, attributes: &Attributes) -> Attributes {
    attributes.iter().map(|(k, v)| (k.clone(), secrets.reveal(v))).collect()
}

/// Applies the plan's changes. Never fails as a whole: each change's outcome is in the report.
pub async fn apply(
    stack: &Stack,
    state: &State,
    plan: &Plan,
    parallelism: usize,
    options: &ApplyOptions,
    // Once set, no change starts; those running finish and are reported.
    interrupt: &std::sync::atomic::AtomicBool,
    sink: &dyn EventSink,
) -> ApplyReport {
    let changes: BTreeMap<&Address, &ResourceChange> =
        plan.changes.iter().filter(|c| c.action != Action::NoOp).map(|c| (&c.address, c)).collect();

    // waits_for[v]: changes that must finish before v starts.
    let mut waits_for: BTreeMap<&Address, BTreeSet<&Address>> = changes.keys().map(|a| (*a, BTreeSet::new())).collect();
    let depends = |c: &ResourceChange| -> Vec<Address> {
        let mut d = c.depends_on.clone();
        if let Some(p) = state.resources.get(&c.address) {
            d.extend(p.depends_on.iter().cloned());
        }
        d
    };
    for (addr, c) in &changes {
        for dep in depends(c) {
            let Some((dep_addr, dep_change)) = changes.get_key_value(&dep) else { continue };
            if c.action == Action::Delete && dep_change.action == Action::Delete {
                // Delete dependents before what they depend on.
                waits_for.get_mut(*dep_addr).expect("every change has an entry").insert(*addr);
            } else if c.action != Action::Delete && dep_change.action != Action::Delete {
                waits_for.get_mut(*addr).expect("every change has an entry").insert(*dep_addr);
            }
        }
    }
    // Whatever still (or newly) depends on a deleted resource moves off it first.
    let mut depended_on_by: BTreeMap<Address, Vec<&Address>> = BTreeMap::new();
    for (addr, c) in &changes {
        if c.action != Action::Delete {
            for dep in depends(c) {
                depended_on_by.entry(dep).or_default().push(*addr);
            }
        }
    }
    for (addr, c) in &changes {
        if c.action == Action::Delete {
            for other in depended_on_by.get(*addr).into_iter().flatten() {
                waits_for.get_mut(*addr).expect("every change has an entry").insert(*other);
            }
        }
    }
    // The other direction, and how many prerequisites each change still waits for.
    let mut unblocks: BTreeMap<&Address, Vec<&Address>> = BTreeMap::new();
    for (a, w) in &waits_for {
        for d in w {
            unblocks.entry(*d).or_default().push(*a);
        }
    }
    let mut waiting: BTreeMap<&Address, usize> = waits_for.iter().map(|(a, w)| (*a, w.len())).collect();
    let mut ready: std::collections::VecDeque<&Address> =
        waiting.iter().filter(|(_, n)| **n == 0).map(|(a, _)| *a).collect();

    let outputs: Mutex<BTreeMap<Address, Attributes>> = Mutex::new(BTreeMap::new());
    let mut outcomes = Outcomes::new();
    let mut records: BTreeMap<Address, ResourceRecord> = state.resources.clone();
    // Resources that match the spec but are not recorded as they are live (a lost lineage, an
    // apply killed between its change and its record) are recorded as live.
    let unrecorded: Vec<&ResourceChange> = plan.changes.iter().filter(|c| c.is_to_record()).collect();
    let mut adopted = 0;
    for c in unrecorded {
        if let Some(live) = &c.live {
            let r = record_of(c, (**live).clone(), &records, &outputs);
            records.insert(c.address.clone(), r);
            adopted += 1;
        }
    }
    let mut blocked: BTreeMap<&Address, Address> = BTreeMap::new();
    let mut started: BTreeSet<&Address> = BTreeSet::new();
    let mut running = FuturesUnordered::new();
    let (mut applied, mut failed, mut changed_anyway) = (0usize, 0usize, adopted);

    loop {
        // Start what is ready (every prerequisite done), up to the parallelism.
        while running.len() < parallelism.max(1) && !interrupt.load(std::sync::atomic::Ordering::SeqCst) {
            let Some(a) = ready.pop_front() else { break };
            if blocked.contains_key(a) {
                continue;
            }
            started.insert(a);
            running.push(run_one(stack, state, plan, changes[a], &outputs, options, sink));
        }
        let Some((address, result)) = running.next().await else { break };
        let (addr_ref, change) = changes.get_key_value(&address).map(|(k, c)| (*k, *c)).expect("from the plan");
        match result {
            Ok(live) => {
                applied += 1;
                for next in unblocks.get(addr_ref).into_iter().flatten() {
                    let n = waiting.get_mut(*next).expect("every change has an entry");
                    *n -= 1;
                    if *n == 0 {
                        ready.push_back(*next);
                    }
                }
                let outcome = Outcome::applied(change.action);
                outcomes.insert(address.to_string(), outcome.clone());
                let record = match live {
                    None => {
                        records.remove(&address);
                        None
                    }
                    Some(live) => {
                        outputs.lock().unwrap_or_else(|e| e.into_inner()).insert(address.clone(), live.outputs.clone());
                        let r = record_of(change, live, &records, &outputs);
                        records.insert(address.clone(), r.clone());
                        Some(r)
                    }
                };
                sink.event(Event::Outcome { address: address.clone(), outcome, record });
            }
            Err(Failure { message, kind, left }) => {
                failed += 1;
                let outcome = Outcome {
                    action: change.action,
                    status: OutcomeStatus::Failed,
                    error: Some(message),
                    kind: Some(kind),
                };
                outcomes.insert(address.to_string(), outcome.clone());
                // Something changed before the failure (e.g. created, never ready): record what is live.
                let record = left.map(|live| {
                    changed_anyway += 1;
                    let r = record_of(change, live, &records, &outputs);
                    records.insert(address.clone(), r.clone());
                    r
                });
                sink.event(Event::Outcome { address: address.clone(), outcome, record });
                // Everything waiting on it, directly or not, is skipped.
                let mut todo = vec![addr_ref];
                while let Some(x) = todo.pop() {
                    for w in unblocks.get(x).into_iter().flatten() {
                        if !blocked.contains_key(*w) && !started.contains(*w) {
                            blocked.insert(*w, address.clone());
                            todo.push(*w);
                        }
                    }
                }
            }
        }
    }
    for (a, because) in &blocked {
        let c = changes[a];
        failed += 1;
        sink.event(Event::Skipped { address: (*a).clone(), action: c.action, because: because.clone() });
        outcomes.insert(
            a.to_string(),
            Outcome {
                action: c.action,
                status: OutcomeStatus::Skipped,
                error: Some(format!("{because} failed")),
                kind: None,
            },
        );
    }
    let interrupted = interrupt.load(std::sync::atomic::Ordering::SeqCst);
    if interrupted {
        for (a, c) in &changes {
            if let std::collections::btree_map::Entry::Vacant(slot) = outcomes.entry(a.to_string()) {
                failed += 1;
                slot.insert(Outcome {
                    action: c.action,
                    status: OutcomeStatus::Skipped,
                    error: Some("not started: the apply was interrupted".into()),
                    kind: None,
                });
            }
        }
    }
    changed_anyway += finish_deposed(stack, plan, &outcomes, &mut records, sink).await;
    // A commit is made anyway: every resource refreshed is recorded as it is live, also what the
    // backend moved by itself (an autoscaler's count, a status), so lineage is the live state.
    if applied + changed_anyway > 0 {
        for c in plan.changes.iter().filter(|c| c.action == Action::NoOp && !c.is_to_record()) {
            let (Some(live), Some(record)) = (&c.live, records.get_mut(&c.address)) else { continue };
            if record.attributes != live.attributes || record.outputs != live.outputs {
                record.attributes = live.attributes.clone();
                record.outputs = live.outputs.clone();
            }
        }
    }
    ApplyReport { outcomes, records, applied, failed, changed_anyway, interrupted }
}

/// Create-before-destroy, second half: what replacements left behind (`outputs.deposed`) is
/// removed once every change depending on its resource went through. Returns how many resources
/// it cleaned; what it cannot remove stays on record for the next apply.
async fn finish_deposed(
    stack: &Stack,
    plan: &Plan,
    outcomes: &Outcomes,
    records: &mut BTreeMap<Address, ResourceRecord>,
    sink: &dyn EventSink,
) -> usize {
    let pending: Vec<Address> = records
        .iter()
        .filter(|(_, r)| r.outputs.get("deposed").and_then(Value::as_array).is_some_and(|l| !l.is_empty()))
        .map(|(a, _)| a.clone())
        .collect();
    let mut cleaned = 0;
    for address in pending {
        let dependents_done = plan
            .changes
            .iter()
            .filter(|c| c.depends_on.contains(&address))
            .all(|c| outcomes.get(&c.address.to_string()).is_none_or(|o| o.status == OutcomeStatus::Applied));
        if !dependents_done {
            continue;
        }
        let record = records[&address].clone();
        let provider = match stack.spec.resource(&address) {
            Some(r) => stack.provider(&r.config.provider),
            None => stack.provider(&record.provider),
        };
        let Ok(provider) = provider else { continue };
        let state = LiveState { attributes: record.attributes.clone(), outputs: record.outputs.clone() };
        let progress = ResourceProgress { address: address.clone(), sink, secrets: &stack.spec.secrets };
        match async { provider.type_of(address.kind)?.finish(&address, &state, &progress).await }.await {
            Ok(done) => {
                if done.outputs != record.outputs {
                    cleaned += 1;
                }
                records.insert(address, ResourceRecord { outputs: done.outputs, ..record });
            }
            Err(e) => sink.event(Event::Progress {
                address: address.clone(),
                message: format!("could not remove what its replacement left behind yet: {e}"),
            }),
        }
    }
    cleaned
}

/// The record of an object adopted by `import`: as an apply records it, with the versions its
/// dependencies have in lineage as its inputs.
pub(crate) fn record_imported(
    stack: &Stack,
    config: &mlops_provider_core::ResourceConfig,
    live: plan::RecordedState,
    state: &State,
) -> ResourceRecord {
    let inputs = inputs_of(&config.dependencies, &|d| state.resources.get(d).map(|r| r.outputs.clone()));
    ResourceRecord {
        address: config.address.clone(),
        provider: config.provider.clone(),
        provider_config: stack.provider_block(&config.provider),
        attributes: live.attributes,
        outputs: live.outputs,
        depends_on: config.dependencies.clone(),
        inputs,
    }
}

/// Each dependency's version (from its outputs), as a record's `inputs`.
fn inputs_of(depends_on: &[Address], outputs_of: &dyn Fn(&Address) -> Option<Attributes>) -> BTreeMap<String, Value> {
    depends_on
        .iter()
        .map(|d| (d.to_string(), outputs_of(d).as_ref().and_then(plan::version_in).cloned().unwrap_or(Value::Null)))
        .collect()
}

fn record_of(
    change: &ResourceChange,
    live: plan::RecordedState,
    records: &BTreeMap<Address, ResourceRecord>,
    outputs: &Mutex<BTreeMap<Address, Attributes>>,
) -> ResourceRecord {
    let outs = outputs.lock().unwrap_or_else(|e| e.into_inner());
    let inputs =
        inputs_of(&change.depends_on, &|d| outs.get(d).or_else(|| records.get(d).map(|r| &r.outputs)).cloned());
    ResourceRecord {
        address: change.address.clone(),
        provider: change.provider.clone(),
        provider_config: change.provider_config.clone(),
        attributes: live.attributes,
        outputs: live.outputs,
        depends_on: change.depends_on.clone(),
        inputs,
    }
}

/// Applies one change; `Ok(None)` for a delete.
/// A change that did not apply: why, what kind of failure, and what is live if it changed anything.
struct Failure {
    message: String,
    kind: ErrorKind,
    left: Option<plan::RecordedState>,
}

impl Failure {
    fn new(message: String, kind: ErrorKind) -> Self {
        Failure { message, kind, left: None }
    }
}

async fn run_one<'a>(
    stack: &'a Stack,
    state: &'a State,
    plan: &'a Plan,
    change: &'a ResourceChange,
    outputs: &'a Mutex<BTreeMap<Address, Attributes>>,
    options: &'a ApplyOptions,
    sink: &'a dyn EventSink,
) -> (Address, Result<Option<plan::RecordedState>, Failure>) {
    let address = change.address.clone();
    sink.event(Event::Started { address: address.clone(), action: change.action });
    let started = Instant::now();
    let secrets = &stack.spec.secrets;
    let progress = ResourceProgress { address: address.clone(), sink, secrets };
    let places: Vec<&Attributes> = [
        change.desired.as_ref(),
        change.prior.as_ref().map(|p| &p.attributes),
        change.live.as_ref().map(|l| &l.attributes),
    ]
    .into_iter()
    .flatten()
    .collect();
    let known = crate::secrets::markers_of(places.iter().copied());
    let work = async {
        let recorded = state.resources.get(&address);
        let provider = match stack.spec.resource(&address) {
            Some(r) => stack.provider(&r.config.provider),
            None => stack.provider(&change.provider),
        }
        .map_err(|e| Failure::new(e.to_string(), ErrorKind::Invalid))?;
        let prior = recorded
            .map(|r| PriorState { attributes: r.attributes.clone(), outputs: r.outputs.clone() })
            .or_else(|| change.live.as_deref().cloned());
        if change.action == Action::Delete {
            if change.live.is_none() {
                return Ok(None); // Already gone: only forget it.
            }
            provider
                .type_of(address.kind)
                .map_err(|e| Failure::new(e.to_string(), e.kind))?
                .delete(&address, &prior.unwrap_or_default(), &progress)
                .await
                .map_err(|e| Failure::new(e.to_string(), e.kind))?;
            return Ok(None);
        }
        let resource = stack
            .spec
            .resource(&address)
            .ok_or_else(|| Failure::new(format!("{address} is not in the spec"), ErrorKind::Invalid))?;
        let deps: Dependencies = {
            let outs = outputs.lock().unwrap_or_else(|e| e.into_inner());
            resource
                .config
                .dependencies
                .iter()
                .map(|d| {
                    let pc = plan.change(d);
                    let attributes =
                        pc.and_then(|c| c.desired.as_ref()).map(|a| reveal(secrets, a)).unwrap_or_default();
                    let o = outs
                        .get(d)
                        .cloned()
                        .or_else(|| pc.and_then(|c| c.live.as_ref()).map(|l| l.outputs.clone()))
                        .or_else(|| state.resources.get(d).map(|r| r.outputs.clone()));
                    (d.clone(), DependencyView { attributes, outputs: o })
                })
                .collect()
        };
        // Secrets are put back only into what the provider gets to apply.
        let mut desired = super::desired_of(change);
        desired.attributes = reveal(secrets, &desired.attributes);
        let mut config = mlops_provider_core::ResourceConfig {
            body: secrets.reveal(&resource.config.body),
            ..resource.config.clone()
        };
        // A resolved artifact reference: the provider applies what the plan resolved it to.
        if let Some(reference) = desired.attributes.get(super::ARTIFACT_REF) {
            super::point_artifact(&mut config, reference);
        }
        if let Some(image) = desired.attributes.get(super::images::IMAGE_REF) {
            super::point_image(&mut config, image);
        }
        let live = change.live.as_deref().cloned();
        let op = match change.action {
            Action::Create => Operation::Create,
            Action::Replace => Operation::Replace,
            _ => Operation::Update,
        };
        let req = ApplyRequest {
            address: &address,
            operation: op,
            desired: &desired,
            config: &config,
            prior: prior.as_ref(),
            live: live.as_ref(),
            dependencies: &deps,
            options,
        };
        let kind = provider.type_of(address.kind).map_err(|e| Failure::new(e.to_string(), e.kind))?;
        let mut applied = kind.apply(req, &progress).await.map_err(|e| Failure {
            message: e.message,
            kind: e.kind,
            left: e.state.map(|s| *s),
        })?;
        // What the applied artifact was resolved from: recorded on success only (after a failure
        // the next plan shows the reference still to apply).
        for key in super::RECORDED_ONLY {
            if let Some(r) = desired.attributes.get(key) {
                applied.attributes.insert(key.into(), r.clone());
            }
        }
        Ok::<_, Failure>(Some(applied))
    };
    tokio::pin!(work);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + STILL_RUNNING_EVERY, STILL_RUNNING_EVERY);
    let mut result = loop {
        tokio::select! {
            r = &mut work => break r,
            _ = tick.tick() => sink.event(Event::StillRunning { address: address.clone(), action: change.action, elapsed: started.elapsed() }),
        }
    };
    // And masked in everything that comes back: records, errors, what was left.
    match &mut result {
        Ok(Some(state)) => crate::secrets::mask_state(secrets, state, &known, &places),
        Ok(None) => {}
        Err(Failure { message, left, .. }) => {
            *message = secrets.mask_str(message);
            if let Some(state) = left {
                crate::secrets::mask_state(secrets, state, &known, &places);
            }
        }
    }
    match &result {
        Ok(_) => {
            sink.event(Event::Finished { address: address.clone(), action: change.action, elapsed: started.elapsed() })
        }
        Err(f) => {
            sink.event(Event::Failed { address: address.clone(), action: change.action, error: f.message.clone() })
        }
    }
    (change.address.clone(), result)
}
