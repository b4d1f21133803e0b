//! Tells the crate which commit it is built from, for the `commit` label of
//! `wxgate_build_info`: `WXGATE_COMMIT` from the environment (a Docker
//! build has no `.git`: pass it as a build argument), else
//! `git rev-parse --short HEAD` when git and a repository are there. With
//! neither, the label is left out; this script never fails the build.

use std::process::Command;

fn main() {
    let from_env = std::env::var("WXGATE_COMMIT")
        .ok()
        .filter(|c| !c.is_empty());
    let commit = from_env.or_else(|| git(&["rev-parse", "--short=12", "HEAD"]));
    if let Some(commit) = commit.filter(|c| c.chars().all(|c| c.is_ascii_alphanumeric())) {
        println!("cargo:rustc-env=WXGATE_COMMIT={commit}");
    }
    // Release builds follow every commit. Debug builds keep cargo's
    // default (run again when a file of the package changes): following
    // HEAD there would rebuild the crate and every test binary after each
    // commit, which costs a shared build machine minutes for a label.
    if std::env::var("PROFILE").as_deref() == Ok("release") {
        println!("cargo:rerun-if-env-changed=WXGATE_COMMIT");
        println!("cargo:rerun-if-changed=build.rs");
        for path in ["HEAD", "packed-refs"] {
            watch(path);
        }
        if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch(&head);
        }
    }
}

/// Rebuilds when the git file at `path` (relative to the git directory,
/// which a worktree has elsewhere) changes.
fn watch(path: &str) {
    if let Some(file) = git(&["rev-parse", "--git-path", path]) {
        if std::path::Path::new(&file).exists() {
            println!("cargo:rerun-if-changed={file}");
        }
    }
}

/// A git command's output, or `None` without git or a repository.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_owned())
}
