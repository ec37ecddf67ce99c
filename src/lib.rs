//! stuck-hr-recovery: finds Flux HelmReleases stuck in `Ready=Unknown` although
//! Helm finished, and nudges them back (SPEC §1–§7).
//!
//! observe → decide → act → report: [`view`] reads one HelmRelease into a
//! small view, [`decide`] and [`plan`] decide every one of them and the
//! guardrail without a client, clock or logger, the executor acts, [`report`]
//! renders the result.

pub mod app;
pub mod blocks;
pub mod cli;
pub mod config;
pub mod decide;
pub mod error;
pub mod execute;
pub mod exit;
pub mod explain;
pub mod failure;
pub mod interrupt;
pub mod kube_io;
pub mod label_selector;
pub mod layers;
pub mod model;
pub mod notify;
pub mod patches;
pub mod plan;
pub mod report;
pub mod run;
pub mod view;
