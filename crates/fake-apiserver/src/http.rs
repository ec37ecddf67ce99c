//! The HTTPS front: accept loop, routing, authentication, request log,
//! faults, RBAC, and serialisation of answers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::faults::FaultAction;
use crate::log::RecordedRequest;
use crate::ops::{ListPage, ListParams, Written};
use crate::rbac::Attributes;
use crate::resources::{self, ResourceDef};
use crate::selector::{FieldSelector, LabelSelector};
use crate::state::{State, User};
use crate::status::ApiError;
use crate::{discovery, table};

/// Returned by the service to make hyper close the connection unanswered.
#[derive(Debug)]
pub struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for Dropped {}

type Resp = Response<Full<Bytes>>;

/// Serves connections until `shutdown` fires.
pub async fn run(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<State>,
    server_address: String,
    mut shutdown: oneshot::Receiver<()>,
) {
    let server_address = Arc::new(server_address);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let acceptor = acceptor.clone();
                let state = state.clone();
                let addr = server_address.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    // The x509 authenticator: a verified client certificate
                    // names the user for the whole connection.
                    let cert_user = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(|der| state.user_for_cert(der.as_ref()))
                        .cloned();
                    let svc = hyper::service::service_fn(move |req| {
                        handle(state.clone(), addr.clone(), cert_user.clone(), req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        }
    }
}

/// What a path names.
enum Route {
    Discovery(Option<Value>),
    Resource {
        def: &'static ResourceDef,
        namespace: Option<String>,
        name: Option<String>,
        subresource: Option<String>,
    },
    NotFound {
        group: String,
        version: String,
    },
}

fn route(path: &str, server_address: &str) -> Route {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let not_found = |g: &str, v: &str| Route::NotFound {
        group: g.to_string(),
        version: v.to_string(),
    };
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["version"] => return Route::Discovery(Some(discovery::version())),
        ["api"] => return Route::Discovery(Some(discovery::api_versions(server_address))),
        ["api", v] => return Route::Discovery(discovery::resource_list("", v)),
        ["apis"] => return Route::Discovery(Some(discovery::api_group_list())),
        ["apis", g] => return Route::Discovery(discovery::api_group(g)),
        ["apis", g, v] => return Route::Discovery(discovery::resource_list(g, v)),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return not_found("", ""),
    };
    let (namespace, plural, name, sub) = match rest {
        ["namespaces", ns, plural, tail @ ..] => (Some(*ns), *plural, tail.first(), tail.get(1)),
        [plural, tail @ ..] => (None, *plural, tail.first(), tail.get(1)),
        [] => return not_found(group, version),
    };
    if rest.len() > 5 || (namespace.is_none() && rest.len() > 3) {
        return not_found(group, version);
    }
    let Some(def) = resources::by_plural(group, version, plural)
        .or_else(|| crate::access_review::by_plural(group, version, plural))
    else {
        return not_found(group, version);
    };
    if (def.namespaced && namespace.is_none() && name.is_some())
        || (!def.namespaced && namespace.is_some())
    {
        return not_found(group, version);
    }
    if let Some(s) = sub
        && !(*s == "status" && def.status_subresource)
    {
        return not_found(group, version);
    }
    Route::Resource {
        def,
        namespace: namespace.map(str::to_string),
        name: name.map(|n| n.to_string()),
        subresource: sub.map(|s| s.to_string()),
    }
}

fn verb(method: &str, has_name: bool, query: &BTreeMap<String, String>) -> &'static str {
    let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    match (method, has_name) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

fn json_response(code: u16, body: Vec<u8>, warnings: &[String]) -> Resp {
    let mut b = Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private");
    for w in warnings {
        let text = format!("299 - {}", serde_json::Value::String(w.clone()));
        b = b.header("warning", text);
    }
    b.body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn error_response(e: &ApiError) -> Resp {
    let body = serde_json::to_vec(&e.to_status()).unwrap_or_default();
    json_response(e.code, body, &[])
}

/// How the client asked to see objects (`Accept: ...;as=...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Full,
    Metadata,
    Table,
}

