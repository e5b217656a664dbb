//! `mlops stacks`: the stacks of a repository built in the test (a training stack and a serving
//! stack with two environments, and a spec Git ignores), and which of them a change affects.

use serde_json::{Value, json};

use crate::common::{TestEnv, flat};

fn repo() -> (TestEnv, String) {
    let env = TestEnv::new();
    env.write(
        "training/mlops.yaml",
        "version: 1\nproject: training\nproviders:\n  local: {}\ndatasets:\n  train: { source: ./data }\n\
         models:\n  churn: { artifact: ../artifacts/churn.json, trained_on: [datasets.train] }\n",
    );
    env.write("training/data/a.csv", "id,x\n1,2\n");
    env.write("artifacts/churn.json", "{\"weights\": [1]}\n");
    env.write(
        "serving/mlops.yaml",
        "version: 1\nproject: serving\nproviders:\n  local: {}\nmodels:\n  m: { artifact: file://model.json }\n\
         endpoints:\n  api: { model: models.m }\nenvironments:\n  prod: { endpoints: { api: { instance_count: 2 } } }\n",
    );
    env.write("serving/model.json", "{}\n");
    env.write("scratch/mlops.yaml", "version: 1\nproject: scratch\n");
    env.write(".gitignore", "scratch/\n");
    env.commit("two stacks");
    let base = env.git(&["rev-parse", "HEAD"]).trim().to_string();
    (env, base)
}

/// A training stack with one model, and a serving stack whose endpoint is labelled with the
/// version training recorded (`${stack:training:models.churn.version}`), committed.
pub(crate) fn training_and_serving() -> TestEnv {
    let env = TestEnv::new();
    env.write(
        "training/mlops.yaml",
        "version: 1\nproject: training\nproviders:\n  local: { root: .state }\nmodels:\n  churn: { artifact: ./model.json }\n",
    );
    env.write("training/model.json", "{\"weights\": [1]}\n");
    env.write(
        "serving/mlops.yaml",
        "version: 1\nproject: serving\nproviders:\n  local: { root: .state }\nmodels:\n  m: { artifact: ./model.json }\n\
         endpoints:\n  api:\n    model: models.m\n    labels: { trained: \"${stack:training:models.churn.version}\" }\n",
    );
    env.write("serving/model.json", "{}\n");
    env.write(".gitignore", ".state/\n");
    env.commit("two stacks");
    env
}

