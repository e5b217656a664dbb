//! `mlops import ADDRESS ID`: adopt an object that already exists into lineage, so the next plan
//! compares against it instead of creating a second one.

use std::collections::BTreeMap;

use mlops_provider_core::Address;

use crate::cli::{CommandError, Context, ExitStatus};
use crate::engine::{self, PlanRequest};
use crate::lineage::{Record, ResourceRecord};
use crate::plan::{Action, Outcome, OutcomeStatus};

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
    let Some(resource) = stack.spec.resource(&address) else {
        return Err(CommandError::user(
            format!("{address} is not in {}", ctx.spec_display),
            "declare the resource in the spec first, then import the object it stands for",
        ));
    };
    let lineage = ctx.lineage(&stack)?;
    let _lock = lineage.lock(&format!("mlops import {address} {}", args.id))?;
    let state = ctx.lineage_state(&lineage)?;
    if state.resources.contains_key(&address) {
        return Err(CommandError::user(
            format!("{address} is already recorded in {}; nothing was changed", lineage.ref_name),
            "`mlops plan` compares it with the live object; remove it from the spec and apply to forget it",
        ));
    }
    let rt = ctx.runtime()?;
    let provider = stack.provider(&resource.config.provider)?;
    let live = rt.block_on(provider.import(&resource.config, &args.id)).map_err(|e| {
        CommandError::user(
            format!("cannot import {address} from `{}`: {e}", args.id),
            "check the identifier and the provider block",
        )
    })?;
    let record = ResourceRecord {
        address: address.clone(),
        provider: resource.config.provider.clone(),
        provider_config: stack.provider_block(&resource.config.provider),
        attributes: live.attributes,
        outputs: live.outputs,
        depends_on: resource.config.dependencies.clone(),
        inputs: BTreeMap::new(),
    };
    let mut resources = state.resources.clone();
    resources.insert(address.clone(), record);
    // The plan recorded with the import: what the next apply would do, from the adopted state.
    let mut state_after = state.clone();
    state_after.resources = resources.clone();
    let source = crate::ops::source_info(&stack, &lineage);
    let request = PlanRequest { targets: vec![address.clone()], ..Default::default() };
    let plan = rt.block_on(engine::plan(&stack, state_after, source, &request))?;
    let outcomes = BTreeMap::from([(
        address.to_string(),
        Outcome {
            action: Action::NoOp,
            status: OutcomeStatus::Applied,
            error: Some(format!("imported from `{}`", args.id)),
            kind: None,
        },
    )]);
    let commit = lineage.record(
        state.tip.as_deref(),
        Record {
            context: crate::lineage::ci_context(&|k| std::env::var(k).ok()),
            ..Record::new(&plan, &outcomes, &resources)
        },
    )?;
    println!("Imported {address} from `{}`; recorded in {} as {}.", args.id, lineage.ref_name, &commit[..12]);
    let pending = plan.changes.iter().find(|c| c.address == address).map(|c| c.action).unwrap_or(Action::NoOp);
    if pending != Action::NoOp {
        println!("The spec differs from it: `mlops plan` shows what it needs ({}).", pending.verb());
    }
    Ok(ExitStatus::Success)
}
