//! Which proxy, if any, carries the requests to the API server — decided as
//! kubectl (client-go and Go's `net/http`) decides it, so whatever kubectl
//! reaches from the same shell this binary reaches too:
//!
//! 1. the kubeconfig cluster's `proxy-url`, when set, always (the
//!    environment is not consulted);
//! 2. else `HTTPS_PROXY` (or `https_proxy`), unless the server is
//!    `localhost` or a loopback address (Go never proxies those), or
//!    `NO_PROXY` (or `no_proxy`) names it: `*`, an IP address, a CIDR range
//!    (`10.0.0.0/8`), a host (`example.com`, which also covers its
//!    subdomains), a domain (`.example.com` or `*.example.com`, subdomains
//!    only), each optionally with `:port`.
//!
//! kube-client's own choice differs (it checks `NO_PROXY` against the proxy's
//! address, not the server's, and applies it to `proxy-url` too), so the
//! client is built with this decision instead. Pure: the environment is
//! passed in.

use std::net::IpAddr;

use http::Uri;
use ipnet::IpNet;

/// The proxy variables of the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    /// `HTTPS_PROXY`, else `https_proxy` (empty counts as unset).
    pub https_proxy: Option<String>,
    /// `NO_PROXY`, else `no_proxy` (empty counts as unset).
    pub no_proxy: Option<String>,
}

impl ProxyEnv {
    /// Reads the variables of this process.
    pub fn from_process() -> Self {
        let any = |names: [&str; 2]| {
            names
                .iter()
                .filter_map(|n| std::env::var(n).ok())
                .find(|v| !v.trim().is_empty())
        };
        ProxyEnv {
            https_proxy: any(["HTTPS_PROXY", "https_proxy"]),
            no_proxy: any(["NO_PROXY", "no_proxy"]),
        }
    }
}

/// A proxy address that is not a URL.
#[derive(Debug, thiserror::Error)]
#[error("proxy {origin} {value:?} is not a URL such as http://proxy.example.com:3128")]
pub struct BadProxyUrl {
    /// Where it came from: `proxy-url of the kubeconfig cluster` or `HTTPS_PROXY`.
    pub origin: &'static str,
    pub value: String,
    #[source]
    pub source: http::uri::InvalidUri,
}

/// The proxy for requests to `server`, or `None` for a direct connection.
///
/// # Errors
/// [`BadProxyUrl`] when the chosen proxy address does not parse.
pub fn proxy_for(
    server: &Uri,
    kubeconfig_proxy: Option<&str>,
    env: &ProxyEnv,
) -> Result<Option<Uri>, BadProxyUrl> {
    let parse = |origin, value: &str| {
        // Like Go, a bare `host:port` means an http:// proxy.
        let text = if value.contains("://") {
            value.to_owned()
        } else {
            format!("http://{value}")
        };
        text.parse::<Uri>().map(Some).map_err(|source| BadProxyUrl {
            origin,
            value: value.to_owned(),
            source,
        })
    };
    if let Some(proxy) = kubeconfig_proxy.filter(|p| !p.trim().is_empty()) {
        return parse("proxy-url of the kubeconfig cluster", proxy.trim());
    }
    let Some(proxy) = env.https_proxy.as_deref() else {
        return Ok(None);
    };
    if bypasses(server, env.no_proxy.as_deref().unwrap_or("")) {
        return Ok(None);
    }
    parse("HTTPS_PROXY", proxy.trim())
}

