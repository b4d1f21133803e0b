//! The Redis backend: every replica pointing at the same Redis and
//! `key_prefix` shares one store, so any number of replicas behave as one
//! gateway.
//!
//! Keys (all under `key_prefix`, `p` below):
//! - `p code:<hmac>`: a login code's exchange. `P<owner>` while a replica
//!   holds it (`SET NX PX hold` in a script: the claim), then the sealed
//!   answer for the code's life, or `T<error>` for a second after a
//!   transient failure so the replicas already waiting on it share the
//!   error (a new request for the code takes it over: not remembered). The
//!   name is an HMAC of appid and code under a key derived from
//!   `encryption_key`: a reader of Redis cannot confirm a guessed code.
//! - `p session:<appid>:<openid>`: the user's latest session_key and
//!   unionid, sealed with appid and openid as associated data.
//! - `p revoked`: a sorted set of revoked jtis scored by `exp`; each logout
//!   is also published on the channel `p revocations`.
//! - `p rl:<client>`: the login rate limit's GCRA state per client, timed
//!   by Redis's own clock (`TIME` in the script), so replica clocks do not
//!   matter.
//!
//! Nothing is awaited longer than `store.timeout`. The connection is a
//! redis-rs `ConnectionManager`, which reconnects by itself; [`subscriber`]
//! holds a pub/sub connection for the revocations; [`scripts`] are the Lua
//! scripts.

use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, RedisResult};
use serde_json::json;

use super::crypto::{decode_key, Sealer};
use super::revocations::Revocations;
use super::{Claim, CodeOutcome, Lease, Settle, StoreError, UserSession, CODE_LIFE};
use crate::config::{OnStoreError, RedisConfig};
use crate::error::Error;
use crate::login::ratelimit::{client_key, RateLimiter};
use crate::secret::Secret;

mod scripts;
mod subscriber;

use scripts::Scripts;
use subscriber::{subscribe_forever, Subscriber};

/// A session_key outlives its token for the internal API's sake, but a day
/// bounds what users who never come back leave behind.
const SESSION_LIFE: Duration = Duration::from_secs(24 * 3600);
/// How long a transient failure is kept for the replicas waiting on it.
const TRANSIENT_LIFE: Duration = Duration::from_secs(1);
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Store operations, for `wxgate_store_errors_total{op}`.
#[derive(Clone, Copy)]
enum Op {
    Claim,
    Settle,
    Session,
    PutSession,
    Logout,
    RateLimit,
    Subscribe,
}

const OPS: [(Op, &str); 7] = [
    (Op::Claim, "claim_code"),
    (Op::Settle, "settle_code"),
    (Op::Session, "session"),
    (Op::PutSession, "put_session"),
    (Op::Logout, "logout"),
    (Op::RateLimit, "rate_limit"),
    (Op::Subscribe, "subscribe"),
];

/// Whether Redis answers, for `on_error`, `/metrics` and the logs.
#[derive(Default)]
struct Health {
    /// The pub/sub connection is up and the revocations reloaded.
    subscribed: AtomicBool,
    /// The last command answered.
    commands_ok: AtomicBool,
    errors: [AtomicU64; OPS.len()],
}

impl Health {
    fn up(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed) && self.commands_ok.load(Ordering::Relaxed)
    }

    fn failed(&self, op: Op, cause: &dyn std::fmt::Display) {
        let was_up = self.commands_ok.swap(false, Ordering::Relaxed);
        self.errors[op as usize].fetch_add(1, Ordering::Relaxed);
        let op = OPS[op as usize].1;
        if was_up {
            tracing::warn!(op, error = %cause, "the Redis store does not answer");
        } else {
            tracing::debug!(op, error = %cause, "the Redis store does not answer");
        }
    }
}

/// Key and channel names, all under `key_prefix`.
struct Names {
    prefix: String,
}

impl Names {
    fn code(&self, sealer: &Sealer, appid: &str, code: &str) -> String {
        format!("{}code:{}", self.prefix, sealer.code_name(appid, code))
    }
    fn session(&self, appid: &str, openid: &str) -> String {
        format!("{}session:{appid}:{openid}", self.prefix)
    }
    fn revoked(&self) -> String {
        format!("{}revoked", self.prefix)
    }
    fn channel(&self) -> String {
        format!("{}revocations", self.prefix)
    }
    fn rate(&self, client: IpAddr) -> String {
        format!("{}rl:{}", self.prefix, client_key(client))
    }
}

