//! The conventions of an installed CLI: schema, init's offline `$schema`, completions, man pages,
//! and live progress on a terminal only.

use std::path::Path;

use crate::common::TestEnv;

fn committed(file: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas").join(file)).unwrap()
}

#[test]
fn schema_prints_or_writes_the_schemas_this_binary_reads() {
    let env = TestEnv::new();
    assert_eq!(env.mlops(&["schema"]).ok().stdout, committed("mlops.schema.json"));
    env.mlops(&["schema", "plan", "--out", "plan.schema.json"]).ok();
    assert_eq!(env.read("plan.schema.json"), committed("plan.schema.json"));
}

#[test]
fn init_points_schema_at_a_file_it_writes_next_to_the_spec() {
    let env = TestEnv::new();
    let run = env.mlops(&["init", "--project", "demo"]).ok();
    assert!(run.stdout.contains("mlops.schema.json"), "{}", run.stdout);
    let spec = env.read("mlops.yaml");
    assert!(spec.starts_with("# yaml-language-server: $schema=mlops.schema.json\n"), "{spec}");
    assert!(!spec.contains("https://"), "no address this project does not serve: {spec}");
    assert_eq!(env.read("mlops.schema.json"), committed("mlops.schema.json"));
    // The starter spec is valid against the file it points at, and for mlops itself.
    let schema: serde_json::Value = serde_json::from_str(&env.read("mlops.schema.json")).unwrap();
    let value: serde_json::Value = serde_saphyr::from_str(&spec).unwrap();
    assert!(jsonschema::validator_for(&schema).unwrap().is_valid(&value));
    env.mlops(&["validate"]).ok();
}

#[test]
fn completions_and_man_pages() {
    let env = TestEnv::new();
    let bash = env.mlops(&["completions", "bash"]).ok().stdout;
    assert!(bash.contains("complete -F") && bash.contains("promote"), "{bash}");
    assert!(env.mlops(&["completions", "zsh"]).ok().stdout.starts_with("#compdef mlops"));
    assert!(env.mlops(&["completions", "fish"]).ok().stdout.contains("complete -c mlops"));
    assert_eq!(env.mlops(&["completions", "tcsh"]).status, 1, "an unknown shell is a usage error");
    let man = env.mlops(&["man"]).ok().stdout;
    assert!(man.contains(".TH mlops 1") && man.contains("apply"), "{man}");
    env.mlops(&["man", "--out-dir", "man"]).ok();
    for page in ["mlops.1", "mlops-plan.1", "mlops-apply.1"] {
        assert!(env.join("man").join(page).is_file(), "{page}");
    }
}

/// On a terminal (a pseudo-terminal from util-linux `script`) apply draws live spinners; piped, it
/// prints plain lines. Both end with the same lines per change.
#[test]
fn apply_shows_live_progress_on_a_terminal_and_lines_elsewhere() {
    if std::process::Command::new("script").arg("--version").output().is_err() {
        panic!("util-linux `script` is needed for this test");
    }
    let piped = TestEnv::quickstart();
    let run = piped.mlops(&["apply", "--auto-approve"]).ok();
    assert!(!run.stdout.contains('\x1b'), "no terminal control on a pipe: {:?}", run.stdout);
    assert!(run.stdout.contains("datasets.churn-train: Creating..."), "{}", run.stdout);

    let tty = TestEnv::quickstart();
    let command = format!("{} apply --auto-approve", env!("CARGO_BIN_EXE_mlops"));
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(tty.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", tty.path())
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("MLOPS_NOW", crate::common::NOW)
        .env("TERM", "xterm")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("\x1b["), "a terminal gets live redraws: {stdout:?}");
    assert!(stdout.contains("datasets.churn-train: Creation complete after"), "{stdout}");
    assert!(stdout.contains("Apply complete!"), "{stdout}");
}
