//! One malformed HelmRelease in a list is a reported skip, never a failed
//! run or a panic. The fake API server validates what it stores, so this
//! test serves a raw list over plain HTTP from a few lines of std code and
//! runs the real binary against it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::thread;

use crate::common::*;
use serde_json::{Value, json};

/// Answers every list of HelmReleases with `page`, anything else with 404.
fn serve_raw(page: Value) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let page = page.clone();
            thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0usize;
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0 {
                            return;
                        }
                        if header == "\r\n" {
                            break;
                        }
                        if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:")
                        {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    let _ = reader.read_exact(&mut body);
                    let (code, answer) = if request_line
                        .starts_with("GET /apis/helm.toolkit.fluxcd.io/v2/helmreleases?")
                    {
                        ("200 OK", page.to_string())
                    } else {
                        (
                            "404 Not Found",
                            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                   "reason": "NotFound", "code": 404, "message": "not served here"})
                            .to_string(),
                        )
                    };
                    let response = format!(
                        "HTTP/1.1 {code}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                    if reader.get_mut().write_all(response.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

fn with_rv(mut hr: Value, rv: &str) -> Value {
    hr["metadata"]["resourceVersion"] = json!(rv);
    hr
}

#[test]
fn malformed_items_are_reported_skips_and_the_run_succeeds() {
    let mut wrong_type = with_rv(Hr::deployed_unknown("apps", "wrong-type", 10).build(), "2");
    wrong_type["status"]["conditions"] = json!("Ready=Unknown");
    let mut bad_generation = with_rv(Hr::healthy("apps", "bad-generation").build(), "3");
    bad_generation["metadata"]["generation"] = json!("one");
    let mut bad_time = with_rv(Hr::deployed_unknown("apps", "bad-time", 10).build(), "4");
    bad_time["status"]["conditions"] = json!([
        {"type": "Ready", "status": "Unknown", "reason": "Progressing", "lastTransitionTime": "yesterday"}
    ]);
    let mut no_status = with_rv(Hr::healthy("apps", "no-status").build(), "5");
    if let Some(hr) = no_status.as_object_mut() {
        hr.remove("status");
    }
    let page = json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmReleaseList",
        "metadata": {"resourceVersion": "9"},
        "items": [
            with_rv(Hr::healthy("apps", "calm").build(), "1"),
            wrong_type,
            bad_generation,
            bad_time,
            no_status,
            json!("not even an object"),
        ],
    });
    let url = serve_raw(page);
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: raw\n  cluster:\n    server: {url}\n\
             users:\n- name: anyone\n  user: {{}}\ncontexts:\n- name: raw\n  context:\n    cluster: raw\n    user: anyone\n\
             current-context: raw\n"
        ),
    )
    .expect("kubeconfig");

    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("stuck-hr-recovery"))
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .args(["-o", "json"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = json_report(&out);
    assert_eq!(report["counts"]["scanned"], 6);
    assert_eq!(report["actions"], json!([]));
    let mut skipped: Vec<(String, String)> = report["skipped"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_owned(),
                s["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    skipped.sort();
    assert_eq!(
        skipped,
        [
            ("<unknown>".to_owned(), "malformed".to_owned()),
            ("bad-generation".to_owned(), "malformed".to_owned()),
            ("bad-time".to_owned(), "bad-timestamp".to_owned()),
            ("no-status".to_owned(), "no-ready-condition".to_owned()),
            ("wrong-type".to_owned(), "malformed".to_owned()),
        ]
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("wrong-type is malformed"),
        "a warn line names it: {stderr}"
    );
}