pub(crate) struct RedisStore {
    conn: ConnectionManager,
    names: Arc<Names>,
    sealer: Sealer,
    timeout: Duration,
    on_error: OnStoreError,
    health: Arc<Health>,
    revocations: Arc<Revocations>,
    scripts: Scripts,
    /// The pub/sub task, stopped with the store.
    subscriber: tokio::task::AbortHandle,
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

impl RedisStore {
    /// Never waits: the connections are made in the background. Must run
    /// inside the tokio runtime.
    pub(crate) fn new(
        config: &RedisConfig,
        revocations: Arc<Revocations>,
    ) -> Result<RedisStore, String> {
        // Errors name no part of the URL: it may carry a password.
        let mut info = config
            .url
            .expose()
            .into_connection_info()
            .map_err(|_| "store.url is not a valid Redis URL".to_owned())?;
        if let Some(password) = &config.password {
            let settings = info
                .redis_settings()
                .clone()
                .set_password(password.expose());
            info = info.set_redis_settings(settings);
        }
        // rediss:// builds a rustls client: ring, as everywhere in wxgate
        // (the WeChat client installs it too, but not with simulate_wechat).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = redis::Client::open(info)
            .map_err(|_| "store.url is not a valid Redis URL".to_owned())?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_min_delay(RETRY_MIN)
            .set_max_delay(RETRY_MAX);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager)
            .map_err(|e| format!("cannot set up the Redis connection: {:?}", e.kind()))?;
        let key = decode_key(&config.encryption_key)
            .ok_or_else(|| "store.encryption_key must be base64 of 32 bytes".to_owned())?;
        let names = Arc::new(Names {
            prefix: config.key_prefix.clone(),
        });
        let health = Arc::new(Health::default());
        let subscriber = tokio::spawn(subscribe_forever(Subscriber {
            client,
            conn: conn.clone(),
            names: names.clone(),
            revocations: revocations.clone(),
            health: health.clone(),
            timeout: config.timeout,
        }))
        .abort_handle();
        Ok(RedisStore {
            conn,
            names,
            sealer: Sealer::new(&key),
            timeout: config.timeout,
            on_error: config.on_error,
            health,
            revocations,
            scripts: Scripts::new(),
            subscriber,
        })
    }

    /// `on_error = "closed"` and Redis unreachable: proxied requests 503.
    pub(crate) fn check_closed(&self) -> Result<(), StoreError> {
        if self.on_error == OnStoreError::Closed && !self.health.up() {
            return Err(StoreError::Unavailable);
        }
        Ok(())
    }

