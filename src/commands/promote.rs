use crate::cli::{CommandError, Context, ExitStatus};
use crate::commands::plan::PinnedPlanArgs;
use crate::engine::PlanRequest;
use crate::lineage::Lineage;
use crate::ops;
use crate::plan::Promotion;

#[derive(clap::Args, Debug)]
pub struct PromoteArgs {
    /// The environment whose recorded versions are promoted, e.g. `staging`.
    #[arg(value_parser = crate::cli::environment_name)]
    pub from: String,
    /// The environment to plan, e.g. `prod`.
    #[arg(value_parser = crate::cli::environment_name)]
    pub to: String,
    #[command(flatten)]
    pub plan: PinnedPlanArgs,
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
        parallelism: args.plan.parallelism,
        promotion: Some((
            Promotion { from: args.from.clone(), lineage_commit: tip.to_string(), rollback: false },
            pins,
        )),
    };
    let plan = ops::plan(&stack, &lineage, state, ctx.runtime()?, &request)?;
    args.plan.finish(&ctx_to, &plan, "promotion plan", &format!("mlops --env {} apply", args.to))?;
    Ok(ExitStatus::Success)
}
