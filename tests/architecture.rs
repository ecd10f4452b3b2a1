//! The layer order of ARCHITECTURE.md holds: no `crate::` path in `src/` goes up the order.
//! The order is read from ARCHITECTURE.md itself, so the document and this check cannot drift.

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The layer entries, bottom first, from the marked list in ARCHITECTURE.md.
fn layers() -> Vec<Vec<String>> {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("ARCHITECTURE.md"))
        .expect("ARCHITECTURE.md is readable");
    let begin = doc.find("<!-- layer order: begin").expect("begin marker");
    let end = doc.find("<!-- layer order: end").expect("end marker");
    let mut layers = Vec::new();
    for line in doc[begin..end].lines().skip(1) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let name = line
            .split('`')
            .nth(1)
            .unwrap_or_else(|| panic!("layer line without a `module`: {line}"));
        layers.push(name.split("::").map(str::to_string).collect());
    }
    assert!(layers.len() > 10, "the layer list looks truncated");
    layers
}

/// Index of the most specific layer entry that is a prefix of `path`.
fn layer_of(layers: &[Vec<String>], path: &[String]) -> Option<usize> {
    layers
        .iter()
        .enumerate()
        .filter(|(_, l)| path.len() >= l.len() && path[..l.len()] == l[..])
        .max_by_key(|(_, l)| l.len())
        .map(|(i, _)| i)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under src/ (`src/orgs/api.rs` → `orgs::api`); `None` for the crate
/// root files.
fn module_of(src: &Path, file: &Path) -> Option<Vec<String>> {
    let rel = file.strip_prefix(src).ok()?;
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
        return None;
    }
    Some(parts)
}

/// The text with `//` comments blanked (offsets kept, so line numbers stay right).
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let mut in_str = false;
        let mut cut = None;
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if in_str => i += 1,
                b'"' => in_str = !in_str,
                b'/' if !in_str && bytes.get(i + 1) == Some(&b'/') => {
                    cut = Some(i);
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        match cut {
            Some(at) => {
                out.push_str(&line[..at]);
                out.extend(
                    line[at..]
                        .chars()
                        .map(|c| if c == '\n' { '\n' } else { ' ' }),
                );
            }
            None => out.push_str(line),
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path that follows `crate::`, with its byte offset: `crate::a::b`, and each item of
/// `crate::{a, b::{c}}`.
fn crate_paths(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("crate::") {
        let start = from + at;
        from = start + 7;
        if start > 0 && text[..start].ends_with(|c: char| is_ident(c) || c == ':' || c == '$') {
            continue; // `$crate::` or `other_crate::`
        }
        let rest = &text[start + 7..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut end = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = i;
                    break;
                }
            }
            let mut depth = 0;
            let mut item_start = 0;
            for (i, c) in group[..end].char_indices().chain([(end, ',')]) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        let item = group[item_start..i].trim();
                        if !item.is_empty() {
                            found.push((start, path_of(item)));
                        }
                        item_start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            found.push((start, path_of(rest)));
        }
    }
    found
}

/// The leading `a::b::c` identifiers of `text`.
fn path_of(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = text;
    loop {
        let len = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        if len == 0 {
            break;
        }
        parts.push(rest[..len].to_string());
        match rest[len..].strip_prefix("::") {
            Some(more) if more.starts_with(is_ident) => rest = more,
            _ => break,
        }
    }
    parts
}

#[test]
fn no_module_uses_one_above_it() {
    let layers = layers();
    let names = |i: usize| layers[i].join("::");
    let src = Path::new(ROOT).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let shown = file
            .strip_prefix(ROOT)
            .unwrap_or(file)
            .display()
            .to_string();
        let Some(own) = layer_of(&layers, &module) else {
            problems.push(format!(
                "{shown}: module `{}` is not in the layer order of ARCHITECTURE.md",
                module.join("::")
            ));
            continue;
        };
        let text = without_comments(&std::fs::read_to_string(file).expect("readable"));
        for (offset, path) in crate_paths(&text) {
            let Some(first) = path.first() else { continue };
            // Crate-root items (`AppState`, `Config`, the `app` function) are usable anywhere.
            if first.starts_with(|c: char| c.is_ascii_uppercase()) {
                continue;
            }
            let line = text[..offset].matches('\n').count() + 1;
            match layer_of(&layers, &path) {
                Some(target) if target <= own => {}
                Some(target) => problems.push(format!(
                    "{shown}:{line}: `{}` (layer {}) uses `crate::{}` (layer {}), which is above it",
                    names(own),
                    own + 1,
                    path.join("::"),
                    target + 1
                )),
                None if first == "app" && module[0] == "cli" => {}
                None => problems.push(format!(
                    "{shown}:{line}: `crate::{}` is not in the layer order of ARCHITECTURE.md",
                    path.join("::")
                )),
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the layer order of ARCHITECTURE.md is broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_path_reader_sees_groups_inline_paths_and_skips_comments() {
    let text = without_comments(
        "use crate::{a, b::{c, d}};\nlet x = crate::e::f(\"//\"); // crate::g\n$crate::h",
    );
    let paths: Vec<String> = crate_paths(&text)
        .into_iter()
        .map(|(_, p)| p.join("::"))
        .collect();
    assert_eq!(paths, ["a", "b", "e::f"]);
}
