//! The chart's pod: the downward API hands the pod name to the binary as
//! `POD_NAME`, which becomes the Events' `reportingInstance`, and the pod
//! gets 30 s between SIGTERM and SIGKILL (SPEC §8).

use crate::chart_support::render;
use crate::common::*;
use serde_json::json;

#[test]
fn the_pod_name_reaches_the_binary_through_the_downward_api() {
    let rendered = render(&[]);
    let env = &rendered.container()["env"];
    assert_eq!(
        env,
        &json!([{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]),
        "{env:#}"
    );
}

#[test]
fn the_pod_has_thirty_seconds_to_clean_up_after_sigterm() {
    let rendered = render(&[]);
    assert_eq!(
        rendered.pod_spec()["terminationGracePeriodSeconds"],
        json!(30)
    );
}

#[test]
fn pod_name_is_the_events_reporting_instance() {
    let cluster = Cluster::start();
    cluster.seed(stuck_deployed("apps", "web"));
    let out = cluster
        .std_cmd()
        .env("POD_NAME", "stuck-hr-recovery-29391840-x7k2p")
        .output()
        .expect("the binary runs");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let events = cluster.server.events();
    assert!(!events.is_empty(), "the correction emitted an Event");
    for event in events {
        assert_eq!(
            event["reportingInstance"],
            json!("stuck-hr-recovery-29391840-x7k2p"),
            "{event:#}"
        );
        assert_eq!(
            event["reportingController"],
            json!(FIELD_MANAGER),
            "{event:#}"
        );
    }
}
