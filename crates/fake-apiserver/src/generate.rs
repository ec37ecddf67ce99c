//! Deterministic seeding for benchmarks and demos: HelmReleases over
//! namespaces with a chosen mix of stuck states, plus their Helm release
//! Secrets (`sh.helm.release.v1.<name>.v<N>`, double-base64 gzip payloads).

use std::io::Write;

use base64::Engine;
use serde_json::{Value, json};

/// What to generate.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub helmreleases: usize,
    pub namespaces: usize,
    /// Branch A: history empty (or pending-install) while Helm's latest Secret says deployed.
    pub stuck_pending_install: usize,
    /// Branch B: history[0] deployed, Ready Unknown, Helm storage agrees.
    pub stuck_deployed_unknown: usize,
    /// How long Ready has been Unknown for the stuck ones.
    pub stuck_for: chrono::Duration,
    pub seed: u64,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            helmreleases: 100,
            namespaces: 10,
            stuck_pending_install: 0,
            stuck_deployed_unknown: 0,
            stuck_for: chrono::Duration::minutes(10),
            seed: 1,
        }
    }
}

/// The state a generated HelmRelease is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Healthy,
    PendingInstall,
    DeployedUnknown,
}

/// splitmix64: small, fast, deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn hex(&mut self, len: usize) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = Vec::with_capacity(len + 16);
        while out.len() < len {
            let mut x = self.next();
            for _ in 0..16 {
                out.push(DIGITS[(x & 0xf) as usize]);
                x >>= 4;
            }
        }
        out.truncate(len);
        String::from_utf8(out).unwrap_or_default()
    }
}

fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The mode of each HelmRelease index: stuck ones are spread by the seed.
pub fn modes(spec: &ClusterSpec) -> Vec<Mode> {
    let n = spec.helmreleases;
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng = Rng(spec.seed ^ 0x5eed);
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        idx.swap(i, j);
    }
    let mut modes = vec![Mode::Healthy; n];
    let a = spec.stuck_pending_install.min(n);
    let b = spec.stuck_deployed_unknown.min(n - a);
    for &i in &idx[..a] {
        modes[i] = Mode::PendingInstall;
    }
    for &i in &idx[a..a + b] {
        modes[i] = Mode::DeployedUnknown;
    }
    modes
}