    /// One command (or script), bounded by `store.timeout`.
    async fn run<T>(
        &self,
        op: Op,
        command: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, command).await {
            Ok(Ok(value)) => {
                self.health.commands_ok.store(true, Ordering::Relaxed);
                Ok(value)
            }
            Ok(Err(e)) => {
                self.health.failed(op, &e);
                Err(StoreError::Unavailable)
            }
            Err(_) => {
                self.health.failed(op, &"timed out");
                Err(StoreError::Unavailable)
            }
        }
    }

    pub(crate) async fn put_session(
        &self,
        appid: &str,
        openid: &str,
        session: &UserSession,
    ) -> Result<(), StoreError> {
        let plain = json!({"k": session.session_key.expose(), "u": session.unionid}).to_string();
        let sealed = self
            .sealer
            .seal(&session_aad(appid, openid), plain.as_bytes());
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("SET")
            .arg(self.names.session(appid, openid))
            .arg(sealed)
            .arg("EX")
            .arg(SESSION_LIFE.as_secs())
            .to_owned();
        self.run(Op::PutSession, cmd.query_async::<()>(&mut conn))
            .await
    }

    pub(crate) async fn session(
        &self,
        appid: &str,
        openid: &str,
    ) -> Result<Option<UserSession>, StoreError> {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("GET")
            .arg(self.names.session(appid, openid))
            .to_owned();
        let Some(sealed) = self
            .run(Op::Session, cmd.query_async::<Option<Vec<u8>>>(&mut conn))
            .await?
        else {
            return Ok(None);
        };
        let opened = self
            .sealer
            .open(&session_aad(appid, openid), &sealed)
            .and_then(|plain| serde_json::from_slice::<serde_json::Value>(&plain).ok());
        let Some(value) = opened else {
            // Sealed under another key (rotated) or not by wxgate: unusable,
            // as if absent; the next login replaces it.
            tracing::warn!(
                appid,
                openid,
                "a stored session does not open with store.encryption_key"
            );
            return Ok(None);
        };
        Ok(value["k"].as_str().map(|k| UserSession {
            session_key: Secret::new(k),
            unionid: value["u"].as_str().map(str::to_owned),
        }))
    }

    pub(crate) async fn end_session(
        &self,
        appid: &str,
        openid: &str,
        jti: &str,
        exp: u64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.logout.prepare_invoke();
        call.key(self.names.revoked())
            .key(self.names.session(appid, openid))
            .arg(jti)
            .arg(exp)
            .arg(self.names.channel())
            .arg(self.revocations.leeway());
        self.run(Op::Logout, call.invoke_async::<i64>(&mut conn))
            .await
            .map(drop)
    }

    pub(crate) async fn claim_code(
        &self,
        appid: &str,
        code: &str,
        hold: Duration,
        waited: bool,
    ) -> Result<Claim, StoreError> {
        let key = self.names.code(&self.sealer, appid, code);
        let mut owner = [0u8; 12];
        getrandom::fill(&mut owner).expect("the OS random source");
        let mut lease = String::from("P");
        for b in owner {
            lease.push_str(&format!("{b:02x}"));
        }
        let mut conn = self.conn.clone();
        let mut call = self.scripts.claim.prepare_invoke();
        call.key(&key)
            .arg(&lease)
            .arg(hold.as_millis() as u64)
            .arg(if waited { "1" } else { "0" });
        let found = self
            .run(Op::Claim, call.invoke_async::<Option<Vec<u8>>>(&mut conn))
            .await?;
        let Some(value) = found else {
            return Ok(Claim::Mine(Lease(Some(lease))));
        };
        Ok(match value.split_first() {
            Some((b'P', _)) => Claim::Busy,
            Some((b'T', error)) => Claim::Failed(transient_from(error)),
            Some((b'S', sealed)) => match self.open_outcome(&key, sealed) {
                Some(outcome) => Claim::Done(outcome),
                None => {
                    tracing::warn!("a stored code answer does not open with store.encryption_key");
                    Claim::Failed(Error::StoreUnavailable)
                }
            },
            _ => Claim::Failed(Error::StoreUnavailable),
        })
    }

    pub(crate) async fn settle_code(
        &self,
        appid: &str,
        code: &str,
        lease: Lease,
        settle: Settle<'_>,
    ) -> Result<(), StoreError> {
        let key = self.names.code(&self.sealer, appid, code);
        let mut conn = self.conn.clone();
        match settle {
            // Written even if the claim lapsed: this is WeChat's answer,
            // and another holder would only get 40163 for the code now.
            Settle::Answered(outcome) => {
                let mut value = vec![b'S'];
                value.extend(self.sealer.seal(key.as_bytes(), &outcome_text(outcome)));
                let cmd = redis::cmd("SET")
                    .arg(&key)
                    .arg(value)
                    .arg("PX")
                    .arg(CODE_LIFE.as_millis() as u64)
                    .to_owned();
                self.run(Op::Settle, cmd.query_async::<()>(&mut conn)).await
            }
            Settle::Transient(error) => {
                let mut call = self.scripts.release.prepare_invoke();
                call.key(&key)
                    .arg(lease.0.unwrap_or_default())
                    .arg(format!("T{}", transient_text(error)))
                    .arg(TRANSIENT_LIFE.as_millis() as u64);
                self.run(Op::Settle, call.invoke_async::<i64>(&mut conn))
                    .await
                    .map(drop)
            }
        }
    }

    pub(crate) async fn rate_check(
        &self,
        limiter: &RateLimiter,
        client: IpAddr,
    ) -> Result<Result<(), Duration>, StoreError> {
        let (interval, tolerance) = limiter.schedule();
        let mut conn = self.conn.clone();
        let mut call = self.scripts.gcra.prepare_invoke();
        call.key(self.names.rate(client))
            .arg(interval.as_micros() as u64)
            .arg(tolerance.as_micros() as u64);
        let wait_us = self
            .run(Op::RateLimit, call.invoke_async::<i64>(&mut conn))
            .await?;
        Ok(match u64::try_from(wait_us) {
            Ok(us) => Err(Duration::from_micros(us)),
            Err(_) => Ok(()),
        })
    }

    fn open_outcome(&self, key: &str, sealed: &[u8]) -> Option<CodeOutcome> {
        let plain = self.sealer.open(key.as_bytes(), sealed)?;
        let v: serde_json::Value = serde_json::from_slice(&plain).ok()?;
        if let Some(refused) = v["refused"].as_str() {
            return Some(CodeOutcome::Refused(match refused {
                "invalid_code" => Error::InvalidCode,
                "user_blocked" => Error::UserBlocked,
                _ => Error::CodeUsed,
            }));
        }
        Some(CodeOutcome::Token {
            access_token: Secret::new(v["token"].as_str()?),
            jti: v["jti"].as_str()?.to_owned(),
            lifetime: v["lifetime"].as_u64()?,
            issued_ms: v["issued_ms"].as_u64()?,
        })
    }

    pub(crate) fn encode_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let up = u8::from(self.health.up());
        let _ = write!(
            out,
            "# HELP wxgate_store_up 1 while the Redis store answers.\n\
             # TYPE wxgate_store_up gauge\nwxgate_store_up {up}\n\
             # HELP wxgate_store_errors_total Redis store operations that failed or timed out.\n\
             # TYPE wxgate_store_errors_total counter\n"
        );
        for (op, name) in OPS {
            let n = self.health.errors[op as usize].load(Ordering::Relaxed);
            let _ = writeln!(out, "wxgate_store_errors_total{{op=\"{name}\"}} {n}");
        }
    }
}

