//! Acceptance 2: kube-rs (rustls, kubeconfig with CA + token) against the fake.

mod common;

use common::{HR_API, SA, client, hr, rbac_server, server};
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::json;

fn hr_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("helm.toolkit.fluxcd.io", "v2", "HelmRelease"),
        "helmreleases",
    )
}

#[tokio::test]
async fn kube_lists_helmreleases_as_dynamic_objects_with_limit_and_continue() {
    let s = server();
    for i in 0..11 {
        s.apply(hr(&format!("ns-{:02}", i % 4), &format!("hr-{i:02}")))
            .unwrap();
    }
    let c = client(&s, "admin").await;
    let api: Api<DynamicObject> = Api::all_with(c, &hr_resource());
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut lp = ListParams::default().limit(4);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 4);
        names.extend(page.items.iter().map(|o| {
            format!(
                "{}/{}",
                o.metadata.namespace.clone().unwrap(),
                o.metadata.name.clone().unwrap()
            )
        }));
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => break,
        }
    }
    assert_eq!(pages, 4, "13 objects in pages of 4");
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        names, sorted,
        "stable (namespace, name) order, no duplicates"
    );
    assert_eq!(names.len(), 13);
}

#[tokio::test]
async fn kube_list_metadata_on_secrets_with_a_label_selector() {
    let s = server();
    for (name, status) in [("a", "superseded"), ("a2", "deployed"), ("b", "failed")] {
        s.apply(json!({"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
            "metadata": {"name": format!("sh.helm.release.v1.{name}.v1"), "namespace": "apps",
                         "labels": {"owner": "helm", "name": "web", "status": status, "version": "1"}},
            "data": {"release": "SDRzSQ=="}})).unwrap();
    }
    let c = client(&s, "admin").await;
    let api: Api<Secret> = Api::namespaced(c, "apps");
    let list = api
        .list_metadata(
            &ListParams::default().labels("owner=helm,name=web,status in (deployed,superseded)"),
        )
        .await
        .unwrap();
    let mut names: Vec<String> = list
        .items
        .iter()
        .map(|m| m.metadata.name.clone().unwrap())
        .collect();
    names.sort();
    // The fixture's own `web` release Secret matches too; the failed one does not.
    assert_eq!(
        names,
        vec![
            "sh.helm.release.v1.a.v1",
            "sh.helm.release.v1.a2.v1",
            "sh.helm.release.v1.web.v1"
        ]
    );
    let req = s
        .requests()
        .into_iter()
        .rfind(|r| r.verb == "list")
        .unwrap();
    assert_eq!(
        req.query.get("labelSelector").map(String::as_str),
        Some("owner=helm,name=web,status in (deployed,superseded)")
    );
}

#[tokio::test]
async fn kube_merge_patch_with_a_stale_resource_version_is_a_conflict() {
    let s = server();
    let c = client(&s, "admin").await;
    let api: Api<DynamicObject> = Api::namespaced_with(c, "apps", &hr_resource());
    let obj = api.get("web").await.unwrap();
    let rv = obj.metadata.resource_version.clone().unwrap();
    let pp = PatchParams {
        field_manager: Some("stuck-hr-recovery".into()),
        ..Default::default()
    };
    let fresh = api
        .patch(
            "web",
            &pp,
            &Patch::Merge(json!({"metadata": {"resourceVersion": rv, "annotations": {"x": "1"}}})),
        )
        .await
        .unwrap();
    assert_ne!(
        fresh.metadata.resource_version.as_deref(),
        Some(rv.as_str())
    );
    let err = api
        .patch(
            "web",
            &pp,
            &Patch::Merge(json!({"metadata": {"resourceVersion": rv, "annotations": {"x": "2"}}})),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
            assert!(
                s.message.contains("the object has been modified"),
                "{}",
                s.message
            );
        }
        other => panic!("expected a 409 Status, got {other:?}"),
    }
    assert_eq!(
        s.helmrelease("apps", "web").unwrap()["metadata"]["annotations"]["x"],
        "1"
    );
    assert!(
        s.requests()
            .iter()
            .filter(|r| r.method == "PATCH")
            .all(|r| r.field_manager.as_deref() == Some("stuck-hr-recovery"))
    );
}

