//! The record is the truth: lineage never stays behind what is live, a saved plan is checked
//! field by field before it is believed, and a value at a secret's place is never shown.

use serde_json::Value;

use crate::common::{TestEnv, flat};

const REF: &str = "refs/mlops/lineage/quickstart/default";

fn record(env: &TestEnv, rev: &str, path: &str) -> Value {
    serde_json::from_str(&env.git(&["show", &format!("{rev}:{path}")])).unwrap()
}

#[test]
fn a_lineage_moved_back_one_commit_is_recorded_as_live_by_the_next_apply() {
    let env = TestEnv::quickstart();
    env.mlops(&["apply", "--auto-approve"]).ok();
    env.write("data/train/2026-12.csv", "customer_id,tenure\n9,1\n");
    env.commit("december");
    env.mlops(&["apply", "--auto-approve"]).ok();
    let v2 = record(&env, REF, "resources/datasets/churn-train.json");
    env.git(&["update-ref", REF, &format!("{REF}~1")]);

    let plan = env.mlops(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status, 2, "never `No changes` while lineage is behind the live state:\n{}", plan.stdout);
    assert!(plan.stdout.contains("Recorded in another state"), "{}", plan.stdout);
    assert!(plan.stdout.contains("? datasets.churn-train"), "{}", plan.stdout);
    assert!(!plan.stdout.contains("No changes"), "{}", plan.stdout);
    let verify = env.mlops(&["verify", "--live"]);
    assert_eq!(verify.status, 2, "verify --live sees lineage behind: {}", verify.stdout);

    let apply = env.mlops(&["apply", "--auto-approve"]).ok();
    assert!(!apply.stdout.contains("No changes"), "{}", apply.stdout);
    let now = record(&env, REF, "resources/datasets/churn-train.json");
    assert_eq!(now["outputs"], v2["outputs"], "lineage records the live version again");
    assert_eq!(now["attributes"], v2["attributes"]);
    // What depends on the dataset is recorded with the version it was trained on, now the live one.
    let model = record(&env, REF, "resources/models/churn-clf.json");
    let _ = model;
    assert_eq!(env.mlops(&["plan", "--detailed-exitcode"]).status, 0);
    assert_eq!(env.mlops(&["verify", "--live"]).status, 0);
    let state = env.mlops(&["state", "--json"]).ok();
    let version = v2["outputs"]["version"].as_str().unwrap();
    assert!(state.stdout.contains(version), "state shows the live version {version}:\n{}", state.stdout);
}

/// The quickstart applied, then a spec with an update (the endpoint's instance count), a
/// data-destroying replace (the feature store's identifier) and no-ops, planned into `plan.json`.
fn planned() -> (TestEnv, Value) {
    let env = TestEnv::quickstart();
    env.mlops(&["apply", "--auto-approve"]).ok();
    let spec = env.read("mlops.yaml");
    let spec = spec
        .replace("instance_count: 2", "instance_count: 3")
        .replace("record_identifier: customer_id", "record_identifier: tenure_months");
    env.write("mlops.yaml", &format!("{spec}\npolicies:\n  forbid_data_destroying: true\n"));
    env.commit("scale up, new identifier");
    env.mlops(&["plan", "--out", "plan.json"]).ok();
    let plan: Value = serde_json::from_str(&env.read("plan.json")).unwrap();
    (env, plan)
}

fn change_mut<'a>(plan: &'a mut Value, address: &str) -> &'a mut Value {
    plan["changes"].as_array_mut().unwrap().iter_mut().find(|c| c["address"] == address).unwrap()
}

