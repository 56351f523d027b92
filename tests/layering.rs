//! The house rule of the crate's layers (issue 15): `src/store/` speaks files and depends
//! on nothing above it. No module under it may name `crate::config`, `crate::s3`,
//! `crate::metrics` or `crate::auth`; this test reads every file there and fails naming
//! the file and line that does.

use std::path::{Path, PathBuf};

/// The modules above the store that it must never reach into.
const FORBIDDEN: &[&str] = &["crate::config", "crate::s3", "crate::metrics", "crate::auth"];

/// Every `.rs` file below `dir`, depth-first (bounded: the tree is the crate's own).
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("read src/store").flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The forbidden paths `text` names, with their line numbers. A match must end at a path
/// boundary (`crate::s3vol_x` is not `crate::s3`).
fn violations(text: &str) -> Vec<(usize, &'static str)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for f in FORBIDDEN {
            let hit = line.match_indices(f).any(|(i, _)| {
                let next = line[i + f.len()..].chars().next();
                !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
            });
            if hit {
                found.push((n + 1, *f));
            }
        }
    }
    // Grouped imports: `use crate::{config, s3::x}` names them too.
    for (i, _) in text.match_indices("crate::{") {
        let group = &text[i + "crate::{".len()..];
        let group = &group[..group.find('}').unwrap_or(group.len())];
        let line = text[..i].lines().count().max(1);
        for item in group.split(',').map(str::trim) {
            let head = item.split("::").next().unwrap_or("").trim();
            if let Some(f) = FORBIDDEN.iter().find(|f| f.strip_prefix("crate::") == Some(head)) {
                found.push((line, *f));
            }
        }
    }
    found
}

#[test]
fn store_names_no_module_above_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 10, "src/store holds the store's files: found {}", files.len());
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (line, what) in violations(&text) {
            bad.push(format!("{}:{line} names {what}", f.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap().display()));
        }
    }
    assert!(bad.is_empty(), "src/store must not depend on the layers above it:\n{}", bad.join("\n"));
}

#[test]
fn the_check_sees_each_forbidden_path_and_only_those() {
    assert_eq!(violations("use crate::config::X;\n  crate::s3::host::f();"), [(1, "crate::config"), (2, "crate::s3")]);
    assert_eq!(violations("crate::metrics::inc(); crate::auth::KeySet"), [(1, "crate::metrics"), (1, "crate::auth")]);
    assert!(violations("use crate::store::key; crate::s3vol_other; crate::configure").is_empty());
    assert_eq!(violations("use crate::{store::key, auth::KeySet};"), [(1, "crate::auth")]);
    assert!(violations("use crate::{store, s3vol};").is_empty());
}
