//! `--events-addr` (SPEC §10) through the real binary, against a real HTTP
//! receiver: every Event is also POSTed as a Flux event with every field
//! right; a receiver that rate-limits, fails or hangs never fails the run;
//! dry runs post nothing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{Cluster, describe, stuck_deployed, stuck_pending};
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    content_type: Option<String>,
    body: Value,
}

/// How the receiver answers.
#[derive(Clone, Copy)]
enum Answer {
    Status(u16),
    /// Reads the request and never answers.
    Hang,
}

/// A small HTTP/1.1 receiver on 127.0.0.1 in its own runtime thread.
struct Receiver {
    addr: String,
    got: Arc<Mutex<Vec<Received>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    fn start(answer: Answer) -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("receiver runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("receiver binds");
        let addr = format!("http://{}/", listener.local_addr().expect("address"));
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        runtime.spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let sink = sink.clone();
                tokio::spawn(async move {
                    loop {
                        let Some(received) = read_request(&mut stream).await else {
                            return;
                        };
                        sink.lock().expect("lock").push(received);
                        match answer {
                            Answer::Hang => {
                                tokio::time::sleep(Duration::from_secs(3600)).await;
                                return;
                            }
                            Answer::Status(code) => {
                                let reply =
                                    format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\n\r\n");
                                if stream.write_all(reply.as_bytes()).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Receiver {
            addr,
            got,
            _runtime: runtime,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().expect("lock").clone()
    }
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, path) = (
        request_line.next()?.to_string(),
        request_line.next()?.to_string(),
    );
    let mut length = 0;
    let mut content_type = None;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().ok()?,
                "content-type" => content_type = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or(Value::Null);
    Some(Received {
        method,
        path,
        content_type,
        body,
    })
}

fn run_with(cluster: &Cluster, addr: &str, args: &[&str]) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let output = cluster
        .cmd()
        .env("STUCK_HR_EVENTS_ADDR", addr)
        .env("POD_NAME", "stuck-hr-recovery-29000000-abcde")
        .args(args)
        .output()
        .expect("binary runs");
    (output, started.elapsed())
}

#[test]
fn every_event_is_posted_as_a_flux_event_with_every_field() {
    let receiver = Receiver::start(Answer::Status(202));
    let cluster = Cluster::start();
    cluster.seed(stuck_deployed("apps", "web"));
    cluster.seed(stuck_pending("apps", "api"));
    let uid_of = |name: &str| cluster.hr("apps", name)["metadata"]["uid"].clone();
    let (web_uid, api_uid) = (uid_of("web"), uid_of("api"));
    let before = Utc::now() - chrono::Duration::seconds(1);
    let (output, _) = run_with(&cluster, &receiver.addr, &["--suspend-wait", "1s"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let after = Utc::now() + chrono::Duration::seconds(1);

    let mut got = receiver.received();
    got.sort_by_key(|r| {
        r.body["involvedObject"]["name"]
            .as_str()
            .map(str::to_string)
    });
    assert_eq!(got.len(), 2, "{got:#?}");
    let notes: Vec<(String, String)> = cluster
        .server
        .events()
        .into_iter()
        .map(|e| {
            (
                e["regarding"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                e["note"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let note_of = |name: &str| {
        notes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, note)| note.clone())
            .unwrap_or_else(|| panic!("a Kubernetes Event on {name}: {notes:?}"))
    };
    for (received, name, uid, reason) in [
        (&got[0], "api", &api_uid, "StuckReleaseToggled"),
        (&got[1], "web", &web_uid, "StuckReleaseCorrected"),
    ] {
        assert_eq!(received.method, "POST");
        assert_eq!(received.path, "/");
        assert_eq!(received.content_type.as_deref(), Some("application/json"));
        let body = &received.body;
        let keys: Vec<&str> = body
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            keys,
            [
                "involvedObject",
                "message",
                "reason",
                "reportingController",
                "reportingInstance",
                "severity",
                "timestamp"
            ],
            "{body:#}"
        );
        assert_eq!(
            body["involvedObject"],
            serde_json::json!({"kind": "HelmRelease", "apiVersion": "helm.toolkit.fluxcd.io/v2",
                               "namespace": "apps", "name": name, "uid": uid}),
        );
        assert_eq!(body["severity"], "info");
        assert_eq!(body["reason"], reason);
        assert_eq!(body["message"], note_of(name).as_str());
        assert_eq!(body["reportingController"], "stuck-hr-recovery");
        assert_eq!(
            body["reportingInstance"],
            "stuck-hr-recovery-29000000-abcde"
        );
        let at: DateTime<Utc> = body["timestamp"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| panic!("timestamp is RFC 3339: {body:#}"));
        assert!(before <= at && at <= after, "{at} within the run");
        assert!(body["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
}

#[test]
fn a_warning_is_posted_with_severity_error_and_the_exit_code_stays() {
    let receiver = Receiver::start(Answer::Status(202));
    let cluster = Cluster::start();
    cluster.seed(stuck_deployed("apps", "web"));
    cluster.seed(stuck_deployed("apps", "api"));
    let (output, _) = run_with(&cluster, &receiver.addr, &["--max-actions", "1"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let got = receiver.received();
    assert_eq!(got.len(), 2, "{got:#?}");
    for r in &got {
        assert_eq!(r.body["severity"], "error");
        assert_eq!(r.body["reason"], "RecoveryGuardrailTripped");
    }
}

#[test]
fn a_rate_limiting_or_failing_receiver_is_a_warning_and_never_fails_the_run() {
    for code in [429, 500] {
        let receiver = Receiver::start(Answer::Status(code));
        let cluster = Cluster::start();
        cluster.seed(stuck_deployed("apps", "web"));
        let (output, _) = run_with(&cluster, &receiver.addr, &[]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{code}: {}",
            describe(&output)
        );
        assert_eq!(receiver.received().len(), 1);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("WARN") && stderr.contains("Flux event not delivered"),
            "{code}: {stderr}"
        );
        assert!(stderr.contains(&code.to_string()), "{code}: {stderr}");
        let web = cluster.hr("apps", "web");
        assert!(crate::common::annotation(&web, crate::common::CORRECTED_AT).is_some());
    }
}

#[test]
fn a_receiver_that_is_down_never_fails_the_run() {
    // A port that was just free: nothing listens there.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}/", listener.local_addr().expect("address"))
    };
    let cluster = Cluster::start();
    cluster.seed(stuck_deployed("apps", "web"));
    let (output, _) = run_with(&cluster, &addr, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Flux event not delivered"), "{stderr}");
}

#[test]
fn a_hung_receiver_costs_the_run_at_most_the_five_second_budget() {
    let receiver = Receiver::start(Answer::Hang);
    let cluster = Cluster::start();
    for name in ["a", "b", "c", "d"] {
        cluster.seed(stuck_deployed("apps", name));
    }
    cluster.seed(stuck_pending("apps", "e"));
    // The four corrections' Events are posted at once and hang together for
    // the 5 s budget; the toggle's Event comes after the 6 s wait, when the
    // budget is spent: it is not posted (without a shared budget it would
    // hang another 5 s).
    let (output, elapsed) = run_with(&cluster, &receiver.addr, &["--suspend-wait", "6s"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no answer within the run's 5s budget"),
        "{stderr}"
    );
    assert!(stderr.contains("budget of this run is spent"), "{stderr}");
    let posted: Vec<String> = receiver
        .received()
        .iter()
        .filter_map(|r| {
            r.body["involvedObject"]["name"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(posted.len(), 4, "{posted:?}");
    assert!(!posted.contains(&"e".to_string()), "{posted:?}");
    assert_eq!(
        cluster.events().len(),
        5,
        "Kubernetes Events are unaffected"
    );
    // Generous bound for a loaded machine (6 s wait + 5 s budget at most).
    assert!(elapsed < Duration::from_secs(40), "took {elapsed:?}");
}

#[test]
fn dry_runs_post_nothing() {
    let receiver = Receiver::start(Answer::Status(202));
    let cluster = Cluster::start();
    cluster.seed(stuck_deployed("apps", "web"));
    cluster.seed(stuck_deployed("apps", "api"));
    for dry_run in ["--dry-run", "--dry-run=server"] {
        let (output, _) = run_with(&cluster, &receiver.addr, &[dry_run]);
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    }
    let (output, _) = run_with(
        &cluster,
        &receiver.addr,
        &["--dry-run", "--max-actions", "1"],
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(receiver.received().is_empty(), "{:#?}", receiver.received());
}

#[test]
fn an_events_addr_that_is_not_an_http_url_is_a_usage_error() {
    let cluster = Cluster::start();
    for bad in [
        "https://notification-controller/",
        "notification-controller",
        "http://",
    ] {
        let (output, _) = run_with(&cluster, bad, &[]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{bad}: {}",
            describe(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--events-addr"), "{stderr}");
    }
    assert!(cluster.requests().is_empty());
}
