//! The product's integration tests, one binary: each module is one
//! capability (its own former test binary), the shared harness lives in
//! `tests/support/`. One binary links the client stack once instead of once
//! per file. `tests/flags` is the one other binary: its tests set process
//! environment variables, which must not leak into the runs started here.

#[path = "../support/chart.rs"]
mod chart_support;
#[path = "../support/common/mod.rs"]
mod common;
#[path = "../support/image.rs"]
mod image_support;

mod chart;
mod chart_helm4;
mod chart_kubectl;
mod chart_pod;
mod chart_readme;
mod chart_run;
mod cli_binary;
mod cli_usage;
mod cluster_access;
mod deploy_flux;
mod deploy_notifications;
mod dockerfile;
mod e2e_blocks;
mod e2e_correct_status;
mod e2e_demo;
mod e2e_dry_run;
mod e2e_explain;
mod e2e_guardrail;
mod e2e_malformed;
mod e2e_notify;
mod e2e_recovery;
mod e2e_scale;
mod e2e_timeout;
mod e2e_toggle_suspend;
mod fake_apiserver_access;
mod fetch_shared;
mod image;
mod in_cluster;
mod safety_crash;
mod safety_fault_matrix;
mod safety_fuzz;
mod safety_guardrail;
mod safety_lost_answer;
mod safety_rbac;
mod safety_signals;
mod safety_write_shapes;
mod supply_chain;
