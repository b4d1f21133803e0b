//! The session store: what wxgate remembers between requests. Per user, the
//! `session_key` WeChat handed out (never sent anywhere); revoked token ids
//! until their tokens expire; the answer given for each login code during
//! the code's life, so a retried code is answered without a second WeChat
//! call; and the login rate limit's budgets.
//!
//! [`Store`] is the one interface, with two backends: `memory` (one
//! process; never fails) and `redis` (shared by every replica; any call
//! that reaches Redis can fail with [`StoreError`]). Login, logout, auth and
//! the rate limiter do not know which one runs.
//!
//! Whichever the backend, every replica keeps the revocations in memory
//! (`revocations`): the check on a proxied request never waits on
//! anything else.

pub(crate) mod crypto;
pub(crate) mod memory;
pub(crate) mod redis;
pub(crate) mod revocations;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::StoreConfig;
use crate::error::Error;
use crate::secret::Secret;
use memory::MemoryStore;
use redis::RedisStore;
use revocations::Revocations;

/// What WeChat told us about a user at their last login.
#[derive(Clone, Debug)]
pub struct UserSession {
    pub session_key: Secret,
    pub unionid: Option<String>,
}

/// A definitive answer to a login code, remembered for the code's life.
#[derive(Clone, Debug)]
pub enum CodeOutcome {
    /// The answer given: the token, its id (a replay after logout must not
    /// hand out a revoked token), its lifetime and when it was issued in
    /// Unix milliseconds (answers count whole seconds elapsed since then, so
    /// every request that shared one exchange gets the same `expires_in`).
    Token {
        access_token: Secret,
        jti: String,
        lifetime: u64,
        issued_ms: u64,
    },
    /// WeChat refused the code or the user for good (40029, 40163, 40226).
    Refused(Error),
}

/// A login code's life at WeChat: remembered this long after its first use.
pub const CODE_LIFE: Duration = Duration::from_secs(5 * 60);

/// The store could not answer: a login or logout is refused with 503
/// `store_unavailable` rather than answered as if it had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Redis did not answer within `store.timeout`, or refused.
    #[error("the Redis store did not answer")]
    Unavailable,
    /// The revocations, or (memory store) the remembered login codes, are
    /// `store.capacity` live entries: refused rather than forgotten early.
    #[error("the revocation list or the login codes are full (store.capacity)")]
    Full,
}

impl From<StoreError> for Error {
    fn from(_: StoreError) -> Error {
        Error::StoreUnavailable
    }
}

/// The answer to "may I exchange this code?".
#[derive(Debug)]
pub enum Claim {
    /// Yours: call WeChat, then [`Store::settle_code`].
    Mine(Lease),
    /// Already answered.
    Done(CodeOutcome),
    /// Another replica is exchanging it: ask again shortly.
    Busy,
    /// The exchange this claimant waited on failed for a transient reason.
    Failed(Error),
}

/// Proof of a claim, handed back when settling it (with Redis, the value
/// only this claimant wrote).
#[derive(Debug)]
pub struct Lease(pub(crate) Option<String>);

/// How a claimed code ended.
pub enum Settle<'a> {
    Answered(&'a CodeOutcome),
    /// Not remembered: the client may send the code again.
    Transient(&'a Error),
}

/// What [`Store::counts`] reports; `None` where the backend keeps them
/// elsewhere (Redis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreCounts {
    /// Users whose session_key is kept.
    pub sessions: Option<u64>,
    /// Revoked token ids not yet expired.
    pub revocations: u64,
    /// Login codes whose answer is remembered (for [`CODE_LIFE`]).
    pub codes: Option<u64>,
}

/// The configured backend: a cheap-clone handle.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    revocations: Arc<Revocations>,
    backend: Backend,
}

enum Backend {
    Memory(MemoryStore),
    Redis(Box<RedisStore>),
}

impl Store {
    /// Starts the backend. With Redis this never waits: the connection is
    /// made (and remade) in the background, and calls fail meanwhile.
    pub fn new(config: &StoreConfig) -> Result<Store, String> {
        let revocations = Arc::new(Revocations::new(config.capacity));
        let backend = match &config.redis {
            None => Backend::Memory(MemoryStore::new(config.capacity)),
            Some(redis) => Backend::Redis(Box::new(RedisStore::new(redis, revocations.clone())?)),
        };
        Ok(Store {
            inner: Arc::new(Inner {
                revocations,
                backend,
            }),
        })
    }

    /// The token settings in force (at start and after each reload):
    /// revocations are kept until `exp` plus the largest leeway seen.
    pub fn note_leeway(&self, leeway: Duration) {
        self.inner.revocations.note_leeway(leeway);
    }