fn stacks(env: &TestEnv, args: &[&str]) -> Value {
    let mut all = vec!["stacks", "--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&env.mlops(&all).ok().stdout).unwrap()
}

fn ids(v: &Value) -> Vec<&str> {
    v.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect()
}

#[test]
fn every_spec_git_tracks_is_a_stack_per_environment_and_ignored_ones_are_not() {
    let (env, _) = repo();
    let all = stacks(&env, &[]);
    assert_eq!(ids(&all), ["serving:default", "serving:prod", "training:default"]);
    assert_eq!(
        all[2],
        json!({ "id": "training:default", "spec": "training/mlops.yaml", "project": "training", "environment": "default", "wave": 0 })
    );
    // The same from a subfolder: ids are from the repository root.
    let sub = serde_json::from_str::<Value>(&env.mlops(&["-C", "serving", "stacks", "--json"]).ok().stdout).unwrap();
    assert_eq!(ids(&sub), ids(&all));
    let text = env.mlops(&["stacks"]).ok().stdout;
    assert!(text.contains("wave 0  training:default  (project training, training/mlops.yaml)"), "{text}");
}

#[test]
fn changed_lists_only_the_stacks_whose_spec_or_inputs_changed_with_the_files() {
    let (env, base) = repo();
    assert_eq!(stacks(&env, &["--changed", "--base", &base]), json!([]), "nothing changed");
    let none = env.mlops(&["stacks", "--changed", "--base", &base]).ok().stdout;
    assert!(none.contains("No stack is affected."), "{none}");

    // A dataset file of the training stack, committed: training only, naming the file.
    env.write("training/data/b.csv", "id,x\n3,4\n");
    env.commit("more data");
    let changed = stacks(&env, &["--changed", "--base", &base]);
    assert_eq!(ids(&changed), ["training:default"]);
    assert_eq!(changed[0]["reasons"], json!(["training/data/b.csv"]));

    // An artifact outside the stack's folder it reads, uncommitted: still training.
    env.write("artifacts/churn.json", "{\"weights\": [2]}\n");
    let changed = stacks(&env, &["--changed", "--base", &base]);
    assert_eq!(changed[0]["reasons"], json!(["artifacts/churn.json", "training/data/b.csv"]));

    // The serving spec: both of its environments; a file no stack reads affects none.
    env.write("serving/mlops.yaml", &env.read("serving/mlops.yaml").replace("instance_count: 2", "instance_count: 3"));
    env.write("README.md", "notes\n");
    let changed = stacks(&env, &["--changed", "--base", &base]);
    assert_eq!(ids(&changed), ["serving:default", "serving:prod", "training:default"]);
    assert_eq!(changed[0]["reasons"], json!(["serving/mlops.yaml"]));
}

/// `mlops-workspace.yaml`: a folder it excludes holds no stack, a file a stack watches affects
/// it, `defaults.base` is the base when none is given; a glob that does not parse and an unknown
/// key are errors at their lines.
#[test]
fn the_workspace_file_excludes_folders_adds_watched_files_and_sets_the_base() {
    let (env, base) = repo();
    env.write("experiments/try/mlops.yaml", "version: 1\nproject: try\n");
    env.write(
        "mlops-workspace.yaml",
        "version: 1\nexclude: [experiments/**]\nwatch:\n  serving: [shared/schemas/**]\ndefaults: { base: trunk }\n",
    );
    env.git(&["branch", "trunk", &base]);
    assert_eq!(ids(&stacks(&env, &[])), ["serving:default", "serving:prod", "training:default"]);
    assert_eq!(stacks(&env, &["--changed"]), json!([]), "only the workspace file and an excluded stack are new");

    env.write("shared/schemas/request.json", "{}\n");
    env.write("shared/other.txt", "x\n");
    let changed = stacks(&env, &["--changed"]);
    assert_eq!(ids(&changed), ["serving:default", "serving:prod"]);
    assert_eq!(changed[0]["reasons"], json!(["shared/schemas/request.json"]));

    env.write("mlops-workspace.yaml", "version: 1\nexclude:\n  - \"experiments/[a\"\n");
    let bad = env.mlops(&["stacks"]);
    assert_eq!(bad.status, 1);
    assert!(bad.stderr.contains("stacks::workspace"), "{}", bad.stderr);
    assert!(flat(&bad.stderr).contains("`experiments/[a` is not a glob"), "{}", bad.stderr);
    assert!(bad.stderr.contains("3 │   - \"experiments/[a\""), "{}", bad.stderr);

    env.write("mlops-workspace.yaml", "version: 1\nexcludes: [experiments]\n");
    let unknown = env.mlops(&["stacks"]);
    assert_eq!(unknown.status, 1);
    assert!(unknown.stderr.contains("excludes"), "{}", unknown.stderr);
    assert!(unknown.stderr.contains("2 │ excludes"), "{}", unknown.stderr);
}

#[test]
fn a_base_git_does_not_know_is_a_clear_error() {
    let (env, _) = repo();
    let run = env.mlops(&["stacks", "--changed", "--base", "no-such-branch"]);
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(run.stderr.contains("stacks::git"), "{}", run.stderr);
    assert!(run.stderr.contains("no-such-branch"), "{}", run.stderr);
}

/// A serving stack that uses the training stack's recorded model version: planned with the value
/// lineage recorded (and the lineage commit it came from in the plan's `source.upstreams`), moved
/// by the next training apply; `mlops stacks` puts it in a later wave and lists it as affected when
/// training is; a reference to a stack never applied, and a cycle, are errors at their lines.
#[test]
fn a_stack_uses_another_stacks_recorded_values_and_comes_after_it() {
    let env = training_and_serving();
    let base = env.git(&["rev-parse", "HEAD"]).trim().to_string();

    // Nothing recorded for training yet: an error at the line, naming what is missing.
    let early = env.mlops(&["-C", "serving", "plan"]);
    assert_eq!(early.status, 1, "{}", early.stdout);
    assert!(flat(&early.stderr).contains("spec::stack_reference"), "{}", early.stderr);
    assert!(flat(&early.stderr).contains("has not been applied"), "{}", early.stderr);
    assert!(flat(&early.stderr).contains("mlops.yaml:10"), "{}", early.stderr);

    env.mlops(&["-C", "training", "apply", "--auto-approve"]).ok();
    let training_tip = env.lineage("training")[0].clone();
    let plan: Value = serde_json::from_str(&env.mlops(&["-C", "serving", "plan", "--json"]).ok().stdout).unwrap();
    let api = crate::common::change(&plan, "endpoints.api");
    assert_eq!(api["desired"]["labels"]["trained"], "1", "{api}");
    assert_eq!(
        plan["source"]["upstreams"],
        json!([{ "reference": "training:models.churn.version", "stack": "training:default",
                 "lineage_commit": training_tip, "value": "1" }])
    );
    env.mlops(&["-C", "serving", "apply", "--auto-approve"]).ok();

    // Training registers version 2: serving's next plan moves the label.
    env.write("training/model.json", "{\"weights\": [2]}\n");
    env.commit("retrained");
    env.mlops(&["-C", "training", "apply", "--auto-approve"]).ok();
    let plan: Value = serde_json::from_str(&env.mlops(&["-C", "serving", "plan", "--json"]).ok().stdout).unwrap();
    let api = crate::common::change(&plan, "endpoints.api");
    assert_eq!(api["action"], "update", "{api}");
    assert_eq!(api["desired"]["labels"]["trained"], "2", "{api}");
    // A plan saved with version 2 is stale once training records version 3, and says why.
    env.mlops(&["-C", "serving", "plan", "--out", "p.json"]).ok();
    env.write("training/model.json", "{\"weights\": [22]}\n");
    env.commit("retrained once more");
    env.mlops(&["-C", "training", "apply", "--auto-approve"]).ok();
    let stale = env.mlops(&["-C", "serving", "apply", "p.json"]);
    assert_eq!(stale.status, 1, "{}", stale.stdout);
    assert!(flat(&stale.stderr).contains("plan::stale"), "{}", stale.stderr);
    let said = stale.stderr.replace("│", " ").split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        said.contains(
            "training:models.churn.version was 2 when the plan was made; training:default has since recorded 3"
        ),
        "{said}"
    );
    assert_eq!(env.lineage("serving").len(), 1, "nothing applied");

    // The DAG: serving after training; a training change affects serving too.
    let all = stacks(&env, &[]);
    assert_eq!(ids(&all), ["training:default", "serving:default"]);
    assert_eq!((&all[1]["wave"], &all[1]["needs"]), (&json!(1), &json!(["training:default"])));
    env.write("training/model.json", "{\"weights\": [3]}\n");
    let changed = stacks(&env, &["--changed", "--base", &base]);
    assert_eq!(ids(&changed), ["training:default", "serving:default"]);
    // Serving was last applied with version 1; training's lineage now holds 3.
    assert_eq!(changed[1]["reasons"], json!(["uses training:models.churn.version = 3, applied with 1"]));

    // Training now uses serving too: a cycle, named where it is written.
    let spec = env
        .read("training/mlops.yaml")
        .replace("./model.json }", "./model.json, description: \"${stack:serving:models.m.version}\" }");
    env.write("training/mlops.yaml", &spec);
    let cycle = env.mlops(&["stacks"]);
    assert_eq!(cycle.status, 1, "{}", cycle.stdout);
    assert!(cycle.stderr.contains("a cycle"), "{}", cycle.stderr);
    assert!(cycle.stderr.contains("mlops.yaml:"), "{}", cycle.stderr);
}

