//! Acceptance 4: 10 000 generated HelmReleases (and their Helm release
//! Secrets) list completely in pages of 500. Prints the timings; not a benchmark.

mod common;

use std::collections::HashSet;
use std::time::Instant;

use common::{client, raw};
use fake_apiserver::generate::{ClusterSpec, cluster};
use fake_apiserver::{FakeApiServer, ServerConfig};

#[tokio::test]
async fn ten_thousand_helmreleases_list_completely_in_pages_of_500() {
    let spec = ClusterSpec {
        helmreleases: 10_000,
        namespaces: 200,
        stuck_pending_install: 30,
        stuck_deployed_unknown: 20,
        stuck_for: chrono::Duration::minutes(20),
        seed: 7,
    };
    let t = Instant::now();
    let objects = cluster(&spec);
    let generated = t.elapsed();
    let s = FakeApiServer::start(ServerConfig::new()).unwrap();
    let t = Instant::now();
    s.apply_all(objects).unwrap();
    let seeded = t.elapsed();
    assert_eq!(s.count("helm.toolkit.fluxcd.io/v2", "helmreleases"), 10_000);

    let c = client(&s, "admin").await;
    let t = Instant::now();
    let mut seen = HashSet::new();
    let mut pages = 0;
    let mut cont = String::new();
    let mut bytes = 0usize;
    loop {
        let mut path = "/apis/helm.toolkit.fluxcd.io/v2/helmreleases?limit=500".to_string();
        if !cont.is_empty() {
            path.push_str(&format!("&continue={cont}"));
        }
        let (code, page) = raw(&c, "GET", &path, &[], None).await.unwrap();
        assert_eq!(code, 200);
        pages += 1;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 500);
        for i in items {
            let key = format!(
                "{}/{}",
                i["metadata"]["namespace"].as_str().unwrap(),
                i["metadata"]["name"].as_str().unwrap()
            );
            assert!(seen.insert(key), "duplicate across pages");
        }
        bytes += page.to_string().len();
        cont = page["metadata"]["continue"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if cont.is_empty() {
            break;
        }
    }
    let listed = t.elapsed();
    assert_eq!((seen.len(), pages), (10_000, 20));
    let stuck = s
        .helmreleases()
        .iter()
        .filter(|h| {
            h["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "Unknown")
        })
        .count();
    assert_eq!(stuck, 50);
    let secrets = s.count("v1", "secrets");
    println!(
        "generated {} HelmReleases + {secrets} Secrets in {generated:?}; seeded in {seeded:?}; listed 10000 in {pages} pages ({} MB) in {listed:?}",
        spec.helmreleases,
        bytes / 1_000_000
    );
}

#[test]
fn generation_is_deterministic_for_a_seed_and_secrets_look_like_helms() {
    let spec = ClusterSpec {
        helmreleases: 20,
        namespaces: 3,
        stuck_pending_install: 2,
        stuck_deployed_unknown: 3,
        seed: 42,
        ..Default::default()
    };
    let a = cluster(&spec);
    let b = cluster(&spec);
    let strip = |v: &Vec<serde_json::Value>| -> Vec<String> {
        v.iter()
            .map(|o| o["metadata"]["name"].to_string() + &o["data"].to_string())
            .collect()
    };
    assert_eq!(strip(&a), strip(&b));
    let secret = a.iter().find(|o| o["kind"] == "Secret").unwrap();
    assert_eq!(secret["type"], "helm.sh/release.v1");
    let labels = &secret["metadata"]["labels"];
    assert_eq!(labels["owner"], "helm");
    assert!(labels["version"].as_str().unwrap().parse::<u32>().is_ok());
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let once = b64
        .decode(secret["data"]["release"].as_str().unwrap())
        .unwrap();
    let gz = b64.decode(once).unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip inside two layers of base64");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(&gz[..]), &mut text)
        .unwrap();
    let release: serde_json::Value =
        serde_json::from_str(&text).expect("the payload is Helm's release JSON");
    assert_eq!(release["name"], labels["name"]);
    assert_eq!(release["info"]["status"], labels["status"]);
    assert!(
        release["manifest"]
            .as_str()
            .unwrap()
            .contains("kind: ConfigMap")
    );
    assert!(
        secret["data"]["release"].as_str().unwrap().len() > 2_000,
        "a few KB"
    );
    // Every stuck pending-install HelmRelease has a deployed Secret and an empty history.
    for h in a
        .iter()
        .filter(|o| o["kind"] == "HelmRelease" && o["status"].get("history").is_none())
    {
        let name = h["metadata"]["name"].as_str().unwrap();
        assert!(a.iter().any(|o| o["metadata"]["labels"]["name"] == name
            && o["metadata"]["labels"]["status"] == "deployed"));
    }
}
