use std::path::PathBuf;

use crate::cli::{CommandError, Context, ExitStatus};

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default)]
pub enum SchemaKind {
    /// The spec, `mlops.yaml` (for editors: `# yaml-language-server: $schema=FILE`).
    #[default]
    Spec,
    /// A saved plan, `mlops plan --out FILE` / `plan --json`.
    Plan,
    /// One line of `mlops audit export` (JSON lines).
    Audit,
}

#[derive(clap::Args, Debug)]
pub struct SchemaArgs {
    /// Which schema.
    #[arg(value_enum, default_value_t)]
    pub kind: SchemaKind,
    /// Write it to FILE (relative to -C) instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// The JSON Schema of the spec or of a plan, as this binary reads them.
pub fn text(kind: SchemaKind) -> String {
    let schema = match kind {
        SchemaKind::Spec => crate::spec::model::json_schema(),
        SchemaKind::Plan => crate::plan::json_schema(),
        SchemaKind::Audit => crate::audit::audit_schema(),
    };
    serde_json::to_string_pretty(&schema).expect("a schema serializes") + "\n"
}

pub fn run(ctx: &Context, args: &SchemaArgs) -> Result<ExitStatus, CommandError> {
    let text = text(args.kind);
    match &args.out {
        Some(file) => std::fs::write(ctx.cwd.join(file), text)
            .map_err(|e| CommandError::io(format!("write {}", file.display()), e))?,
        None => print!("{text}"),
    }
    Ok(ExitStatus::Success)
}
