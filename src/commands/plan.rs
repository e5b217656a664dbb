use std::path::PathBuf;
use std::sync::Arc;

use mlops_provider_core::Address;

use crate::cli::{CommandError, Context, ExitStatus};
use crate::commands::stacks::in_waves;
use crate::engine::PlanRequest;
use crate::ops;
use crate::plan::Plan;
use crate::render::{Format, markdown, text};
use crate::stacks::StackInfo;

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub output: OutputArgs,
    /// Save the plan to FILE, for `mlops apply FILE`.
    /// With --stacks, a folder: each stack's plan is saved to DIR/FOLDER/ENVIRONMENT.json (its
    /// spec's folder), for `mlops -C FOLDER -e ENVIRONMENT apply DIR/FOLDER/ENVIRONMENT.json`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub many: ManyArgs,
    /// With --stacks: how many stacks of one wave are planned at once. Default: the workspace
    /// file's `defaults.stacks_at_once`, else 4.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..), requires = "stacks")]
    pub stacks_at_once: Option<u16>,
}

/// Running every stack of the repository at once (`plan --stacks`, `apply --stacks`).
#[derive(clap::Args, Debug, Clone)]
pub struct ManyArgs {
    /// Every stack of the repository (each mlops.yaml per environment, as `mlops stacks` lists
    /// them), wave after wave: a stack runs after the stacks whose values it uses.
    #[arg(long, conflicts_with = "targets")]
    pub stacks: bool,
    #[command(flatten)]
    pub select: crate::commands::stacks::Selection,
}

