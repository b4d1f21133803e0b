//! The central access_token holder WeChat asks for: one token per app, got
//! with `stable_token`, kept, renewed before it expires, shared by every
//! backend through the internal API so that none of them refreshes its own
//! and overwrites the others' (40001).
//!
//! Per app, a tokio mutex is the single flight: whoever holds it is the one
//! caller talking to WeChat, and everyone waiting behind it finds the fresh
//! token (or the failure) when its turn comes, without a call of its own.
//! It is never on the proxy's path. A `force_refresh` is spent only when
//! WeChat hands back the very token a caller reported refused, at most once
//! per 30 s and 20 times in 24 h per app (WeChat's own limits).
//!
//! Entries are keyed by appid and remember the secret their token was
//! issued for: a reload that changes an app's secret finds no usable entry
//! and starts afresh, dropping the old token.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::api::{api_error, Issued, TOKEN_REFUSED};
use super::WeChat;
use crate::config::AppConfig;
use crate::error::Error;
use crate::ops::metrics::Metrics;
use crate::secret::Secret;

/// Renew when fewer seconds than this are left (the contract's 300 s).
pub const RENEW_AHEAD: Duration = Duration::from_secs(300);
/// WeChat refuses force refreshes closer together than this.
pub const FORCE_INTERVAL: Duration = Duration::from_secs(30);
/// And more than this many a day.
pub const FORCES_PER_DAY: usize = 20;
const DAY: Duration = Duration::from_secs(24 * 3600);
/// A token is never kept longer than this, whatever WeChat says (7200 s
/// is what it says): an absurd `expires_in` must not overflow a deadline.
const LONGEST_LIFE: u64 = 24 * 3600;

/// The token in force and its seconds left.
#[derive(Debug, Clone)]
pub struct Current {
    pub token: Secret,
    pub expires_in: u64,
}

/// Every app's token; one per gateway, outliving configs.
pub struct Tokens {
    /// By appid. A std mutex, held only to find or replace an entry.
    apps: Mutex<HashMap<String, Arc<AppToken>>>,
    metrics: Arc<Metrics>,
}

struct AppToken {
    /// The secret this entry's tokens were issued for.
    secret: Secret,
    /// WeChat calls finished, so a caller that waited behind one can tell
    /// that it happened and share its result instead of calling again.
    attempts: AtomicU64,
    slot: tokio::sync::Mutex<Slot>,
}

#[derive(Default)]
struct Slot {
    held: Option<Held>,
    /// The last call's failure, for callers that waited behind it.
    last_error: Option<Error>,
    forces: ForceBudget,
}

struct Held {
    token: Secret,
    expires_at: Instant,
    renew_at: Instant,
}

impl Held {
    fn new(issued: Issued, now: Instant) -> Held {
        let life = Duration::from_secs(issued.expires_in.min(LONGEST_LIFE));
        // Renew RENEW_AHEAD before expiry, or halfway through a life
        // shorter than that, never on every call.
        let renew_in = life.saturating_sub(RENEW_AHEAD).max(life / 2);
        Held {
            token: issued.token,
            expires_at: now + life,
            renew_at: now + renew_in,
        }
    }

    fn current(&self, now: Instant) -> Current {
        Current {
            token: self.token.clone(),
            expires_in: self.expires_at.saturating_duration_since(now).as_secs(),
        }
    }

    fn usable(&self, now: Instant) -> bool {
        now < self.expires_at
    }
}

impl Tokens {
    pub fn new(metrics: Arc<Metrics>) -> Tokens {
        Tokens {
            apps: Mutex::default(),
            metrics,
        }
    }

    fn entry(&self, app: &AppConfig) -> Arc<AppToken> {
        let mut apps = self.apps.lock().unwrap_or_else(PoisonError::into_inner);
        match apps.get(&app.appid) {
            Some(entry) if entry.secret == app.secret => entry.clone(),
            _ => {
                let entry = Arc::new(AppToken {
                    secret: app.secret.clone(),
                    attempts: AtomicU64::new(0),
                    slot: tokio::sync::Mutex::default(),
                });
                apps.insert(app.appid.clone(), entry.clone());
                entry
            }
        }
    }

    /// The app's token: the one held while it has more than
    /// [`RENEW_AHEAD`] left, else a renewed one.
    pub async fn get(&self, wechat: &WeChat, app: &AppConfig) -> Result<Current, Error> {
        let entry = self.entry(app);
        let seen = entry.attempts.load(Ordering::Acquire);
        let mut slot = entry.slot.lock().await;
        let now = Instant::now();
        if let Some(held) = slot.held.as_ref().filter(|h| now < h.renew_at) {
            return Ok(held.current(now));
        }
        if entry.attempts.load(Ordering::Acquire) != seen {
            // A call failed while this one waited: share its outcome.
            if let Some(error) = slot.last_error.clone() {
                return usable_or(&slot, now, error);
            }
        }
        match self.renew(wechat, app, &entry, &mut slot, false).await {
            Ok(current) => Ok(current),
            Err(error) => usable_or(&slot, Instant::now(), error),
        }
    }

