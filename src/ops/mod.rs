//! Running wxgate: metrics, the access log and each request's record, the
//! admin listener (health, readiness, metrics) and config reloads.

pub mod access;
pub mod admin;
pub mod metrics;
pub mod reload;
