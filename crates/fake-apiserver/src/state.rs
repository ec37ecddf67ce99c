//! Shared server state: store, schema, users, RBAC, faults and request log.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use crate::faults::Faults;
use crate::log::RequestLog;
use crate::rbac::Rbac;
use crate::schema::CrdSchema;
use crate::store::Store;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }
}

pub struct State {
    pub store: Mutex<Store>,
    pub schema: Option<CrdSchema>,
    /// Bearer token → user.
    pub tokens: HashMap<String, User>,
    /// DER of a client certificate this server's CA issued → user.
    pub client_certs: HashMap<Vec<u8>, User>,
    pub rbac: Option<Mutex<Rbac>>,
    pub faults: Mutex<Faults>,
    pub log: RequestLog,
    pub seq: AtomicU64,
    pub page_size_cap: Option<usize>,
}

impl State {
    pub fn user_for_token(&self, token: &str) -> Option<&User> {
        self.tokens.get(token)
    }

    /// The user of a (verified) client certificate.
    pub fn user_for_cert(&self, der: &[u8]) -> Option<&User> {
        self.client_certs.get(der)
    }

    pub fn token_for_user(&self, user: &str) -> Option<&str> {
        self.tokens
            .iter()
            .find(|(_, u)| u.name == user)
            .map(|(t, _)| t.as_str())
    }
}
