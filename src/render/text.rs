//! The human rendering, in the Terraform tradition: `+` create, `~` update, `-/+` replace, `-` delete.

use std::fmt::Write;

use mlops_provider_core::Value;

use super::Style;
use crate::lineage::Entry;
use crate::plan::{Action, AttributeChange, DriftKind, Plan};

/// Longer single-line values are shown whole; multi-line strings are diffed line by line.
fn show_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Object(m) if m.is_empty() => "{}".into(),
        Value::Array(a) if a.is_empty() => "[]".into(),
        other => other.to_string(),
    }
}

fn is_multiline(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::String(s)) if s.contains('\n'))
}

fn write_attribute(out: &mut String, style: &Style, indent: &str, c: &AttributeChange) {
    let forces = if c.forces_replacement { style.red(" # forces replacement") } else { String::new() };
    match (&c.before, &c.after) {
        (None, Some(after)) => {
            if let Value::Object(m) = after {
                if !m.is_empty() {
                    let _ = writeln!(out, "{indent}{} {} = {{", style.green("+"), c.path);
                    for (k, v) in m {
                        let _ = writeln!(out, "{indent}      {k:?} = {}", show_value(v));
                    }
                    let _ = writeln!(out, "{indent}    }}{forces}");
                    return;
                }
            }
            let _ = writeln!(out, "{indent}{} {} = {}{forces}", style.green("+"), c.path, show_value(after));
        }
        (Some(before), None) => {
            let _ = writeln!(out, "{indent}{} {} = {}{forces}", style.red("-"), c.path, show_value(before));
        }
        (Some(before), Some(after)) if is_multiline(c.before.as_ref()) || is_multiline(c.after.as_ref()) => {
            let (a, b) = (before.as_str().unwrap_or_default(), after.as_str().unwrap_or_default());
            let _ = writeln!(out, "{indent}{} {} = <<-EOT{forces}", style.yellow("~"), c.path);
            let diff = similar::TextDiff::from_lines(a, b);
            for change in diff.iter_all_changes() {
                let line = change.value().trim_end_matches('\n');
                let _ = match change.tag() {
                    similar::ChangeTag::Delete => writeln!(out, "{indent}    {}", style.red(&format!("- {line}"))),
                    similar::ChangeTag::Insert => writeln!(out, "{indent}    {}", style.green(&format!("+ {line}"))),
                    similar::ChangeTag::Equal => writeln!(out, "{indent}      {line}"),
                };
            }
            let _ = writeln!(out, "{indent}  EOT");
        }
        (Some(before), Some(after)) => {
            let _ = writeln!(
                out,
                "{indent}{} {} = {} → {}{forces}",
                style.yellow("~"),
                c.path,
                show_value(before),
                show_value(after)
            );
        }
        (None, None) => {}
    }
}

fn action_symbol(style: &Style, a: Action) -> String {
    match a {
        Action::Create => style.green("+"),
        Action::Update => style.yellow("~"),
        Action::Replace => style.red("-/+"),
        Action::Delete => style.red("-"),
        Action::NoOp => " ".into(),
    }
}

pub fn plan(p: &Plan, style: &Style) -> String {
    let mut out = String::new();
    if let Some(promotion) = &p.promotion {
        let _ = writeln!(out, "{}\n", style.bold(&style.magenta(&promotion.describe())));
    }
    if !p.drift.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            style.bold(&style.magenta("Drift: objects changed outside mlops since the last apply"))
        );
        let _ = writeln!(out);
        for d in &p.drift {
            match d.kind {
                DriftKind::Deleted => {
                    let _ = writeln!(
                        out,
                        "  {} {} was deleted outside mlops",
                        style.magenta("!"),
                        style.bold(&d.address.to_string())
                    );
                }
                DriftKind::Changed => {
                    let _ = writeln!(
                        out,
                        "  {} {} changed outside mlops",
                        style.magenta("!"),
                        style.bold(&d.address.to_string())
                    );
                    for c in &d.attributes {
                        write_attribute(&mut out, style, "      ", c);
                    }
                }
            }
        }
        let _ = writeln!(out);
    }
    for c in p.changes.iter().filter(|c| !c.warnings.is_empty()) {
        for w in &c.warnings {
            let _ = writeln!(out, "{} {}: {w}", style.yellow(&style.bold("Warning:")), c.address);
        }
    }
    if p.changes.iter().any(|c| !c.warnings.is_empty()) {
        let _ = writeln!(out);
    }
    let behind: Vec<_> = p.changes.iter().filter(|c| c.is_behind()).collect();
    if !behind.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            style.bold(&style.yellow(
                "Recorded in another state: live objects as the spec wants them, lineage behind (apply records them as live)"
            ))
        );
        let _ = writeln!(out);
        for c in &behind {
            let _ = writeln!(out, "  {} {}", style.yellow("?"), style.bold(&c.address.to_string()));
        }
        let _ = writeln!(out);
    }
    let unrecorded: Vec<_> = p.changes.iter().filter(|c| c.is_unrecorded()).collect();
    if !unrecorded.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            style.bold(
                &style.yellow("Exists but is not recorded: live objects lineage does not know (apply records them)")
            )
        );
        let _ = writeln!(out);
        for c in &unrecorded {
            let _ = writeln!(out, "  {} {}", style.yellow("?"), style.bold(&c.address.to_string()));
        }
        let _ = writeln!(out);
    }
    let changed: Vec<_> = p.changes.iter().filter(|c| c.action != Action::NoOp).collect();
    if changed.is_empty() && p.summary.unrecorded > 0 {
        let _ = writeln!(out, "{} {} to record, nothing to change.", style.bold("Plan:"), p.summary.unrecorded);
        return out;
    }
    if changed.is_empty() {
        let _ = writeln!(
            out,
            "{} The live state matches the spec{}.",
            style.green(&style.bold("No changes.")),
            if p.drift.is_empty() { "" } else { " (the drift above is already what the spec wants)" }
        );
        return out;
    }
    let _ = writeln!(out, "mlops will perform the following actions:");
    let _ = writeln!(out);
    for c in changed {
        let mut head = format!("{} {}", action_symbol(style, c.action), style.bold(&c.address.to_string()));
        let why = match c.action {
            Action::Replace if c.create_before_destroy => format!(
                "will be replaced (forced by {}), the new one created before the old one is deleted",
                c.replace_reasons.join(", ")
            ),
            Action::Replace => format!("will be replaced (forced by {})", c.replace_reasons.join(", ")),
            Action::Delete if c.live.is_none() => "will be forgotten (already gone)".into(),
            Action::Delete => "will be deleted (removed from the spec)".into(),
            Action::Create => "will be created".into(),
            Action::Update => "will be updated in place".into(),
            Action::NoOp => String::new(),
        };
        let _ = write!(head, " {}", style.dim(&format!("# {why}")));
        if !c.tags.is_empty() {
            let names: Vec<&str> = c.tags.iter().map(|t| t.name()).collect();
            let flags = format!("[{}]", names.join(", "));
            let _ = write!(
                head,
                " {}",
                if c.data_destroying { style.red(&style.bold(&flags)) } else { style.yellow(&flags) }
            );
        }
        let _ = writeln!(out, "  {head}");
        for t in &c.tags {
            let _ = writeln!(out, "      {}", style.dim(&format!("# {}: {}", t.name(), t.describe())));
        }
        for a in &c.attributes {
            write_attribute(&mut out, style, "      ", a);
        }
        let _ = writeln!(out);
    }
    let s = &p.summary;
    let _ = writeln!(
        out,
        "{} {} to create, {} to update, {} to replace, {} to delete, {} unchanged{}.",
        style.bold("Plan:"),
        s.create,
        s.update,
        s.replace,
        s.delete,
        s.no_op,
        if s.unrecorded > 0 { format!(", {} to record", s.unrecorded) } else { String::new() }
    );
    let flagged = flag_counts(p);
    if !flagged.is_empty() {
        let _ = writeln!(out, "{} {}", style.bold("Flagged:"), flagged);
    }
    out
}

