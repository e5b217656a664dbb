//! Model signatures verified at plan time: bundles made by OpenSSF model-signing's own CLI
//! (`model_signing sign key`, PyPI model-signing 1.1.1) with keys openssl made.

use crate::common::{TestEnv, flat};

const SPEC: &str = "version: 1\nproject: signed\nproviders:\n  local: { root: .state }\nmodels:\n  churn:\n    artifact: ./model.json\n    signature: { key: keys/signer.pub.pem }\nendpoints:\n  api: { model: models.churn }\n";

fn signed_repo() -> TestEnv {
    let env = TestEnv::new();
    keys(&env);
    env.write("model.json", "{\"weights\": [1]}\n");
    sign(&env, "model.json", "model.json.sig");
    env.write("mlops.yaml", SPEC);
    env.commit("a signed model");
    env
}

/// `model_signing sign key ARTIFACT` with keys/signer.pem, writing the bundle to `bundle`.
fn sign(env: &TestEnv, artifact: &str, bundle: &str) {
    let signer = crate::common::service("MLOPS_TEST_MODEL_SIGNING", None, "validators");
    let out = std::process::Command::new(&signer)
        .args(["sign", "key", artifact, "--private_key", "keys/signer.pem", "--signature", bundle])
        .current_dir(env.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// keys/signer.pem and keys/other.pem, P-256 keys openssl made, with their public keys.
fn keys(env: &TestEnv) {
    std::fs::create_dir_all(env.join("keys")).unwrap();
    for name in ["signer", "other"] {
        let key = env.join(&format!("keys/{name}.pem"));
        let ok = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out"])
            .arg(&key)
            .status()
            .unwrap()
            .success()
            && std::process::Command::new("openssl")
                .args(["pkey", "-pubout", "-in"])
                .arg(&key)
                .arg("-out")
                .arg(env.join(&format!("keys/{name}.pub.pem")))
                .status()
                .unwrap()
                .success();
        assert!(ok, "openssl makes a P-256 key");
    }
}

/// A model signed with model-signing's CLI verifies at plan (the key's id shown), and the apply
/// records the key and the bundle's digest; a byte changed in the artifact, another key, a
/// missing bundle and a keyless identity are each refused at the `signature:` line with nothing
/// applied; `require_signed_models` blocks a model without a signature.
#[test]
#[ignore = "needs PyPI model-signing: `eval \"$(scripts/services up validators)\"`, then `cargo test -- --include-ignored`"]
fn signed_models_verify_at_plan_and_a_mismatch_is_refused_at_the_line() {
    let env = signed_repo();
    let key_der = std::process::Command::new("openssl")
        .args(["pkey", "-pubin", "-outform", "DER", "-in"])
        .arg(env.join("keys/signer.pub.pem"))
        .output()
        .unwrap()
        .stdout;
    let key_id = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&key_der)));
    let plan = env.mlops(&["plan"]).ok().stdout;
    assert!(plan.contains(&format!("\"key\" = \"{key_id}\"")), "{plan}");
    assert!(plan.contains("\"verified\" = true"), "{plan}");
    env.mlops(&["apply", "--auto-approve"]).ok();
    let state: serde_json::Value = serde_json::from_str(&env.mlops(&["state", "--json"]).ok().stdout).unwrap();
    let model = state["resources"].as_array().unwrap().iter().find(|r| r["address"] == "models.churn").unwrap();
    let bundle = std::fs::read(env.join("model.json.sig")).unwrap();
    assert_eq!(model["record"]["attributes"]["signature"]["key"], key_id.as_str());
    assert_eq!(
        model["record"]["attributes"]["signature"]["bundle_digest"],
        format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bundle)))
    );
    assert_eq!(env.mlops(&["plan", "--detailed-exitcode"]).status, 0, "nothing to do once recorded");
    let applies = env.lineage("signed").len();

    let refused = |what: &str, said: &str| {
        let run = env.mlops(&["apply", "--auto-approve"]);
        assert_eq!(run.status, 1, "{what}: {}", run.stdout);
        assert!(flat(&run.stderr).contains(said), "{what}: {}", run.stderr);
        assert!(run.stderr.contains("8 │     signature:"), "{what}: at the line: {}", run.stderr);
        assert_eq!(env.lineage("signed").len(), applies, "{what}: nothing applied");
    };
    env.write("model.json", "{\"weights\": [2]}\n");
    refused("a byte changed", "models.churn: the artifact differs from the signed bytes");
    env.write("model.json", "{\"weights\": [1]}\n");
    env.write("mlops.yaml", &SPEC.replace("signer.pub.pem", "other.pub.pem"));
    refused("another key", "the signature does not verify: none of its 1 signature(s) verifies with the key");
    env.write("mlops.yaml", &SPEC.replace("key: keys/signer.pub.pem", "key: keys/signer.pub.pem, bundle: gone.sig"));
    refused("a missing bundle", "cannot read the signature bundle");
    env.write(
        "mlops.yaml",
        &SPEC.replace("key: keys/signer.pub.pem", "key: keys/signer.pub.pem, identity: ci@example.com"),
    );
    refused("keyless", "certificate (keyless) signatures need Fulcio");

    // The policy: an unsigned model is blocked; the signed one passes.
    let policy = "policies:\n  require_signed_models: true\n";
    env.write("mlops.yaml", &format!("{SPEC}{policy}"));
    assert_eq!(env.mlops(&["check"]).status, 0);
    env.write("mlops.yaml", &format!("{}{policy}", SPEC.replace("    signature: { key: keys/signer.pub.pem }\n", "")));
    let blocked = env.mlops(&["check"]);
    assert_eq!(blocked.status, 3, "{}", blocked.stderr);
    assert!(blocked.stderr.contains("policy::unsigned_model"), "{}", blocked.stderr);
}