/// `plan --stacks` and `apply --stacks` on the training/serving pair: waves in order, one
/// combined output, a dependent not run when its upstream failed, exit codes for the whole.
#[test]
fn many_stacks_are_planned_and_applied_in_one_run_wave_after_wave() {
    let env = training_and_serving();

    // Before training is applied, serving is planned against training's plan: the version
    // training's apply will assign is a placeholder there, and the note says so.
    let first = env.mlops(&["plan", "--stacks", "--json"]).ok();
    let out: Value = serde_json::from_str(&first.stdout).unwrap();
    assert_eq!(out[0]["stack"]["id"], "training:default");
    assert_eq!(out[0]["plan"]["summary"]["create"], 1, "{}", out[0]);
    assert_eq!(out[1]["stack"]["id"], "serving:default");
    let api = out[1]["plan"]["changes"].as_array().unwrap().iter().find(|c| c["address"] == "endpoints.api").unwrap();
    assert_eq!(api["desired"]["labels"]["trained"], "(known after training:default applies)", "{api}");
    assert!(
        out[1]["note"].as_str().unwrap().contains("training:models.churn.version known once they are applied"),
        "{}",
        out[1]
    );
    let upstream = &out[1]["plan"]["source"]["upstreams"][0];
    assert_eq!(upstream["planned"]["known"], false, "{upstream}");
    // Alone, serving still cannot be planned: nothing is recorded to read.
    let alone = env.mlops(&["-C", "serving", "plan"]);
    assert_eq!(alone.status, 1);
    assert!(alone.stderr.contains("has not been applied"), "{}", alone.stderr);

    // One apply runs both, training first: serving reads the version training just recorded.
    let apply = env.mlops(&["apply", "--stacks", "--auto-approve"]).ok();
    let (t, s) = (
        apply.stdout.find("── stack training:default").unwrap(),
        apply.stdout.find("── stack serving:default").unwrap(),
    );
    assert!(t < s, "{}", apply.stdout);
    assert!(apply.stdout.contains("  training:default  done\n  serving:default  done"), "{}", apply.stdout);
    assert_eq!((env.lineage("training").len(), env.lineage("serving").len()), (1, 1));
    let state: Value = serde_json::from_str(&env.mlops(&["-C", "serving", "state", "--json"]).ok().stdout).unwrap();
    let api = state["resources"].as_array().unwrap().iter().find(|r| r["address"] == "endpoints.api").unwrap();
    assert_eq!(api["record"]["attributes"]["labels"]["trained"], "1", "{state}");
    let quiet = env.mlops(&["plan", "--stacks", "--detailed-exitcode"]);
    assert_eq!(quiet.status, 0, "{}\n{}", quiet.stdout, quiet.stderr);
    assert_eq!(quiet.stdout.matches("(no changes)").count(), 2, "{}", quiet.stdout);

    // Training changes: the combined comment has both stacks in its table, training's plan, and
    // serving's, planned against training's: the version is known once training is applied.
    let base = env.git(&["rev-parse", "HEAD"]).trim().to_string();
    env.write("training/model.json", "{\"weights\": [2]}\n");
    let md =
        env.mlops(&["plan", "--stacks", "--changed", "--base", &base, "--format", "markdown", "--detailed-exitcode"]);
    assert_eq!(md.status, 2, "{}", md.stderr);
    assert!(md.stdout.starts_with("## mlops plan · 2 stack(s)\n"), "{}", md.stdout);
    assert!(md.stdout.contains("| `training:default` | 0 | 1 | 0 | 0 | changes |"), "{}", md.stdout);
    assert!(md.stdout.contains("| `serving:default` | 0 | 1 | 0 | 0 | changes |"), "{}", md.stdout);
    assert!(md.stdout.contains("## mlops plan · `training` / `default`"), "{}", md.stdout);
    assert!(
        md.stdout.contains(
            "`serving:default`: planned against the plans of training:default; training:models.churn.version known once"
        ),
        "{}",
        md.stdout
    );

    // Training cannot be loaded: it fails, serving is not run, nothing is recorded, exit 1.
    env.write(
        "training/mlops.yaml",
        &env.read("training/mlops.yaml").replace("./model.json }", "./model.json, colour: red }"),
    );
    let broken = env.mlops(&["apply", "--stacks", "--auto-approve"]);
    assert_eq!(broken.status, 1, "{}", broken.stdout);
    assert!(
        broken.stdout.contains("serving:default  failed: not run: it uses values of training:default, which failed"),
        "{}",
        broken.stdout
    );
    assert!(broken.stderr.contains("colour"), "{}", broken.stderr);
    assert_eq!((env.lineage("training").len(), env.lineage("serving").len()), (1, 1));

    let alone = env.mlops(&["plan", "--changed"]);
    assert_eq!(alone.status, 1);
    assert!(alone.stderr.contains("--changed selects stacks and needs --stacks"), "{}", alone.stderr);
}

