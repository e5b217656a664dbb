//! The Feast provider against a real Feast registry server (`scripts/services up feast`: `feast
//! serve_registry` over a file registry). Every check goes through Feast's own Python SDK
//! (`FeatureStore(repo_path=…)` on the same registry), never through mlops's reads.

use std::process::Command;

use serde_json::Value;

use crate::common::{TestEnv, change};
use crate::gcp::unique;

/// Runs `code` with `store = FeatureStore(repo_path=<the server's repo>)`; its last line is JSON.
fn feast(code: &str) -> Value {
    let python = crate::common::service("MLOPS_TEST_FEAST_PYTHON", None, "feast");
    let repo = crate::common::service("MLOPS_TEST_FEAST_REPO", None, "feast");
    let script = format!(
        "import json, warnings\nwarnings.simplefilter('ignore')\nfrom datetime import timedelta\n\
         from feast import FeatureStore, Entity, FeatureView, Field, FileSource, ValueType\n\
         from feast.types import Float64, Int64, String\nstore = FeatureStore(repo_path={repo:?})\n{code}"
    );
    let out = Command::new(python).args(["-c", &script]).current_dir(&repo).output().expect("python runs");
    assert!(out.status.success(), "python failed:\n{script}\n{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    crate::common::printed_json(&text, "the Feast SDK")
}

/// A feature view as Feast's SDK sees it (with its entity), or null.
pub(crate) fn view(name: &str) -> Value {
    feast(&format!(
        "fvs = [v for v in store.list_feature_views() if v.name == {name:?}]\n\
         if not fvs:\n    print('null'); raise SystemExit\n\
         v = fvs[0]\ne = store.get_entity(v.entities[0])\n\
         print(json.dumps({{'features': {{f.name: str(f.dtype) for f in v.features}}, 'entity': e.name,\n\
           'join_key': e.join_key, 'tags': v.tags, 'ttl': v.ttl.total_seconds(), 'path': v.batch_source.path,\n\
           'timestamp_field': v.batch_source.timestamp_field, 'online': v.online}}))"
    ))
}

/// One writer at a time on the shared registry server: `feast serve_registry` over a file
/// registry reads, changes and writes the whole registry per call, so two tests applying at once
/// can lose one's entity (Feast's file registry is not transactional).
pub(crate) fn one_writer() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

struct Store {
    env: TestEnv,
    name: String,
    registry: String,
    _writer: std::sync::MutexGuard<'static, ()>,
}

impl Store {
    fn new() -> Store {
        let registry = crate::common::service("FEAST_REGISTRY", None, "feast");
        let _writer = one_writer();
        let name = unique("churn");
        let env = TestEnv::new();
        let s = Store { env, name, registry, _writer };
        s.write("customer_id: string, event_time: string, tenure: integral, spend: fractional", "customer_id");
        s
    }

    fn write(&self, features: &str, key: &str) {
        self.env.write(
            "mlops.yaml",
            &format!(
                "version: 1\nproject: fs\nproviders:\n  feast: {{ registry: {}, project: mlops }}\n\
                 feature_stores:\n  {}:\n    provider: feast\n    record_identifier: {key}\n    event_time: event_time\n\
                 \x20   features: {{ {features} }}\n    source: {{ path: data/churn.parquet }}\n    ttl: 24h\n\
                 \x20   labels: {{ team: growth }}\n",
                self.registry, self.name
            ),
        );
        self.env.commit("spec");
    }

    fn view_name(&self) -> String {
        self.name.replace('-', "_")
    }

    fn mlops(&self, args: &[&str]) -> crate::common::Run {
        self.env.mlops(args)
    }

    fn plan(&self) -> Value {
        serde_json::from_str(&self.mlops(&["plan", "--json"]).ok().stdout).unwrap()
    }
}

#[test]
#[ignore = "needs a Feast registry server: `eval \"$(scripts/services up feast)\"`, then `cargo test -- --include-ignored`"]
fn create_replan_add_a_feature_change_the_key_and_delete() {
    let s = Store::new();
    let run = s.mlops(&["apply", "--auto-approve"]).ok();
    assert!(run.stdout.contains("Apply complete! Resources: 1 added"), "{}", run.stdout);
    let v = view(&s.view_name());
    assert_eq!(v["features"], serde_json::json!({"tenure": "Int64", "spend": "Float64"}), "{v}");
    assert_eq!(v["join_key"], "customer_id");
    assert_eq!(v["ttl"], 86400.0);
    assert_eq!(v["path"], "data/churn.parquet");
    assert_eq!(v["timestamp_field"], "event_time");
    assert_eq!(v["tags"]["team"], "growth");
    assert_eq!(v["tags"]["mlops.project"], "fs");
    assert_eq!(s.mlops(&["plan", "--detailed-exitcode"]).status, 0, "no changes after apply");

    // A new feature: in place.
    s.write(
        "customer_id: string, event_time: string, tenure: integral, spend: fractional, churn_score: fractional",
        "customer_id",
    );
    let plan = s.plan();
    let address = format!("feature_stores.{}", s.name);
    assert_eq!(change(&plan, &address)["action"], "update");
    s.mlops(&["apply", "--auto-approve"]).ok();
    assert_eq!(view(&s.view_name())["features"]["churn_score"], "Float64");

    // Another entity key: the stored rows become unreachable, so it is refused without the flag.
    s.write(
        "account_id: string, event_time: string, tenure: integral, spend: fractional, churn_score: fractional",
        "account_id",
    );
    let plan = s.plan();
    let c = change(&plan, &address);
    assert_eq!(c["action"], "replace", "{c}");
    assert!(c["tags"].as_array().unwrap().iter().any(|t| t["tag"] == "data-destroying"), "{c}");
    let refused = s.mlops(&["apply", "--auto-approve"]);
    assert_ne!(refused.status, 0, "{}{}", refused.stdout, refused.stderr);
    assert_eq!(view(&s.view_name())["join_key"], "customer_id", "nothing changed");
    s.mlops(&["apply", "--auto-approve", "--allow-data-loss"]).ok();
    assert_eq!(view(&s.view_name())["join_key"], "account_id");

    // Left the spec: deleted (what `feast apply` does not do).
    s.env.write(
        "mlops.yaml",
        &format!("version: 1\nproject: fs\nproviders:\n  feast: {{ registry: {}, project: mlops }}\n", s.registry),
    );
    s.env.commit("remove");
    // Its online records go with the view: data-destroying, refused without the flag.
    let refused = s.mlops(&["apply", "--auto-approve"]);
    assert_eq!(refused.status, 1, "{}{}", refused.stdout, refused.stderr);
    assert!(refused.stdout.contains("its online-store records are no longer served"), "{}", refused.stdout);
    assert_eq!(view(&s.view_name())["join_key"], "account_id", "nothing deleted");
    s.mlops(&["apply", "--auto-approve", "--allow-data-loss"]).ok();
    assert_eq!(view(&s.view_name()), Value::Null, "deleted");
    let entities = feast("print(json.dumps([e.name for e in store.list_entities()]))");
    assert!(!entities.as_array().unwrap().iter().any(|e| e == &Value::String(s.view_name())), "{entities}");
}

#[test]
#[ignore = "needs a Feast registry server: `eval \"$(scripts/services up feast)\"`, then `cargo test -- --include-ignored`"]
fn a_feast_apply_from_a_python_repo_is_drift_and_apply_restores_the_spec() {
    let s = Store::new();
    s.mlops(&["apply", "--auto-approve"]).ok();
    let name = s.view_name();
    // Someone runs `feast apply` with their own definition of the view.
    feast(&format!(
        "e = store.get_entity({name:?})\n\
         src = FileSource(name={name:?} + '_source', path='data/other.parquet', timestamp_field='event_time')\n\
         fv = FeatureView(name={name:?}, entities=[e], ttl=timedelta(hours=1), source=src, online=True,\n\
             schema=[Field(name='customer_id', dtype=String), Field(name='tenure', dtype=Int64)], tags={{'team': 'other', 'mlops.project': 'fs'}})\n\
         store.apply([src, fv])\nprint('null')"
    ));
    assert_eq!(view(&name)["path"], "data/other.parquet");
    let plan = s.plan();
    let c = change(&plan, &format!("feature_stores.{}", s.name));
    assert_eq!(c["action"], "update", "{c}");
    let paths = crate::common::paths(c);
    for p in ["features", "ttl_seconds", "labels", "source"] {
        assert!(paths.iter().any(|x| x.starts_with(p)), "{p} drifted: {paths:?}");
    }
    s.mlops(&["apply", "--auto-approve"]).ok();
    let v = view(&name);
    assert_eq!(v["path"], "data/churn.parquet");
    assert_eq!(v["features"], serde_json::json!({"tenure": "Int64", "spend": "Float64"}));
    assert_eq!(v["tags"]["team"], "growth");
    assert_eq!(s.mlops(&["plan", "--detailed-exitcode"]).status, 0);
}

#[test]
#[ignore = "needs a Feast registry server: `eval \"$(scripts/services up feast)\"`, then `cargo test -- --include-ignored`"]
fn a_view_made_elsewhere_is_not_adopted_but_can_be_imported() {
    let s = Store::new();
    let name = s.view_name();
    feast(&format!(
        "e = Entity(name={name:?}, join_keys=['customer_id'], value_type=ValueType.STRING)\n\
         src = FileSource(name={name:?} + '_source', path='data/churn.parquet', timestamp_field='event_time')\n\
         fv = FeatureView(name={name:?}, entities=[e], ttl=timedelta(days=1), source=src, online=True,\n\
             schema=[Field(name='customer_id', dtype=String), Field(name='tenure', dtype=Int64), Field(name='spend', dtype=Float64)])\n\
         store.apply([e, src, fv])\nprint('null')"
    ));
    let refused = s.mlops(&["apply", "--auto-approve"]);
    assert_ne!(refused.status, 0);
    let text = format!("{}{}", refused.stdout, refused.stderr);
    assert!(text.contains("not created by this stack"), "{text}");
    assert!(view(&name)["tags"].get("mlops.project").is_none(), "left as it was");

    s.mlops(&["import", &format!("feature_stores.{}", s.name), &name]).ok();
    let plan = s.plan();
    let c = change(&plan, &format!("feature_stores.{}", s.name));
    assert_eq!(c["action"], "update", "only the labels differ: {c}");
    s.mlops(&["apply", "--auto-approve"]).ok();
    let v = view(&name);
    assert_eq!(v["tags"]["mlops.project"], "fs", "now this stack's");
    assert_eq!(v["tags"]["team"], "growth");
}

/// Feature services serving the view: created with it, following its features, deleted when they
/// leave the spec (checked through Feast's SDK).
#[test]
#[ignore = "needs a Feast registry server: `eval \"$(scripts/services up feast)\"`, then `cargo test -- --include-ignored`"]
fn feature_services_follow_the_view_and_leave_with_the_spec() {
    let s = Store::new();
    let service = format!("{}_online", s.view_name());
    let with = |extra: &str| {
        let spec = s.env.read("mlops.yaml");
        let spec = spec.replace("    ttl: 24h\n", &format!("    ttl: 24h\n{extra}"));
        s.env.write("mlops.yaml", &spec);
        s.env.commit("services");
    };
    with(&format!("    feature_services: [{service}]\n"));
    s.mlops(&["apply", "--auto-approve"]).ok();
    let served = |name: &str| {
        feast(&format!(
            "svcs = [x for x in store.list_feature_services() if x.name == {name:?}]\n\
             print(json.dumps([[p.name, sorted(f.name for f in p.features)] for p in svcs[0].feature_view_projections] if svcs else None))"
        ))
    };
    assert_eq!(served(&service), serde_json::json!([[s.view_name(), ["spend", "tenure"]]]));
    assert_eq!(s.mlops(&["plan", "--detailed-exitcode"]).status, 0, "no changes after apply");

    // Out of the spec: the service goes, the view stays.
    let spec = s.env.read("mlops.yaml").replace(&format!("    feature_services: [{service}]\n"), "");
    s.env.write("mlops.yaml", &spec);
    s.env.commit("no services");
    let plan = s.plan();
    assert_eq!(change(&plan, &format!("feature_stores.{}", s.name))["action"], "update");
    s.mlops(&["apply", "--auto-approve"]).ok();
    assert_eq!(served(&service), Value::Null);
    assert!(!view(&s.view_name()).is_null());
}

/// A registry server in TLS mode (as `feast serve_registry --key --cert` runs it), trusted through
/// the block's `ca_cert`: the same objects arrive, checked through Feast's SDK.
#[test]
#[ignore = "needs a Feast registry server: `eval \"$(scripts/services up feast)\"`, then `cargo test -- --include-ignored`"]
fn a_tls_registry_server_is_reached_with_the_blocks_ca_certificate() {
    let python = crate::common::service("MLOPS_TEST_FEAST_PYTHON", None, "feast");
    let repo = crate::common::service("MLOPS_TEST_FEAST_REPO", None, "feast");
    let s = Store::new();
    let dir = s.env.path();
    // A CA, and a server certificate it signs for 127.0.0.1.
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    for args in [
        "req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-ca -keyout ca-key.pem -out ca.pem",
        "req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout key.pem -out server.csr",
        "x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 1 -extfile ext.cnf -out cert.pem",
    ] {
        let out = Command::new("openssl").args(args.split(' ')).current_dir(dir).output().unwrap();
        assert!(out.status.success(), "openssl {args}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let feast_bin = std::path::Path::new(&python).with_file_name("feast");
    let mut server = Command::new(feast_bin)
        .args(["serve_registry", "--port", &port.to_string()])
        .args([
            "--key",
            &dir.join("key.pem").display().to_string(),
            "--cert",
            &dir.join("cert.pem").display().to_string(),
        ])
        .current_dir(&repo)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "the TLS registry server did not start");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let spec = s.env.read("mlops.yaml").replace(
        &format!("feast: {{ registry: {}, project: mlops }}", s.registry),
        &format!("feast: {{ registry: \"https://127.0.0.1:{port}\", ca_cert: ca.pem, project: mlops }}"),
    );
    s.env.write("mlops.yaml", &spec);
    s.env.commit("tls");
    let run = s.mlops(&["apply", "--auto-approve"]);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(view(&s.view_name())["join_key"], "customer_id");
}

/// `mlops rollback` re-applies a feature view's recorded definition (checked through Feast's SDK):
/// a feature added since goes again, the TTL comes back, and the plan says the stored records are
/// not restored; a rollback across an entity key change is a replacement, refused without
/// `--allow-data-loss` as a forward one is.
#[test]
#[ignore = "needs a Feast registry server: `eval \"$(scripts/services up feast)\"`, then `cargo test -- --include-ignored`"]
fn a_rollback_reapplies_the_recorded_definition_and_says_records_stay() {
    let s = Store::new();
    s.mlops(&["apply", "--auto-approve"]).ok();
    let v1 = s.env.lineage("fs")[0].clone();
    let at_v1 = view(&s.view_name());
    let spec = s
        .env
        .read("mlops.yaml")
        .replace("ttl: 24h", "ttl: 48h")
        .replace("spend: fractional", "spend: fractional, churn_score: fractional");
    s.env.write("mlops.yaml", &spec);
    s.env.commit("v2");
    s.mlops(&["apply", "--auto-approve"]).ok();
    assert_eq!(view(&s.view_name())["features"]["churn_score"], "Float64");
    assert_eq!(view(&s.view_name())["ttl"], 172800.0);

    let run = s.mlops(&["rollback", &v1, "--out", "rb.json"]).ok();
    assert!(run.stdout.contains("the stored feature records are not restored"), "{}", run.stdout);
    s.mlops(&["apply", "rb.json"]).ok();
    assert_eq!(view(&s.view_name()), at_v1, "the view is defined as it was at v1");
    let state =
        |at: &str| -> Value { serde_json::from_str(&s.mlops(&["state", "--at", at, "--json"]).ok().stdout).unwrap() };
    let attributes = |st: &Value| st["resources"][0]["record"]["attributes"].clone();
    assert_eq!(attributes(&state("now")), attributes(&state(&v1)));

    // Back across an entity key change: the rows become unreachable, so the flag is needed.
    s.write("account_id: string, event_time: string, tenure: integral, spend: fractional", "account_id");
    s.mlops(&["apply", "--auto-approve", "--allow-data-loss"]).ok();
    s.mlops(&["rollback", &v1, "--out", "back.json"]).ok();
    let refused = s.mlops(&["apply", "back.json"]);
    assert_eq!(refused.status, 1, "{}{}", refused.stdout, refused.stderr);
    assert_eq!(view(&s.view_name())["join_key"], "account_id", "nothing changed");
    s.mlops(&["apply", "back.json", "--allow-data-loss"]).ok();
    assert_eq!(view(&s.view_name())["join_key"], "customer_id");
}
