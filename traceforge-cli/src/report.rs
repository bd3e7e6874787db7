//! The three renderings of a `traceforge check` report: text for people, JSON for scripts and
//! JUnit XML for CI test reports.

use serde_json::json;

use crate::check::{CheckReport, Finding};
use crate::style::Style;

pub(crate) fn print_text(report: &CheckReport, style: Style) {
    println!("traceforge check: {} cassette(s) in {}", report.cassettes.len(), report.directory);
    if let Some(note) = &report.usage_note {
        println!("{} {note}", style.yellow("note:"));
    }
    for note in &report.unreadable_records {
        println!("{} {note}", style.yellow("note:"));
    }
    for cassette in &report.cassettes {
        if cassette.problems.is_empty() && cassette.warnings.is_empty() {
            continue;
        }
        println!();
        let label = if cassette.problems.is_empty() { style.yellow("WARN") } else { style.red("FAIL") };
        println!("{label} {}", style.bold(&cassette.name));
        for finding in &cassette.problems {
            println!("  {} {}", style.red(&format!("{}:", finding.kind)), finding.message);
        }
        for finding in &cassette.warnings {
            println!("  {} {}", style.yellow(&format!("warning {}:", finding.kind)), finding.message);
        }
    }
    let problems = report.problem_count();
    let failing = report.cassettes.iter().filter(|c| !c.problems.is_empty()).count();
    let clean = report.cassettes.iter().filter(|c| c.problems.is_empty() && c.warnings.is_empty()).count();
    println!();
    let summary = format!(
        "{problems} problem(s) in {failing} cassette(s), {} warning(s), {clean} of {} cassette(s) clean",
        report.warning_count(),
        report.cassettes.len()
    );
    println!("{}", if problems > 0 { style.red(&summary) } else { style.green(&summary) });
}

fn findings_json(findings: &[Finding]) -> Vec<serde_json::Value> {
    findings.iter().map(|f| json!({"kind": f.kind, "message": f.message})).collect()
}

pub(crate) fn print_json(report: &CheckReport) {
    let cassettes: Vec<_> = report
        .cassettes
        .iter()
        .map(|c| {
            json!({
                "path": c.name,
                "status": c.status(),
                "problems": findings_json(&c.problems),
                "warnings": findings_json(&c.warnings),
            })
        })
        .collect();
    let document = json!({
        "directory": report.directory,
        "target_dir": report.target_dir.display().to_string(),
        "usage_checked": report.usage_note.is_none(),
        "usage_note": report.usage_note,
        "unreadable_usage_records": report.unreadable_records,
        "cassettes": cassettes,
        "summary": {
            "cassettes": report.cassettes.len(),
            "problems": report.problem_count(),
            "warnings": report.warning_count(),
        },
    });
    println!("{}", serde_json::to_string_pretty(&document).unwrap_or_default());
}

/// One `<testcase>` per cassette; its problems are one `<failure>`, its warnings `<system-out>`.
pub(crate) fn print_junit(report: &CheckReport) {
    let failures = report.cassettes.iter().filter(|c| !c.problems.is_empty()).count();
    let tests = report.cassettes.len();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml.push_str(&format!(
        "<testsuites name=\"traceforge check\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\">\n"
    ));
    xml.push_str(&format!(
        "  <testsuite name=\"traceforge check {}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\">\n",
        escape(&report.directory)
    ));
    if let Some(note) = &report.usage_note {
        xml.push_str(&format!("    <system-out>{}</system-out>\n", escape(note)));
    }
    for cassette in &report.cassettes {
        let name = escape(&cassette.name);
        if cassette.problems.is_empty() && cassette.warnings.is_empty() {
            xml.push_str(&format!("    <testcase classname=\"traceforge.check\" name=\"{name}\"/>\n"));
            continue;
        }
        xml.push_str(&format!("    <testcase classname=\"traceforge.check\" name=\"{name}\">\n"));
        if let Some(first) = cassette.problems.first() {
            let body: Vec<String> = cassette.problems.iter().map(|f| format!("{}: {}", f.kind, f.message)).collect();
            xml.push_str(&format!(
                "      <failure type=\"{}\" message=\"{}\">{}</failure>\n",
                first.kind,
                escape(&first.message),
                escape(&body.join("\n"))
            ));
        }
        if !cassette.warnings.is_empty() {
            let body: Vec<String> =
                cassette.warnings.iter().map(|f| format!("warning {}: {}", f.kind, f.message)).collect();
            xml.push_str(&format!("      <system-out>{}</system-out>\n", escape(&body.join("\n"))));
        }
        xml.push_str("    </testcase>\n");
    }
    xml.push_str("  </testsuite>\n</testsuites>");
    println!("{xml}");
}

/// Text for an XML attribute or element; characters XML 1.0 cannot hold are dropped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn xml_escaping() {
        assert_eq!(escape("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;");
    }
}
