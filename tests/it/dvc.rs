//! DVC-versioned datasets (`source: dvc://…`) on the aws provider, against moto's S3, and on the
//! gcp provider, against fake-gcs-server, with a real DVC repository (`scripts/services up aws
//! gcp dvc`): DVC itself writes the pointers and pushes to its remote; mlops checks and records.
//! The checks read the pointers DVC wrote and the remote through boto3 (moto's venv) or the GCS
//! JSON API, not through mlops's own reads.

use serde_json::Value;

use crate::common::{TestEnv, change, flat, service};
use crate::gcp::unique;

struct Dvc {
    env: TestEnv,
    url: String,
    bucket: String,
    bin: String,
    /// fake-gcs-server, for a remote on GCS.
    gcs: Option<String>,
}

impl Dvc {
    /// A Git repository that is a DVC repository too, with a default remote on moto's S3.
    fn new() -> Dvc {
        let url = service("AWS_ENDPOINT_URL", Some("MLOPS_TEST_AWS"), "aws");
        let bin = service("MLOPS_TEST_DVC", None, "dvc");
        let bucket = unique("dvc-store");
        let d = Dvc { env: TestEnv::new(), url, bucket, bin, gcs: None };
        d.boto3(&format!("s3.create_bucket(Bucket={:?})", d.bucket));
        d.dvc(&["init", "-q"]);
        d.dvc(&["remote", "add", "-d", "store", &format!("s3://{}/cache", d.bucket)]);
        d.dvc(&["remote", "modify", "store", "endpointurl", &d.url]);
        d
    }

    /// A Git repository that is a DVC repository too, with a default remote on fake-gcs-server
    /// (DVC's gcsfs reaches it through STORAGE_EMULATOR_HOST, as mlops does).
    fn on_gcs() -> Dvc {
        let gcs = crate::gcp::emulator();
        let bin = service("MLOPS_TEST_DVC", None, "dvc");
        let bucket = unique("dvc-store");
        crate::gcp::versioned_bucket(&gcs, &bucket);
        let d = Dvc { env: TestEnv::new(), url: String::new(), bucket, bin, gcs: Some(gcs) };
        d.dvc(&["init", "-q"]);
        d.dvc(&["remote", "add", "-d", "store", &format!("gs://{}/cache", d.bucket)]);
        d
    }

