//! The saved-plan loader on arbitrary bytes, then every renderer `show` uses on what it accepts:
//! an error or output, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(plan) = mlops::plan::Plan::from_bytes(data, "plan.json") {
        let _ = mlops::render::text::plan(&plan, &mlops::render::Style::PLAIN);
        let _ = mlops::render::markdown::plan(&plan);
        let _ = plan.to_json();
    }
});
