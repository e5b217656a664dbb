//! The spec loader on arbitrary bytes: a diagnostic or a spec, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let env = |k: &str| (k == "SET").then(|| "value".to_string());
    let registry = mlops::registry::Registry::builtin();
    let _ = mlops::spec::load_bytes(std::path::Path::new("/nonexistent/mlops.yaml"), "mlops.yaml", data, &env, &registry, &Default::default());
});
