use std::fmt::Write;

use crate::audit;
use crate::cli::{CommandError, Context, ExitStatus};

#[derive(clap::Args, Debug)]
pub struct StateArgs {
    /// The point in history: `now`, a time (RFC 3339, or a date meaning its end in UTC), a time
    /// ago (`2.hours.ago`, `1 day ago`, `yesterday`), a lineage revision (`lineage~3`, a lineage commit id) or a source commit an apply was made from.
    #[arg(long, value_name = "WHEN", default_value = "now")]
    pub at: String,
    /// Print the state as JSON, with every resource's full record.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: &StateArgs) -> Result<ExitStatus, CommandError> {
    let stack = ctx.stack()?;
    let lineage = ctx.lineage(&stack)?;
    let state = audit::state_at(&lineage, &args.at)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&state).expect("serializes"));
        return Ok(ExitStatus::Success);
    }
    print!("{}", render(&state, &ctx.style));
    Ok(ExitStatus::Success)
}

fn render(s: &audit::StateAt, style: &crate::render::Style) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} as of {} ({}, by {}, source {})",
        style.bold(&s.lineage_ref),
        style.yellow(&format!("lineage {}", &s.lineage_commit[..12])),
        s.time,
        s.applied_by,
        s.source_commit.as_deref().map(|c| &c[..12.min(c.len())]).unwrap_or("none")
    );
    if s.resources.is_empty() {
        let _ = writeln!(out, "\nNo resources.");
    }
    for r in &s.resources {
        let _ = writeln!(out);
        let version = r.version.as_deref().map(|v| format!("  version {v}")).unwrap_or_default();
        let _ = writeln!(out, "  {}{}", style.bold(&r.address), style.dim(&version));
        if let Some(t) = r.record.outputs.get("traffic").filter(|t| t.as_array().is_some_and(|a| !a.is_empty())) {
            let _ = writeln!(out, "      traffic:  {t}");
        }
        for (input, v) in &r.record.inputs {
            let v = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
            let _ = writeln!(out, "      input:    {input} at {v}");
        }
        if let Some(l) = &r.last_applied {
            let _ = writeln!(
                out,
                "      applied:  {} ({}) by {} in lineage {}, source {}",
                l.time,
                l.action.name(),
                l.applied_by,
                &l.lineage_commit[..12],
                l.source_commit.as_deref().map(|c| &c[..12.min(c.len())]).unwrap_or("none")
            );
        }
    }
    out
}
