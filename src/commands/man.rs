use std::path::PathBuf;

use clap::CommandFactory;

use crate::cli::{Cli, CommandError, Context, ExitStatus};

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Write mlops.1 and one page per command (mlops-plan.1, ...) into DIR instead of printing
    /// mlops.1, e.g. `mlops man --out-dir ~/.local/share/man/man1`.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

pub fn run(ctx: &Context, args: &ManArgs) -> Result<ExitStatus, CommandError> {
    let io = |e: std::io::Error| CommandError::io("write the man page", e);
    let command = Cli::command();
    match &args.out_dir {
        Some(dir) => {
            let dir = ctx.cwd.join(dir);
            std::fs::create_dir_all(&dir).map_err(io)?;
            clap_mangen::generate_to(command, &dir).map_err(io)?;
        }
        None => clap_mangen::Man::new(command).render(&mut std::io::stdout()).map_err(io)?,
    }
    Ok(ExitStatus::Success)
}
