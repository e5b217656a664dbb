//! The AWS provider against moto (started by `scripts/services up aws`, which exports
//! AWS_ENDPOINT_URL and MLOPS_TEST_AWS), extended by scripts/moto_server.py with the SageMaker
//! actions moto lacks and an endpoint lifecycle (Creating → InService after 2 s, or Failed for
//! ml.p3.16xlarge). Checks go through the AWS SDK directly, not through mlops' own read path.
//! One server serves every test: names are unique per test.

use std::time::{Duration, Instant};

use mlops_provider_aws::sdk::{aws_config, aws_sdk_s3, aws_sdk_sagemaker};
use serde_json::{Value, json};

use crate::common::{TestEnv, change, paths};
use crate::gcp::unique;

pub(crate) fn endpoint_url() -> String {
    crate::common::service("AWS_ENDPOINT_URL", Some("MLOPS_TEST_AWS"), "aws")
}

struct Sdk {
    rt: tokio::runtime::Runtime,
    s3: aws_sdk_s3::Client,
    sm: aws_sdk_sagemaker::Client,
}

impl Sdk {
    fn new(url: &str) -> Sdk {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let config = rt.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .endpoint_url(url)
                .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "static"))
                .load(),
        );
        let s3 =
            aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
        Sdk { rt, s3, sm: aws_sdk_sagemaker::Client::new(&config) }
    }

    fn bucket(&self, name: &str) {
        self.rt.block_on(self.s3.create_bucket().bucket(name).send()).unwrap();
        let v = aws_sdk_s3::types::VersioningConfiguration::builder()
            .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
            .build();
        self.rt.block_on(self.s3.put_bucket_versioning().bucket(name).versioning_configuration(v).send()).unwrap();
    }

    fn put(&self, bucket: &str, key: &str, body: &str) -> String {
        let out = self
            .rt
            .block_on(self.s3.put_object().bucket(bucket).key(key).body(body.as_bytes().to_vec().into()).send())
            .unwrap();
        out.version_id().unwrap_or_default().to_string()
    }

    fn model_exists(&self, name: &str) -> bool {
        self.rt.block_on(self.sm.describe_model().model_name(name).send()).is_ok()
    }

    fn config_exists(&self, name: &str) -> bool {
        self.rt.block_on(self.sm.describe_endpoint_config().endpoint_config_name(name).send()).is_ok()
    }

    fn endpoint(&self, name: &str) -> aws_sdk_sagemaker::operation::describe_endpoint::DescribeEndpointOutput {
        self.rt.block_on(self.sm.describe_endpoint().endpoint_name(name).send()).unwrap()
    }

    fn config_models(&self, config: &str) -> Vec<String> {
        let c = self.rt.block_on(self.sm.describe_endpoint_config().endpoint_config_name(config).send()).unwrap();
        c.production_variants().iter().map(|v| v.model_name().unwrap_or_default().to_string()).collect()
    }

    fn wait_in_service(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.endpoint(name).endpoint_status().map(|s| s.as_str()) != Some("InService") {
            assert!(Instant::now() < deadline, "{name} never became InService");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

struct Aws {
    env: TestEnv,
    sdk: Sdk,
    url: String,
    /// A suffix that makes this test's names unique on the shared server.
    sfx: String,
}

const ROLE: &str = "arn:aws:iam::123456789012:role/sagemaker";
const IMAGE: &str = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1";

impl Aws {
    fn new() -> Aws {
        let url = endpoint_url();
        let sdk = Sdk::new(&url);
        let sfx = unique("t").replace('-', "").chars().rev().take(12).collect::<String>();
        let models = format!("models-{sfx}");
        sdk.bucket(&models);
        sdk.put(&models, "churn/model.tar.gz", "xgboost weights v1");
        sdk.put(&models, "churn-v2/model.tar.gz", "xgboost weights v2");
        let env = TestEnv::new();
        env.write("data/a.csv", "id,x\n1,2\n");
        env.write("data/b.csv", "id,x\n3,4\n");
        env.write(
            "mlops.yaml",
            &format!(
                r#"version: 1
project: sm
images: {{ pin: tag }}
providers:
  aws: {{ region: us-east-1 }}
datasets:
  train:
    uri: s3://data-{sfx}/churn/train/
    source: ./data
models:
  churn:
    artifact: s3://{models}/churn/model.tar.gz
    image: {IMAGE}
    execution_role: {ROLE}
    framework: xgboost
    trained_on: [datasets.train]
    registry: {{ group: churn-{sfx}, approval: PendingManualApproval }}
  churn-v2:
    artifact: s3://{models}/churn-v2/model.tar.gz
    image: {IMAGE}
    execution_role: {ROLE}
endpoints:
  api-{sfx}:
    model: models.churn
    instance_type: ml.m5.large
    variants:
      - {{ name: blue, instance_count: 2, weight: 90 }}
      - {{ name: green, model: models.churn-v2, weight: 10 }}
    wait_timeout: 30s
feature_stores:
  customers-{sfx}:
    record_identifier: customer_id
    event_time: event_time
    features: {{ customer_id: string, event_time: fractional, tenure: integral }}
    offline_uri: s3://features-{sfx}/customers
    execution_role: {ROLE}
"#
            ),
        );
        env.commit("sagemaker stack");
        Aws { env, sdk, url, sfx }
    }

    fn mlops(&self, args: &[&str]) -> crate::common::Run {
        self.env.mlops_env(
            args,
            &[
                ("AWS_ENDPOINT_URL", &self.url),
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
                ("AWS_REGION", "us-east-1"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ],
        )
    }

    /// Returns once SageMaker (moto) reports the stack's endpoint Creating.
    fn wait_until_endpoint_creating(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let creating = self
                .sdk
                .rt
                .block_on(self.sdk.sm.describe_endpoint().endpoint_name(self.endpoint()).send())
                .is_ok_and(|e| e.endpoint_status().map(|s| s.as_str()) == Some("Creating"));
            if creating {
                return;
            }
            assert!(Instant::now() < deadline, "the endpoint never started creating");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `mlops ARGS` started (not waited for) against `url`, its output piped.
    fn spawn(&self, url: &str, args: &[&str]) -> std::process::Child {
        std::process::Command::new(env!("CARGO_BIN_EXE_mlops"))
            .current_dir(self.env.path())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.env.path())
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("NO_COLOR", "1")
            .env("AWS_ENDPOINT_URL", url)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn edit_spec(&self, from: &str, to: &str) {
        let spec = self.env.read("mlops.yaml");
        assert!(spec.contains(from), "{from:?} not in the spec");
        self.env.write("mlops.yaml", &spec.replace(from, to));
        self.env.commit("edit");
    }

    fn plan_json(&self) -> Value {
        let run = self.mlops(&["plan", "--json"]).ok();
        serde_json::from_str(&run.stdout).unwrap()
    }

    fn record(&self, address: &str) -> Value {
        let (kind, name) = address.split_once('.').unwrap();
        serde_json::from_str(
            &self.env.git(&["show", &format!("refs/mlops/lineage/sm/default:resources/{kind}/{name}.json")]),
        )
        .unwrap()
    }

    fn endpoint(&self) -> String {
        format!("api-{}", self.sfx)
    }
}

#[test]
#[ignore = "needs moto: `eval \"$(scripts/services up aws gcp)\"`, then `cargo test -- --include-ignored`"]
fn apply_creates_every_resource_then_nothing_to_do() {
    let a = Aws::new();
    let run = a.mlops(&["apply", "--auto-approve"]).ok();
    assert!(run.stdout.contains("Apply complete! Resources: 5 added"), "{}", run.stdout);

    // S3: the objects, versioned.
    let listed = a.sdk.rt.block_on(a.sdk.s3.list_object_versions().bucket(format!("data-{}", a.sfx)).send()).unwrap();
    let keys: Vec<&str> = listed.versions().iter().map(|v| v.key().unwrap()).collect();
    assert_eq!(keys, ["churn/train/a.csv", "churn/train/b.csv"]);
    assert!(listed.versions().iter().all(|v| v.version_id().is_some_and(|id| id != "null")), "versioned");
    let ds = a.record("datasets.train");
    assert_eq!(ds["outputs"]["version_ids"]["a.csv"], json!(listed.versions()[0].version_id().unwrap()));

    // SageMaker model, registry version, tags.
    let model = a.record("models.churn");
    let name = model["outputs"]["model_name"].as_str().unwrap();
    let m = a.sdk.rt.block_on(a.sdk.sm.describe_model().model_name(name).send()).unwrap();
    assert_eq!(m.primary_container().unwrap().image(), Some(IMAGE));
    assert_eq!(m.execution_role_arn(), Some(ROLE));
    let tags = a.sdk.rt.block_on(a.sdk.sm.list_tags().resource_arn(m.model_arn().unwrap()).send()).unwrap();
    let tag = |k: &str| tags.tags().iter().find(|t| t.key() == Some(k)).and_then(|t| t.value()).map(str::to_string);
    assert_eq!(tag("mlops:project").as_deref(), Some("sm"));
    assert_eq!(tag("mlops:address").as_deref(), Some("models.churn"));
    let packages = a
        .sdk
        .rt
        .block_on(a.sdk.sm.list_model_packages().model_package_group_name(format!("churn-{}", a.sfx)).send())
        .unwrap();
    assert_eq!(packages.model_package_summary_list().len(), 1);
    assert_eq!(model["outputs"]["version"], 1, "the package version is in lineage");
    assert_eq!(model["inputs"]["datasets.train"], ds["outputs"]["version"]);

    // The endpoint, InService on a config with two weighted variants.
    let e = a.sdk.endpoint(&a.endpoint());
    assert_eq!(e.endpoint_status().unwrap().as_str(), "InService");
    let config = e.endpoint_config_name().unwrap();
    let v2 = a.record("models.churn-v2")["outputs"]["model_name"].as_str().unwrap().to_string();
    assert_eq!(a.sdk.config_models(config), [name.to_string(), v2]);
    let weights: Vec<(String, f32)> = e
        .production_variants()
        .iter()
        .map(|v| (v.variant_name().unwrap().to_string(), v.current_weight().unwrap()))
        .collect();
    assert_eq!(weights, [("blue".to_string(), 90.0), ("green".to_string(), 10.0)]);

    // The feature group.
    let fg = a
        .sdk
        .rt
        .block_on(a.sdk.sm.describe_feature_group().feature_group_name(format!("customers-{}", a.sfx)).send())
        .unwrap();
    assert_eq!(fg.record_identifier_feature_name(), Some("customer_id"));
    assert_eq!(fg.feature_definitions().len(), 3);

    let plan = a.mlops(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status, 0, "{}{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("No changes."), "{}", plan.stdout);
}

#[test]
#[ignore = "needs moto: `eval \"$(scripts/services up aws gcp)\"`, then `cargo test -- --include-ignored`"]
fn a_model_image_change_replaces_it_and_the_endpoint_moves_before_the_old_one_goes() {
    let a = Aws::new();
    a.mlops(&["apply", "--auto-approve"]).ok();
    let old_model = a.record("models.churn")["outputs"]["model_name"].as_str().unwrap().to_string();
    let old_config = a.sdk.endpoint(&a.endpoint()).endpoint_config_name().unwrap().to_string();
    // Only churn's image changes (churn-v2 keeps the old one).
    a.edit_spec(
        &format!("    image: {IMAGE}\n    execution_role: {ROLE}\n    framework: xgboost"),
        &format!("    image: {IMAGE}-patched\n    execution_role: {ROLE}\n    framework: xgboost"),
    );
    let plan = a.plan_json();
    let m = change(&plan, "models.churn");
    assert_eq!(m["action"], "replace");
    assert!(m["replace_reasons"].as_array().unwrap().contains(&json!("image")), "{m}");
    let e = change(&plan, &format!("endpoints.{}", a.endpoint()));
    assert_eq!(e["action"], "update");
    assert!(paths(e).contains(&"config_name".to_string()), "{e}");

    let run = a.mlops(&["apply", "--auto-approve"]).ok();
    let out = &run.stdout;
    let serves = out.find(&format!("endpoint {} serves", a.endpoint())).expect("switched");
    let old_config_gone = out.find(&format!("deleted endpoint config {old_config}")).expect("old config deleted");
    let old_model_gone = out.find(&format!("deleted SageMaker model {old_model}")).expect("old model deleted");
    assert!(serves < old_config_gone && serves < old_model_gone, "switch first, then delete:\n{out}");
    let new_model = a.record("models.churn")["outputs"]["model_name"].as_str().unwrap().to_string();
    assert_ne!(new_model, old_model);
    assert!(!a.sdk.model_exists(&old_model), "old model deleted");
    assert!(!a.sdk.config_exists(&old_config), "old config deleted");
    let config = a.sdk.endpoint(&a.endpoint()).endpoint_config_name().unwrap().to_string();
    assert_eq!(a.sdk.config_models(&config)[0], new_model);
    assert!(a.record("models.churn")["outputs"].get("deposed").is_none(), "nothing left behind on record");
    // A new registry version for the new model.
    assert_eq!(a.record("models.churn")["outputs"]["version"], 2);
    let plan = a.mlops(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status, 0, "{}{}", plan.stdout, plan.stderr);
}

#[test]
#[ignore = "needs moto: `eval \"$(scripts/services up aws gcp)\"`, then `cargo test -- --include-ignored`"]
fn a_weights_only_change_updates_in_place_without_a_new_config() {
    let a = Aws::new();
    a.mlops(&["apply", "--auto-approve"]).ok();
    let config = a.sdk.endpoint(&a.endpoint()).endpoint_config_name().unwrap().to_string();
    let configs = || {
        let out = a.sdk.rt.block_on(a.sdk.sm.list_endpoint_configs().name_contains(a.endpoint()).send()).unwrap();
        out.endpoint_configs().iter().map(|c| c.endpoint_config_name().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(configs(), std::slice::from_ref(&config));
    a.edit_spec("instance_count: 2, weight: 90", "instance_count: 3, weight: 70");
    a.edit_spec("model: models.churn-v2, weight: 10", "model: models.churn-v2, weight: 30");
    let plan = a.plan_json();
    let e = change(&plan, &format!("endpoints.{}", a.endpoint()));
    assert_eq!(e["action"], "update");
    assert_eq!(paths(e), ["capacity.blue", "weights.blue", "weights.green"]);
    let tags: Vec<&str> = e["tags"].as_array().unwrap().iter().map(|t| t["tag"].as_str().unwrap()).collect();
    assert!(tags.contains(&"traffic-shift"), "{tags:?}");
    let run = a.mlops(&["apply", "--auto-approve"]).ok();
    assert!(run.stdout.contains("in place (no new config)"), "{}", run.stdout);
    let ep = a.sdk.endpoint(&a.endpoint());
    assert_eq!(ep.endpoint_config_name(), Some(config.as_str()), "same config");
    assert_eq!(configs(), std::slice::from_ref(&config), "no config created");
    let blue = ep.production_variants().iter().find(|v| v.variant_name() == Some("blue")).unwrap();
    assert_eq!((blue.current_weight(), blue.current_instance_count()), (Some(70.0), Some(3)));
}

#[test]
#[ignore = "needs moto: `eval \"$(scripts/services up aws gcp)\"`, then `cargo test -- --include-ignored`"]
fn an_endpoint_that_fails_reports_the_reason_records_partial_and_the_next_plan_shows_what_is_left() {
    let a = Aws::new();
    // No capacity for this instance type (the launcher's stand-in for AWS capacity errors).
    a.edit_spec("    instance_type: ml.m5.large\n", "    instance_type: ml.p3.16xlarge\n");
    let run = a.mlops(&["apply", "--auto-approve"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(out.contains("is Failed: Unable to provision requested ML compute capacity"), "{out}");
    let log = a.env.git(&["log", "-1", "--format=%B", "refs/mlops/lineage/sm/default"]);
    assert!(log.contains("Result: partial"), "{log}");
    assert!(log.contains(&format!("! endpoints.{}: failed (failed)", a.endpoint())), "{log}");
    let rec = a.record(&format!("endpoints.{}", a.endpoint()));
    assert_eq!(rec["attributes"]["status"], "Failed");
    assert!(rec["outputs"]["failure_reason"].as_str().unwrap().contains("capacity"), "{rec}");
    // Everything else is applied; the endpoint must be recreated (a Failed endpoint cannot be updated).
    let plan = a.plan_json();
    assert_eq!(plan["summary"]["no_op"], 4, "{}", plan["summary"]);
    let e = change(&plan, &format!("endpoints.{}", a.endpoint()));
    assert_eq!(e["action"], "replace");
    assert_eq!(e["replace_reasons"], json!(["status"]));
    // With capacity that exists, the next apply finishes the job.
    a.edit_spec("    instance_type: ml.p3.16xlarge\n", "    instance_type: ml.m5.large\n");
    a.mlops(&["apply", "--auto-approve"]).ok();
    assert_eq!(a.sdk.endpoint(&a.endpoint()).endpoint_status().unwrap().as_str(), "InService");
}

#[test]
#[ignore = "needs moto: `eval \"$(scripts/services up aws gcp)\"`, then `cargo test -- --include-ignored`"]
fn a_wait_longer_than_its_timeout_is_a_clear_error_recorded() {
    let a = Aws::new();
    a.edit_spec("wait_timeout: 30s", "wait_timeout: 1s");
    let started = Instant::now();
    let run = a.mlops(&["apply", "--auto-approve"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(started.elapsed() < Duration::from_secs(30));
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(out.contains(&format!("endpoint {} was still Creating after 1s (wait_timeout)", a.endpoint())), "{out}");
    let rec = a.record(&format!("endpoints.{}", a.endpoint()));
    assert_eq!(rec["attributes"]["status"], "Creating", "recorded as it was");
    let log = a.env.git(&["log", "-1", "--format=%B", "refs/mlops/lineage/sm/default"]);
    assert!(log.contains("Result: partial"), "{log}");
    assert!(log.contains(&format!("! endpoints.{}: failed (timeout)", a.endpoint())), "{log}");
    // SageMaker goes on; once InService, nothing is left to change, the plan says it got there,
    // and lineage, still saying Creating, is behind until an apply records it.
    a.sdk.wait_in_service(&a.endpoint());
    let plan = a.mlops(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status, 2, "{}{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("~ status = \"Creating\" → \"InService\""), "{}", plan.stdout);
    assert!(plan.stdout.contains("Plan: 1 to record, nothing to change."), "{}", plan.stdout);
    a.mlops(&["apply", "--auto-approve"]).ok();
    assert_eq!(a.record(&format!("endpoints.{}", a.endpoint()))["attributes"]["status"], "InService");
    assert_eq!(a.mlops(&["plan", "--detailed-exitcode"]).status, 0);
}

#[test]
#[ignore = "needs moto: `eval \"$(scripts/services up aws gcp)\"`, then `cargo test -- --include-ignored`"]
fn a_feature_group_change_that_needs_a_replacement_is_refused_without_allow_data_loss() {
    let a = Aws::new();
    a.mlops(&["apply", "--auto-approve"]).ok();
    let fg = format!("customers-{}", a.sfx);
    // Adding a feature is in place.
    a.edit_spec("tenure: integral }", "tenure: integral, plan: string }");
    let plan = a.plan_json();
    let c = change(&plan, &format!("feature_stores.{fg}"));
    assert_eq!((c["action"].as_str(), c["data_destroying"].as_bool()), (Some("update"), Some(false)), "{c}");
    a.mlops(&["apply", "--auto-approve"]).ok();
    // A new record identifier needs a new group: the records go.
    a.edit_spec("record_identifier: customer_id", "record_identifier: plan");
    let plan = a.plan_json();
    let c = change(&plan, &format!("feature_stores.{fg}"));
    assert_eq!(c["action"], "replace");
    assert_eq!(c["data_destroying"], true);
    let refused = a.mlops(&["apply", "--auto-approve"]);
    assert_eq!(refused.status, 1, "{}{}", refused.stdout, refused.stderr);
    assert!(refused.stderr.contains("--allow-data-loss"), "{}", refused.stderr);
    let live = a.sdk.rt.block_on(a.sdk.sm.describe_feature_group().feature_group_name(&fg).send()).unwrap();
    assert_eq!(live.record_identifier_feature_name(), Some("customer_id"), "nothing changed");
    a.mlops(&["apply", "--auto-approve", "--allow-data-loss"]).ok();
    let live = a.sdk.rt.block_on(a.sdk.sm.describe_feature_group().feature_group_name(&fg).send()).unwrap();
    assert_eq!(live.record_identifier_feature_name(), Some("plan"));
}

#[test]
#[ignore = "needs moto: `eval \"$(scripts/services up aws gcp)\"`, then `cargo test -- --include-ignored`"]
fn changes_behind_our_back_are_drift() {
    let a = Aws::new();
    a.mlops(&["apply", "--auto-approve"]).ok();
    let old_version = a.record("datasets.train")["outputs"]["version_ids"]["a.csv"].clone();
    let new_version = a.sdk.put(&format!("data-{}", a.sfx), "churn/train/a.csv", "id,x\n9,9\n");
    let weights = aws_sdk_sagemaker::types::DesiredWeightAndCapacity::builder()
        .variant_name("green")
        .desired_weight(50.0)
        .desired_instance_count(1)
        .build();
    a.sdk
        .rt
        .block_on(
            a.sdk
                .sm
                .update_endpoint_weights_and_capacities()
                .endpoint_name(a.endpoint())
                .desired_weights_and_capacities(weights)
                .send(),
        )
        .unwrap();
    a.sdk.wait_in_service(&a.endpoint());
    let plan = a.plan_json();
    let drift = plan["drift"].as_array().unwrap();
    let ds = drift.iter().find(|d| d["address"] == "datasets.train").expect("dataset drift");
    let v = ds["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "versions[\"a.csv\"]")
        .expect("version drift");
    assert_eq!((v["before"].clone(), v["after"].clone()), (old_version, json!(new_version)));
    let ep = drift.iter().find(|d| d["address"] == format!("endpoints.{}", a.endpoint())).expect("endpoint drift");
    let w = ep["attributes"].as_array().unwrap().iter().find(|c| c["path"] == "weights.green").expect("weight drift");
    assert_eq!((w["before"].clone(), w["after"].clone()), (json!(10.0), json!(50.0)));
    // And the plan puts both back.
    assert_eq!(change(&plan, "datasets.train")["action"], "update");
    assert_eq!(paths(change(&plan, &format!("endpoints.{}", a.endpoint()))), ["weights.green"]);
}

#[test]
#[ignore = "needs moto: `eval \"$(scripts/services up aws gcp)\"`, then `cargo test -- --include-ignored`"]
fn import_adopts_an_existing_feature_group() {
    let a = Aws::new();
    let fg = format!("customers-{}", a.sfx);
    let defs = [("customer_id", "String"), ("event_time", "Fractional"), ("tenure", "Integral")]
        .map(|(n, t)| {
            aws_sdk_sagemaker::types::FeatureDefinition::builder()
                .feature_name(n)
                .feature_type(aws_sdk_sagemaker::types::FeatureType::from(t))
                .build()
        })
        .to_vec();
    let offline = aws_sdk_sagemaker::types::OfflineStoreConfig::builder()
        .s3_storage_config(
            aws_sdk_sagemaker::types::S3StorageConfig::builder()
                .s3_uri(format!("s3://features-{}/customers", a.sfx))
                .build(),
        )
        .build();
    a.sdk
        .rt
        .block_on(
            a.sdk
                .sm
                .create_feature_group()
                .feature_group_name(&fg)
                .record_identifier_feature_name("customer_id")
                .event_time_feature_name("event_time")
                .set_feature_definitions(Some(defs))
                .online_store_config(
                    aws_sdk_sagemaker::types::OnlineStoreConfig::builder().enable_online_store(true).build(),
                )
                .offline_store_config(offline)
                .role_arn(ROLE)
                .send(),
        )
        .unwrap();
    let before = a.plan_json();
    assert_eq!(change(&before, &format!("feature_stores.{fg}"))["action"], "no-op", "it matches, but is not recorded");
    let run = a.mlops(&["import", &format!("feature_stores.{fg}"), &fg]).ok();
    assert!(run.stdout.contains(&format!("Imported feature_stores.{fg}")), "{}", run.stdout);
    let rec = a.record(&format!("feature_stores.{fg}"));
    assert_eq!(rec["attributes"]["record_identifier"], "customer_id");
    let again = a.mlops(&["import", &format!("feature_stores.{fg}"), &fg]);
    assert_eq!(again.status, 1, "importing twice is refused");
    let missing = a.mlops(&["import", &format!("endpoints.{}", a.endpoint()), "gone"]);
    assert_eq!(missing.status, 1);
    assert!(missing.stderr.contains("SageMaker endpoint `gone` does not exist"), "{}", missing.stderr);
}

/// A moto of this test's own, to stop mid-run.
struct PrivateMoto {
    child: std::process::Child,
    url: String,
}

impl PrivateMoto {
    fn start() -> PrivateMoto {
        let python = crate::common::service("MLOPS_TEST_MOTO_PYTHON", None, "aws");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/moto_server.py");
        let child = std::process::Command::new(python)
            .arg(script)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_SAGEMAKER_ENDPOINT_DELAY", "3")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "private moto did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        PrivateMoto { child, url }
    }
}

impl Drop for PrivateMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "needs moto: `eval \"$(scripts/services up aws gcp)\"`, then `cargo test -- --include-ignored`"]
fn the_emulator_stopped_mid_run_is_a_clear_error_within_seconds_and_only_what_happened_is_recorded() {
    let shared = Aws::new();
    let mut moto = PrivateMoto::start();
    // The same stack, against the private server.
    let a = Aws { sdk: Sdk::new(&moto.url), url: moto.url.clone(), ..shared };
    a.sdk.bucket(&format!("models-{}", a.sfx));
    a.sdk.put(&format!("models-{}", a.sfx), "churn/model.tar.gz", "w1");
    a.sdk.put(&format!("models-{}", a.sfx), "churn-v2/model.tar.gz", "w2");
    let child = a.spawn(&a.url, &["apply", "--auto-approve"]);
    // Stop the server while the endpoint is still Creating.
    a.wait_until_endpoint_creating();
    let _ = moto.child.kill();
    let _ = moto.child.wait();
    let stopped = Instant::now();
    let out = child.wait_with_output().unwrap();
    let took = stopped.elapsed();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(took < Duration::from_secs(20), "took {took:?} after the server stopped:\n{text}");
    assert!(text.to_lowercase().contains("connection refused"), "the cause chain is shown:\n{text}");
    let log = a.env.git(&["log", "-1", "--format=%B", "refs/mlops/lineage/sm/default"]);
    assert!(log.contains("Result: partial"), "{log}");
    assert!(log.contains(&format!("! endpoints.{}: failed (unavailable)", a.endpoint())), "{log}");
    let result: Value =
        serde_json::from_str(&a.env.git(&["show", "refs/mlops/lineage/sm/default:result.json"])).unwrap();
    assert_eq!(result[format!("endpoints.{}", a.endpoint())]["kind"], "unavailable", "{result:#}");
    let recorded = a.env.git(&["ls-tree", "-r", "--name-only", "refs/mlops/lineage/sm/default", "resources/"]);
    assert!(recorded.contains("resources/models/churn.json"), "{recorded}");
    assert!(!recorded.contains("resources/endpoints/"), "the endpoint was not applied:\n{recorded}");
}

#[test]
#[ignore = "needs moto: `eval \"$(scripts/services up aws gcp)\"`, then `cargo test -- --include-ignored`"]
fn the_aws_example_applies_and_converges() {
    let url = endpoint_url();
    let sdk = Sdk::new(&url);
    let env = TestEnv::new();
    crate::common::copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/aws-sagemaker"),
        env.path(),
    );
    // The example as written, with its bucket names and SageMaker names made unique on the shared server.
    let sfx = unique("x").replace('-', "").chars().rev().take(10).collect::<String>();
    let spec = env
        .read("mlops.yaml")
        .replace("s3://acme-ml-", &format!("s3://acme-{sfx}-"))
        .replace("group: churn,", &format!("group: churn-{sfx},"))
        .replace("  churn-api:", &format!("  churn-api-{sfx}:"))
        .replace("  churn-customers:", &format!("  churn-customers-{sfx}:"));
    env.write("mlops.yaml", &spec);
    env.commit("example");
    let models = format!("acme-{sfx}-models");
    sdk.bucket(&models);
    sdk.put(&models, "churn/v1/model.tar.gz", "v1");
    sdk.put(&models, "churn/v2/model.tar.gz", "v2");
    let aws = [
        ("AWS_ENDPOINT_URL", url.as_str()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let run = env.mlops_env(&["apply", "--auto-approve"], &aws).ok();
    assert!(run.stdout.contains("Apply complete! Resources: 5 added"), "{}", run.stdout);
    let e = sdk.endpoint(&format!("churn-api-{sfx}"));
    assert_eq!(e.endpoint_status().unwrap().as_str(), "InService");
    assert_eq!(e.production_variants().len(), 2);
    let packages =
        sdk.rt.block_on(sdk.sm.list_model_packages().model_package_group_name(format!("churn-{sfx}")).send()).unwrap();
    assert_eq!(packages.model_package_summary_list().len(), 2, "both model versions registered");
    let listed = sdk.rt.block_on(sdk.s3.list_objects_v2().bucket(format!("acme-{sfx}-data")).send()).unwrap();
    assert_eq!(listed.contents().len(), 1);
    let plan = env.mlops_env(&["plan", "--detailed-exitcode"], &aws);
    assert_eq!(plan.status, 0, "{}{}", plan.stdout, plan.stderr);

    // Everything removed: the models' registry versions go with them, so the delete is
    // data-destroying and refused without the flag; nothing is deleted until it is given.
    let head = &spec[..spec.find("\ndatasets:").expect("the example declares datasets")];
    env.write("mlops.yaml", &format!("{head}\n"));
    env.commit("remove everything");
    let refused = env.mlops_env(&["apply", "--auto-approve"], &aws);
    assert_eq!(refused.status, 1, "{}{}", refused.stdout, refused.stderr);
    assert!(refused.stdout.contains("deletes its 1 model registry version(s)"), "{}", refused.stdout);
    assert!(refused.stderr.contains("--allow-data-loss"), "{}", refused.stderr);
    let packages = |sdk: &Sdk| {
        sdk.rt
            .block_on(sdk.sm.list_model_packages().model_package_group_name(format!("churn-{sfx}")).send())
            .map(|l| l.model_package_summary_list().len())
            .unwrap_or(0)
    };
    assert_eq!(packages(&sdk), 2, "nothing deleted");
    env.mlops_env(&["apply", "--auto-approve", "--allow-data-loss"], &aws).ok();
    assert_eq!(packages(&sdk), 0, "the versions mlops registered are deleted");
}

#[test]
#[ignore = "needs moto: `eval \"$(scripts/services up aws gcp)\"`, then `cargo test -- --include-ignored`"]
fn policies_see_every_production_variant() {
    let a = Aws::new();
    a.edit_spec(
        "      - {{ name: green, model: models.churn-v2, weight: 10 }}".replace("{{", "{").replace("}}", "}").as_str(),
        "      - { name: green, model: models.churn-v2, weight: 10, instance_type: ml.g4dn.xlarge }",
    );
    let spec = a.env.read("mlops.yaml");
    a.env.write(
        "mlops.yaml",
        &format!("{spec}policies:\n  allowed_instance_types: [ml.m5.large]\n  require_approved_models: true\n"),
    );
    a.env.commit("policies");
    let run = a.mlops(&["check"]);
    assert_eq!(run.status, 3, "{}{}", run.stdout, run.stderr);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(out.contains("uses instance type `ml.g4dn.xlarge`"), "{out}");
    assert!(!out.contains("uses instance type `ml.m5.large`"), "{out}");
    // churn is PendingManualApproval, churn-v2 has no registry entry: both are named.
    assert!(out.contains("serves models.churn, whose registry approval is"), "{out}");
    assert!(out.contains("serves models.churn-v2, whose registry approval is"), "{out}");
    // Each at the line that declares it: the variant's own instance type.
    assert!(out.contains("weight: 10, instance_type: ml.g4dn.xlarge }\n    ·"), "{out}");
}

#[test]
#[ignore = "needs moto: `eval \"$(scripts/services up aws gcp)\"`, then `cargo test -- --include-ignored`"]
fn a_secret_reaches_the_sagemaker_model_and_nothing_mlops_writes() {
    let a = Aws::new();
    let value = "moto-Secret-Value-123";
    a.edit_spec(
        "    framework: xgboost\n",
        "    framework: xgboost\n    environment: { DB_PASSWORD: \"${secret:DB_PASSWORD}\" }\n",
    );
    let aws_env = [
        ("AWS_ENDPOINT_URL", a.url.as_str()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("DB_PASSWORD", value),
    ];
    let plan = a.env.mlops_env(&["plan", "--out", "p.json"], &aws_env).ok();
    let apply = a.env.mlops_env(&["apply", "p.json"], &aws_env).ok();
    let replan = a.env.mlops_env(&["plan", "--detailed-exitcode"], &aws_env);
    assert_eq!(replan.status, 0, "{}", replan.stdout);
    for text in [&plan.stdout, &apply.stdout, &apply.stderr, &replan.stdout, &a.env.read("p.json")] {
        assert!(!text.contains(value), "{text}");
    }
    let lineage = a.env.git(&["log", "-p", "refs/mlops/lineage/sm/default"]);
    assert!(!lineage.contains(value));
    let record = a.record("models.churn");
    assert!(
        record["attributes"]["environment"]["DB_PASSWORD"].as_str().unwrap().starts_with("(secret DB_PASSWORD, hmac:"),
        "{record}"
    );
    // SageMaker holds the value, read through the AWS SDK.
    let name =
        record["outputs"]["model_name"].as_str().or(record["attributes"]["model_name"].as_str()).unwrap().to_string();
    let m = a.sdk.rt.block_on(a.sdk.sm.describe_model().model_name(&name).send()).unwrap();
    let env = m.primary_container().unwrap().environment().unwrap();
    assert_eq!(env.get("DB_PASSWORD").map(String::as_str), Some(value));

    // Someone sets another value in SageMaker by hand (moto's CreateModel overwrites a model of
    // the same name): the plan shows that the secret changed, never the value.
    let hand = "Hand-Set-In-SageMaker-42";
    let c = m.primary_container().unwrap();
    let mut changed = env.clone();
    changed.insert("DB_PASSWORD".into(), hand.into());
    let container = aws_sdk_sagemaker::types::ContainerDefinition::builder()
        .set_image(c.image().map(str::to_string))
        .set_model_data_url(c.model_data_url().map(str::to_string))
        .set_environment(Some(changed))
        .build();
    a.sdk
        .rt
        .block_on(
            a.sdk
                .sm
                .create_model()
                .model_name(&name)
                .primary_container(container)
                .set_execution_role_arn(m.execution_role_arn().map(str::to_string))
                .send(),
        )
        .unwrap();
    let mut seen = String::new();
    for args in [vec!["plan"], vec!["plan", "--json"], vec!["plan", "--format", "markdown"]] {
        let run = a.env.mlops_env(&args, &aws_env);
        seen.push_str(&run.stdout);
        seen.push_str(&run.stderr);
    }
    assert!(!seen.contains(hand), "the hand-set value is shown:\n{seen}");
    assert!(seen.contains("(secret DB_PASSWORD changed)"), "{seen}");
}

/// SIGKILL at three moments of an apply against moto (before anything, while the models and the
/// dataset are created, during the endpoint wait): one more apply converges and lineage records
/// every object that is live.
#[test]
#[ignore = "needs moto: `eval \"$(scripts/services up aws gcp)\"`, then `cargo test -- --include-ignored`"]
fn an_apply_killed_against_moto_converges_with_one_more_apply() {
    let mut landed = Vec::new();
    for trial in 0..3 {
        let a = Aws::new();
        let mut child = a.spawn(&a.url, &["apply", "--auto-approve"]);
        let journal = a.env.join(".git/mlops/journal/sm/default.plan.json");
        let deadline = Instant::now() + Duration::from_secs(60);
        match trial {
            // While planning: nothing created yet.
            0 => std::thread::sleep(Duration::from_millis(100)),
            // As the first changes run.
            1 => {
                while !journal.exists() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                std::thread::sleep(Duration::from_millis(150));
            }
            // While the endpoint is Creating (the launcher's 2 s lifecycle).
            _ => a.wait_until_endpoint_creating(),
        }
        let _ = child.kill();
        let _ = child.wait();
        landed.push(journal.exists());
        let run = a.mlops(&["apply", "--auto-approve"]);
        assert_eq!(run.status, 0, "trial {trial}: one apply converges\n{}\n{}", run.stdout, run.stderr);
        let plan = a.mlops(&["plan", "--detailed-exitcode"]);
        assert_eq!(plan.status, 0, "trial {trial}: nothing left\n{}\n{}", plan.stdout, plan.stderr);
        let verify = a.mlops(&["verify", "--live"]);
        assert_eq!(
            verify.status, 0,
            "trial {trial}: lineage equals the live state\n{}\n{}",
            verify.stdout, verify.stderr
        );
        let recorded = a.env.git(&["ls-tree", "-r", "--name-only", "refs/mlops/lineage/sm/default", "resources/"]);
        assert_eq!(recorded.lines().count(), 5, "trial {trial}: every resource recorded\n{recorded}");
        // The endpoint lineage records is the one SageMaker serves, InService.
        let ep = a.sdk.rt.block_on(a.sdk.sm.describe_endpoint().endpoint_name(a.endpoint()).send()).unwrap();
        assert_eq!(ep.endpoint_status().map(|s| s.as_str()), Some("InService"));
        let rec = a.record(&format!("endpoints.{}", a.endpoint()));
        assert_eq!(rec["attributes"]["config_name"].as_str(), ep.endpoint_config_name(), "trial {trial}");
    }
    assert!(landed.iter().filter(|l| **l).count() >= 1, "a kill landed mid-apply: {landed:?}");
}

/// Deletes only what carries this stack's ownership tag: an endpoint whose tag was taken off (or
/// that another project owns) is left alone, with an error that says why.
#[test]
#[ignore = "needs moto: `eval \"$(scripts/services up aws gcp)\"`, then `cargo test -- --include-ignored`"]
fn a_delete_touches_only_objects_tagged_for_this_stack() {
    let a = Aws::new();
    a.mlops(&["apply", "--auto-approve"]).ok();
    let ep = a.sdk.rt.block_on(a.sdk.sm.describe_endpoint().endpoint_name(a.endpoint()).send()).unwrap();
    let arn = ep.endpoint_arn().unwrap().to_string();
    a.sdk
        .rt
        .block_on(
            a.sdk
                .sm
                .add_tags()
                .resource_arn(&arn)
                .tags(aws_sdk_sagemaker::types::Tag::builder().key("mlops:project").value("someone-else").build())
                .send(),
        )
        .unwrap();
    let spec = a.env.read("mlops.yaml");
    let (start, end) = (spec.find("endpoints:").unwrap(), spec.find("feature_stores:").unwrap());
    a.env.write("mlops.yaml", &format!("{}{}", &spec[..start], &spec[end..]));
    a.env.commit("no endpoint");
    let run = a.mlops(&["apply", "--auto-approve"]);
    assert_eq!(run.status, 1, "{}", run.stdout);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("does not carry this stack's ownership tag") && all.contains("someone-else"), "{all}");
    assert!(
        a.sdk.rt.block_on(a.sdk.sm.describe_endpoint().endpoint_name(a.endpoint()).send()).is_ok(),
        "the endpoint is still there"
    );
}

/// `source: file://./data` is the same folder as `source: ./data`, on AWS as on the other providers.
#[test]
#[ignore = "needs moto: `eval \"$(scripts/services up aws gcp)\"`, then `cargo test -- --include-ignored`"]
fn a_file_uri_source_syncs_like_a_path() {
    let a = Aws::new();
    a.edit_spec("    source: ./data\n", "    source: file://./data\n");
    a.mlops(&["apply", "--auto-approve", "--target", "datasets.train"]).ok();
    let listed = a.sdk.rt.block_on(a.sdk.s3.list_objects_v2().bucket(format!("data-{}", a.sfx)).send()).unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["churn/train/a.csv", "churn/train/b.csv"]);
}

/// Rollback of an S3 dataset: bytes the source moved on from come back from the object versions
/// the bucket kept (checked through the SDK); a deleted version refuses the rollback.
#[test]
#[ignore = "needs moto: `eval \"$(scripts/services up aws gcp)\"`, then `cargo test -- --include-ignored`"]
fn rollback_restores_s3_object_versions_and_refuses_deleted_ones() {
    let a = Aws::new();
    let bucket = format!("data-{}", a.sfx);
    a.env.write(
        "mlops.yaml",
        &format!(
            "version: 1\nproject: sm\nproviders:\n  aws: {{ region: us-east-1 }}\ndatasets:\n  train:\n    uri: s3://{bucket}/churn/train/\n    source: ./data\n"
        ),
    );
    a.env.commit("dataset only");
    a.mlops(&["apply", "--auto-approve"]).ok();
    let v1 = a.env.lineage("sm")[0].clone();
    a.env.write("data/a.csv", "id,x\n1,2\n5,6\n");
    a.env.commit("a.csv v2");
    a.mlops(&["apply", "--auto-approve"]).ok();
    let get = |key: &str| -> String {
        let out = a.sdk.rt.block_on(a.sdk.s3.get_object().bucket(&bucket).key(key).send()).unwrap();
        String::from_utf8(a.sdk.rt.block_on(out.body.collect()).unwrap().into_bytes().to_vec()).unwrap()
    };
    assert_eq!(get("churn/train/a.csv"), "id,x\n1,2\n5,6\n");

    // The source holds v2; the rollback copies v1 back from its kept version.
    let run = a.mlops(&["rollback", &v1, "--out", "rb.json"]).ok();
    assert!(run.stdout.contains("~ datasets.train # will be updated in place [rollback]"), "{}", run.stdout);
    a.mlops(&["apply", "rb.json"]).ok();
    assert_eq!(get("churn/train/a.csv"), "id,x\n1,2\n", "v1's bytes are the latest version again");
    let files = |at: &str| {
        let s: Value = serde_json::from_str(&a.mlops(&["state", "--at", at, "--json"]).ok().stdout).unwrap();
        s["resources"][0]["record"]["attributes"]["files"].clone()
    };
    assert_eq!(files("now"), files(&v1));

    // Move on again, then delete every kept version holding v1's bytes: refused, nothing changes.
    a.env.write("data/a.csv", "id,x\n7,8\n");
    a.env.commit("a.csv v3");
    a.mlops(&["apply", "--auto-approve"]).ok();
    let versions =
        a.sdk.rt.block_on(a.sdk.s3.list_object_versions().bucket(&bucket).prefix("churn/train/a.csv").send()).unwrap();
    let v1_files = files(&v1);
    let v1_etag = v1_files["a.csv"]["etag"].as_str().unwrap();
    for v in versions.versions().iter().filter(|v| v.e_tag().map(|e| e.trim_matches('"')) == Some(v1_etag)) {
        a.sdk
            .rt
            .block_on(
                a.sdk
                    .s3
                    .delete_object()
                    .bucket(&bucket)
                    .key("churn/train/a.csv")
                    .version_id(v.version_id().unwrap())
                    .send(),
            )
            .unwrap();
    }
    let before = a.env.lineage("sm");
    let refused = a.mlops(&["rollback", &v1]);
    assert_eq!(refused.status, 1, "{}", refused.stdout);
    assert!(refused.stderr.contains("cannot roll back 1 resource(s)"), "{}", refused.stderr);
    assert!(refused.stderr.contains("a.csv"), "{}", refused.stderr);
    assert_eq!(a.env.lineage("sm"), before);
    assert_eq!(get("churn/train/a.csv"), "id,x\n7,8\n");
}

/// Runs a boto3 script against the test server (moto's own Python, an independent client) and
/// returns what it prints as JSON.
pub(crate) fn boto3(url: &str, script: &str) -> Value {
    let python = crate::common::service("MLOPS_TEST_MOTO_PYTHON", None, "aws");
    let code = format!(
        "import boto3, json, sys\nkw = dict(endpoint_url={url:?}, region_name='us-east-1', \
         aws_access_key_id='test', aws_secret_access_key='test')\n{script}"
    );
    let out = std::process::Command::new(python).args(["-c", &code]).output().expect("python runs");
    assert!(out.status.success(), "boto3 failed: {}", String::from_utf8_lossy(&out.stderr));
    crate::common::printed_json(&String::from_utf8_lossy(&out.stdout), "boto3")
}

#[test]
#[ignore = "needs moto: `eval \"$(scripts/services up aws gcp)\"`, then `cargo test -- --include-ignored`"]
fn an_autoscaled_endpoint_keeps_the_count_its_autoscaler_set_through_a_model_change() {
    let a = Aws::new();
    a.edit_spec(
        "    wait_timeout: 30s\nfeature_stores:",
        "    wait_timeout: 30s\n    autoscaling: { min: 1, max: 6, target: { metric: invocations_per_instance, value: 100 }, scale_in_cooldown: 10m }\nfeature_stores:",
    );
    a.mlops(&["apply", "--auto-approve"]).ok();
    let ep = a.endpoint();
    let scaling = |ep: &str| {
        boto3(
            &a.url,
            &format!(
                "c = boto3.client('application-autoscaling', **kw)\n\
                 ids = ['endpoint/{ep}/variant/blue', 'endpoint/{ep}/variant/green']\n\
                 t = c.describe_scalable_targets(ServiceNamespace='sagemaker', ResourceIds=ids)['ScalableTargets']\n\
                 p = c.describe_scaling_policies(ServiceNamespace='sagemaker', ResourceId=ids[0])['ScalingPolicies']\n\
                 print(json.dumps({{'targets': sorted([[x['ResourceId'].split('/')[-1], x['MinCapacity'], x['MaxCapacity']] for x in t]),\n\
                   'policies': [[x['PolicyName'], x['PolicyType'], x['TargetTrackingScalingPolicyConfiguration']] for x in p]}}, default=str))"
            ),
        )
    };
    // Through boto3: a scalable target per variant, and the target-tracking policy.
    let s = scaling(&ep);
    assert_eq!(s["targets"], json!([["blue", 1, 6], ["green", 1, 6]]), "{s}");
    let policy = &s["policies"][0];
    assert_eq!(policy[0], format!("mlops-{ep}-blue"));
    assert_eq!(policy[1], "TargetTrackingScaling");
    assert_eq!(
        policy[2]["PredefinedMetricSpecification"]["PredefinedMetricType"],
        "SageMakerVariantInvocationsPerInstance"
    );
    assert_eq!((policy[2]["TargetValue"].as_f64(), policy[2]["ScaleInCooldown"].as_i64()), (Some(100.0), Some(600)));

    // The autoscaler scales blue out to 5 (played here through boto3, as Application Auto Scaling
    // does): not drift.
    boto3(
        &a.url,
        &format!(
            "boto3.client('sagemaker', **kw).update_endpoint_weights_and_capacities(EndpointName='{ep}', \
             DesiredWeightsAndCapacities=[{{'VariantName': 'blue', 'DesiredInstanceCount': 5}}])"
        ),
    );
    a.sdk.wait_in_service(&ep);
    let plan = a.mlops(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status, 0, "a scale by the autoscaler must not be drift:\n{}{}", plan.stdout, plan.stderr);

    // Another model on the same variants: a new config, and blue keeps the 5 instances.
    a.edit_spec("    model: models.churn\n    instance_type", "    model: models.churn-v2\n    instance_type");
    let run = a.mlops(&["apply", "--auto-approve"]).ok();
    assert!(run.stdout.contains("keeping the autoscaled instance counts"), "{}", run.stdout);
    let now = a.sdk.endpoint(&ep);
    let blue = now.production_variants().iter().find(|v| v.variant_name() == Some("blue")).unwrap();
    assert_eq!(blue.current_instance_count(), Some(5), "the autoscaled count survives the model change");
    assert_eq!(
        a.sdk.config_models(now.endpoint_config_name().unwrap())[0],
        a.record("models.churn-v2")["attributes"]["model_name"].as_str().unwrap()
    );
    let rec = a.record(&format!("endpoints.{ep}"));
    assert_eq!(rec["outputs"]["instance_counts"]["blue"], 5, "{rec}");
    assert_eq!(rec["attributes"]["autoscaling"]["blue"]["max"], 6, "{rec}");
    assert!(rec["attributes"].get("capacity").is_none(), "the counts are the autoscaler's, not compared: {rec}");
    assert_eq!(scaling(&ep)["targets"], json!([["blue", 1, 6], ["green", 1, 6]]));
    let plan = a.mlops(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status, 0, "{}{}", plan.stdout, plan.stderr);

    // Autoscaling removed: the targets are deregistered and the counts are the spec's again.
    a.edit_spec(
        "    autoscaling: { min: 1, max: 6, target: { metric: invocations_per_instance, value: 100 }, scale_in_cooldown: 10m }\n",
        "",
    );
    let plan = a.plan_json();
    let e = change(&plan, &format!("endpoints.{ep}"));
    assert_eq!(e["action"], "update");
    assert_eq!(paths(e), ["autoscaling.blue", "autoscaling.green", "capacity"]);
    a.mlops(&["apply", "--auto-approve"]).ok();
    assert_eq!(scaling(&ep)["targets"], json!([]));
    let now = a.sdk.endpoint(&ep);
    let blue = now.production_variants().iter().find(|v| v.variant_name() == Some("blue")).unwrap();
    assert_eq!(blue.current_instance_count(), Some(2));
}

#[test]
#[ignore = "needs moto: `eval \"$(scripts/services up aws gcp)\"`, then `cargo test -- --include-ignored`"]
fn a_canary_rollout_completes_while_its_alarm_is_ok_and_is_rolled_back_when_it_fires() {
    let a = Aws::new();
    let alarm = format!("errors-{}", a.sfx);
    let rollout = format!(
        "    rollout: {{ strategy: canary, step: {{ percent: 10, interval: 2s }}, bake: 2s, alarms: [{alarm}] }}\n"
    );
    a.edit_spec("    wait_timeout: 30s\nfeature_stores:", &format!("    wait_timeout: 30s\n{rollout}feature_stores:"));
    // The alarm must exist: a plan naming one that does not is refused at its line.
    let plan = a.mlops(&["plan"]);
    assert_ne!(plan.status, 0, "{}", plan.stdout);
    assert!(plan.stderr.contains(&format!("CloudWatch alarm `{alarm}` does not exist")), "{}", plan.stderr);
    let cloudwatch = |state: &str| {
        boto3(
            &a.url,
            &format!(
                "cw = boto3.client('cloudwatch', **kw)\n\
                 cw.put_metric_alarm(AlarmName='{alarm}', MetricName='Invocation5XXErrors', Namespace='AWS/SageMaker', \
                 Statistic='Sum', Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator='GreaterThanThreshold')\n\
                 cw.set_alarm_state(AlarmName='{alarm}', StateValue='{state}', StateReason='test')"
            ),
        )
    };
    cloudwatch("OK");
    a.mlops(&["apply", "--auto-approve"]).ok();
    let ep = a.endpoint();
    let first = a.sdk.endpoint(&ep).endpoint_config_name().unwrap().to_string();

    // A new model: the plan shows the rollout's steps; the alarm stays OK and it completes.
    a.edit_spec("    model: models.churn\n    instance_type", "    model: models.churn-v2\n    instance_type");
    let plan = a.plan_json();
    let e = change(&plan, &format!("endpoints.{ep}"));
    let tag = e["tags"].as_array().unwrap().iter().find(|t| t["tag"] == "rollout").expect("a rollout tag");
    assert_eq!((tag["strategy"].as_str(), tag["steps"].clone()), (Some("canary"), json!([10, 100])), "{tag}");
    assert_eq!((tag["interval_secs"].as_u64(), tag["bake_secs"].as_u64()), (Some(2), Some(2)));
    assert_eq!(tag["alarms"], json!([alarm]));
    let run = a.mlops(&["apply", "--auto-approve"]).ok();
    assert!(run.stdout.contains("rolling out canary: 10% → 100%"), "{}", run.stdout);
    let second = a.sdk.endpoint(&ep).endpoint_config_name().unwrap().to_string();
    assert_ne!(second, first);
    assert_eq!(a.record(&format!("endpoints.{ep}"))["attributes"]["config_name"], second);

    // Back to the first model, and the alarm fires mid-rollout: SageMaker rolls back.
    a.edit_spec("    model: models.churn-v2\n    instance_type", "    model: models.churn\n    instance_type");
    let child = a.spawn(&a.url, &["apply", "--auto-approve"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.sdk.endpoint(&ep).endpoint_status().map(|s| s.as_str()) != Some("Updating") {
        assert!(Instant::now() < deadline, "the rollout never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    cloudwatch("ALARM");
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("Apply rolled back"), "{stdout}{stderr}");
    assert!(stdout.contains(&alarm) || stderr.contains(&alarm), "the alarm is named: {stdout}{stderr}");
    // Through the SDK: the endpoint serves the config it served before; that config and its
    // model still exist.
    let now = a.sdk.endpoint(&ep);
    assert_eq!(now.endpoint_config_name(), Some(second.as_str()));
    assert!(now.failure_reason().unwrap_or_default().contains(&alarm), "{:?}", now.failure_reason());
    assert!(a.sdk.config_exists(&second));
    for m in a.sdk.config_models(&second) {
        assert!(a.sdk.model_exists(&m), "{m} must still exist");
    }
    // Lineage tells the truth: rolled back, serving the old config; the change is still pending.
    let message = a.env.git(&["log", "-1", "--format=%B", "refs/mlops/lineage/sm/default"]);
    assert!(message.contains("Result: rolled-back"), "{message}");
    assert!(message.contains("failed (rolled-back)"), "{message}");
    assert_eq!(a.record(&format!("endpoints.{ep}"))["attributes"]["config_name"], second);
    let plan = a.plan_json();
    assert_eq!(change(&plan, &format!("endpoints.{ep}"))["action"], "update", "the change is still pending");
    cloudwatch("OK");
}

/// The moto launcher fails what SageMaker fails, checked through boto3: an endpoint whose model's
/// ModelDataUrl names no S3 object goes to Failed with SageMaker's reason.
#[test]
#[ignore = "needs moto: `eval \"$(scripts/services up aws gcp)\"`, then `cargo test -- --include-ignored`"]
fn the_test_service_fails_an_endpoint_whose_model_data_is_missing() {
    let url = endpoint_url();
    let name = unique("nodata").replace('_', "-");
    let out = boto3(
        &url,
        &format!(
            "import time\nc = boto3.client('sagemaker', **kw)\n\
             s3 = boto3.client('s3', **kw)\ns3.create_bucket(Bucket='{name}')\n\
             c.create_model(ModelName='{name}', ExecutionRoleArn='arn:aws:iam::123456789012:role/r', \
               PrimaryContainer={{'Image': 'img', 'ModelDataUrl': 's3://{name}/missing/model.tar.gz'}})\n\
             c.create_endpoint_config(EndpointConfigName='{name}', ProductionVariants=[{{'VariantName': 'v', \
               'ModelName': '{name}', 'InitialInstanceCount': 1, 'InstanceType': 'ml.m5.large'}}])\n\
             c.create_endpoint(EndpointName='{name}', EndpointConfigName='{name}')\n\
             first = c.describe_endpoint(EndpointName='{name}')['EndpointStatus']\n\
             while c.describe_endpoint(EndpointName='{name}')['EndpointStatus'] == 'Creating':\n    time.sleep(0.2)\n\
             e = c.describe_endpoint(EndpointName='{name}')\n\
             print(json.dumps([first, e['EndpointStatus'], e.get('FailureReason')]))"
        ),
    );
    assert_eq!(out[0], "Creating", "{out}");
    assert_eq!(out[1], "Failed", "{out}");
    assert!(
        out[2].as_str().unwrap().starts_with(&format!(
            "Failed to download model data for container \"container_1\" from URL: \"s3://{name}/missing/model.tar.gz\""
        )),
        "{out}"
    );
}

/// Feature groups pass through Creating and Deleting as on SageMaker (so the provider's polling
/// runs under test), and a name still being deleted cannot be taken: checked through boto3.
#[test]
#[ignore = "needs moto: `eval \"$(scripts/services up aws gcp)\"`, then `cargo test -- --include-ignored`"]
fn the_test_service_gives_feature_groups_a_lifecycle() {
    let url = endpoint_url();
    let name = unique("fg").replace('_', "-");
    let out = boto3(
        &url,
        &format!(
            "import time\nfrom botocore.exceptions import ClientError\nc = boto3.client('sagemaker', **kw)\n\
             d = [{{'FeatureName': 'id', 'FeatureType': 'String'}}, {{'FeatureName': 'ts', 'FeatureType': 'String'}}]\n\
             c.create_feature_group(FeatureGroupName='{name}', RecordIdentifierFeatureName='id', \
               EventTimeFeatureName='ts', FeatureDefinitions=d, OnlineStoreConfig={{'EnableOnlineStore': True}})\n\
             seen = [c.describe_feature_group(FeatureGroupName='{name}')['FeatureGroupStatus']]\n\
             try:\n    c.update_feature_group(FeatureGroupName='{name}', FeatureAdditions=[{{'FeatureName': 'x', 'FeatureType': 'String'}}])\n    seen.append('updated while creating')\nexcept ClientError as e:\n    seen.append(e.response['Error']['Code'])\n\
             while c.describe_feature_group(FeatureGroupName='{name}')['FeatureGroupStatus'] == 'Creating':\n    time.sleep(0.1)\n\
             seen.append(c.describe_feature_group(FeatureGroupName='{name}')['FeatureGroupStatus'])\n\
             c.delete_feature_group(FeatureGroupName='{name}')\n\
             seen.append(c.describe_feature_group(FeatureGroupName='{name}')['FeatureGroupStatus'])\n\
             try:\n    c.create_feature_group(FeatureGroupName='{name}', RecordIdentifierFeatureName='id', EventTimeFeatureName='ts', FeatureDefinitions=d)\n    seen.append('created while deleting')\nexcept ClientError as e:\n    seen.append(e.response['Error']['Code'])\n\
             while True:\n    try:\n        c.describe_feature_group(FeatureGroupName='{name}')\n        time.sleep(0.1)\n    except ClientError as e:\n        seen.append(e.response['Error']['Code'])\n        break\n\
             print(json.dumps(seen))"
        ),
    );
    assert_eq!(
        out,
        json!(["Creating", "ResourceInUse", "Created", "Deleting", "ResourceInUse", "ResourceNotFound"]),
        "{out}"
    );
}

/// `mlops rollback` puts a SageMaker endpoint back as it served: three applies of the model (a new
/// object per version, the third with a patched image) and of the variants' weights; rolled back
/// to the first, the endpoint serves a model with v1's artifact and image at v1's weights and
/// instance count (read through boto3), and `state --at now` equals `state --at` v1 for the model
/// and the endpoint. When v1's object was rewritten, the rollback is refused, naming the version
/// S3 keeps and how to put it back, and nothing changes.
#[test]
#[ignore = "needs moto: `eval \"$(scripts/services up aws gcp)\"`, then `cargo test -- --include-ignored`"]
fn a_rollback_serves_the_recorded_model_image_and_weights_again() {
    let a = Aws::new();
    let models = format!("models-{}", a.sfx);
    a.mlops(&["apply", "--auto-approve"]).ok();
    let v1 = a.env.lineage("sm")[0].clone();
    let served = || {
        boto3(
            &a.url,
            &format!(
                "sm = boto3.client('sagemaker', **kw)\n\
                 e = sm.describe_endpoint(EndpointName={:?})\n\
                 c = sm.describe_endpoint_config(EndpointConfigName=e['EndpointConfigName'])\n\
                 out = {{}}\n\
                 for v in c['ProductionVariants']:\n    \
                     m = sm.describe_model(ModelName=v['ModelName'])['PrimaryContainer']\n    \
                     live = [x for x in e['ProductionVariants'] if x['VariantName'] == v['VariantName']][0]\n    \
                     out[v['VariantName']] = [m['ModelDataUrl'], m['Image'], live['CurrentWeight'], live['CurrentInstanceCount']]\n\
                 print(json.dumps(out))",
                a.endpoint()
            ),
        )
    };
    let at_v1 = served();
    assert_eq!(at_v1["blue"], json!([format!("s3://{models}/churn/model.tar.gz"), IMAGE, 90.0, 2]), "{at_v1}");
    let release = |v: u32, blue: u32, image: &str| {
        a.sdk.put(&models, &format!("churn/v{v}/model.tar.gz"), &format!("xgboost weights v{v}"));
        let spec = a.env.read("mlops.yaml");
        let from = spec.lines().find(|l| l.contains("/churn/") && l.contains("artifact:")).unwrap().to_string();
        let spec = spec
            .replace(&from, &format!("    artifact: s3://{models}/churn/v{v}/model.tar.gz"))
            .replace(
                &spec.lines().find(|l| l.contains("name: blue")).unwrap().to_string(),
                &format!("      - {{ name: blue, instance_count: 2, weight: {blue} }}"),
            )
            .replace(
                &spec.lines().find(|l| l.contains("name: green")).unwrap().to_string(),
                &format!("      - {{ name: green, model: models.churn-v2, weight: {} }}", 100 - blue),
            );
        let spec = spec.replacen(
            &format!("    image: {IMAGE}\n    execution_role: {ROLE}\n    framework"),
            &format!("    image: {image}\n    execution_role: {ROLE}\n    framework"),
            1,
        );
        a.env.write("mlops.yaml", &spec);
        a.env.commit(&format!("v{v}"));
        a.mlops(&["apply", "--auto-approve"]).ok();
        a.sdk.wait_in_service(&a.endpoint());
    };
    release(2, 70, IMAGE);
    release(3, 50, &format!("{IMAGE}-patched"));
    let at_v3 = served();
    assert_eq!(
        at_v3["blue"],
        json!([format!("s3://{models}/churn/v3/model.tar.gz"), format!("{IMAGE}-patched"), 50.0, 2])
    );

    let plan = a.mlops(&["rollback", &v1, "--out", "rb.json"]).ok();
    assert!(plan.stdout.contains("models.churn # will be replaced"), "{}", plan.stdout);
    let line = plan.stdout.lines().find(|l| l.contains(&format!("~ endpoints.{} #", a.endpoint()))).unwrap();
    assert!(line.ends_with("rollback]"), "{line}");
    a.mlops(&["apply", "rb.json"]).ok();
    a.sdk.wait_in_service(&a.endpoint());
    assert_eq!(served(), at_v1, "v1's model, image, weights and counts serve again");
    let state =
        |at: &str| -> Value { serde_json::from_str(&a.mlops(&["state", "--at", at, "--json"]).ok().stdout).unwrap() };
    let (now, then) = (state("now"), state(&v1));
    for address in [format!("endpoints.{}", a.endpoint()), "models.churn".to_string()] {
        let attributes = |s: &Value| {
            let r = s["resources"].as_array().unwrap().iter().find(|r| r["address"] == address.as_str()).unwrap();
            r["record"]["attributes"].clone()
        };
        assert_eq!(attributes(&now), attributes(&then), "{address} is recorded as it was at v1");
    }

    // v1's object rewritten: SageMaker would load the new bytes, so nothing is rolled back.
    release(4, 50, IMAGE);
    let before = a.env.lineage("sm");
    a.sdk.put(&models, "churn/model.tar.gz", "xgboost weights v1, retrained");
    let refused = a.mlops(&["rollback", &v1]);
    assert_eq!(refused.status, 1, "{}", refused.stdout);
    assert!(refused.stderr.contains("cannot roll back 1 resource(s)"), "only the model is named: {}", refused.stderr);
    assert!(refused.stderr.contains("models.churn"), "{}", refused.stderr);
    assert!(refused.stderr.contains("copy it back"), "{}", refused.stderr);
    assert_eq!(a.env.lineage("sm"), before, "nothing recorded");
    assert_eq!(served()["blue"][0], format!("s3://{models}/churn/v4/model.tar.gz"), "nothing changed");
}

/// The test service validates UpdateEndpoint's DeploymentConfig as SageMaker does: a canary
/// without its CanarySize, a linear step under a tenth of the fleet (as a percentage, or as an
/// instance count of the new config's fleet), an unknown unit and an alarm CloudWatch does not have
/// are ValidationExceptions, and the endpoint stays InService; checked through boto3.
#[test]
#[ignore = "needs moto: `eval \"$(scripts/services up aws gcp)\"`, then `cargo test -- --include-ignored`"]
fn the_test_service_validates_deployment_config_as_sagemaker_does() {
    let a = Aws::new();
    a.mlops(&["apply", "--auto-approve"]).ok();
    let config = a.sdk.endpoint(&a.endpoint()).endpoint_config_name().unwrap().to_string();
    let out = boto3(
        &a.url,
        &format!(
            "c = boto3.client('sagemaker', **kw)\n\
             def routing(r, alarms=()):\n    \
                 d = {{'BlueGreenUpdatePolicy': {{'TrafficRoutingConfiguration': dict(r, WaitIntervalInSeconds=1), \
                   'TerminationWaitInSeconds': 1}}}}\n    \
                 if alarms:\n        d['AutoRollbackConfiguration'] = {{'Alarms': [{{'AlarmName': n}} for n in alarms]}}\n    \
                 return d\n\
             def update(d):\n    \
                 try:\n        c.update_endpoint(EndpointName={ep:?}, EndpointConfigName={config:?}, DeploymentConfig=d)\n        return 'accepted'\n    \
                 except c.exceptions.ClientError as e:\n        return e.response['Error']['Code'] + ': ' + e.response['Error']['Message']\n\
             out = {{\n\
               'canary_without_size': update(routing({{'Type': 'CANARY'}})),\n\
               'linear_5_percent': update(routing({{'Type': 'LINEAR', 'LinearStepSize': {{'Type': 'CAPACITY_PERCENT', 'Value': 5}}}})),\n\
               'bad_unit': update(routing({{'Type': 'CANARY', 'CanarySize': {{'Type': 'BYTES', 'Value': 1}}}})),\n\
               'missing_alarm': update(routing({{'Type': 'CANARY', 'CanarySize': {{'Type': 'CAPACITY_PERCENT', 'Value': 10}}}}, ['no-such-alarm'])),\n\
             }}\n\
             out['status_after_refusals'] = c.describe_endpoint(EndpointName={ep:?})['EndpointStatus']\n\
             out['linear_1_of_3'] = update(routing({{'Type': 'LINEAR', 'LinearStepSize': {{'Type': 'INSTANCE_COUNT', 'Value': 1}}}}))\n\
             out['status'] = c.describe_endpoint(EndpointName={ep:?})['EndpointStatus']\n\
             print(json.dumps(out))",
            ep = a.endpoint(),
        ),
    );
    for case in ["canary_without_size", "linear_5_percent", "bad_unit", "missing_alarm"] {
        assert!(out[case].as_str().unwrap().starts_with("ValidationException"), "{case}: {out}");
    }
    assert!(out["canary_without_size"].as_str().unwrap().contains("CanarySize is required"), "{out}");
    assert!(out["linear_5_percent"].as_str().unwrap().contains("10-50%"), "{out}");
    assert!(out["missing_alarm"].as_str().unwrap().contains("no-such-alarm"), "{out}");
    // The fixture's config has 3 instances (blue 2, green 1): one is a third of the fleet.
    assert_eq!(out["status_after_refusals"], "InService", "a refused update changes nothing: {out}");
    assert_eq!(out["linear_1_of_3"], "accepted", "{out}");
    assert_eq!(out["status"], "Updating", "the accepted update runs: {out}");
}

/// An ECR image is pinned through ECR's own API (DescribeImages, with the provider's
/// credentials; no `docker login`): SageMaker runs the model by digest (read through boto3),
/// and an image pushed again under the tag is `image-moved` in the next plan.
#[test]
#[ignore = "needs moto: `eval \"$(scripts/services up aws gcp)\"`, then `cargo test -- --include-ignored`"]
fn an_ecr_image_is_pinned_by_digest_through_ecr() {
    let a = Aws::new();
    let repo = format!("server-{}", a.sfx);
    let push = |content: &str| -> String {
        let out = boto3(
            &a.url,
            &format!(
                "e = boto3.client('ecr', **kw)\n\
                 try:\n    e.create_repository(repositoryName={repo:?})\nexcept e.exceptions.RepositoryAlreadyExistsException:\n    pass\n\
                 m = json.dumps({{'schemaVersion': 2, 'mediaType': 'application/vnd.docker.distribution.manifest.v2+json', \
                   'config': {{'mediaType': 'application/vnd.docker.container.image.v1+json', 'size': 1, 'digest': 'sha256:' + '{content}' * 64}}, \
                   'layers': [{{'mediaType': 'application/vnd.docker.image.rootfs.diff.tar.gzip', 'size': 1, \
                     'digest': 'sha256:' + '{content}' * 64}}]}})\n\
                 r = e.put_image(repositoryName={repo:?}, imageManifest=m, imageTag='1.7')\n\
                 print(json.dumps(r['image']['imageId']['imageDigest']))"
            ),
        );
        out.as_str().unwrap().to_string()
    };
    let d1 = push("a");
    let image = format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/{repo}:1.7");
    let spec = a.env.read("mlops.yaml").replace("images: { pin: tag }\n", "").replace(IMAGE, &image);
    a.env.write("mlops.yaml", &spec);
    a.env.commit("our own ECR image");
    a.mlops(&["apply", "--auto-approve"]).ok();
    let model = a.record("models.churn")["outputs"]["model_name"].as_str().unwrap().to_string();
    let running = || {
        boto3(
            &a.url,
            &format!(
                "print(json.dumps(boto3.client('sagemaker', **kw).describe_model(ModelName={model:?})['PrimaryContainer']['Image']))"
            ),
        )
    };
    let pinned = format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/{repo}@{d1}");
    assert_eq!(running(), json!(pinned), "SageMaker runs the image by digest");
    assert_eq!(a.record("models.churn")["attributes"]["image_ref"], json!({ "image": image, "digest": d1 }));

    let d2 = push("b");
    assert_ne!(d1, d2);
    let plan = a.plan_json();
    let m = change(&plan, "models.churn");
    let moved = m["tags"].as_array().unwrap().iter().find(|t| t["tag"] == "image-moved").expect("image-moved");
    assert_eq!((&moved["from_digest"], &moved["to_digest"]), (&json!(d1), &json!(d2)), "{moved}");
}
