//! The hub's layers import downwards only, and ARCHITECTURE.md's module map names every
//! module in the workspace (and nothing that is not there).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The layer a file of `hub/src` belongs to.
fn layer(relative: &Path) -> &'static str {
    let first = relative
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_str()
        .unwrap();
    match first {
        "api" => "api",
        "control" => "control",
        "sessions" => "sessions",
        "store" => "store",
        "admin" => "admin",
        "metrics.rs" => "metrics",
        // The composition root (hub.rs), the command (cli.rs, main.rs), the crate root and
        // test-only modules may use every layer.
        _ => "root",
    }
}

/// What each layer may import from the crate (besides itself).
fn allowed(layer: &str) -> &'static [&'static str] {
    match layer {
        "api" => &["control", "sessions", "store", "admin", "metrics"],
        "control" => &["sessions", "store", "metrics"],
        "sessions" => &["store", "metrics"],
        "store" => &[],
        "admin" => &["store"],
        "metrics" => &[],
        _ => &[
            "api", "control", "sessions", "store", "admin", "metrics", "hub", "cli",
        ],
    }
}

#[test]
fn hub_layers_import_downwards_only() {
    let src = root().join("hub/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap().to_path_buf();
        let layer = layer(&relative);
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, line) in text.lines().enumerate() {
            // Documentation may point anywhere; code may not.
            if line.trim_start().starts_with("//") {
                continue;
            }
            let mut rest = line;
            while let Some(at) = rest.find("crate::") {
                let after = &rest[at + "crate::".len()..];
                let target: String = after
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = after;
                let target = target.as_str();
                if target == layer || target.is_empty() {
                    continue;
                }
                if !allowed(layer).contains(&target) {
                    wrong.push(format!(
                        "hub/src/{}:{}: {layer} imports crate::{target}",
                        relative.display(),
                        i + 1
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layer order (ARCHITECTURE.md, \"The hub in layers\"):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn architecture_md_names_every_module_and_only_those() {
    let root = root();
    let mut files = Vec::new();
    for krate in [
        "agent",
        "client",
        "common",
        "controller",
        "ctl",
        "emulator",
        "hub",
        "tests",
    ] {
        rust_files(&root.join(krate).join("src"), &mut files);
    }
    let on_disk: BTreeSet<String> = files
        .iter()
        .map(|f| {
            f.strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/")
        })
        // Unit tests beside a module belong to it.
        .filter(|f| !f.ends_with("/tests.rs"))
        .collect();
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let map = doc
        .split("\n## Module map")
        .nth(1)
        .expect("ARCHITECTURE.md has a \"Module map\" section");
    let map = map.split("\n## ").next().unwrap();
    let named: BTreeSet<String> = map
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| s.ends_with(".rs"))
        .map(str::to_string)
        .collect();
    let missing: Vec<&String> = on_disk.difference(&named).collect();
    let stale: Vec<&String> = named.difference(&on_disk).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "ARCHITECTURE.md's module map is out of date.\nnot in it: {missing:#?}\nnot in the repo: {stale:#?}"
    );
}