/// Runners as separate processes in separate clones, one bare remote as the only coordinator:
/// three stacks applied at once, and a fourth runner racing the first on its stack. With
/// `--lock-remote` each takes the remote lock, reads the remote's lineage and pushes its record:
/// every stack is applied and recorded exactly once, nothing recorded is lost, and every clone's
/// lineage verifies against the remote.
#[test]
fn runners_in_separate_clones_apply_stacks_at_once_through_one_remote() {
    let env = TestEnv::new();
    let live = env.join("live");
    for s in ["a", "b", "c"] {
        env.write(
            &format!("{s}/mlops.yaml"),
            &format!(
                "version: 1\nproject: {s}\nproviders:\n  local: {{ root: {} }}\nmodels:\n  m: {{ artifact: ./model.json }}\n",
                live.join(s).display()
            ),
        );
        env.write(&format!("{s}/model.json"), &format!("{{\"stack\": \"{s}\"}}\n"));
    }
    env.write(".gitignore", "live/\nrunners/\n");
    env.commit("three stacks");
    let remote = tempfile::tempdir().unwrap();
    let origin = remote.path().join("origin.git");
    let origin = origin.to_str().unwrap();
    env.git(&["init", "-q", "--bare", "-b", "main", origin]);
    env.git(&["push", "-q", origin, "main"]);
    let runners: Vec<String> = (0..4)
        .map(|i| {
            let dir = format!("runners/r{i}");
            env.git(&["clone", "-q", origin, &dir]);
            env.git(&["-C", &dir, "config", "user.name", &format!("Runner {i}")]);
            env.git(&["-C", &dir, "config", "user.email", "runner@example.com"]);
            dir
        })
        .collect();

    let jobs = [(0, "a"), (1, "b"), (2, "c"), (3, "a")];
    let outputs: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|&(r, s)| {
                let dir = format!("{}/{s}", runners[r]);
                let env = &env;
                scope.spawn(move || {
                    // A runner that meets the lock waits and tries again, as a CI job's retry does.
                    for _ in 0..100 {
                        let run = env.mlops(&["-C", &dir, "apply", "--auto-approve", "--lock-remote", "origin"]);
                        if run.status == 0 {
                            return run.stdout;
                        }
                        assert!(run.stderr.contains("lineage::locked"), "runner {r} on {s}: {}", run.stderr);
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                    panic!("runner {r} never got the lock on {s}");
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let applied = |i: usize| outputs[i].contains("Apply complete!");
    assert!(applied(1) && applied(2), "b and c each applied by their runner");
    assert_eq!(
        [applied(0), applied(3)].iter().filter(|a| **a).count(),
        1,
        "a applied once; the other runner read its record and found nothing to do:\n{}\n{}",
        outputs[0],
        outputs[3]
    );
    for s in ["a", "b", "c"] {
        let count = env.git(&["--git-dir", origin, "rev-list", "--count", &format!("refs/mlops/lineage/{s}/default")]);
        assert_eq!(count.trim(), "1", "stack {s}: one record on the remote");
    }
    assert_eq!(env.git(&["--git-dir", origin, "for-each-ref", "refs/mlops/lock"]), "", "every remote lock released");
    // Every runner that applied holds what the remote holds.
    for &(r, s) in &jobs {
        env.mlops(&["-C", &format!("{}/{s}", runners[r]), "verify", "--remote", "origin"]).ok();
    }

    // A clone whose lineage was rewritten apart from the remote's is refused before anything is read.
    let r1 = &runners[1];
    let orphan = env.git(&["-C", r1, "commit-tree", "HEAD^{tree}", "-m", "not lineage"]);
    env.git(&["-C", r1, "update-ref", "refs/mlops/lineage/b/default", orphan.trim()]);
    let diverged = env.mlops(&["-C", &format!("{r1}/b"), "apply", "--auto-approve", "--lock-remote", "origin"]);
    assert_eq!(diverged.status, 1, "{}", diverged.stdout);
    assert!(diverged.stderr.contains("lineage::diverged"), "{}", diverged.stderr);
    assert_eq!(env.git(&["--git-dir", origin, "for-each-ref", "refs/mlops/lock"]), "", "the lock is released");
}

/// The stacks of the training/serving repository as each recipe of `mlops stacks --format`.
fn recipe(env: &TestEnv, format: &str, more: &[&str]) -> Value {
    let mut args = vec!["stacks", "--format", format];
    args.extend_from_slice(more);
    let out = env.mlops(&args).ok().stdout;
    serde_saphyr::from_str(&out).unwrap_or_else(|e| panic!("the {format} recipe is not YAML ({e}):\n{out}"))
}

/// The GitHub workflow: a matrix job per wave, serving's after training's, a concurrency group
/// per stack; GitHub's workflow schema (action-validator, offline) accepts it, and refuses it
/// once broken (the validator does check).
#[test]
#[ignore = "needs npm's @action-validator/cli: `eval \"$(scripts/services up validators)\"`, then `cargo test -- --include-ignored`"]
fn the_github_recipe_runs_each_wave_as_a_matrix_and_passes_githubs_schema() {
    let validator = crate::common::service("MLOPS_TEST_ACTION_VALIDATOR", None, "validators");
    let env = training_and_serving();
    let wf = recipe(&env, "github", &["--run", "apply"]);
    assert_eq!(wf["jobs"]["wave-0"]["strategy"]["matrix"]["stack"][0]["id"], "training:default");
    assert_eq!(wf["jobs"]["wave-1"]["strategy"]["matrix"]["stack"][0]["spec"], "serving/mlops.yaml");
    assert_eq!(wf["jobs"]["wave-1"]["needs"], json!(["wave-0"]));
    assert_eq!(wf["jobs"]["wave-0"]["concurrency"]["group"], "mlops-${{ matrix.stack.id }}");
    let run = wf["jobs"]["wave-1"]["steps"][1]["run"].as_str().unwrap();
    assert!(
        run.ends_with(
            "mlops -f ${{ matrix.stack.spec }} --env ${{ matrix.stack.environment }} apply --auto-approve --lock-remote origin"
        ),
        "{run}"
    );
    let validate = |text: &str| {
        env.write("workflow.yml", text);
        std::process::Command::new(&validator).arg(env.join("workflow.yml")).output().unwrap()
    };
    let text = env.mlops(&["stacks", "--format", "github", "--run", "apply"]).ok().stdout;
    let ok = validate(&text);
    assert!(ok.status.success(), "{}\n{text}", String::from_utf8_lossy(&ok.stdout));
    let broken = validate(&text.replace("runs-on:", "runs_on:"));
    assert!(!broken.status.success(), "the validator refuses a job without runs-on");
    // And the workflows examples/monorepo carries.
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/monorepo/.github/workflows");
    for file in ["plan.yml", "apply.yml", "mlops-stacks.yml"] {
        let out = validate(&std::fs::read_to_string(examples.join(file)).unwrap());
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stdout));
    }
}

/// The GitLab child pipeline: a job per stack whose `needs:` are exactly the DAG `mlops stacks
/// --json` gives, a stage per wave, a resource group per stack; the plan recipe by default.
#[test]
fn the_gitlab_and_jenkins_recipes_need_what_the_dag_needs_and_their_scripts_run() {
    let env = training_and_serving();
    let pipeline = recipe(&env, "gitlab", &[]);
    let dag = stacks(&env, &[]);
    assert_eq!(pipeline["stages"], json!(["wave-0", "wave-1"]));
    for s in dag.as_array().unwrap() {
        let id = s["id"].as_str().unwrap();
        let job = &pipeline[id];
        assert_eq!(job["needs"], s.get("needs").cloned().unwrap_or(json!([])), "{id}: {job}");
        assert_eq!(job["stage"], format!("wave-{}", s["wave"]));
        assert_eq!(job["resource_group"], format!("mlops-{id}"));
        assert_eq!(
            job["script"][1],
            format!("mlops -f {} --env default plan --detailed-exitcode || [ $? -eq 2 ]", s["spec"].as_str().unwrap())
        );
        assert_eq!(
            job["artifacts"]["reports"]["junit"],
            format!("mlops-{}-default-check.xml", id.split(':').next().unwrap())
        );
    }
    // Each job's script, run as a runner would (from the repository's root, in wave order, with
    // mlops on the PATH): after an apply it plans, and writes the policy check as JUnit.
    env.mlops(&["apply", "--stacks", "--auto-approve"]).ok();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_mlops")).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    for s in dag.as_array().unwrap() {
        let id = s["id"].as_str().unwrap();
        let lines: Vec<&str> = pipeline[id]["script"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
        let run = std::process::Command::new("sh")
            .args(["-ec", &lines.join("\n")])
            .current_dir(env.path())
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{id}: {}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        let report = env.read(pipeline[id]["artifacts"]["reports"]["junit"].as_str().unwrap());
        assert!(report.contains("<testsuites name=\"mlops check\""), "{report}");
    }

    // Jenkins: a stage per wave in order, a parallel stage per stack running the same lines,
    // and the report recorded by the junit step.
    let jenkinsfile = env.mlops(&["stacks", "--format", "jenkins"]).ok().stdout;
    assert!(
        jenkinsfile.starts_with("// Generated by:\n//   mlops stacks --format jenkins --run plan\n"),
        "{jenkinsfile}"
    );
    let order: Vec<&str> = jenkinsfile
        .lines()
        .filter_map(|l| l.trim().strip_prefix("stage('")?.split_once('\'').map(|(n, _)| n))
        .collect();
    assert_eq!(order, ["wave 0", "training:default", "wave 1", "serving:default"], "{jenkinsfile}");
    for s in dag.as_array().unwrap() {
        let id = s["id"].as_str().unwrap();
        let lines: Vec<&str> = pipeline[id]["script"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
        let quoted = lines.join("\\n").replace('\'', "\\'");
        assert!(jenkinsfile.contains(&format!("sh('{quoted}')")), "{id}:\n{jenkinsfile}");
    }
    assert_eq!(jenkinsfile.matches("junit(allowEmptyResults: true, testResults: 'mlops-").count(), 2);
    assert_eq!(jenkinsfile.matches('{').count(), jenkinsfile.matches('}').count(), "{jenkinsfile}");
    // The cluster recipes need an image, and a repository when there is no remote to name it.
    let no_image = env.mlops(&["stacks", "--format", "kubernetes"]);
    assert_eq!(no_image.status, 1);
    assert!(no_image.stderr.contains("the kubernetes recipe needs --image"), "{}", no_image.stderr);
    let no_remote = env.mlops(&["stacks", "--format", "argo", "--image", "example.com/mlops:1"]);
    assert_eq!(no_remote.status, 1);
    assert!(no_remote.stderr.contains("has no remote `origin`"), "{}", no_remote.stderr);
}

/// `plan --stacks --out DIR` saves each stack's plan, a dependent's planned against its
/// upstream's: a value the upstream's plan sets (the artifact's digest) is used as planned, and
/// the dependent's saved plan applies once the upstream applied that plan; when the upstream
/// applied something else, or the value was one only its apply could tell (the version), the
/// dependent's saved plan is refused as stale, naming the upstream plan it assumed.
#[test]
fn a_dependent_is_planned_against_its_upstreams_plan_and_refused_when_it_applied_something_else() {
    let env = training_and_serving();
    let serving = env.read("serving/mlops.yaml").replace(
        "trained: \"${stack:training:models.churn.version}\"",
        "digest: \"${stack:training:models.churn.artifact_digest}\"",
    );
    env.write("serving/mlops.yaml", &serving);
    env.commit("serving labels the digest");
    env.mlops(&["apply", "--stacks", "--auto-approve"]).ok();
    let sha = |bytes: &str| format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes)));
    let label = |env: &TestEnv| -> Value {
        let state: Value = serde_json::from_str(&env.mlops(&["-C", "serving", "state", "--json"]).ok().stdout).unwrap();
        state["resources"].as_array().unwrap().iter().find(|r| r["address"] == "endpoints.api").unwrap()["record"]
            ["attributes"]["labels"]["digest"]
            .clone()
    };
    assert_eq!(label(&env), sha("{\"weights\": [1]}\n"));

    // Retrained: both plans saved; serving's label is the digest training's plan sets.
    env.write("training/model.json", "{\"weights\": [2]}\n");
    env.mlops(&["plan", "--stacks", "--out", "plans"]).ok();
    let saved: Value = serde_json::from_str(&env.read("plans/serving/default.json")).unwrap();
    let training: Value = serde_json::from_str(&env.read("plans/training/default.json")).unwrap();
    let api = saved["changes"].as_array().unwrap().iter().find(|c| c["address"] == "endpoints.api").unwrap();
    assert_eq!(api["desired"]["labels"]["digest"], sha("{\"weights\": [2]}\n"), "{api}");
    let upstream = &saved["source"]["upstreams"][0];
    assert_eq!(upstream["planned"]["known"], true, "{upstream}");
    let training_digest = {
        let bytes = env.read("plans/training/default.json");
        format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes.as_bytes())))
    };
    assert_eq!(upstream["planned"]["plan"], training_digest.as_str(), "{upstream}");
    assert_eq!(training["summary"]["update"].as_u64().unwrap() + training["summary"]["create"].as_u64().unwrap(), 1);

    // Serving's plan before training is applied: stale, the value is not recorded yet.
    let early = env.mlops(&["-C", "serving", "apply", "../plans/serving/default.json"]);
    assert_eq!(early.status, 1, "{}", early.stdout);
    assert!(flat(&early.stderr).contains("in the plan of training:default it assumed"), "{}", early.stderr);
    assert_eq!(env.lineage("serving").len(), 1);

    // Training applies its plan, then serving's saved plan applies as planned.
    env.mlops(&["-C", "training", "apply", "../plans/training/default.json"]).ok();
    env.mlops(&["-C", "serving", "apply", "../plans/serving/default.json"]).ok();
    assert_eq!(label(&env), sha("{\"weights\": [2]}\n"));

    // Planned again, but training applies other bytes than its plan said: serving's is stale.
    env.write("training/model.json", "{\"weights\": [3]}\n");
    env.mlops(&["plan", "--stacks", "--out", "plans"]).ok();
    env.write("training/model.json", "{\"weights\": [4]}\n");
    env.mlops(&["-C", "training", "apply", "--auto-approve"]).ok();
    let stale = env.mlops(&["-C", "serving", "apply", "../plans/serving/default.json"]);
    assert_eq!(stale.status, 1, "{}", stale.stdout);
    let said = format!(
        "training:models.churn.artifact_digest was {} in the plan of training:default it assumed",
        sha("{\"weights\": [3]}\n")
    );
    assert!(flat(&stale.stderr).contains(&said), "{}", stale.stderr);
    assert!(
        flat(&stale.stderr).contains(&format!("has since recorded {}", sha("{\"weights\": [4]}\n"))),
        "{}",
        stale.stderr
    );
    assert_eq!(env.lineage("serving").len(), 2);

    // A value only training's apply can tell (the version): serving's saved plan is refused.
    env.write("serving/mlops.yaml", &env.read("serving/mlops.yaml").replace("artifact_digest}", "version}"));
    env.write("training/model.json", "{\"weights\": [5]}\n");
    env.mlops(&["plan", "--stacks", "--out", "plans"]).ok();
    env.mlops(&["-C", "training", "apply", "../plans/training/default.json"]).ok();
    let unknown = env.mlops(&["-C", "serving", "apply", "../plans/serving/default.json"]);
    assert_eq!(unknown.status, 1, "{}", unknown.stdout);
    assert!(
        flat(&unknown.stderr)
            .contains("training:models.churn.version was left unknown by the plan of training:default it assumed"),
        "{}",
        unknown.stderr
    );
}

