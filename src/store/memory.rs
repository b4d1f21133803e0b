//! The in-process backend: one replica's memory, bounded in entries
//! (`store.capacity` per kind) and in time. It never fails. Revocations are
//! kept beside it by [`Store`](super::Store), as for every backend.

use std::time::Duration;

use moka::sync::Cache;

use super::{Claim, CodeOutcome, Lease, Settle, UserSession, CODE_LIFE};

pub(crate) struct MemoryStore {
    sessions: Cache<(String, String), UserSession>,
    codes: Cache<(String, String), CodeOutcome>,
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
                .max_capacity(capacity)
                .time_to_live(CODE_LIFE)
                .build(),
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
    /// a time, so a code without an answer is free to take.
    pub(crate) fn claim_code(&self, appid: &str, code: &str) -> Claim {
        match self.codes.get(&key(appid, code)) {
            Some(outcome) => Claim::Done(outcome),
            None => Claim::Mine(Lease(None)),
        }
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

        assert!(matches!(store.claim_code("wx1", "c"), Claim::Mine(_)));
        store.settle_code("wx1", "c", Settle::Transient(&Error::WeChatTimeout));
        assert!(matches!(store.claim_code("wx1", "c"), Claim::Mine(_)));
        let refused = CodeOutcome::Refused(Error::CodeUsed);
        store.settle_code("wx1", "c", Settle::Answered(&refused));
        assert!(matches!(
            store.claim_code("wx1", "c"),
            Claim::Done(CodeOutcome::Refused(Error::CodeUsed))
        ));
        assert!(matches!(store.claim_code("wx2", "c"), Claim::Mine(_)));
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
