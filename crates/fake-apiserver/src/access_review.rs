//! `SelfSubjectAccessReview` and `SelfSubjectRulesReview`
//! (`authorization.k8s.io/v1`), answered for the requesting user (after
//! impersonation) by the same RBAC evaluation real requests get, so
//! `kubectl auth can-i` (and `--list`) works against the fake server.
//!
//! As kube-apiserver: the authorizer chain is the privileged-group
//! authorizer (`system:masters` is allowed with no reason) then RBAC
//! (`RBAC: allowed by <binding>`; a denial has no reason unless a role could
//! not be resolved). RBAC never denies outright, so `status.denied` is never
//! true. Without a loaded RBAC policy the server authorizes everything, as
//! `--authorization-mode=AlwaysAllow` does. The review is not stored; the
//! answer is `201 Created` with the request's spec and the status, in JSON.
//!
//! kubectl (client-go's typed client) sends these reviews as Kubernetes
//! protobuf, so the request body is read in either JSON or the protobuf
//! envelope (`k8s\0` + `runtime.Unknown`) with just the fields a review has.

use serde_json::{Value, json};

use crate::log::RecordedRequest;
use crate::rbac::{Attributes, Request};
use crate::resources::ResourceDef;
use crate::state::{State, User};
use crate::status::{ApiError, FieldError, FieldErrorKind};

const GROUP: &str = "authorization.k8s.io";
const VERSION: &str = "v1";

const fn review(plural: &'static str, singular: &'static str, kind: &'static str) -> ResourceDef {
    ResourceDef {
        group: GROUP,
        version: VERSION,
        plural,
        singular,
        kind,
        namespaced: false,
        short_names: &[],
        categories: &[],
        status_subresource: false,
        has_generation: false,
        custom: false,
    }
}

pub const SELF_SUBJECT_ACCESS_REVIEWS: ResourceDef = review(
    "selfsubjectaccessreviews",
    "selfsubjectaccessreview",
    "SelfSubjectAccessReview",
);

pub const SELF_SUBJECT_RULES_REVIEWS: ResourceDef = review(
    "selfsubjectrulesreviews",
    "selfsubjectrulesreview",
    "SelfSubjectRulesReview",
);

/// The review resources, in discovery order.
pub const DEFS: &[ResourceDef] = &[SELF_SUBJECT_ACCESS_REVIEWS, SELF_SUBJECT_RULES_REVIEWS];

/// A review resource by group, version and plural.
pub fn by_plural(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    DEFS.iter()
        .find(|d| d.group == group && d.version == version && d.plural == plural)
}

/// The answer to a request on a review resource (`None` for any other
/// resource): `(code, body)` or the error.
pub fn answer(
    state: &State,
    user: &User,
    def: &ResourceDef,
    rec: &RecordedRequest,
    content_type: Option<&str>,
    body: &[u8],
) -> Option<Result<(u16, Value), ApiError>> {
    if def.group != GROUP || by_plural(def.group, def.version, def.plural).is_none() {
        return None;
    }
    if rec.verb != "create" || rec.name.is_some() {
        return Some(Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({})",
            rec.verb
        ))));
    }
    let decoded =
        if content_type.is_some_and(|c| c.starts_with("application/vnd.kubernetes.protobuf")) {
            proto::review(def, body)
        } else {
            serde_json::from_slice(body).map_err(|e| e.to_string())
        };
    let review = match decoded {
        Ok(v) => v,
        Err(e) => {
            return Some(Err(ApiError::bad_request(format!(
                "error decoding request body: {e}"
            ))));
        }
    };
    Some(if def.plural == SELF_SUBJECT_ACCESS_REVIEWS.plural {
        access_review(state, user, def, &review)
    } else {
        rules_review(state, user, def, &review)
    })
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn access_review(
    state: &State,
    user: &User,
    def: &ResourceDef,
    review: &Value,
) -> Result<(u16, Value), ApiError> {
    let spec = review.get("spec").cloned().unwrap_or_else(|| json!({}));
    let resource = spec.get("resourceAttributes").filter(|v| !v.is_null());
    let non_resource = spec.get("nonResourceAttributes").filter(|v| !v.is_null());
    let invalid = |field: &str, value: Option<&Value>, detail: &str| {
        ApiError::invalid(
            def,
            "",
            &[FieldError {
                kind: FieldErrorKind::Invalid,
                field: field.into(),
                value: Some(value.cloned().unwrap_or(Value::Null)),
                detail: detail.into(),
            }],
        )
    };
    let request = match (resource, non_resource) {
        (Some(_), Some(n)) => {
            return Err(invalid(
                "spec.nonResourceAttributes",
                Some(n),
                "cannot be specified in combination with resourceAttributes",
            ));
        }
        (None, None) => {
            return Err(invalid(
                "spec.resourceAttributes",
                None,
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ));
        }
        (Some(r), None) => Request::Resource(Attributes {
            user: &user.name,
            groups: &user.groups,
            verb: text(r, "verb"),
            group: text(r, "group"),
            resource: text(r, "resource"),
            subresource: non_empty(text(r, "subresource")),
            namespace: non_empty(text(r, "namespace")),
            name: non_empty(text(r, "name")),
        }),
        (None, Some(n)) => Request::NonResource {
            user: &user.name,
            groups: &user.groups,
            verb: text(n, "verb"),
            path: text(n, "path"),
        },
    };
    let (allowed, reason) = match &state.rbac {
        _ if user.is_admin() => (true, String::new()),
        None => (true, String::new()),
        Some(rbac) => match rbac.lock() {
            Ok(r) => {
                let d = r.decide(&request);
                (d.allowed, d.reason)
            }
            Err(_) => return Err(ApiError::internal("rbac lock poisoned")),
        },
    };
    let mut status = serde_json::Map::new();
    status.insert("allowed".into(), json!(allowed));
    if !reason.is_empty() {
        status.insert("reason".into(), json!(reason));
    }
    Ok((
        201,
        json!({
            "kind": def.kind,
            "apiVersion": def.api_version(),
            "metadata": {"creationTimestamp": null},
            "spec": spec,
            "status": status,
        }),
    ))
}

