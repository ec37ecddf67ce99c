//! Tests against the real thing (SPEC §11, issue 19): a real etcd and
//! kube-apiserver, the real source-controller and helm-controller, started
//! per test by `crates/testbed` from the binaries `scripts/build-testbed`
//! builds. A missing binary fails the test (never a skip). One module per
//! capability; each test starts its own testbed (nextest runs each test in
//! its own process).

mod harness;
mod main_paths;
mod recovery;
mod support;
mod testbed_works;