/// A folder model signed locally by model-signing's CLI, then uploaded to a GCS bucket
/// (fake-gcs-server): the plan verifies it from the bytes GCS holds at the pinned generations,
/// and an object rewritten in the bucket after signing is refused at the `signature:` line with
/// nothing applied, as is a bucket artifact without a local bundle.
#[cfg(feature = "gcp")]
#[test]
#[ignore = "needs PyPI model-signing and fake-gcs-server: `eval \"$(scripts/services up validators gcp)\"`, then `cargo test -- --include-ignored`"]
fn a_bucket_model_verifies_from_the_bytes_the_bucket_holds() {
    use crate::gcp::{emulator, put_object, unique, versioned_bucket};
    let gcs = emulator();
    let env = TestEnv::new();
    keys(&env);
    let files = [("weights.bin", "0123456789"), ("config.json", "{\"layers\": 3}"), ("vocab/tokens.txt", "a\nb\n")];
    for (name, body) in files {
        env.write(&format!("model/{name}"), body);
    }
    sign(&env, "model", "model.sig");
    let bucket = unique("signed");
    versioned_bucket(&gcs, &bucket);
    for (name, body) in files {
        put_object(&gcs, &bucket, &format!("churn/{name}"), body);
    }
    std::fs::remove_dir_all(env.join("model")).unwrap();
    let spec = format!(
        "version: 1\nproject: signed\nproviders:\n  gcp: {{ project: test }}\nmodels:\n  churn:\n    \
         artifact: gs://{bucket}/churn/\n    signature: {{ key: keys/signer.pub.pem, bundle: model.sig }}\n"
    );
    env.write("mlops.yaml", &spec);
    env.commit("a signed bucket model");
    let mlops = |args: &[&str]| env.mlops_env(args, &[("STORAGE_EMULATOR_HOST", gcs.as_str())]);
    let plan = mlops(&["plan"]).ok().stdout;
    assert!(plan.contains("\"verified\" = true") && plan.contains("\"files\" = 3"), "{plan}");
    mlops(&["apply", "--auto-approve"]).ok();
    let applies = env.lineage("signed").len();

    let refused = |what: &str, said: &str| {
        let run = mlops(&["apply", "--auto-approve"]);
        assert_eq!(run.status, 1, "{what}: {}", run.stdout);
        assert!(flat(&run.stderr).contains(said), "{what}: {}", run.stderr);
        assert!(run.stderr.contains("8 │     signature:"), "{what}: at the line: {}", run.stderr);
        assert_eq!(env.lineage("signed").len(), applies, "{what}: nothing applied");
    };
    env.write("mlops.yaml", &spec.replace(", bundle: model.sig", ""));
    refused("no local bundle", "set `signature.bundle` to the bundle's path");
    env.write("mlops.yaml", &spec);
    put_object(&gcs, &bucket, "churn/weights.bin", "0123456789 swapped");
    refused("an object swapped in the bucket", "`weights.bin` differs from the signed bytes");
}

