//! Acceptance 3: the API semantics our product relies on, over HTTPS.

mod common;

use common::{JSON_PATCH, MERGE, client, hr, hr_path, raw, server};
use serde_json::{Value, json};

fn rv(obj: &Value) -> String {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn generation_bumps_only_when_spec_changes() {
    let s = server();
    let c = client(&s, "admin").await;
    let path = hr_path("apps", "web");
    let (code, o) = raw(
        &c,
        "PATCH",
        &path,
        &[MERGE],
        Some(json!({"metadata": {"annotations": {"a": "1"}}})),
    )
    .await
    .unwrap();
    assert_eq!(
        (code, o["metadata"]["generation"].clone()),
        (200, json!(1)),
        "metadata change"
    );
    let (_, o) = raw(
        &c,
        "PATCH",
        &format!("{path}/status"),
        &[MERGE],
        Some(json!({"status": {"failures": 1}})),
    )
    .await
    .unwrap();
    assert_eq!(o["metadata"]["generation"], 1, "status change");
    let (_, o) = raw(
        &c,
        "PATCH",
        &path,
        &[MERGE],
        Some(json!({"spec": {"suspend": true}})),
    )
    .await
    .unwrap();
    assert_eq!(o["metadata"]["generation"], 2, "spec change");
    let (_, o) = raw(
        &c,
        "PATCH",
        &path,
        &[JSON_PATCH],
        Some(json!([{"op": "remove", "path": "/spec/suspend"}])),
    )
    .await
    .unwrap();
    assert_eq!(o["metadata"]["generation"], 3, "spec change by JSON patch");
    assert_eq!(
        s.helmrelease("apps", "web").unwrap()["metadata"]["generation"],
        3
    );
}

#[tokio::test]
async fn resource_version_bumps_on_every_persisted_write_and_not_on_a_no_op() {
    let s = server();
    let c = client(&s, "admin").await;
    let path = hr_path("apps", "web");
    let before = rv(&s.helmrelease("apps", "web").unwrap());
    let (_, a) = raw(
        &c,
        "PATCH",
        &path,
        &[MERGE],
        Some(json!({"metadata": {"labels": {"x": "1"}}})),
    )
    .await
    .unwrap();
    let (_, b) = raw(
        &c,
        "PATCH",
        &format!("{path}/status"),
        &[MERGE],
        Some(json!({"status": {"failures": 2}})),
    )
    .await
    .unwrap();
    let (_, noop) = raw(
        &c,
        "PATCH",
        &path,
        &[MERGE],
        Some(json!({"metadata": {"labels": {"x": "1"}}})),
    )
    .await
    .unwrap();
    let n = |s: &str| s.parse::<u64>().unwrap();
    assert!(n(&rv(&a)) > n(&before) && n(&rv(&b)) > n(&rv(&a)));
    assert_eq!(
        rv(&noop),
        rv(&b),
        "a patch that changes nothing is not a write"
    );
}

#[tokio::test]
async fn main_resource_patch_ignores_status_and_status_patch_ignores_the_rest() {
    let s = server();
    let c = client(&s, "admin").await;
    let path = hr_path("apps", "web");
    let before = s.helmrelease("apps", "web").unwrap();
    let (code, _) = raw(
        &c,
        "PATCH",
        &path,
        &[MERGE],
        Some(json!({"spec": {"interval": "9m"}, "status": {"failures": 5}})),
    )
    .await
    .unwrap();
    assert_eq!(code, 200);
    let mid = s.helmrelease("apps", "web").unwrap();
    assert_eq!(
        (mid["spec"]["interval"].clone(), mid["status"].clone()),
        (json!("9m"), before["status"].clone())
    );
    let (code, _) = raw(&c, "PATCH", &format!("{path}/status"), &[MERGE],
        Some(json!({"metadata": {"annotations": {"x": "y"}, "labels": {"team": "other"}}, "spec": {"interval": "1m"}, "status": {"failures": 5}}))).await.unwrap();
    assert_eq!(code, 200);
    let end = s.helmrelease("apps", "web").unwrap();
    assert_eq!(end["status"]["failures"], 5);
    assert_eq!(end["spec"], mid["spec"]);
    assert_eq!(end["metadata"]["labels"], mid["metadata"]["labels"]);
    assert!(end["metadata"].get("annotations").is_none());
}

#[tokio::test]
async fn status_patch_with_a_stale_resource_version_is_a_conflict() {
    let s = server();
    let c = client(&s, "admin").await;
    let path = format!("{}/status", hr_path("apps", "web"));
    let stale = rv(&s.helmrelease("apps", "web").unwrap());
    raw(
        &c,
        "PATCH",
        &path,
        &[MERGE],
        Some(json!({"status": {"failures": 1}})),
    )
    .await
    .unwrap();
    let (code, st) = raw(
        &c,
        "PATCH",
        &path,
        &[MERGE],
        Some(json!({"metadata": {"resourceVersion": stale}, "status": {"failures": 2}})),
    )
    .await
    .unwrap();
    assert_eq!(
        (code, st["reason"].as_str(), st["kind"].as_str()),
        (409, Some("Conflict"), Some("Status"))
    );
    assert_eq!(
        st["details"],
        json!({"name": "web", "group": "helm.toolkit.fluxcd.io", "kind": "helmreleases"})
    );
}

#[tokio::test]
async fn json_patch_test_on_resource_version_guards_the_write() {
    let s = server();
    let c = client(&s, "admin").await;
    let stale = rv(&s.helmrelease("apps", "web").unwrap());
    raw(
        &c,
        "PATCH",
        &hr_path("apps", "web"),
        &[MERGE],
        Some(json!({"metadata": {"labels": {"bump": "1"}}})),
    )
    .await
    .unwrap();
    let current = rv(&s.helmrelease("apps", "web").unwrap());
    let ops = |v: &str| json!([{"op": "test", "path": "/metadata/resourceVersion", "value": v}, {"op": "add", "path": "/spec/suspend", "value": true}]);
    let (code, st) = raw(
        &c,
        "PATCH",
        &hr_path("apps", "web"),
        &[JSON_PATCH],
        Some(ops(&stale)),
    )
    .await
    .unwrap();
    assert_eq!((code, st["reason"].as_str()), (422, Some("Invalid")));
    assert!(
        s.helmrelease("apps", "web").unwrap()["spec"]
            .get("suspend")
            .is_none()
    );
    let (code, _) = raw(
        &c,
        "PATCH",
        &hr_path("apps", "web"),
        &[JSON_PATCH],
        Some(ops(&current)),
    )
    .await
    .unwrap();
    assert_eq!(code, 200);
    // A replace of resourceVersion with a stale value is a precondition, as in a merge patch.
    let stale = json!([{"op": "replace", "path": "/metadata/resourceVersion", "value": current}, {"op": "remove", "path": "/spec/suspend"}]);
    let (code, _) = raw(
        &c,
        "PATCH",
        &hr_path("apps", "web"),
        &[JSON_PATCH],
        Some(stale),
    )
    .await
    .unwrap();
    assert_eq!(code, 409);
}

#[tokio::test]
async fn unsupported_patch_types_are_415_and_strategic_merge_works_on_built_in_types() {
    let s = server();
    let c = client(&s, "admin").await;
    let (code, st) = raw(
        &c,
        "PATCH",
        &hr_path("apps", "web"),
        &[("content-type", "application/apply-patch+yaml")],
        Some(json!({})),
    )
    .await
    .unwrap();
    assert_eq!(
        (code, st["reason"].as_str()),
        (415, Some("UnsupportedMediaType"))
    );
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("server-side apply")
    );
    let secret = "/api/v1/namespaces/apps/secrets/sh.helm.release.v1.web.v1";
    let (code, o) = raw(
        &c,
        "PATCH",
        secret,
        &[("content-type", "application/strategic-merge-patch+json")],
        Some(json!({"metadata": {"labels": {"extra": "1"}}})),
    )
    .await
    .unwrap();
    assert_eq!(
        (code, o["metadata"]["labels"]["extra"].as_str()),
        (200, Some("1"))
    );
}