fn shape(accept: &str) -> Shape {
    // The first acceptable alternative wins, as the real server negotiates.
    for alt in accept.split(',') {
        let alt = alt.replace(' ', "");
        if alt.contains("as=PartialObjectMetadata")
            && alt.contains("g=meta.k8s.io")
            && alt.contains("v=v1")
        {
            return Shape::Metadata;
        }
        if alt.contains("as=Table") && alt.contains("g=meta.k8s.io") && alt.contains("v=v1") {
            return Shape::Table;
        }
        if alt.starts_with("application/json") || alt.starts_with("*/*") {
            return Shape::Full;
        }
    }
    Shape::Full
}

fn metadata_only(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// Serialises a list page item by item (no intermediate list value).
fn list_body(def: &ResourceDef, page: &ListPage, shape: Shape) -> Vec<u8> {
    let mut meta = serde_json::Map::new();
    meta.insert("resourceVersion".into(), json!(page.resource_version));
    if let Some(c) = &page.continue_token {
        meta.insert("continue".into(), json!(c));
    }
    let (kind, api_version) = match shape {
        Shape::Metadata => (
            "PartialObjectMetadataList".to_string(),
            "meta.k8s.io/v1".to_string(),
        ),
        _ => (def.list_kind(), def.api_version()),
    };
    let mut out = Vec::with_capacity(256 + page.items.len() * 1024);
    out.extend_from_slice(b"{\"kind\":");
    let _ = serde_json::to_writer(&mut out, &kind);
    out.extend_from_slice(b",\"apiVersion\":");
    let _ = serde_json::to_writer(&mut out, &api_version);
    out.extend_from_slice(b",\"metadata\":");
    let _ = serde_json::to_writer(&mut out, &meta);
    out.extend_from_slice(b",\"items\":[");
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = match shape {
            Shape::Metadata => serde_json::to_writer(&mut out, &metadata_only(item)),
            _ => serde_json::to_writer(&mut out, &**item),
        };
    }
    out.extend_from_slice(b"]}");
    out
}

fn parse_query(q: Option<&str>) -> BTreeMap<String, String> {
    q.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn authenticate<'a>(state: &'a State, req: &Request<Incoming>) -> Option<&'a User> {
    let h = req.headers().get("authorization")?.to_str().ok()?;
    let token = h
        .strip_prefix("Bearer ")
        .or_else(|| h.strip_prefix("bearer "))?;
    state.user_for_token(token.trim())
}

