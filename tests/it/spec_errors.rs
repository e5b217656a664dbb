//! Invalid specs: each gives its stable code at the right line, all errors at once, no panic.

use mlops::registry::Registry;
use mlops::spec::{self, SpecDiagnostic};

const VALID_HEAD: &str = "version: 1\nproject: demo\nproviders:\n  local: {}\n";

fn errors_of(src: &[u8]) -> Vec<SpecDiagnostic> {
    let env = |k: &str| (k == "PRESENT").then(|| "value".to_string());
    let dir = tempfile::tempdir().unwrap();
    match spec::load_bytes(
        &dir.path().join("mlops.yaml"),
        "mlops.yaml",
        src,
        &env,
        &Registry::builtin(),
        &Default::default(),
    ) {
        Ok(_) => vec![],
        Err(d) => d,
    }
}

/// (code, line) of every diagnostic.
fn codes(src: &str) -> Vec<(&'static str, usize)> {
    errors_of(src.as_bytes())
        .iter()
        .map(|d| (&*Box::leak(d.code.to_string().into_boxed_str()), d.location().map(|l| l.1).unwrap_or(0)))
        .collect()
}

#[track_caller]
fn expect(src: &str, code: &'static str, line: usize) {
    let got = codes(src);
    assert!(got.contains(&(code, line)), "expected {code} at line {line}, got {got:?}\n---\n{src}");
}

#[test]
fn unknown_field_with_suggestion() {
    let src = format!(
        "{VALID_HEAD}endpoints:\n  api:\n    model: models.m\n    instnace_type: x\nmodels:\n  m: {{artifact: a}}\n"
    );
    expect(&src, "spec::unknown_field", 8);
    let d = errors_of(src.as_bytes());
    assert_eq!(d[0].help.as_deref(), Some("did you mean `instance_type`?"));
}

#[test]
fn unknown_top_level_field() {
    expect(&format!("{VALID_HEAD}modles: {{}}\n"), "spec::unknown_field", 5);
}

#[test]
fn missing_required_field() {
    expect(&format!("{VALID_HEAD}models:\n  m:\n    framework: x\n"), "spec::missing_field", 6);
}

#[test]
fn wrong_type() {
    expect(
        &format!(
            "{VALID_HEAD}models:\n  m: {{artifact: a}}\nendpoints:\n  e:\n    model: models.m\n    instance_count: many\n"
        ),
        "spec::type_mismatch",
        10,
    );
}

#[test]
fn out_of_range() {
    expect(
        &format!(
            "{VALID_HEAD}models:\n  m: {{artifact: a}}\nendpoints:\n  e:\n    model: models.m\n    traffic: {{canary_percent: 150}}\n"
        ),
        "spec::invalid_value",
        10,
    );
}

#[test]
fn bad_enum_value() {
    expect(
        &format!("{VALID_HEAD}models:\n  m:\n    artifact: a\n    registry: {{group: g, approval: Maybe}}\n"),
        "spec::invalid_value",
        8,
    );
}

#[test]
fn unsupported_version() {
    expect("version: 2\nproject: demo\n", "spec::unsupported_version", 1);
}

#[test]
fn invalid_project_name() {
    expect("version: 1\nproject: Not Valid\n", "spec::invalid_value", 2);
}

#[test]
fn unknown_reference_with_suggestion() {
    let src = format!("{VALID_HEAD}models:\n  churn:\n    artifact: a\nendpoints:\n  api:\n    model: models.chrun\n");
    expect(&src, "spec::unknown_reference", 10);
    assert_eq!(errors_of(src.as_bytes())[0].help.as_deref(), Some("did you mean `models.churn`?"));
}

#[test]
fn reference_of_the_wrong_kind() {
    expect(
        &format!("{VALID_HEAD}models:\n  m:\n    artifact: a\n    trained_on: [models.m]\n"),
        "spec::invalid_reference",
        8,
    );
}

#[test]
fn malformed_reference() {
    expect(
        &format!("{VALID_HEAD}models:\n  m:\n    artifact: a\n    trained_on: [churn]\n"),
        "spec::invalid_reference",
        8,
    );
}

#[test]
fn dependency_cycle() {
    let src = format!(
        "{VALID_HEAD}datasets:\n  a:\n    depends_on: [datasets.b]\n  b:\n    depends_on: [datasets.c]\n  c:\n    depends_on: [datasets.a]\n"
    );
    let d = errors_of(src.as_bytes());
    assert_eq!(d.len(), 1, "one cycle, reported once: {d:?}");
    assert_eq!(d[0].code, "spec::cycle");
    assert_eq!(d[0].message, "dependency cycle: datasets.a → datasets.b → datasets.c → datasets.a");
    assert_eq!(d[0].labels.len(), 3);
    assert_eq!(d[0].location().unwrap().1, 7);
}

