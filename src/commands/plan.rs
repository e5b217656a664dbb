use std::path::PathBuf;

use mlops_provider_core::Address;

use crate::cli::{CommandError, Context, ExitStatus};
use crate::engine::PlanRequest;
use crate::ops;
use crate::plan::Plan;
use crate::render::{Format, markdown, text};

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub output: OutputArgs,
    /// Save the plan to FILE, for `mlops apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    #[command(flatten)]
    pub scope: ScopeArgs,
}

/// How a plan is printed (shared by `plan` and `show`).
#[derive(clap::Args, Debug, Clone)]
pub struct OutputArgs {
    /// text (Terraform-style), json (schemas/plan.schema.json) or markdown (PR comments, split
    /// into parts of at most 65,535 characters, separated by `<!-- mlops:next-part -->`).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// With markdown: also write each part to DIR/part-N.md, one file per PR comment.
    #[arg(long, value_name = "DIR")]
    pub parts_dir: Option<PathBuf>,
}

impl OutputArgs {
    pub fn format(&self) -> Format {
        if self.json { Format::Json } else { self.format }
    }

    /// Prints the plan in the chosen format.
    pub fn print(&self, ctx: &Context, plan: &Plan) -> Result<(), CommandError> {
        match self.format() {
            Format::Text => print!("{}", text::plan(plan, &ctx.style)),
            Format::Json => print!("{}", plan.to_json()),
            Format::Markdown => {
                let parts = markdown::plan(plan);
                print!("{}", parts.join(markdown::PART_SEPARATOR));
                if let Some(dir) = &self.parts_dir {
                    let dir = ctx.cwd.join(dir);
                    let io = |e: std::io::Error| CommandError::io(format!("write {}", dir.display()), e);
                    std::fs::create_dir_all(&dir).map_err(io)?;
                    for (i, part) in parts.iter().enumerate() {
                        std::fs::write(dir.join(format!("part-{}.md", i + 1)), part).map_err(io)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct ScopeArgs {
    /// Limit the plan to ADDRESS and what it depends on (repeatable).
    #[arg(long = "target", value_name = "ADDRESS")]
    pub targets: Vec<String>,
    /// How many provider calls run at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub parallelism: u16,
}

impl ScopeArgs {
    pub fn request(&self) -> Result<PlanRequest, CommandError> {
        let targets = self
            .targets
            .iter()
            .map(|t| {
                t.parse::<Address>().map_err(|e| {
                    CommandError::user(e.to_string(), "addresses are written `kind.name`, e.g. `models.churn-xgb`")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PlanRequest { targets, parallelism: self.parallelism as usize, promotion: None })
    }
}

/// How a plan made from recorded versions (`promote`, `rollback`) is shown and saved.
#[derive(clap::Args, Debug, Clone)]
pub struct PinnedPlanArgs {
    /// Save the plan to FILE, for `mlops apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
    /// How many provider calls run at once.
    #[arg(long, default_value_t = 10)]
    pub parallelism: usize,
}

impl PinnedPlanArgs {
    /// Prints the plan; saves it with `--out`, saying how to apply it (`apply_with`, e.g. `mlops apply`).
    pub fn finish(&self, ctx: &Context, plan: &Plan, what: &str, apply_with: &str) -> Result<(), CommandError> {
        self.output.print(ctx, plan)?;
        if let Some(out) = &self.out {
            save(&ctx.cwd.join(out), plan)?;
            if self.output.format() == Format::Text {
                println!(
                    "\nSaved the {what} to {}. Review it, then apply exactly this plan with:\n    {apply_with} {}",
                    out.display(),
                    out.display()
                );
            }
        }
        Ok(())
    }
}

pub fn save(path: &std::path::Path, plan: &Plan) -> Result<(), CommandError> {
    std::fs::write(path, plan.to_json()).map_err(|e| CommandError::io(format!("write {}", path.display()), e))
}

pub fn run(ctx: &Context, args: &PlanArgs) -> Result<ExitStatus, CommandError> {
    let stack = ctx.stack()?;
    let lineage = ctx.lineage(&stack)?;
    let state = ctx.lineage_state(&lineage)?;
    let plan = ops::plan(&stack, &lineage, state, ctx.runtime()?, &args.scope.request()?)?;
    args.output.print(ctx, &plan)?;
    if let Some(out) = &args.out {
        let path = ctx.cwd.join(out);
        save(&path, &plan)?;
        if args.output.format() == Format::Text {
            println!(
                "\nSaved the plan to {}. Apply exactly this plan with:\n    mlops apply {}",
                out.display(),
                out.display()
            );
        }
    }
    Ok(if args.detailed_exitcode && plan.has_changes() { ExitStatus::Changes } else { ExitStatus::Success })
}
