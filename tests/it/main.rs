//! The integration tests, one binary: each file below is a module, and `common`
//! holds the real servers they run against (a fake WeChat, a recording
//! upstream, nginx, a test CA). One binary links once, where one per file
//! linked the whole dependency tree 26 times. `secrets.rs` and `streaming.rs`
//! stay binaries of their own: one installs a process-wide log subscriber,
//! the other measures the process's peak memory.

mod common;

mod access_log;
mod attack_neighbours;
mod attack_paths;
mod attack_resources;
mod attack_review;
mod attack_smuggling;
mod attack_spoofing;
mod attack_tokens;
mod cli;
mod deploy;
mod forward_auth;
mod fuzz_regressions;
mod h2_parity;
mod headers;
mod internal_access;
mod internal_relay;
mod internal_token;
mod internal_users;
mod keys;
mod login;
mod login_faults;
mod metrics;
mod miniprogram;
mod nginx_forward_auth;
mod proxy;
mod reference_config;
mod reload;
mod replicas;
mod route_auth;
mod routing;
mod server;
mod session;
mod smoke;
mod store_backends;
mod tls;
