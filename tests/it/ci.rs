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
    assert_eq!(env.git(&["ls-remote", "origin"]), "", "the remote lock is released");

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