#[tokio::test]
async fn pagination_with_a_label_selector_visits_each_match_once() {
    let s = server();
    for i in 0..25 {
        let mut o = hr(&format!("ns-{}", i % 3), &format!("hr-{i:02}"));
        o["metadata"]["labels"]["parity"] = json!(if i % 2 == 0 { "even" } else { "odd" });
        s.apply(o).unwrap();
    }
    let c = client(&s, "admin").await;
    let mut seen = Vec::new();
    let mut cont = String::new();
    let mut pages = 0;
    loop {
        let mut path =
            "/apis/helm.toolkit.fluxcd.io/v2/helmreleases?limit=4&labelSelector=parity%3Deven"
                .to_string();
        if !cont.is_empty() {
            path.push_str(&format!("&continue={cont}"));
        }
        let (code, list) = raw(&c, "GET", &path, &[], None).await.unwrap();
        assert_eq!(
            (code, list["kind"].as_str()),
            (200, Some("HelmReleaseList"))
        );
        pages += 1;
        for i in list["items"].as_array().unwrap() {
            assert_eq!(i["metadata"]["labels"]["parity"], "even");
            seen.push(i["metadata"]["name"].as_str().unwrap().to_string());
        }
        cont = list["metadata"]["continue"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if cont.is_empty() {
            break;
        }
    }
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!((seen.len(), dedup.len()), (13, 13));
    assert!(pages >= 4);
}

#[tokio::test]
async fn a_continue_token_from_an_older_resource_version_still_works() {
    let s = server();
    for i in 0..6 {
        s.apply(hr("apps", &format!("hr-{i}"))).unwrap();
    }
    let c = client(&s, "admin").await;
    let (_, first) = raw(
        &c,
        "GET",
        "/apis/helm.toolkit.fluxcd.io/v2/namespaces/apps/helmreleases?limit=3",
        &[],
        None,
    )
    .await
    .unwrap();
    let token = first["metadata"]["continue"].as_str().unwrap().to_string();
    let snapshot_rv = first["metadata"]["resourceVersion"].clone();
    // Writes in between do not expire the token.
    s.apply(hr("apps", "zz-new")).unwrap();
    let (code, second) = raw(&c, "GET", &format!("/apis/helm.toolkit.fluxcd.io/v2/namespaces/apps/helmreleases?limit=100&continue={token}"), &[], None).await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(second["metadata"]["resourceVersion"], snapshot_rv);
    assert_eq!(
        second["items"].as_array().unwrap().len(),
        5,
        "hr-3..hr-5, web, zz-new"
    );
    let (code, bad) = raw(
        &c,
        "GET",
        "/apis/helm.toolkit.fluxcd.io/v2/helmreleases?continue=garbage!",
        &[],
        None,
    )
    .await
    .unwrap();
    assert_eq!((code, bad["reason"].as_str()), (400, Some("BadRequest")));
}

#[tokio::test]
async fn metadata_only_list_and_get_carry_only_metadata() {
    let s = server();
    let c = client(&s, "admin").await;
    let accept = (
        "accept",
        "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json",
    );
    let (code, list) = raw(
        &c,
        "GET",
        "/api/v1/namespaces/apps/secrets?labelSelector=owner%3Dhelm",
        &[accept],
        None,
    )
    .await
    .unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        (list["kind"].as_str(), list["apiVersion"].as_str()),
        (Some("PartialObjectMetadataList"), Some("meta.k8s.io/v1"))
    );
    let item = &list["items"][0];
    assert_eq!(item["metadata"]["labels"]["status"], "deployed");
    assert!(item.get("data").is_none() && item.get("type").is_none());
    let accept = (
        "accept",
        "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
    );
    let (_, one) = raw(
        &c,
        "GET",
        "/api/v1/namespaces/apps/secrets/sh.helm.release.v1.web.v1",
        &[accept],
        None,
    )
    .await
    .unwrap();
    assert_eq!(one["kind"], "PartialObjectMetadata");
    assert!(one.get("data").is_none());
}

