//! The serving side: accept TLS connections, read each request whole, pick
//! the rule, and forward (streaming the answer), answer, drop or hold.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use crate::rules::{Action, ActionKind, Reply, RequestInfo};
use crate::state::{Exchange, Held, HeldRequest, Outcome, Shared};

/// Returned by the service to make hyper close the client's connection
/// without an answer.
#[derive(Debug)]
pub(crate) struct Dropped(pub String);

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "connection dropped by fault-proxy: {}", self.0)
    }
}

impl std::error::Error for Dropped {}

type Body = BoxBody<Bytes, hyper::Error>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// Where and how to reach the upstream API server.
pub(crate) struct Upstream {
    /// `host:port`
    pub authority: String,
    pub host: String,
    pub port: u16,
    pub connector: tokio_rustls::TlsConnector,
    pub shared: Arc<Shared>,
    pub runtime: tokio::runtime::Handle,
}

impl Upstream {
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.authority))?;
        let _ = tcp.set_nodelay(true);
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| format!("upstream host {}: {e}", self.host))?;
        let tls = self
            .connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS to {}: {e}", self.authority))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP/1.1 handshake with {}: {e}", self.authority))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
}

/// Headers that belong to one hop, not to the request.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !hop_by_hop(name) && name != header::HOST {
            to.append(name.clone(), value.clone());
        }
    }
}

/// One client connection: its upstream connection is reused while idle.
struct Conn {
    upstream: Arc<Upstream>,
    sender: tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>,
}

/// The request as it is forwarded (kept whole so a held request can be
/// forwarded after its client is gone).
#[derive(Clone)]
struct Outgoing {
    method: hyper::Method,
    path_and_query: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Outgoing {
    fn build(&self, authority: &str) -> Result<Request<Full<Bytes>>, String> {
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(self.path_and_query.as_str())
            .body(Full::new(self.body.clone()))
            .map_err(|e| format!("building the upstream request: {e}"))?;
        copy_headers(&self.headers, req.headers_mut());
        req.headers_mut().insert(
            header::HOST,
            HeaderValue::from_str(authority).map_err(|e| e.to_string())?,
        );
        Ok(req)
    }
}

impl Conn {
    async fn send(&self, out: &Outgoing) -> Result<Response<Incoming>, String> {
        let mut slot = self.sender.lock().await;
        let mut sender = match slot.take() {
            Some(s) if s.is_ready() => s,
            _ => self.upstream.connect().await?,
        };
        let req = out.build(&self.upstream.authority)?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("upstream request: {e}"))?;
        *slot = Some(sender);
        Ok(resp)
    }
}

/// Marks the exchange `ClientGone` when the service future is dropped
/// (hyper drops it when the client's connection closes) before the
/// exchange was settled.
struct Settle {
    shared: Arc<Shared>,
    id: u64,
    done: bool,
}

impl Settle {
    fn finish(&mut self, f: impl FnOnce(&mut Exchange)) {
        self.done = true;
        self.shared.update(self.id, f);
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        if !self.done {
            self.shared.update(self.id, |e| {
                if matches!(e.outcome, Outcome::Pending | Outcome::Held) {
                    e.outcome = Outcome::ClientGone;
                }
            });
        }
    }
}

