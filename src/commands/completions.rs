use clap::CommandFactory;

use crate::cli::{Cli, CommandError, Context, ExitStatus};

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell, e.g. `mlops completions bash > ~/.local/share/bash-completion/completions/mlops`.
    pub shell: clap_complete::Shell,
}

pub fn run(_ctx: &Context, args: &CompletionsArgs) -> Result<ExitStatus, CommandError> {
    clap_complete::generate(args.shell, &mut Cli::command(), "mlops", &mut std::io::stdout());
    Ok(ExitStatus::Success)
}
