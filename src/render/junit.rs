//! `mlops check --format junit`: policy results as a JUnit XML test report, the format Jenkins'
//! `junit` step and GitLab's `artifacts:reports:junit` show as tests. A test case per resource of
//! the plan (it fails with one `<failure>` per violation about it) and one for the plan as a
//! whole (violations about no resource); warnings are the suite's `<system-out>`.

use std::fmt::Write as _;

use crate::plan::Plan;
use crate::policy::Violation;

/// One policy result with where it is written (`file`, line), when known.
pub struct Finding<'a> {
    pub violation: &'a Violation,
    pub at: Option<(String, usize)>,
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 has no place for other control characters.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn failure(out: &mut String, f: &Finding<'_>) {
    let at = f.at.as_ref().map(|(file, line)| format!("{file}:{line}: ")).unwrap_or_default();
    let _ = writeln!(
        out,
        "      <failure type=\"{}\" message=\"{}\">{}{}</failure>",
        escape(f.violation.code),
        escape(&f.violation.message),
        escape(&at),
        escape(&f.violation.message)
    );
}

/// The report of one stack's check.
pub fn check(plan: &Plan, violations: &[Finding<'_>], warnings: &[Finding<'_>]) -> String {
    let suite = format!("{}/{}", plan.project, plan.environment);
    let class = format!("mlops.{}.{}", plan.project, plan.environment);
    let mut cases = String::new();
    let mut failed = 0;
    let mut case = |name: &str, file: &str, line: Option<usize>, found: Vec<&Finding<'_>>| {
        let line = line.map(|l| format!(" line=\"{l}\"")).unwrap_or_default();
        let head = format!(
            "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\"{line}",
            escape(name),
            escape(&class),
            escape(file)
        );
        if found.is_empty() {
            let _ = writeln!(cases, "{head}/>");
        } else {
            failed += 1;
            let _ = writeln!(cases, "{head}>");
            for f in found {
                failure(&mut cases, f);
            }
            let _ = writeln!(cases, "    </testcase>");
        }
    };
    let about = |a: Option<&mlops_provider_core::Address>| -> Vec<&Finding<'_>> {
        violations.iter().filter(|f| f.violation.address.as_ref() == a).collect()
    };
    let spec = &plan.source.spec;
    for c in &plan.changes {
        let found = about(Some(&c.address));
        let line = found.iter().find_map(|f| f.at.as_ref().map(|(_, l)| *l));
        case(&c.address.to_string(), spec, line, found);
    }
    case("(the plan)", spec, None, about(None));
    let tests = plan.changes.len() + 1;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"mlops check\" tests=\"{tests}\" failures=\"{failed}\" errors=\"0\">\n  \
         <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failed}\" errors=\"0\" skipped=\"0\" timestamp=\"{}\">",
        escape(&suite),
        escape(&plan.created_at),
    );
    out.push_str(&cases);
    if !warnings.is_empty() {
        let lines: Vec<String> = warnings
            .iter()
            .map(|w| {
                let at = w.at.as_ref().map(|(file, line)| format!("{file}:{line}: ")).unwrap_or_default();
                format!("warning {} {at}{}", w.violation.code, w.violation.message)
            })
            .collect();
        let _ = writeln!(out, "    <system-out>{}</system-out>", escape(&lines.join("\n")));
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}
