//! The documented audit schema and the code cannot drift apart: every `AuditAction` has a row in
//! docs/audit.md and every row an action, and each row names the test that runs the action's
//! flow and asserts the event (that test runs with the suite, on SQLite and PostgreSQL).

use std::collections::BTreeSet;

use nulab_pass::audit::AuditAction;

const DOC: &str = include_str!("../docs/audit.md");

/// One row of the action table: the action and the test that proves it (file, function).
struct Row {
    action: String,
    file: String,
    test: String,
}

/// The action table's rows: lines starting with "| `" whose first cell is a dotted action.
fn rows() -> Vec<Row> {
    let start = DOC
        .find("### Actions")
        .expect("docs/audit.md has an Actions section");
    let end = DOC[start..].find("\n## ").map_or(DOC.len(), |i| start + i);
    DOC[start..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
            let code = |cell: &str| -> Vec<String> {
                cell.split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_string)
                    .collect()
            };
            let action = code(cells[0]).pop().unwrap_or_default();
            let proof = code(cells.last().expect("cells"));
            assert_eq!(
                proof.len(),
                2,
                "{action}: name `tests/file.rs` `test_fn`: {line}"
            );
            Row {
                action,
                file: proof[0].clone(),
                test: proof[1].clone(),
            }
        })
        .collect()
}

/// The text of `fn name(` in `source`, up to the closing brace at the start of a line.
fn body_of<'a>(source: &'a str, name: &str) -> Option<&'a str> {
    let start = source.find(&format!("fn {name}("))?;
    let end = source[start..]
        .find("\n}")
        .map_or(source.len(), |i| start + i);
    Some(&source[start..end])
}

#[test]
fn every_action_is_documented_and_every_documented_action_exists() {
    let documented: Vec<String> = rows().into_iter().map(|r| r.action).collect();
    let unique: BTreeSet<&String> = documented.iter().collect();
    assert_eq!(
        unique.len(),
        documented.len(),
        "an action is documented twice"
    );
    let code: BTreeSet<String> = AuditAction::ALL
        .iter()
        .map(|a| a.as_str().to_string())
        .collect();
    let docs: BTreeSet<String> = documented.into_iter().collect();
    let undocumented: Vec<_> = code.difference(&docs).collect();
    let unknown: Vec<_> = docs.difference(&code).collect();
    assert!(
        undocumented.is_empty(),
        "add these to docs/audit.md: {undocumented:?}"
    );
    assert!(
        unknown.is_empty(),
        "documented but not an AuditAction: {unknown:?}"
    );
    for action in AuditAction::ALL {
        let name = action.as_str();
        assert_eq!(AuditAction::parse(name), Some(*action));
        let well_formed = name.split('.').count() >= 2
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_');
        assert!(well_formed, "{name} is not <area>.<what_happened>");
    }
}

#[test]
fn each_documented_action_names_a_test_that_asserts_it() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut missing = Vec::new();
    for row in rows() {
        let path = format!("{root}/{}", row.file);
        let source = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{}: no file {}", row.action, row.file));
        match body_of(&source, &row.test) {
            None => missing.push(format!(
                "{}: no fn {} in {}",
                row.action, row.test, row.file
            )),
            Some(body) if !body.contains(&format!("\"{}\"", row.action)) => missing.push(format!(
                "{}: {}::{} does not assert it",
                row.action, row.file, row.test
            )),
            Some(_) => {}
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