/// HelmReleases (in namespaces `team-000`…) and their Helm release Secrets.
pub fn cluster(spec: &ClusterSpec) -> Vec<Value> {
    let now = chrono::Utc::now();
    let namespaces = spec.namespaces.max(1);
    let modes = modes(spec);
    let mut rng = Rng(spec.seed);
    let mut out = Vec::with_capacity(spec.helmreleases * 3);
    for (i, mode) in modes.into_iter().enumerate() {
        let ns = format!("team-{:03}", i % namespaces);
        let name = format!("app-{i:05}");
        let revisions = 1 + rng.below(3);
        // A stuck first install has exactly one (deployed) Helm revision.
        let latest = if mode == Mode::PendingInstall {
            1
        } else {
            revisions
        };
        let chart_version = format!("1.{}.{}", rng.below(10), rng.below(10));
        let deployed_at = now - chrono::Duration::hours(2 + rng.below(48) as i64);
        let (hr, secret_versions) = helmrelease(
            &ns,
            &name,
            &chart_version,
            latest,
            mode,
            spec,
            now,
            deployed_at,
            &mut rng,
        );
        out.push(hr);
        for v in secret_versions {
            let status = if v == latest {
                "deployed"
            } else {
                "superseded"
            };
            out.push(release_secret(
                &ns,
                &name,
                v,
                status,
                &chart_version,
                deployed_at,
                &mut rng,
            ));
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn helmrelease(
    ns: &str,
    name: &str,
    chart_version: &str,
    latest: u64,
    mode: Mode,
    spec: &ClusterSpec,
    now: chrono::DateTime<chrono::Utc>,
    deployed_at: chrono::DateTime<chrono::Utc>,
    rng: &mut Rng,
) -> (Value, Vec<u64>) {
    let digest = format!("sha256:{}", rng.hex(64));
    let config_digest = format!("sha256:{}", rng.hex(64));
    let snapshot = |version: u64| {
        json!({
            "apiVersion": "v2",
            "name": name,
            "namespace": ns,
            "version": version,
            "status": "deployed",
            "chartName": name,
            "chartVersion": chart_version,
            "appVersion": chart_version,
            "configDigest": config_digest,
            "digest": digest,
            "firstDeployed": ts(deployed_at),
            "lastDeployed": ts(deployed_at),
        })
    };
    let stuck_since = ts(now - spec.stuck_for);
    let cond = |ty: &str, status: &str, reason: &str, message: &str, at: &str| {
        json!({"type": ty, "status": status, "reason": reason, "message": message,
               "lastTransitionTime": at, "observedGeneration": 1})
    };
    let released_msg = format!(
        "Helm install succeeded for release {ns}/{name}.v{latest} with chart {name}@{chart_version}"
    );
    let (history, conditions, secrets): (Vec<Value>, Vec<Value>, Vec<u64>) = match mode {
        Mode::Healthy => (
            vec![snapshot(latest)],
            vec![
                cond(
                    "Ready",
                    "True",
                    "UpgradeSucceeded",
                    &released_msg,
                    &ts(deployed_at),
                ),
                cond(
                    "Released",
                    "True",
                    "UpgradeSucceeded",
                    &released_msg,
                    &ts(deployed_at),
                ),
            ],
            (latest.saturating_sub(1).max(1)..=latest).collect(),
        ),
        Mode::PendingInstall => (
            Vec::new(),
            vec![
                cond(
                    "Reconciling",
                    "True",
                    "Progressing",
                    "Running 'install' action with timeout of 5m0s",
                    &stuck_since,
                ),
                cond(
                    "Ready",
                    "Unknown",
                    "Progressing",
                    "Running 'install' action with timeout of 5m0s",
                    &stuck_since,
                ),
            ],
            vec![1],
        ),
        Mode::DeployedUnknown => (
            vec![snapshot(latest)],
            vec![
                cond(
                    "Ready",
                    "Unknown",
                    "Progressing",
                    "Fulfilling prerequisites",
                    &stuck_since,
                ),
                cond(
                    "Released",
                    "True",
                    "InstallSucceeded",
                    &released_msg,
                    &ts(deployed_at),
                ),
            ],
            (latest.saturating_sub(1).max(1)..=latest).collect(),
        ),
    };
    let mut status = json!({
        "observedGeneration": 1,
        "lastAttemptedGeneration": 1,
        "lastAttemptedRevision": chart_version,
        "lastAttemptedConfigDigest": config_digest,
        "helmChart": format!("flux-system/{ns}-{name}"),
        "storageNamespace": ns,
        "conditions": conditions,
    });
    if !history.is_empty()
        && let Some(m) = status.as_object_mut()
    {
        m.insert("history".into(), Value::Array(history));
        m.insert(
            "lastAttemptedReleaseAction".into(),
            json!(if latest > 1 { "upgrade" } else { "install" }),
        );
    }
    let hr = json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {
            "name": name,
            "namespace": ns,
            "generation": 1,
            "labels": {"app.kubernetes.io/name": name, "fake-apiserver/generated": "true"},
        },
        "spec": {
            "interval": "10m",
            "timeout": "5m",
            "chart": {"spec": {
                "chart": name,
                "version": chart_version,
                "sourceRef": {"kind": "HelmRepository", "name": "charts", "namespace": "flux-system"},
                "interval": "1h",
            }},
            "values": {"replicaCount": 1 + rng.below(3)},
        },
        "status": status,
    });
    let secrets = if mode == Mode::PendingInstall {
        secrets
    } else {
        secrets.into_iter().collect()
    };
    (hr, secrets)
}

/// Pre-compressed gzip members holding the bulk of a manifest (a ConfigMap
/// with a random blob), already escaped for a JSON string. A payload is the
/// concatenation of a small per-release member, one of these, and a closing
/// member: a multi-member gzip stream, which Go's (Helm's) gzip reader
/// decodes as one document.
fn shared_members() -> &'static [Vec<u8>] {
    static POOL: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let mut rng = Rng(0x4e1f);
        (0..16)
            .map(|i| {
                let text = format!(
                    "---\\n# Source: app/templates/configmap-{i}.yaml\\napiVersion: v1\\nkind: ConfigMap\\nmetadata:\\n  name: app-config\\ndata:\\n  checksum: {}\\n  blob: {}\\n",
                    rng.hex(64),
                    rng.hex(2048)
                );
                gzip(text.as_bytes())
            })
            .collect()
    })
}

