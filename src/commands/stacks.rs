use std::path::PathBuf;

use crate::cli::{CommandError, Context, ExitStatus};
use crate::render::recipes::StacksFormat;
use crate::stacks::{self, StackInfo};

#[derive(clap::Args, Debug)]
pub struct StacksArgs {
    #[command(flatten)]
    pub select: Selection,
    /// text; json (an array of stacks: id, spec, project, environment, needs, wave, reasons);
    /// or a recipe that runs each stack as a job of an engine you run (docs/stacks.md).
    #[arg(long, value_enum, default_value_t = StacksFormat::Text)]
    pub format: StacksFormat,
    /// Same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Recipes: what each stack's job runs, `plan` (a pull request) or `apply` (a merge: with
    /// `--auto-approve --lock-remote REMOTE`).
    #[arg(long, value_parser = ["plan", "apply"], default_value = "plan")]
    pub run: String,
    /// Recipes: the Git remote jobs fetch lineage from and lock on.
    #[arg(long, value_name = "REMOTE", default_value = "origin")]
    pub remote: String,
    /// Recipes: a shell line each job runs first, e.g. what installs mlops on a hosted runner.
    #[arg(long, value_name = "COMMAND")]
    pub setup: Option<String>,
    /// Cluster recipes: the image the jobs run (it needs `mlops` and `git`).
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Cluster recipes: the repository the jobs clone (default: the URL of `--remote`).
    #[arg(long, value_name = "URL")]
    pub repository: Option<String>,
}

/// Which of the repository's stacks a command runs on (`stacks`, `plan --stacks`, `apply --stacks`).
#[derive(clap::Args, Debug, Clone)]
pub struct Selection {
    /// Only the stacks a change affects: their spec, or a file or folder it reads, differs from
    /// the merge base with `--base` (committed or not), each with the changed files; and the
    /// stacks that use their values.
    #[arg(long)]
    pub changed: bool,
    /// What `--changed` compares with: a branch, tag or commit (in CI, the pull request's target
    /// branch; on a push to main, `HEAD~1`). Default: the workspace file's `defaults.base`, else
    /// `main`.
    #[arg(long, value_name = "REF", requires = "changed")]
    pub base: Option<String>,
}

impl Selection {
    /// The repository's root and the selected stacks, in wave order.
    pub fn stacks(&self, ctx: &Context) -> Result<(PathBuf, Vec<StackInfo>), CommandError> {
        let root = stacks::root(&ctx.cwd)?;
        let found = if self.changed { stacks::changed(&root, self.base.as_deref())? } else { stacks::discover(&root)? };
        Ok((root, found))
    }
}

pub fn run(ctx: &Context, args: &StacksArgs) -> Result<ExitStatus, CommandError> {
    use crate::render::recipes::{self, Recipe};
    let format = if args.json { StacksFormat::Json } else { args.format };
    let (root, found) = args.select.stacks(ctx)?;
    let recipe = Recipe { run: &args.run, remote: &args.remote, setup: args.setup.as_deref() };
    let out = match format {
        StacksFormat::Text => return Ok(print_text(&found, args.select.changed)),
        StacksFormat::Json => format!("{}\n", serde_json::to_string_pretty(&found).expect("serializes")),
        StacksFormat::Github => recipes::github(&found, &recipe),
        StacksFormat::Gitlab => recipes::gitlab(&found, &recipe),
        StacksFormat::Jenkins => recipes::jenkins(&found, &recipe),
        StacksFormat::Jobs | StacksFormat::Argo => {
            let image = args.image.as_deref().ok_or_else(|| {
                CommandError::user(
                    format!("the {} recipe needs --image", format.name()),
                    "name an image that has `mlops` and `git`, e.g. --image registry.example.com/tools/mlops:1.0",
                )
            })?;
            let repository = match &args.repository {
                Some(r) => r.clone(),
                None => stacks::remote_url(&root, &args.remote)?,
            };
            if format == StacksFormat::Argo {
                recipes::argo(&found, &recipe, image, &repository)
            } else {
                recipes::jobs(&found, &recipe, image, &repository)
            }
        }
    };
    print!("{out}");
    Ok(ExitStatus::Success)
}