    /// A backend reports `refused` refused by WeChat. If it is the token
    /// held, get another; force one only if WeChat hands back the refused
    /// token, within the force budget. Answers the token in force either way.
    pub async fn invalidate(
        &self,
        wechat: &WeChat,
        app: &AppConfig,
        refused: &str,
    ) -> Result<Current, Error> {
        let entry = self.entry(app);
        let mut slot = entry.slot.lock().await;
        let now = Instant::now();
        let holds_refused = slot
            .held
            .as_ref()
            .is_some_and(|h| h.token.expose() == refused);
        if !holds_refused {
            // Already renewed (by another caller), or never held.
            if let Some(held) = slot.held.as_ref().filter(|h| now < h.renew_at) {
                return Ok(held.current(now));
            }
        }
        // The held token is refused: it is no longer usable, whatever
        // its expiry says.
        if holds_refused {
            slot.held = None;
        }
        let current = self.renew(wechat, app, &entry, &mut slot, false).await?;
        if current.token.expose() != refused || !slot.forces.spend(Instant::now()) {
            return Ok(current);
        }
        self.renew(wechat, app, &entry, &mut slot, true).await
    }

    /// Calls `call` with the app's token; if WeChat refuses that token
    /// (40001, 42001, 40014, as `refused` reads the answer), renews it as
    /// [`Tokens::invalidate`] does and calls once more, only if the token
    /// changed. Never a third time.
    pub async fn with_token<T, F, Fut>(
        &self,
        wechat: &WeChat,
        app: &AppConfig,
        refused: impl Fn(&T) -> bool,
        mut call: F,
    ) -> Result<T, Error>
    where
        F: FnMut(Secret) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let first = self.get(wechat, app).await?.token;
        let answer = call(first.clone()).await?;
        if !refused(&answer) {
            return Ok(answer);
        }
        let renewed = self.invalidate(wechat, app, first.expose()).await?;
        if renewed.token == first {
            return Ok(answer);
        }
        call(renewed.token).await
    }

    /// One `stable_token` call, counted in
    /// `wxgate_wechat_access_token_refreshes_total`.
    async fn renew(
        &self,
        wechat: &WeChat,
        app: &AppConfig,
        entry: &AppToken,
        slot: &mut Slot,
        force: bool,
    ) -> Result<Current, Error> {
        let result = wechat.stable_token(&app.appid, &app.secret, force).await;
        entry.attempts.fetch_add(1, Ordering::Release);
        let now = Instant::now();
        match result {
            Ok(issued) => {
                self.metrics.token_refresh(&app.appid, "ok");
                let held = Held::new(issued, now);
                let current = held.current(now);
                slot.held = Some(held);
                slot.last_error = None;
                tracing::info!(appid = %app.appid, force, expires_in = current.expires_in, "access_token renewed");
                Ok(current)
            }
            Err(e) => {
                let error = api_error(&e);
                self.metrics.token_refresh(&app.appid, error.code());
                tracing::warn!(appid = %app.appid, force, error = %e, "access_token renewal failed");
                slot.last_error = Some(error.clone());
                Err(error)
            }
        }
    }
}

/// The held token if it has not expired yet (a failed early renewal
/// leaves it good), else `error`.
fn usable_or(slot: &Slot, now: Instant, error: Error) -> Result<Current, Error> {
    match slot.held.as_ref().filter(|h| h.usable(now)) {
        Some(held) => Ok(held.current(now)),
        None => Err(error),
    }
}

/// Whether an answer's errcode says the access_token was refused.
pub fn is_token_refused(errcode: Option<i64>) -> bool {
    errcode.is_some_and(|c| TOKEN_REFUSED.contains(&c))
}

/// WeChat's limits on `force_refresh`: 30 s apart, 20 a day.
#[derive(Default)]
struct ForceBudget {
    /// When the force refreshes of the last 24 h were spent, oldest first.
    spent: VecDeque<Instant>,
}

impl ForceBudget {
    /// Spends one force refresh at `now` if the limits allow it.
    fn spend(&mut self, now: Instant) -> bool {
        while self
            .spent
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= DAY)
        {
            self.spent.pop_front();
        }
        let too_soon = self
            .spent
            .back()
            .is_some_and(|&t| now.saturating_duration_since(t) < FORCE_INTERVAL);
        if too_soon || self.spent.len() >= FORCES_PER_DAY {
            return false;
        }
        self.spent.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn force_budget_30s_apart_20_a_day() {
        let start = Instant::now();
        let mut budget = ForceBudget::default();
        assert!(budget.spend(start));
        assert!(!budget.spend(start + Duration::from_secs(29)));
        assert!(budget.spend(start + Duration::from_secs(30)));
        let mut at = start + Duration::from_secs(30);
        for _ in 2..FORCES_PER_DAY {
            at += FORCE_INTERVAL;
            assert!(budget.spend(at));
        }
        // 20 spent within the day: none more, however far apart.
        assert!(!budget.spend(at + Duration::from_secs(3600)));
        // 24 h after the first, one comes back.
        assert!(budget.spend(start + DAY));
        assert!(!budget.spend(start + DAY + Duration::from_secs(1)));
    }

    #[test]
    fn renewal_comes_ahead_of_expiry() {
        let now = Instant::now();
        let held = |secs| {
            Held::new(
                Issued {
                    token: Secret::new("t"),
                    expires_in: secs,
                },
                now,
            )
        };
        let h = held(7200);
        assert_eq!(h.renew_at - now, Duration::from_secs(6900));
        assert_eq!(h.current(now).expires_in, 7200);
        // A short life is renewed halfway, not on every call.
        let h = held(200);
        assert_eq!(h.renew_at - now, Duration::from_secs(100));
        assert!(h.usable(now + Duration::from_secs(199)));
        assert!(!h.usable(now + Duration::from_secs(200)));
        // An absurd life is capped, not an overflow.
        let h = held(u64::MAX);
        assert_eq!(h.current(now).expires_in, LONGEST_LIFE);
    }
}
