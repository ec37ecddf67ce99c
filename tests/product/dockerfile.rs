//! The Dockerfile (issue 5, point 5; issue 14, point 3). No Docker engine
//! exists here, so it is linted with the real hadolint and read instruction
//! by instruction; its final stage must hold what `scripts/build-image`'s
//! images hold (read back from the archive): files, user, entrypoint.

use std::process::Command;

use crate::chart_support::{describe, repo_root, run, tool};

/// One Dockerfile instruction: keyword (upper case) and its arguments, with
/// line continuations joined.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

/// A build stage: its `FROM` arguments and the instructions after it.
#[derive(Debug)]
struct Stage {
    from: String,
    body: Vec<Instruction>,
}

fn dockerfile_text() -> String {
    std::fs::read_to_string(repo_root().join("Dockerfile")).expect("Dockerfile readable")
}

fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, args) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        out.push(Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.split_whitespace().collect::<Vec<_>>().join(" "),
        });
        current.clear();
    }
    out
}

fn stages() -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    for ins in instructions(&dockerfile_text()) {
        if ins.keyword == "FROM" {
            stages.push(Stage {
                from: ins.args,
                body: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.body.push(ins);
        } else {
            assert!(ins.keyword == "ARG", "{ins:?} before the first FROM");
        }
    }
    stages
}

/// The `cargo build …` command in a text (first line that has it), words
/// normalised.
fn cargo_build_command(text: &str, what: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.find("cargo build").map(|at| &l[at..]))
        .unwrap_or_else(|| panic!("no `cargo build` in {what}"));
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// TARGETARCH → Rust target, as the builder stage maps them.
const TARGETS: [(&str, &str); 2] = [
    ("amd64", "x86_64-unknown-linux-musl"),
    ("arm64", "aarch64-unknown-linux-musl"),
];

#[test]
fn hadolint_reports_nothing() {
    let out = run(Command::new(tool("hadolint"))
        .args(["--format", "json", "--failure-threshold", "style"])
        .arg(repo_root().join("Dockerfile")));
    let findings: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("hadolint output is not JSON ({e}):\n{}", describe(&out)));
    assert_eq!(
        findings,
        serde_json::json!([]),
        "hadolint findings:\n{}",
        describe(&out)
    );
    assert!(out.status.success(), "hadolint failed:\n{}", describe(&out));
}

#[test]
fn builder_stage_is_rust_with_both_musl_targets() {
    let stages = stages();
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    let builder = &stages[0];
    assert!(
        builder.from.starts_with("rust:1.95") && builder.from.ends_with(" AS builder"),
        "builder stage: FROM {}",
        builder.from
    );
    let runs: Vec<&str> = builder
        .body
        .iter()
        .filter(|i| i.keyword == "RUN")
        .map(|i| i.args.as_str())
        .collect();
    for (arch, target) in TARGETS {
        assert!(
            runs.iter()
                .any(|r| r.contains(&format!("{arch}) target={target} ;;"))),
            "the builder maps TARGETARCH {arch} to {target}: {runs:?}"
        );
    }
    assert!(
        runs.iter()
            .any(|r| r.contains("rustup target add \"$target\"")),
        "the builder adds the musl target: {runs:?}"
    );
    assert!(
        runs.iter().any(|r| r.contains("musl-tools")),
        "the builder installs musl-tools: {runs:?}"
    );
}

#[test]
fn builder_rust_is_new_enough_for_the_workspace() {
    let stages = stages();
    let tag = stages[0].from.trim_start_matches("rust:");
    let version: Vec<u32> = tag
        .split(['-', ' '])
        .next()
        .expect("a version")
        .split('.')
        .map(|p| p.parse().expect("numeric version"))
        .collect();
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).expect("Cargo.toml");
    let wanted = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("rust-version = "))
        .expect("workspace rust-version")
        .trim_matches('"');
    let wanted: Vec<u32> = wanted
        .split('.')
        .map(|p| p.parse().expect("numeric"))
        .collect();
    assert!(
        version[..2] >= wanted[..2],
        "rust:{tag} is older than rust-version {wanted:?}"
    );
}

/// The words of a `cargo build`/`cargo zigbuild` command after the
/// subcommand, with `--target <t>` and `--profile <p>` taken out.
fn build_flags(command: &str) -> (Vec<String>, Option<String>) {
    let mut words = command.split(' ').skip(2).map(str::to_string);
    let mut flags = Vec::new();
    let mut profile = None;
    while let Some(w) = words.next() {
        match w.as_str() {
            "--target" => {
                words.next();
            }
            "--profile" => profile = words.next(),
            _ => flags.push(w),
        }
    }
    flags.retain(|w| !w.starts_with('$') && w != "\\");
    flags.sort();
    (flags, profile)
}

#[test]
fn dockerfile_and_build_static_build_the_same_locked_release_binary() {
    let docker = cargo_build_command(&dockerfile_text(), "Dockerfile");
    let script = std::fs::read_to_string(repo_root().join("scripts/build-static"))
        .expect("scripts/build-static");
    let zig = script
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.find("cargo zigbuild").map(|at| &l[at..]))
        .expect("cargo zigbuild in scripts/build-static")
        .replace(" >&2", "");
    let zig = zig.split_whitespace().collect::<Vec<_>>().join(" ");
    let (docker_flags, docker_profile) = build_flags(&docker);
    let (zig_flags, zig_profile) = build_flags(&zig);
    assert!(docker_flags.contains(&"--release".to_string()), "{docker}");
    assert_eq!(docker_profile, None, "{docker}");
    assert_eq!(zig_profile.as_deref(), Some("\"$profile\""), "{zig}");
    // Same flags otherwise: --locked and the one binary.
    let docker_rest: Vec<&String> = docker_flags.iter().filter(|w| *w != "--release").collect();
    assert_eq!(docker_rest, zig_flags.iter().collect::<Vec<_>>());
    assert!(zig_flags.contains(&"--locked".to_string()), "{zig}");
}