#[test]
fn every_edited_field_of_a_saved_plan_is_refused_as_stale_and_nothing_changes() {
    let (env, plan) = planned();
    assert_eq!(crate::common::change(&plan, "endpoints.churn-api")["action"], "update");
    assert_eq!(crate::common::change(&plan, "feature_stores.customer")["data_destroying"], true);
    let tip = env.lineage("quickstart");
    type Edit = fn(&mut Value);
    let edits: Vec<(&str, &str, Edit)> = vec![
        ("update → delete", "action", |p| change_mut(p, "endpoints.churn-api")["action"] = "delete".into()),
        ("no-op → delete", "action", |p| change_mut(p, "datasets.churn-train")["action"] = "delete".into()),
        ("update → replace", "action", |p| change_mut(p, "endpoints.churn-api")["action"] = "replace".into()),
        ("data_destroying cleared", "data_destroying", |p| {
            let c = change_mut(p, "feature_stores.customer");
            c["data_destroying"] = false.into();
            c["tags"] = Value::Array(vec![]);
        }),
        ("depends_on edited", "depends_on", |p| {
            change_mut(p, "endpoints.churn-api")["depends_on"] = Value::Array(vec![]);
        }),
        ("a change dropped", "leaves out feature_stores.customer", |p| {
            p["changes"].as_array_mut().unwrap().retain(|c| c["address"] != "feature_stores.customer");
        }),
        ("summary zeroed", "summary", |p| {
            for (_, v) in p["summary"].as_object_mut().unwrap() {
                *v = 0.into();
            }
        }),
        ("source.commit forged", "source commit", |p| {
            p["source"]["commit"] = "0123456789abcdef0123456789abcdef01234567".into();
        }),
        ("lineage.ref edited", "lineage.ref", |p| p["lineage"]["ref"] = "refs/mlops/lineage/other/default".into()),
    ];
    for (what, named, edit) in edits {
        let mut edited = plan.clone();
        edit(&mut edited);
        env.write("edited.json", &serde_json::to_string_pretty(&edited).unwrap());
        let run = env.mlops(&["apply", "edited.json", "--allow-data-loss"]);
        assert_eq!(run.status, 1, "{what}: refused\n{}\n{}", run.stdout, run.stderr);
        assert!(run.stderr.contains("stale"), "{what}: as stale\n{}", run.stderr);
        assert!(run.stderr.contains(named), "{what}: naming `{named}`\n{}", run.stderr);
        assert_eq!(env.lineage("quickstart"), tip, "{what}: nothing recorded");
        // `check` evaluates the plan the world gives, never the edited one.
        let check = env.mlops(&["check", "edited.json"]);
        assert_ne!(check.status, 0, "{what}: check does not pass an edited plan\n{}", check.stdout);
    }
    // The live world is untouched: the endpoint still serves 2 instances, the feature store keeps its identifier.
    let endpoint = env.read(".mlops/local/endpoints/churn-api.json");
    assert!(endpoint.contains("\"replicas\": 2"), "{endpoint}");
    // The reviewed plan itself still applies.
    let check = env.mlops(&["check", "plan.json"]);
    assert_eq!(check.status, 3, "the unedited plan is blocked by forbid_data_destroying: {}", check.stderr);
    env.mlops(&["apply", "plan.json", "--allow-data-loss"]).ok();
    assert_eq!(env.mlops(&["plan", "--detailed-exitcode"]).status, 0);
}

#[test]
fn a_plan_made_in_another_repository_is_refused() {
    let here = TestEnv::quickstart();
    let there = TestEnv::quickstart();
    there.git(&["commit", "-q", "--allow-empty", "-m", "another history"]);
    there.mlops(&["plan", "--out", "plan.json"]).ok();
    std::fs::copy(there.join("plan.json"), here.join("plan.json")).unwrap();
    let run = here.mlops(&["apply", "plan.json"]);
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(flat(&run.stderr).contains("is not in this repository"), "{}", run.stderr);
    assert!(here.lineage("quickstart").is_empty());
    assert!(!here.join(".mlops/local").exists(), "nothing was created");
}

const HAND_SET: &str = "Set-By-Hand-0xBEEF";

