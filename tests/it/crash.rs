//! Crash safety: an apply killed (SIGKILL) at any moment converges with one more apply, and
//! lineage then knows every live object.

use std::time::{Duration, Instant};

use crate::common::TestEnv;

/// Dataset files shared by every trial (hard-linked into each stack): 10 datasets of 4 files of
/// 3 MB, so that an apply takes seconds (hashing at plan time, copies, journal fsyncs).
fn pool() -> &'static std::path::Path {
    static POOL: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let block: Vec<u8> = (0..65_536u32).map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for i in 0..10 {
            for f in 0..4 {
                let mut bytes = format!("dataset {i} part {f}\n").into_bytes();
                while bytes.len() < 3_000_000 {
                    bytes.extend_from_slice(&block);
                }
                std::fs::write(dir.path().join(format!("d{i}-{f}.bin")), bytes).unwrap();
            }
        }
        dir
    })
    .path()
}

/// 40 resources on the local provider: datasets, models trained on them, feature stores, endpoints.
fn stack() -> TestEnv {
    let env = TestEnv::new();
    let mut spec =
        String::from("version: 1\nproject: crash\nproviders: { local: { root: .mlops/local } }\ndatasets:\n");
    for i in 0..10 {
        std::fs::create_dir_all(env.join(&format!("data/d{i}"))).unwrap();
        for f in 0..4 {
            let to = env.join(&format!("data/d{i}/part-{f}.bin"));
            std::fs::hard_link(pool().join(format!("d{i}-{f}.bin")), to).unwrap();
        }
        spec.push_str(&format!("  d{i}: {{ source: ./data/d{i} }}\n"));
    }
    spec.push_str("models:\n");
    for i in 0..10 {
        env.write(&format!("models/m{i}.bin"), &format!("weights {i}\n"));
        spec.push_str(&format!("  m{i}: {{ artifact: ./models/m{i}.bin, trained_on: [datasets.d{i}] }}\n"));
    }
    spec.push_str("feature_stores:\n");
    for i in 0..10 {
        spec.push_str(&format!(
            "  f{i}: {{ record_identifier: id, event_time: ts, features: {{ id: string, ts: string }} }}\n"
        ));
    }
    spec.push_str("endpoints:\n");
    for i in 0..10 {
        spec.push_str(&format!("  e{i}: {{ model: models.m{i}, instance_count: 1 }}\n"));
    }
    env.write("mlops.yaml", &spec);
    env.write(".gitignore", ".mlops/\n");
    env.commit("crash stack");
    env
}

