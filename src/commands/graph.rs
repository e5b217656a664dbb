use crate::audit;
use crate::cli::{CommandError, Context, ExitStatus};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    /// Renders in GitHub and GitLab markdown (inside a ```mermaid block).
    Mermaid,
    /// Graphviz.
    Dot,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct GraphArgs {
    /// The point in history (as `mlops state --at`).
    #[arg(long, value_name = "WHEN", default_value = "now")]
    pub at: String,
    #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
    pub format: GraphFormat,
}

pub fn run(ctx: &Context, args: &GraphArgs) -> Result<ExitStatus, CommandError> {
    let stack = ctx.stack()?;
    let lineage = ctx.lineage(&stack)?;
    let graph = audit::graph(&audit::state_at(&lineage, &args.at)?);
    match args.format {
        GraphFormat::Mermaid => print!("{}", audit::mermaid(&graph)),
        GraphFormat::Dot => print!("{}", audit::dot(&graph)),
        GraphFormat::Json => println!("{}", serde_json::to_string_pretty(&graph).expect("serializes")),
    }
    Ok(ExitStatus::Success)
}
