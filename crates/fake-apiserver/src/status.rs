//! Real-shaped `Status` error objects, as the Kubernetes API server writes them.

use serde_json::{Value, json};

use crate::resources::ResourceDef;

/// An error answer: HTTP code, `reason`, `message` and `details`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

fn details(def: &ResourceDef, name: &str) -> Value {
    let mut d = serde_json::Map::new();
    if !name.is_empty() {
        d.insert("name".into(), json!(name));
    }
    if !def.group.is_empty() {
        d.insert("group".into(), json!(def.group));
    }
    d.insert("kind".into(), json!(def.plural));
    Value::Object(d)
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// The `Status` object sent on the wire.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let (Some(d), Some(obj)) = (&self.details, s.as_object_mut()) {
            obj.insert("details".into(), d.clone());
        }
        if self.reason.is_empty()
            && let Some(obj) = s.as_object_mut()
        {
            obj.remove("reason");
        }
        s
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn not_found(def: &ResourceDef, name: &str) -> Self {
        ApiError {
            details: Some(details(def, name)),
            ..Self::new(
                404,
                "NotFound",
                format!("{} \"{}\" not found", def.qualified(), name),
            )
        }
    }

    pub fn path_not_found() -> Self {
        ApiError {
            details: Some(json!({})),
            ..Self::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        }
    }

    pub fn already_exists(def: &ResourceDef, name: &str) -> Self {
        ApiError {
            details: Some(details(def, name)),
            ..Self::new(
                409,
                "AlreadyExists",
                format!("{} \"{}\" already exists", def.qualified(), name),
            )
        }
    }

    pub fn conflict(def: &ResourceDef, name: &str) -> Self {
        ApiError {
            details: Some(details(def, name)),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                    def.qualified(),
                    name
                ),
            )
        }
    }

    /// 403 with the real authorizer's message shape.
    #[allow(clippy::too_many_arguments)]
    pub fn forbidden(
        def: &ResourceDef,
        name: &str,
        user: &str,
        verb: &str,
        subresource: Option<&str>,
        namespace: Option<&str>,
    ) -> Self {
        let resource = match subresource {
            Some(s) => format!("{}/{}", def.plural, s),
            None => def.plural.to_string(),
        };
        let why = match namespace {
            Some(ns) => format!(
                "User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{}\" in the namespace \"{ns}\"",
                def.group
            ),
            None => format!(
                "User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{}\" at the cluster scope",
                def.group
            ),
        };
        let message = if name.is_empty() {
            format!("{} is forbidden: {why}", def.qualified())
        } else {
            format!("{} \"{name}\" is forbidden: {why}", def.qualified())
        };
        ApiError {
            details: Some(details(def, name)),
            ..Self::new(403, "Forbidden", message)
        }
    }

    /// 422 Invalid from field errors (`causes` filled, message joined like the real server).
    pub fn invalid(def: &ResourceDef, name: &str, errors: &[FieldError]) -> Self {
        let rendered: Vec<String> = errors.iter().map(FieldError::render).collect();
        let joined = if rendered.len() == 1 {
            rendered[0].clone()
        } else {
            format!("[{}]", rendered.join(", "))
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.kind.reason(), "message": e.body(), "field": e.field}))
            .collect();
        let mut d = serde_json::Map::new();
        if !name.is_empty() {
            d.insert("name".into(), json!(name));
        }
        if !def.group.is_empty() {
            d.insert("group".into(), json!(def.group));
        }
        d.insert("kind".into(), json!(def.kind));
        d.insert("causes".into(), Value::Array(causes));
        ApiError {
            details: Some(Value::Object(d)),
            ..Self::new(
                422,
                "Invalid",
                format!("{} \"{}\" is invalid: {}", def.group_kind(), name, joined),
            )
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The 504 kube-apiserver answers when a request's deadline (the
    /// `--request-timeout` of the server, or the client's `timeout`) passes
    /// before the handler finished. The write may have been committed.
    pub fn request_timeout() -> Self {
        ApiError {
            details: Some(json!({})),
            ..Self::new(
                504,
                "Timeout",
                "Timeout: request did not complete within requested timeout - context deadline exceeded",
            )
        }
    }

    /// A refusal with a `Retry-After` hint (429, 503, or any code): the
    /// `for_code` shape with `details.retryAfterSeconds` set.
    pub fn retry_after(code: u16, seconds: u64, def: Option<&ResourceDef>, name: &str) -> Self {
        let mut e = Self::for_code(code, def, name);
        let mut d = match e.details.take() {
            Some(Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        d.insert("retryAfterSeconds".into(), json!(seconds));
        e.details = Some(Value::Object(d));
        e
    }

    /// The shape the real server uses for a given code, for injected faults.
    pub fn for_code(code: u16, def: Option<&ResourceDef>, name: &str) -> Self {
        let qualified = def.map(|d| d.qualified()).unwrap_or_default();
        let with_details = |mut e: ApiError| {
            if let Some(d) = def {
                e.details = Some(details(d, name));
            }
            e
        };
        match code {
            400 => Self::bad_request("the server rejected our request for an unknown reason"),
            401 => Self::unauthorized(),
            403 => with_details(Self::new(
                403,
                "Forbidden",
                format!("{qualified} \"{name}\" is forbidden: injected fault"),
            )),
            404 => match def {
                Some(d) => Self::not_found(d, name),
                None => Self::path_not_found(),
            },
            409 => match def {
                Some(d) => Self::conflict(d, name),
                None => Self::new(409, "Conflict", "the object has been modified"),
            },
            410 => Self::new(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            ),
            415 => Self::unsupported_media_type(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            ),
            422 => with_details(Self::new(
                422,
                "Invalid",
                format!("{qualified} \"{name}\" is invalid: injected fault"),
            )),
            429 => with_details(Self::new(
                429,
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later",
            )),
            500 => Self::internal(
                "an error on the server (\"injected fault\") has prevented the request from succeeding",
            ),
            503 => Self::new(
                503,
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            ),
            504 => with_details(Self::new(
                504,
                "Timeout",
                "the server was unable to return a response in the time allotted, but may still be processing the request",
            )),
            other => Self::new(other, "", format!("injected fault with status {other}")),
        }
    }
}

/// The kind of a field validation error, as in `k8s.io/apimachinery/pkg/util/validation/field`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    Required,
    Invalid,
    NotSupported,
    TooLong,
    TooMany,
    Forbidden,
}

impl FieldErrorKind {
    pub fn reason(&self) -> &'static str {
        match self {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::TooMany => "FieldValueTooMany",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
        }
    }
}

/// One field error: `status.conditions[0].message: Required value`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub kind: FieldErrorKind,
    pub field: String,
    pub value: Option<Value>,
    pub detail: String,
}

impl FieldError {
    /// The message without the field path (the `causes[].message`).
    pub fn body(&self) -> String {
        let value = self
            .value
            .as_ref()
            .map(|v| v.to_string())
            .unwrap_or_default();
        match self.kind {
            FieldErrorKind::Required => "Required value".to_string(),
            FieldErrorKind::Invalid => format!("Invalid value: {value}: {}", self.detail),
            FieldErrorKind::NotSupported => format!("Unsupported value: {value}: {}", self.detail),
            FieldErrorKind::TooLong => format!("Too long: {}", self.detail),
            FieldErrorKind::TooMany => format!("Too many: {}", self.detail),
            FieldErrorKind::Forbidden => format!("Forbidden: {}", self.detail),
        }
    }

    pub fn render(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }
}
