//! PR-sized markdown: a 1,000-resource plan splits into comments that each fit and together hold
//! every resource.

use mlops::plan::{Action, AttributeChange, Plan};
use mlops::render::markdown::{self, COMMENT_LIMIT};

use crate::common::TestEnv;

#[test]
fn a_thousand_resources_split_into_parts_that_each_fit() {
    let env = TestEnv::quickstart();
    env.mlops(&["plan", "--out", "p.json"]).ok();
    let mut plan: Plan = serde_json::from_str(&env.read("p.json")).unwrap();
    let template = plan.changes[0].clone();
    plan.changes = (0..1000)
        .map(|i| {
            let mut c = template.clone();
            c.address = format!("datasets.ds-{i:04}").parse().unwrap();
            c.action = if i % 3 == 0 { Action::Update } else { Action::Create };
            c.attributes = (0..20)
                .map(|f| AttributeChange {
                    path: format!("files[\"part-{f:03}.csv\"]"),
                    before: (i % 3 == 0).then(|| format!("sha256:{:064x}", f).into()),
                    after: Some(format!("sha256:{:064x}", f + i).into()),
                    forces_replacement: false,
                })
                .collect();
            c
        })
        .collect();
    plan.summary = Plan::summarize(&plan.changes, &plan.drift);
    let parts = markdown::plan(&plan);
    assert!(parts.len() > 1, "a 1,000-resource plan does not fit one comment");
    for (i, part) in parts.iter().enumerate() {
        assert!(part.chars().count() <= COMMENT_LIMIT, "part {} has {} characters", i + 1, part.chars().count());
        assert!(part.starts_with(&format!("<sub>mlops plan · part {} of {}</sub>", i + 1, parts.len())));
        assert_eq!(
            part.matches("<details>").count(),
            part.matches("</details>").count(),
            "sections are never cut in two"
        );
    }
    for i in 0..1000 {
        let needle = format!("<code>{} datasets.ds-{i:04}</code>", if i % 3 == 0 { "~" } else { "+" });
        let holders = parts.iter().filter(|p| p.contains(&needle)).count();
        assert_eq!(holders, 1, "datasets.ds-{i:04} appears in exactly one part");
    }
    assert!(parts[0].contains("**334 to create · 0 to update") || parts[0].contains("to create"), "summary first");
}

/// `plan --stacks --format markdown`: the table of stacks first, then each stack's plan, packed
/// into parts that each fit and are numbered once for the whole comment.
#[test]
fn many_stacks_share_one_comment_split_into_parts_that_each_fit() {
    let env = TestEnv::quickstart();
    env.mlops(&["plan", "--out", "p.json"]).ok();
    let plan: Plan = serde_json::from_str(&env.read("p.json")).unwrap();
    let big = |project: &str| {
        let mut p = plan.clone();
        p.project = project.into();
        let template = p.changes[0].clone();
        p.changes = (0..400)
            .map(|i| {
                let mut c = template.clone();
                c.address = format!("datasets.ds-{i:04}").parse().unwrap();
                c.attributes = (0..20)
                    .map(|f| AttributeChange {
                        path: format!("files[\"part-{f:03}.csv\"]"),
                        before: None,
                        after: Some(format!("sha256:{:064x}", f + i).into()),
                        forces_replacement: false,
                    })
                    .collect();
                c
            })
            .collect();
        p.summary = Plan::summarize(&p.changes, &p.drift);
        p
    };
    let (a, b) = (big("a"), big("b"));
    let rows = [
        markdown::StackPlan { id: "a:default", plan: Ok(&a), note: None },
        markdown::StackPlan {
            id: "b:default",
            plan: Ok(&b),
            note: Some("planned with the values a:default recorded".into()),
        },
        markdown::StackPlan { id: "c:default", plan: Err("c/mlops.yaml: unknown field"), note: None },
    ];
    let parts = markdown::stacks(&rows);
    assert!(parts.len() > 2, "two 400-resource plans do not fit one comment");
    assert!(
        parts[0].contains("## mlops plan · 3 stack(s)")
            && parts[0].contains("| `c:default` | | | | | ❌ c/mlops.yaml: unknown field |")
    );
    assert!(parts[0].contains("> `b:default`: planned with the values a:default recorded"), "{}", &parts[0][..800]);
    for (i, part) in parts.iter().enumerate() {
        assert!(part.chars().count() <= COMMENT_LIMIT, "part {} has {} characters", i + 1, part.chars().count());
        assert!(
            part.starts_with(&format!("<sub>mlops plan · part {} of {}</sub>", i + 1, parts.len())),
            "{}",
            &part[..100]
        );
        assert_eq!(part.matches("<sub>mlops plan · part").count(), 1, "one numbering for the whole comment");
    }
    let all = parts.join("");
    for project in ["a", "b"] {
        assert_eq!(all.matches(&format!("## mlops plan · `{project}` / `default`\n")).count(), 1);
    }
    assert_eq!(all.matches("<code>+ datasets.ds-0399</code>").count(), 2, "every resource of both stacks, once each");
}

#[test]
fn one_huge_resource_is_cut_to_fit_with_a_note() {
    let env = TestEnv::quickstart();
    env.mlops(&["plan", "--out", "p.json"]).ok();
    let mut plan: Plan = serde_json::from_str(&env.read("p.json")).unwrap();
    plan.changes.truncate(1);
    plan.changes[0].attributes = (0..5000)
        .map(|f| AttributeChange {
            path: format!("files[\"part-{f:05}.csv\"]"),
            before: None,
            after: Some(format!("sha256:{:064x}", f).into()),
            forces_replacement: false,
        })
        .collect();
    let parts = markdown::plan(&plan);
    assert_eq!(parts.len(), 1);
    assert!(parts[0].chars().count() <= COMMENT_LIMIT);
    assert!(parts[0].contains("more line(s) cut to fit the comment"), "{}", &parts[0][..500]);
}

#[test]
fn parts_dir_writes_one_file_per_comment() {
    let env = TestEnv::quickstart();
    env.mlops(&["plan", "--out", "p.json"]).ok();
    env.mlops(&["show", "p.json", "--format", "markdown", "--parts-dir", "comments"]).ok();
    let body = env.read("comments/part-1.md");
    assert!(body.starts_with("## mlops plan · `quickstart` / `default`"), "{body}");
    assert!(!env.join("comments/part-2.md").exists());
}
