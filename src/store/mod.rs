//! The session store: what wxgate remembers between requests. Per user, the
//! `session_key` WeChat handed out (never sent anywhere); revoked token ids
//! until their expiry; and the answer given for each login code during the
//! code's life, so a retried code is answered without a second WeChat call.
//!
//! [`SessionStore`] is the interface; [`Store`] dispatches to a backend
//! without boxing, so the revocation check on every request costs one cache
//! look-up. A shared backend is one more `Store` variant: the login and auth
//! code only see `Store`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;

use crate::config::StoreConfig;
use crate::error::Error;
use crate::secret::Secret;

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

/// The operations a session backend provides.
pub trait SessionStore: Send + Sync {
    fn put_session(
        &self,
        appid: &str,
        openid: &str,
        session: UserSession,
    ) -> impl Future<Output = ()> + Send;
    fn session(
        &self,
        appid: &str,
        openid: &str,
    ) -> impl Future<Output = Option<UserSession>> + Send;
    fn drop_session(&self, appid: &str, openid: &str) -> impl Future<Output = ()> + Send;
    /// Refuses `jti` until `exp` (Unix seconds).
    fn revoke(&self, jti: &str, exp: u64) -> impl Future<Output = ()> + Send;
    fn is_revoked(&self, jti: &str) -> impl Future<Output = bool> + Send;
    fn code_outcome(
        &self,
        appid: &str,
        code: &str,
    ) -> impl Future<Output = Option<CodeOutcome>> + Send;
    fn put_code_outcome(
        &self,
        appid: &str,
        code: &str,
        outcome: CodeOutcome,
    ) -> impl Future<Output = ()> + Send;
}

/// The configured backend.
#[derive(Clone)]
pub enum Store {
    Memory(Arc<MemoryStore>),
}

impl Store {
    pub fn new(config: &StoreConfig) -> Store {
        Store::Memory(Arc::new(MemoryStore::new(config.capacity)))
    }

    /// How many sessions, revocations and login codes the store holds, for the metrics
    /// (read when scraped, never per request); `None` when a backend cannot
    /// tell without a round trip.
    pub fn counts(&self) -> Option<StoreCounts> {
        match self {
            Store::Memory(store) => Some(store.counts()),
        }
    }
}

/// What [`Store::counts`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreCounts {
    /// Users whose session_key is kept.
    pub sessions: u64,
    /// Revoked token ids not yet expired.
    pub revocations: u64,
    /// Login codes whose answer is remembered (for [`CODE_LIFE`]).
    pub codes: u64,
}

macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Store::Memory($store) => $call,
        }
    };
}

impl SessionStore for Store {
    async fn put_session(&self, appid: &str, openid: &str, session: UserSession) {
        dispatch!(self, s => s.put_session(appid, openid, session).await)
    }
    async fn session(&self, appid: &str, openid: &str) -> Option<UserSession> {
        dispatch!(self, s => s.session(appid, openid).await)
    }
    async fn drop_session(&self, appid: &str, openid: &str) {
        dispatch!(self, s => s.drop_session(appid, openid).await)
    }
    async fn revoke(&self, jti: &str, exp: u64) {
        dispatch!(self, s => s.revoke(jti, exp).await)
    }
    async fn is_revoked(&self, jti: &str) -> bool {
        dispatch!(self, s => s.is_revoked(jti).await)
    }
    async fn code_outcome(&self, appid: &str, code: &str) -> Option<CodeOutcome> {
        dispatch!(self, s => s.code_outcome(appid, code).await)
    }
    async fn put_code_outcome(&self, appid: &str, code: &str, outcome: CodeOutcome) {
        dispatch!(self, s => s.put_code_outcome(appid, code, outcome).await)
    }
}

/// In-process, bounded in entries (`store.capacity` per kind) and in time.
pub struct MemoryStore {
    sessions: Cache<(String, String), UserSession>,
    /// jti → expiry (Unix seconds); each entry lives until its token would.
    /// Keys are jtis wxgate generated, so foldhash's speed costs nothing.
    revoked: Cache<String, u64, foldhash::fast::RandomState>,
    /// Set before the first revocation: until then, no lookup is needed.
    any_revoked: AtomicBool,
    codes: Cache<(String, String), CodeOutcome>,
}

/// Keeps a revoked jti exactly as long as its token could still be presented.
struct UntilExp;