fn reply_response(reply: &Reply, info: &RequestInfo) -> Response<Body> {
    let (content_type, body) = reply.render(info);
    let mut resp = Response::new(full(body));
    *resp.status_mut() = hyper::StatusCode::from_u16(reply.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    if let Some(s) = reply.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    resp
}

fn stream_response(resp: Response<Incoming>) -> Response<Body> {
    let (parts, body) = resp.into_parts();
    let mut out = Response::new(body.boxed());
    *out.status_mut() = parts.status;
    copy_headers(&parts.headers, out.headers_mut());
    out
}

/// Serves one accepted TLS connection.
pub(crate) async fn serve_connection(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    upstream: Arc<Upstream>,
) {
    let conn = Arc::new(Conn {
        upstream,
        sender: tokio::sync::Mutex::new(None),
    });
    let svc = hyper::service::service_fn(move |req| {
        let conn = conn.clone();
        async move { handle(conn, req).await }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(tls), svc)
        .await;
}

async fn handle(conn: Arc<Conn>, req: Request<Incoming>) -> Result<Response<Body>, Dropped> {
    let shared = conn.upstream.shared.clone();
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Err(Dropped(format!("reading the request body: {e}"))),
    };
    let info = RequestInfo::new(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query(),
        body.clone(),
    );
    let out = Outgoing {
        method: parts.method.clone(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".to_string()),
        headers: parts.headers,
        body,
    };

    // Pick the rule and record the exchange in one step.
    let (id, rule, mut action) = {
        let mut inner = shared.lock();
        // Every active rule counts its matches, so "the n-th" means the
        // n-th matching request through the proxy, whichever rule acted on
        // the earlier ones; the first rule that selects this one acts.
        let mut chosen = None;
        for entry in inner.rules.iter_mut().filter(|r| r.active) {
            if entry.rule.matches(&info) {
                entry.stats.matched += 1;
                if chosen.is_none() && entry.rule.occurrence.selects(entry.stats.matched) {
                    entry.stats.fired += 1;
                    chosen = Some((entry.id, entry.rule.action.clone()));
                }
            }
        }
        inner.next_exchange += 1;
        let id = inner.next_exchange;
        let (rule, action) = match chosen {
            Some((r, a)) => (Some(r), a),
            None => (None, Action::Forward),
        };
        inner.log.push(Exchange {
            id,
            method: info.method.clone(),
            path: info.path.clone(),
            query: info.query.clone(),
            namespace: info.namespace.clone(),
            resource: info.resource.clone(),
            name: info.name.clone(),
            subresource: info.subresource.clone(),
            watch: info.watch,
            body: info.body_text(),
            rule,
            action: action.kind(),
            forwarded: false,
            upstream_status: None,
            outcome: Outcome::Pending,
        });
        (id, rule, action)
    };
    shared.changed();
    let mut settle = Settle {
        shared: shared.clone(),
        id,
        done: false,
    };

    if let (Action::Hold, Some(rule)) = (&action, rule) {
        let (tx, rx) = oneshot::channel();
        {
            let mut inner = shared.lock();
            inner.held.insert(
                id,
                Held {
                    info: HeldRequest {
                        id,
                        rule,
                        request: info.clone(),
                        client_connected: true,
                    },
                    headers: out.headers.clone(),
                    tx,
                },
            );
            if let Some(e) = inner.log.iter_mut().rev().find(|e| e.id == id) {
                e.outcome = Outcome::Held;
            }
        }
        shared.changed();
        action = match rx.await {
            Ok(a) => a,
            // The proxy is shutting down.
            Err(_) => Action::Drop,
        };
        shared.update(id, |e| e.action = action.kind());
    }

    if let Action::Delay(d) = action {
        tokio::time::sleep(d).await;
    }
    match action {
        Action::Forward | Action::Delay(_) => match conn.send(&out).await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                settle.finish(|e| {
                    e.forwarded = true;
                    e.upstream_status = Some(status);
                    e.outcome = Outcome::Answered(status);
                });
                Ok(stream_response(resp))
            }
            Err(err) => {
                settle.finish(|e| e.outcome = Outcome::UpstreamError(err.clone()));
                Err(Dropped(err))
            }
        },
        Action::ForwardThenRespond(_) | Action::ForwardThenDrop => {
            let answer = async {
                let resp = conn.send(&out).await?;
                let status = resp.status().as_u16();
                resp.into_body()
                    .collect()
                    .await
                    .map_err(|e| format!("reading the upstream answer: {e}"))?;
                Ok::<u16, String>(status)
            }
            .await;
            let status = match answer {
                Ok(s) => s,
                Err(err) => {
                    settle.finish(|e| e.outcome = Outcome::UpstreamError(err.clone()));
                    return Err(Dropped(err));
                }
            };
            match action {
                Action::ForwardThenRespond(reply) => {
                    settle.finish(|e| {
                        e.forwarded = true;
                        e.upstream_status = Some(status);
                        e.outcome = Outcome::Answered(reply.status);
                    });
                    Ok(reply_response(&reply, &info))
                }
                _ => {
                    settle.finish(|e| {
                        e.forwarded = true;
                        e.upstream_status = Some(status);
                        e.outcome = Outcome::Dropped;
                    });
                    Err(Dropped(format!("after the upstream answered {status}")))
                }
            }
        }
        Action::Respond(reply) => {
            settle.finish(|e| e.outcome = Outcome::Answered(reply.status));
            Ok(reply_response(&reply, &info))
        }
        Action::Drop | Action::Hold => {
            settle.finish(|e| e.outcome = Outcome::Dropped);
            Err(Dropped("by a rule".to_string()))
        }
    }
}

/// Forwards a held request whose client has gone: the apiserver still
/// receives it, as a request already on its way would be; the answer goes
/// to the log only.
pub(crate) fn forward_detached(
    upstream: Arc<Upstream>,
    id: u64,
    info: RequestInfo,
    headers: HeaderMap,
    action: ActionKind,
) {
    let shared = upstream.shared.clone();
    let runtime = upstream.runtime.clone();
    let out = Outgoing {
        method: hyper::Method::from_bytes(info.method.as_bytes()).unwrap_or(hyper::Method::GET),
        path_and_query: match &info.query {
            Some(q) => format!("{}?{q}", info.path),
            None => info.path.clone(),
        },
        headers,
        body: info.body.clone(),
    };
    shared.update(id, |e| e.action = action);
    runtime.spawn(async move {
        let conn = Conn {
            upstream,
            sender: tokio::sync::Mutex::new(None),
        };
        let result = async {
            let resp = conn.send(&out).await?;
            let status = resp.status().as_u16();
            let _ = resp.into_body().collect().await;
            Ok::<u16, String>(status)
        }
        .await;
        shared.update(id, |e| match result {
            Ok(status) => {
                e.forwarded = true;
                e.upstream_status = Some(status);
            }
            Err(err) => e.outcome = Outcome::UpstreamError(err),
        });
    });
}