/// A SageMaker model's tarball signed locally, then uploaded to a versioned S3 bucket on moto
/// (by boto3): the plan verifies it from the bytes of the pinned object version; a new version
/// uploaded after signing is refused at the `signature:` line with nothing applied.
#[cfg(all(feature = "aws", feature = "gcp"))]
#[test]
#[ignore = "needs PyPI model-signing and moto: `eval \"$(scripts/services up validators aws)\"`, then `cargo test -- --include-ignored`"]
fn an_s3_model_verifies_from_the_pinned_object_version() {
    let url = crate::aws::endpoint_url();
    let env = TestEnv::new();
    keys(&env);
    env.write("model.tar.gz", "not really a tarball, but bytes");
    sign(&env, "model.tar.gz", "model.tar.gz.sig");
    let bucket = crate::gcp::unique("signed");
    let upload = |body: &str| {
        crate::aws::boto3(
            &url,
            &format!(
                "s3 = boto3.client('s3', **kw)\nif {bucket:?} not in [b['Name'] for b in s3.list_buckets()['Buckets']]:\n    \
                 s3.create_bucket(Bucket={bucket:?})\n    \
                 s3.put_bucket_versioning(Bucket={bucket:?}, VersioningConfiguration={{'Status': 'Enabled'}})\n\
                 r = s3.put_object(Bucket={bucket:?}, Key='churn/model.tar.gz', Body={body:?})\nprint(json.dumps(r['VersionId']))"
            ),
        )
    };
    upload("not really a tarball, but bytes");
    let spec = format!(
        "version: 1\nproject: signed\nimages: {{ pin: tag }}\nproviders:\n  aws: {{ region: us-east-1 }}\nmodels:\n  churn:\n    \
         artifact: s3://{bucket}/churn/model.tar.gz\n    signature: {{ key: keys/signer.pub.pem, bundle: model.tar.gz.sig }}\n    \
         image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/xgboost:1\n    execution_role: arn:aws:iam::123456789012:role/sm\n"
    );
    env.write("mlops.yaml", &spec);
    env.commit("a signed S3 model");
    let mlops = |args: &[&str]| {
        env.mlops_env(
            args,
            &[
                ("AWS_ENDPOINT_URL", url.as_str()),
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
                ("AWS_REGION", "us-east-1"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ],
        )
    };
    let plan = mlops(&["plan"]).ok().stdout;
    assert!(plan.contains("\"verified\" = true") && plan.contains("\"files\" = 1"), "{plan}");
    upload("other bytes, uploaded after signing");
    let run = mlops(&["apply", "--auto-approve"]);
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(flat(&run.stderr).contains("the artifact differs from the signed bytes"), "{}", run.stderr);
    assert!(run.stderr.contains("9 │     signature:"), "at the line: {}", run.stderr);
    assert!(env.lineage("signed").is_empty(), "nothing applied");
}
