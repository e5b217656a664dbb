use crate::cli::{CommandError, Context, ExitStatus};
use crate::stacks;

#[derive(clap::Args, Debug)]
pub struct StacksArgs {
    /// Only the stacks a change affects: their spec, or a file or folder it reads, differs from
    /// the merge base with `--base` (committed or not), each with the changed files.
    #[arg(long)]
    pub changed: bool,
    /// What `--changed` compares with: a branch, tag or commit (in CI, the pull request's target
    /// branch; on a push to main, `HEAD~1`).
    #[arg(long, value_name = "REF", default_value = "main", requires = "changed")]
    pub base: String,
    /// One JSON array of stacks (id, spec, project, environment, reasons): a CI matrix's input.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: &StacksArgs) -> Result<ExitStatus, CommandError> {
    let root = stacks::root(&ctx.cwd)?;
    let found = if args.changed { stacks::changed(&root, &args.base)? } else { stacks::discover(&root)? };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found).expect("serializes"));
        return Ok(ExitStatus::Success);
    }
    if found.is_empty() {
        println!("{}", if args.changed { "No stack is affected." } else { "No mlops.yaml in this repository." });
    }
    for s in &found {
        let needs = if s.needs.is_empty() { String::new() } else { format!(", after {}", s.needs.join(", ")) };
        println!("wave {}  {}  (project {}, {}{needs})", s.wave, s.id, s.project, s.spec);
        for r in &s.reasons {
            println!("    changed: {r}");
        }
    }
    Ok(ExitStatus::Success)
}