#[tokio::test]
async fn dry_run_create_and_delete_persist_nothing() {
    let s = server();
    let c = client(&s, "admin").await;
    let coll = "/apis/helm.toolkit.fluxcd.io/v2/namespaces/apps/helmreleases";
    let (code, o) = raw(
        &c,
        "POST",
        &format!("{coll}?dryRun=All"),
        &[],
        Some(hr("apps", "new")),
    )
    .await
    .unwrap();
    assert_eq!(code, 201);
    assert!(o["metadata"].get("resourceVersion").is_none());
    assert!(s.helmrelease("apps", "new").is_none());
    let (code, _) = raw(
        &c,
        "DELETE",
        &format!("{}?dryRun=All", hr_path("apps", "web")),
        &[],
        None,
    )
    .await
    .unwrap();
    assert_eq!(code, 200);
    assert!(s.helmrelease("apps", "web").is_some());
    let (code, _) = raw(
        &c,
        "POST",
        &format!("{coll}?dryRun=Bogus"),
        &[],
        Some(hr("apps", "new")),
    )
    .await
    .unwrap();
    assert_eq!(code, 400);
}

#[tokio::test]
async fn create_drops_status_fills_metadata_and_refuses_duplicates() {
    let s = server();
    let c = client(&s, "admin").await;
    let coll = "/apis/helm.toolkit.fluxcd.io/v2/namespaces/apps/helmreleases";
    let (code, o) = raw(&c, "POST", coll, &[], Some(hr("apps", "fresh")))
        .await
        .unwrap();
    assert_eq!(code, 201);
    assert_eq!(
        o["status"],
        json!({"observedGeneration": -1}),
        "status is a subresource; the CRD default applies"
    );
    assert_eq!(o["metadata"]["generation"], 1);
    assert!(o["metadata"]["uid"].is_string() && o["metadata"]["creationTimestamp"].is_string());
    let (code, st) = raw(&c, "POST", coll, &[], Some(hr("apps", "fresh")))
        .await
        .unwrap();
    assert_eq!((code, st["reason"].as_str()), (409, Some("AlreadyExists")));
    let (code, st) = raw(&c, "GET", &hr_path("apps", "missing"), &[], None)
        .await
        .unwrap();
    assert_eq!(
        (code, st["message"].as_str()),
        (
            404,
            Some("helmreleases.helm.toolkit.fluxcd.io \"missing\" not found")
        )
    );
}