#[test]
fn a_value_set_by_hand_at_a_secrets_place_is_never_shown() {
    let env = TestEnv::quickstart();
    let spec = env.read("mlops.yaml").replace(
        "environment: { LOG_LEVEL: info }",
        "environment: { LOG_LEVEL: info, DB_PASSWORD: \"${secret:DB_PW}\" }",
    );
    env.write("mlops.yaml", &spec);
    env.commit("a secret");
    let with = |args: &[&str]| env.mlops_env(args, &[("DB_PW", "the-Real-Secret-1")]);
    with(&["apply", "--auto-approve"]).ok();
    // Someone sets another value in the backend by hand.
    let stored = ".mlops/local/models/churn-clf/v1/version.json";
    let text = env.read(stored);
    assert!(text.contains("the-Real-Secret-1"), "{text}");
    env.write(stored, &text.replace("the-Real-Secret-1", HAND_SET));
    let mut seen = String::new();
    for args in [vec!["plan"], vec!["plan", "--json"], vec!["plan", "--format", "markdown"], vec!["verify", "--live"]] {
        let run = with(&args);
        seen.push_str(&run.stdout);
        seen.push_str(&run.stderr);
    }
    assert!(!seen.contains(HAND_SET), "the hand-set value is shown:\n{seen}");
    assert!(seen.contains("(secret DB_PW changed)"), "the place says the secret changed:\n{seen}");
    with(&["apply", "--auto-approve"]).ok();
    let log = env.git(&["log", "-p", REF]);
    assert!(!log.contains(HAND_SET), "lineage holds the hand-set value");
    assert!(
        env.read(stored).contains("the-Real-Secret-1")
            || env.read(".mlops/local/models/churn-clf/v2/version.json").contains("the-Real-Secret-1")
    );
    assert_eq!(with(&["plan", "--detailed-exitcode"]).status, 0);
}

#[test]
fn a_secret_where_it_cannot_work_is_refused_at_its_line() {
    let env = TestEnv::quickstart();
    let spec = env.read("mlops.yaml").replace("root: .mlops/local", "root: \"${secret:ROOT}\"");
    env.write("mlops.yaml", &spec);
    let run = env.mlops_env(&["validate"], &[("ROOT", "somewhere")]);
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(run.stderr.contains("spec::secret_not_allowed"), "{}", run.stderr);
    assert!(run.stderr.contains("mlops.yaml:8"), "at its line: {}", run.stderr);
    let plan = env.mlops_env(&["plan"], &[("ROOT", "somewhere")]);
    assert_eq!(plan.status, 1);
    assert!(
        std::fs::read_dir(env.path()).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().contains("secret"))
    );
}

/// The quickstart applied three times (the endpoint scaled 2 → 3 → 4): three lineage commits.
fn three_applies() -> TestEnv {
    let env = TestEnv::quickstart();
    env.mlops(&["apply", "--auto-approve"]).ok();
    for n in [3, 4] {
        let spec =
            env.read("mlops.yaml").replace(&format!("instance_count: {}", n - 1), &format!("instance_count: {n}"));
        env.write("mlops.yaml", &spec);
        env.commit(&format!("{n} instances"));
        env.mlops(&["apply", "--auto-approve"]).ok();
    }
    assert_eq!(env.lineage("quickstart").len(), 3);
    env
}

const INDEX: &str = ".git/mlops/index/quickstart/default.jsonl";