#[tokio::test]
async fn kube_patch_status_changes_status_and_not_generation() {
    let s = rbac_server();
    let c = client(&s, SA).await;
    let api: Api<DynamicObject> = Api::namespaced_with(c, "apps", &hr_resource());
    let patched = api
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [common::condition("Ready", "True", "ReconciliationSucceeded", "ok")]}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data["status"]["conditions"][0]["status"], "True");
    let stored = s.helmrelease("apps", "web").unwrap();
    assert_eq!(
        stored["status"]["conditions"][0]["reason"],
        "ReconciliationSucceeded"
    );
    assert_eq!(stored["metadata"]["generation"], 1);
    let req = s
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(
        (req.subresource.as_deref(), req.user.as_str(), req.status),
        (Some("status"), SA, 200)
    );
}

#[tokio::test]
async fn kube_server_dry_run_answers_but_persists_nothing() {
    let s = server();
    let before = s.helmrelease("apps", "web").unwrap();
    let c = client(&s, "admin").await;
    let api: Api<DynamicObject> = Api::namespaced_with(c, "apps", &hr_resource());
    let pp = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    let answer = api
        .patch(
            "web",
            &pp,
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();
    assert_eq!(answer.data["spec"]["suspend"], true);
    assert_eq!(
        answer.metadata.generation,
        Some(2),
        "the answer shows what would be stored"
    );
    assert_eq!(
        s.helmrelease("apps", "web").unwrap(),
        before,
        "nothing persisted, resourceVersion unchanged"
    );
    // A dry run still validates.
    let err = api
        .patch_status(
            "web",
            &pp,
            &Patch::Merge(
                json!({"status": {"conditions": [{"type": "Ready", "status": "Maybe"}]}}),
            ),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref st) if st.code == 422),
        "{err:?}"
    );
    assert!(
        s.requests()
            .iter()
            .filter(|r| r.method == "PATCH")
            .all(|r| r.dry_run)
    );
}

#[tokio::test]
async fn kube_events_recorder_creates_then_patches_a_repeated_event() {
    let s = rbac_server();
    let c = client(&s, SA).await;
    let recorder = Recorder::new(
        c,
        Reporter {
            controller: "stuck-hr-recovery".into(),
            instance: Some("test".into()),
        },
    );
    let reference = ObjectReference {
        api_version: Some(HR_API.into()),
        kind: Some("HelmRelease".into()),
        name: Some("web".into()),
        namespace: Some("apps".into()),
        uid: s.helmrelease("apps", "web").unwrap()["metadata"]["uid"]
            .as_str()
            .map(str::to_string),
        ..Default::default()
    };
    let ev = Event {
        type_: EventType::Normal,
        reason: "StuckReleaseCorrected".into(),
        note: Some("auto-corrected".into()),
        action: "CorrectStatus".into(),
        secondary: None,
    };
    recorder.publish(&ev, &reference).await.unwrap();
    recorder.publish(&ev, &reference).await.unwrap();
    let events = s.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["reason"], "StuckReleaseCorrected");
    assert_eq!(events[0]["regarding"]["name"], "web");
    assert_eq!(events[0]["series"]["count"], 2);
    let verbs: Vec<String> = s
        .requests()
        .iter()
        .filter(|r| r.resource.as_deref() == Some("events"))
        .map(|r| r.verb.clone())
        .collect();
    assert_eq!(verbs, vec!["create", "patch"]);
    let tally = s.rbac_tally();
    assert!(tally.denied.is_empty(), "{:?}", tally.denied);
    let events_rule = tally
        .used
        .iter()
        .find(|(r, _)| r.api_groups == ["events.k8s.io"])
        .unwrap();
    assert_eq!(events_rule.1, 2);
}

#[tokio::test]
async fn kube_client_with_an_unknown_token_gets_401() {
    let s = server();
    let c = client(&s, "stranger").await;
    let api: Api<DynamicObject> = Api::all_with(c, &hr_resource());
    let err = api.list(&ListParams::default()).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref st) if st.code == 401 && st.reason == "Unauthorized"),
        "{err:?}"
    );
}
