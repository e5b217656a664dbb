use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use crate::cli::progress::{ApplyProgress, live_wanted};
use crate::cli::{CommandError, Context, ExitStatus};
use crate::commands::plan::{ScopeArgs, make_plan};
use crate::engine::apply::{self, Event};
use crate::lineage::{JournalEntry, Record};
use crate::plan::{Action, Plan};
use crate::render::text;

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// A plan saved by `mlops plan --out FILE`: applied exactly, or refused if stale.
    pub plan_file: Option<PathBuf>,
    /// Apply without asking for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// Also hold the stack's lock on this Git remote (an atomic push with lease), so that
    /// runners with separate clones never apply at once.
    #[arg(long, value_name = "REMOTE", env = "MLOPS_LOCK_REMOTE")]
    pub lock_remote: Option<String>,
    /// Allow changes tagged data-destroying (e.g. replacing a feature store deletes its records).
    #[arg(long)]
    pub allow_data_loss: bool,
    /// Take fields other owners hold, and adopt same-named objects mlops did not create (changes
    /// tagged `conflict`, e.g. a Kubernetes field another field manager owns).
    #[arg(long)]
    pub force_conflicts: bool,
    /// Do not wait for deployments to become ready; the next plan shows any that are not.
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub scope: ScopeArgs,
}

/// Data-destroying changes need an explicit `--allow-data-loss`, before anything is asked or done.
fn refuse_data_loss(plan: &Plan, allowed: bool) -> Result<(), CommandError> {
    let destroying: Vec<String> =
        plan.changes.iter().filter(|c| c.data_destroying).map(|c| c.address.to_string()).collect();
    if destroying.is_empty() || allowed {
        return Ok(());
    }
    Err(CommandError::user(
        format!("the plan destroys stored data ({}); nothing was changed", destroying.join(", ")),
        "review the data-destroying changes, then apply again with --allow-data-loss",
    ))
}

/// Changes that take what another owner holds need an explicit `--force-conflicts`.
fn refuse_conflicts(plan: &Plan, forced: bool) -> Result<(), CommandError> {
    let conflicts: Vec<String> = plan
        .changes
        .iter()
        .flat_map(|c| {
            c.tags.iter().filter_map(move |t| match t {
                crate::plan::ChangeTag::Conflict { detail } => Some(format!("{}: {detail}", c.address)),
                _ => None,
            })
        })
        .collect();
    if conflicts.is_empty() || forced {
        return Ok(());
    }
    Err(CommandError::user(
        format!("the plan takes what other owners hold; nothing was changed:\n  {}", conflicts.join("\n  ")),
        "make the other owner stop managing those fields, or apply again with --force-conflicts to take them",
    ))
}

