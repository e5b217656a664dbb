//! Containment: the local provider writes and deletes only what it created, under its root, and
//! takes its configuration from the current spec.

use crate::common::TestEnv;

#[test]
fn a_symlink_under_the_root_is_never_followed() {
    let env = TestEnv::quickstart();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("precious.txt"), "not mlops's").unwrap();
    std::fs::create_dir_all(env.join(".mlops/local/datasets")).unwrap();
    std::os::unix::fs::symlink(outside.path(), env.join(".mlops/local/datasets/churn-train")).unwrap();
    // What the link leads to shows as files mlops did not write: a conflict, refused...
    let run = env.mlops(&["apply", "--auto-approve"]);
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(run.stdout.contains("did not write (precious.txt)"), "{}", run.stdout);
    // ...and forcing it still never follows the link.
    let run = env.mlops(&["apply", "--auto-approve", "--force-conflicts"]);
    assert_eq!(run.status, 1, "{}", run.stdout);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("is a symbolic link"), "{all}");
    let left: Vec<_> = std::fs::read_dir(outside.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("precious.txt")], "nothing written or deleted out there");
}

#[test]
fn foreign_files_in_a_managed_folder_are_a_conflict_not_a_silent_delete() {
    let env = TestEnv::quickstart();
    // A root that points at a folder already holding someone's files.
    std::fs::create_dir_all(env.join(".mlops/local/datasets/churn-train")).unwrap();
    env.write(".mlops/local/datasets/churn-train/notes.txt", "someone's notes");
    let plan = env.mlops(&["plan"]).ok();
    assert!(plan.stdout.contains("conflict"), "{}", plan.stdout);
    assert!(plan.stdout.contains("did not write (notes.txt)"), "{}", plan.stdout);
    let run = env.mlops(&["apply", "--auto-approve"]);
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("--force-conflicts"), "{}", run.stderr);
    assert_eq!(env.read(".mlops/local/datasets/churn-train/notes.txt"), "someone's notes");
    // Once mlops owns the folder, a file dropped in later is a conflict too, and a delete refuses.
    env.mlops(&["apply", "--auto-approve", "--force-conflicts"]).ok();
    assert!(env.mlops(&["plan", "--detailed-exitcode"]).status == 0);
    env.write(".mlops/local/datasets/churn-train/later.txt", "dropped in");
    assert!(env.mlops(&["plan"]).ok().stdout.contains("did not write (later.txt)"));
}

#[test]
fn a_saved_plan_with_an_edited_provider_config_is_stale_and_deletes_use_the_spec() {
    let env = TestEnv::quickstart();
    env.mlops(&["apply", "--auto-approve"]).ok();
    // Remove the endpoint from the spec, plan its delete, then point the plan at another folder.
    let spec = env.read("mlops.yaml");
    let cut = spec.find("endpoints:").unwrap();
    env.write("mlops.yaml", &spec[..cut]);
    env.commit("no endpoint");
    env.mlops(&["plan", "--out", "p.json"]).ok();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(outside.path().join("endpoints")).unwrap();
    std::fs::write(outside.path().join("endpoints/churn-api.json"), "{}").unwrap();
    let plan = env.read("p.json").replace("\"root\": \".mlops/local\"", &format!("\"root\": {:?}", outside.path()));
    assert_ne!(plan, env.read("p.json"), "the plan records the provider block");
    env.write("p.json", &plan);
    let run = env.mlops(&["apply", "p.json"]);
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("is not the spec's"), "{}", run.stderr);
    assert!(outside.path().join("endpoints/churn-api.json").exists(), "nothing deleted outside the root");
    assert!(env.join(".mlops/local/endpoints/churn-api.json").exists(), "nothing deleted at all");
    // Applied fresh, the delete goes to the spec's root (lineage's recorded block is not used either).
    env.mlops(&["apply", "--auto-approve"]).ok();
    assert!(!env.join(".mlops/local/endpoints/churn-api.json").exists());
    assert!(outside.path().join("endpoints/churn-api.json").exists());
}

#[test]
fn a_root_inside_git_or_overlapping_a_dataset_source_is_refused() {
    let env = TestEnv::quickstart();
    let spec = env.read("mlops.yaml");
    env.write("mlops.yaml", &spec.replace("root: .mlops/local", "root: .git/refs/mlops-local"));
    let run = env.mlops(&["plan"]);
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("is inside a Git"), "{}", run.stderr);
    assert!(!env.join(".git/refs/mlops-local").exists(), "nothing written into the repository");
    env.write("mlops.yaml", &spec.replace("root: .mlops/local", "root: data/train/state"));
    let run = env.mlops(&["validate"]);
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("the copy would copy itself"), "{}", run.stderr);
}
