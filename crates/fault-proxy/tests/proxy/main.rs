//! The fault proxy in front of our fake API server, driven by kube-rs and
//! the pinned kubectl.

mod kube_client;
mod kubectl;
mod stub;
mod support;
