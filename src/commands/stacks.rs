use std::path::PathBuf;

use crate::cli::{CommandError, Context, ExitStatus};
use crate::stacks::{self, StackInfo};

#[derive(clap::Args, Debug)]
pub struct StacksArgs {
    #[command(flatten)]
    pub select: Selection,
    /// One JSON array of stacks (id, spec, project, environment, reasons): a CI matrix's input.
    #[arg(long)]
    pub json: bool,
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
    /// branch; on a push to main, `HEAD~1`).
    #[arg(long, value_name = "REF", default_value = "main", requires = "changed")]
    pub base: String,
}

impl Selection {
    /// The repository's root and the selected stacks, in wave order.
    pub fn stacks(&self, ctx: &Context) -> Result<(PathBuf, Vec<StackInfo>), CommandError> {
        let root = stacks::root(&ctx.cwd)?;
        let found = if self.changed { stacks::changed(&root, &self.base)? } else { stacks::discover(&root)? };
        Ok((root, found))
    }
}

pub fn run(ctx: &Context, args: &StacksArgs) -> Result<ExitStatus, CommandError> {
    let (_, found) = args.select.stacks(ctx)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found).expect("serializes"));
        return Ok(ExitStatus::Success);
    }
    if found.is_empty() {
        println!("{}", if args.select.changed { "No stack is affected." } else { "No mlops.yaml in this repository." });
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

/// Runs `each` on every stack, wave after wave; the stacks of one wave at most `at_once` at a
/// time, each on its own thread with its own context (spec, environment, lineage, lock). A stack
/// whose upstream failed is not run: its result is the error saying so. Results in `stacks` order.
pub fn in_waves<T: Send>(
    ctx: &Context,
    root: &std::path::Path,
    stacks: &[StackInfo],
    at_once: usize,
    each: &(dyn Fn(&Context, &StackInfo) -> Result<T, CommandError> + Sync),
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
            let done: Vec<(usize, Result<T, String>)> = std::thread::scope(|scope| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|&i| {
                        let sctx = ctx.for_stack(root, &stacks[i]);
                        scope.spawn(move || {
                            let r = each(&sctx, &stacks[i]).map_err(|e| {
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
