use crate::cli::{CommandError, Context, ExitStatus};

#[derive(clap::Args, Debug)]
pub struct UnlockArgs {
    /// Remove the lock even though another process holds it (use only when that process is dead).
    #[arg(long)]
    pub force: bool,
}

pub fn run(ctx: &Context, args: &UnlockArgs) -> Result<ExitStatus, CommandError> {
    let stack = ctx.stack()?;
    let lineage = ctx.lineage(&stack)?;
    let Some(holder) = lineage.lock_holder() else {
        println!("{} is not locked.", lineage.lock_ref());
        return Ok(ExitStatus::Success);
    };
    if !args.force {
        return Err(CommandError::user(
            format!(
                "{} is held by {} on {} (pid {}) since {}, for {}",
                lineage.lock_ref(),
                holder.who,
                holder.host,
                holder.pid,
                holder.since,
                holder.operation
            ),
            "if that process is dead, run `mlops unlock --force`",
        ));
    }
    lineage.delete_lock(None)?;
    println!("Removed the lock held by {} on {} (pid {}) since {}.", holder.who, holder.host, holder.pid, holder.since);
    Ok(ExitStatus::Success)
}