pub fn run(ctx: &Context, args: &ApplyArgs) -> Result<ExitStatus, CommandError> {
    let stack = ctx.stack()?;
    let lineage = ctx.lineage(&stack)?;
    // Held from before the plan is read until the result is recorded: two applies never interleave.
    let operation = match &args.plan_file {
        Some(f) => format!("mlops apply {}", f.display()),
        None => "mlops apply".to_string(),
    };
    let _remote_lock = args.lock_remote.as_deref().map(|r| lineage.lock_remote(r, &operation)).transpose()?;
    let _lock = lineage.lock(&operation)?;
    let state = ctx.lineage_state(&lineage)?;
    let rt = ctx.runtime()?;
    let parallelism = args.scope.parallelism as usize;

    let plan: Plan = match &args.plan_file {
        Some(file) => {
            if !args.scope.targets.is_empty() {
                return Err(CommandError::user(
                    "--target cannot be combined with a saved plan",
                    "a saved plan is applied exactly as reviewed; pass --target to `mlops plan` instead",
                ));
            }
            let path = ctx.cwd.join(file);
            let bytes =
                std::fs::read(&path).map_err(|e| CommandError::Io(format!("cannot read {}: {e}", file.display())))?;
            let plan: Plan = serde_json::from_slice(&bytes).map_err(|e| {
                CommandError::user(
                    format!("{} is not an mlops plan: {e}", file.display()),
                    "save one with `mlops plan --out FILE`",
                )
            })?;
            let pins = crate::commands::promote::pins_of(&stack, &plan)?;
            rt.block_on(apply::check_fresh(&stack, &state, &plan, parallelism, &pins))?;
            print!("{}", text::plan(&plan, &ctx.style));
            refuse_data_loss(&plan, args.allow_data_loss)?;
            refuse_conflicts(&plan, args.force_conflicts)?;
            plan
        }
        None => {
            let plan = make_plan(ctx, &stack, &lineage, &state, &args.scope)?;
            print!("{}", text::plan(&plan, &ctx.style));
            refuse_data_loss(&plan, args.allow_data_loss)?;
            refuse_conflicts(&plan, args.force_conflicts)?;
            if plan.has_changes() && !args.auto_approve {
                if !std::io::stdin().is_terminal() {
                    return Err(CommandError::user(
                        "apply needs a confirmation, and there is no terminal to ask on; nothing was changed",
                        "pass --auto-approve, or apply a reviewed plan file: `mlops plan --out plan.json && mlops apply plan.json`",
                    ));
                }
                print!("\nDo you want to perform these actions? Only 'yes' will be accepted: ");
                let _ = std::io::stdout().flush();
                let mut answer = String::new();
                let _ = std::io::stdin().lock().read_line(&mut answer);
                if answer.trim() != "yes" {
                    println!("Apply cancelled; nothing was changed.");
                    return Ok(ExitStatus::Error);
                }
            }
            plan
        }
    };
    if !plan.has_changes() {
        return Ok(ExitStatus::Success);
    }

    println!();
    let style = ctx.style;
    let journal = lineage.journal();
    journal.begin(&plan).map_err(|e| CommandError::Io(format!("cannot write the apply journal: {e}")))?;
    let journal_error = std::sync::Mutex::new(None);
    let progress = ApplyProgress::new(style, live_wanted());
    let sink = |e: Event| {
        if let Event::Outcome { address, outcome, record } = e {
            let entry = JournalEntry { address, outcome, record };
            if let Err(e) = journal.append(&entry) {
                *journal_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
            }
        } else {
            progress.show(&e);
        }
    };
    let options = mlops_provider_core::ApplyOptions { force_conflicts: args.force_conflicts, wait: !args.no_wait };
    let report = rt.block_on(apply::apply(&stack, &state, &plan, parallelism, &options, &sink));
    progress.finish();
    if report.changed() {
        let commit = lineage.record(
            state.tip.as_deref(),
            Record {
                plan: &plan,
                outcomes: &report.outcomes,
                resources: &report.records,
                partial: report.partial(),
                interrupted: false,
            },
        )?;
        println!("\nRecorded in {} as {}.", lineage.ref_name, &commit[..12]);
    }
    if let Some(e) = journal_error.lock().unwrap_or_else(|e| e.into_inner()).take() {
        eprintln!("warning: the apply journal could not be written ({e}); lineage has the full record");
    }
    journal.finish().map_err(|e| CommandError::Io(format!("cannot remove the apply journal: {e}")))?;
    let count = |a: Action| {
        report.outcomes.values().filter(|o| o.action == a && o.status == crate::plan::OutcomeStatus::Applied).count()
    };
    let summary = format!(
        "{} added, {} changed, {} replaced, {} destroyed.",
        count(Action::Create),
        count(Action::Update),
        count(Action::Replace),
        count(Action::Delete)
    );
    if report.partial() {
        eprintln!(
            "\n{} {} of {} change(s) did not apply. Resources: {summary}\nRun `mlops plan` to see what is left to do.",
            ctx.err_style.red(&ctx.err_style.bold("Apply failed:")),
            report.failed,
            report.failed + report.applied
        );
        return Err(CommandError::Reported);
    }
    println!("\n{} Resources: {summary}", style.green(&style.bold("Apply complete!")));
    Ok(ExitStatus::Success)
}
