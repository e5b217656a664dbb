use std::io::Write;

use crate::audit;
use crate::cli::{CommandError, Context, ExitStatus};

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand {
    /// One line per change of every apply: time, who, CI run, pull request, source commit,
    /// environment, address, action, result, versions before → after, tags, policy, lineage commit.
    Export(ExportArgs),
    /// What the stack ran at a moment of its lineage as a CycloneDX 1.6 ML-BOM (JSON): models,
    /// datasets, feature stores and images as components, endpoints as services, with digests,
    /// versions and the lineage graph as dependencies.
    Bom(BomArgs),
}

#[derive(clap::Args, Debug)]
pub struct BomArgs {
    /// A time (RFC 3339, a date, `2.days.ago`), a lineage or source commit, or `now`.
    #[arg(long, value_name = "WHEN", default_value = "now")]
    pub at: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line (schemas/audit.schema.json).
    Jsonl,
    Csv,
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Only applies at or after this time (RFC 3339, or a date: its start, UTC).
    #[arg(long, value_name = "TIME", value_parser = since_time)]
    pub since: Option<i64>,
    /// Only applies at or before this time (RFC 3339, or a date: its end, UTC).
    #[arg(long, value_name = "TIME", value_parser = until_time)]
    pub until: Option<i64>,
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    pub format: ExportFormat,
}

const TIME_HELP: &str =
    "expected RFC 3339 (2026-05-01T12:00:00Z), a date (2026-05-01) or a time ago (2.hours.ago, yesterday)";

fn since_time(s: &str) -> Result<i64, String> {
    match chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Ok(d) => Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp()),
        Err(_) => audit::parse_time(s).ok_or_else(|| TIME_HELP.to_string()),
    }
}

fn until_time(s: &str) -> Result<i64, String> {
    audit::parse_time(s).ok_or_else(|| TIME_HELP.to_string())
}

pub fn run(ctx: &Context, args: &AuditArgs) -> Result<ExitStatus, CommandError> {
    match &args.command {
        AuditCommand::Export(args) => export(ctx, args),
        AuditCommand::Bom(args) => bom(ctx, args),
    }
}

fn bom(ctx: &Context, args: &BomArgs) -> Result<ExitStatus, CommandError> {
    let stack = ctx.stack()?;
    let lineage = ctx.lineage(&stack)?;
    let state = audit::state_at(&lineage, &args.at)?;
    let bom = audit::bom::bom(&state, stack.project(), &stack.environment);
    println!("{}", serde_json::to_string_pretty(&bom).expect("serializes"));
    Ok(ExitStatus::Success)
}

fn export(ctx: &Context, args: &ExportArgs) -> Result<ExitStatus, CommandError> {
    let stack = ctx.stack()?;
    let lineage = ctx.lineage(&stack)?;
    let lines = audit::export(&lineage, &stack.environment, args.since, args.until)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let io = |e: std::io::Error| CommandError::io("write the export", e);
    match args.format {
        ExportFormat::Jsonl => {
            for l in &lines {
                writeln!(out, "{}", serde_json::to_string(l).expect("serializes")).map_err(io)?;
            }
        }
        ExportFormat::Csv => out.write_all(audit::csv(&lines).as_bytes()).map_err(io)?,
    }
    out.flush().map_err(io)?;
    Ok(ExitStatus::Success)
}