fn rules_review(
    state: &State,
    user: &User,
    def: &ResourceDef,
    review: &Value,
) -> Result<(u16, Value), ApiError> {
    let namespace = review
        .pointer("/spec/namespace")
        .and_then(Value::as_str)
        .and_then(non_empty);
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    let mut status = serde_json::Map::new();
    match &state.rbac {
        Some(rbac) => {
            let (rules, errors) = match rbac.lock() {
                Ok(r) => r.rules_for(&user.name, &user.groups, namespace),
                Err(_) => return Err(ApiError::internal("rbac lock poisoned")),
            };
            for r in rules {
                if !r.resources.is_empty() {
                    let mut rule = serde_json::Map::new();
                    rule.insert("verbs".into(), json!(r.verbs));
                    for (key, list) in [
                        ("apiGroups", &r.api_groups),
                        ("resources", &r.resources),
                        ("resourceNames", &r.resource_names),
                    ] {
                        if !list.is_empty() {
                            rule.insert(key.into(), json!(list));
                        }
                    }
                    resource_rules.push(Value::Object(rule));
                }
                if !r.non_resource_urls.is_empty() {
                    non_resource_rules
                        .push(json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}));
                }
            }
            status.insert("resourceRules".into(), json!(resource_rules));
            status.insert("nonResourceRules".into(), json!(non_resource_rules));
            status.insert("incomplete".into(), json!(false));
            if !errors.is_empty() {
                status.insert("evaluationError".into(), json!(errors.join(", ")));
            }
        }
        // AlwaysAllow cannot list rules: the real answer is incomplete.
        None => {
            status.insert("resourceRules".into(), json!([]));
            status.insert("nonResourceRules".into(), json!([]));
            status.insert("incomplete".into(), json!(true));
        }
    }
    Ok((
        201,
        json!({
            "kind": def.kind,
            "apiVersion": def.api_version(),
            "metadata": {"creationTimestamp": null},
            "spec": {},
            "status": status,
        }),
    ))
}

/// Just enough of the Kubernetes protobuf encoding to read a review.
mod proto {
    use serde_json::{Map, Value, json};

    use crate::resources::ResourceDef;

    /// `(field number, bytes)` of every length-delimited field of a message;
    /// varint and fixed fields are skipped.
    fn fields(mut buf: &[u8]) -> Result<Vec<(u64, &[u8])>, String> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let key = varint(&mut buf)?;
            match key & 7 {
                0 => {
                    varint(&mut buf)?;
                }
                1 => buf = buf.get(8..).ok_or("truncated fixed64")?,
                2 => {
                    let len = usize::try_from(varint(&mut buf)?).map_err(|e| e.to_string())?;
                    let (value, rest) = buf
                        .split_at_checked(len)
                        .ok_or("truncated length-delimited field")?;
                    out.push((key >> 3, value));
                    buf = rest;
                }
                5 => buf = buf.get(4..).ok_or("truncated fixed32")?,
                t => return Err(format!("unsupported protobuf wire type {t}")),
            }
        }
        Ok(out)
    }

    fn varint(buf: &mut &[u8]) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = buf.split_first().ok_or("truncated varint")?;
            *buf = rest;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint too long".into())
    }

    fn field(message: &[u8], number: u64) -> Result<Option<&[u8]>, String> {
        Ok(fields(message)?
            .into_iter()
            .rev()
            .find(|(n, _)| *n == number)
            .map(|(_, v)| v))
    }

    /// The string fields `names[i]` = field `i + 1` of a message.
    fn strings(message: &[u8], names: &[&str]) -> Result<Value, String> {
        let mut m = Map::new();
        for (number, value) in fields(message)? {
            let index = usize::try_from(number)
                .unwrap_or(usize::MAX)
                .wrapping_sub(1);
            if let Some(name) = names.get(index) {
                let text = std::str::from_utf8(value).map_err(|e| e.to_string())?;
                m.insert((*name).into(), json!(text));
            }
        }
        Ok(Value::Object(m))
    }

    /// A review from the envelope: magic `k8s\0`, then `runtime.Unknown`
    /// (1 typeMeta, 2 raw object); the object's field 2 is its spec.
    pub fn review(def: &ResourceDef, body: &[u8]) -> Result<Value, String> {
        let unknown = body
            .strip_prefix(b"k8s\0")
            .ok_or("protobuf body without the k8s envelope")?;
        let raw = field(unknown, 2)?.ok_or("protobuf envelope without an object")?;
        let spec = field(raw, 2)?.unwrap_or_default();
        let mut out = Map::new();
        if def.plural == super::SELF_SUBJECT_RULES_REVIEWS.plural {
            out.insert("spec".into(), strings(spec, &["namespace"])?);
            return Ok(Value::Object(out));
        }
        let mut s = Map::new();
        if let Some(r) = field(spec, 1)? {
            let names = [
                "namespace",
                "verb",
                "group",
                "version",
                "resource",
                "subresource",
                "name",
            ];
            s.insert("resourceAttributes".into(), strings(r, &names)?);
        }
        if let Some(n) = field(spec, 2)? {
            s.insert(
                "nonResourceAttributes".into(),
                strings(n, &["path", "verb"])?,
            );
        }
        out.insert("spec".into(), Value::Object(s));
        Ok(Value::Object(out))
    }
}
