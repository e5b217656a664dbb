use crate::audit;
use crate::cli::{CommandError, Context, ExitStatus};
use crate::commands::plan::PinnedPlanArgs;
use crate::ops;

#[derive(clap::Args, Debug)]
pub struct RollbackArgs {
    /// The point to go back to (as `mlops state --at`): a time, a time ago
    /// (`2.hours.ago`, `yesterday`), a lineage revision or a source commit.
    pub when: String,
    #[command(flatten)]
    pub plan: PinnedPlanArgs,
}

pub fn run(ctx: &Context, args: &RollbackArgs) -> Result<ExitStatus, CommandError> {
    let stack = ctx.stack()?;
    let lineage = ctx.lineage(&stack)?;
    let state = ctx.lineage_state(&lineage)?;
    let index = lineage.index()?;
    let at = audit::locate(&lineage, &index, &args.when)?;
    let commit = index.commit(at).to_string();
    let (plan, left_spec) = ops::rollback(&stack, &lineage, state, ctx.runtime()?, &commit, args.plan.parallelism)?;
    for a in &left_spec {
        eprintln!(
            "{} {a} existed at lineage {} but is no longer in the spec: a rollback does not recreate it (put its entry back in {} to have it planned).",
            ctx.err_style.yellow("warning:"),
            &commit[..12],
            ctx.spec_display
        );
    }
    args.plan.finish(ctx, &plan, "rollback plan", "mlops apply")?;
    Ok(ExitStatus::Success)
}