/// Whether a request to `server` goes direct despite `HTTPS_PROXY`.
fn bypasses(server: &Uri, no_proxy: &str) -> bool {
    let Some(host) = server.host() else {
        return true;
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = server.port_u16().unwrap_or(443);
    let ip = host.parse::<IpAddr>().ok();
    if host == "localhost" || ip.is_some_and(|ip| ip.is_loopback()) {
        return true;
    }
    no_proxy
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .any(|entry| entry_matches(entry, &host, ip, port))
}

fn entry_matches(entry: &str, host: &str, ip: Option<IpAddr>, port: u16) -> bool {
    if entry == "*" {
        return true;
    }
    if let Ok(net) = entry.parse::<IpNet>() {
        return ip.is_some_and(|ip| net.contains(&ip));
    }
    let (name, entry_port) = split_port(entry);
    if entry_port.is_some_and(|p| p != port) {
        return false;
    }
    let name = name.to_ascii_lowercase();
    if let Ok(entry_ip) = name.parse::<IpAddr>() {
        return ip == Some(entry_ip);
    }
    if ip.is_some() {
        // Host and domain entries never match an address.
        return false;
    }
    let name = name.strip_prefix('*').unwrap_or(&name);
    match name.strip_prefix('.') {
        Some(domain) => host.ends_with(&format!(".{domain}")),
        None => host == name || host.ends_with(&format!(".{name}")),
    }
}

/// `host:port`, `[v6]:port`, `[v6]`, `v6` or `host` into name and port.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((v6, tail)) => (v6, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (rest, None),
        };
    }
    match entry.rsplit_once(':') {
        // More than one ':' without brackets is a bare IPv6 address.
        Some((name, port)) if !name.contains(':') => match port.parse() {
            Ok(port) => (name, Some(port)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(https_proxy: Option<&str>, no_proxy: Option<&str>) -> ProxyEnv {
        ProxyEnv {
            https_proxy: https_proxy.map(str::to_owned),
            no_proxy: no_proxy.map(str::to_owned),
        }
    }

    fn decide(server: &str, kubeconfig: Option<&str>, env: &ProxyEnv) -> Option<String> {
        let server: Uri = server.parse().expect("test server URL");
        proxy_for(&server, kubeconfig, env)
            .expect("valid proxy")
            .map(|u| u.to_string())
    }

    const PROXY: &str = "http://proxy.corp:3128";
    const VIA: Option<&str> = Some("http://proxy.corp:3128/");

    #[test]
    fn https_proxy_is_used_unless_no_proxy_names_the_server() {
        let cases: [(&str, Option<&str>, Option<&str>); 27] = [
            ("https://api.example.com", None, VIA),
            ("https://api.example.com", Some(""), VIA),
            ("https://api.example.com", Some("*"), None),
            ("https://api.example.com", Some("example.com"), None),
            ("https://example.com", Some("example.com"), None),
            ("https://api.example.com", Some(".example.com"), None),
            ("https://example.com", Some(".example.com"), VIA),
            ("https://api.example.com", Some("*.example.com"), None),
            ("https://badexample.com", Some("example.com"), VIA),
            ("https://API.Example.COM", Some("api.example.com"), None),
            (
                "https://api.example.com",
                Some("other.org, api.example.com "),
                None,
            ),
            (
                "https://api.example.com:6443",
                Some("api.example.com:6443"),
                None,
            ),
            (
                "https://api.example.com:6443",
                Some("api.example.com:443"),
                VIA,
            ),
            ("https://api.example.com", Some("api.example.com:443"), None),
            ("https://10.1.2.3:6443", Some("10.0.0.0/8"), None),
            ("https://192.0.2.7", Some("10.0.0.0/8"), VIA),
            ("https://192.0.2.7", Some("192.0.2.7"), None),
            ("https://192.0.2.7:6443", Some("192.0.2.7:6443"), None),
            ("https://192.0.2.7:6443", Some("192.0.2.7:443"), VIA),
            ("https://192.0.2.7", Some("192.0.2.0/24"), None),
            ("https://[fd00::2]:6443", Some("fd00::/8"), None),
            ("https://[fd00::2]:6443", Some("[fd00::2]:6443"), None),
            ("https://[fd00::2]:6443", Some("fe80::/10"), VIA),
            ("https://192.0.2.7", Some("example.com"), VIA),
            ("https://127.0.0.1:6443", None, None),
            ("https://[::1]:6443", None, None),
            ("https://localhost:6443", None, None),
        ];
        for (server, no_proxy, expected) in cases {
            let got = decide(server, None, &env(Some(PROXY), no_proxy));
            assert_eq!(got.as_deref(), expected, "{server} NO_PROXY={no_proxy:?}");
        }
    }

    #[test]
    fn without_https_proxy_every_request_goes_direct() {
        assert_eq!(
            decide("https://api.example.com", None, &env(None, None)),
            None
        );
        assert_eq!(
            decide("https://api.example.com", None, &env(None, Some("*"))),
            None
        );
    }

    #[test]
    fn the_kubeconfig_proxy_url_wins_and_ignores_no_proxy_and_loopback() {
        let kubeconfig = Some("http://127.0.0.1:8888");
        for env in [
            env(None, None),
            env(Some(PROXY), None),
            env(Some(PROXY), Some("*")),
        ] {
            for server in ["https://api.example.com", "https://127.0.0.1:6443"] {
                assert_eq!(
                    decide(server, kubeconfig, &env).as_deref(),
                    Some("http://127.0.0.1:8888/"),
                    "{server} {env:?}"
                );
            }
        }
        assert_eq!(
            decide(
                "https://api.example.com",
                Some("  "),
                &env(Some(PROXY), None)
            )
            .as_deref(),
            VIA,
            "an empty proxy-url is unset"
        );
    }

    #[test]
    fn a_proxy_without_scheme_is_an_http_proxy() {
        assert_eq!(
            decide(
                "https://api.example.com",
                None,
                &env(Some("proxy.corp:3128"), None)
            )
            .as_deref(),
            VIA
        );
    }

    #[test]
    fn a_proxy_that_is_not_a_url_is_an_error_naming_its_origin() {
        let server: Uri = "https://api.example.com".parse().expect("URL");
        let err =
            proxy_for(&server, None, &env(Some("http://bad proxy"), None)).expect_err("not a URL");
        assert!(err.to_string().contains("HTTPS_PROXY"), "{err}");
        let err =
            proxy_for(&server, Some("http://bad proxy"), &env(None, None)).expect_err("not a URL");
        assert!(err.to_string().contains("kubeconfig"), "{err}");
    }
}