impl Expiry<String, u64> for UntilExp {
    fn expire_after_create(&self, _: &String, exp: &u64, _: Instant) -> Option<Duration> {
        let now = crate::auth::token::now();
        // The leeway lets an expired token pass for a while; keep it covered.
        Some(Duration::from_secs(exp.saturating_sub(now) + 3600))
    }
}

impl MemoryStore {
    pub fn new(capacity: u64) -> MemoryStore {
        MemoryStore {
            // A session_key is only useful with a live token; a day bounds
            // memory for users who never come back.
            sessions: Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(Duration::from_secs(24 * 3600))
                .build(),
            revoked: Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilExp)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            any_revoked: AtomicBool::new(false),
            codes: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(CODE_LIFE)
                .build(),
        }
    }
}

impl MemoryStore {
    /// Exact counts: the caches' pending inserts and evictions are applied
    /// first (cheap next to a scrape's other work).
    pub fn counts(&self) -> StoreCounts {
        self.sessions.run_pending_tasks();
        self.revoked.run_pending_tasks();
        self.codes.run_pending_tasks();
        StoreCounts {
            sessions: self.sessions.entry_count(),
            revocations: self.revoked.entry_count(),
            codes: self.codes.entry_count(),
        }
    }
}

fn key(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

impl SessionStore for MemoryStore {
    async fn put_session(&self, appid: &str, openid: &str, session: UserSession) {
        self.sessions.insert(key(appid, openid), session);
    }
    async fn session(&self, appid: &str, openid: &str) -> Option<UserSession> {
        self.sessions.get(&key(appid, openid))
    }
    async fn drop_session(&self, appid: &str, openid: &str) {
        self.sessions.invalidate(&key(appid, openid));
    }
    async fn revoke(&self, jti: &str, exp: u64) {
        // Before the entry: a lookup that skips on `false` happened before
        // this revocation began.
        self.any_revoked.store(true, Ordering::Release);
        self.revoked.insert(jti.to_owned(), exp);
    }
    async fn is_revoked(&self, jti: &str) -> bool {
        self.any_revoked.load(Ordering::Acquire) && self.revoked.contains_key(jti)
    }
    async fn code_outcome(&self, appid: &str, code: &str) -> Option<CodeOutcome> {
        self.codes.get(&key(appid, code))
    }
    async fn put_code_outcome(&self, appid: &str, code: &str, outcome: CodeOutcome) {
        self.codes.insert(key(appid, code), outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sessions_revocations_and_codes() {
        let store = Store::Memory(Arc::new(MemoryStore::new(100)));
        let s = UserSession {
            session_key: Secret::new("k1"),
            unionid: Some("u".into()),
        };
        store.put_session("wx1", "o1", s).await;
        assert_eq!(
            store
                .session("wx1", "o1")
                .await
                .unwrap()
                .session_key
                .expose(),
            "k1"
        );
        assert!(store.session("wx2", "o1").await.is_none());
        let s2 = UserSession {
            session_key: Secret::new("k2"),
            unionid: None,
        };
        store.put_session("wx1", "o1", s2).await;
        assert_eq!(
            store
                .session("wx1", "o1")
                .await
                .unwrap()
                .session_key
                .expose(),
            "k2"
        );
        store.drop_session("wx1", "o1").await;
        assert!(store.session("wx1", "o1").await.is_none());

        assert!(!store.is_revoked("j1").await);
        store.revoke("j1", crate::auth::token::now() + 60).await;
        assert!(store.is_revoked("j1").await);

        assert!(store.code_outcome("wx1", "c").await.is_none());
        store
            .put_code_outcome("wx1", "c", CodeOutcome::Refused(Error::CodeUsed))
            .await;
        assert!(matches!(
            store.code_outcome("wx1", "c").await,
            Some(CodeOutcome::Refused(Error::CodeUsed))
        ));
        assert!(store.code_outcome("wx2", "c").await.is_none());
    }

    #[test]
    fn capacity_bounds_memory() {
        let store = MemoryStore::new(50);
        for i in 0..1000 {
            store.sessions.insert(
                key("wx", &format!("o{i}")),
                UserSession {
                    session_key: Secret::new("k"),
                    unionid: None,
                },
            );
        }
        store.sessions.run_pending_tasks();
        assert!(
            store.sessions.entry_count() <= 50,
            "{}",
            store.sessions.entry_count()
        );
    }
}
