//! The release image (issue 14, point 2; SPEC §8): the archive that
//! `scripts/build-image` writes, read back from its OCI layout and with the
//! real skopeo. scripts/test builds it (profile ci-release) before the tests.

use std::process::Command;

use crate::chart_support::{cargo_version, describe, repo_root, run};
use crate::image_support::{Image, archive_path, read_archive};

const BINARY: &str = "/stuck-hr-recovery";
const CA_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";
const MAX_BINARY_BYTES: usize = 15_000_000;
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// `(platform, ELF e_machine)`: EM_X86_64 = 62, EM_AARCH64 = 183.
const PLATFORMS: [(&str, u16); 2] = [("linux/amd64", 62), ("linux/arm64", 183)];

/// What the ELF header and program headers of a binary say.
#[derive(Debug)]
struct Elf {
    machine: u16,
    has_interpreter: bool,
}

fn parse_elf(bytes: &[u8]) -> Elf {
    assert!(
        bytes.len() > 64 && bytes[..4] == *b"\x7fELF",
        "not an ELF file"
    );
    assert_eq!(bytes[4], 2, "not a 64-bit ELF");
    assert_eq!(bytes[5], 1, "not little-endian");
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let phoff = usize::try_from(u64_at(0x20)).expect("phoff");
    let phentsize = usize::from(u16_at(0x36));
    let phnum = usize::from(u16_at(0x38));
    const PT_INTERP: u32 = 3;
    let has_interpreter = (0..phnum).any(|i| {
        let at = phoff + i * phentsize;
        u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) == PT_INTERP
    });
    Elf {
        machine: u16_at(0x12),
        has_interpreter,
    }
}

#[test]
fn the_archive_is_one_index_for_linux_amd64_and_linux_arm64() {
    let archive = read_archive();
    let top = archive.top["manifests"].as_array().expect("manifests");
    assert_eq!(top.len(), 1, "index.json: {}", archive.top);
    assert_eq!(
        top[0]["mediaType"], OCI_INDEX,
        "index.json: {}",
        archive.top
    );
    assert_eq!(
        top[0]["annotations"]["org.opencontainers.image.ref.name"],
        cargo_version().as_str(),
        "the archive's reference is the version"
    );
    let mut platforms: Vec<&str> = archive.images.iter().map(|i| i.platform.as_str()).collect();
    platforms.sort_unstable();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    for image in &archive.images {
        let (os, arch) = image.platform.split_once('/').expect("os/arch");
        assert_eq!(image.config["os"], os, "{} config", image.platform);
        assert_eq!(
            image.config["architecture"], arch,
            "{} config",
            image.platform
        );
    }
}

#[test]
fn skopeo_reads_the_same_index_from_the_archive() {
    let archive = read_archive();
    let out = run(Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}", archive_path().display())));
    assert!(out.status.success(), "skopeo inspect:\n{}", describe(&out));
    let raw: serde_json::Value = serde_json::from_slice(&out.stdout).expect("skopeo prints JSON");
    assert_eq!(raw, archive.index);
    assert_eq!(raw["mediaType"], OCI_INDEX);
}

#[test]
fn each_image_holds_only_its_binary_and_the_ca_roots() {
    let archive = read_archive();
    for image in &archive.images {
        assert_eq!(
            image.regular_files(),
            [CA_ROOTS, BINARY],
            "{}: {:?}",
            image.platform,
            image.files
        );
        // Nothing else: only the directories that lead to those two files.
        for (path, entry) in &image.files {
            if entry.kind == 'f' {
                continue;
            }
            assert!(
                entry.kind == 'd' && CA_ROOTS.starts_with(&format!("{path}/")),
                "{}: unexpected entry {path} {entry:?}",
                image.platform
            );
        }
        let bin = &image.files[BINARY];
        assert_eq!((bin.uid, bin.gid, bin.mode), (0, 0, 0o755), "{BINARY}");
        let ca = &image.files[CA_ROOTS];
        assert_eq!((ca.uid, ca.gid, ca.mode), (0, 0, 0o644), "{CA_ROOTS}");
        let pem = String::from_utf8(image.read(CA_ROOTS)).expect("PEM text");
        assert!(
            pem.matches("-----BEGIN CERTIFICATE-----").count() > 50,
            "{}: {CA_ROOTS} is not a CA bundle",
            image.platform
        );
    }
}

#[test]
fn each_binary_is_a_static_elf_of_its_platform_within_15_mb() {
    let archive = read_archive();
    for (platform, machine) in PLATFORMS {
        let image: &Image = archive.image(platform);
        let bytes = image.read(BINARY);
        let elf = parse_elf(&bytes);
        assert_eq!(elf.machine, machine, "{platform}: ELF machine of {BINARY}");
        assert!(!elf.has_interpreter, "{platform}: {BINARY} is not static");
        assert!(
            bytes.len() <= MAX_BINARY_BYTES,
            "{platform}: {BINARY} is {} bytes, above {MAX_BINARY_BYTES}",
            bytes.len()
        );
    }
}

#[test]
fn each_image_runs_the_binary_as_user_65532() {
    let archive = read_archive();
    for image in &archive.images {
        assert_eq!(image.user(), "65532:65532", "{}", image.platform);
        assert_eq!(image.entrypoint(), [BINARY], "{}", image.platform);
        let cmd = &image.config["config"]["Cmd"];
        assert!(
            cmd.is_null() || cmd.as_array().is_some_and(Vec::is_empty),
            "{}: no Cmd, the entrypoint takes the pod's args: {cmd}",
            image.platform
        );
    }
}

#[test]
fn each_image_carries_the_oci_labels() {
    let archive = read_archive();
    let version = cargo_version();
    for image in &archive.images {
        let p = &image.platform;
        assert_eq!(
            image.label("org.opencontainers.image.source"),
            Some("https://github.com/openova/stuck-hr-recovery"),
            "{p}"
        );
        assert_eq!(
            image.label("org.opencontainers.image.version"),
            Some(version.as_str()),
            "{p}"
        );
        assert_eq!(
            image.label("org.opencontainers.image.licenses"),
            Some("Apache-2.0"),
            "{p}"
        );
        let revision = image
            .label("org.opencontainers.image.revision")
            .unwrap_or_else(|| panic!("{p}: no revision label"));
        assert!(
            revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit()),
            "{p}: revision {revision:?} is not a commit id"
        );
        let out = run(Command::new("git")
            .args(["cat-file", "-e", &format!("{revision}^{{commit}}")])
            .current_dir(repo_root()));
        assert!(
            out.status.success(),
            "{p}: revision {revision} is not a commit of this repository"
        );
    }
}