/// A dependent runs when a value it uses moves, not whenever its upstream changes: a training
/// change that leaves the model's version alone skips serving; a new version applies it; a
/// version training's own job applied elsewhere lists serving with the value and what it had.
#[test]
fn a_dependent_runs_only_when_a_value_it_uses_moves() {
    let env = training_and_serving();
    env.mlops(&["apply", "--stacks", "--auto-approve"]).ok();
    let head = |env: &TestEnv| env.git(&["rev-parse", "HEAD"]).trim().to_string();

    // A label on training's model: training changes, the version serving uses does not.
    let base = head(&env);
    let spec = env.read("training/mlops.yaml").replace("./model.json }", "./model.json, labels: { team: ml } }");
    env.write("training/mlops.yaml", &spec);
    env.commit("label");
    let listed = stacks(&env, &["--changed", "--base", &base]);
    assert_eq!(ids(&listed), ["training:default", "serving:default"]);
    assert_eq!(listed[1]["only_upstream"], true);
    assert_eq!(
        listed[1]["reasons"],
        json!(["uses values of training:default, which this change affects (compared again once it is applied)"])
    );
    let run = env.mlops(&["apply", "--stacks", "--changed", "--base", &base, "--auto-approve"]).ok();
    assert!(run.stdout.contains("  serving:default  skipped: the values it uses did not change"), "{}", run.stdout);
    assert!(!run.stdout.contains("── stack serving:default"), "{}", run.stdout);
    assert_eq!((env.lineage("training").len(), env.lineage("serving").len()), (2, 1));

    // A new model version: serving is compared again after training applied, and applied.
    let base = head(&env);
    env.write("training/model.json", "{\"weights\": [2]}\n");
    env.commit("retrained");
    let run = env.mlops(&["apply", "--stacks", "--changed", "--base", &base, "--auto-approve"]).ok();
    assert!(run.stdout.contains("  training:default  done\n  serving:default  done"), "{}", run.stdout);
    assert_eq!((env.lineage("training").len(), env.lineage("serving").len()), (3, 2));

    // Training's own job applies version 3; no file of serving's changed, yet it is listed.
    env.write("training/model.json", "{\"weights\": [3]}\n");
    env.commit("retrained again");
    env.mlops(&["-C", "training", "apply", "--auto-approve"]).ok();
    let listed = stacks(&env, &["--changed", "--base", &head(&env)]);
    assert_eq!(ids(&listed), ["serving:default"]);
    assert_eq!(listed[0]["reasons"], json!(["uses training:models.churn.version = 3, applied with 2"]));
    assert_eq!(listed[0].get("only_upstream"), None);
}

