use std::path::PathBuf;

use crate::audit;
use crate::cli::{CommandError, Context, ExitStatus};
use crate::commands::plan::{OutputArgs, save};
use crate::ops;
use crate::render::Format;

#[derive(clap::Args, Debug)]
pub struct RollbackArgs {
    /// The point to go back to (as `mlops state --at`): a time, a lineage revision or a source commit.
    pub when: String,
    /// Save the plan to FILE; apply it with `mlops apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
    /// How many provider calls run at once.
    #[arg(long, default_value_t = 10)]
    pub parallelism: usize,
}

pub fn run(ctx: &Context, args: &RollbackArgs) -> Result<ExitStatus, CommandError> {
    let stack = ctx.stack()?;
    let lineage = ctx.lineage(&stack)?;
    let state = ctx.lineage_state(&lineage)?;
    let index = lineage.index()?;
    let at = audit::locate(&lineage, &index, &args.when)?;
    let commit = index.commit(at).to_string();
    let (plan, left_spec) = ops::rollback(&stack, &lineage, &state, ctx.runtime()?, &commit, args.parallelism)?;
    for a in &left_spec {
        eprintln!(
            "{} {a} existed at lineage {} but is no longer in the spec: a rollback does not recreate it (put its entry back in {} to have it planned).",
            ctx.err_style.yellow("warning:"),
            &commit[..12],
            ctx.spec_display
        );
    }
    args.output.print(ctx, &plan)?;
    if let Some(out) = &args.out {
        save(&ctx.cwd.join(out), &plan)?;
        if args.output.format() == Format::Text {
            println!(
                "\nSaved the rollback plan to {}. Review it, then apply exactly this plan with:\n    mlops apply {}",
                out.display(),
                out.display()
            );
        }
    }
    Ok(ExitStatus::Success)
}