    fn vars(&self) -> Vec<(&'static str, String)> {
        if let Some(gcs) = &self.gcs {
            return vec![("STORAGE_EMULATOR_HOST", gcs.clone())];
        }
        vec![
            ("AWS_ENDPOINT_URL", self.url.clone()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    fn dvc(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(&self.bin)
            .args(args)
            .current_dir(self.env.path())
            .envs(self.vars())
            .output()
            .expect("dvc runs");
        assert!(out.status.success(), "dvc {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn boto3(&self, statement: &str) {
        let python = service("MLOPS_TEST_MOTO_PYTHON", None, "aws");
        let script = format!(
            "import boto3\ns3 = boto3.client('s3', endpoint_url={:?}, region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test')\n{statement}\n",
            self.url
        );
        let out = std::process::Command::new(python).args(["-c", &script]).output().expect("python runs");
        assert!(out.status.success(), "boto3: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn mlops(&self, args: &[&str]) -> crate::common::Run {
        let vars = self.vars();
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.env.mlops_env(args, &vars)
    }

    /// The md5 DVC wrote into a pointer (read from its text, not through mlops).
    fn pointer_md5(&self, pointer: &str) -> String {
        let text = self.env.read(pointer);
        let line = text.lines().find_map(|l| l.trim().trim_start_matches("- ").strip_prefix("md5: ")).expect("an md5");
        line.trim().to_string()
    }

    fn recorded(&self, address: &str) -> Value {
        let state: Value = serde_json::from_str(&self.mlops(&["state", "--json"]).ok().stdout).unwrap();
        let found = state["resources"].as_array().unwrap().iter().find(|r| r["address"] == address).cloned();
        found.unwrap_or_else(|| panic!("{address} is recorded: {state}"))["record"]["attributes"]["dvc"].clone()
    }
}

const SPEC: &str = "version: 1\nproject: dvc\nproviders:\n  aws: { region: us-east-1 }\ndatasets:\n  train:\n    \
                    source: dvc://data/train.csv.dvc\n    labels: { owner: ml }\n  images:\n    source: dvc://data/images.dvc\n";

#[test]
#[ignore = "needs moto and DVC: `eval \"$(scripts/services up aws dvc)\"`, then `cargo test -- --include-ignored`"]
fn a_dvc_dataset_is_checked_in_its_remote_recorded_and_rolled_back_only_while_the_remote_holds_it() {
    let d = Dvc::new();
    d.env.write("data/train.csv", "id,x\n1,2\n");
    d.env.write("data/images/1.txt", "x\n");
    d.env.write("data/images/2.txt", "y\n");
    d.dvc(&["add", "-q", "data/train.csv", "data/images"]);
    d.dvc(&["push", "-q"]);
    d.env.write("mlops.yaml", SPEC);
    d.env.commit("a DVC stack");

    let run = d.mlops(&["apply", "--auto-approve"]).ok();
    assert!(run.stdout.contains("Resources: 2 added"), "{}", run.stdout);
    let v1_md5 = d.pointer_md5("data/train.csv.dvc");
    let train = d.recorded("datasets.train");
    assert_eq!(train["md5"], v1_md5.as_str(), "DVC's own md5: {train}");
    assert_eq!(train["size"], 9);
    assert_eq!(train["remote"], "store");
    assert_eq!(train["url"], format!("s3://{}/cache", d.bucket));
    let images = d.recorded("datasets.images");
    assert_eq!(images["md5"], d.pointer_md5("data/images.dvc").as_str());
    assert!(images["md5"].as_str().unwrap().ends_with(".dir"), "{images}");
    assert_eq!(images["nfiles"], 2);
    assert_eq!(d.mlops(&["plan", "--detailed-exitcode"]).status, 0, "nothing to do");
    let v1 = d.env.lineage("dvc")[0].clone();

    // A new version added but not pushed: refused at its source line, nothing recorded.
    d.env.write("data/train.csv", "id,x\n1,2\n3,4\n");
    d.dvc(&["add", "-q", "data/train.csv"]);
    d.env.commit("train v2");
    let refused = d.mlops(&["plan"]);
    assert_eq!(refused.status, 1, "{}{}", refused.stdout, refused.stderr);
    let text = flat(&refused.stderr);
    assert!(text.contains("is not pushed") && text.contains("run `dvc push`"), "{text}");
    assert!(refused.stderr.contains("mlops.yaml:7:"), "at the source line: {}", refused.stderr);
    assert_eq!(d.env.lineage("dvc").len(), 1);

    // Pushed: an update that records the new md5.
    d.dvc(&["push", "-q"]);
    let plan: Value = serde_json::from_str(&d.mlops(&["plan", "--json"]).ok().stdout).unwrap();
    assert_eq!(change(&plan, "datasets.train")["action"], "update", "{plan}");
    d.mlops(&["apply", "--auto-approve"]).ok();
    let v2_md5 = d.pointer_md5("data/train.csv.dvc");
    assert_ne!(v2_md5, v1_md5);
    assert_eq!(d.recorded("datasets.train")["md5"], v2_md5.as_str());

    // A rollback re-points the record to v1, which the remote still holds.
    d.mlops(&["rollback", &v1, "--out", "rb.json"]).ok();
    d.mlops(&["apply", "rb.json"]).ok();
    assert_eq!(d.recorded("datasets.train")["md5"], v1_md5.as_str());
    d.mlops(&["apply", "--auto-approve"]).ok();
    assert_eq!(d.recorded("datasets.train")["md5"], v2_md5.as_str(), "the spec's pointer again");

    // v1's object gone from the remote: a rollback to it is refused, nothing changes.
    let key = format!("cache/files/md5/{}/{}", &v1_md5[..2], &v1_md5[2..]);
    d.boto3(&format!("s3.delete_object(Bucket={:?}, Key={key:?})", d.bucket));
    let before = d.env.lineage("dvc");
    let refused = d.mlops(&["rollback", &v1]);
    assert_eq!(refused.status, 1, "{}{}", refused.stdout, refused.stderr);
    assert!(flat(&refused.stderr).contains("lacks 1 object(s)"), "{}", refused.stderr);
    assert_eq!(d.env.lineage("dvc"), before);

    // Removed from the spec: the datasets are forgotten, the remote left as DVC left it.
    d.env.write("mlops.yaml", "version: 1\nproject: dvc\nproviders:\n  aws: { region: us-east-1 }\n");
    d.env.commit("no datasets");
    let run = d.mlops(&["apply", "--auto-approve"]).ok();
    assert!(run.stdout.contains("2 destroyed"), "{}", run.stdout);
    d.boto3(&format!("n = s3.list_objects_v2(Bucket={:?})['KeyCount']\nassert n == 4, n", d.bucket));
}

/// A pipeline stage's output, as `dvc repro` records it in `dvc.lock` (`dvc://dvc.lock#STAGE:PATH`).
#[test]
#[ignore = "needs moto and DVC: `eval \"$(scripts/services up aws dvc)\"`, then `cargo test -- --include-ignored`"]
fn a_pipeline_stage_output_is_read_from_dvc_lock_and_checked_in_the_remote() {
    let d = Dvc::new();
    d.env.write("data/train.csv", "id,x\n1,2\n");
    d.dvc(&["add", "-q", "data/train.csv"]);
    d.dvc(&[
        "stage",
        "add",
        "-q",
        "-n",
        "prepare",
        "-d",
        "data/train.csv",
        "-o",
        "data/prepared.csv",
        "cp data/train.csv data/prepared.csv",
    ]);
    d.dvc(&["repro", "-q"]);
    let spec = "version: 1\nproject: dvc\nproviders:\n  aws: { region: us-east-1 }\ndatasets:\n  prepared:\n    \
                source: \"dvc://dvc.lock#prepare:data/prepared.csv\"\n";
    d.env.write("mlops.yaml", spec);
    d.env.commit("a DVC pipeline");
    let refused = d.mlops(&["plan"]);
    assert_eq!(refused.status, 1, "not pushed yet: {}{}", refused.stdout, refused.stderr);
    assert!(flat(&refused.stderr).contains("is not pushed"), "{}", refused.stderr);
    assert!(refused.stderr.contains("mlops.yaml:7:"), "{}", refused.stderr);

    d.dvc(&["push", "-q"]);
    d.mlops(&["apply", "--auto-approve"]).ok();
    // The stage copied train.csv: its output has the md5 DVC gave train.csv.
    assert_eq!(d.recorded("datasets.prepared")["md5"], d.pointer_md5("data/train.csv.dvc").as_str());
    assert_eq!(d.recorded("datasets.prepared")["path"], "data/prepared.csv");
    assert_eq!(d.mlops(&["plan", "--detailed-exitcode"]).status, 0);

    d.env.write("mlops.yaml", &spec.replace("#prepare:", "#train:"));
    let refused = d.mlops(&["plan"]);
    assert_eq!(refused.status, 1, "{}", refused.stderr);
    assert!(flat(&refused.stderr).contains("has no stage `train`"), "{}", refused.stderr);
}

/// The same on GCS: a file and a folder pushed by DVC to a gs:// remote are checked object by
/// object (each one's md5Hash, the folder's listing), recorded, and refused at the source line
/// once an object is gone from the remote.
#[test]
#[ignore = "needs fake-gcs-server and DVC: `eval \"$(scripts/services up gcp dvc)\"`, then `cargo test -- --include-ignored`"]
fn a_dvc_dataset_in_a_gcs_remote_is_checked_object_by_object_and_recorded() {
    let d = Dvc::on_gcs();
    d.env.write("data/train.csv", "id,x\n1,2\n");
    d.env.write("data/images/1.txt", "x\n");
    d.env.write("data/images/2.txt", "y\n");
    d.dvc(&["add", "-q", "data/train.csv", "data/images"]);
    let spec = SPEC.replace("aws: { region: us-east-1 }", "gcp: { project: test }");
    d.env.write("mlops.yaml", &spec);
    d.env.commit("a DVC stack on GCS");
    let refused = d.mlops(&["plan"]);
    assert_eq!(refused.status, 1, "not pushed yet: {}{}", refused.stdout, refused.stderr);
    assert!(flat(&refused.stderr).contains("is not pushed"), "{}", refused.stderr);
    assert!(refused.stderr.contains("mlops.yaml:7:"), "at the source line: {}", refused.stderr);

    d.dvc(&["push", "-q"]);
    let run = d.mlops(&["apply", "--auto-approve"]).ok();
    assert!(run.stdout.contains("Resources: 2 added"), "{}", run.stdout);
    let train = d.recorded("datasets.train");
    assert_eq!(train["md5"], d.pointer_md5("data/train.csv.dvc").as_str(), "DVC's own md5: {train}");
    assert_eq!(train["url"], format!("gs://{}/cache", d.bucket));
    let images = d.recorded("datasets.images");
    assert_eq!(images["md5"], d.pointer_md5("data/images.dvc").as_str());
    assert_eq!(images["nfiles"], 2);
    assert_eq!(d.mlops(&["plan", "--detailed-exitcode"]).status, 0, "nothing to do");

    // One file of the folder deleted from the remote (through the GCS JSON API): refused.
    let gcs = d.gcs.clone().unwrap();
    let listed = crate::gcp::curl(&[&format!("{gcs}/storage/v1/b/{}/o?prefix=cache/", d.bucket)]);
    let names: Vec<String> =
        listed["items"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names.len(), 4, "DVC pushed a file, a listing and two files: {names:?}");
    let file_of_folder =
        names.iter().find(|n| !n.ends_with(".dir") && !n.ends_with(&d.pointer_md5("data/train.csv.dvc")[2..])).unwrap();
    let encoded = file_of_folder.replace('/', "%2F");
    let out = std::process::Command::new("curl")
        .args(["-sS", "-X", "DELETE", &format!("{gcs}/storage/v1/b/{}/o/{encoded}", d.bucket)])
        .output()
        .unwrap();
    assert!(out.status.success());
    let refused = d.mlops(&["apply", "--auto-approve"]);
    assert_eq!(refused.status, 1, "{}{}", refused.stdout, refused.stderr);
    assert!(flat(&refused.stderr).contains("lacks 1 object(s)"), "{}", refused.stderr);
    assert!(refused.stderr.contains("mlops.yaml:10:"), "at the images source line: {}", refused.stderr);
}