async fn handle(
    state: Arc<State>,
    server_address: Arc<String>,
    cert_user: Option<User>,
    req: Request<Incoming>,
) -> Result<Resp, Dropped> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query());
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header("content-type");
    let accept = header("accept").unwrap_or_default();
    let impersonate_user = header("impersonate-user");
    let impersonate_groups: Vec<String> = req
        .headers()
        .get_all("impersonate-group")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    let user = cert_user
        .or_else(|| authenticate(&state, &req).cloned())
        .map(|u| {
            crate::impersonate::effective_user(
                &state,
                u,
                impersonate_user.as_deref(),
                &impersonate_groups,
            )
        })
        .transpose();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let route = route(&path, &server_address);
    let mut rec = RecordedRequest {
        seq: state.seq.fetch_add(1, Ordering::SeqCst) + 1,
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        content_type: content_type.clone(),
        user: match &user {
            Ok(Some(u)) => u.name.clone(),
            _ => String::new(),
        },
        body: None,
        raw_body: None,
        status: 0,
        verb: "unknown".into(),
        group: String::new(),
        version: String::new(),
        resource: None,
        subresource: None,
        namespace: None,
        name: None,
        dry_run: query.get("dryRun").is_some_and(|d| d == "All"),
        field_manager: query.get("fieldManager").cloned(),
        request_bytes: body.len(),
        response_bytes: 0,
        fault: None,
    };
    if !body.is_empty() {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => rec.body = Some(v),
            Err(_) => rec.raw_body = Some(String::from_utf8_lossy(&body).into_owned()),
        }
    }
    match &route {
        Route::Discovery(_) => rec.verb = "discovery".into(),
        Route::Resource {
            def,
            namespace,
            name,
            subresource,
        } => {
            rec.verb = verb(&method, name.is_some(), &query).into();
            rec.group = def.group.into();
            rec.version = def.version.into();
            rec.resource = Some(def.plural.into());
            rec.subresource = subresource.clone();
            rec.namespace = namespace.clone();
            rec.name = name.clone();
        }
        Route::NotFound { group, version } => {
            rec.group = group.clone();
            rec.version = version.clone();
        }
    }

    let resp = match &user {
        Ok(None) => error_response(&ApiError::unauthorized()),
        Err(denied) => error_response(denied),
        Ok(Some(user)) => {
            let verdict = match state.faults.lock() {
                Ok(mut f) => f.consult(&rec),
                Err(_) => return Ok(error_response(&ApiError::internal("faults lock poisoned"))),
            };
            for h in &verdict.hooks {
                h(&rec);
            }
            if !verdict.delay.is_zero() {
                tokio::time::sleep(verdict.delay).await;
            }
            for w in &verdict.other_writes {
                other_write(&state, &route, &mut rec, w);
            }
            let def = match &route {
                Route::Resource { def, .. } => Some(*def),
                _ => None,
            };
            let name = rec.name.clone().unwrap_or_default();
            let handle = |rec: &RecordedRequest| {
                dispatch(
                    &state,
                    user,
                    &route,
                    rec,
                    &accept,
                    content_type.as_deref(),
                    &body,
                )
            };
            match verdict.action {
                FaultAction::Drop => {
                    state.log.push(rec);
                    return Err(Dropped);
                }
                FaultAction::Respond(code) => error_response(&ApiError::for_code(code, def, &name)),
                FaultAction::RespondRetryAfter { code, seconds } => {
                    retry_after_response(&ApiError::retry_after(code, seconds, def, &name), seconds)
                }
                FaultAction::RespondPlainRetryAfter { code, seconds } => {
                    plain_retry_after_response(code, seconds)
                }
                FaultAction::ApplyThenDrop => {
                    let applied = handle(&rec);
                    let code = applied.status().as_u16();
                    if is_success(code) {
                        rec.fault = Some(format!("applied {code}, dropped"));
                        state.log.push(rec);
                        return Err(Dropped);
                    }
                    applied
                }
                FaultAction::ApplyThenRespond(answer) => {
                    let applied = handle(&rec);
                    let code = applied.status().as_u16();
                    if is_success(code) {
                        rec.fault = Some(format!("applied {code}, answered {answer}"));
                        let e = if answer == 504 {
                            ApiError::request_timeout()
                        } else {
                            ApiError::for_code(answer, def, &name)
                        };
                        error_response(&e)
                    } else {
                        applied
                    }
                }
                FaultAction::Proceed
                | FaultAction::Delay(_)
                | FaultAction::ConcurrentWrite(_)
                | FaultAction::ConcurrentStatusWrite(_) => handle(&rec),
            }
        }
    };
    rec.status = resp.status().as_u16();
    rec.response_bytes = hyper::body::Body::size_hint(resp.body())
        .exact()
        .unwrap_or(0) as usize;
    state.log.push(rec);
    Ok(resp)
}

fn is_success(code: u16) -> bool {
    (200..300).contains(&code)
}

fn retry_after_response(e: &ApiError, seconds: u64) -> Resp {
    let mut r = error_response(e);
    if let Ok(v) = hyper::header::HeaderValue::from_str(&seconds.to_string()) {
        r.headers_mut().insert("retry-after", v);
    }
    r
}

