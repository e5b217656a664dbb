use mlops_provider_core::Address;

use crate::cli::{CommandError, Context, ExitStatus};
use crate::render::text;

#[derive(clap::Args, Debug)]
pub struct LogArgs {
    /// Only applies that touched this resource, e.g. `models.churn-xgb`.
    pub address: Option<String>,
    /// At most N entries.
    #[arg(short = 'n', long, value_name = "N")]
    pub limit: Option<usize>,
    /// Print the entries as a JSON array.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: &LogArgs) -> Result<ExitStatus, CommandError> {
    let stack = ctx.stack()?;
    let lineage = ctx.lineage(&stack)?;
    let filter: Option<Address> = match &args.address {
        None => None,
        Some(a) => Some(a.parse().map_err(|e: mlops_provider_core::AddressError| {
            CommandError::user(e.to_string(), "addresses are written `kind.name`, e.g. `models.churn-xgb`")
        })?),
    };
    let (entries, shallow_end) = lineage.log_of(filter.as_ref().map(|f| f.to_string()).as_deref(), args.limit)?;
    if let Some(end) = &shallow_end {
        eprintln!(
            "{} the history of {} ends at {} here: its earlier commits were not fetched (a shallow fetch). `git fetch --unshallow` or fetching `{}` in full shows the rest.",
            ctx.err_style.yellow("note:"),
            lineage.ref_name,
            &end[..12],
            lineage.ref_name
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries).expect("serializes"));
        return Ok(ExitStatus::Success);
    }
    if entries.is_empty() {
        println!(
            "No applies recorded on {}{}.",
            lineage.ref_name,
            filter.map(|f| format!(" for {f}")).unwrap_or_default()
        );
    }
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print!("{}", text::log_entry(e, &ctx.style));
    }
    Ok(ExitStatus::Success)
}
