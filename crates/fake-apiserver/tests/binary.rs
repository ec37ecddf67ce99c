//! The `fake-apiserver serve` binary: seeding, generation, RBAC, scenario
//! faults, request log, kubeconfig and ready files, clean exit on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{SA, raw};

#[tokio::test]
async fn serve_runs_with_every_option_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("faults.yaml"), "- {method: GET, resource: helmreleases, namespace: apps, name: web, nth: 1, respond: 500}\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-apiserver"))
        .arg("serve")
        .arg("--seed")
        .arg(common::fixture("helmreleases.yaml"))
        .args([
            "--generate",
            "helmreleases=30,namespaces=3,pending-install=2,deployed-unknown=1",
        ])
        .arg("--rbac-dir")
        .arg(common::rbac_dir())
        .args(["--service-account", "flux-system/stuck-hr-recovery"])
        .arg("--kubeconfig-out")
        .arg(p("kubeconfig"))
        .args(["--kubeconfig-user", SA])
        .arg("--scenario")
        .arg(p("faults.yaml"))
        .arg("--request-log")
        .arg(p("requests.jsonl"))
        .arg("--ready-file")
        .arg(p("ready"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let url = url.trim().to_string();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    assert_eq!(std::fs::read_to_string(p("ready")).unwrap().trim(), url);

    let kc = kube::config::Kubeconfig::read_from(p("kubeconfig")).unwrap();
    let c = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap(),
    )
    .unwrap();
    let web = "/apis/helm.toolkit.fluxcd.io/v2/namespaces/apps/helmreleases/web";
    assert_eq!(
        raw(&c, "GET", web, &[], None).await.unwrap().0,
        500,
        "scenario fault, first request"
    );
    assert_eq!(raw(&c, "GET", web, &[], None).await.unwrap().0, 200);
    let (code, list) = raw(
        &c,
        "GET",
        "/apis/helm.toolkit.fluxcd.io/v2/helmreleases?limit=100",
        &[],
        None,
    )
    .await
    .unwrap();
    assert_eq!((code, list["items"].as_array().unwrap().len()), (200, 32));
    assert_eq!(
        raw(&c, "DELETE", web, &[], None).await.unwrap().0,
        403,
        "RBAC enforced for the service account"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
    let log: Vec<serde_json::Value> = std::fs::read_to_string(p("requests.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let statuses: Vec<u64> = log.iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, vec![500, 200, 200, 403]);
    assert_eq!(log[3]["user"], SA);
    assert_eq!(log[3]["verb"], "delete");
}
