//! Generates a lineage of N applies through mlops's own lineage writer (`Lineage::record`), for
//! `scripts/bench-lineage`: `gen-lineage DIR N START`. DIR holds the quickstart stack, applied
//! once (at Unix time START) with the real binary. Apply i (2 ≤ i < N) registers model version i
//! (a new digest) and moves the endpoint to it, one minute after the previous apply; apply N
//! records the live state again, so the next real apply starts from a true record.
//! Loose objects are packed every 5,000 applies, as `git gc --auto` would.

use std::path::PathBuf;

use mlops::lineage::{Lineage, Record};
use mlops::plan::{Action, Outcome, Outcomes};
use mlops::provider::{Address, Kind};
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, n, start] = args.as_slice() else {
        eprintln!("usage: gen-lineage DIR N START");
        std::process::exit(1);
    };
    let dir = PathBuf::from(dir);
    let n: usize = n.parse().expect("N is a number");
    let start: i64 = start.parse().expect("START is Unix seconds");
    let lineage = Lineage::open(&dir, "quickstart", "default").expect("a repository");
    let state = lineage.state().expect("lineage reads");
    let tip = lineage.tip().expect("lineage reads").expect("applied once");
    let plan = lineage.plan_at(tip).expect("plan reads").expect("a plan");
    let model = Address::new(Kind::Model, "churn-clf");
    let endpoint = Address::new(Kind::Endpoint, "churn-api");
    let mut expected = tip.to_string();
    let began = std::time::Instant::now();
    for i in 2..=n {
        let mut resources = state.resources.clone();
        if i < n {
            let m = resources.get_mut(&model).expect("the quickstart's model");
            m.attributes.insert("artifact_digest".into(), json!(format!("sha256:{i:064x}")));
            m.outputs.insert("version".into(), json!(i));
            m.outputs.insert("digest".into(), json!(format!("sha256:{i:064x}")));
            let e = resources.get_mut(&endpoint).expect("the quickstart's endpoint");
            e.outputs.insert("model_version".into(), json!(i));
            e.outputs.insert("traffic".into(), json!([{"model_version": i, "percent": 100}]));
            e.inputs.insert(model.to_string(), json!(i));
        }
        let mut plan = plan.clone();
        let now = start + 60 * (i as i64 - 1);
        plan.created_at = chrono::DateTime::from_timestamp(now, 0).expect("a time").to_rfc3339();
        plan.lineage.base = Some(expected.clone());
        let outcomes: Outcomes =
            [&model, &endpoint].iter().map(|a| (a.to_string(), Outcome::applied(Action::Update))).collect();
        expected = lineage
            .record(
                Some(&expected),
                Record { time: Some(now), ..Record::new(&plan.document(), &outcomes, &resources, &state) },
            )
            .expect("records");
        if i % 5000 == 0 {
            let packed = std::process::Command::new("git")
                .args(["repack", "-d", "-q"])
                .current_dir(&dir)
                .status()
                .expect("git runs");
            assert!(packed.success());
            eprintln!("  {i} applies recorded ({:.0} s)", began.elapsed().as_secs_f64());
        }
    }
}