fn session_aad(appid: &str, openid: &str) -> Vec<u8> {
    format!("session\0{appid}\0{openid}").into_bytes()
}

fn outcome_text(outcome: &CodeOutcome) -> Vec<u8> {
    let value = match outcome {
        CodeOutcome::Token {
            access_token,
            jti,
            lifetime,
            issued_ms,
        } => json!({
            "token": access_token.expose(),
            "jti": jti,
            "lifetime": lifetime,
            "issued_ms": issued_ms,
        }),
        CodeOutcome::Refused(error) => json!({ "refused": error.code() }),
    };
    value.to_string().into_bytes()
}

/// A transient error as the replicas waiting on it will read it.
fn transient_text(error: &Error) -> String {
    match error {
        Error::WeChatRateLimited => "rate".to_owned(),
        Error::WeChatTimeout => "timeout".to_owned(),
        Error::WeChatUnavailable => "unavailable".to_owned(),
        Error::Misconfigured(code) => format!("misconfigured {code}"),
        Error::WeChatErrcode(code) => format!("errcode {code}"),
        Error::StoreUnavailable => "store".to_owned(),
        _ => "internal".to_owned(),
    }
}

fn transient_from(text: &[u8]) -> Error {
    let text = std::str::from_utf8(text).unwrap_or("");
    let (kind, code) = text.split_once(' ').unwrap_or((text, ""));
    let code = code.parse::<i64>();
    match (kind, code) {
        ("rate", _) => Error::WeChatRateLimited,
        ("timeout", _) => Error::WeChatTimeout,
        ("unavailable", _) => Error::WeChatUnavailable,
        ("misconfigured", Ok(code)) => Error::Misconfigured(code),
        ("errcode", Ok(code)) => Error::WeChatErrcode(code),
        ("store", _) => Error::StoreUnavailable,
        _ => Error::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_round_trip() {
        for error in [
            Error::WeChatRateLimited,
            Error::WeChatTimeout,
            Error::WeChatUnavailable,
            Error::Misconfigured(40013),
            Error::WeChatErrcode(-2),
            Error::StoreUnavailable,
            Error::Internal,
        ] {
            let back = transient_from(transient_text(&error).as_bytes());
            assert_eq!(back.code(), error.code());
            assert_eq!(format!("{back}"), format!("{error}"));
        }
    }
}
