//! Markdown for pull-request comments (GitHub and GitLab flavours): the summary and the flagged
//! changes first, then one collapsible section per resource, split into numbered parts that each
//! fit in one comment.

use std::fmt::Write;

use mlops_provider_core::Value;

use crate::plan::{Action, AttributeChange, DriftKind, Plan, ResourceChange};

/// GitHub's limit on a comment body, in characters.
pub const COMMENT_LIMIT: usize = 65_535;
/// Room kept in each part for its "part i of n" line.
const PART_HEADER_RESERVE: usize = 200;
/// Separates parts when they are printed together.
pub const PART_SEPARATOR: &str = "\n<!-- mlops:next-part -->\n";

fn value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn diff_lines(attrs: &[AttributeChange]) -> Vec<String> {
    let mut out = Vec::new();
    for a in attrs {
        let forces = if a.forces_replacement { "  # forces replacement" } else { "" };
        if let Some(b) = &a.before {
            out.push(format!("- {} = {}{}", a.path, value(b), if a.after.is_none() { forces } else { "" }));
        }
        if let Some(n) = &a.after {
            out.push(format!("+ {} = {}{forces}", a.path, value(n)));
        }
    }
    out
}

fn fenced(lines: &[String]) -> String {
    let fence = if lines.iter().any(|l| l.contains("```")) { "````" } else { "```" };
    format!("{fence}diff\n{}\n{fence}\n", lines.join("\n"))
}

fn verb(c: &ResourceChange) -> String {
    match c.action {
        Action::Replace => format!("replace (forced by {})", c.replace_reasons.join(", ")),
        other => other.verb().to_string(),
    }
}

/// One resource's collapsible section, cut to `max` characters if it must be.
fn section(c: &ResourceChange, max: usize) -> String {
    let tags: String = c.tags.iter().map(|t| format!(" · <b>{}</b>", t.name())).collect();
    let head =
        format!("<details><summary><code>{} {}</code> {}{tags}</summary>\n\n", c.action.symbol(), c.address, verb(c));
    let mut notes = String::new();
    for t in &c.tags {
        let _ = writeln!(notes, "- **{}**: {}", t.name(), escape(&t.describe()));
    }
    if !notes.is_empty() {
        notes.push('\n');
    }
    let tail = "\n</details>\n\n";
    let mut lines = diff_lines(&c.attributes);
    let mut body = if lines.is_empty() { String::new() } else { fenced(&lines) };
    let room = max.saturating_sub(head.len() + notes.len() + tail.len() + 120);
    if body.len() > room {
        let total = lines.len();
        while !lines.is_empty() && fenced(&lines).len() > room {
            lines.truncate(lines.len() * 3 / 4);
        }
        body = fenced(&lines);
        let _ = writeln!(
            body,
            "\n_{} more line(s) cut to fit the comment: see `mlops show` of the plan file._",
            total - lines.len()
        );
    }
    format!("{head}{notes}{body}{tail}")
}

/// Keeps text from opening HTML or tables by accident.
fn escape(s: &str) -> String {
    s.replace('<', "&lt;").replace('>', "&gt;").replace('|', "\\|")
}

fn short(id: &Option<String>) -> String {
    id.as_deref().map(|s| s.chars().take(12).collect()).unwrap_or_else(|| "none".into())
}