#[test]
fn self_reference() {
    expect(&format!("{VALID_HEAD}datasets:\n  a:\n    depends_on: [datasets.a]\n"), "spec::cycle", 7);
}

#[test]
fn duplicate_name() {
    let src = format!("{VALID_HEAD}datasets:\n  a: {{}}\n  b: {{}}\n  a: {{}}\n");
    expect(&src, "spec::duplicate_name", 8);
    let d = &errors_of(src.as_bytes())[0];
    assert_eq!(d.labels.len(), 2, "points at both declarations");
}

#[test]
fn provider_not_configured() {
    expect(&format!("{VALID_HEAD}datasets:\n  a:\n    provider: gcp\n"), "spec::provider_not_configured", 7);
}

#[test]
fn dataset_uri_implies_an_unconfigured_provider() {
    expect(&format!("{VALID_HEAD}datasets:\n  a:\n    uri: s3://bucket/a/\n"), "spec::provider_not_configured", 6);
}

#[test]
fn name_invalid_for_the_local_provider() {
    expect(&format!("{VALID_HEAD}datasets:\n  Churn.Train: {{}}\n"), "spec::invalid_name", 6);
}

#[test]
fn name_invalid_everywhere() {
    expect(&format!("{VALID_HEAD}datasets:\n  -bad: {{}}\n"), "spec::invalid_name", 6);
}

#[test]
fn feature_not_declared() {
    expect(
        &format!(
            "{VALID_HEAD}feature_stores:\n  c:\n    record_identifier: id\n    event_time: ts\n    features: {{id: string}}\n"
        ),
        "spec::feature_not_declared",
        8,
    );
}

#[test]
fn undefined_env_var() {
    expect(&format!("{VALID_HEAD}datasets:\n  a:\n    description: ${{env:MISSING}}\n"), "spec::undefined_env_var", 7);
}

#[test]
fn env_interpolation_and_defaults_work() {
    let src = format!(
        "{VALID_HEAD}datasets:\n  a:\n    description: \"${{env:PRESENT}}-${{env:ABSENT:-fallback}}-$${{literal}}\"\n"
    );
    let env = |k: &str| (k == "PRESENT").then(|| "value".to_string());
    let dir = tempfile::tempdir().unwrap();
    let s = spec::load_bytes(
        &dir.path().join("m.yaml"),
        "m.yaml",
        src.as_bytes(),
        &env,
        &Registry::builtin(),
        &Default::default(),
    )
    .unwrap();
    let a: mlops::provider::Address = "datasets.a".parse().unwrap();
    assert_eq!(s.resource(&a).unwrap().config.body["description"], "value-fallback-${literal}");
}

#[test]
fn yaml_syntax_error() {
    expect("version: 1\nproject: [unclosed\n", "spec::syntax", 2);
}

#[test]
fn empty_file() {
    assert_eq!(codes(""), [("spec::empty", 0)]);
    assert_eq!(codes("# only a comment\n"), [("spec::empty", 0)]);
}

#[test]
fn binary_garbage() {
    let d = errors_of(&[0x76, 0x3a, 0x20, 0xff, 0xfe, 0x00, 0x81]);
    assert_eq!(d[0].code, "spec::not_utf8");
    let d = errors_of(b"\x00\x01\x02\x03 garbage");
    assert!(!d.is_empty());
}

#[test]
fn not_a_mapping() {
    expect("- a\n- b\n", "spec::not_a_mapping", 1);
}

#[test]
fn alias_bomb_fails_fast() {
    let mut src = String::from("version: 1\nproject: demo\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..15 {
        let p = i - 1;
        src.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
    }
    let started = std::time::Instant::now();
    let d = errors_of(src.as_bytes());
    assert!(!d.is_empty());
    assert!(matches!(&*d[0].code, "spec::limit_exceeded" | "spec::syntax"), "{:?}", d[0]);
    assert!(started.elapsed().as_secs() < 10, "no hang");
}

