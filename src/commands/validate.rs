use mlops_provider_core::Kind;
use serde_json::json;

use crate::cli::{CommandError, Context, ExitStatus};

#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// Print the result as JSON: `{"valid": bool, "resources": {...}, "diagnostics": [...]}`.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: &ValidateArgs) -> Result<ExitStatus, CommandError> {
    match ctx.load_spec() {
        Ok(spec) => {
            let count = |k: Kind| spec.resources.iter().filter(|r| r.config.address.kind == k).count();
            if args.json {
                let resources: serde_json::Map<String, serde_json::Value> =
                    Kind::ALL.iter().map(|k| (k.section().to_string(), json!(count(*k)))).collect();
                println!(
                    "{}",
                    json!({"valid": true, "file": ctx.spec_display, "resources": resources,
                        "diagnostics": spec.warnings.iter().map(|d| d.to_json()).collect::<Vec<_>>()})
                );
            } else {
                println!(
                    "{} {} is valid: {} dataset(s), {} model(s), {} feature store(s), {} endpoint(s).",
                    ctx.style.green("✓"),
                    ctx.spec_display,
                    count(Kind::Dataset),
                    count(Kind::Model),
                    count(Kind::FeatureStore),
                    count(Kind::Endpoint)
                );
            }
            Ok(ExitStatus::Success)
        }
        Err(CommandError::Spec(diags)) if args.json => {
            let diagnostics: Vec<_> = diags.iter().map(|d| d.to_json()).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &json!({"valid": false, "file": ctx.spec_display, "diagnostics": diagnostics})
                )
                .expect("serializes")
            );
            Ok(ExitStatus::Error)
        }
        Err(e) => Err(e),
    }
}