    /// Whether `jti` was revoked: memory only, never a network round trip.
    /// `Err` only with Redis, `on_error = "closed"` and Redis unreachable.
    pub fn is_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        if let Backend::Redis(redis) = &self.inner.backend {
            redis.check_closed()?;
        }
        Ok(self.inner.revocations.contains(jti))
    }

    /// Refuses new logins while a token they mint could not be revoked.
    pub fn can_log_in(&self) -> Result<(), StoreError> {
        if self.inner.revocations.is_full(crate::auth::token::now()) {
            return Err(StoreError::Full);
        }
        Ok(())
    }

    /// Logout: refuses `jti` until its token expires (on every replica) and
    /// drops the user's session_key. `Ok` only once the revocation is stored.
    pub async fn end_session(
        &self,
        appid: &str,
        openid: &str,
        jti: &str,
        exp: u64,
    ) -> Result<(), StoreError> {
        let now = crate::auth::token::now();
        let revocations = &self.inner.revocations;
        if revocations.is_full(now) {
            return Err(StoreError::Full);
        }
        match &self.inner.backend {
            Backend::Memory(m) => m.drop_session(appid, openid),
            Backend::Redis(r) => r.end_session(appid, openid, jti, exp).await?,
        }
        revocations
            .insert(jti, exp, now)
            .map_err(|_| StoreError::Full)
    }

    pub async fn put_session(
        &self,
        appid: &str,
        openid: &str,
        session: UserSession,
    ) -> Result<(), StoreError> {
        match &self.inner.backend {
            Backend::Memory(m) => {
                m.put_session(appid, openid, session);
                Ok(())
            }
            Backend::Redis(r) => r.put_session(appid, openid, &session).await,
        }
    }

    pub async fn session(
        &self,
        appid: &str,
        openid: &str,
    ) -> Result<Option<UserSession>, StoreError> {
        match &self.inner.backend {
            Backend::Memory(m) => Ok(m.session(appid, openid)),
            Backend::Redis(r) => r.session(appid, openid).await,
        }
    }

    /// Claims the exchange of (appid, code) for `hold`: at most one holder
    /// at a time across every replica sharing the store. A holder that dies
    /// blocks the code for no longer than `hold`. `waited`: this claimant
    /// saw the code busy before, and shares a transient failure.
    pub async fn claim_code(
        &self,
        appid: &str,
        code: &str,
        hold: Duration,
        waited: bool,
    ) -> Result<Claim, StoreError> {
        match &self.inner.backend {
            Backend::Memory(m) => m.claim_code(appid, code),
            Backend::Redis(r) => r.claim_code(appid, code, hold, waited).await,
        }
    }

    /// Records how a claimed exchange ended, for the other claimants.
    pub async fn settle_code(
        &self,
        appid: &str,
        code: &str,
        lease: Lease,
        settle: Settle<'_>,
    ) -> Result<(), StoreError> {
        match &self.inner.backend {
            Backend::Memory(m) => {
                m.settle_code(appid, code, settle);
                Ok(())
            }
            Backend::Redis(r) => r.settle_code(appid, code, lease, settle).await,
        }
    }

    /// The login rate limit for `client` (keyed per IPv4 address or IPv6
    /// /64): `Ok(Err(wait))` to refuse. With Redis, one budget for all
    /// replicas, timed by Redis's clock.
    pub async fn rate_check(
        &self,
        limiter: &crate::login::ratelimit::RateLimiter,
        client: IpAddr,
    ) -> Result<Result<(), Duration>, StoreError> {
        match &self.inner.backend {
            Backend::Memory(_) => Ok(limiter.check(client)),
            Backend::Redis(r) => r.rate_check(limiter, client).await,
        }
    }

    /// How many sessions, revocations and login codes the store holds, for
    /// the metrics (read when scraped, never per request). Every replica
    /// holds the revocations; what lives in Redis is not counted (that
    /// would be a round trip per scrape).
    pub fn counts(&self) -> Option<StoreCounts> {
        let revocations = self.inner.revocations.len();
        Some(match &self.inner.backend {
            Backend::Memory(m) => {
                let (sessions, codes) = m.counts();
                StoreCounts {
                    sessions: Some(sessions),
                    revocations,
                    codes: Some(codes),
                }
            }
            Backend::Redis(_) => StoreCounts {
                sessions: None,
                revocations,
                codes: None,
            },
        })
    }

    /// `wxgate_store_up` and `wxgate_store_errors_total`, appended to the
    /// metrics text.
    pub fn encode_metrics(&self, out: &mut String) {
        match &self.inner.backend {
            Backend::Memory(_) => {
                out.push_str(
                    "# HELP wxgate_store_up 1 while the store answers.\n\
                     # TYPE wxgate_store_up gauge\nwxgate_store_up 1\n",
                );
            }
            Backend::Redis(r) => r.encode_metrics(out),
        }
    }
}
