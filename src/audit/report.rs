//! `mlops audit report`: one self-contained HTML file an auditor opens (no script, no network, no
//! font or style from elsewhere): `verify`'s verdict, the timeline of applies (who, CI run, pull
//! request, approver, policy verdict), each resource's history, the lineage graph as SVG, and the
//! signatures lineage recorded. Everything is read from lineage.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use super::{AuditLine, Graph, StateAt, Verification};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn short(commit: &str) -> &str {
    &commit[..12.min(commit.len())]
}

fn opt(s: &Option<String>) -> String {
    s.as_deref().map(esc).unwrap_or_else(|| "—".into())
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1b1f24}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de}\
table{border-collapse:collapse;width:100%}th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#f6f8fa}code{font:12px ui-monospace,monospace}.ok{color:#1a7f37;font-weight:600}\
.bad{color:#cf222e;font-weight:600}.meta{color:#57606a}svg text{font:12px system-ui,sans-serif}";

/// What the report shows.
pub struct Report<'a> {
    pub project: &'a str,
    pub environment: &'a str,
    pub lineage_ref: &'a str,
    pub verification: &'a Verification,
    pub lines: &'a [AuditLine],
    pub state: Option<&'a StateAt>,
    pub graph: Option<&'a Graph>,
    pub period: String,
}

pub fn html(r: &Report<'_>) -> String {
    let mut o = String::new();
    let title = format!("mlops audit report · {} / {}", r.project, r.environment);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n",
        esc(&title)
    );
    let _ = writeln!(o, "<h1>{}</h1>", esc(&title));
    let tip = r.state.map(|s| s.lineage_commit.as_str()).unwrap_or("none");
    let _ = writeln!(
        o,
        "<p class=\"meta\">Lineage <code>{}</code> at <code>{}</code> · {}</p>",
        esc(r.lineage_ref),
        esc(tip),
        esc(&r.period)
    );

    // The verdict.
    let v = r.verification;
    let _ = writeln!(o, "<h2>Integrity</h2>");
    if v.problems.is_empty() {
        let _ = writeln!(
            o,
            "<p id=\"verdict\" class=\"ok\">verify: {} commit(s), every one intact (each commit's records agree with its plan and results).</p>",
            v.commits
        );
    } else {
        let _ = writeln!(
            o,
            "<p id=\"verdict\" class=\"bad\">verify: {} problem(s) in {} commit(s)</p><ul>",
            v.problems.len(),
            v.commits
        );
        for p in &v.problems {
            let _ = writeln!(o, "<li><code>{}</code> {}</li>", esc(short(&p.commit)), esc(&p.problem));
        }
        let _ = writeln!(o, "</ul>");
    }

    // The timeline: one row per apply, its changes summarized.
    let mut applies: Vec<(&str, Vec<&AuditLine>)> = Vec::new();
    for l in r.lines {
        match applies.last_mut() {
            Some((c, ls)) if *c == l.lineage_commit => ls.push(l),
            _ => applies.push((&l.lineage_commit, vec![l])),
        }
    }
    let _ = writeln!(
        o,
        "<h2>Timeline</h2>\n<table id=\"timeline\"><thead><tr><th>time</th><th>applied by</th><th>CI run</th><th>pull request</th><th>approved by</th><th>source commit</th><th>changes</th><th>policy</th><th>lineage commit</th></tr></thead><tbody>"
    );
    for (commit, ls) in &applies {
        let first = ls[0];
        let changes: Vec<String> = ls
            .iter()
            .map(|l| {
                let mark = if l.result == "applied" {
                    String::new()
                } else {
                    format!(" <span class=\"bad\">{}</span>", esc(&l.result))
                };
                format!("{} <code>{}</code>{mark}", esc(&l.action), esc(&l.address))
            })
            .collect();
        let _ = writeln!(
            o,
            "<tr class=\"apply\" id=\"apply-{c}\" data-commit=\"{c}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&first.time),
            esc(&first.applied_by),
            opt(&first.ci_run),
            opt(&first.pull_request),
            opt(&first.approved_by),
            first.source_commit.as_deref().map(short).map(esc).unwrap_or_else(|| "—".into()),
            changes.join("<br>"),
            opt(&first.policy),
            esc(short(commit)),
            c = esc(commit),
        );
    }
    let _ = writeln!(o, "</tbody></table>");

    // Each resource's history.
    let mut by_resource: BTreeMap<&str, Vec<&AuditLine>> = BTreeMap::new();
    for l in r.lines {
        by_resource.entry(&l.address).or_default().push(l);
    }
    let _ = writeln!(o, "<h2>Resources</h2>");
    for (address, ls) in &by_resource {
        let _ = writeln!(
            o,
            "<h3 id=\"resource-{a}\"><code>{a}</code></h3>\n<table class=\"history\"><thead><tr><th>time</th><th>action</th><th>version</th><th>result</th><th>by</th></tr></thead><tbody>",
            a = esc(address)
        );
        for l in ls {
            let version = match (&l.version_before, &l.version_after) {
                (Some(b), Some(a)) if b != a => format!("{} → {}", esc(b), esc(a)),
                (_, Some(a)) => esc(a),
                (Some(b), None) => format!("{} → —", esc(b)),
                (None, None) => "—".into(),
            };
            let result = match &l.error {
                Some(e) => format!("<span class=\"bad\">{}</span>: {}", esc(&l.result), esc(e)),
                None => esc(&l.result),
            };
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{}</td><td><code>{version}</code></td><td>{result}</td><td>{}</td></tr>",
                esc(&l.time),
                esc(&l.action),
                esc(&l.applied_by)
            );
        }
        let _ = writeln!(o, "</tbody></table>");
    }

    // The graph, and signatures, as lineage holds them now.
    let _ = writeln!(o, "<h2>Lineage graph</h2>");
    match r.graph {
        Some(g) => o.push_str(&svg(g)),
        None => o.push_str("<p>Nothing is recorded.</p>\n"),
    }
    let _ = writeln!(o, "<h2>Signatures</h2>");
    let signed: Vec<(&str, &Value)> = r
        .state
        .map(|s| {
            s.resources
                .iter()
                .filter_map(|x| {
                    x.record.attributes.get(crate::engine::signature::SIGNATURE).map(|v| (x.address.as_str(), v))
                })
                .collect()
        })
        .unwrap_or_default();
    if signed.is_empty() {
        let _ = writeln!(o, "<p id=\"signatures\">No model carries a verified signature.</p>");
    } else {
        let _ = writeln!(
            o,
            "<table id=\"signatures\"><thead><tr><th>model</th><th>key</th><th>bundle</th><th>files</th></tr></thead><tbody>"
        );
        for (address, s) in signed {
            let text = |k: &str| {
                s.get(k).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).unwrap_or_default()
            };
            let _ = writeln!(
                o,
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>",
                esc(address),
                esc(&text("key")),
                esc(&text("bundle_digest")),
                esc(&text("files"))
            );
        }
        let _ = writeln!(o, "</tbody></table>");
    }
    o.push_str("</body></html>\n");
    o
}