fn live_objects(env: &TestEnv) -> usize {
    let root = env.join(".mlops/local");
    let count = |kind: &str, json: bool| -> usize {
        std::fs::read_dir(root.join(kind))
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        !name.starts_with('.') && (name.ends_with(".json") == json)
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    // datasets/<name>.json, models/<name>/, feature_stores/<name>/, endpoints/<name>.json
    count("datasets", true) + count("models", false) + count("feature_stores", false) + count("endpoints", true)
}

/// Starts an apply (one change at a time, so that its changes spread over time) and returns it
/// with the instant its journal appeared: the moment the first change starts.
#[allow(clippy::zombie_processes)] // the caller waits for it
fn start_apply(env: &TestEnv) -> (std::process::Child, Option<Instant>) {
    let journal = env.join(".git/mlops/journal/crash/default.plan.json");
    let mut child = env.spawn_mlops(1, &["apply", "--auto-approve", "--parallelism", "1"]).pop().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if journal.exists() {
            return (child, Some(Instant::now()));
        }
        if child.try_wait().unwrap().is_some() {
            return (child, None);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("the apply never started its changes");
}

/// Starts an apply and kills it (SIGKILL) once its journal holds its first finished change;
/// returns the journal's entries file.
fn kill_after_the_first_change(env: &TestEnv) -> std::path::PathBuf {
    let (mut child, began) = start_apply(env);
    assert!(began.is_some());
    let entries = env.join(".git/mlops/journal/crash/default.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&entries).map_or(true, |t| !t.contains('\n')) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
    entries
}

#[test]
fn an_apply_killed_at_any_moment_converges_with_one_more_apply() {
    // How long the changes of an uninterrupted apply take here, to spread the kills over them.
    let probe = stack();
    let (mut child, began) = start_apply(&probe);
    assert!(child.wait().unwrap().success());
    let phase = began.expect("the journal appeared").elapsed();
    assert_eq!(live_objects(&probe), 40);
    drop(probe);

    // Two kills while planning (before the journal's first line), ten spread over the changes; on
    // a loaded machine the changes take longer than the probe's, so more rounds spread over them
    // until enough kills have landed mid-apply (at most twelve more).
    let mut landed_mid_apply = 0;
    let mut trials = 0;
    for trial in 0..24u32 {
        if trial >= 12 && landed_mid_apply >= 5 {
            break;
        }
        trials += 1;
        let env = stack();
        if trial < 2 {
            let mut child = env.spawn_mlops(1, &["apply", "--auto-approve"]).pop().unwrap();
            std::thread::sleep(Duration::from_millis(30 + 40 * u64::from(trial)));
            let _ = child.kill();
            let _ = child.wait();
        } else {
            let (mut child, began) = start_apply(&env);
            if let Some(began) = began {
                std::thread::sleep((phase * ((trial - 2) % 10) / 10).saturating_sub(began.elapsed()));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let before = live_objects(&env);
        if before > 0 && before < 40 {
            landed_mid_apply += 1;
        }
        eprintln!("trial {trial}: killed with {before} of 40 objects live");

        let run = env.mlops(&["apply", "--auto-approve"]);
        assert_eq!(
            run.status, 0,
            "trial {trial} (killed after {before} objects): one apply converges\n{}\n{}",
            run.stdout, run.stderr
        );
        let plan = env.mlops(&["plan", "--detailed-exitcode"]);
        assert_eq!(plan.status, 0, "trial {trial}: nothing left to do\n{}\n{}", plan.stdout, plan.stderr);
        assert_eq!(live_objects(&env), 40, "trial {trial}");
        let recorded = env.git(&["ls-tree", "-r", "--name-only", "refs/mlops/lineage/crash/default", "resources/"]);
        assert_eq!(recorded.lines().count(), 40, "trial {trial}: lineage knows every live object\n{recorded}");
        env.git(&["fsck", "--no-progress", "--no-dangling"]);
        assert!(!env.join(".git/mlops/journal/crash/default.plan.json").exists(), "trial {trial}: the journal is gone");
        assert_lineage_is_live(&env, trial);
    }
    assert!(
        landed_mid_apply >= 5,
        "enough kills landed mid-apply to mean something: {landed_mid_apply} of {trials} (changes took {phase:?})"
    );
}

/// Lineage equals the live state: no drift, nothing live that lineage records otherwise.
fn assert_lineage_is_live(env: &TestEnv, trial: u32) {
    let verify = env.mlops(&["verify", "--live"]);
    assert_eq!(verify.status, 0, "trial {trial}: lineage equals the live state\n{}\n{}", verify.stdout, verify.stderr);
}

/// New bytes in every dataset and model of an applied crash stack: an update of 20 resources.
fn change_inputs(env: &TestEnv) {
    for i in 0..10 {
        let to = env.join(&format!("data/d{i}/part-9.bin"));
        std::fs::hard_link(pool().join(format!("d{}-0.bin", (i + 1) % 10)), to).unwrap();
        env.write(&format!("models/m{i}.bin"), &format!("weights {i}, retrained\n"));
    }
    env.commit("retrained");
}

#[test]
fn an_update_killed_at_any_moment_converges_with_lineage_equal_to_the_live_state() {
    let probe = stack();
    probe.mlops(&["apply", "--auto-approve"]).ok();
    change_inputs(&probe);
    let (mut child, began) = start_apply(&probe);
    assert!(child.wait().unwrap().success());
    let phase = began.expect("the journal appeared").elapsed();
    drop(probe);

    for trial in 0..10u32 {
        let env = stack();
        env.mlops(&["apply", "--auto-approve"]).ok();
        let before = env.git(&["rev-parse", "refs/mlops/lineage/crash/default"]);
        change_inputs(&env);
        let (mut child, began) = start_apply(&env);
        if let Some(began) = began {
            std::thread::sleep((phase * trial / 10).saturating_sub(began.elapsed()));
        }
        let _ = child.kill();
        let _ = child.wait();
        let killed_at = env.git(&["rev-parse", "refs/mlops/lineage/crash/default"]);
        eprintln!("trial {trial}: killed, lineage {}", if before == killed_at { "not moved" } else { "moved" });

        let run = env.mlops(&["apply", "--auto-approve"]);
        assert_eq!(run.status, 0, "trial {trial}: one apply converges\n{}\n{}", run.stdout, run.stderr);
        let plan = env.mlops(&["plan", "--detailed-exitcode"]);
        assert_eq!(plan.status, 0, "trial {trial}: nothing left to do or record\n{}\n{}", plan.stdout, plan.stderr);
        assert_lineage_is_live(&env, trial);
        assert_eq!(live_objects(&env), 40, "trial {trial}");
    }
}

#[test]
fn live_objects_lineage_lost_show_as_unrecorded_and_apply_records_them() {
    let env = TestEnv::quickstart();
    env.mlops(&["apply", "--auto-approve"]).ok();
    env.git(&["update-ref", "-d", "refs/mlops/lineage/quickstart/default"]);
    let plan = env.mlops(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status, 2, "never 'No changes' while lineage does not know live objects: {}", plan.stdout);
    assert!(plan.stdout.contains("Exists but is not recorded"), "{}", plan.stdout);
    assert!(plan.stdout.contains("? endpoints.churn-api"), "{}", plan.stdout);
    assert!(plan.stdout.contains("4 to record"), "{}", plan.stdout);
    let md = env.mlops(&["plan", "--format", "markdown"]).ok();
    assert!(md.stdout.contains("not recorded as live in lineage"), "{}", md.stdout);
    env.mlops(&["apply", "--auto-approve"]).ok();
    assert_eq!(env.lineage("quickstart").len(), 1);
    let files = env.git(&["ls-tree", "-r", "--name-only", "refs/mlops/lineage/quickstart/default", "resources/"]);
    assert_eq!(files.lines().count(), 4, "{files}");
    assert_eq!(env.mlops(&["plan", "--detailed-exitcode"]).status, 0);
}

#[test]
fn the_first_sigint_lets_running_changes_finish_records_them_and_exits_130() {
    let env = stack();
    let (child, began) = start_apply(&env);
    assert!(began.is_some(), "the apply started its changes");
    // Interrupted once its first change is live: not on a timer a loaded machine can outrun.
    let deadline = Instant::now() + Duration::from_secs(60);
    while live_objects(&env) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let kill = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "exit 130 after the first SIGINT\n{stderr}");
    assert!(stderr.contains("Apply interrupted"), "{stderr}");
    let done = live_objects(&env);
    assert!(done > 0 && done < 40, "stopped mid-apply: {done} of 40 live");
    // Everything that finished is recorded, no journal is left, lineage equals the live state.
    assert!(!env.join(".git/mlops/journal/crash/default.plan.json").exists());
    let recorded = env.git(&["ls-tree", "-r", "--name-only", "refs/mlops/lineage/crash/default", "resources/"]);
    assert_eq!(recorded.lines().count(), done, "every live object is recorded\n{recorded}");
    let log = env.git(&["log", "-1", "--format=%B", "refs/mlops/lineage/crash/default"]);
    assert!(log.contains("Result: partial"), "{log}");
    assert_lineage_is_live(&env, 0);
    env.mlops(&["apply", "--auto-approve"]).ok();
    assert_eq!(live_objects(&env), 40);
    assert_eq!(env.mlops(&["plan", "--detailed-exitcode"]).status, 0);
}

#[test]
fn import_with_a_pending_journal_records_it_first_and_once() {
    let env = stack();
    let entries = kill_after_the_first_change(&env);
    let journal = env.join(".git/mlops/journal/crash/default.plan.json");
    assert!(journal.exists(), "the killed apply left its journal");
    assert!(env.lineage("crash").is_empty());
    let first: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&entries).unwrap().lines().next().unwrap()).unwrap();
    let address = first["address"].as_str().unwrap().to_string();
    let name = address.split('.').nth(1).unwrap().to_string();
    // Its object exists and the journal says so: the import records the journal first.
    let run = env.mlops(&["import", &address, &name]);
    assert!(run.stderr.contains("now recorded as"), "the journal is recorded first:\n{}", run.stderr);
    assert!(!run.stderr.contains("deferred") && !run.stderr.contains("holds the lock"), "{}", run.stderr);
    assert_eq!(run.status, 1, "d0 is recorded by the recovery: {}", run.stdout);
    assert!(run.stderr.contains("already recorded"), "{}", run.stderr);
    assert!(!journal.exists());
    assert_eq!(env.lineage("crash").len(), 1, "recorded once");
    // Lineage lost: the local store's objects are imported by name, each once.
    env.mlops(&["apply", "--auto-approve"]).ok();
    env.git(&["update-ref", "-d", "refs/mlops/lineage/crash/default"]);
    let run = env.mlops(&["import", "datasets.d3", "d3"]).ok();
    assert!(run.stdout.contains("Imported datasets.d3"), "{}", run.stdout);
    let recorded = env.git(&["ls-tree", "-r", "--name-only", "refs/mlops/lineage/crash/default", "resources/"]);
    assert_eq!(recorded.trim(), "resources/datasets/d3.json");
    let wrong = env.mlops(&["import", "datasets.d4", "elsewhere"]);
    assert_eq!(wrong.status, 1);
    assert!(wrong.stderr.contains("by their spec name"), "{}", wrong.stderr);
}

/// The journal mlops writes (read from disk after a SIGKILL, not rebuilt by the test) holds a
/// secret's marker, never its value: a model's environment takes a file-held secret, the apply is
/// killed once the journal has its first finished change, and every journal file is searched.
#[test]
fn a_killed_apply_leaves_a_journal_without_secret_values() {
    let env = stack();
    const VALUE: &str = "journal-s3cr3t-Value-4242";
    env.write("api.key", &format!("{VALUE}\n"));
    let spec = env.read("mlops.yaml").replace(
        "  m0: { artifact: ./models/m0.bin, trained_on: [datasets.d0] }",
        "  m0: { artifact: ./models/m0.bin, trained_on: [datasets.d0], environment: { API_KEY: \"${secret:file:api.key}\" } }",
    );
    assert!(spec.contains("secret:file:api.key"));
    env.write("mlops.yaml", &spec);
    env.write(".gitignore", ".mlops/\napi.key\n");
    env.commit("a secret");
    kill_after_the_first_change(&env);
    let mut journal = String::new();
    for e in std::fs::read_dir(env.join(".git/mlops/journal/crash")).unwrap().flatten() {
        journal.push_str(&std::fs::read_to_string(e.path()).unwrap());
    }
    assert!(
        journal.contains("(secret file:api.key"),
        "the journal holds the marker: {}",
        &journal[..journal.len().min(2000)]
    );
    assert!(!journal.contains(VALUE), "the journal holds no secret value");
    // The next run records what the killed one did, still without the value.
    env.mlops(&["apply", "--auto-approve"]).ok();
    let history = env.git(&["log", "-p", "refs/mlops/lineage/crash/default"]);
    assert!(!history.contains(VALUE));
    // While the backend holds it.
    assert!(env.read(".mlops/local/models/m0/v1/version.json").contains(VALUE));
}
