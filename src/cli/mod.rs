//! The command line: global options, the command table, and the one place errors become exit codes.

pub mod progress;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme};

use crate::commands;
use crate::engine::{EngineError, Stack};
use crate::lineage::{Lineage, LineageError};
use crate::registry::Registry;
use crate::render::Style;
use crate::spec::diagnostic::Named;
use crate::spec::{self, LoadedSpec, SpecDiagnostic};

/// Git-native infrastructure-as-code for ML: models, datasets, feature stores and endpoints
/// declared in mlops.yaml, planned in the pull request, applied on merge, recorded in Git.
#[derive(Parser, Debug)]
#[command(name = "mlops", version, about, max_term_width = 100)]
pub struct Cli {
    /// Run as if mlops was started in DIR.
    #[arg(short = 'C', global = true, value_name = "DIR", value_parser = existing_dir)]
    pub directory: Option<PathBuf>,
    /// The spec file.
    #[arg(short = 'f', long = "file", global = true, value_name = "FILE", default_value = "mlops.yaml")]
    pub file: PathBuf,
    /// No colors (also when NO_COLOR is set or output is not a terminal).
    #[arg(long, global = true)]
    pub no_color: bool,
    /// The environment: its overrides under `environments:` apply, and it has its own lineage.
    #[arg(long = "env", global = true, value_name = "NAME", default_value = "default", env = "MLOPS_ENV", value_parser = environment_name)]
    pub environment: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a commented starter mlops.yaml on the local provider (and a Git repository if needed).
    Init(commands::init::InitArgs),
    /// Check the spec: schema, references, cycles, providers, names. Exit 1 on any error.
    Validate(commands::validate::ValidateArgs),
    /// Show what apply would change: desired (spec) vs live vs last applied (lineage).
    Plan(commands::plan::PlanArgs),
    /// Apply a saved plan, or plan and apply after confirmation; record the result in Git.
    Apply(commands::apply::ApplyArgs),
    /// Show a saved plan file or a lineage commit.
    Show(commands::show::ShowArgs),
    /// The apply history of this stack (newest first), optionally of one resource.
    Log(commands::log::LogArgs),
    /// Every resource as it stood at a point in history (default: now), with its versions and
    /// who applied it from which source commit.
    State(commands::state::StateArgs),
    /// The lineage graph (datasets → models → endpoints, with versions) at a point in history.
    Graph(commands::graph::GraphArgs),
    /// Plan the stack back to the versions recorded at a point in its history: a plan like any
    /// other, reviewed, saved and applied with `mlops apply FILE`.
    Rollback(commands::rollback::RollbackArgs),
    /// Check the lineage chain (digests, records, linear history); with --live, that the live
    /// state still matches it (exit 2 on drift).
    Verify(commands::verify::VerifyArgs),
    /// Audit records: `mlops audit export` writes every change as JSON lines or CSV.
    Audit(commands::audit::AuditArgs),
    /// Evaluate the policy gates of the spec's `policies:` on a plan. Exit 3 when one blocks it.
    Check(commands::check::CheckArgs),
    /// Plan environment TO at the versions (dataset manifests, model digests, generations) recorded
    /// in FROM's lineage; other per-environment values stay TO's.
    Promote(commands::promote::PromoteArgs),
    /// Adopt an object that already exists in a provider's backend (a model, endpoint, feature
    /// store or dataset) into lineage as a spec resource, so the next plan compares against it.
    Import(commands::import::ImportArgs),
    /// The repository's stacks (every mlops.yaml Git tracks, per environment); with --changed,
    /// only those a change affects, with the changed files: a CI matrix's input with --json.
    Stacks(commands::stacks::StacksArgs),
    /// Show or remove the stack's apply lock (`refs/mlops/lock/<project>/<environment>`).
    Unlock(commands::unlock::UnlockArgs),
    /// Print (or write) the JSON Schema of the spec or of a saved plan, as this binary reads them.
    Schema(commands::schema::SchemaArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(commands::completions::CompletionsArgs),
    /// Print the man page (roff), or write one page per command into a folder.
    Man(commands::man::ManArgs),
}

/// Process exit statuses. 2 is only used by `plan --detailed-exitcode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Success,
    Error,
    Changes,
    /// `mlops check`: a policy blocks the plan.
    Blocked,
    /// `mlops apply` stopped by SIGINT after recording what it did (128 + 2, as shells report it).
    Interrupted,
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> ExitCode {
        match s {
            ExitStatus::Success => ExitCode::SUCCESS,
            ExitStatus::Error => ExitCode::from(1),
            ExitStatus::Changes => ExitCode::from(2),
            ExitStatus::Blocked => ExitCode::from(3),
            ExitStatus::Interrupted => ExitCode::from(130),
        }
    }
}

