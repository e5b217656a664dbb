//! Operations: what a command asks of the engine, one call each. They hold the transactions
//! (lock → recover → staleness → refusals → journal → apply → record), never print, and return
//! a report for the command to render. What a person should hear on the way comes through hooks.

use std::collections::BTreeSet;
use std::sync::Mutex;

use mlops_provider_core::ApplyOptions;

use crate::engine::apply::{self, Event};
use crate::engine::{self, EngineError, Pins, PlanRequest, Stack};
use crate::lineage::{JournalEntry, Lineage, LineageError, LockHolder, Record, Recovery, State};
use crate::plan::{ChangeTag, Plan, Promotion, SourceInfo};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum OpError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Lineage(#[from] LineageError),
    /// The operation refused to go on; nothing was changed.
    #[error("{message}")]
    #[diagnostic(code(apply::refused))]
    Refused {
        message: String,
        #[help]
        help: String,
    },
    /// The apply journal could not be written or removed: what, and the OS error as its cause.
    #[error("cannot {what}")]
    #[diagnostic(code(apply::io))]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl OpError {
    pub fn refused(message: impl Into<String>, help: impl Into<String>) -> Self {
        OpError::Refused { message: message.into(), help: help.into() }
    }
}

/// Things a person should know, told as they happen.
#[derive(Clone, Debug)]
pub enum Notice {
    /// An apply was killed before it recorded; what its journal says it did is now recorded.
    Recovered { commit: String },
    /// A lock left by a process that died on this host was removed.
    BrokeStaleLock { holder: LockHolder },
    /// An interrupted apply's journal could not be read: moved aside, nothing recorded from it.
    CorruptJournal { moved_to: std::path::PathBuf },
    /// An interrupted apply's journal is pending, but a live process holds the lock: not touched.
    RecoveryDeferred { holder: LockHolder },
}

