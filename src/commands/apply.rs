use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use mlops_provider_core::ApplyOptions;

use crate::cli::progress::{ApplyProgress, live_wanted};
use crate::cli::{CommandError, Context, ExitStatus};
use crate::commands::plan::{ManyArgs, ScopeArgs};
use crate::engine::apply::Event;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::ops::{self, ApplyEnd, ApplyHooks, ApplyInput, Notice, OpError};
use crate::plan::{Action, Plan};
use crate::render::text;

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// A plan saved by `mlops plan --out FILE`: applied exactly, or refused if stale.
    #[arg(conflicts_with = "stacks")]
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
    /// tagged `conflict`, e.g. a field another field manager owns).
    #[arg(long)]
    pub force_conflicts: bool,
    /// Do not wait for deployments to become ready; the next plan shows any that are not.
    #[arg(long)]
    pub no_wait: bool,
    /// Sign the lineage commit as `git commit -S` would, with your Git signing configuration
    /// (`user.signingkey`, `gpg.format`); `mlops verify --signed` checks it. Also `MLOPS_SIGN=1`.
    #[arg(long, env = "MLOPS_SIGN", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false)]
    pub sign: bool,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub many: ManyArgs,
}

/// The command line's part in the apply: notices on stderr, the plan and progress on stdout, the
/// confirmation prompt on the terminal.
struct Hooks<'a> {
    ctx: &'a Context,
    auto_approve: bool,
    progress: ApplyProgress,
}

impl ApplyHooks for Hooks<'_> {
    fn notice(&self, notice: Notice) {
        self.ctx.notice(&notice);
    }

    fn planned(&self, plan: &Plan) {
        print!("{}", text::plan(plan, &self.ctx.style));
    }

    fn confirm(&self, _plan: &Plan) -> Result<bool, OpError> {
        if self.auto_approve {
            return Ok(true);
        }
        if !std::io::stdin().is_terminal() {
            return Err(OpError::refused(
                "apply needs a confirmation, and there is no terminal to ask on; nothing was changed",
                "pass --auto-approve, or apply a reviewed plan file: `mlops plan --out plan.json && mlops apply plan.json`",
            ));
        }
        print!("\nDo you want to perform these actions? Only 'yes' will be accepted: ");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        Ok(answer.trim() == "yes")
    }

    fn starting(&self, _plan: &Plan) {
        println!();
    }

    fn event(&self, event: &Event) {
        self.progress.show(event);
    }
}

/// The first SIGINT (Ctrl-C) sets the flag the apply reads: no change starts after it, those
/// running finish and are recorded. A second SIGINT ends the process at once, as before.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    // Registered first, so it sees the flag as the first signal left it.
    let _ = signal_hook::flag::register_conditional_shutdown(signal_hook::consts::SIGINT, 130, flag.clone());
    let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, flag.clone());
    flag
}

pub fn run(ctx: &Context, args: &ApplyArgs) -> Result<ExitStatus, CommandError> {
    args.many.check()?;
    let interrupt = interrupt_flag();
    if args.many.stacks {
        return run_stacks(ctx, args, interrupt);
    }
    apply_one(ctx, args, interrupt)
}

/// `apply --stacks`: the selected stacks applied one at a time, wave after wave, each under its
/// own lock and recorded on its own lineage ref, its output under its id; a stack whose upstream
/// failed is not applied. (One at a time: runners that want stacks applied at once take them
/// from `mlops stacks --json`, one CI job each.) Exits 1 when a stack failed, 130 when
/// interrupted (no later stack starts).
fn run_stacks(ctx: &Context, args: &ApplyArgs, interrupt: Arc<AtomicBool>) -> Result<ExitStatus, CommandError> {
    let (root, found) = args.many.select.stacks(ctx)?;
    // Ok(None): skipped, the values it uses did not move.
    let outcomes = crate::commands::stacks::in_waves(ctx, &root, &found, 1, &|sctx, s, _| {
        if interrupt.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(Some(ExitStatus::Interrupted));
        }
        if s.only_upstream && crate::stacks::moved_values(&root, s).is_empty() {
            return Ok(None);
        }
        println!("{}", ctx.style.bold(&crate::commands::stacks::heading(s)));
        let status = apply_one(sctx, args, interrupt.clone())?;
        println!();
        match status {
            ExitStatus::Error => Err(CommandError::user("not applied", "it was cancelled; nothing was changed")),
            other => Ok(Some(other)),
        }
    });
    println!("{}", ctx.style.bold("Stacks:"));
    for (s, o) in found.iter().zip(&outcomes) {
        let what = match o {
            Ok(Some(ExitStatus::Interrupted)) => "interrupted".to_string(),
            Ok(Some(_)) => "done".to_string(),
            Ok(None) => "skipped: the values it uses did not change".to_string(),
            Err(e) => format!("failed: {}", e.lines().next().unwrap_or_default()),
        };
        println!("  {}  {what}", s.id);
    }
    Ok(if outcomes.iter().any(|o| matches!(o, Ok(Some(ExitStatus::Interrupted)))) {
        ExitStatus::Interrupted
    } else if outcomes.iter().any(|o| o.is_err()) {
        ExitStatus::Error
    } else {
        ExitStatus::Success
    })
}