/// A refusal as the filters in front of kube-apiserver's handlers write it
/// (`http.Error`): plain text, `Retry-After`, no `Status`.
fn plain_retry_after_response(code: u16, seconds: u64) -> Resp {
    let text = match code {
        429 => "Too many requests, please try again later.".to_string(),
        other => hyper::StatusCode::from_u16(other)
            .ok()
            .and_then(|c| c.canonical_reason())
            .unwrap_or("injected fault")
            .to_string(),
    };
    Response::builder()
        .status(code)
        .header("content-type", "text/plain; charset=utf-8")
        .header("x-content-type-options", "nosniff")
        .header("retry-after", seconds.to_string())
        .body(Full::new(Bytes::from(format!("{text}\n"))))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// The write of [`crate::faults::OTHER_WRITER`] just before `rec` is
/// handled: a merge patch on the same object through the ordinary patch
/// path, logged as its own request. It takes `rec`'s place in the arrival
/// order and `rec` is numbered after it.
fn other_write(
    state: &State,
    route: &Route,
    rec: &mut RecordedRequest,
    w: &crate::faults::OtherWrite,
) {
    let Route::Resource { def, namespace, .. } = route else {
        return;
    };
    let name = rec.name.clone().or_else(|| {
        rec.body
            .as_ref()
            .and_then(|b| b.pointer("/metadata/name"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let Some(name) = name else {
        return;
    };
    let body = serde_json::to_vec(&w.patch).unwrap_or_default();
    let content_type = "application/merge-patch+json";
    let result = state.patch(
        def,
        namespace.as_deref(),
        &name,
        w.status,
        content_type,
        &body,
        false,
    );
    let status = match &result {
        Ok(written) => written.code,
        Err(e) => e.code,
    };
    let subresource = w.status.then(|| "status".to_string());
    let mut path = if def.group.is_empty() {
        format!("/api/{}", def.version)
    } else {
        format!("/apis/{}/{}", def.group, def.version)
    };
    if let Some(ns) = namespace {
        path = format!("{path}/namespaces/{ns}");
    }
    path = format!("{path}/{}/{name}", def.plural);
    if let Some(s) = &subresource {
        path = format!("{path}/{s}");
    }
    let mut query = std::collections::BTreeMap::new();
    query.insert(
        "fieldManager".to_string(),
        crate::faults::OTHER_WRITER.to_string(),
    );
    let other = RecordedRequest {
        seq: rec.seq,
        method: "PATCH".into(),
        path,
        query,
        content_type: Some(content_type.into()),
        user: crate::faults::OTHER_WRITER.into(),
        body: Some(w.patch.clone()),
        raw_body: None,
        status,
        verb: "patch".into(),
        group: def.group.into(),
        version: def.version.into(),
        resource: Some(def.plural.into()),
        subresource,
        namespace: namespace.clone(),
        name: Some(name),
        dry_run: false,
        field_manager: Some(crate::faults::OTHER_WRITER.into()),
        request_bytes: body.len(),
        response_bytes: 0,
        fault: Some(format!(
            "concurrent write by {}",
            crate::faults::OTHER_WRITER
        )),
    };
    state.log.push(other);
    rec.seq = state.seq.fetch_add(1, Ordering::SeqCst) + 1;
}

fn dispatch(
    state: &State,
    user: &User,
    route: &Route,
    rec: &RecordedRequest,
    accept: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Resp {
    let (def, namespace, name, subresource) = match route {
        Route::Discovery(Some(doc)) => {
            return json_response(200, serde_json::to_vec(doc).unwrap_or_default(), &[]);
        }
        Route::Discovery(None) | Route::NotFound { .. } => {
            return error_response(&ApiError::path_not_found());
        }
        Route::Resource {
            def,
            namespace,
            name,
            subresource,
        } => (
            *def,
            namespace.as_deref(),
            name.as_deref(),
            subresource.as_deref(),
        ),
    };
    if let Some(rbac) = &state.rbac
        && !user.is_admin()
    {
        let allowed = match rbac.lock() {
            Ok(mut r) => r
                .authorize(&Attributes {
                    user: &user.name,
                    groups: &user.groups,
                    verb: &rec.verb,
                    group: def.group,
                    resource: def.plural,
                    subresource,
                    namespace,
                    name,
                })
                .is_some(),
            Err(_) => false,
        };
        if !allowed {
            let e = ApiError::forbidden(
                def,
                name.unwrap_or_default(),
                &user.name,
                &rec.verb,
                subresource,
                namespace,
            );
            if let Ok(mut r) = rbac.lock() {
                let mut denied = rec.clone();
                denied.status = 403;
                r.record_denied(denied);
            }
            return error_response(&e);
        }
    }
    if let Some(review) = crate::access_review::answer(state, user, def, rec, content_type, body) {
        return review.map_or_else(
            |e| error_response(&e),
            |(code, v)| json_response(code, serde_json::to_vec(&v).unwrap_or_default(), &[]),
        );
    }
    match resource_op(
        state,
        def,
        namespace,
        name,
        subresource,
        rec,
        accept,
        content_type,
        body,
    ) {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

#[allow(clippy::too_many_arguments)]
fn resource_op(
    state: &State,
    def: &'static ResourceDef,
    namespace: Option<&str>,
    name: Option<&str>,
    subresource: Option<&str>,
    rec: &RecordedRequest,
    accept: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Resp, ApiError> {
    if let Some(d) = rec.query.get("dryRun")
        && d != "All"
    {
        return Err(ApiError::bad_request(format!(
            "Invalid dryRun: {d}: supported values: \"All\""
        )));
    }
    if content_type.is_some_and(|ct| {
        ct.starts_with("application/vnd.kubernetes.protobuf") || ct.starts_with("application/cbor")
    }) {
        return Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml ({} is not served by fake-apiserver)",
            content_type.unwrap_or_default()
        )));
    }
    let dry_run = rec.dry_run;
    let status_only = subresource == Some("status");
    let shape = shape(accept);
    let written = |w: Written| -> Resp {
        json_response(
            w.code,
            serde_json::to_vec(&w.obj).unwrap_or_default(),
            &w.warnings,
        )
    };
    let body_json = || -> Result<Value, ApiError> {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))
    };
    match (rec.verb.as_str(), name) {
        ("get", Some(n)) => {
            let obj = state.get_object(def, namespace, n)?;
            let out = match shape {
                Shape::Metadata => serde_json::to_vec(&metadata_only(&obj)),
                Shape::Table => {
                    serde_json::to_vec(&table::table(def, std::slice::from_ref(&obj), None, ""))
                }
                Shape::Full => serde_json::to_vec(&*obj),
            };
            Ok(json_response(200, out.unwrap_or_default(), &[]))
        }
        ("list", _) => {
            let params = ListParams {
                label: LabelSelector::parse(
                    rec.query
                        .get("labelSelector")
                        .map(String::as_str)
                        .unwrap_or_default(),
                )
                .map_err(ApiError::bad_request)?,
                field: FieldSelector::parse_with(
                    rec.query
                        .get("fieldSelector")
                        .map(String::as_str)
                        .unwrap_or_default(),
                    if crate::events::is_core_event(def) {
                        crate::events::CORE_FIELD_LABELS
                    } else {
                        &[]
                    },
                )
                .map_err(ApiError::bad_request)?,
                limit: match rec.query.get("limit") {
                    Some(l) => Some(
                        l.parse::<usize>()
                            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
                    ),
                    None => None,
                },
                continue_token: rec.query.get("continue").cloned(),
            };
            let page = state.list_page(def, namespace, &params)?;
            let out = match shape {
                Shape::Table => serde_json::to_vec(&table::table(
                    def,
                    &page.items,
                    page.continue_token.as_deref(),
                    &page.resource_version,
                ))
                .unwrap_or_default(),
                _ => list_body(def, &page, shape),
            };
            Ok(json_response(200, out, &[]))
        }
        ("watch", _) => Err(ApiError::method_not_allowed(
            "watch is not supported by fake-apiserver (see docs/fake-apiserver.md)",
        )),
        ("create", None) => {
            if def.plural == "namespaces" {
                return Err(ApiError::method_not_allowed(
                    "namespaces are implied by the objects in them in fake-apiserver",
                ));
            }
            Ok(written(state.create(
                def,
                namespace,
                body_json()?,
                dry_run,
            )?))
        }
        ("update", Some(n)) => Ok(written(state.update(
            def,
            namespace,
            n,
            status_only,
            body_json()?,
            dry_run,
        )?)),
        ("patch", Some(n)) => Ok(written(state.patch(
            def,
            namespace,
            n,
            status_only,
            content_type.unwrap_or_default(),
            body,
            dry_run,
        )?)),
        ("delete", Some(n)) => Ok(written(state.delete(def, namespace, n, dry_run)?)),
        (verb, _) => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({verb})"
        ))),
    }
}
