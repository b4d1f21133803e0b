//! The in-process backend: one replica's memory, bounded in entries
//! (`store.capacity` per kind) and in time. It never fails. Revocations are
//! kept beside it by [`Store`](super::Store), as for every backend.

use std::time::Duration;

use moka::sync::Cache;

use super::{Claim, CodeOutcome, Lease, Settle, StoreError, UserSession, CODE_LIFE};

pub(crate) struct MemoryStore {
    sessions: Cache<(String, String), UserSession>,
    /// Each answer is kept for the code's whole life: a forgotten one would
    /// send a retried code to WeChat again (40163). So the cache's own
    /// bound is twice `capacity`, never reached: at `capacity` live codes,
    /// new logins are refused instead ([`MemoryStore::claim_code`]), where
    /// a full cache would quietly refuse to admit new answers (TinyLFU).
    codes: Cache<(String, String), CodeOutcome>,
    capacity: u64,
}

fn key(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

impl MemoryStore {
    pub(crate) fn new(capacity: u64) -> MemoryStore {
        MemoryStore {
            // A session_key is only useful with a live token; a day bounds
            // memory for users who never come back.
            sessions: Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(Duration::from_secs(24 * 3600))
                .build(),
            codes: Cache::builder()
                .max_capacity(capacity.saturating_mul(2))
                .time_to_live(CODE_LIFE)
                .build(),
            capacity,
        }
    }

    /// Sessions and login codes held, pending evictions applied first.
    pub(crate) fn counts(&self) -> (u64, u64) {
        self.sessions.run_pending_tasks();
        self.codes.run_pending_tasks();
        (self.sessions.entry_count(), self.codes.entry_count())
    }

    pub(crate) fn put_session(&self, appid: &str, openid: &str, session: UserSession) {
        self.sessions.insert(key(appid, openid), session);
    }

    pub(crate) fn session(&self, appid: &str, openid: &str) -> Option<UserSession> {
        self.sessions.get(&key(appid, openid))
    }

    pub(crate) fn drop_session(&self, appid: &str, openid: &str) {
        self.sessions.invalidate(&key(appid, openid));
    }

    /// One process: the login flight already runs one exchange per code at
    /// a time, so a code without an answer is free to take, while there is
    /// room to remember its answer.
    pub(crate) fn claim_code(&self, appid: &str, code: &str) -> Result<Claim, StoreError> {
        if let Some(outcome) = self.codes.get(&key(appid, code)) {
            return Ok(Claim::Done(outcome));
        }
        // The count lags inserts and expiries until the cache's upkeep:
        // done here, once per exchange (a login, never a proxied request).
        self.codes.run_pending_tasks();
        if self.codes.entry_count() >= self.capacity {
            return Err(StoreError::Full);
        }
        Ok(Claim::Mine(Lease(None)))
    }

    pub(crate) fn settle_code(&self, appid: &str, code: &str, settle: Settle<'_>) {
        if let Settle::Answered(outcome) = settle {
            self.codes.insert(key(appid, code), outcome.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::secret::Secret;

    #[test]
    fn sessions_and_codes() {
        let store = MemoryStore::new(100);
        let s = |k: &str| UserSession {
            session_key: Secret::new(k),
            unionid: Some("u".into()),
        };
        store.put_session("wx1", "o1", s("k1"));
        assert_eq!(
            store.session("wx1", "o1").unwrap().session_key.expose(),
            "k1"
        );
        assert!(store.session("wx2", "o1").is_none());
        store.put_session("wx1", "o1", s("k2"));
        assert_eq!(
            store.session("wx1", "o1").unwrap().session_key.expose(),
            "k2"
        );
        store.drop_session("wx1", "o1");
        assert!(store.session("wx1", "o1").is_none());

        assert!(matches!(store.claim_code("wx1", "c"), Ok(Claim::Mine(_))));
        store.settle_code("wx1", "c", Settle::Transient(&Error::WeChatTimeout));
        assert!(matches!(store.claim_code("wx1", "c"), Ok(Claim::Mine(_))));
        let refused = CodeOutcome::Refused(Error::CodeUsed);
        store.settle_code("wx1", "c", Settle::Answered(&refused));
        assert!(matches!(
            store.claim_code("wx1", "c"),
            Ok(Claim::Done(CodeOutcome::Refused(Error::CodeUsed)))
        ));
        assert!(matches!(store.claim_code("wx2", "c"), Ok(Claim::Mine(_))));
    }

    #[test]
    fn a_full_code_list_refuses_new_codes_and_forgets_none() {
        let store = MemoryStore::new(20);
        let refused = CodeOutcome::Refused(Error::CodeUsed);
        let code = |i: usize| format!("code-{i}");
        for i in 0..20 {
            assert!(matches!(
                store.claim_code("wx", &code(i)),
                Ok(Claim::Mine(_))
            ));
            store.settle_code("wx", &code(i), Settle::Answered(&refused));
        }
        // No room for a 21st answer: refused (503), not admitted at the cost
        // of one already given.
        assert_eq!(
            store.claim_code("wx", "one-more").err(),
            Some(StoreError::Full)
        );
        for i in 0..20 {
            assert!(
                matches!(store.claim_code("wx", &code(i)), Ok(Claim::Done(_))),
                "the answer to {} was forgotten",
                code(i)
            );
        }
    }

    #[test]
    fn capacity_bounds_memory() {
        let store = MemoryStore::new(50);
        for i in 0..1000 {
            store.put_session(
                "wx",
                &format!("o{i}"),
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