/// `mlops log` in a child with a deadline: a hang is a failure, not a stuck suite.
fn log_within(env: &TestEnv, args: &[&str], secs: u64) -> (i32, String) {
    let mut child = env.spawn_mlops(1, args).pop().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
            return (status.code().unwrap_or(-1), out);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mlops {args:?} did not finish in {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn an_edited_or_duplicated_index_line_is_rebuilt_from_git_and_verify_says_so() {
    let env = three_applies();
    let truth = env.mlops(&["log", "--json"]).ok().stdout;
    assert!(truth.contains("Test User"), "{truth}");
    let text = env.read(INDEX);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three lines:\n{text}");
    // A forged author in the middle line.
    env.write(INDEX, &text.replace(lines[2], &lines[2].replace("Test User", "Mallory")));
    let verify = env.mlops(&["verify"]);
    assert_eq!(verify.status, 1, "verify names the forged index: {}", verify.stdout);
    assert!(verify.stdout.contains("index"), "{}", verify.stdout);
    let log = env.mlops(&["log", "--json"]).ok().stdout;
    assert!(!log.contains("Mallory"), "the forged author is never shown:\n{log}");
    assert_eq!(log, truth, "log is Git's history again");
    assert_eq!(env.mlops(&["verify"]).status, 0, "the rebuilt index is clean");
    // Duplicated lines.
    let text = env.read(INDEX);
    let lines: Vec<&str> = text.lines().collect();
    env.write(INDEX, &format!("{}\n{}\n{}\n{}\n{}\n{}\n", lines[0], lines[1], lines[1], lines[2], lines[3], lines[3]));
    assert_eq!(env.mlops(&["log", "--json"]).ok().stdout, truth, "no apply shown twice");
    let export = env.mlops(&["audit", "export"]).ok().stdout;
    assert_eq!(export.lines().count(), 4 + 1 + 1, "one line per change (4 created, then 2 updates):\n{export}");
}

/// The snapshot of the tip's records (one file read instead of a loose object per record) is a
/// cache: a record is taken from it only when its bytes hash to the blob the commit names.
#[test]
fn an_edited_or_torn_records_snapshot_is_never_believed() {
    let env = three_applies();
    let snapshot = env.join(".git/mlops/records/quickstart/default.bin");
    let truth = env.mlops(&["state", "--json"]).ok().stdout;
    let bytes = std::fs::read(&snapshot).expect("an apply writes the snapshot");
    let digest =
        record(&env, REF, "resources/datasets/churn-train.json")["attributes"]["digest"].as_str().unwrap().to_string();
    let last = if digest.ends_with('0') { "1" } else { "0" };
    let forged_digest = format!("{}{last}", &digest[..digest.len() - 1]);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert!(text.contains(&digest), "the snapshot holds the record's bytes");
    // Same length, another value: the file still parses, the record's bytes no longer hash.
    let mut forged = bytes.clone();
    let at = text.find(&digest).unwrap();
    forged[at..at + digest.len()].copy_from_slice(forged_digest.as_bytes());
    std::fs::write(&snapshot, &forged).unwrap();
    assert_eq!(env.mlops(&["state", "--json"]).ok().stdout, truth, "the record is read from Git");
    assert_eq!(env.mlops(&["plan", "--detailed-exitcode"]).status, 0, "nothing to change");
    assert_eq!(std::fs::read(&snapshot).unwrap(), bytes, "a read that had to go to Git saves the snapshot again");
    std::fs::write(&snapshot, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(env.mlops(&["state", "--json"]).ok().stdout, truth, "a torn snapshot: the rest from Git");
    std::fs::write(&snapshot, b"garbage").unwrap();
    assert_eq!(env.mlops(&["state", "--json"]).ok().stdout, truth);
    assert_eq!(env.mlops(&["verify"]).status, 0, "verify reads Git, never the snapshot");
}

#[test]
fn an_index_that_is_a_fifo_or_a_symlink_to_a_device_is_never_read() {
    let env = three_applies();
    let truth = env.mlops(&["log", "--json"]).ok().stdout;
    std::fs::remove_file(env.join(INDEX)).unwrap();
    let mkfifo = std::process::Command::new("mkfifo").arg(env.join(INDEX)).status().unwrap();
    assert!(mkfifo.success());
    let (status, out) = log_within(&env, &["log", "--json"], 20);
    assert_eq!((status, out), (0, truth.clone()), "a FIFO is replaced, never read");
    std::fs::remove_file(env.join(INDEX)).unwrap();
    std::os::unix::fs::symlink("/dev/zero", env.join(INDEX)).unwrap();
    let (status, out) = log_within(&env, &["log", "--json"], 20);
    assert_eq!((status, out), (0, truth), "a symlink is replaced, never followed");
    assert!(std::fs::symlink_metadata(env.join(INDEX)).unwrap().is_file());
}

/// Rewrites one file of the lineage tip's tree, keeping its message, parent and plan.json.
fn forge_tip(env: &TestEnv, path: &str, edit: impl Fn(&mut Value)) {
    let mut record = record(env, REF, path);
    edit(&mut record);
    env.write("forged.json", &serde_json::to_string_pretty(&record).unwrap());
    let index = env.join("forged-index");
    let git = |args: &[&str]| {
        let o = std::process::Command::new("git")
            .args(args)
            .current_dir(env.path())
            .env("GIT_INDEX_FILE", &index)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "Test User")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "Test User")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .output()
            .unwrap();
        assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    git(&["read-tree", REF]);
    let blob = git(&["hash-object", "-w", "forged.json"]);
    git(&["update-index", "--cacheinfo", &format!("100644,{blob},{path}")]);
    let tree = git(&["write-tree"]);
    env.write("message.txt", &git(&["log", "-1", "--format=%B", REF]));
    let commit = git(&["commit-tree", &tree, "-p", &format!("{REF}~1"), "-F", "message.txt"]);
    git(&["update-ref", REF, &commit]);
}

#[test]
fn a_lineage_commit_whose_records_are_not_what_its_plan_applied_fails_verify() {
    let env = three_applies();
    assert_eq!(env.mlops(&["verify"]).status, 0);
    // A record the last apply did not touch, with another version.
    forge_tip(&env, "resources/datasets/churn-train.json", |r| r["outputs"]["version"] = "sha256:forged".into());
    let verify = env.mlops(&["verify"]);
    assert_eq!(verify.status, 1, "{}", verify.stdout);
    assert!(
        verify.stdout.contains("datasets.churn-train's record changed, but its plan did not change or record it"),
        "{}",
        verify.stdout
    );
    // A record the last apply changed, with other attributes than its plan applied.
    let env = three_applies();
    forge_tip(&env, "resources/endpoints/churn-api.json", |r| r["attributes"]["replicas"] = 9.into());
    let verify = env.mlops(&["verify"]);
    assert_eq!(verify.status, 1, "{}", verify.stdout);
    assert!(
        verify.stdout.contains("endpoints.churn-api's record is not what its plan applied (replicas)"),
        "{}",
        verify.stdout
    );
}

#[test]
fn apply_sign_makes_commits_git_verifies_and_verify_signed_requires_them() {
    let env = TestEnv::quickstart();
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test@example.com", "-f"])
        .arg(env.join("signing-key"))
        .status()
        .expect("ssh-keygen runs");
    assert!(keygen.success());
    let public = env.read("signing-key.pub");
    env.write(".git/allowed-signers", &format!("test@example.com {public}"));
    env.git(&["config", "gpg.format", "ssh"]);
    env.git(&["config", "user.signingkey", env.join("signing-key").to_str().unwrap()]);
    env.git(&["config", "gpg.ssh.allowedSignersFile", env.join(".git/allowed-signers").to_str().unwrap()]);

    env.mlops(&["apply", "--auto-approve", "--sign"]).ok();
    let tip = env.lineage("quickstart")[0].clone();
    env.git(&["verify-commit", &tip]);
    let verify = env.mlops(&["verify", "--signed"]);
    assert_eq!(verify.status, 0, "{}\n{}", verify.stdout, verify.stderr);

    // An unsigned apply after it: verify --signed names that commit.
    let spec = env.read("mlops.yaml").replace("instance_count: 2", "instance_count: 3");
    env.write("mlops.yaml", &spec);
    env.commit("scale");
    env.mlops(&["apply", "--auto-approve"]).ok();
    let unsigned = env.lineage("quickstart")[0].clone();
    let verify = env.mlops(&["verify", "--signed"]);
    assert_eq!(verify.status, 1, "{}", verify.stdout);
    assert!(verify.stdout.contains(&unsigned[..12]) && verify.stdout.contains("not signed"), "{}", verify.stdout);
    assert_eq!(env.mlops(&["verify"]).status, 0, "without --signed, signatures are not required");

    // A signing key that does not exist refuses the apply before anything changes.
    env.git(&["config", "user.signingkey", "/nonexistent/key"]);
    let spec = env.read("mlops.yaml").replace("instance_count: 3", "instance_count: 4");
    env.write("mlops.yaml", &spec);
    env.commit("scale again");
    let run = env.mlops(&["apply", "--auto-approve", "--sign"]);
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("lineage::signing"), "{}", run.stderr);
    assert_eq!(env.lineage("quickstart")[0], unsigned, "nothing recorded");
    assert!(env.read(".mlops/local/endpoints/churn-api.json").contains("\"replicas\": 3"), "nothing changed");
}

#[test]
fn source_problems_are_named_as_such_and_names_the_store_cannot_hold_are_refused_at_plan() {
    let env = TestEnv::quickstart();
    env.write("mlops.yaml", &env.read("mlops.yaml").replace("source: ./data/train", "source: ./data/missing"));
    let run = env.mlops(&["plan"]);
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("engine::desired") && !run.stderr.contains("live state"), "{}", run.stderr);

    let env = TestEnv::quickstart();
    let long = format!("{}.csv", "x".repeat(245));
    for (name, says) in [("leftover.csv.mlops-tmp", "temporary files"), (long.as_str(), "a name of 249 bytes")] {
        env.write(&format!("data/train/{name}"), "a,b\n");
        let run = env.mlops(&["plan"]);
        assert_eq!(run.status, 1, "{name}: refused\n{}", run.stdout);
        let shown = flat(&run.stderr);
        assert!(shown.contains(&name[..20]) && shown.contains(says), "{name}: named\n{}", run.stderr);
        std::fs::remove_file(env.join(&format!("data/train/{name}"))).unwrap();
    }
    use std::os::unix::ffi::OsStrExt;
    let odd = env.join("data/train").join(std::ffi::OsStr::from_bytes(b"caf\xe9.csv"));
    std::fs::write(&odd, "a,b\n").unwrap();
    let run = env.mlops(&["plan"]);
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(run.stderr.contains("not UTF-8"), "{}", run.stderr);
    std::fs::remove_file(&odd).unwrap();
    env.mlops(&["apply", "--auto-approve"]).ok();
}