#[tokio::test]
async fn events_of_both_apis_are_one_resource_listed_in_creation_order() {
    let s = server();
    let c = client(&s, "admin").await;
    let ev2 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e1"}, "eventTime": "2026-11-22T10:00:00.000000Z",
        "reason": "A", "action": "X", "reportingController": "c", "reportingInstance": "i", "type": "Normal",
        "regarding": {"kind": "HelmRelease", "name": "web", "namespace": "apps"}});
    let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e2"}, "reason": "B",
        "involvedObject": {"kind": "HelmRelease", "name": "web", "namespace": "apps"}});
    assert_eq!(
        raw(
            &c,
            "POST",
            "/apis/events.k8s.io/v1/namespaces/apps/events",
            &[],
            Some(ev2)
        )
        .await
        .unwrap()
        .0,
        201
    );
    assert_eq!(
        raw(
            &c,
            "POST",
            "/api/v1/namespaces/apps/events",
            &[],
            Some(core)
        )
        .await
        .unwrap()
        .0,
        201
    );
    let reasons: Vec<Value> = s.events().iter().map(|e| e["reason"].clone()).collect();
    assert_eq!(reasons, vec![json!("A"), json!("B")]);
    // One resource behind two APIs, as on a real server.
    assert_eq!(
        s.events()[1]["regarding"]["name"],
        "web",
        "stored in events.k8s.io form"
    );
    let (_, list) = raw(&c, "GET", "/apis/events.k8s.io/v1/events", &[], None)
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let (_, core_list) = raw(
        &c,
        "GET",
        "/api/v1/namespaces/apps/events?fieldSelector=involvedObject.name%3Dweb,reason%3DA",
        &[],
        None,
    )
    .await
    .unwrap();
    let items = core_list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(
        (
            items[0]["apiVersion"].as_str(),
            items[0]["involvedObject"]["kind"].as_str()
        ),
        (Some("v1"), Some("HelmRelease"))
    );
    assert_eq!(items[0]["reportingComponent"], "c");
}

