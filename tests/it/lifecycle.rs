//! End to end on the quickstart: apply, re-plan, updates, deletes, drift, stale plans, partial applies.

use mlops::registry::Registry;

use crate::common::TestEnv;

#[test]
fn quickstart_apply_then_nothing_to_do() {
    let env = TestEnv::quickstart();
    let run = env.mlops(&["apply", "--auto-approve"]).ok();
    assert!(
        run.stdout.contains("Apply complete! Resources: 4 added, 0 changed, 0 replaced, 0 destroyed."),
        "{}",
        run.stdout
    );
    assert_eq!(env.lineage("quickstart").len(), 1);

    let again = env.mlops(&["apply", "--auto-approve"]).ok();
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);
    assert_eq!(env.lineage("quickstart").len(), 1, "a no-op apply writes no lineage commit");

    let plan = env.mlops(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status, 0);

    // The lineage commit: one file per resource, the plan, and the trailers.
    let files = env.git(&["ls-tree", "-r", "--name-only", "refs/mlops/lineage/quickstart/default"]);
    assert_eq!(
        files.lines().collect::<Vec<_>>(),
        [
            "plan.json",
            "resources/datasets/churn-train.json",
            "resources/endpoints/churn-api.json",
            "resources/feature_stores/customer.json",
            "resources/models/churn-clf.json",
            "result.json"
        ]
    );
    let msg = env.git(&["log", "-1", "--format=%B", "refs/mlops/lineage/quickstart/default"]);
    let head = env.git(&["rev-parse", "HEAD"]);
    assert!(msg.starts_with("apply quickstart/default: 4 created, 0 updated, 0 replaced, 0 deleted"), "{msg}");
    assert!(msg.contains(&format!("Source-Commit: {}", head.trim())), "{msg}");
    assert!(msg.contains("Source-Dirty: false"), "{msg}");
    assert!(msg.contains("Plan-Digest: sha256:"), "{msg}");
    assert!(msg.contains("Applied-By: Test User <test@example.com>"), "{msg}");
    assert!(msg.contains("Result: success"), "{msg}");
    // Lineage edge with the version the model was trained on.
    let model: serde_json::Value = serde_json::from_str(
        &env.git(&["show", "refs/mlops/lineage/quickstart/default:resources/models/churn-clf.json"]),
    )
    .unwrap();
    let ds: serde_json::Value = serde_json::from_str(
        &env.git(&["show", "refs/mlops/lineage/quickstart/default:resources/datasets/churn-train.json"]),
    )
    .unwrap();
    assert_eq!(model["inputs"]["datasets.churn-train"], ds["outputs"]["version"]);
    assert_eq!(model["outputs"]["version"], 1);
    // The project's tree stays clean: live state is under the git-ignored root.
    assert_eq!(env.git(&["status", "--porcelain"]), "");
}

#[test]
fn dataset_edit_plans_update_with_digests_and_endpoint_removal_plans_delete() {
    let env = TestEnv::quickstart();
    env.mlops(&["apply", "--auto-approve"]).ok();
    let before = env.mlops(&["plan", "--json"]).ok();
    let before: serde_json::Value = serde_json::from_str(&before.stdout).unwrap();
    let old_digest = before["changes"][0]["live"]["attributes"]["digest"].as_str().unwrap().to_string();

    env.write("data/train/2026-11.csv", "customer_id,tenure_months,monthly_spend,churned\nc-001,14,59.90,1\n");
    let plan = env.mlops(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status, 2, "{}", plan.stderr);
    assert!(plan.stdout.contains("~ datasets.churn-train # will be updated in place"), "{}", plan.stdout);
    assert!(plan.stdout.contains(&format!("~ digest = \"{old_digest}\" → \"sha256:")), "{}", plan.stdout);
    assert!(plan.stdout.contains("~ files[\"2026-11.csv\"]"), "{}", plan.stdout);
    env.mlops(&["apply", "--auto-approve"]).ok();
    let msg = env.git(&["log", "-1", "--format=%B", "refs/mlops/lineage/quickstart/default"]);
    assert!(msg.contains("Source-Dirty: true"), "uncommitted source data is recorded as dirty: {msg}");
    env.commit("new data");

    let spec = env.read("mlops.yaml");
    let cut = spec.find("endpoints:").unwrap();
    env.write("mlops.yaml", &spec[..cut]);
    let plan = env.mlops(&["plan"]).ok();
    assert!(plan.stdout.contains("- endpoints.churn-api # will be deleted (removed from the spec)"), "{}", plan.stdout);
    assert!(
        plan.stdout.contains("Plan: 0 to create, 0 to update, 0 to replace, 1 to delete, 3 unchanged."),
        "{}",
        plan.stdout
    );
    env.mlops(&["apply", "--auto-approve"]).ok();
    assert!(!env.join(".mlops/local/endpoints/churn-api.json").exists());
    assert_eq!(env.lineage("quickstart").len(), 3);
    let log = env.git(&["log", "--format=%s", "refs/mlops/lineage/quickstart/default"]);
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            "apply quickstart/default: 0 created, 0 updated, 0 replaced, 1 deleted",
            "apply quickstart/default: 0 created, 1 updated, 0 replaced, 0 deleted",
            "apply quickstart/default: 4 created, 0 updated, 0 replaced, 0 deleted",
        ]
    );
    let mlog = env.mlops(&["log", "endpoints.churn-api"]).ok();
    assert_eq!(mlog.stdout.matches("lineage ").count(), 2, "{}", mlog.stdout);
}