#[test]
fn a_changed_root_is_a_plan_that_forgets_the_old_objects_explicitly() {
    let env = TestEnv::quickstart();
    env.mlops(&["apply", "--auto-approve"]).ok();
    env.write("mlops.yaml", &env.read("mlops.yaml").replace("root: .mlops/local", "root: .mlops/elsewhere"));
    env.commit("another root");
    let plan = env.mlops(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status, 2, "{}", plan.stdout);
    assert!(!plan.stdout.contains("outside mlops"), "never called deleted outside mlops:\n{}", plan.stdout);
    assert!(plan.stdout.contains("provider-moved"), "{}", plan.stdout);
    assert!(flat(&plan.stdout).contains("left in place and forgotten"), "{}", plan.stdout);
    assert!(plan.stdout.contains("4 to create"), "{}", plan.stdout);
    env.mlops(&["apply", "--auto-approve"]).ok();
    assert!(env.join(".mlops/local/endpoints/churn-api.json").exists(), "the old objects are left in place");
    assert!(env.join(".mlops/elsewhere/endpoints/churn-api.json").exists());
    assert_eq!(env.mlops(&["plan", "--detailed-exitcode"]).status, 0);
    assert_eq!(env.mlops(&["verify", "--live"]).status, 0);
}

#[test]
fn a_symlink_in_a_source_folder_is_a_warning_at_plan_never_silently_left_out() {
    let env = TestEnv::quickstart();
    std::os::unix::fs::symlink("2026-09.csv", env.join("data/train/linked.csv")).unwrap();
    let plan = env.mlops(&["plan"]).ok();
    assert!(
        plan.stdout.contains(
            "Warning: datasets.churn-train: source file linked.csv is a symlink: it is not part of the dataset"
        ),
        "{}",
        plan.stdout
    );
    let md = env.mlops(&["plan", "--format", "markdown"]).ok();
    assert!(md.stdout.contains("linked.csv is a symlink"), "{}", md.stdout);
}

#[test]
fn a_garbage_journal_without_its_plan_is_moved_aside_and_said_so() {
    let env = TestEnv::quickstart();
    env.write(".git/mlops/journal/quickstart/default.jsonl", "garbage that no apply wrote\n");
    let run = env.mlops(&["apply", "--auto-approve"]).ok();
    assert!(run.stderr.contains("cannot be read; it was moved to"), "said so:\n{}", run.stderr);
    assert!(!env.join(".git/mlops/journal/quickstart/default.jsonl").exists());
    let aside = std::fs::read_dir(env.join(".git/mlops/journal/quickstart"))
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().contains("corrupt"));
    assert!(aside, "kept for a person to look at");
}

#[test]
fn the_index_line_an_apply_writes_from_memory_is_the_one_git_gives() {
    let env = three_applies();
    let appended = env.read(INDEX);
    std::fs::remove_file(env.join(INDEX)).unwrap();
    let from_git = env.mlops(&["log", "--json"]).ok().stdout;
    assert_eq!(env.read(INDEX), appended, "rebuilt from Git, the index is byte for byte what the applies appended");
    assert!(from_git.contains("Test User"));
}
