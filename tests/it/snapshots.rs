//! Snapshots of the renderings: text and JSON of a create plan, and of an update with drift.

use crate::common::TestEnv;

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(r"\b[0-9a-f]{40}\b", "[COMMIT]");
    // Fingerprints cover outputs that hold temp paths.
    s.add_filter(r#""live_fingerprint": "sha256:[0-9a-f]{64}""#, r#""live_fingerprint": "[FINGERPRINT]""#);
    s.add_filter(r"`[0-9a-f]{12}`", "`[SHORT]`");
    s.set_prepend_module_to_snapshot(false);
    s
}

#[test]
fn create_plan_text_and_json() {
    let env = TestEnv::quickstart();
    let text = env.mlops(&["plan"]).ok();
    let json = env.mlops(&["plan", "--json"]).ok();
    settings().bind(|| {
        insta::assert_snapshot!("create_plan_text", env.filter(&text.stdout));
        insta::assert_snapshot!("create_plan_json", env.filter(&json.stdout));
    });
}

#[test]
fn update_plan_with_drift_text_and_json() {
    let env = TestEnv::quickstart();
    env.mlops(&["apply", "--auto-approve"]).ok();
    env.write("data/train/2026-10.csv", "customer_id,tenure_months,monthly_spend,churned\nc-004,2,9.90,1\n");
    env.write(".mlops/local/feature_stores/customer/schema.json", "{\"record_identifier\": \"customer_id\"}");
    let spec = env.read("mlops.yaml");
    env.write(
        "mlops.yaml",
        &spec
            .replace("canary_percent: 10", "canary_percent: 25")
            .replace("instance_type: local.cpu", "instance_type: local.gpu"),
    );
    let text = env.mlops(&["plan"]).ok();
    let json = env.mlops(&["plan", "--json"]).ok();
    settings().bind(|| {
        insta::assert_snapshot!("update_plan_text", env.filter(&text.stdout));
        insta::assert_snapshot!("update_plan_json", env.filter(&json.stdout));
    });
}

#[test]
fn markdown_of_a_small_plan_and_of_a_flagged_plan() {
    let env = TestEnv::quickstart();
    let small = env.mlops(&["plan", "--format", "markdown"]).ok();
    env.mlops(&["apply", "--auto-approve"]).ok();
    env.write("model/churn-clf.json", "{\"retrained\": true}\n");
    let spec = env.read("mlops.yaml");
    env.write(
        "mlops.yaml",
        &spec
            .replace("event_time: event_time", "event_time: tenure_months")
            .replace("canary_percent: 10", "canary_percent: 30"),
    );
    let flagged = env.mlops(&["plan", "--format", "markdown"]).ok();
    settings().bind(|| {
        insta::assert_snapshot!("markdown_small", env.filter(&small.stdout));
        insta::assert_snapshot!("markdown_flagged", env.filter(&flagged.stdout));
    });
}

#[test]
fn multiline_values_are_diffed_line_by_line() {
    use mlops::plan::AttributeChange;
    let env = TestEnv::quickstart();
    env.mlops(&["plan", "--out", "p.json"]).ok();
    let mut plan: mlops::plan::Plan = serde_json::from_str(&env.read("p.json")).unwrap();
    plan.changes.truncate(1);
    plan.changes[0].action = mlops::plan::Action::Update;
    plan.changes[0].attributes = vec![AttributeChange {
        path: "description".into(),
        before: Some("line one\nline two\nline three\n".into()),
        after: Some("line one\nline 2\nline three\n".into()),
        forces_replacement: false,
    }];
    plan.summary = mlops::plan::Plan::summarize(&plan.changes, &plan.drift);
    let text = mlops::render::text::plan(&plan, &mlops::render::Style::PLAIN);
    settings().bind(|| insta::assert_snapshot!("multiline_diff", text));
}

#[test]
fn log_text() {
    let env = TestEnv::quickstart();
    env.mlops(&["apply", "--auto-approve"]).ok();
    env.write("model/churn-clf.json", "{\"retrained\": true}\n");
    env.commit("retrain");
    env.mlops(&["apply", "--auto-approve"]).ok();
    let log = env.mlops(&["log"]).ok();
    settings().bind(|| insta::assert_snapshot!("log_text", env.filter(&log.stdout)));
}
