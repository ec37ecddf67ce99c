//! The chart repository: every chart under `<repo>/testbed/charts/`,
//! packaged with the real `helm package`, indexed with `helm repo index`,
//! served by `python3 -m http.server` on loopback.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The test charts' sources.
pub fn charts_src() -> PathBuf {
    crate::tools::repo_root().join("testbed/charts")
}

/// Packages every chart of `src` into `out` and writes `out/index.yaml`
/// with chart URLs under `url`. Returns the chart names.
pub fn build_repo(
    src: &Path,
    out: &Path,
    url: &str,
    helm_home: &Path,
) -> anyhow::Result<Vec<String>> {
    let helm = crate::tools::helm()?;
    std::fs::create_dir_all(out)?;
    let mut names = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(src)
        .with_context(|| format!("reading {}", src.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("Chart.yaml").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        run_helm(&helm, helm_home, |cmd| {
            cmd.arg("package").arg(&dir).arg("--destination").arg(out);
        })?;
        names.push(
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
    }
    run_helm(&helm, helm_home, |cmd| {
        cmd.args(["repo", "index"]).arg(out).args(["--url", url]);
    })?;
    Ok(names)
}

fn run_helm(helm: &Path, home: &Path, args: impl FnOnce(&mut Command)) -> anyhow::Result<()> {
    let mut cmd = Command::new(helm);
    args(&mut cmd);
    cmd.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    let output = cmd
        .output()
        .with_context(|| format!("running {}", helm.display()))?;
    if !output.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