#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum CommandError {
    #[error("the spec has {} error(s)", .0.len())]
    Spec(Vec<SpecDiagnostic>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Lineage(#[from] LineageError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Op(#[from] crate::ops::OpError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    PlanFile(#[from] crate::plan::PlanFileError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Stacks(#[from] crate::stacks::StacksError),
    #[error("{message}")]
    #[diagnostic(code(cli::usage))]
    User {
        message: String,
        #[help]
        help: Option<String>,
    },
    /// A file or the runtime could not be made: what, and the OS error as its cause.
    #[error("cannot {what}")]
    #[diagnostic(code(cli::io))]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Already reported (e.g. a partial apply): just exit 1.
    #[error("failed")]
    Reported,
}

impl CommandError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        CommandError::Io { what: what.into(), source }
    }

    pub fn user(message: impl Into<String>, help: impl Into<String>) -> Self {
        CommandError::User { message: message.into(), help: Some(help.into()) }
    }
}

/// What every command gets.
pub struct Context {
    /// The directory mlops runs in (after `-C`).
    pub cwd: PathBuf,
    /// The spec file, absolute.
    pub spec_path: PathBuf,
    /// The spec file as the user named it, for messages.
    pub spec_display: String,
    pub style: Style,
    /// Colors for stderr (diagnostics, progress).
    pub err_style: Style,
    pub registry: Registry,
    /// One async runtime per process: providers keep clients whose workers live on it.
    pub runtime: std::sync::Arc<std::sync::OnceLock<tokio::runtime::Runtime>>,
    /// Upstream stacks planned earlier in this run (`plan --stacks`): `${stack:…}` values they
    /// change are read from their plans.
    pub planned: crate::stacks::PlannedUpstreams,
}

impl Context {
    pub fn load_spec(&self) -> Result<LoadedSpec, CommandError> {
        let env = |k: &str| std::env::var(k).ok();
        let spec = spec::load_file(&self.spec_path, &self.spec_display, &env, &self.registry, &self.planned)
            .map_err(CommandError::Spec)?;
        for w in &spec.warnings {
            eprint!("{}", self.render_diagnostic(&Named::new(w)));
        }
        Ok(spec)
    }

    pub fn stack(&self) -> Result<Stack, CommandError> {
        Ok(Stack::new(self.load_spec()?, self.registry.clone())?)
    }

    pub fn lineage(&self, stack: &Stack) -> Result<Lineage, CommandError> {
        Ok(Lineage::open(stack.spec.base_dir(), stack.project(), &stack.environment)?)
    }

    /// A copy, e.g. to run for another environment.
    pub fn clone_for_env(&self) -> Context {
        Context {
            cwd: self.cwd.clone(),
            spec_path: self.spec_path.clone(),
            spec_display: self.spec_display.clone(),
            style: self.style,
            err_style: self.err_style,
            registry: self.registry.clone(),
            runtime: self.runtime.clone(),
            planned: self.planned.clone(),
        }
    }