/// The graph drawn left to right: a column per kind in the order data flows (datasets, models,
/// feature stores, endpoints, then any other), an arrow per edge labelled with its relation.
fn svg(g: &Graph) -> String {
    const W: i64 = 220;
    const H: i64 = 46;
    const GAP_X: i64 = 90;
    const GAP_Y: i64 = 24;
    let order = ["datasets", "models", "feature_stores", "endpoints"];
    let column = |kind: &str| order.iter().position(|k| *k == kind).unwrap_or(order.len()) as i64;
    let mut rows: BTreeMap<i64, i64> = BTreeMap::new();
    let mut at: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for n in &g.nodes {
        let c = column(&n.kind);
        let row = rows.entry(c).or_insert(0);
        at.insert(&n.address, (20 + c * (W + GAP_X), 20 + *row * (H + GAP_Y)));
        *row += 1;
    }
    let width = at.values().map(|(x, _)| x + W + 20).max().unwrap_or(200);
    let height = at.values().map(|(_, y)| y + H + 20).max().unwrap_or(60);
    let mut o = format!(
        "<svg id=\"graph\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">\n\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0L10,5L0,10z\" fill=\"#57606a\"/></marker></defs>\n"
    );
    for e in &g.edges {
        let (Some((fx, fy)), Some((tx, ty))) = (at.get(e.from.as_str()), at.get(e.to.as_str())) else { continue };
        let (x1, y1, x2, y2) = (fx + W, fy + H / 2, *tx, ty + H / 2);
        let _ = writeln!(
            o,
            "<g class=\"edge\" data-from=\"{}\" data-to=\"{}\"><path d=\"M{x1},{y1} C{},{y1} {},{y2} {x2},{y2}\" fill=\"none\" stroke=\"#57606a\" marker-end=\"url(#arrow)\"/><text x=\"{}\" y=\"{}\" fill=\"#57606a\">{}</text></g>",
            esc(&e.from),
            esc(&e.to),
            x1 + GAP_X / 2,
            x2 - GAP_X / 2,
            (x1 + x2) / 2 - 30,
            (y1 + y2) / 2 - 4,
            esc(&e.relation)
        );
    }
    for n in &g.nodes {
        let (x, y) = at[n.address.as_str()];
        let version = n.version.as_deref().map(|v| if v.len() > 26 { format!("{}…", &v[..25]) } else { v.to_string() });
        let _ = writeln!(
            o,
            "<g class=\"node\" data-address=\"{a}\"><rect x=\"{x}\" y=\"{y}\" width=\"{W}\" height=\"{H}\" rx=\"6\" fill=\"#f6f8fa\" stroke=\"#8c959f\"/><text x=\"{}\" y=\"{}\">{a}</text><text x=\"{}\" y=\"{}\" fill=\"#57606a\">{}</text></g>",
            x + 10,
            y + 19,
            x + 10,
            y + 36,
            esc(&version.map(|v| format!("version {v}")).unwrap_or_default()),
            a = esc(&n.address)
        );
    }
    o.push_str("</svg>\n");
    o
}