#[test]
fn deep_nesting_fails_cleanly() {
    let src = format!("version: 1\nproject: demo\nx: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let d = errors_of(src.as_bytes());
    assert!(!d.is_empty());
    let mut block = String::from("version: 1\nproject: demo\n");
    for i in 0..1000 {
        block.push_str(&" ".repeat(i));
        block.push_str("k:\n");
    }
    assert!(!errors_of(block.as_bytes()).is_empty());
}

#[test]
fn huge_input_is_refused_without_parsing() {
    let big = vec![b'#'; 33 * 1024 * 1024];
    assert_eq!(errors_of(&big)[0].code, "spec::too_large");
}

#[test]
fn every_error_is_reported_at_once() {
    let src = format!(
        "{VALID_HEAD}datasets:\n  a:\n    sorce: ./x\nmodels:\n  m:\n    artifact: a\n    trained_on: [datasets.nope]\n  n:\n    artfact: b\n"
    );
    let got = codes(&src);
    assert!(got.contains(&("spec::unknown_field", 7)), "{got:?}");
    assert!(got.contains(&("spec::unknown_field", 13)), "{got:?}");
    assert!(got.contains(&("spec::missing_field", 12)), "{got:?}");
}

#[test]
fn validate_cli_exit_code_and_json() {
    let env = crate::common::TestEnv::new();
    env.write("mlops.yaml", &format!("{VALID_HEAD}datasets:\n  a:\n    sorce: ./x\n"));
    let run = env.mlops(&["validate"]);
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("spec::unknown_field"), "{}", run.stderr);
    assert!(run.stderr.contains("mlops.yaml:7:5"), "{}", run.stderr);
    assert!(run.stderr.contains("did you mean `source`?"), "{}", run.stderr);
    let json = env.mlops(&["validate", "--json"]);
    assert_eq!(json.status, 1);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["diagnostics"][0]["code"], "spec::unknown_field");
    assert_eq!(v["diagnostics"][0]["line"], 7);
    assert_eq!(v["diagnostics"][0]["column"], 5);
}

#[test]
fn fuzzed_bytes_never_panic() {
    use proptest::prelude::*;
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases: 256, ..ProptestConfig::default() });
    let seed = format!(
        "{VALID_HEAD}datasets:\n  a: {{source: ./x}}\nmodels:\n  m: {{artifact: a, trained_on: [datasets.a]}}\n"
    );
    runner
        .run(&(proptest::collection::vec(any::<u8>(), 0..64), 0..seed.len()), |(noise, at)| {
            let mut bytes = seed.as_bytes().to_vec();
            bytes.splice(at..at, noise);
            let _ = errors_of(&bytes);
            Ok(())
        })
        .unwrap();
}

#[cfg(all(feature = "kubernetes", feature = "gcp"))]
#[test]
fn autoscaling_a_provider_cannot_honour_is_refused_at_its_line() {
    let env = crate::common::TestEnv::new();
    env.write(
        "mlops.yaml",
        "version: 1\nproject: k8s\nproviders:\n  gcp: { project: test }\n  kubernetes: { namespace: default }\n\
         models:\n  m: { artifact: gs://b/m.bst, framework: xgboost }\nendpoints:\n  api:\n    \
         runtime: deployment\n    model: models.m\n    image: img:1\n    \
         autoscaling: { min: 1, max: 3, target: { metric: concurrency, value: 10 } }\n  \
         isvc:\n    runtime: kserve\n    model: models.m\n    \
         autoscaling: { min: 4, max: 2, target: { metric: cpu, value: 50 }, scale_in_cooldown: 1m }\n",
    );
    let run = env.mlops(&["validate"]);
    assert_ne!(run.status, 0, "{}", run.stdout);
    let err = &run.stderr;
    assert!(err.contains("cannot track `concurrency`"), "{err}");
    assert!(err.contains("mlops.yaml:13:"), "the metric is marked at its line: {err}");
    assert!(err.contains("`autoscaling.max` (2) is below `autoscaling.min` (4)"), "{err}");
    assert!(err.contains("KServe has no cooldowns"), "{err}");
}

#[cfg(feature = "aws")]
#[test]
fn sagemaker_refuses_a_cpu_target_at_its_line() {
    let env = crate::common::TestEnv::new();
    env.write(
        "mlops.yaml",
        "version: 1\nproject: sm\nproviders:\n  aws: { region: us-east-1 }\nmodels:\n  \
         m: { artifact: s3://b/m.tar.gz, image: img, execution_role: arn:aws:iam::1:role/r }\nendpoints:\n  \
         e:\n    model: models.m\n    instance_type: ml.m5.large\n    \
         autoscaling: { min: 1, max: 2, target: { metric: cpu, value: 60 } }\n",
    );
    let run = env.mlops(&["validate"]);
    assert_ne!(run.status, 0, "{}", run.stdout);
    assert!(run.stderr.contains("SageMaker (Application Auto Scaling) cannot track `cpu`"), "{}", run.stderr);
    assert!(run.stderr.contains("mlops.yaml:11:"), "{}", run.stderr);
    assert!(run.stderr.contains("invocations_per_instance"), "the help names what it tracks: {}", run.stderr);
}