    /// The context of one of the repository's stacks (`mlops stacks`): its spec and environment.
    pub fn for_stack(&self, root: &std::path::Path, stack: &crate::stacks::StackInfo) -> Context {
        Context {
            cwd: self.cwd.clone(),
            spec_path: root.join(&stack.spec),
            spec_display: stack.spec.clone(),
            style: self.style,
            err_style: self.err_style,
            registry: self.registry.clone().with_environment(stack.environment.clone()),
            runtime: self.runtime.clone(),
            planned: Default::default(),
        }
    }

    /// The lineage state, after recording (under the lock) what an interrupted apply left in the journal.
    pub fn lineage_state(&self, lineage: &Lineage) -> Result<crate::lineage::State, CommandError> {
        Ok(crate::ops::state(lineage, &|n| self.notice(&n))?)
    }

    /// Tells a person, on stderr, what an operation noticed.
    pub fn notice(&self, notice: &crate::ops::Notice) {
        use crate::ops::Notice;
        let warning = self.err_style.yellow("warning:");
        match notice {
            Notice::Recovered { commit } => eprintln!(
                "{warning} an earlier apply was interrupted before it could record its result; what it applied is now recorded as {} (Result: interrupted).",
                &commit[..12.min(commit.len())]
            ),
            Notice::BrokeStaleLock { holder } => eprintln!(
                "{warning} removed the lock left by {} (pid {}, {}), which is no longer running on this host.",
                holder.who, holder.pid, holder.operation
            ),
            Notice::CorruptJournal { moved_to } => eprintln!(
                "{warning} an interrupted apply left a journal that cannot be read; it was moved to {} and nothing was recorded from it. Run `mlops plan`: objects it created show as not recorded.",
                moved_to.display()
            ),
            Notice::RecoveryDeferred { holder } => eprintln!(
                "{warning} an apply's journal is pending while {} (pid {} on {}) holds the lock; the plan reads lineage as it is.",
                holder.who, holder.pid, holder.host
            ),
        }
    }

    pub fn runtime(&self) -> Result<&tokio::runtime::Runtime, CommandError> {
        if let Some(rt) = self.runtime.get() {
            return Ok(rt);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| CommandError::io("start the async runtime", e))?;
        Ok(self.runtime.get_or_init(|| rt))
    }

    /// Renders a diagnostic for stderr.
    pub fn render_diagnostic(&self, d: &dyn Diagnostic) -> String {
        let theme = if self.err_style.color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
        let mut out = String::new();
        let _ = GraphicalReportHandler::new_themed(theme).with_width(100).render_report(&mut out, d);
        out
    }
}

fn existing_dir(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    if p.is_dir() { Ok(p) } else { Err("no such directory".into()) }
}

/// An environment name (`--env`, `promote FROM TO`): part of a Git ref, so lowercase letters,
/// digits, `-` and `_`, at most 63.
pub fn environment_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(s.to_string())
    } else {
        Err("environment names are 1 to 63 lowercase letters, digits, `-` and `_`, starting with a letter or digit"
            .into())
    }
}

fn colors_wanted(no_color: bool, stream_is_tty: bool) -> bool {
    !no_color && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && stream_is_tty
}

pub fn main() -> ExitCode {
    // Like git: a closed stdout (`mlops log | head`) ends the process quietly, never a panic.
    sigpipe::reset();
    // Usage errors exit 1 like every other error: 2 means "changes" under `plan --detailed-exitcode`.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(1) } else { ExitCode::SUCCESS };
        }
    };
    run(cli).into()
}

