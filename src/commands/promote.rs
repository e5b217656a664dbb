use std::path::PathBuf;

use crate::cli::{CommandError, Context, ExitStatus};
use crate::commands::plan::{OutputArgs, save};
use crate::engine::PlanRequest;
use crate::lineage::Lineage;
use crate::ops;
use crate::plan::Promotion;
use crate::render::Format;

#[derive(clap::Args, Debug)]
pub struct PromoteArgs {
    /// The environment whose recorded versions are promoted, e.g. `staging`.
    #[arg(value_parser = crate::cli::environment_name)]
    pub from: String,
    /// The environment to plan, e.g. `prod`.
    #[arg(value_parser = crate::cli::environment_name)]
    pub to: String,
    /// Save the plan to FILE; apply it with `mlops --env TO apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
    /// How many provider calls run at once.
    #[arg(long, default_value_t = 10)]
    pub parallelism: usize,
}

pub fn run(ctx: &Context, args: &PromoteArgs) -> Result<ExitStatus, CommandError> {
    if args.from == args.to {
        return Err(CommandError::user(
            "FROM and TO are the same environment",
            "promote from one environment to another",
        ));
    }
    // The spec as seen by TO (its overrides), the versions as recorded by FROM.
    let ctx_to = Context { registry: ctx.registry.clone().with_environment(args.to.clone()), ..ctx.clone_for_env() };
    let stack = ctx_to.stack()?;
    let from = Lineage::open(stack.spec.base_dir(), stack.project(), &args.from)?;
    let Some(tip) = from.tip()? else {
        return Err(CommandError::user(
            format!("{} has no applies recorded: nothing to promote", from.ref_name),
            format!("apply with `mlops --env {} apply` first", args.from),
        ));
    };
    let pins = ops::pins(&stack, &args.from, &tip.to_string())?;
    let lineage = ctx_to.lineage(&stack)?;
    let state = ctx_to.lineage_state(&lineage)?;
    let request = PlanRequest {
        targets: vec![],
        parallelism: args.parallelism,
        promotion: Some((
            Promotion { from: args.from.clone(), lineage_commit: tip.to_string(), rollback: false },
            pins,
        )),
    };
    let plan = ops::plan(&stack, &lineage, &state, ctx.runtime()?, &request)?;
    args.output.print(&ctx_to, &plan)?;
    if let Some(out) = &args.out {
        save(&ctx.cwd.join(out), &plan)?;
        if args.output.format() == Format::Text {
            println!(
                "\nSaved the promotion plan to {}. Apply it with:\n    mlops --env {} apply {}",
                out.display(),
                args.to,
                out.display()
            );
        }
    }
    Ok(ExitStatus::Success)
}
