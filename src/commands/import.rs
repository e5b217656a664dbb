//! `mlops import ADDRESS ID`: adopt an object that already exists into lineage, so the next plan
//! compares against it instead of creating a second one.

use mlops_provider_core::Address;

use crate::cli::{CommandError, Context, ExitStatus};
use crate::plan::Action;

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The spec resource to adopt it as, e.g. `models.churn-xgb`.
    pub address: String,
    /// The object's identifier in its backend, as its provider names it: a model, endpoint or
    /// feature store name, or a dataset's URI (each provider's README section says which).
    pub id: String,
}

pub fn run(ctx: &Context, args: &ImportArgs) -> Result<ExitStatus, CommandError> {
    let stack = ctx.stack()?;
    let address: Address = args.address.parse().map_err(|e: mlops_provider_core::AddressError| {
        CommandError::user(e.to_string(), "e.g. `mlops import models.churn-xgb churn-xgb-prod`")
    })?;
    let lineage = ctx.lineage(&stack)?;
    let report = crate::ops::import(&stack, &lineage, ctx.runtime()?, &address, &args.id, &|n| ctx.notice(&n))?;
    println!("Imported {address} from `{}`; recorded in {} as {}.", args.id, report.ref_name, &report.commit[..12]);
    if report.pending != Action::NoOp {
        println!("The spec differs from it: `mlops plan` shows what it needs ({}).", report.pending.verb());
    }
    Ok(ExitStatus::Success)
}
