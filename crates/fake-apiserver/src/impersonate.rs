//! `Impersonate-User` / `Impersonate-Group`, as the real server's
//! impersonation filter handles them: the requester needs the `impersonate`
//! verb on `users` (or `serviceaccounts` in the account's namespace, for
//! `system:serviceaccount:<ns>:<name>`) and on `groups`, named by
//! `resourceNames` or `*`; then the request runs as the impersonated user,
//! RBAC and request log included. Denied: 403, nothing is done. Never
//! ignored.

use crate::rbac::Attributes;
use crate::state::{State, User};
use crate::status::ApiError;

/// The user the request runs as.
///
/// # Errors
/// 403 when the requester may not impersonate a requested user or group,
/// or names groups without a user.
pub fn effective_user(
    state: &State,
    requester: User,
    user: Option<&str>,
    groups: &[String],
) -> Result<User, ApiError> {
    let Some(name) = user else {
        if groups.is_empty() {
            return Ok(requester);
        }
        return Err(ApiError::new(
            403,
            "Forbidden",
            format!("requested {groups:?} without impersonating a user"),
        ));
    };
    let service_account = name
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'));
    match service_account {
        Some((ns, sa)) => allow(state, &requester, "serviceaccounts", Some(ns), sa)?,
        None => allow(state, &requester, "users", None, name)?,
    }
    for group in groups {
        allow(state, &requester, "groups", None, group)?;
    }
    let mut effective = groups.to_vec();
    if let Some((ns, _)) = service_account
        && groups.is_empty()
    {
        effective.push("system:serviceaccounts".into());
        effective.push(format!("system:serviceaccounts:{ns}"));
    }
    if !effective.iter().any(|g| g == "system:authenticated") {
        effective.push("system:authenticated".into());
    }
    Ok(User {
        name: name.to_owned(),
        groups: effective,
    })
}

fn allow(
    state: &State,
    requester: &User,
    resource: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<(), ApiError> {
    let Some(rbac) = &state.rbac else {
        return Ok(());
    };
    if requester.is_admin() {
        return Ok(());
    }
    let allowed = rbac.lock().is_ok_and(|mut r| {
        r.authorize(&Attributes {
            user: &requester.name,
            groups: &requester.groups,
            verb: "impersonate",
            group: "",
            resource,
            subresource: None,
            namespace,
            name: Some(name),
        })
        .is_some()
    });
    if allowed {
        return Ok(());
    }
    let scope = match namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".into(),
    };
    Err(ApiError::new(
        403,
        "Forbidden",
        format!(
            "{resource} \"{name}\" is forbidden: User \"{}\" cannot impersonate resource \"{resource}\" in API group \"\" {scope}",
            requester.name
        ),
    ))
}