#[test]
fn hand_edit_under_local_root_is_drift() {
    let env = TestEnv::quickstart();
    env.mlops(&["apply", "--auto-approve"]).ok();
    env.write(".mlops/local/datasets/churn-train/2026-09.csv", "tampered\n");
    let mut ep: serde_json::Value = serde_json::from_str(&env.read(".mlops/local/endpoints/churn-api.json")).unwrap();
    ep["spec"]["replicas"] = serde_json::json!(5);
    env.write(".mlops/local/endpoints/churn-api.json", &ep.to_string());

    let plan = env.mlops(&["plan", "--json"]).ok();
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let drift = plan["drift"].as_array().unwrap();
    let addresses: Vec<&str> = drift.iter().map(|d| d["address"].as_str().unwrap()).collect();
    assert_eq!(addresses, ["datasets.churn-train", "endpoints.churn-api"]);
    let replicas = drift[1]["attributes"].as_array().unwrap().iter().find(|a| a["path"] == "replicas").unwrap();
    assert_eq!((replicas["before"].as_u64(), replicas["after"].as_u64()), (Some(2), Some(5)));
    let text = env.mlops(&["plan"]).ok();
    assert!(text.stdout.starts_with("Drift: objects changed outside mlops since the last apply"), "{}", text.stdout);
    assert!(text.stdout.contains("~ replicas = 5 → 2"), "the plan puts it back: {}", text.stdout);
    // Apply converges, and the next plan is clean.
    env.mlops(&["apply", "--auto-approve"]).ok();
    assert!(env.mlops(&["plan"]).ok().stdout.contains("No changes."));
}

#[test]
fn stale_saved_plans_are_refused_and_change_nothing() {
    let env = TestEnv::quickstart();
    env.mlops(&["plan", "--out", "reviewed.json"]).ok();
    // The spec changed after review.
    let spec = env.read("mlops.yaml");
    env.write("mlops.yaml", &spec.replace("instance_count: 2", "instance_count: 3"));
    let run = env.mlops(&["apply", "reviewed.json"]);
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("plan::stale"), "{}", run.stderr);
    assert!(run.stderr.contains("the spec mlops.yaml changed since the plan was made"), "{}", run.stderr);
    assert!(!env.join(".mlops").exists(), "nothing was applied");
    assert!(env.lineage("quickstart").is_empty());

    // A live object changed after review.
    env.write("mlops.yaml", &spec);
    env.mlops(&["apply", "--auto-approve"]).ok();
    env.write("mlops.yaml", &spec.replace("instance_count: 2", "instance_count: 3"));
    env.mlops(&["plan", "--out", "reviewed.json"]).ok();
    let ep_path = ".mlops/local/endpoints/churn-api.json";
    let mut ep: serde_json::Value = serde_json::from_str(&env.read(ep_path)).unwrap();
    ep["spec"]["instance_type"] = serde_json::json!("local.gpu");
    env.write(ep_path, &ep.to_string());
    let tampered = env.read(ep_path);
    let run = env.mlops(&["apply", "reviewed.json"]);
    assert_eq!(run.status, 1);
    assert!(
        run.stderr.contains("endpoints.churn-api changed in the live world since the plan was made"),
        "{}",
        run.stderr
    );
    assert_eq!(env.read(ep_path), tampered, "nothing was changed");
    assert_eq!(env.lineage("quickstart").len(), 1);

    // A fresh plan applies.
    env.mlops(&["plan", "--out", "reviewed.json"]).ok();
    let run = env.mlops(&["apply", "reviewed.json"]).ok();
    assert!(run.stdout.contains("Apply complete!"), "{}", run.stdout);
    assert_eq!(env.lineage("quickstart").len(), 2);
}

#[test]
fn apply_without_terminal_or_approval_refuses() {
    let env = TestEnv::quickstart();
    let run = env.mlops(&["apply"]);
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("no terminal to ask on"), "{}", run.stderr);
    assert!(!env.join(".mlops").exists());
}

#[test]
fn outside_a_repository_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    crate::common::copy_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart"), dir.path());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mlops"))
        .args(["-C", dir.path().to_str().unwrap(), "--no-color", "plan"])
        .env("GIT_CEILING_DIRECTORIES", dir.path().parent().unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lineage::no_repository"), "{err}");
    assert!(err.contains("mlops init"), "{err}");
}

