//! The protocol's contract, checked with the real buf (built by ./scripts/test from the Go
//! module proxy; `TETHER_BUF` names it, else `buf` on PATH): `buf lint` (STANDARD) is clean,
//! nothing breaks against the frozen v1 descriptor set, and the check does catch a break.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail by panicking

use std::path::{Path, PathBuf};
use std::process::Command;

use tether_tests::harness::{run, stderr, stdout};

fn proto_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("proto")
}

/// The buf binary, or a skip (a failure under CI, where the test command builds it).
fn buf() -> Option<PathBuf> {
    let candidate =
        std::env::var_os("TETHER_BUF").map_or_else(|| PathBuf::from("buf"), PathBuf::from);
    let found = Command::new(&candidate)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "buf is missing: ./scripts/test builds it (Go and the Go module proxy)"
        );
        eprintln!("skipping: buf not found (run ./scripts/test, or set TETHER_BUF)");
        return None;
    }
    Some(candidate)
}

fn buf_in(buf: &Path, dir: &Path, args: &[&str]) -> std::process::Output {
    // buf caches modules under XDG_CACHE_HOME / HOME; a throwaway one keeps tests hermetic.
    let cache = tempfile::tempdir().unwrap();
    run(Command::new(buf)
        .current_dir(dir)
        .env("BUF_CACHE_DIR", cache.path())
        .args(args))
}

#[test]
fn the_protocol_is_buf_lint_clean_and_compatible_with_the_v1_baseline() {
    let Some(buf) = buf() else { return };
    let lint = buf_in(&buf, &proto_dir(), &["lint"]);
    assert!(
        lint.status.success(),
        "buf lint:\n{}{}",
        stdout(&lint),
        stderr(&lint)
    );
    let breaking = buf_in(
        &buf,
        &proto_dir(),
        &["breaking", "--against", "v1-baseline.json"],
    );
    assert!(
        breaking.status.success(),
        "buf breaking against proto/v1-baseline.json:\n{}{}",
        stdout(&breaking),
        stderr(&breaking)
    );
}

#[test]
fn the_breaking_check_catches_a_changed_field() {
    let Some(buf) = buf() else { return };
    // A copy of proto/ where one field of the client API changes type.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("proto");
    std::fs::create_dir_all(copy.join("tether/v1")).unwrap();
    for f in ["buf.yaml", "v1-baseline.json", "tether/v1/agent.proto"] {
        std::fs::copy(proto_dir().join(f), copy.join(f)).unwrap();
    }
    let api = std::fs::read_to_string(proto_dir().join("tether/v1/api.proto")).unwrap();
    let changed = api.replacen(
        "  string workload_json = 1;",
        "  bytes workload_json = 1;",
        1,
    );
    assert_ne!(
        api, changed,
        "api.proto no longer has ApplyWorkloadRequest.workload_json"
    );
    std::fs::write(copy.join("tether/v1/api.proto"), changed).unwrap();

    let breaking = buf_in(&buf, &copy, &["breaking", "--against", "v1-baseline.json"]);
    let out = format!("{}{}", stdout(&breaking), stderr(&breaking));
    assert!(
        !breaking.status.success(),
        "buf breaking passed a changed field type:\n{out}"
    );
    assert!(out.contains("workload_json"), "{out}");
}