fn header(p: &Plan) -> String {
    let s = &p.summary;
    let mut out = format!("## mlops plan · `{}` / `{}`\n\n", p.project, p.environment);
    if let Some(promotion) = &p.promotion {
        let _ = writeln!(out, "> **{}**\n", promotion.describe());
    }
    if !p.has_changes() {
        let _ = writeln!(out, "**No changes.** The live state matches the spec.\n");
    } else {
        let _ = writeln!(
            out,
            "**{} to create · {} to update · {} to replace · {} to delete** · {} unchanged\n",
            s.create, s.update, s.replace, s.delete, s.no_op
        );
    }
    for c in p.changes.iter() {
        for w in &c.warnings {
            let _ = writeln!(out, "> ⚠️ `{}`: {w}\n", c.address);
        }
    }
    if s.unrecorded > 0 {
        let names: Vec<String> =
            p.changes.iter().filter(|c| c.is_to_record()).map(|c| format!("`{}`", c.address)).collect();
        let _ = writeln!(
            out,
            "**{} live but not recorded as live in lineage** (apply records them): {}\n",
            s.unrecorded,
            names.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "Source `{}`{} · spec `{}` · lineage base `{}`{}\n",
        short(&p.source.commit),
        if p.source.dirty { " (with uncommitted changes)" } else { "" },
        p.source.spec,
        short(&p.lineage.base),
        if p.targets.is_empty() { String::new() } else { format!(" · targets: {}", p.targets.join(", ")) }
    );
    let flagged: Vec<&ResourceChange> = p.changes.iter().filter(|c| !c.tags.is_empty()).collect();
    if !flagged.is_empty() {
        let _ = writeln!(out, "### ⚠️ Flagged changes\n\n| resource | flag | detail |\n|---|---|---|");
        for c in flagged {
            for t in &c.tags {
                let _ = writeln!(out, "| `{}` | **{}** | {} |", c.address, t.name(), escape(&t.describe()));
            }
        }
        out.push('\n');
    }
    let graph = crate::audit::plan_graph(p);
    // Small enough to read: a large change is better read as the list below.
    if !graph.edges.is_empty() && graph.nodes.len() <= 40 {
        let _ = write!(
            out,
            "<details><summary>Lineage of the changes</summary>\n\n```mermaid\n{}```\n</details>\n\n",
            crate::audit::mermaid(&graph)
        );
    }
    if !p.drift.is_empty() {
        let _ = writeln!(out, "### Drift: changed outside mlops since the last apply\n");
        for d in &p.drift {
            match d.kind {
                DriftKind::Deleted => {
                    let _ = writeln!(out, "- `{}` was deleted outside mlops", d.address);
                }
                DriftKind::Changed => {
                    let _ = write!(
                        out,
                        "<details><summary><code>! {}</code> changed outside mlops</summary>\n\n{}\n</details>\n\n",
                        d.address,
                        fenced(&diff_lines(&d.attributes))
                    );
                }
            }
        }
        out.push('\n');
    }
    if p.has_changes() {
        let _ = writeln!(out, "### Changes\n");
    }
    out
}

/// The plan as one or more comment bodies, each under [`COMMENT_LIMIT`] characters.
pub fn plan(p: &Plan) -> Vec<String> {
    let budget = COMMENT_LIMIT - PART_HEADER_RESERVE;
    let mut parts: Vec<String> = vec![];
    let mut current = header(p);
    if current.chars().count() > budget {
        // A pathological drift section: keep the summary, point at the plan file.
        current = format!(
            "{}\n_The drift details do not fit in a comment: see `mlops show` of the plan file._\n",
            header_summary(p)
        );
    }
    for c in p.changes.iter().filter(|c| c.action != Action::NoOp) {
        let s = section(c, budget);
        if current.chars().count() + s.chars().count() > budget {
            parts.push(std::mem::take(&mut current));
            current = format!("## mlops plan · `{}` / `{}` (continued)\n\n", p.project, p.environment);
        }
        current.push_str(&s);
    }
    parts.push(current);
    let n = parts.len();
    if n > 1 {
        for (i, part) in parts.iter_mut().enumerate() {
            part.insert_str(0, &format!("<sub>mlops plan · part {} of {n}</sub>\n\n", i + 1));
        }
    }
    parts
}

fn header_summary(p: &Plan) -> String {
    let h = header(p);
    h.split("### Drift").next().unwrap_or_default().to_string()
}

/// One stack's row in a combined comment: its id and its plan, or why there is none.
pub struct StackPlan<'a> {
    pub id: &'a str,
    pub plan: Result<&'a Plan, &'a str>,
    /// Said under the table, e.g. that it was planned against an upstream's recorded values.
    pub note: Option<String>,
}

/// The comment of `mlops plan --stacks --format markdown`: a table of every stack first (its
/// counts or its error), then each stack's plan as `plan` renders it, packed into parts that
/// each fit in one comment.
pub fn stacks(plans: &[StackPlan<'_>]) -> Vec<String> {
    let budget = COMMENT_LIMIT - PART_HEADER_RESERVE;
    let changed = plans.iter().filter(|p| p.plan.is_ok_and(|p| p.has_changes())).count();
    let failed = plans.iter().filter(|p| p.plan.is_err()).count();
    let mut head = format!(
        "## mlops plan · {} stack(s)\n\n**{changed} with changes · {failed} failed · {} unchanged**\n\n\
         | stack | create | update | replace | delete | |\n|---|---:|---:|---:|---:|---|\n",
        plans.len(),
        plans.len() - changed - failed
    );
    for p in plans {
        match p.plan {
            Ok(plan) => {
                let s = &plan.summary;
                let what = if plan.has_changes() { "changes" } else { "no changes" };
                let _ = writeln!(
                    head,
                    "| `{}` | {} | {} | {} | {} | {what} |",
                    p.id, s.create, s.update, s.replace, s.delete
                );
            }
            Err(e) => {
                let _ = writeln!(head, "| `{}` | | | | | ❌ {} |", p.id, escape(e));
            }
        }
    }
    for p in plans {
        if let Some(note) = &p.note {
            let _ = writeln!(head, "\n> `{}`: {}", p.id, escape(note));
        }
    }
    let mut pieces = vec![head];
    for p in plans {
        if let Ok(plan) = p.plan
            && plan.has_changes()
        {
            pieces.extend(self::plan(plan).into_iter().map(|part| {
                // A stack's own part numbering is replaced by the combined one.
                match part.strip_prefix("<sub>mlops plan · part ") {
                    Some(rest) => rest.split_once("\n\n").map(|(_, body)| body.to_string()).unwrap_or(part),
                    None => part,
                }
            }));
        }
    }
    let mut parts: Vec<String> = vec![];
    for piece in pieces {
        match parts.last_mut() {
            Some(last) if last.chars().count() + piece.chars().count() < budget => {
                last.push('\n');
                last.push_str(&piece);
            }
            _ => parts.push(piece),
        }
    }
    let n = parts.len();
    if n > 1 {
        for (i, part) in parts.iter_mut().enumerate() {
            part.insert_str(0, &format!("<sub>mlops plan · part {} of {n}</sub>\n\n", i + 1));
        }
    }
    parts
}
