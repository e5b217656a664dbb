//! Provider tests need their test service. Without it they must show as skipped in the test
//! runner's own summary, or fail when asked for: never as passed. This runs this very test binary.

use std::process::Command;

fn this_binary(args: &[&str]) -> (bool, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(args)
        .env_remove("STORAGE_EMULATOR_HOST")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("KUBECONFIG")
        .env("RUST_TEST_THREADS", "1")
        .output()
        .expect("the test binary runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The tests of the provider modules compiled into this binary.
fn provider_tests(list: &str) -> Vec<String> {
    list.lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .filter(|name| {
            ["gcp::", "aws::", "dvc::", "kubernetes::", "vertex::", "mlflow::", "feast::", "dagster::"]
                .iter()
                .any(|m| name.starts_with(m))
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn every_provider_test_is_ignored_unless_asked_for() {
    let (_, all) = this_binary(&["--list"]);
    let (_, ignored) = this_binary(&["--list", "--ignored"]);
    let (all, ignored) = (provider_tests(&all), provider_tests(&ignored));
    assert_eq!(all, ignored, "every provider test carries #[ignore = \"needs ...\"]");
    if cfg!(feature = "gcp") {
        assert!(!all.is_empty(), "the gcp tests are compiled in");
    }
}

#[cfg(feature = "gcp")]
#[test]
fn a_provider_test_without_its_service_is_skipped_or_fails_never_passed() {
    let test = "gcp::apply_creates_bucket_and_objects_then_nothing_to_do";
    let (ok, out) = this_binary(&[test, "--exact"]);
    assert!(ok, "{out}");
    assert!(out.contains("test result: ok. 0 passed; 0 failed; 1 ignored"), "reported as skipped: {out}");
    let (ok, out) = this_binary(&[test, "--exact", "--include-ignored"]);
    assert!(!ok, "asked for without its service, it fails: {out}");
    assert!(out.contains("0 passed; 1 failed"), "{out}");
    assert!(out.contains("test service missing: STORAGE_EMULATOR_HOST is not set"), "{out}");
}
