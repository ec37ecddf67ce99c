//! Patch bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), and the
//! media types the real server refuses.

use serde_json::Value;

use crate::resources::ResourceDef;
use crate::status::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Json,
    /// Strategic merge on a built-in type, approximated as a merge patch.
    StrategicAsMerge,
}

const ACCEPTED: &str = "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";

impl PatchKind {
    pub fn from_content_type(ct: &str, def: &ResourceDef) -> Result<Self, ApiError> {
        let mt = ct
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match mt.as_str() {
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/strategic-merge-patch+json" if def.custom => {
                Err(ApiError::unsupported_media_type(ACCEPTED))
            }
            "application/strategic-merge-patch+json" => Ok(PatchKind::StrategicAsMerge),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Err(ApiError::unsupported_media_type(
                    "fake-apiserver does not implement server-side apply (application/apply-patch+yaml); use a merge or JSON patch",
                ))
            }
            _ => Err(ApiError::unsupported_media_type(ACCEPTED)),
        }
    }
}

/// Applies a patch body to a copy of `old`.
pub fn apply(kind: PatchKind, old: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let mut doc = old.clone();
    match kind {
        PatchKind::Merge | PatchKind::StrategicAsMerge => {
            let p: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            if !p.is_object() {
                return Err(ApiError::bad_request(
                    "error decoding patch: a merge patch must be a JSON object",
                ));
            }
            json_patch::merge(&mut doc, &p);
        }
        PatchKind::Json => {
            let p: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(&mut doc, &p).map_err(|e| {
                let msg = match &e.kind {
                    json_patch::PatchErrorKind::TestFailed => {
                        format!("testing value {} failed: test failed", e.path)
                    }
                    other => format!("{other} at {}", e.path),
                };
                ApiError::new(422, "Invalid", msg)
            })?;
        }
    }
    Ok(doc)
}
