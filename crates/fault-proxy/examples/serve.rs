//! The proxy by hand, in front of any API server:
//!
//! ```sh
//! cargo run -p fault-proxy --example serve -- \
//!     --upstream https://127.0.0.1:6443 --upstream-ca ca.crt \
//!     --ca-cert ca.crt --ca-key ca.key \
//!     [--rule METHOD,RESOURCE,SUBRESOURCE,ACTION,OCCURRENCE]...
//! ```
//!
//! Prints the proxy's URL as its first line, serves until its stdin closes,
//! then prints every exchange, one per line. A rule: METHOD or `*`; the
//! plural RESOURCE or `*`; SUBRESOURCE, `-` for the main resource or `*`;
//! ACTION one of `forward`, `forward-then-504`, `forward-then-drop`, `drop`,
//! `429` (Retry-After: 1), `500`, `409`; OCCURRENCE `every`, `nth=N` or
//! `first=N`. Example: `PATCH,helmreleases,-,forward-then-504,first=1`.

use std::io::Read;

use anyhow::{Context, bail};
use fault_proxy::{Action, CaPem, FaultProxy, ProxyConfig, Reply, Rule};

fn rule(spec: &str) -> anyhow::Result<Rule> {
    let parts: Vec<&str> = spec.split(',').collect();
    let [method, resource, sub, action, occurrence] = parts.as_slice() else {
        bail!("a rule is METHOD,RESOURCE,SUBRESOURCE,ACTION,OCCURRENCE: {spec}");
    };
    let action = match *action {
        "forward" => Action::Forward,
        "forward-then-504" => Action::forward_then_timeout(),
        "forward-then-drop" => Action::ForwardThenDrop,
        "drop" => Action::Drop,
        "429" => Action::Respond(Reply::too_many_requests(1)),
        "500" => Action::Respond(Reply::internal_error()),
        "409" => Action::Respond(Reply::conflict()),
        other => bail!("unknown action {other}"),
    };
    let mut r = Rule::new(action);
    if *method != "*" {
        r = r.method(method);
    }
    if *resource != "*" {
        r = r.resource(resource);
    }
    r = match *sub {
        "*" => r,
        "-" => r.main_resource(),
        s => r.subresource(s),
    };
    r = match occurrence.split_once('=') {
        None if *occurrence == "every" => r.every(),
        Some(("nth", n)) => r.nth(n.parse().context("nth=N")?),
        Some(("first", n)) => r.first(n.parse().context("first=N")?),
        _ => bail!("unknown occurrence {occurrence}"),
    };
    Ok(r)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut upstream, mut upstream_ca, mut ca_cert, mut ca_key) = (None, None, None, None);
    let mut rules = Vec::new();
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--upstream" => upstream = Some(value()?),
            "--upstream-ca" => upstream_ca = Some(value()?),
            "--ca-cert" => ca_cert = Some(value()?),
            "--ca-key" => ca_key = Some(value()?),
            "--rule" => rules.push(rule(&value()?)?),
            other => bail!("unknown flag {other}"),
        }
    }
    let need = |v: Option<String>, f: &str| v.with_context(|| format!("{f} is required"));
    let upstream = need(upstream, "--upstream")?;
    let upstream_ca = std::fs::read_to_string(need(upstream_ca, "--upstream-ca")?)?;
    let ca = CaPem::from_files(need(ca_cert, "--ca-cert")?, need(ca_key, "--ca-key")?)?;
    let proxy = FaultProxy::start(ProxyConfig::new(upstream, upstream_ca, ca))?;
    for r in rules {
        proxy.add_rule(r);
    }
    println!("{}", proxy.url());
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    for e in proxy.requests() {
        println!(
            "#{} {} rule={:?} action={:?} forwarded={} upstream={:?} -> {:?}",
            e.id,
            e.line(),
            e.rule.map(|r| r.0),
            e.action,
            e.forwarded,
            e.upstream_status,
            e.outcome
        );
    }
    Ok(())
}
