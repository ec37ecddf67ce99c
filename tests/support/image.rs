//! Reads the release image archive `target/image/stuck-hr-recovery.oci.tar`
//! (written by `scripts/build-image`) back from its OCI layout: the index,
//! each platform's config and the files of its layers, with GNU tar. A
//! missing archive fails the test with the command that builds it.

#![allow(dead_code)] // each test crate uses a different subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Where `scripts/build-image` writes the archive.
pub fn archive_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/image/stuck-hr-recovery.oci.tar")
}

/// One entry of an image's file system, merged over its layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `f` regular file, `d` directory, anything else as tar shows it.
    pub kind: char,
    /// Permission bits, e.g. `0o755`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// One platform's image.
pub struct Image {
    /// `linux/amd64`.
    pub platform: String,
    /// The image config blob (`architecture`, `os`, `config.User`, …).
    pub config: Value,
    /// Absolute path → entry.
    pub files: BTreeMap<String, Entry>,
    layers: Vec<PathBuf>,
}

/// The unpacked archive.
pub struct Archive {
    /// Keeps the unpacked layout alive.
    dir: tempfile::TempDir,
    /// The layout's `index.json`.
    pub top: Value,
    /// The image index it points at.
    pub index: Value,
    pub images: Vec<Image>,
}

fn tar(args: &[&std::ffi::OsStr]) -> Vec<u8> {
    let out = Command::new("tar")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run tar: {e}"));
    assert!(
        out.status.success(),
        "tar {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let (algo, hex) = digest
        .split_once(':')
        .unwrap_or_else(|| panic!("bad digest {digest}"));
    layout.join("blobs").join(algo).join(hex)
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// `tar -tv --numeric-owner` of one layer, as path → entry.
fn layer_entries(layer: &Path) -> Vec<(String, Entry)> {
    let listing = tar(&[
        "-tvzf".as_ref(),
        layer.as_os_str(),
        "--numeric-owner".as_ref(),
    ]);
    String::from_utf8(listing)
        .expect("tar listing is UTF-8")
        .lines()
        .map(|line| {
            // -rwxr-xr-x 0/0 9400000 2026-12-03 12:00 stuck-hr-recovery
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert!(fields.len() >= 6, "unexpected tar line {line:?}");
            let perms = fields[0];
            let kind = match perms.as_bytes()[0] {
                b'-' => 'f',
                other => other as char,
            };
            let mode = perms[1..]
                .chars()
                .fold(0u32, |acc, c| (acc << 1) | u32::from(c != '-'));
            let (uid, gid) = fields[1].split_once('/').expect("uid/gid");
            let name = fields[5..].join(" ");
            let path = format!("/{}", name.trim_start_matches("./").trim_end_matches('/'));
            (
                path,
                Entry {
                    kind,
                    mode,
                    uid: uid.parse().expect("numeric uid"),
                    gid: gid.parse().expect("numeric gid"),
                },
            )
        })
        .filter(|(path, _)| path != "/")
        .collect()
}

/// Unpacks and reads the archive; panics with the fix when it is missing.
pub fn read_archive() -> Archive {
    let archive = archive_path();
    assert!(
        archive.is_file(),
        "{} not found: build it with scripts/build-image --profile ci-release \
         (scripts/test does so before the tests)",
        archive.display()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    tar(&[
        "-xf".as_ref(),
        archive.as_os_str(),
        "-C".as_ref(),
        dir.path().as_os_str(),
    ]);
    let layout = dir.path();
    let top = read_json(&layout.join("index.json"));
    let index_digest = top["manifests"][0]["digest"]
        .as_str()
        .expect("index.json names a manifest")
        .to_string();
    let index = read_json(&blob_path(layout, &index_digest));
    let images = index["manifests"]
        .as_array()
        .expect("the index lists manifests")
        .iter()
        .map(|descriptor| {
            let p = &descriptor["platform"];
            let platform = format!(
                "{}/{}",
                p["os"].as_str().unwrap_or("?"),
                p["architecture"].as_str().unwrap_or("?")
            );
            let manifest = read_json(&blob_path(
                layout,
                descriptor["digest"].as_str().expect("digest"),
            ));
            let config = read_json(&blob_path(
                layout,
                manifest["config"]["digest"]
                    .as_str()
                    .expect("config digest"),
            ));
            let layers: Vec<PathBuf> = manifest["layers"]
                .as_array()
                .expect("layers")
                .iter()
                .map(|l| blob_path(layout, l["digest"].as_str().expect("layer digest")))
                .collect();
            let mut files = BTreeMap::new();
            for layer in &layers {
                files.extend(layer_entries(layer));
            }
            Image {
                platform,
                config,
                files,
                layers,
            }
        })
        .collect();
    Archive {
        dir,
        top,
        index,
        images,
    }
}

impl Archive {
    /// The image of one platform (`linux/arm64`); panics when absent.
    pub fn image(&self, platform: &str) -> &Image {
        self.images
            .iter()
            .find(|i| i.platform == platform)
            .unwrap_or_else(|| panic!("no {platform} image in the index: {}", self.index))
    }
}

impl Image {
    /// The regular files, sorted.
    pub fn regular_files(&self) -> Vec<&str> {
        self.files
            .iter()
            .filter(|(_, e)| e.kind == 'f')
            .map(|(p, _)| p.as_str())
            .collect()
    }

    /// The bytes of one file (from the last layer that has it).
    pub fn read(&self, path: &str) -> Vec<u8> {
        let name = path.trim_start_matches('/');
        for layer in self.layers.iter().rev() {
            let out = Command::new("tar")
                .arg("-xzOf")
                .arg(layer)
                .arg(name)
                .output()
                .expect("tar runs");
            if out.status.success() {
                return out.stdout;
            }
        }
        panic!("{path} not in any layer of the {} image", self.platform)
    }

    /// `config.User`.
    pub fn user(&self) -> &str {
        self.config["config"]["User"].as_str().unwrap_or("")
    }

    /// `config.Entrypoint`.
    pub fn entrypoint(&self) -> Vec<String> {
        serde_json::from_value(self.config["config"]["Entrypoint"].clone()).unwrap_or_default()
    }

    /// `config.Labels`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.config["config"]["Labels"][key].as_str()
    }
}
