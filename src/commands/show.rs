use std::path::PathBuf;

use serde_json::json;

use crate::cli::{CommandError, Context, ExitStatus};
use crate::commands::plan::OutputArgs;
use crate::plan::Plan;
use crate::render::{Format, text};

#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    /// A plan file, or a lineage revision: a commit id, `lineage` (the tip) or `lineage~N`.
    #[arg(default_value = "lineage")]
    pub what: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn run(ctx: &Context, args: &ShowArgs) -> Result<ExitStatus, CommandError> {
    let path: PathBuf = ctx.cwd.join(&args.what);
    if path.is_file() {
        let plan = Plan::read_file(&path, &args.what)?;
        args.output.print(ctx, &plan)?;
        return Ok(ExitStatus::Success);
    }
    let stack = ctx.stack()?;
    let lineage = ctx.lineage(&stack)?;
    let id = lineage.resolve(&args.what)?;
    let entry = lineage.entry(id)?;
    if !entry.trailers.contains_key("Plan-Digest") {
        return Err(CommandError::user(
            format!(
                "{} ({}) is not a lineage commit of this stack",
                args.what,
                &entry.commit[..12.min(entry.commit.len())]
            ),
            format!(
                "show a plan file, or a lineage revision: `lineage`, `lineage~N`, or a commit of `git log {}`",
                lineage.ref_name
            ),
        ));
    }
    let plan = lineage.plan_at(id)?;
    let resources = lineage.resources_at(id)?;
    if args.output.format() == Format::Json {
        let resources: Vec<_> = resources.values().collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"entry": entry, "resources": resources, "plan": plan}))
                .expect("serializes")
        );
        return Ok(ExitStatus::Success);
    }
    if args.output.format() == Format::Markdown {
        if let Some(plan) = &plan {
            args.output.print(ctx, plan)?;
        }
        return Ok(ExitStatus::Success);
    }
    print!("{}", text::log_entry(&entry, &ctx.style));
    for (k, v) in &entry.trailers {
        println!("{k}: {v}");
    }
    if let Some(plan) = plan {
        println!("\nThe plan it applied:\n");
        print!("{}", text::plan(&plan, &ctx.style));
    }
    println!("\nState after it: {} resource(s)", resources.len());
    for r in resources.values() {
        let version = crate::plan::version_text(&r.outputs).map(|v| format!(" version {v}")).unwrap_or_default();
        println!("  {}{}", r.address, version);
    }
    Ok(ExitStatus::Success)
}