/// A gzip member holding `data` in stored (uncompressed) deflate blocks:
/// valid gzip at a fraction of a compressor's set-up cost, used for the small
/// per-release parts of a payload.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 32);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    let mut chunks = data.chunks(0xffff).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    let mut crc = flate2::Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = gz.write_all(data);
    gz.finish().unwrap_or_default()
}

/// One Helm release Secret with a realistic payload: Helm's release JSON,
/// gzipped, base64 (Helm's storage encoding), base64 again (Secret `data`).
pub fn release_secret(
    ns: &str,
    release: &str,
    version: u64,
    status: &str,
    chart_version: &str,
    deployed_at: chrono::DateTime<chrono::Utc>,
    rng: &mut Rng,
) -> Value {
    const SPLIT: &str = "@@MANIFEST@@";
    let release_json = json!({
        "name": release,
        "namespace": ns,
        "version": version,
        "info": {
            "first_deployed": ts(deployed_at),
            "last_deployed": ts(deployed_at),
            "deleted": "",
            "description": if version == 1 { "Install complete" } else { "Upgrade complete" },
            "status": status,
        },
        "chart": {
            "metadata": {"name": release, "version": chart_version, "appVersion": chart_version, "apiVersion": "v2"},
            "values": {"replicaCount": 1},
        },
        "config": {},
        "manifest": SPLIT,
    })
    .to_string();
    let (head, tail) = release_json
        .split_once(SPLIT)
        .unwrap_or((&release_json, ""));
    let own = serde_json::to_string(&format!(
        "---\n# Source: {release}/templates/deployment.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {release}\nspec:\n  replicas: 1\n  template:\n    spec:\n      containers:\n      - name: app\n        image: registry.example.com/{release}:{chart_version}\n"
    ))
    .unwrap_or_default();
    // `own` is a quoted JSON string; keep its opening quote, drop its closing one.
    let own = own.strip_suffix('"').unwrap_or(&own);
    let mut first = String::with_capacity(head.len() + own.len());
    first.push_str(head.strip_suffix('"').unwrap_or(head));
    first.push_str(own);
    let pool = shared_members();
    let mut compressed = gzip_stored(first.as_bytes());
    compressed.extend_from_slice(&pool[rng.below(pool.len() as u64) as usize]);
    compressed.extend_from_slice(&gzip_stored(
        format!("\"{}", tail.strip_prefix('"').unwrap_or(tail)).as_bytes(),
    ));
    let b64 = base64::engine::general_purpose::STANDARD;
    let helm_encoded = b64.encode(compressed);
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "helm.sh/release.v1",
        "metadata": {
            "name": format!("sh.helm.release.v1.{release}.v{version}"),
            "namespace": ns,
            "labels": {"owner": "helm", "name": release, "status": status, "version": version.to_string()},
        },
        "data": {"release": b64.encode(helm_encoded)},
    })
}