fn apply_one(ctx: &Context, args: &ApplyArgs, interrupt: Arc<AtomicBool>) -> Result<ExitStatus, CommandError> {
    let stack = ctx.stack()?;
    let lineage = ctx.lineage(&stack)?;
    let saved = match &args.plan_file {
        Some(file) => {
            if !args.scope.targets.is_empty() {
                return Err(CommandError::user(
                    "--target cannot be combined with a saved plan",
                    "a saved plan is applied exactly as reviewed; pass --target to `mlops plan` instead",
                ));
            }
            Some(Plan::read_file(&ctx.cwd.join(file), &file.display().to_string())?)
        }
        None => None,
    };
    let input = ApplyInput {
        saved,
        request: args.scope.request()?,
        operation: match &args.plan_file {
            Some(f) => format!("mlops apply {}", f.display()),
            None => "mlops apply".to_string(),
        },
        lock_remote: args.lock_remote.clone(),
        allow_data_loss: args.allow_data_loss,
        options: ApplyOptions { force_conflicts: args.force_conflicts, wait: !args.no_wait },
        interrupt,
        sign: args.sign,
    };
    let hooks = Hooks { ctx, auto_approve: args.auto_approve, progress: ApplyProgress::new(ctx.style, live_wanted()) };
    let report = ops::apply(&stack, &lineage, ctx.runtime()?, input, &hooks)?;
    hooks.progress.finish();
    let applied = match report.end {
        ApplyEnd::NothingToDo => return Ok(ExitStatus::Success),
        ApplyEnd::Cancelled => {
            println!("Apply cancelled; nothing was changed.");
            return Ok(ExitStatus::Error);
        }
        ApplyEnd::Interrupted => {
            eprintln!("Interrupted before any change started; nothing was changed.");
            return Ok(ExitStatus::Interrupted);
        }
        ApplyEnd::Applied(applied) => applied,
    };
    let style = ctx.style;
    if let Some(commit) = &applied.commit {
        println!("\nRecorded in {} as {}.", report.ref_name, &commit[..12]);
    }
    if let Some(e) = &applied.journal_error {
        eprintln!("warning: the apply journal could not be written ({e}); lineage has the full record");
    }
    let outcomes = &applied.report.outcomes;
    let count = |a: Action| {
        outcomes.values().filter(|o| o.action == a && o.status == crate::plan::OutcomeStatus::Applied).count()
    };
    let summary = format!(
        "{} added, {} changed, {} replaced, {} destroyed.",
        count(Action::Create),
        count(Action::Update),
        count(Action::Replace),
        count(Action::Delete)
    );
    if applied.report.interrupted {
        eprintln!(
            "\n{} the changes running when it came finished and are recorded; {} change(s) did not start. \
             Resources: {summary}\nRun `mlops plan` to see what is left to do.",
            ctx.err_style.red(&ctx.err_style.bold("Apply interrupted:")),
            applied.report.outcomes.values().filter(|o| o.status == crate::plan::OutcomeStatus::Skipped).count(),
        );
        return Ok(ExitStatus::Interrupted);
    }
    if applied.report.partial() && crate::lineage::rolled_back(outcomes) {
        eprintln!(
            "\n{} {} change(s) were rolled back: what served before still serves, and lineage records it. \
             Resources: {summary}\nRun `mlops plan` to see the change, still pending.",
            ctx.err_style.red(&ctx.err_style.bold("Apply rolled back:")),
            applied.report.failed,
        );
        return Err(CommandError::Reported);
    }
    if applied.report.partial() {
        eprintln!(
            "\n{} {} of {} change(s) did not apply. Resources: {summary}\nRun `mlops plan` to see what is left to do.",
            ctx.err_style.red(&ctx.err_style.bold("Apply failed:")),
            applied.report.failed,
            applied.report.failed + applied.report.applied
        );
        return Err(CommandError::Reported);
    }
    println!("\n{} Resources: {summary}", style.green(&style.bold("Apply complete!")));
    Ok(ExitStatus::Success)
}