#[test]
fn final_stage_is_scratch() {
    let stages = stages();
    let last = stages.last().expect("a stage");
    assert_eq!(last.from, "scratch");
}

/// The final stage as (files, USER, ENTRYPOINT): the COPY destinations.
fn final_stage_contents() -> (Vec<String>, String, Vec<String>) {
    let stages = stages();
    let last = stages.last().expect("a stage");
    let keywords: Vec<&str> = last
        .body
        .iter()
        .map(|i| i.keyword.as_str())
        .filter(|k| !["ARG", "LABEL"].contains(k))
        .collect();
    assert_eq!(
        keywords,
        ["COPY", "COPY", "USER", "ENTRYPOINT"],
        "final stage: {:?}",
        last.body
    );
    let mut files = Vec::new();
    let mut user = String::new();
    let mut entrypoint = Vec::new();
    for ins in &last.body {
        match ins.keyword.as_str() {
            "COPY" => {
                let words: Vec<&str> = ins.args.split(' ').collect();
                assert_eq!(words.len(), 3, "COPY --from=builder <src> <dest>: {ins:?}");
                assert_eq!(words[0], "--from=builder", "{ins:?}");
                files.push(words[2].to_string());
            }
            "USER" => user = ins.args.clone(),
            "ENTRYPOINT" => {
                entrypoint =
                    serde_json::from_str(&ins.args).expect("ENTRYPOINT in exec (JSON) form");
            }
            _ => {}
        }
    }
    files.sort();
    (files, user, entrypoint)
}

#[test]
fn final_stage_has_the_contents_of_the_build_image_archive() {
    let (files, user, entrypoint) = final_stage_contents();
    let archive = crate::image_support::read_archive();
    for image in &archive.images {
        assert_eq!(
            image.regular_files(),
            files.iter().map(String::as_str).collect::<Vec<_>>(),
            "{}: files of scripts/build-image vs the Dockerfile",
            image.platform
        );
        assert_eq!(image.user(), user, "{}: USER", image.platform);
        assert_eq!(
            image.entrypoint(),
            entrypoint,
            "{}: ENTRYPOINT",
            image.platform
        );
    }
}

#[test]
fn final_stage_runs_as_a_numeric_non_root_user() {
    let (_, user, entrypoint) = final_stage_contents();
    let (uid, gid) = user.split_once(':').expect("USER uid:gid");
    let uid: u32 = uid.parse().expect("numeric uid");
    let gid: u32 = gid.parse().expect("numeric gid");
    assert_eq!((uid, gid), (65532, 65532));
    assert_eq!(entrypoint, ["/stuck-hr-recovery"]);
}

#[test]
fn no_instruction_needs_a_shell_at_run_time() {
    let stages = stages();
    let last = stages.last().expect("a stage");
    for ins in &last.body {
        assert!(
            !["RUN", "SHELL", "CMD", "HEALTHCHECK"].contains(&ins.keyword.as_str()),
            "final stage must not need a shell: {ins:?}"
        );
    }
}

#[test]
fn chart_runs_the_image_as_the_user_the_image_declares() {
    let values = crate::chart_support::read_yaml(&repo_root().join("chart/values.yaml"));
    for context in ["podSecurityContext", "securityContext"] {
        assert_eq!(values[context]["runAsUser"], 65532, "{context}.runAsUser");
        assert_eq!(values[context]["runAsGroup"], 65532, "{context}.runAsGroup");
    }
}

/// The patterns of .dockerignore, comments and blank lines dropped.
fn dockerignore_patterns() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join(".dockerignore")).expect(".dockerignore");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn dockerignore_keeps_build_output_and_tools_out() {
    let patterns = dockerignore_patterns();
    for excluded in ["target", ".tools", ".git"] {
        assert!(
            patterns.iter().any(|p| p == excluded),
            "{excluded} must be excluded: {patterns:?}"
        );
    }
    // Only plain top-level names and the profile-data glob: nothing the test
    // below could misread.
    for p in &patterns {
        assert!(
            p == "**/*.profraw" || !p.contains(['/', '*', '?', '!', '[']),
            "unsupported .dockerignore pattern {p:?}"
        );
    }
}

/// Copies `from` into `to`, leaving out what .dockerignore excludes.
fn copy_context(from: &std::path::Path, to: &std::path::Path, top: bool, patterns: &[String]) {
    for entry in std::fs::read_dir(from).expect("readable dir") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if (top && patterns.contains(&name)) || name.ends_with(".profraw") {
            continue;
        }
        let target = to.join(&name);
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_context(&entry.path(), &target, false, patterns);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn the_docker_build_context_holds_a_loadable_locked_workspace() {
    let context = tempfile::tempdir().expect("temp dir");
    copy_context(&repo_root(), context.path(), true, &dockerignore_patterns());
    let out = run(Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--locked",
            "--offline",
        ])
        .current_dir(context.path()));
    assert!(
        out.status.success(),
        "the workspace does not load from the Docker build context:\n{}",
        describe(&out)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let bins: Vec<&str> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter(|t| t["kind"] == serde_json::json!(["bin"]))
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        bins.contains(&"stuck-hr-recovery"),
        "the binary target: {bins:?}"
    );
}
