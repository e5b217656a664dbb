use std::path::PathBuf;

use serde_json::json;

use crate::cli::{CommandError, Context, ExitStatus};
use crate::commands::plan::ScopeArgs;
use crate::plan::Plan;
use crate::policy::{self, Violation};
use crate::spec::diagnostic::Named;
use crate::spec::{self, SpecDiagnostic};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckFormat {
    Text,
    Json,
    Junit,
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// A saved plan; without one, the current plan is made first.
    pub plan_file: Option<PathBuf>,
    /// text; json (`{"passed": bool, "violations": [...], "warnings": [...]}`); or junit (a JUnit
    /// XML report, a test case per resource, for Jenkins' `junit` step and GitLab's
    /// `artifacts:reports:junit`).
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
    /// Same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Also evaluate the Rego policies in DIR (or a .rego file), as conftest does (repeatable).
    #[arg(long = "policy", value_name = "DIR")]
    pub policies: Vec<String>,
    #[command(flatten)]
    pub scope: ScopeArgs,
}

fn diagnostic(v: &Violation, loaded: &spec::LoadedSpec, root: Option<&spec::yaml::Node>) -> SpecDiagnostic {
    let lookup = |path: &[String]| root.and_then(|r| spec::lookup(r, path));
    // A rule about no resource in particular points at `policies:` (or at nothing).
    let mut path = match &v.address {
        Some(a) => vec![a.kind.section().to_string(), a.name.clone()],
        None => vec!["policies".to_string()],
    };
    let name_span = lookup(&path).and_then(|(k, _)| k.map(|k| k.span));
    if let Some(f) = &v.field {
        path.extend(f.split('.').map(str::to_string));
    }
    let span = lookup(&path).map(|(_, n)| n.span).filter(|_| v.field.is_some()).or(name_span);
    let mut d = SpecDiagnostic::new(v.code, v.message.clone())
        .help("change the spec to meet the policy under `policies:`, or change the policy in review");
    if let Some(span) = span {
        d = d.label(loaded.source.widen(span), "blocked by policy");
    }
    d.with_source(&loaded.source)
}

pub fn run(ctx: &Context, args: &CheckArgs) -> Result<ExitStatus, CommandError> {
    let stack = ctx.stack()?;
    let rules = stack.spec.spec.policies.clone().unwrap_or_default().for_environment(&stack.environment);
    let more: Vec<String> = args.policies.iter().map(|p| ctx.cwd.join(p).display().to_string()).collect();
    let sources = policy::rego_sources(&rules, stack.spec.base_dir(), &more);
    // Read once: the plan is made from it, and Rego policies read it as `data.mlops.state`.
    let lineage = ctx.lineage(&stack)?;
    let state = ctx.lineage_state(&lineage)?;
    let (plan, state): (Plan, _) = match &args.plan_file {
        // A saved plan is evaluated as the world gives it now: an edited one is refused as stale.
        Some(f) => {
            let saved = Plan::read_file(&ctx.cwd.join(f), &f.display().to_string())?;
            let parallelism = args.scope.request()?.parallelism;
            (crate::ops::recheck_saved(&stack, &lineage, &state, ctx.runtime()?, &saved, parallelism)?, state)
        }
        None => {
            // The plan takes the state by move: a copy is kept only for Rego policies to read.
            let kept = if sources.is_empty() { Default::default() } else { state.clone() };
            (crate::ops::plan(&stack, &lineage, state, ctx.runtime()?, &args.scope.request()?)?, kept)
        }
    };
    let policy::Verdict { violations, warnings } =
        policy::check(&plan, None, &rules, stack.spec.base_dir(), &sources, &state, &|a| {
            stack.spec.resource(a).map(|r| &r.config.body)
        })
        .map_err(|e| CommandError::user(e.to_string(), "fix the policy, then run `mlops check` again"))?;
    let root = if violations.is_empty() && warnings.is_empty() { None } else { stack.spec.root() };
    let diags: Vec<SpecDiagnostic> = violations.iter().map(|v| diagnostic(v, &stack.spec, root.as_ref())).collect();
    let warned: Vec<SpecDiagnostic> = warnings.iter().map(|v| diagnostic(v, &stack.spec, root.as_ref())).collect();
    let format = if args.json { CheckFormat::Json } else { args.format };
    if format == CheckFormat::Junit {
        use crate::render::junit::{self, Finding};
        fn findings<'a>(vs: &'a [Violation], ds: &[SpecDiagnostic]) -> Vec<Finding<'a>> {
            vs.iter().zip(ds).map(|(v, d)| Finding { violation: v, at: d.location().map(|(f, l, _)| (f, l)) }).collect()
        }
        print!("{}", junit::check(&plan, &findings(&violations, &diags), &findings(&warnings, &warned)));
    } else if format == CheckFormat::Json {
        let list = |vs: &[Violation], ds: &[SpecDiagnostic]| -> Vec<serde_json::Value> {
            vs.iter()
                .zip(ds)
                .map(|(v, d)| {
                    let loc = d.location();
                    json!({"code": v.code, "address": v.address.as_ref().map(|a| a.to_string()), "message": v.message,
                           "file": loc.as_ref().map(|l| l.0.clone()), "line": loc.as_ref().map(|l| l.1), "column": loc.as_ref().map(|l| l.2)})
                })
                .collect()
        };
        let out = json!({"passed": violations.is_empty(), "violations": list(&violations, &diags), "warnings": list(&warnings, &warned)});
        println!("{}", serde_json::to_string_pretty(&out).expect("serializes"));
    } else {
        for d in &warned {
            eprint!("{}", ctx.render_diagnostic(&Named::new(&d.clone().warning())));
        }
        if violations.is_empty() {
            println!("{} the plan passes every policy.", ctx.style.green("✓"));
        } else {
            for d in &diags {
                eprint!("{}", ctx.render_diagnostic(&Named::new(d)));
            }
            eprintln!("Blocked by policy: {} violation(s).", violations.len());
        }
    }
    if std::env::var_os("GITHUB_ACTIONS").is_some_and(|v| v == "true") {
        for (v, d) in violations.iter().zip(&diags) {
            let line = d.location().map(|l| l.1).unwrap_or(1);
            let file = &plan.source.spec;
            // Workflow commands: one annotation per violation, shown on the PR's diff.
            let message = v.message.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A");
            println!("::error file={file},line={line},title={}::{message}", v.code);
        }
    }
    Ok(if violations.is_empty() { ExitStatus::Success } else { ExitStatus::Blocked })
}
