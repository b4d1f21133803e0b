//! Running wxgate: metrics, the access log and each request's record, the
//! admin listener (health, readiness, metrics) and config reloads.

pub(crate) mod access;
pub(crate) mod admin;
pub mod metrics;
pub(crate) mod openid_log;
pub mod reload;
