//! The CI examples' steps, run as a script against the local provider: plan file → markdown →
//! check → apply of the saved plan under the remote lock → lineage commit.

use crate::common::TestEnv;

#[test]
fn the_ci_pipeline_runs_end_to_end() {
    let env = TestEnv::quickstart();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(root.join("examples/ci/pipeline.sh"), env.join("pipeline.sh")).unwrap();
    let remote = tempfile::tempdir().unwrap();
    let bare = remote.path().join("origin.git");
    env.git(&["init", "-q", "--bare", bare.to_str().unwrap()]);
    env.git(&["remote", "add", "origin", bare.to_str().unwrap()]);
    let run = |stage: &str| {
        std::process::Command::new("bash")
            .args(["pipeline.sh", stage])
            .current_dir(env.path())
            .env("MLOPS", env!("CARGO_BIN_EXE_mlops"))
            .env("MLOPS_LOCK_REMOTE", "origin")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let pr = run("pr");
    assert!(pr.status.success(), "{}{}", String::from_utf8_lossy(&pr.stdout), String::from_utf8_lossy(&pr.stderr));
    let comment = env.read("plan-comment/part-1.md");
    assert!(comment.contains("**4 to create · 0 to update · 0 to replace · 0 to delete**"), "{comment}");
    assert!(env.join("plan.json").exists());
    let apply = run("apply");
    assert!(apply.status.success(), "{}", String::from_utf8_lossy(&apply.stderr));
    assert_eq!(env.lineage("quickstart").len(), 1);
    let tip = env.lineage("quickstart")[0].clone();
    assert_eq!(
        env.git(&["ls-remote", "origin"]),
        format!("{tip}\trefs/mlops/lineage/quickstart/default\n"),
        "the remote lock is released, the record pushed"
    );

    // A policy that blocks the plan stops the PR stage with exit 3.
    let spec = env.read("mlops.yaml");
    env.write(
        "mlops.yaml",
        &format!(
            "{}\npolicies:\n  allowed_instance_types: [ml.m5.large]\n",
            spec.replace("instance_count: 2", "instance_count: 3")
        ),
    );
    let blocked = run("pr");
    assert_eq!(blocked.status.code(), Some(3), "{}", String::from_utf8_lossy(&blocked.stderr));
}

/// scripts/test never reports a green run that skipped: feature arguments and the variables that
/// make tests rewrite their expectations are refused before anything runs.
#[test]
fn the_test_command_refuses_what_would_skip_or_rewrite_tests() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = std::process::Command::new("bash");
        c.arg(&script).args(args).env_remove("CI").env_remove("UPDATE_SCHEMAS").env_remove("INSTA_UPDATE");
        c.env_remove("INSTA_FORCE_PASS");
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    for args in [&["--no-default-features"][..], &["--features", "local"], &["-p", "mlops"]] {
        let (code, err) = run(args, &[]);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains("would compile provider tests away"), "{args:?}: {err}");
    }
    for var in ["UPDATE_SCHEMAS", "INSTA_UPDATE", "INSTA_FORCE_PASS"] {
        let (code, err) = run(&[], &[("CI", "true"), (var, "1")]);
        assert_eq!(code, Some(2), "{var}: {err}");
        assert!(err.contains(&format!("{var} is set under CI")), "{err}");
    }
}