impl ManyArgs {
    pub fn check(&self) -> Result<(), CommandError> {
        if self.select.changed && !self.stacks {
            return Err(CommandError::user(
                "--changed selects stacks and needs --stacks",
                "`--stacks --changed --base main` runs on the stacks a change affects",
            ));
        }
        Ok(())
    }
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
            Format::Markdown => self.print_parts(ctx, &markdown::plan(plan))?,
        }
        Ok(())
    }

    /// Prints markdown parts, and writes each to `--parts-dir` when asked.
    fn print_parts(&self, ctx: &Context, parts: &[String]) -> Result<(), CommandError> {
        print!("{}", parts.join(markdown::PART_SEPARATOR));
        if let Some(dir) = &self.parts_dir {
            let dir = ctx.cwd.join(dir);
            let io = |e: std::io::Error| CommandError::io(format!("write {}", dir.display()), e);
            std::fs::create_dir_all(&dir).map_err(io)?;
            for (i, part) in parts.iter().enumerate() {
                std::fs::write(dir.join(format!("part-{}.md", i + 1)), part).map_err(io)?;
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

/// `plan --stacks --out DIR`: each stack's plan at DIR/FOLDER/ENVIRONMENT.json.
fn save_each(
    dir: &std::path::Path,
    found: &[StackInfo],
    plans: &[Result<Arc<Plan>, String>],
) -> Result<(), CommandError> {
    for (s, p) in found.iter().zip(plans) {
        let Ok(plan) = p else { continue };
        let path = dir.join(s.folder()).join(format!("{}.json", s.environment));
        std::fs::create_dir_all(path.parent().expect("has a folder"))
            .map_err(|e| CommandError::io(format!("create {}", dir.display()), e))?;
        save(&path, plan)?;
    }
    Ok(())
}

pub fn save(path: &std::path::Path, plan: &Plan) -> Result<(), CommandError> {
    std::fs::write(path, plan.to_json()).map_err(|e| CommandError::io(format!("write {}", path.display()), e))
}

/// Plans the context's stack.
fn plan_one(ctx: &Context, scope: &ScopeArgs) -> Result<Plan, CommandError> {
    let stack = ctx.stack()?;
    let lineage = ctx.lineage(&stack)?;
    let state = ctx.lineage_state(&lineage)?;
    Ok(ops::plan(&stack, &lineage, state, ctx.runtime()?, &scope.request()?)?)
}

/// Plans the context's stack against its upstreams' plans of this run (those with changes).
fn plan_after(
    ctx: &Context,
    upstreams: &crate::commands::stacks::Upstreams<'_, Arc<Plan>>,
    scope: &ScopeArgs,
) -> Result<Arc<Plan>, CommandError> {
    let mut planned = crate::stacks::PlannedUpstreams::default();
    for (id, plan) in upstreams.iter().filter(|(_, p)| p.has_changes()) {
        planned.insert(id, Arc::clone(plan));
    }
    let ctx = Context { planned, ..ctx.clone_for_env() };
    plan_one(&ctx, scope).map(Arc::new)
}

/// `plan --stacks`: every selected stack planned (a wave's stacks at once), a dependent against
/// the values its upstreams' plans in this run set (the values they leave alone read from their
/// lineage), then one output: in text each stack's plan under its id and a table; in markdown
/// one combined comment; in JSON an array of `{stack, plan}` or `{stack, error}`. With `--out
/// DIR`, each plan saved to DIR. Exits 1 when a stack failed (the others are still planned and
/// shown), else 2 with --detailed-exitcode when any has changes.
fn run_stacks(ctx: &Context, args: &PlanArgs) -> Result<ExitStatus, CommandError> {
    let (root, found) = args.many.select.stacks(ctx)?;
    let at_once = match args.stacks_at_once {
        Some(n) => n,
        None => crate::stacks::Workspace::read(&root)?.defaults.stacks_at_once.unwrap_or(4),
    };
    let plans =
        in_waves(ctx, &root, &found, at_once as usize, &|sctx, _, upstreams| plan_after(sctx, upstreams, &args.scope));
    if let Some(dir) = &args.out {
        save_each(&ctx.cwd.join(dir), &found, &plans)?;
    }
    // Values an upstream's apply assigns (a registry version) are not in its plan: the dependent
    // shows a placeholder for them, and is planned again once the upstream is applied.
    let note = |s: &StackInfo, plan: &Plan| {
        let unknown: Vec<String> = plan
            .source
            .upstreams
            .iter()
            .filter(|u| u.planned.as_ref().is_some_and(|p| !p.known))
            .map(|u| u.reference.clone())
            .collect();
        (!unknown.is_empty()).then(|| {
            format!(
                "planned against the plans of {}; {} known once they are applied: plan this stack again then",
                s.needs.join(", "),
                unknown.join(", ")
            )
        })
    };
    match args.output.format() {
        Format::Json => {
            let out: Vec<serde_json::Value> = found
                .iter()
                .zip(&plans)
                .map(|(s, p)| match p {
                    Ok(plan) => serde_json::json!({ "stack": s, "plan": plan, "note": note(s, plan) }),
                    Err(e) => serde_json::json!({ "stack": s, "error": e }),
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&out).expect("plans serialize"));
        }
        Format::Markdown => {
            let rows: Vec<markdown::StackPlan<'_>> = found
                .iter()
                .zip(&plans)
                .map(|(s, p)| markdown::StackPlan {
                    id: &s.id,
                    plan: p.as_ref().map(|p| &**p).map_err(String::as_str),
                    note: p.as_ref().ok().and_then(|p| note(s, p)),
                })
                .collect();
            args.output.print_parts(ctx, &markdown::stacks(&rows))?;
        }
        Format::Text => {
            for (s, p) in found.iter().zip(&plans) {
                println!("{}", ctx.style.bold(&crate::commands::stacks::heading(s)));
                match p {
                    Ok(plan) => print!("{}", text::plan(plan, &ctx.style)),
                    Err(e) => println!("{} {e}", ctx.style.red("Error:")),
                }
                if let Some(n) = p.as_ref().ok().and_then(|p| note(s, p)) {
                    println!("Note: {n}");
                }
                println!();
            }
            println!("{}", text::stacks_table(&found.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), &plans));
        }
    }
    if found.is_empty() {
        eprintln!("{}", crate::commands::stacks::none_selected(args.many.select.changed));
    }
    Ok(if plans.iter().any(|p| p.is_err()) {
        ExitStatus::Error
    } else if args.detailed_exitcode && plans.iter().any(|p| p.as_ref().is_ok_and(|p| p.has_changes())) {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    })
}

pub fn run(ctx: &Context, args: &PlanArgs) -> Result<ExitStatus, CommandError> {
    args.many.check()?;
    if args.many.stacks {
        return run_stacks(ctx, args);
    }
    let plan = plan_one(ctx, &args.scope)?;
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
