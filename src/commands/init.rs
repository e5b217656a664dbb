use crate::cli::{CommandError, Context, ExitStatus};
use crate::lineage;

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// The project name (default: the directory's name, made valid).
    #[arg(long)]
    pub project: Option<String>,
    /// Overwrite an existing spec file.
    #[arg(long)]
    pub force: bool,
}

/// Next to the spec, named by its `$schema` comment.
const SCHEMA_FILE: &str = "mlops.schema.json";

/// The starter spec: everything on the local provider, commented.
pub const STARTER: &str = r#"# yaml-language-server: $schema=mlops.schema.json
# mlops spec. `mlops validate` checks it, `mlops plan` shows what would change,
# `mlops apply` makes it so and records the result in Git (`mlops log`).
version: 1
project: {project}

providers:
  # The embedded provider: live state is kept on disk under `root` (git-ignored).
  local: { root: .mlops/local }

datasets:
  training-data:
    source: ./data                 # a folder, versioned by a sha256 manifest of its files
    description: Training data

models:
  classifier:
    artifact: ./model/model.bin    # copied into the local registry; a new digest is a new version
    framework: sklearn
    trained_on: [datasets.training-data]   # a reference: an edge of the graph and of the lineage
    registry: { group: classifier, approval: Approved }

feature_stores:
  customer:
    record_identifier: customer_id  # changing this or event_time replaces the store (destroys data)
    event_time: event_time
    features: { customer_id: string, tenure: integral, event_time: string }

endpoints:
  classifier-api:
    model: models.classifier
    instance_count: 1               # replicas
    traffic: { canary_percent: 0 }  # share the new model version gets while the old keeps the rest
"#;

fn project_name(ctx: &Context, given: &Option<String>) -> String {
    if let Some(p) = given {
        return p.clone();
    }
    let raw = ctx
        .cwd
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let mut name: String = raw
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .collect();
    name = name.trim_matches(['-', '_']).chars().take(63).collect();
    if name.is_empty() { "my-ml-stack".into() } else { name }
}

pub fn run(ctx: &Context, args: &InitArgs) -> Result<ExitStatus, CommandError> {
    let io = |what: &str, e: std::io::Error| CommandError::io(what, e);
    if ctx.spec_path.exists() && !args.force {
        return Err(CommandError::user(
            format!("{} already exists; nothing was changed", ctx.spec_display),
            "pass --force to overwrite it",
        ));
    }
    let project = project_name(ctx, &args.project);
    if !crate::provider::is_valid_name(&project) || project.chars().any(|c| c.is_ascii_uppercase() || c == '.') {
        return Err(CommandError::user(
            format!("`{project}` is not a valid project name"),
            "use --project with lowercase letters, digits, `-` and `_`",
        ));
    }
    let dir = ctx.spec_path.parent().unwrap_or(&ctx.cwd).to_path_buf();
    std::fs::create_dir_all(&dir).map_err(|e| io("create the directory", e))?;
    let mut created = vec![];
    if !lineage::in_repository(&dir) {
        lineage::init_repository(&dir)?;
        created.push("a Git repository (lineage is recorded in it)".to_string());
    }
    std::fs::write(&ctx.spec_path, STARTER.replace("{project}", &project)).map_err(|e| io("write the spec", e))?;
    created.push(ctx.spec_display.clone());
    // Editors resolve `$schema` offline from this file; `mlops schema --out mlops.schema.json`
    // refreshes it after an upgrade.
    std::fs::write(dir.join(SCHEMA_FILE), super::schema::text(super::schema::SchemaKind::Spec))
        .map_err(|e| io("write the schema", e))?;
    created.push(format!("{SCHEMA_FILE} (the spec's JSON Schema, for editors)"));
    let gitignore = dir.join(".gitignore");
    let current = std::fs::read_to_string(&gitignore).unwrap_or_default();
    if !current.lines().any(|l| l.trim() == ".mlops/" || l.trim() == ".mlops") {
        let sep = if current.is_empty() || current.ends_with('\n') { "" } else { "\n" };
        std::fs::write(&gitignore, format!("{current}{sep}# live state of the local provider\n.mlops/\n"))
            .map_err(|e| io("write .gitignore", e))?;
        created.push(".gitignore entry for .mlops/".into());
    }
    // Sample inputs, so that the first plan works; replace them with real ones.
    let samples: [(&str, &[u8]); 2] = [
        ("data/train.csv", b"customer_id,tenure,churned\nc1,12,0\nc2,3,1\n"),
        ("model/model.bin", b"replace me with a trained model artifact\n"),
    ];
    for (rel, bytes) in samples {
        let p = dir.join(rel);
        if !p.exists() {
            std::fs::create_dir_all(p.parent().expect("has a parent")).map_err(|e| io("create sample folders", e))?;
            std::fs::write(&p, bytes).map_err(|e| io("write sample files", e))?;
            created.push(format!("{rel} (sample)"));
        }
    }
    println!("Created:");
    for c in created {
        println!("  {c}");
    }
    println!("\nNext: `mlops validate`, `mlops plan`, then `mlops apply`.");
    Ok(ExitStatus::Success)
}