/// examples/monorepo as its README tells a user: copied as a repository of its own, six stacks in
/// two waves, applied in one run, then nothing left to plan; serving in each environment labelled
/// with the version training recorded there; its generated workflow is what the command in its
/// header prints today.
#[test]
fn the_monorepo_example_applies_in_waves_and_its_workflow_is_generated() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/monorepo");
    let env = TestEnv::new();
    crate::common::copy_dir(&root, env.path());
    env.write(".gitignore", ".mlops/\n");
    env.commit("monorepo");
    let listed = stacks(&env, &[]);
    assert_eq!(
        ids(&listed),
        ["training:default", "training:prod", "training:staging", "serving:default", "serving:prod", "serving:staging"]
    );
    let run = env.mlops(&["apply", "--stacks", "--auto-approve"]).ok();
    assert_eq!(run.stdout.lines().filter(|l| l.ends_with("  done")).count(), 6, "{}", run.stdout);
    let again = env.mlops(&["plan", "--stacks", "--detailed-exitcode"]);
    assert_eq!(again.status, 0, "{}", again.stdout);
    for environment in ["default", "staging", "prod"] {
        let state = |stack: &str| -> Value {
            let out = env.mlops(&["-C", stack, "--env", environment, "state", "--json"]).ok().stdout;
            serde_json::from_str(&out).unwrap()
        };
        let record = |state: &Value, address: &str| {
            state["resources"].as_array().unwrap().iter().find(|r| r["address"] == address).unwrap()["record"].clone()
        };
        let model = record(&state("training"), "models.churn-clf");
        let api = record(&state("serving"), "endpoints.churn-api");
        assert_eq!(
            api["attributes"]["labels"]["trained-version"],
            model["outputs"]["version"].to_string(),
            "{environment}"
        );
        assert_eq!(api["attributes"]["labels"]["trained-digest"], model["outputs"]["digest"], "{environment}");
    }
    let committed = std::fs::read_to_string(root.join(".github/workflows/mlops-stacks.yml")).unwrap();
    let command = committed.lines().nth(1).unwrap().trim_start_matches("#   mlops ");
    let setup = command.split_once("--setup '").unwrap().1.trim_end_matches('\'');
    let now = env.mlops(&["stacks", "--format", "github", "--run", "apply", "--setup", setup]).ok().stdout;
    assert_eq!(committed, now, "regenerate it with the command in its header");
}