/// `1 data-destroying, 2 traffic-shift`, in tag order; empty when nothing is flagged.
pub fn flag_counts(p: &Plan) -> String {
    let mut counts: Vec<(&'static str, usize)> = Vec::new();
    for t in p.changes.iter().flat_map(|c| c.tags.iter()) {
        match counts.iter_mut().find(|(n, _)| *n == t.name()) {
            Some((_, k)) => *k += 1,
            None => counts.push((t.name(), 1)),
        }
    }
    counts.iter().map(|(n, k)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
}

pub fn log_entry(e: &Entry, style: &Style) -> String {
    use crate::plan::OutcomeStatus as S;
    let mut out = String::new();
    let _ = writeln!(out, "{} {}", style.yellow(&format!("lineage {}", e.commit)), style.dim(&e.summary));
    let _ = writeln!(out, "Date:    {}", e.time);
    let _ = writeln!(out, "By:      {}", e.applied_by);
    let source = e.trailers.get("Source-Commit").map(String::as_str).unwrap_or("none");
    let dirty = if e.trailers.get("Source-Dirty").map(String::as_str) == Some("true") {
        " (with uncommitted changes)"
    } else {
        ""
    };
    let _ = writeln!(out, "Source:  {source}{dirty}");
    let _ = writeln!(out, "Result:  {}", e.trailers.get("Result").map(String::as_str).unwrap_or("unknown"));
    for c in &e.changes {
        let version = c
            .outputs
            .as_ref()
            .and_then(crate::plan::version_text)
            .map(|v| format!("  version {v}"))
            .unwrap_or_default();
        let _ = match c.status {
            S::Applied => writeln!(out, "    {} {}{}", action_symbol(style, c.action), c.address, style.dim(&version)),
            S::Failed => {
                writeln!(out, "    {} {} failed: {}", style.red("!"), c.address, c.error.as_deref().unwrap_or(""))
            }
            S::Skipped => {
                writeln!(out, "    {} {} skipped: {}", style.red("!"), c.address, c.error.as_deref().unwrap_or(""))
            }
        };
    }
    out
}

/// The table under `plan --stacks` and `apply --stacks`: each stack's counts, or its error.
pub fn stacks_table(ids: &[&str], plans: &[Result<std::sync::Arc<Plan>, String>]) -> String {
    let width = ids.iter().map(|i| i.len()).max().unwrap_or(5).max(5);
    let mut out = format!("{:width$}  {:>6} {:>6} {:>7} {:>6}\n", "stack", "create", "update", "replace", "delete");
    for (id, p) in ids.iter().zip(plans) {
        match p {
            Ok(p) => {
                let s = &p.summary;
                out.push_str(&format!(
                    "{id:width$}  {:>6} {:>6} {:>7} {:>6}{}\n",
                    s.create,
                    s.update,
                    s.replace,
                    s.delete,
                    if p.has_changes() { "" } else { "  (no changes)" }
                ));
            }
            Err(e) => out.push_str(&format!("{id:width$}  failed: {}\n", e.lines().next().unwrap_or_default())),
        }
    }
    out
}
