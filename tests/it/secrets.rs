//! `${secret:…}`: the value reaches the backend and appears in nothing mlops writes or prints.

use crate::common::TestEnv;

const VALUE: &str = "s3cr3t-Hunter2-value";

fn env_with_secret() -> TestEnv {
    let env = TestEnv::quickstart();
    let spec = env.read("mlops.yaml");
    let spec = spec.replace(
        "environment: { LOG_LEVEL: info }",
        "environment: { LOG_LEVEL: info, DB_PASSWORD: \"${secret:DB_PASSWORD}\", DSN: \"postgres://app:${secret:DB_PASSWORD}@db/x\", API_KEY: \"${secret:file:api.key}\" }",
    );
    assert!(spec.contains("secret:DB_PASSWORD"), "the quickstart model has an environment to extend");
    env.write("mlops.yaml", &spec);
    env.write("api.key", "file-held-Key-9876\n");
    env.write(".gitignore", ".mlops/\napi.key\n");
    env.commit("secrets");
    env
}

#[test]
fn a_secret_reaches_the_backend_and_no_output_plan_lineage_or_journal() {
    let env = env_with_secret();
    let with = |args: &[&str]| env.mlops_env(args, &[("DB_PASSWORD", VALUE)]);
    let mut outputs = Vec::new();
    for args in [
        vec!["validate"],
        vec!["validate", "--json"],
        vec!["plan"],
        vec!["plan", "--json"],
        vec!["plan", "--format", "markdown"],
        vec!["plan", "--out", "p.json"],
        vec!["show", "p.json"],
        vec!["apply", "p.json"],
        vec!["plan"],
        vec!["show", "lineage"],
        vec!["show", "lineage", "--format", "json"],
        vec!["log"],
    ] {
        let run = with(&args).ok();
        outputs.push((args.join(" "), run.stdout + &run.stderr));
    }
    outputs.push(("p.json".into(), env.read("p.json")));
    let lineage = env.git(&["grep", "-c", "-e", "postgres://", "refs/mlops/lineage/quickstart/default"]);
    assert!(!lineage.is_empty(), "the lineage tree holds the masked DSN");
    for secret in [VALUE, "file-held-Key-9876"] {
        for (what, text) in &outputs {
            assert!(!text.contains(secret), "{what} shows the secret:\n{text}");
        }
        let found = std::process::Command::new("git")
            .args(["grep", "-F", secret, "refs/mlops/lineage/quickstart/default"])
            .current_dir(env.path())
            .output()
            .unwrap();
        assert!(found.stdout.is_empty(), "lineage holds it: {}", String::from_utf8_lossy(&found.stdout));
        let log = env.git(&["log", "-p", "refs/mlops/lineage/quickstart/default"]);
        assert!(!log.contains(secret));
    }
    let plan = &outputs.iter().find(|(w, _)| w == "plan --json").unwrap().1;
    assert!(plan.contains("(secret DB_PASSWORD, hmac:"), "the plan shows a marker: {plan}");
    assert!(plan.contains("postgres://app:(secret DB_PASSWORD, hmac:"), "{plan}");
    let replan = &outputs.iter().rev().find(|(w, _)| w == "plan").unwrap().1;
    assert!(replan.contains("No changes."), "re-plan is a no-op: {replan}");
    // The backend holds the values.
    let registry = env.read(".mlops/local/models/churn-clf/v1/version.json");
    assert!(registry.contains(VALUE) && registry.contains("postgres://app:s3cr3t"), "{registry}");
    assert!(registry.contains("file-held-Key-9876"), "{registry}");

    // A rotation is a visible change, old and new values never shown.
    let rotated = env.mlops_env(&["plan", "--detailed-exitcode"], &[("DB_PASSWORD", "rotated-Value-42")]);
    assert_eq!(rotated.status, 2, "{}", rotated.stdout);
    assert!(rotated.stdout.contains("~ environment.DB_PASSWORD = \"(secret DB_PASSWORD, hmac:"), "{}", rotated.stdout);
    assert!(!rotated.stdout.contains(VALUE) && !rotated.stdout.contains("rotated-Value-42"), "{}", rotated.stdout);

    // Unset: an error at the line, naming the variable, not a value.
    let unset = env.mlops(&["validate"]);
    assert_eq!(unset.status, 1);
    assert!(
        unset.stderr.contains("spec::undefined_secret") && unset.stderr.contains("DB_PASSWORD"),
        "{}",
        unset.stderr
    );
}

#[test]
fn a_secret_looking_env_interpolation_is_warned_about() {
    let env = TestEnv::quickstart();
    let spec = env.read("mlops.yaml").replace("LOG_LEVEL: info", "LOG_LEVEL: info, TOKEN: \"${env:SERVICE_TOKEN}\"");
    env.write("mlops.yaml", &spec);
    let run = env.mlops_env(&["validate"], &[("SERVICE_TOKEN", "t")]).ok();
    assert!(
        run.stderr.contains("spec::secret_in_env") && run.stderr.contains("${secret:SERVICE_TOKEN}"),
        "{}",
        run.stderr
    );
    let json = env.mlops_env(&["validate", "--json"], &[("SERVICE_TOKEN", "t")]).ok();
    assert!(json.stdout.contains("\"severity\":\"warning\""), "{}", json.stdout);
}
