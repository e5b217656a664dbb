use crate::cli::{CommandError, Context, ExitStatus};

#[derive(clap::Args, Debug)]
pub struct UnlockArgs {
    /// Remove the lock although a process holds it. Refused while that process runs on this
    /// host (a dead holder's lock is removed by the next apply by itself).
    #[arg(long)]
    pub force: bool,
    /// With --force: remove it even while its holder runs on this host.
    #[arg(long, requires = "force")]
    pub even_if_alive: bool,
}

pub fn run(ctx: &Context, args: &UnlockArgs) -> Result<ExitStatus, CommandError> {
    let stack = ctx.stack()?;
    let lineage = ctx.lineage(&stack)?;
    let git_locks = lineage.stale_git_locks();
    if !git_locks.is_empty() {
        let list: Vec<String> = git_locks.iter().map(|p| p.display().to_string()).collect();
        if !args.force {
            return Err(CommandError::user(
                format!("Git's lock file(s) {} exist, left by a crashed Git process", list.join(", ")),
                "if no Git command or mlops apply runs in this repository, remove them with `mlops unlock --force`",
            ));
        }
        for p in &git_locks {
            std::fs::remove_file(p).map_err(|e| CommandError::io(format!("remove {}", p.display()), e))?;
        }
        println!("Removed Git's stale lock file(s): {}.", list.join(", "));
    }
    let Some(holder) = lineage.lock_holder() else {
        if let Some(what) = lineage.unreadable_lock() {
            if !args.force {
                return Err(CommandError::user(
                    format!("the lock {} points at {what}", lineage.lock_ref()),
                    "no apply can hold it; remove it with `mlops unlock --force`",
                ));
            }
            lineage.delete_lock(None)?;
            println!("Removed the lock {}, which pointed at {what}.", lineage.lock_ref());
            return Ok(ExitStatus::Success);
        }
        println!("{} is not locked.", lineage.lock_ref());
        return Ok(ExitStatus::Success);
    };
    let held = format!(
        "{} is held by {} on {} (pid {}) since {}, for {}",
        lineage.lock_ref(),
        holder.who,
        holder.host,
        holder.pid,
        holder.since,
        holder.operation
    );
    if !args.force {
        return Err(CommandError::user(held, "if that process is dead, run `mlops unlock --force`"));
    }
    if holder.alive() == Some(true) && !args.even_if_alive {
        return Err(CommandError::user(
            format!("{held}, and that process is running on this host; nothing was changed"),
            "wait for it to finish; removing a running apply's lock lets another apply interleave with it \
             (`--even-if-alive` does it anyway)",
        ));
    }
    lineage.delete_lock(None)?;
    println!("Removed the lock held by {} on {} (pid {}) since {}.", holder.who, holder.host, holder.pid, holder.since);
    Ok(ExitStatus::Success)
}