pub fn run(cli: Cli) -> ExitStatus {
    let err_style = Style { color: colors_wanted(cli.no_color, std::io::stderr().is_terminal()) };
    let style = Style { color: colors_wanted(cli.no_color, std::io::stdout().is_terminal()) };
    let base = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let cwd = match &cli.directory {
        Some(d) => base.join(d),
        None => base,
    };
    let ctx = Context {
        spec_path: cwd.join(&cli.file),
        spec_display: cli.file.display().to_string(),
        cwd,
        style,
        err_style,
        registry: Registry::builtin().with_environment(cli.environment.clone()),
        runtime: Default::default(),
        planned: Default::default(),
    };
    let result = match &cli.command {
        Command::Init(a) => commands::init::run(&ctx, a),
        Command::Validate(a) => commands::validate::run(&ctx, a),
        Command::Plan(a) => commands::plan::run(&ctx, a),
        Command::Apply(a) => commands::apply::run(&ctx, a),
        Command::Show(a) => commands::show::run(&ctx, a),
        Command::Log(a) => commands::log::run(&ctx, a),
        Command::Unlock(a) => commands::unlock::run(&ctx, a),
        Command::Import(a) => commands::import::run(&ctx, a),
        Command::Check(a) => commands::check::run(&ctx, a),
        Command::State(a) => commands::state::run(&ctx, a),
        Command::Graph(a) => commands::graph::run(&ctx, a),
        Command::Rollback(a) => commands::rollback::run(&ctx, a),
        Command::Verify(a) => commands::verify::run(&ctx, a),
        Command::Audit(a) => commands::audit::run(&ctx, a),
        Command::Promote(a) => commands::promote::run(&ctx, a),
        Command::Schema(a) => commands::schema::run(&ctx, a),
        Command::Completions(a) => commands::completions::run(&ctx, a),
        Command::Man(a) => commands::man::run(&ctx, a),
        Command::Stacks(a) => commands::stacks::run(&ctx, a),
    };
    match result {
        Ok(status) => status,
        Err(e) => {
            report(&ctx, &e);
            ExitStatus::Error
        }
    }
}

pub(crate) fn report(ctx: &Context, e: &CommandError) {
    match e {
        CommandError::Reported => {}
        CommandError::Spec(diags) => {
            for d in diags {
                eprint!("{}", ctx.render_diagnostic(&Named::new(d)));
            }
            eprintln!("{} error(s) in {}", diags.len(), ctx.spec_display);
        }
        CommandError::Op(crate::ops::OpError::Engine(crate::engine::EngineError::Desired(list))) => {
            match placed(ctx, list) {
                Some(diags) => {
                    for d in &diags {
                        eprint!("{}", ctx.render_diagnostic(&Named::new(d)));
                    }
                    eprintln!("nothing was changed: fix the inputs named above and run the command again");
                }
                None => eprint!("{}", ctx.render_diagnostic(e)),
            }
        }
        other => eprint!("{}", ctx.render_diagnostic(other)),
    }
}

/// Inputs the engine could not turn into a desired state, each at its line in the spec (the
/// resource's, or the field the error names), when the spec still loads.
fn placed(
    ctx: &Context,
    list: &[(mlops_provider_core::Address, mlops_provider_core::ProviderError)],
) -> Option<Vec<spec::SpecDiagnostic>> {
    let env = |k: &str| std::env::var(k).ok();
    let loaded = spec::load_file(&ctx.spec_path, &ctx.spec_display, &env, &ctx.registry, &ctx.planned).ok()?;
    let root = loaded.root()?;
    list.iter()
        .map(|(address, error)| {
            let mut path = vec![address.kind.section().to_string(), address.name.clone()];
            let at_resource = spec::lookup(&root, &path).and_then(|(k, _)| k.map(|k| k.span))?;
            path.extend(error.path.iter().flat_map(|p| p.0.iter().cloned()));
            let span = spec::lookup(&root, &path).map(|(_, n)| n.span).filter(|_| error.path.is_some()).unwrap_or(at_resource);
            Some(
                spec::SpecDiagnostic::new("engine::desired", format!("{address}: {}", error.message))
                    .label(loaded.source.widen(span), "its input")
                    .help("nothing was changed; fix the input (source files, artifacts, references, signatures) and run the command again")
                    .with_source(&loaded.source),
            )
        })
        .collect()
}