#[test]
fn a_failure_stops_dependents_only_and_is_recorded_as_partial() {
    let env = TestEnv::quickstart();
    // A file where the endpoints' folder must go makes their writes fail.
    env.write(".mlops/local/endpoints", "in the way");
    let spec = env.read("mlops.yaml");
    env.write(
        "mlops.yaml",
        &format!("{spec}  shadow-api:\n    model: models.churn-clf\n    depends_on: [endpoints.churn-api]\n"),
    );
    let run = env.mlops(&["apply", "--auto-approve"]);
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(run.stdout.contains("endpoints.churn-api: Creation failed"), "{}", run.stdout);
    assert!(run.stdout.contains("endpoints.shadow-api: skipped, because endpoints.churn-api failed"), "{}", run.stdout);
    assert!(run.stderr.contains("Apply failed: 2 of 5 change(s) did not apply"), "{}", run.stderr);
    let msg = env.git(&["log", "-1", "--format=%B", "refs/mlops/lineage/quickstart/default"]);
    assert!(msg.contains("Result: partial"), "{msg}");
    assert!(msg.contains("! endpoints.churn-api: failed"), "{msg}");
    let files = env.git(&["ls-tree", "-r", "--name-only", "refs/mlops/lineage/quickstart/default", "resources/"]);
    assert!(!files.contains("endpoints/"), "failed resources are not recorded as applied: {files}");

    // Fix the cause: the next plan shows exactly what is left.
    std::fs::remove_file(env.join(".mlops/local/endpoints")).unwrap();
    let plan = env.mlops(&["plan"]).ok();
    assert!(
        plan.stdout.contains("Plan: 2 to create, 0 to update, 0 to replace, 0 to delete, 3 unchanged."),
        "{}",
        plan.stdout
    );
    env.mlops(&["apply", "--auto-approve"]).ok();
    assert!(env.mlops(&["plan"]).ok().stdout.contains("No changes."));
}

#[test]
fn targets_limit_the_plan_to_a_resource_and_its_dependencies() {
    let env = TestEnv::quickstart();
    let plan = env.mlops(&["plan", "--json", "--target", "models.churn-clf"]).ok();
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let addrs: Vec<&str> = plan["changes"].as_array().unwrap().iter().map(|c| c["address"].as_str().unwrap()).collect();
    assert_eq!(addrs, ["datasets.churn-train", "models.churn-clf"]);
    let bad = env.mlops(&["plan", "--target", "models.churn-clff"]);
    assert_eq!(bad.status, 1);
    assert!(bad.stderr.contains("did you mean `models.churn-clf`?"), "{}", bad.stderr);
}

#[test]
fn model_change_moves_the_endpoint_with_a_canary_split() {
    let env = TestEnv::quickstart();
    env.mlops(&["apply", "--auto-approve"]).ok();
    env.write("model/churn-clf.json", "{\"kind\": \"logistic-regression\", \"retrained\": true}\n");
    let plan = env.mlops(&["plan"]).ok();
    assert!(plan.stdout.contains("~ models.churn-clf # will be updated in place"), "{}", plan.stdout);
    assert!(plan.stdout.contains("~ endpoints.churn-api # will be updated in place"), "{}", plan.stdout);
    assert!(plan.stdout.contains("~ model_digest = "), "{}", plan.stdout);
    env.mlops(&["apply", "--auto-approve"]).ok();
    let ep: serde_json::Value = serde_json::from_str(&env.read(".mlops/local/endpoints/churn-api.json")).unwrap();
    assert_eq!(ep["model_version"], 2);
    assert_eq!(
        ep["traffic"],
        serde_json::json!([{"model_version": 2, "percent": 10}, {"model_version": 1, "percent": 90}])
    );
    let registry: serde_json::Value =
        serde_json::from_str(&env.read(".mlops/local/models/churn-clf/registry.json")).unwrap();
    assert_eq!((registry["current"].clone(), registry["latest"].clone()), (2.into(), 2.into()));
    assert!(env.join(".mlops/local/models/churn-clf/v1/version.json").is_file(), "version 1 is kept");
}

