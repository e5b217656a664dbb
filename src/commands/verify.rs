use crate::audit;
use crate::cli::{CommandError, Context, ExitStatus};
use crate::engine::PlanRequest;
use crate::ops;

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Also check that the live state still matches the lineage tip (read-only; exit 2 on drift).
    #[arg(long)]
    pub live: bool,
    /// Also check that this Git remote's copy of the lineage ref is contained in the local one
    /// (nothing rewritten). Fetch it first.
    #[arg(long, value_name = "REMOTE")]
    pub remote: Option<String>,
    /// Also require every lineage commit to carry a signature Git verifies (`git verify-commit`:
    /// `gpg.ssh.allowedSignersFile` for SSH keys, the GnuPG keyring for OpenPGP).
    #[arg(long)]
    pub signed: bool,
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
    /// Check every commit from the root, not only those after the last clean verify recorded.
    #[arg(long)]
    pub full: bool,
}

pub fn run(ctx: &Context, args: &VerifyArgs) -> Result<ExitStatus, CommandError> {
    let stack = ctx.stack()?;
    let lineage = ctx.lineage(&stack)?;
    let remote_tip = match &args.remote {
        None => None,
        Some(r) => Some(lineage.remote_tip(r)?.ok_or_else(|| {
            CommandError::user(
                format!("remote `{r}` has no {}", lineage.ref_name),
                format!("push it first: git push {r} '{}'", lineage.ref_name),
            )
        })?),
    };
    let v = audit::verify(&lineage, remote_tip.as_deref(), args.signed, args.full)?;
    let drift = if args.live {
        // Read-only: the state as recorded (an interrupted apply's journal is left for the next apply).
        let state = lineage.state()?;
        let plan = ops::plan(&stack, &lineage, state, ctx.runtime()?, &PlanRequest::default())?;
        Some(plan)
    } else {
        None
    };
    if args.json {
        let json = serde_json::json!({
            "lineage_ref": lineage.ref_name,
            "commits": v.commits,
            "resumed_from": v.resumed_from,
            "problems": v.problems,
            "drift": drift.as_ref().map(|p| &p.drift),
            "behind": drift.as_ref().map(|p| p.changes.iter().filter(|c| c.is_to_record()).map(|c| c.address.to_string()).collect::<Vec<_>>()),
        });
        println!("{}", serde_json::to_string_pretty(&json).expect("serializes"));
    } else {
        let style = &ctx.style;
        let since = v
            .resumed_from
            .as_deref()
            .map(|c| format!(" after {} (verified before; --full checks from the root)", &c[..12.min(c.len())]))
            .unwrap_or_default();
        if v.problems.is_empty() {
            println!("{} {}: {} commit(s){since}, every one intact.", style.green("ok"), lineage.ref_name, v.commits);
        } else {
            println!(
                "{} {}: {} problem(s) in {} commit(s):",
                style.red("broken"),
                lineage.ref_name,
                v.problems.len(),
                v.commits
            );
            for p in &v.problems {
                println!("  {} {}", &p.commit[..12.min(p.commit.len())], p.problem);
            }
        }
        if let Some(plan) = &drift {
            let behind: Vec<String> =
                plan.changes.iter().filter(|c| c.is_to_record()).map(|c| c.address.to_string()).collect();
            if !behind.is_empty() {
                println!(
                    "{} lineage does not record {} live resource(s) as they are: {} (the next apply records them)",
                    style.yellow("behind"),
                    behind.len(),
                    behind.join(", ")
                );
            }
            if plan.drift.is_empty() && behind.is_empty() {
                println!("{} the live state matches the lineage tip.", style.green("ok"));
            } else {
                println!(
                    "{} {} resource(s) changed outside mlops since the last apply:",
                    style.yellow("drift"),
                    plan.drift.len()
                );
                for d in &plan.drift {
                    let attrs: Vec<&str> = d.attributes.iter().map(|a| a.path.as_str()).collect();
                    println!("  {} {:?} {}", d.address, d.kind, attrs.join(", "));
                }
            }
        }
    }
    if !v.problems.is_empty() {
        return Err(CommandError::Reported);
    }
    let differs = drift.is_some_and(|p| !p.drift.is_empty() || p.summary.unrecorded > 0);
    Ok(if differs { ExitStatus::Changes } else { ExitStatus::Success })
}