/// The line a stack's output starts under in `plan --stacks` and `apply --stacks`.
pub fn heading(s: &StackInfo) -> String {
    format!("── stack {} (wave {}, {}) ──", s.id, s.wave, s.spec)
}

/// What is said when no stack is selected.
pub fn none_selected(changed: bool) -> &'static str {
    if changed { "No stack is affected." } else { "No mlops.yaml in this repository." }
}

fn print_text(found: &[StackInfo], changed: bool) -> ExitStatus {
    if found.is_empty() {
        println!("{}", none_selected(changed));
    }
    for s in found {
        let needs = if s.needs.is_empty() { String::new() } else { format!(", after {}", s.needs.join(", ")) };
        println!("wave {}  {}  (project {}, {}{needs})", s.wave, s.id, s.project, s.spec);
        for r in &s.reasons {
            println!("    changed: {r}");
        }
    }
    ExitStatus::Success
}

/// What `in_waves` hands each stack: the results of the stacks it needs, by id.
pub type Upstreams<'a, T> = std::collections::BTreeMap<&'a str, &'a T>;

/// What `in_waves` runs on one stack.
pub type EachStack<'f, T> = dyn Fn(&Context, &StackInfo, &Upstreams<'_, T>) -> Result<T, CommandError> + Sync + 'f;

/// Runs `each` on every stack, wave after wave; the stacks of one wave at most `at_once` at a
/// time, each on its own thread with its own context (spec, environment, lineage, lock) and the
/// results of the stacks it needs. A stack whose upstream failed is not run: its result is the
/// error saying so. Results in `stacks` order.
pub fn in_waves<T: Send + Sync>(
    ctx: &Context,
    root: &std::path::Path,
    stacks: &[StackInfo],
    at_once: usize,
    each: &EachStack<'_, T>,
) -> Vec<Result<T, String>> {
    let mut results: Vec<Option<Result<T, String>>> = stacks.iter().map(|_| None).collect();
    let last = stacks.iter().map(|s| s.wave).max().unwrap_or(0);
    for wave in 0..=last {
        let mut todo: Vec<usize> = vec![];
        for (i, s) in stacks.iter().enumerate().filter(|(_, s)| s.wave == wave) {
            let failed: Vec<&str> = s
                .needs
                .iter()
                .filter(|n| stacks.iter().zip(&results).any(|(u, r)| &u.id == *n && matches!(r, Some(Err(_)))))
                .map(String::as_str)
                .collect();
            if failed.is_empty() {
                todo.push(i);
            } else {
                results[i] = Some(Err(format!("not run: it uses values of {}, which failed", failed.join(", "))));
            }
        }
        for chunk in todo.chunks(at_once.max(1)) {
            let finished = &results;
            let done: Vec<(usize, Result<T, String>)> = std::thread::scope(|scope| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|&i| {
                        let sctx = ctx.for_stack(root, &stacks[i]);
                        let upstreams: Upstreams<'_, T> = stacks
                            .iter()
                            .zip(finished)
                            .filter(|(u, _)| stacks[i].needs.contains(&u.id))
                            .filter_map(|(u, r)| Some((u.id.as_str(), r.as_ref()?.as_ref().ok()?)))
                            .collect();
                        scope.spawn(move || {
                            let r = each(&sctx, &stacks[i], &upstreams).map_err(|e| {
                                crate::cli::report(&sctx, &e);
                                match e {
                                    CommandError::Reported => "failed (see above)".to_string(),
                                    CommandError::Spec(diags) => {
                                        let each: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
                                        format!("{}: {}", stacks[i].spec, each.join("; "))
                                    }
                                    other => other.to_string(),
                                }
                            });
                            (i, r)
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().expect("a stack's thread does not panic")).collect()
            });
            for (i, r) in done {
                results[i] = Some(r);
            }
        }
    }
    results.into_iter().map(|r| r.expect("every stack has a result")).collect()
}