#[tokio::test]
async fn namespaces_are_implied_and_field_selectors_filter_by_name() {
    let s = server();
    let c = client(&s, "admin").await;
    let (_, ns) = raw(&c, "GET", "/api/v1/namespaces", &[], None)
        .await
        .unwrap();
    let names: Vec<&str> = ns["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["apps", "data"]);
    let (_, one) = raw(
        &c,
        "GET",
        "/apis/helm.toolkit.fluxcd.io/v2/helmreleases?fieldSelector=metadata.name%3Ddb",
        &[],
        None,
    )
    .await
    .unwrap();
    assert_eq!(one["items"].as_array().unwrap().len(), 1);
    let (code, _) = raw(
        &c,
        "GET",
        "/apis/helm.toolkit.fluxcd.io/v2/helmreleases?fieldSelector=spec.suspend%3Dtrue",
        &[],
        None,
    )
    .await
    .unwrap();
    assert_eq!(code, 400);
}

#[tokio::test]
async fn watch_is_refused_plainly() {
    let s = server();
    let c = client(&s, "admin").await;
    let (code, st) = raw(
        &c,
        "GET",
        "/apis/helm.toolkit.fluxcd.io/v2/helmreleases?watch=true",
        &[],
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        (code, st["reason"].as_str()),
        (405, Some("MethodNotAllowed"))
    );
}

#[tokio::test]
async fn the_request_log_records_what_tests_assert_on() {
    let s = server();
    let c = client(&s, "admin").await;
    s.clear_requests();
    raw(
        &c,
        "PATCH",
        &format!(
            "{}?dryRun=All&fieldManager=stuck-hr-recovery",
            hr_path("apps", "web")
        ),
        &[MERGE],
        Some(json!({"spec": {"suspend": true}})),
    )
    .await
    .unwrap();
    let r = s.requests().pop().unwrap();
    assert_eq!(
        (r.method.as_str(), r.verb.as_str(), r.status),
        ("PATCH", "patch", 200)
    );
    assert_eq!(
        (r.group.as_str(), r.version.as_str(), r.resource.as_deref()),
        ("helm.toolkit.fluxcd.io", "v2", Some("helmreleases"))
    );
    assert_eq!(
        (
            r.namespace.as_deref(),
            r.name.as_deref(),
            r.subresource.as_deref()
        ),
        (Some("apps"), Some("web"), None)
    );
    assert!(r.dry_run);
    assert_eq!(r.field_manager.as_deref(), Some("stuck-hr-recovery"));
    assert_eq!(
        r.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(r.body, Some(json!({"spec": {"suspend": true}})));
    assert_eq!(r.user, "admin");
    assert!(r.request_bytes > 0 && r.response_bytes > 0);
}

#[test]
fn apply_file_reads_lists_and_multi_document_yaml() {
    let s = fake_apiserver::FakeApiServer::start(fake_apiserver::ServerConfig::new()).unwrap();
    assert_eq!(
        s.apply_file(&common::fixture("helmreleases.yaml")).unwrap(),
        3
    );
    assert_eq!(s.helmreleases().len(), 2);
    assert!(
        s.get("v1", "secrets", Some("apps"), "sh.helm.release.v1.web.v1")
            .is_some()
    );
    assert!(s.requests().is_empty(), "seeding bypasses the request log");
    let web = s.helmrelease("apps", "web").unwrap();
    assert_eq!(
        web["status"]["conditions"][0]["status"], "Unknown",
        "apply keeps status"
    );
}

#[tokio::test]
async fn a_page_size_cap_pages_even_unlimited_lists() {
    let s =
        fake_apiserver::FakeApiServer::start(fake_apiserver::ServerConfig::new().page_size_cap(2))
            .unwrap();
    s.apply_file(&common::fixture("helmreleases.yaml")).unwrap();
    s.apply(hr("apps", "third")).unwrap();
    let c = client(&s, "admin").await;
    let (_, page) = raw(
        &c,
        "GET",
        "/apis/helm.toolkit.fluxcd.io/v2/helmreleases?limit=500",
        &[],
        None,
    )
    .await
    .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert!(page["metadata"]["continue"].is_string());
    let (_, unlimited) = raw(
        &c,
        "GET",
        "/apis/helm.toolkit.fluxcd.io/v2/helmreleases",
        &[],
        None,
    )
    .await
    .unwrap();
    assert_eq!(unlimited["items"].as_array().unwrap().len(), 2);
}
