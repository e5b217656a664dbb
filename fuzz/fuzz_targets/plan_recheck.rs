//! Saved plans with mutated fields against the recheck apply and `check` run: every mutation of a
//! real plan (the seeds) that still loads is refused (named by `differences`), changes nothing
//! the plan value holds, or touches a field other checks own (the spec digest, the provider
//! blocks, the stack, the source commit). None is believed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const SEEDS: [&str; 2] =
    [include_str!("../seeds/plan_loader/quickstart-create.json"), include_str!("../seeds/plan_loader/quickstart-update.json")];

/// Fields owned by the freshness check or that say nothing about what happens.
const CHECKED_ELSEWHERE: [&str; 6] = ["/format_version", "/mlops_version", "/project", "/environment", "/created_at", "/source"];

fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => m.iter().for_each(|(k, c)| pointers(c, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out)),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| pointers(c, format!("{at}/{i}"), out)),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let fresh = mlops::plan::Plan::from_bytes(SEEDS[usize::from(data[0]) % SEEDS.len()].as_bytes(), "seed").expect("seeds load");
    let json = serde_json::to_value(&fresh).expect("plans serialize");
    let mut all = Vec::new();
    pointers(&json, String::new(), &mut all);
    let at = &all[usize::from(u16::from_le_bytes([data[1], data[2]])) % all.len()];
    let Ok(replacement) = serde_json::from_slice::<Value>(&data[3..]) else { return };
    let mut edited = json.clone();
    let Some(slot) = edited.pointer_mut(at) else { return };
    *slot = replacement;
    let Ok(saved) = serde_json::from_value::<mlops::plan::Plan>(edited) else { return };
    if serde_json::to_value(&saved).expect("plans serialize") == json {
        return;
    }
    let owned_elsewhere =
        CHECKED_ELSEWHERE.iter().any(|p| at.starts_with(p)) || at.ends_with("/provider_config") || at.contains("/provider_config/");
    assert!(
        owned_elsewhere || !mlops::engine::recheck::differences(&saved, &fresh).is_empty(),
        "the edit at {at} was believed"
    );
});
