//! A label selector or namespace name the API server would reject is bad
//! usage (SPEC §7): exit 2, a message naming the bad part, no report, and
//! not a single request reaches the server.

use crate::common::*;

/// Flags, environment variables, and what the message must name.
type Case = (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[test]
fn a_selector_or_namespace_the_api_server_would_reject_is_exit_2_before_any_request() {
    let cluster = Cluster::start();
    cluster.seed([Hr::healthy("apps", "calm").build()]);
    let cases: [Case; 7] = [
        (&["-l", "app in (a,b"], &[], "expected ',' or ')'"),
        (
            &["--selector", "app=we/b"],
            &[],
            "value \"we/b\" of key \"app\"",
        ),
        (&["-l", "Example.com/app"], &[], "prefix \"Example.com\""),
        (&[], &[("STUCK_HR_SELECTOR", "!app=x")], "found '='"),
        (&["-n", "Bad_NS"], &[], "\"Bad_NS\" for --namespace"),
        (
            &["-n", "apps", "-n", "apps-"],
            &[],
            "\"apps-\" for --namespace",
        ),
        (
            &[],
            &[("STUCK_HR_NAMESPACES", "apps,Other")],
            "\"Other\" for --namespace",
        ),
    ];
    for (args, env, names) in cases {
        let mut cmd = cluster.std_cmd();
        cmd.args(args).envs(env.iter().copied());
        let out = cmd.output().expect("the binary runs");
        let stderr = usage_error(&out, &format!("{args:?} {env:?}"));
        assert!(
            stderr.contains(names),
            "{args:?} {env:?}: names {names:?}: {stderr}"
        );
    }
    assert!(
        cluster.requests().is_empty(),
        "no request on bad usage: {:?}",
        cluster.requests()
    );
}

#[test]
fn a_valid_set_based_selector_and_namespaces_reach_the_server_unchanged() {
    let cluster = Cluster::start();
    cluster.seed([
        Hr::healthy("apps", "web").label("tier", "front").build(),
        Hr::healthy("apps", "db").label("tier", "back").build(),
    ]);
    let out = cluster.run(&["-n", "apps", "-l", "tier in (front, edge),!skip"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stdout(&out).starts_with("scanned=1 "),
        "the server applied the selector: {}",
        describe(&out)
    );
    let lists: Vec<_> = cluster
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/helmreleases"))
        .collect();
    assert!(!lists.is_empty(), "listed HelmReleases");
    for list in lists {
        assert!(
            list.path
                .starts_with("/apis/helm.toolkit.fluxcd.io/v2/namespaces/apps/"),
            "{list:?}"
        );
        assert_eq!(
            list.query.get("labelSelector").map(String::as_str),
            Some("tier in (front, edge),!skip"),
            "{list:?}"
        );
    }
}