#[test]
fn feature_store_key_change_is_a_data_destroying_replace() {
    let env = TestEnv::quickstart();
    env.mlops(&["apply", "--auto-approve"]).ok();
    let spec = env.read("mlops.yaml");
    env.write("mlops.yaml", &spec.replace("event_time: event_time", "event_time: tenure_months"));
    let plan = env.mlops(&["plan"]).ok();
    assert!(
        plan.stdout.contains("-/+ feature_stores.customer # will be replaced (forced by event_time) [data-destroying]"),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("# forces replacement"), "{}", plan.stdout);
    assert!(plan.stdout.contains("# data-destroying: replacing feature_stores.customer"), "{}", plan.stdout);
    env.write(".mlops/local/feature_stores/customer/records/part-0.jsonl", "{\"customer_id\": \"c1\"}\n");

    let refused = env.mlops(&["apply", "--auto-approve"]);
    assert_eq!(refused.status, 1);
    assert!(
        refused.stderr.contains("the plan destroys stored data (feature_stores.customer); nothing was changed"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--allow-data-loss"), "{}", refused.stderr);
    assert!(env.join(".mlops/local/feature_stores/customer/records/part-0.jsonl").exists());
    assert_eq!(env.lineage("quickstart").len(), 1);

    env.mlops(&["apply", "--auto-approve", "--allow-data-loss"]).ok();
    assert!(!env.join(".mlops/local/feature_stores/customer/records/part-0.jsonl").exists());
}

#[test]
fn tags_flag_model_version_changes_and_traffic_shifts() {
    let env = TestEnv::quickstart();
    env.mlops(&["apply", "--auto-approve"]).ok();
    env.write("model/churn-clf.json", "{\"retrained\": true}\n");
    let spec = env.read("mlops.yaml");
    env.write("mlops.yaml", &spec.replace("canary_percent: 10", "canary_percent: 50"));
    let plan = env.mlops(&["plan", "--json"]).ok();
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let tags_of = |addr: &str| -> Vec<serde_json::Value> {
        plan["changes"].as_array().unwrap().iter().find(|c| c["address"] == addr).unwrap()["tags"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let model = tags_of("models.churn-clf");
    assert_eq!(model.len(), 1, "{model:?}");
    assert_eq!(model[0]["tag"], "model-version-change");
    assert_eq!(model[0]["from_version"], 1);
    let endpoint: Vec<String> =
        tags_of("endpoints.churn-api").iter().map(|t| t["tag"].as_str().unwrap().to_string()).collect();
    assert_eq!(endpoint, ["traffic-shift", "model-version-change"]);
    let shift = &tags_of("endpoints.churn-api")[0];
    assert_eq!((shift["before"].as_u64(), shift["after"].as_u64()), (Some(10), Some(50)));
    let text = env.mlops(&["plan"]).ok();
    assert!(text.stdout.contains("Flagged: 2 model-version-change, 1 traffic-shift"), "{}", text.stdout);
}

#[test]
fn init_writes_a_starter_that_plans() {
    let dir = tempfile::tempdir().unwrap();
    let env = TestEnv { dir };
    let run = env.mlops(&["init", "--project", "starter"]).ok();
    assert!(run.stdout.contains("a Git repository"), "{}", run.stdout);
    env.mlops(&["validate"]).ok();
    let plan = env.mlops(&["plan"]).ok();
    assert!(plan.stdout.contains("Plan: 4 to create"), "{}", plan.stdout);
    let again = env.mlops(&["init"]);
    assert_eq!(again.status, 1, "init refuses to overwrite");
}

#[test]
fn an_apply_killed_before_recording_is_recovered_from_its_journal() {
    use mlops::lineage::Lineage;
    let env = TestEnv::quickstart();
    let lineage = Lineage::open(env.path(), "quickstart", "default").unwrap();
    let journal = lineage.journal();
    write_interrupted_apply(&env, &lineage);
    assert!(env.lineage("quickstart").is_empty());
    assert_eq!(journal.pending().map(|(_, _, e)| e.len()), Some(4));

    let run = env.mlops(&["plan"]).ok();
    assert!(run.stderr.contains("an earlier apply was interrupted"), "{}", run.stderr);
    assert!(run.stdout.contains("No changes."), "{}", run.stdout);
    let msg = env.git(&["log", "-1", "--format=%B", "refs/mlops/lineage/quickstart/default"]);
    assert!(msg.contains("Result: interrupted"), "{msg}");
    let files = env.git(&["ls-tree", "-r", "--name-only", "refs/mlops/lineage/quickstart/default", "resources/"]);
    assert_eq!(files.lines().count(), 4, "{files}");
    assert!(journal.pending().is_none(), "the journal is removed once recorded");
}

#[test]
fn concurrent_applies_exactly_one_applies_the_others_fail_fast_naming_the_holder() {
    let env = TestEnv::quickstart();
    // Hold the lock as a running apply would, then start 8 applies at once.
    let lineage = mlops::lineage::Lineage::open(env.path(), "quickstart", "default").unwrap();
    let guard = lineage.lock("mlops apply (test holder)").unwrap();
    let children = env.spawn_mlops(8, &["--no-color", "apply", "--auto-approve"]);
    let started = std::time::Instant::now();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("lineage::locked"), "{err}");
        assert!(err.contains("Test User <test@example.com>"), "names the holder: {err}");
        assert!(err.contains("mlops apply (test holder)"), "{err}");
    }
    assert!(started.elapsed().as_secs() < 10, "they fail fast: {:?}", started.elapsed());
    assert!(!env.join(".mlops").exists(), "nothing was applied");
    drop(guard);

    // Without a holder, 8 at once: exactly one applies, the rest fail on its lock or find nothing to do.
    let children = env.spawn_mlops(8, &["--no-color", "apply", "--auto-approve"]);
    assert_eq!(count_applied(children), 1);
    assert_eq!(env.lineage("quickstart").len(), 1, "exactly one new lineage commit");
    assert!(lineage.lock_holder().is_none(), "the lock is released");
    assert!(env.mlops(&["unlock"]).ok().stdout.contains("is not locked"));
}

#[test]
fn the_lock_on_a_bare_remote_keeps_runners_apart() {
    let env = TestEnv::quickstart();
    let remote = tempfile::tempdir().unwrap();
    let remote_path = remote.path().join("origin.git");
    env.git(&["init", "-q", "--bare", remote_path.to_str().unwrap()]);
    env.git(&["remote", "add", "origin", remote_path.to_str().unwrap()]);

    // Another runner (another clone) holds the remote lock.
    let other = TestEnv::new();
    other.git(&["remote", "add", "origin", remote_path.to_str().unwrap()]);
    let other_lineage = mlops::lineage::Lineage::open(other.path(), "quickstart", "default").unwrap();
    let held = other_lineage.lock_remote("origin", "mlops apply (runner 2)").unwrap();
    let started = std::time::Instant::now();
    for child in env.spawn_mlops(8, &["--no-color", "apply", "--auto-approve", "--lock-remote", "origin"]) {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("lineage::locked"), "{err}");
        assert!(err.contains("origin:refs/mlops/lock/quickstart/default"), "{err}");
        assert!(err.contains("mlops apply (runner 2)"), "names the holder: {err}");
    }
    assert!(started.elapsed().as_secs() < 15, "{:?}", started.elapsed());
    assert!(env.lineage("quickstart").is_empty());
    drop(held);
    assert_eq!(env.git(&["ls-remote", "origin"]), "", "the holder released it");

    assert_eq!(
        count_applied(env.spawn_mlops(8, &["--no-color", "apply", "--auto-approve", "--lock-remote", "origin"])),
        1
    );
    assert_eq!(env.lineage("quickstart").len(), 1);
    let tip = env.lineage("quickstart")[0].clone();
    assert_eq!(
        env.git(&["ls-remote", "origin"]),
        format!("{tip}\trefs/mlops/lineage/quickstart/default\n"),
        "the lock released after the apply, the record pushed"
    );
}

/// How many of the concurrent applies applied; each other one met the lock or found nothing to do.
fn count_applied(children: Vec<std::process::Child>) -> usize {
    let mut applied = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stdout.contains("Apply complete!") {
            applied += 1;
        } else {
            assert!(stderr.contains("lineage::locked") || stdout.contains("No changes."), "{stdout}\n{stderr}");
        }
    }
    applied
}