#[test]
fn autoscaling_on_the_local_provider_is_refused_not_ignored() {
    let env = crate::common::TestEnv::new();
    env.write("model.bin", "w");
    env.write(
        "mlops.yaml",
        "version: 1\nproject: p\nmodels:\n  m: { artifact: ./model.bin }\nendpoints:\n  e:\n    model: models.m\n    \
         autoscaling: { min: 1, max: 2, target: { metric: cpu, value: 60 } }\n",
    );
    let run = env.mlops(&["validate"]);
    assert_ne!(run.status, 0, "{}", run.stdout);
    assert!(run.stderr.contains("the local provider has no autoscaler"), "{}", run.stderr);
    assert!(run.stderr.contains("mlops.yaml:8:"), "{}", run.stderr);
}

#[test]
fn a_rollout_the_provider_cannot_drive_is_refused_at_its_line() {
    let env = crate::common::TestEnv::new();
    env.write("model.bin", "w");
    env.write(
        "mlops.yaml",
        "version: 1\nproject: p\nmodels:\n  m: { artifact: ./model.bin }\nendpoints:\n  e:\n    model: models.m\n    \
         rollout: { strategy: canary, step: { percent: 10, interval: 1m } }\n",
    );
    let run = env.mlops(&["validate"]);
    assert_ne!(run.status, 0, "{}", run.stdout);
    assert!(run.stderr.contains("the local provider cannot roll out step by step"), "{}", run.stderr);
    assert!(run.stderr.contains("mlops.yaml:8:"), "{}", run.stderr);
}

#[cfg(feature = "aws")]
#[test]
fn a_sagemaker_rollout_step_over_half_the_fleet_is_refused() {
    let env = crate::common::TestEnv::new();
    env.write(
        "mlops.yaml",
        "version: 1\nproject: sm\nproviders:\n  aws: { region: us-east-1 }\nmodels:\n  \
         m: { artifact: s3://b/m.tar.gz, image: img, execution_role: arn:aws:iam::1:role/r }\nendpoints:\n  \
         e:\n    model: models.m\n    instance_type: ml.m5.large\n    \
         rollout: { strategy: linear, step: { percent: 60, interval: 5m }, rollback: manual, alarms: [a] }\n",
    );
    let run = env.mlops(&["validate"]);
    assert_ne!(run.status, 0, "{}", run.stdout);
    assert!(run.stderr.contains("takes linear steps of 10 to 50 percent, not 60"), "{}", run.stderr);
    assert!(run.stderr.contains("`rollback: manual` with `alarms`"), "{}", run.stderr);
    // SageMaker's linear steps are at least a tenth of the fleet; a canary may be smaller.
    let spec = env.read("mlops.yaml").replace("percent: 60", "percent: 5");
    env.write("mlops.yaml", &spec);
    let run = env.mlops(&["validate"]);
    assert!(run.stderr.contains("takes linear steps of 10 to 50 percent, not 5"), "{}", run.stderr);
    let canary = spec.replace("strategy: linear", "strategy: canary").replace(", rollback: manual", "");
    env.write("mlops.yaml", &canary.replace("s3://b/", "s3://models-bucket/"));
    env.mlops(&["validate"]).ok();
}

// The provider modules hold only tests that need their service (tests/it/skips.rs checks it):
// these spec checks need none.

