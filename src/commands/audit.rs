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
    /// One apply (the last at WHEN) as an in-toto Statement v1 with an SLSA Provenance v1
    /// predicate: what it deployed by digest, from which source commit and input versions, by
    /// which CI run.
    Provenance(ProvenanceArgs),
    /// One self-contained HTML file for an auditor: verify's verdict, the timeline of applies,
    /// each resource's history, the lineage graph (SVG), signatures.
    Report(ReportArgs),
}

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    #[command(flatten)]
    pub period: Period,
    /// Write it to FILE (default: standard output).
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct ProvenanceArgs {
    /// The apply: a lineage or source commit, a time (the last apply at or before it), or `now`.
    #[arg(value_name = "WHEN", default_value = "now")]
    pub at: String,
    /// Sign it: a DSSE envelope signed with this ECDSA P-256 private key (PKCS#8 PEM).
    #[arg(long, value_name = "KEY", conflicts_with = "verify")]
    pub sign_key: Option<std::path::PathBuf>,
    /// Verify a signed statement (a DSSE envelope) instead: its signature with `--key`, and that
    /// it says what this stack's lineage says of the apply it names.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub verify: Option<std::path::PathBuf>,
    /// With --verify: the ECDSA P-256 public key (SubjectPublicKeyInfo PEM).
    #[arg(long, value_name = "KEY", requires = "verify")]
    pub key: Option<std::path::PathBuf>,
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

/// Which applies (`audit export`, `audit report`).
#[derive(clap::Args, Debug)]
pub struct Period {
    /// Only applies at or after this time (RFC 3339, or a date: its start, UTC).
    #[arg(long, value_name = "TIME", value_parser = since_time)]
    pub since: Option<i64>,
    /// Only applies at or before this time (RFC 3339, or a date: its end, UTC); a report's graph as it stood then.
    #[arg(long, value_name = "TIME", value_parser = until_time)]
    pub until: Option<i64>,
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub period: Period,
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
        AuditCommand::Provenance(args) => provenance(ctx, args),
        AuditCommand::Report(args) => report(ctx, args),
    }
}

fn report(ctx: &Context, args: &ReportArgs) -> Result<ExitStatus, CommandError> {
    let stack = ctx.stack()?;
    let lineage = ctx.lineage(&stack)?;
    // The report states the whole chain's verdict: every commit is checked.
    let verification = audit::verify(&lineage, None, false, true)?;
    let lines = audit::export(&lineage, &stack.environment, args.period.since, args.period.until)?;
    let time = |t: i64| chrono::DateTime::from_timestamp(t, 0).map(|d| d.to_rfc3339()).unwrap_or_default();
    let when = args.period.until.map(time).unwrap_or_else(|| "now".into());
    // Nothing applied (by then): no state to draw.
    let state = if lineage.tip()?.is_some() { audit::state_at(&lineage, &when).ok() } else { None };
    let graph = state.as_ref().map(audit::graph);
    let period = match (args.period.since, args.period.until) {
        (None, None) => "every apply".to_string(),
        (s, u) => format!(
            "applies from {} to {}",
            s.map(time).unwrap_or_else(|| "the first".into()),
            u.map(time).unwrap_or_else(|| "the last".into())
        ),
    };
    let html = audit::report::html(&audit::report::Report {
        project: stack.project(),
        environment: &stack.environment,
        lineage_ref: &lineage.ref_name,
        verification: &verification,
        lines: &lines,
        state: state.as_ref(),
        graph: graph.as_ref(),
        period,
    });
    match &args.out {
        Some(f) => {
            std::fs::write(ctx.cwd.join(f), html).map_err(|e| CommandError::io(format!("write {}", f.display()), e))?;
            println!("Wrote the audit report to {} ({} apply line(s)).", f.display(), lines.len());
        }
        None => print!("{html}"),
    }
    Ok(ExitStatus::Success)
}

fn provenance(ctx: &Context, args: &ProvenanceArgs) -> Result<ExitStatus, CommandError> {
    use audit::dsse;
    let stack = ctx.stack()?;
    let lineage = ctx.lineage(&stack)?;
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(ctx.cwd.join(p)).map_err(|e| CommandError::io(format!("read {}", p.display()), e))
    };
    if let (Some(file), Some(key)) = (&args.verify, &args.key) {
        let refused = |why: String| {
            CommandError::user(
                format!("{} is not a provenance statement of this stack's lineage: {why}", file.display()),
                "it verifies with the public key of the key it was signed with, against the lineage it was made from",
            )
        };
        let envelope: serde_json::Value =
            serde_json::from_str(&read(file)?).map_err(|e| refused(format!("not JSON ({e})")))?;
        let payload = dsse::verify(&envelope, &read(key)?).map_err(refused)?;
        let said: serde_json::Value =
            serde_json::from_slice(&payload).map_err(|e| refused(format!("its payload is not JSON ({e})")))?;
        let commit = said["predicate"]["runDetails"]["byproducts"][0]["digest"]["gitCommit"]
            .as_str()
            .ok_or_else(|| refused("it names no lineage commit".into()))?;
        let recorded = audit::provenance::statement(&lineage, commit, stack.project(), &stack.environment)?;
        if recorded != said {
            return Err(refused(format!("what it says of lineage commit {commit} is not what lineage records")));
        }
        let subjects = said["subject"].as_array().map_or(0, Vec::len);
        println!(
            "{} signature verified; it is lineage commit {commit}'s provenance ({subjects} subject(s)).",
            ctx.style.green("✓")
        );
        return Ok(ExitStatus::Success);
    }
    let statement = audit::provenance::statement(&lineage, &args.at, stack.project(), &stack.environment)?;
    let text = serde_json::to_string_pretty(&statement).expect("serializes");
    match &args.sign_key {
        Some(key) => {
            let envelope = dsse::sign(text.as_bytes(), &read(key)?).map_err(|why| {
                CommandError::user(
                    format!("cannot sign with {}: {why}", key.display()),
                    "make one with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out key.pem`",
                )
            })?;
            println!("{}", serde_json::to_string_pretty(&envelope).expect("serializes"));
        }
        None => println!("{text}"),
    }
    Ok(ExitStatus::Success)
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
    let lines = audit::export(&lineage, &stack.environment, args.period.since, args.period.until)?;
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