/// `Source-Dirty` (the plan's `source.dirty`): the spec and every file it reads, against HEAD.
#[test]
fn the_dirty_check_sees_modified_added_untracked_and_removed_inputs_only() {
    let env = TestEnv::quickstart();
    let dirty = || -> bool {
        let run = env.mlops(&["plan", "--json"]).ok();
        let plan: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        plan["source"]["dirty"].as_bool().unwrap()
    };
    assert!(!dirty(), "everything committed");
    env.write("notes.txt", "not an input\n");
    assert!(!dirty(), "an untracked file that is no input does not count");

    let csv = env.read("data/train/2026-10.csv");
    env.write("data/train/2026-10.csv", &format!("{csv}c-999,1,1.0,0\n"));
    assert!(dirty(), "a modified file in a dataset source");
    env.git(&["checkout", "--", "data/train/2026-10.csv"]);
    assert!(!dirty());

    env.write("data/train/extra.csv", "id\n1\n");
    assert!(dirty(), "an untracked file in a dataset source");
    env.git(&["add", "data/train/extra.csv"]);
    assert!(dirty(), "added to the index but not committed");
    env.commit("extra");
    assert!(!dirty());

    env.git(&["rm", "-q", "data/train/extra.csv"]);
    assert!(dirty(), "a committed file removed from a source");
    env.commit("no extra");
    assert!(!dirty());

    // Once the index is older than a file, its stat data stands for its contents: a same-size
    // edit whose modification time is put back is still seen (its change time moved).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let path = env.dir.path().join("data/train/2026-10.csv");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let csv = env.read("data/train/2026-10.csv");
    let edited = csv.replacen(',', ";", 1);
    assert_eq!(edited.len(), csv.len());
    env.write("data/train/2026-10.csv", &edited);
    std::fs::File::options().write(true).open(&path).unwrap().set_modified(mtime).unwrap();
    assert!(dirty(), "a same-size edit with its modification time put back");
    env.git(&["checkout", "--", "data/train/2026-10.csv"]);
    assert!(!dirty());

    env.write("model/churn-clf.json", "{\"retrained\": true}\n");
    assert!(dirty(), "a modified model artifact");
    env.commit("retrained");
    env.write("mlops.yaml", &format!("{}\n# a comment\n", env.read("mlops.yaml")));
    assert!(dirty(), "the spec itself");
}

/// The journal of an apply that runs (its lock held by a live process) is left alone by a plan;
/// once the lock is free, the next plan records it, under the lock.
#[test]
fn a_running_applys_journal_is_recorded_only_under_the_lock() {
    use mlops::lineage::Lineage;
    let env = TestEnv::quickstart();
    let lineage = Lineage::open(env.path(), "quickstart", "default").unwrap();
    write_interrupted_apply(&env, &lineage);
    // This test process is alive and on this host: a running apply, as far as anyone can tell.
    let guard = lineage.lock("mlops apply (still running)").unwrap();
    let run = env.mlops(&["plan"]).ok();
    assert!(run.stderr.contains("journal is pending while"), "{}", run.stderr);
    assert!(env.lineage("quickstart").is_empty(), "a live apply's journal is not recorded by another process");
    assert!(lineage.journal().is_pending());
    drop(guard);
    let run = env.mlops(&["plan"]).ok();
    assert!(run.stderr.contains("an earlier apply was interrupted"), "{}", run.stderr);
    assert_eq!(env.lineage("quickstart").len(), 1);
    assert!(!lineage.journal().is_pending());
    assert!(lineage.lock_holder().is_none(), "the plan released the lock it took to record");
}

/// A lock left by a process that died on this host does not block the next apply: it is removed
/// with a warning, and what the dead apply did is recorded first.
#[test]
fn a_lock_left_by_a_dead_process_is_broken_and_its_journal_recorded() {
    use mlops::lineage::Lineage;
    let env = TestEnv::quickstart();
    let lineage = Lineage::open(env.path(), "quickstart", "default").unwrap();
    write_interrupted_apply(&env, &lineage);
    let dead = {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    };
    hold_lock_as_killed_apply(&env, dead);
    let run = env.mlops(&["apply", "--auto-approve"]).ok();
    assert!(run.stderr.contains("removed the lock left by Killed Apply"), "{}", run.stderr);
    assert!(run.stderr.contains("an earlier apply was interrupted"), "{}", run.stderr);
    let commits = env.lineage("quickstart");
    assert_eq!(commits.len(), 1, "recorded from the journal; nothing left to apply after it");
    assert!(run.stdout.contains("No changes."), "{}", run.stdout);
    assert!(lineage.lock_holder().is_none());
}