/// The stack's state, after recording what an interrupted apply left in its journal. Recovery
/// happens only under the stack's lock (taken briefly here; a dead holder's lock is broken), so
/// a running apply's live journal is never recorded by someone else.
pub fn state(lineage: &Lineage, notice: &dyn Fn(Notice)) -> Result<State, OpError> {
    if lineage.journal().is_pending() {
        match lineage.lock("mlops (recording an interrupted apply)") {
            Ok(guard) => recover(lineage, &guard, notice)?,
            Err(LineageError::Locked { holder, .. }) => notice(Notice::RecoveryDeferred { holder: *holder }),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(lineage.state()?)
}

/// Under `guard`: tells of a broken stale lock, and records a pending journal.
fn recover(lineage: &Lineage, guard: &crate::lineage::LockGuard<'_>, notice: &dyn Fn(Notice)) -> Result<(), OpError> {
    if let Some(holder) = &guard.broke {
        notice(Notice::BrokeStaleLock { holder: holder.clone() });
    }
    match lineage.recover()? {
        Recovery::Nothing => {}
        Recovery::Recorded(commit) => notice(Notice::Recovered { commit }),
        Recovery::MovedAside(moved_to) => notice(Notice::CorruptJournal { moved_to }),
    }
    Ok(())
}

/// Where the spec came from: its path in the repository, HEAD, and whether anything it reads is uncommitted.
pub fn source_info(stack: &Stack, lineage: &Lineage) -> SourceInfo {
    let spec_path = &stack.spec.path;
    let rel = lineage
        .workdir()
        .and_then(|w| w.canonicalize().ok())
        .and_then(|w| spec_path.canonicalize().ok().and_then(|p| p.strip_prefix(&w).ok().map(|r| r.to_path_buf())))
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .unwrap_or_else(|| spec_path.display().to_string());
    let mut inputs = vec![spec_path.clone()];
    for r in &stack.spec.resources {
        for key in ["source", "artifact"] {
            if let Some(local) = r.config.str(key).and_then(mlops_provider_core::local_input) {
                inputs.push(r.config.base_dir.join(local));
            }
        }
    }
    SourceInfo {
        spec: rel,
        spec_digest: stack.spec.digest.clone(),
        commit: lineage.source_commit(),
        dirty: lineage.is_dirty(&inputs),
        upstreams: stack.spec.upstreams.clone(),
    }
}

/// Plans the stack against `state`, which moves into the plan (its records become the changes'
/// prior states): clone it to keep using it.
pub fn plan(
    stack: &Stack,
    lineage: &Lineage,
    state: State,
    rt: &tokio::runtime::Runtime,
    request: &PlanRequest,
) -> Result<Plan, OpError> {
    // The dirty check reads the spec's inputs and the HEAD tree, independently of the providers'
    // reads: run it beside them (on its own repository handle; gix handles are not shared).
    let (source, plan) = std::thread::scope(|s| {
        let dirty = s.spawn(|| {
            let here = Lineage::open(stack.spec.base_dir(), stack.project(), &stack.environment).ok();
            here.map(|l| source_info(stack, &l))
        });
        let plan = rt.block_on(engine::plan(stack, state, SourceInfo::default(), request));
        (dirty.join().ok().flatten().unwrap_or_else(|| source_info(stack, lineage)), plan)
    });
    Ok(Plan { source, ..plan? })
}

/// The versions recorded in environment `from`'s lineage at `commit`.
pub fn pins(stack: &Stack, from: &str, commit: &str) -> Result<Pins, OpError> {
    let lineage = Lineage::open(stack.spec.base_dir(), stack.project(), from)?;
    let id = lineage.resolve(commit)?;
    Ok(lineage.resources_at(id)?.into_iter().map(|(a, r)| (a, r.attributes)).collect())
}

/// A rollback to lineage commit `commit` of the stack's own environment: every version as
/// recorded then, resources created since planned as deletes. Returns the plan and the recorded
/// resources that have left the spec since (a rollback cannot recreate what the spec no longer
/// declares: the caller says so).
pub fn rollback(
    stack: &Stack,
    lineage: &Lineage,
    state: State,
    rt: &tokio::runtime::Runtime,
    commit: &str,
    parallelism: usize,
) -> Result<(Plan, Vec<mlops_provider_core::Address>), OpError> {
    let pins = pins(stack, &stack.environment, commit)?;
    let left_spec = pins.keys().filter(|a| stack.spec.resource(a).is_none()).cloned().collect();
    let stack = rollback_stack(stack, &pins)?;
    let promotion = Promotion { from: stack.environment.clone(), lineage_commit: commit.to_string(), rollback: true };
    let request = PlanRequest { targets: vec![], parallelism, promotion: Some((promotion, pins)) };
    Ok((plan(&stack, lineage, state, rt, &request)?, left_spec))
}

/// The stack a rollback works on: the spec without the resources that did not exist yet.
fn rollback_stack(stack: &Stack, pins: &Pins) -> Result<Stack, OpError> {
    let later: BTreeSet<_> =
        stack.spec.resources.iter().map(|r| &r.config.address).filter(|a| !pins.contains_key(*a)).cloned().collect();
    for r in stack.spec.resources.iter().filter(|r| !later.contains(&r.config.address)) {
        if let Some(dep) = r.config.dependencies.iter().find(|d| later.contains(*d)) {
            return Err(OpError::refused(
                format!(
                    "{} now depends on {dep}, which did not exist at the rollback's point: the rollback would delete {dep} and keep {}",
                    r.config.address, r.config.address
                ),
                format!(
                    "point {} back at what it used then in the spec, or roll back to a later point",
                    r.config.address
                ),
            ));
        }
    }
    Ok(stack.without(&later))
}

/// A saved plan checked against the world before anything believes it: fresh (the spec, lineage
/// and touched live objects unchanged since it was made), from this repository, and equal in
/// every field that decides what happens to what the spec, the lineage tip and the live reads
/// give now. Returns that recomputed plan; any difference refuses the plan as stale, naming it.
fn recheck(
    stack: &Stack,
    lineage: &Lineage,
    state: &State,
    rt: &tokio::runtime::Runtime,
    saved: &Plan,
    parallelism: usize,
    pins: Pins,
) -> Result<Plan, OpError> {
    rt.block_on(apply::check_fresh(stack, state, saved, parallelism, &pins))?;
    let mut reasons = Vec::new();
    if saved.lineage.ref_name != lineage.ref_name {
        reasons.push(format!(
            "the plan file's lineage.ref is {}, but this stack records to {}",
            saved.lineage.ref_name, lineage.ref_name
        ));
    }
    // The source commit is recorded as where the change came from: it must be a commit of this
    // repository holding the spec the plan was made from (when the plan was made from a clean tree).
    if let Some(commit) = &saved.source.commit {
        match lineage.file_digest_at(commit, &saved.source.spec)? {
            None => reasons.push(format!(
                "the plan's source commit {commit} is not in this repository: the plan was made in another repository, or edited"
            )),
            Some(at) if !saved.source.dirty && at.as_deref() != Some(saved.source.spec_digest.as_str()) => {
                reasons.push(format!(
                    "the plan's source commit {commit} does not hold the spec it was made from ({} {})",
                    saved.source.spec,
                    if at.is_none() { "is not in that commit" } else { "differs there" }
                ))
            }
            Some(_) => {}
        }
    }
    let targets = saved
        .targets
        .iter()
        .map(|t| {
            t.parse().map_err(|e| EngineError::PlanFile(format!("the plan's target `{t}` is not an address: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let request = PlanRequest { targets, parallelism, promotion: saved.promotion.clone().map(|p| (p, pins)) };
    let fresh = rt.block_on(engine::plan(stack, state.clone(), saved.source.clone(), &request))?;
    reasons.extend(engine::recheck::differences(saved, &fresh));
    if reasons.is_empty() { Ok(fresh) } else { Err(EngineError::Stale(reasons).into()) }
}

/// A saved plan as `check` evaluates it: rechecked against the world ([`recheck`]) and replaced
/// by the plan the world gives, so a policy never passes an edited plan.
pub fn recheck_saved(
    stack: &Stack,
    lineage: &Lineage,
    state: &State,
    rt: &tokio::runtime::Runtime,
    saved: &Plan,
    parallelism: usize,
) -> Result<Plan, OpError> {
    let (pins, rolled_back) = saved_scope(stack, saved)?;
    recheck(rolled_back.as_ref().unwrap_or(stack), lineage, state, rt, saved, parallelism, pins)
}

/// A saved plan's pins, read once (its recheck needs them), and for a saved rollback the stack its
/// plan worked on: the spec without what did not exist then.
fn saved_scope(stack: &Stack, saved: &Plan) -> Result<(Pins, Option<Stack>), OpError> {
    let pins = pins_of(stack, saved)?;
    let rolled_back = match &saved.promotion {
        Some(p) if p.rollback => Some(rollback_stack(stack, &pins)?),
        _ => None,
    };
    Ok((pins, rolled_back))
}

/// The promotion a saved plan carries, as pins for its staleness check.
pub fn pins_of(stack: &Stack, plan: &Plan) -> Result<Pins, OpError> {
    match &plan.promotion {
        None => Ok(Pins::new()),
        Some(p) => pins(stack, &p.from, &p.lineage_commit),
    }
}

/// What `apply` is asked to do.
pub struct ApplyInput {
    /// A saved plan, applied exactly or refused as stale; `None`: plan now.
    pub saved: Option<Plan>,
    /// For a plan made now: targets and parallelism (the parallelism also applies to a saved plan).
    pub request: PlanRequest,
    /// What the lock record says this process does.
    pub operation: String,
    /// Also hold the lock on this Git remote.
    pub lock_remote: Option<String>,
    pub allow_data_loss: bool,
    pub options: ApplyOptions,
    /// Set when the user asks the apply to stop (the first Ctrl-C): no change starts after it,
    /// those running finish and everything done is recorded.
    pub interrupt: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Sign the lineage commit with the user's Git signing configuration.
    pub sign: bool,
}

/// The caller's part in an apply: hearing notices, seeing the plan, confirming, following progress.
pub trait ApplyHooks: Sync {
    fn notice(&self, notice: Notice);
    /// The plan about to be applied (or refused), once it is known and checked fresh.
    fn planned(&self, plan: &Plan);
    /// Asked only for a plan made now that has changes; `Ok(false)` cancels, changing nothing.
    fn confirm(&self, plan: &Plan) -> Result<bool, OpError>;
    /// The changes are about to start.
    fn starting(&self, plan: &Plan);
    /// Each change starting, progressing, finishing (journal entries are the operation's own).
    fn event(&self, event: &Event);
}

pub enum ApplyEnd {
    NothingToDo,
    Cancelled,
    /// Interrupted before any change started: nothing was changed.
    Interrupted,
    Applied(Applied),
}

pub struct Applied {
    pub report: apply::ApplyReport,
    /// The lineage commit, when anything changed.
    pub commit: Option<String>,
    /// The journal could not be written (lineage has the full record regardless).
    pub journal_error: Option<String>,
}

pub struct ApplyReport {
    pub ref_name: String,
    pub plan: Plan,
    pub end: ApplyEnd,
}

/// Refusals that need an explicit flag: checked before anything is asked or done.
fn refusals(plan: &Plan, allow_data_loss: bool, force_conflicts: bool) -> Result<(), OpError> {
    let destroying: Vec<String> =
        plan.changes.iter().filter(|c| c.data_destroying).map(|c| c.address.to_string()).collect();
    if !destroying.is_empty() && !allow_data_loss {
        return Err(OpError::refused(
            format!("the plan destroys stored data ({}); nothing was changed", destroying.join(", ")),
            "review the data-destroying changes, then apply again with --allow-data-loss",
        ));
    }
    let conflicts: Vec<String> = plan
        .changes
        .iter()
        .flat_map(|c| {
            c.tags.iter().filter_map(move |t| match t {
                ChangeTag::Conflict { detail } => Some(format!("{}: {detail}", c.address)),
                _ => None,
            })
        })
        .collect();
    if !conflicts.is_empty() && !force_conflicts {
        return Err(OpError::refused(
            format!("the plan takes what other owners hold; nothing was changed:\n  {}", conflicts.join("\n  ")),
            "make the other owner stop managing those fields, or apply again with --force-conflicts to take them",
        ));
    }
    Ok(())
}

/// The trailers an apply records besides its own: the CI context and, when the spec has
/// policies, their verdict on the applied plan (`mlops check` is where they block).
fn record_context(stack: &Stack, plan: &crate::plan::PlanDocument<'_>, state: &State) -> Vec<(String, String)> {
    let mut out = crate::lineage::ci_context(&|k| std::env::var(k).ok());
    let rules = stack.spec.spec.policies.clone().unwrap_or_default().for_environment(&plan.plan.environment);
    let sources = crate::policy::rego_sources(&rules, stack.spec.base_dir(), &[]);
    if stack.spec.spec.policies.is_none() && sources.is_empty() {
        return out;
    }
    let body = |a: &mlops_provider_core::Address| stack.spec.resource(a).map(|r| &r.config.body);
    // The plan as this apply already serialized it (at 100,000 resources, over 100 MB).
    let json = std::str::from_utf8(&plan.json).ok();
    let checked = crate::policy::check(plan.plan, json, &rules, stack.spec.base_dir(), &sources, state, &body);
    let verdict = match checked {
        Ok(v) if v.violations.is_empty() => "passed".to_string(),
        Ok(v) => {
            let codes: BTreeSet<&str> = v.violations.iter().map(|v| v.code).collect();
            format!("{} violation(s): {}", v.violations.len(), codes.into_iter().collect::<Vec<_>>().join(", "))
        }
        Err(e) => format!("not evaluated: {e}"),
    };
    out.push(("Policy".into(), verdict));
    out
}

/// The apply transaction: lock (breaking a dead holder's) → record an interrupted apply → plan,
/// or check the saved plan fresh → refusals → confirmation → journal → apply → record.
pub fn apply(
    stack: &Stack,
    lineage: &Lineage,
    rt: &tokio::runtime::Runtime,
    input: ApplyInput,
    hooks: &dyn ApplyHooks,
) -> Result<ApplyReport, OpError> {
    if input.sign {
        // Found before anything changes: a signature that cannot be made refuses the apply.
        lineage.check_signing()?;
    }
    // Held from before the state is read until the result is recorded: two applies never interleave.
    let remote = input.lock_remote.clone();
    let _remote_lock = remote.as_deref().map(|r| lineage.lock_remote(r, &input.operation)).transpose()?;
    let lock = lineage.lock(&input.operation)?;
    let Some(remote) = remote else { return apply_locked(stack, lineage, rt, &lock, input, hooks) };
    // With the remote lock, the remote's lineage is the truth: taken before anything is read,
    // pushed after (also when the apply failed after recording), so that runners in separate
    // clones neither miss nor overwrite each other's records.
    let lease = lineage.pull_lineage(&remote)?;
    let result = apply_locked(stack, lineage, rt, &lock, input, hooks);
    let pushed = lineage.push_lineage(&remote, lease.as_deref());
    let report = result?;
    pushed?;
    Ok(report)
}

fn apply_locked(
    stack: &Stack,
    lineage: &Lineage,
    rt: &tokio::runtime::Runtime,
    lock: &crate::lineage::LockGuard,
    input: ApplyInput,
    hooks: &dyn ApplyHooks,
) -> Result<ApplyReport, OpError> {
    let ApplyInput { saved, request, allow_data_loss, options, interrupt, sign, .. } = input;
    recover(lineage, lock, &|n| hooks.notice(n))?;
    let state = lineage.state()?;
    let parallelism = request.parallelism;
    let (saved_pins, rolled_back) = match &saved {
        Some(p) => saved_scope(stack, p)?,
        None => (Pins::new(), None),
    };
    let stack = rolled_back.as_ref().unwrap_or(stack);

    let fresh = saved.is_none();
    let plan = match saved {
        Some(saved) => {
            recheck(stack, lineage, &state, rt, &saved, parallelism, saved_pins)?;
            saved
        }
        None => plan(stack, lineage, state.clone(), rt, &request)?,
    };
    hooks.planned(&plan);
    refusals(&plan, allow_data_loss, options.force_conflicts)?;
    let ref_name = lineage.ref_name.clone();
    if !plan.has_changes() {
        return Ok(ApplyReport { ref_name, plan, end: ApplyEnd::NothingToDo });
    }
    if fresh && !hooks.confirm(&plan)? {
        return Ok(ApplyReport { ref_name, plan, end: ApplyEnd::Cancelled });
    }

    if interrupt.load(std::sync::atomic::Ordering::SeqCst) {
        return Ok(ApplyReport { ref_name, plan, end: ApplyEnd::Interrupted });
    }
    hooks.starting(&plan);
    let journal = lineage.journal();
    let document = plan.document();
    journal.begin(&document).map_err(|source| OpError::Io { what: "write the apply journal", source })?;
    let journal_error = Mutex::new(None);
    let writer = journal.writer();
    let sink = |e: Event| {
        if let Event::Outcome { address, outcome, record } = e {
            if let Err(err) = writer.send(JournalEntry { address, outcome, record }) {
                *journal_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(err.to_string());
            }
        } else {
            hooks.event(&e);
        }
    };
    let report = rt.block_on(apply::apply(stack, &state, &plan, parallelism, &options, &interrupt, &sink));
    if let Err(err) = writer.close() {
        journal_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(err.to_string());
    }
    let commit = if report.changed() {
        Some(lineage.record(
            state.tip.as_deref(),
            Record {
                partial: report.partial(),
                context: record_context(stack, &document, &state),
                sign,
                ..Record::new(&document, &report.outcomes, &report.records, &state)
            },
        )?)
    } else {
        None
    };
    journal.finish().map_err(|source| OpError::Io { what: "remove the apply journal", source })?;
    let journal_error = journal_error.into_inner().unwrap_or_else(|e| e.into_inner());
    Ok(ApplyReport { ref_name, plan, end: ApplyEnd::Applied(Applied { report, commit, journal_error }) })
}

/// What `import` did.
pub struct ImportReport {
    pub ref_name: String,
    pub commit: String,
    /// What the next apply would do to the adopted object, from the spec.
    pub pending: crate::plan::Action,
}

/// Adopts backend object `id` as spec resource `address`, under one lock: an interrupted apply's
/// journal is recorded first, then the import is recorded as one lineage commit with the plan the
/// adopted state gives (the records built as an apply builds them).
pub fn import(
    stack: &Stack,
    lineage: &Lineage,
    rt: &tokio::runtime::Runtime,
    address: &mlops_provider_core::Address,
    id: &str,
    notice: &dyn Fn(Notice),
) -> Result<ImportReport, OpError> {
    use crate::plan::{Action, Outcome, OutcomeStatus};
    let Some(resource) = stack.spec.resource(address) else {
        return Err(OpError::refused(
            format!("{address} is not in the spec"),
            "declare the resource in the spec first, then import the object it stands for",
        ));
    };
    let lock = lineage.lock(&format!("mlops import {address} {id}"))?;
    recover(lineage, &lock, notice)?;
    let state = lineage.state()?;
    if state.resources.contains_key(address) {
        return Err(OpError::refused(
            format!("{address} is already recorded in {}; nothing was changed", lineage.ref_name),
            "`mlops plan` compares it with the live object; remove it from the spec and apply to forget it",
        ));
    }
    let provider = stack.provider(&resource.config.provider)?;
    let live =
        rt.block_on(async { provider.type_of(address.kind)?.import(&resource.config, id).await }).map_err(|e| {
            OpError::refused(
                format!("cannot import {address} from `{id}`: {e}"),
                "check the identifier and the provider block",
            )
        })?;
    let record = apply::record_imported(stack, &resource.config, live, &state);
    let mut after = state.clone();
    after.resources.insert(address.clone(), record);
    // The plan recorded with the import: what the next apply would do, from the adopted state.
    let request = PlanRequest { targets: vec![address.clone()], ..Default::default() };
    let plan = rt.block_on(engine::plan(stack, after.clone(), source_info(stack, lineage), &request))?;
    let outcomes = std::collections::BTreeMap::from([(
        address.to_string(),
        Outcome {
            action: Action::NoOp,
            status: OutcomeStatus::Applied,
            error: Some(format!("imported from `{id}`")),
            kind: None,
        },
    )]);
    let commit = lineage.record(
        state.tip.as_deref(),
        Record {
            context: crate::lineage::ci_context(&|k| std::env::var(k).ok()),
            ..Record::new(&plan.document(), &outcomes, &after.resources, &state)
        },
    )?;
    let pending = plan.change(address).map(|c| c.action).unwrap_or(Action::NoOp);
    Ok(ImportReport { ref_name: lineage.ref_name.clone(), commit, pending })
}