#[cfg(feature = "mlflow")]
#[test]
fn a_bad_tracking_uri_or_alias_is_refused_at_its_line() {
    let env = crate::common::TestEnv::new();
    env.write("model.pkl", "x");
    env.write(
        "mlops.yaml",
        "version: 1\nproject: reg\nproviders:\n  mlflow: { tracking_uri: mlflow.internal:5000 }\n\
         models:\n  m:\n    provider: mlflow\n    artifact: ./model.pkl\n    aliases: [v2]\n",
    );
    let run = env.mlops(&["validate"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("`tracking_uri` must be an http:// or https://"), "{}", run.stderr);
    assert!(run.stderr.contains("mlops.yaml:4:"), "{}", run.stderr);
    // With a good address, the alias `v2` (it names a version) is refused with the provider's code.
    let spec = env.read("mlops.yaml").replace("mlflow.internal:5000", "http://mlflow.internal:5000");
    env.write("mlops.yaml", &spec);
    let run = env.mlops(&["validate"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("mlflow::invalid_alias"), "{}", run.stderr);
    assert!(run.stderr.contains("mlops.yaml:9:"), "{}", run.stderr);
}

#[cfg(feature = "feast")]
#[test]
fn a_feature_store_on_feast_needs_a_source_and_a_duration_ttl() {
    let env = crate::common::TestEnv::new();
    let spec = |ttl: &str| {
        format!(
            "version: 1\nproject: fs\nproviders:\n  feast: {{ registry: 127.0.0.1:1 }}\n\
             feature_stores:\n  churn:\n    provider: feast\n    record_identifier: id\n    event_time: ts\n\
             \x20   features: {{ id: string, ts: string, x: integral }}\n    ttl: {ttl}\n"
        )
    };
    env.write("mlops.yaml", &spec("1d"));
    let run = env.mlops(&["validate"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("mlops.yaml:11:"), "the ttl is marked at its line: {}", run.stderr);
    env.write("mlops.yaml", &spec("24h"));
    let run = env.mlops(&["validate"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("needs a data source on Feast"), "{}", run.stderr);
    assert!(run.stderr.contains("feast::no_source"), "the provider's own code is kept: {}", run.stderr);
}

#[test]
#[cfg(feature = "mlflow")]
fn a_kind_the_provider_does_not_serve_is_refused_at_its_provider_line() {
    let src = "version: 1\nproject: demo\nproviders:\n  mlflow: { tracking_uri: \"http://127.0.0.1:9\" }\ndatasets:\n  train:\n    provider: mlflow\n    source: ./data\n";
    expect(src, "spec::kind_not_served", 7);
    let d = errors_of(src.as_bytes());
    assert!(d[0].message.contains("the mlflow provider does not serve datasets"), "{}", d[0].message);
}

#[test]
fn a_training_run_no_configured_provider_reads_is_refused_at_its_line() {
    let env = crate::common::TestEnv::new();
    env.write("model/model.bin", "weights");
    let mut cases =
        vec![("wandb://runs/churn", "no provider of this build reads the training run `wandb://runs/churn`")];
    if cfg!(feature = "dagster") {
        cases.push(("dagster://churn/model", "add `dagster: {}` under `providers:`"));
    }
    if cfg!(feature = "mlflow") {
        cases.push(("mlflow://runs/abc123", "add `mlflow: {}` under `providers:`"));
    }
    for (reference, says) in cases {
        env.write(
            "mlops.yaml",
            &format!(
                "version: 1\nproject: runs\nproviders:\n  local: {{ root: .mlops/local }}\n\
                 models:\n  churn:\n    artifact: ./model/model.bin\n    produced_by: {reference}\n"
            ),
        );
        let refused = env.mlops(&["plan"]);
        assert_eq!(refused.status, 1, "{reference}: {}{}", refused.stdout, refused.stderr);
        let text = crate::common::flat(&refused.stderr);
        assert!(text.contains(says), "{reference}: {text}");
        assert!(text.contains("mlops.yaml:8"), "at the line: {text}");
    }
}

/// A DVC pointer is read by the aws provider only, and a DVC dataset has no `uri` of its own.
#[cfg(feature = "aws")]
#[test]
fn a_dvc_source_on_a_provider_that_cannot_read_it_or_with_a_uri_is_refused_at_its_line() {
    let env = crate::common::TestEnv::new();
    env.write(
        "mlops.yaml",
        "version: 1\nproject: dvc\nproviders:\n  aws: { region: us-east-1 }\n  local: {}\ndatasets:\n  train:\n    \
         provider: local\n    source: dvc://data/train.csv.dvc\n  images:\n    provider: aws\n    source: dvc://data/images.dvc\n    uri: s3://x-bucket/images/\n",
    );
    let run = env.mlops(&["validate"]);
    assert_eq!(run.status, 1, "{}", run.stderr);
    let text = crate::common::flat(&run.stderr);
    assert!(text.contains("the local provider does not read DVC remotes"), "{text}");
    assert!(text.contains("`uri` is for a dataset mlops uploads"), "{text}");
    assert!(run.stderr.contains("mlops.yaml:9:") && run.stderr.contains("mlops.yaml:13:"), "{}", run.stderr);
}