#[test]
fn unlock_force_refuses_a_live_holder_and_clears_an_unreadable_lock() {
    use mlops::lineage::Lineage;
    let env = TestEnv::quickstart();
    let lineage = Lineage::open(env.path(), "quickstart", "default").unwrap();
    let guard = lineage.lock("mlops apply (alive)").unwrap();
    let run = env.mlops(&["unlock", "--force"]);
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("running on this host"), "{}", run.stderr);
    assert!(lineage.lock_holder().is_some(), "nothing was changed");
    assert!(env.mlops(&["unlock", "--force", "--even-if-alive"]).ok().stdout.contains("Removed the lock"));
    drop(guard);

    // A lock ref pointing at something that is no lock record (here: HEAD's commit).
    let head = env.git(&["rev-parse", "HEAD"]);
    env.git(&["update-ref", "refs/mlops/lock/quickstart/default", head.trim()]);
    let apply = env.mlops(&["apply", "--auto-approve"]);
    assert_eq!(apply.status, 1);
    assert!(apply.stderr.contains("lineage::broken_lock"), "{}", apply.stderr);
    assert!(!env.join(".mlops").exists(), "nothing was applied");
    let unlock = env.mlops(&["unlock"]);
    assert_eq!(unlock.status, 1, "not silently 'not locked': {}", unlock.stdout);
    assert!(unlock.stderr.contains("is not a lock record"), "{}", unlock.stderr);
    env.mlops(&["unlock", "--force"]).ok();
    env.mlops(&["apply", "--auto-approve"]).ok();
}

/// Plans and applies the quickstart in this process, leaving a journal and no lineage commit, as
/// an apply killed right before it records would.
/// The stack's lock, held (as its record says) by process `pid` on this host.
fn hold_lock_as_killed_apply(env: &TestEnv, pid: u32) {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let holder = serde_json::json!({
        "who": "Killed Apply <ci@example.com>", "host": host, "pid": pid,
        "since": "2026-11-29T00:00:00Z", "operation": "mlops apply (killed)"
    });
    env.write("holder.json", &holder.to_string());
    let blob = env.git(&["hash-object", "-w", "holder.json"]);
    env.git(&["update-ref", "refs/mlops/lock/quickstart/default", blob.trim()]);
    std::fs::remove_file(env.join("holder.json")).unwrap();
}

/// The test folder's spec as a stack, loaded as mlops loads it (no environment variables).
fn quickstart_stack(env: &TestEnv) -> mlops::engine::Stack {
    let nothing = |_: &str| None;
    let spec = mlops::spec::load_file(
        &env.join("mlops.yaml"),
        "mlops.yaml",
        &nothing,
        &Registry::builtin(),
        &Default::default(),
    )
    .unwrap();
    mlops::engine::Stack::new(spec, Registry::builtin()).unwrap()
}

pub fn write_interrupted_apply(env: &TestEnv, lineage: &mlops::lineage::Lineage) {
    use mlops::engine::apply::{self, Event};
    use mlops::lineage::JournalEntry;
    let stack = quickstart_stack(env);
    let state = lineage.state().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let plan =
        rt.block_on(mlops::engine::plan(&stack, state.clone(), Default::default(), &Default::default())).unwrap();
    let journal = lineage.journal();
    journal.begin(&plan.document()).unwrap();
    let sink = |e: Event| {
        if let Event::Outcome { address, outcome, record } = e {
            journal.append(&JournalEntry { address, outcome, record }).unwrap();
        }
    };
    let report = rt.block_on(apply::apply(&stack, &state, &plan, 4, &Default::default(), &Default::default(), &sink));
    assert_eq!(report.applied, 4);
}

/// A dataset copy reports its bytes as it goes (a bar on a terminal): rising, ending at the total.
#[test]
fn a_dataset_copy_reports_bytes_transferred() {
    use mlops::engine::apply::{self, Event};
    let env = TestEnv::quickstart();
    let stack = quickstart_stack(&env);
    let state = mlops::lineage::State::default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let plan =
        rt.block_on(mlops::engine::plan(&stack, state.clone(), Default::default(), &Default::default())).unwrap();
    let seen = std::sync::Mutex::new(Vec::new());
    let sink = |e: Event| {
        if let Event::Transfer { address, done, total } = e {
            seen.lock().unwrap().push((address.to_string(), done, total));
        }
    };
    rt.block_on(apply::apply(&stack, &state, &plan, 4, &Default::default(), &Default::default(), &sink));
    let seen = seen.into_inner().unwrap();
    let sizes: u64 =
        std::fs::read_dir(env.join("data/train")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert_eq!(seen.len(), 3, "one report per file copied: {seen:?}");
    assert!(seen.iter().all(|(a, _, total)| a == "datasets.churn-train" && *total == sizes), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0].1 < w[1].1), "rising: {seen:?}");
    assert_eq!(seen.last().unwrap().1, sizes);
}

#[test]
fn ranges_and_whole_numbers_are_named_in_errors() {
    let env = TestEnv::quickstart();
    let spec = env.read("mlops.yaml");
    env.write("mlops.yaml", &spec.replace("canary_percent: 10", "canary_percent: 150"));
    let run = env.mlops(&["validate"]);
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("`endpoints.churn-api.traffic.canary_percent` is too large: 150"), "{}", run.stderr);
    assert!(run.stderr.contains("accepted range: 0 to 100"), "{}", run.stderr);
    assert!(!run.stderr.contains("anyOf"), "{}", run.stderr);
    env.write("mlops.yaml", &spec.replace("version: 1\n", "version: 1.0\n"));
    let run = env.mlops(&["validate"]);
    assert!(run.stderr.contains("`version` must be a whole number"), "{}", run.stderr);
}

#[test]
fn plans_of_another_format_version_and_ordinary_commits_are_refused() {
    let env = TestEnv::quickstart();
    env.mlops(&["plan", "--out", "p.json"]).ok();
    let plan = env.read("p.json").replacen("\"format_version\": 1", "\"format_version\": 2", 1);
    env.write("p2.json", &plan);
    for args in [vec!["show", "p2.json"], vec!["check", "p2.json"], vec!["apply", "p2.json"]] {
        let run = env.mlops(&args);
        assert_eq!(run.status, 1, "{args:?}");
        assert!(run.stderr.contains("plan::unsupported_format"), "{args:?}: {}", run.stderr);
    }
    assert!(!env.join(".mlops").exists(), "nothing was applied");
    env.mlops(&["apply", "--auto-approve"]).ok();
    let run = env.mlops(&["show", "HEAD"]);
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("is not a lineage commit"), "{}", run.stderr);
    env.mlops(&["show", "lineage"]).ok();
}

#[test]
fn a_corrupt_journal_is_reported_and_moved_aside() {
    let env = TestEnv::quickstart();
    let journal = env.join(".git/mlops/journal/quickstart/default.plan.json");
    std::fs::create_dir_all(journal.parent().unwrap()).unwrap();
    std::fs::write(&journal, "{ torn").unwrap();
    let run = env.mlops(&["plan"]).ok();
    assert!(run.stderr.contains("cannot be read; it was moved to"), "{}", run.stderr);
    assert!(!journal.exists());
    let aside: Vec<_> = std::fs::read_dir(journal.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "kept for a person to look at");
    let again = env.mlops(&["plan"]).ok();
    assert!(!again.stderr.contains("journal"), "reported once: {}", again.stderr);
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let env = TestEnv::quickstart();
    env.mlops(&["apply", "--auto-approve"]).ok();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mlops"))
        .args(["plan", "--json"])
        .current_dir(env.path())
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before mlops writes
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(13), "ended by SIGPIPE, as git is: {:?}", out.status);
}

/// A `.lock` file Git left on the lineage ref would let an apply change the world and then fail to
/// record: it is refused before anything changes, and `unlock --force` clears it.
#[test]
fn gits_stale_lock_files_are_refused_before_anything_changes() {
    let env = TestEnv::quickstart();
    let stale = env.join(".git/refs/mlops/lineage/quickstart/default.lock");
    std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
    std::fs::write(&stale, "").unwrap();
    // Left a while ago (a fresh one may belong to a Git command that is running).
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    std::fs::File::options().write(true).open(&stale).unwrap().set_modified(old).unwrap();
    let run = env.mlops(&["apply", "--auto-approve"]);
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("lineage::git_lock_file"), "{}", run.stderr);
    assert!(!env.join(".mlops").exists(), "nothing was applied");
    let unlock = env.mlops(&["unlock"]);
    assert_eq!(unlock.status, 1, "not 'not locked': {}", unlock.stdout);
    assert!(env.mlops(&["unlock", "--force"]).ok().stdout.contains("Removed Git's stale lock file"));
    assert!(!stale.exists());
    env.mlops(&["apply", "--auto-approve"]).ok();
    assert_eq!(env.lineage("quickstart").len(), 1);
}

/// GIT_DIR and GIT_WORK_TREE are honoured as git honours them: lineage goes to that repository.
#[test]
fn git_dir_and_work_tree_are_honoured() {
    let env = TestEnv::quickstart();
    let elsewhere = tempfile::tempdir().unwrap();
    let git_dir = elsewhere.path().join("repo.git");
    std::fs::rename(env.join(".git"), &git_dir).unwrap();
    let vars = [("GIT_DIR", git_dir.to_str().unwrap()), ("GIT_WORK_TREE", env.path().to_str().unwrap())];
    env.mlops_env(&["apply", "--auto-approve"], &vars).ok();
    let out = std::process::Command::new("git")
        .args(["--git-dir", git_dir.to_str().unwrap(), "rev-list", "refs/mlops/lineage/quickstart/default"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1, "recorded in $GIT_DIR");
    assert!(!env.join(".git").exists());
    let plan = env.mlops_env(&["plan", "--detailed-exitcode"], &vars);
    assert_eq!(plan.status, 0, "{}{}", plan.stdout, plan.stderr);
}

/// A lineage ref fetched shallow is readable as far as it goes, with a note.
#[test]
fn a_shallow_lineage_is_read_as_far_as_it_goes() {
    let env = TestEnv::quickstart();
    env.mlops(&["apply", "--auto-approve"]).ok();
    env.write("data/train/2026-12.csv", "customer_id,tenure_months,monthly_spend,churned\nc-9,1,1.0,0\n");
    env.commit("more data");
    env.mlops(&["apply", "--auto-approve"]).ok();
    let clone = TestEnv::new();
    let url = format!("file://{}", env.path().display());
    clone.git(&[
        "fetch",
        "-q",
        "--update-head-ok",
        "--depth=1",
        &url,
        "refs/mlops/lineage/*:refs/mlops/lineage/*",
        "main:main",
    ]);
    clone.git(&["reset", "-q", "--hard", "main"]);
    let log = clone.mlops(&["log"]).ok();
    // Exactly the fetched apply: its summary line and its one change, and nothing older.
    let lines: Vec<&str> = log.stdout.lines().collect();
    assert!(
        lines[0].ends_with("apply quickstart/default: 0 created, 1 updated, 0 replaced, 0 deleted"),
        "{}",
        log.stdout
    );
    assert!(
        lines.iter().any(|l| l.trim_start().starts_with("~ datasets.churn-train  version sha256:")),
        "{}",
        log.stdout
    );
    assert_eq!(lines.iter().filter(|l| l.starts_with("lineage ")).count(), 1, "{}", log.stdout);
    assert!(log.stderr.contains("a shallow fetch"), "{}", log.stderr);
}

/// What forces a replace is decided at plan time, carried by the saved plan, and applied from it.
#[test]
fn a_saved_plan_carries_what_forces_a_replace_and_the_apply_replaces() {
    let env = TestEnv::quickstart();
    env.mlops(&["apply", "--auto-approve"]).ok();
    let spec = env.read("mlops.yaml").replace("record_identifier: customer_id", "record_identifier: tenure_months");
    env.write("mlops.yaml", &spec);
    env.commit("another key");
    env.mlops(&["plan", "--out", "p.json"]).ok();
    let plan = mlops::plan::Plan::read_file(&env.join("p.json"), "p.json").unwrap();
    let store = plan.changes.iter().find(|c| c.address.to_string() == "feature_stores.customer").unwrap();
    assert!(store.force_new.contains("record_identifier"), "{:?}", store.force_new);
    assert_eq!(store.action, mlops::plan::Action::Replace);
    assert_eq!(store.replace_reasons, ["record_identifier"]);
    let run = env.mlops(&["apply", "p.json", "--allow-data-loss"]).ok();
    assert!(run.stdout.contains("1 replaced"), "{}", run.stdout);
    let recorded: serde_json::Value = serde_json::from_str(
        &env.git(&["show", "refs/mlops/lineage/quickstart/default:resources/feature_stores/customer.json"]),
    )
    .unwrap();
    assert_eq!(recorded["attributes"]["record_identifier"], "tenure_months", "{recorded}");
    let result = env.git(&["show", "refs/mlops/lineage/quickstart/default:result.json"]);
    assert!(result.contains("\"action\": \"replace\""), "{result}");
    assert_eq!(env.mlops(&["plan", "--detailed-exitcode"]).status, 0);
}

/// A holder killed but not yet reaped (a zombie) holds nothing: its lock is broken like a dead one's.
#[test]
fn a_lock_held_by_a_zombie_is_broken() {
    let env = TestEnv::quickstart();
    let mut zombie = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let pid = zombie.id();
    zombie.kill().unwrap();
    // Not waited for yet: a zombie until `wait` below.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ") {
        assert!(std::time::Instant::now() < deadline, "the child never became a zombie");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    hold_lock_as_killed_apply(&env, pid);
    let run = env.mlops(&["apply", "--auto-approve"]).ok();
    assert!(run.stderr.contains("removed the lock left by Killed Apply"), "{}", run.stderr);
    let _ = zombie.wait();
}

/// A local model's folder holds every registered version: removing it from the spec is
/// data-destroying, refused without `--allow-data-loss`, and nothing is deleted until then.
#[test]
fn removing_a_local_model_destroys_its_versions_and_needs_allow_data_loss() {
    let env = TestEnv::new();
    env.write("model.bin", "v1");
    env.write(".gitignore", ".mlops/\n");
    let head = "version: 1\nproject: drop\nproviders: { local: {} }\n";
    env.write("mlops.yaml", &format!("{head}models:\n  clf: {{ artifact: ./model.bin }}\n"));
    env.commit("model");
    env.mlops(&["apply", "--auto-approve"]).ok();
    env.write("model.bin", "v2");
    env.commit("v2");
    env.mlops(&["apply", "--auto-approve"]).ok();
    let registry = env.join(".mlops/local/models/clf");
    assert!(registry.join("v2/artifact").is_file());

    env.write("mlops.yaml", head);
    env.commit("drop the model");
    let plan = env.mlops(&["plan"]).ok();
    assert!(
        plan.stdout.contains("- models.clf # will be deleted (removed from the spec) [data-destroying"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("destroys its local registry: version 2 and every version before it"),
        "{}",
        plan.stdout
    );
    let refused = env.mlops(&["apply", "--auto-approve"]);
    assert_eq!(refused.status, 1, "{}{}", refused.stdout, refused.stderr);
    assert!(refused.stderr.contains("--allow-data-loss"), "{}", refused.stderr);
    assert!(registry.join("v1/artifact").is_file(), "nothing deleted");
    env.mlops(&["apply", "--auto-approve", "--allow-data-loss"]).ok();
    assert!(!registry.exists());
}
