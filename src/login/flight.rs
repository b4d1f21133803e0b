//! One WeChat call per login code, in one process and across replicas.
//!
//! In this process, requests with the same code share one task (the
//! exchange runs in its own task, so a client that hangs up mid-login
//! cannot cancel it and cause a second call that WeChat would answer with
//! 40163). That task then claims the code in the store: with Redis, one
//! replica wins the claim (`SET NX` with an expiry of `wechat.timeout` plus
//! a margin) and calls WeChat; the others ask again with a growing pause
//! until its answer is there, or until the claim lapses because its holder
//! died, and then one of them takes it. No answer is ever read from a lock
//! held in memory: the store alone decides, so the design holds for a store
//! that answers over the network.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;

use crate::auth::token;
use crate::error::Error;
use crate::secret::Secret;
use crate::state::{Gateway, InFlight, Snapshot};
use crate::store::{Claim, CodeOutcome, Lease, Settle, UserSession};
use crate::wechat::{self, WeChatError};

/// Added to `wechat.timeout` for a claim's life: the holder's own WeChat
/// call ends by `wechat.timeout`, and the margin covers writing its answer.
const HOLD_MARGIN: Duration = Duration::from_secs(1);
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const LONGEST_PAUSE: Duration = Duration::from_millis(200);

/// The outcome for (appid, code): remembered, shared with the exchange in
/// flight here or on another replica, or from a new exchange.
pub(crate) async fn exchange_once(
    gw: &Gateway,
    snap: &Arc<Snapshot>,
    appid: &str,
    code: &str,
) -> Result<CodeOutcome, Error> {
    let key = (appid.to_owned(), code.to_owned());
    let flight: InFlight = {
        let mut logins = gw.logins().lock().expect("login map lock");
        logins
            .entry(key.clone())
            .or_insert_with(|| {
                let task = tokio::spawn(fly(gw.clone(), snap.clone(), key));
                async move { task.await.unwrap_or(Err(Error::Internal)) }
                    .boxed()
                    .shared()
            })
            .clone()
    };
    flight.await
}

/// This process's one task for a code. It leaves the map only once the
/// store has the answer, so a request that misses the map finds it there.
async fn fly(
    gw: Gateway,
    snap: Arc<Snapshot>,
    key: (String, String),
) -> Result<CodeOutcome, Error> {
    let result = claim_and_exchange(&gw, &snap, &key.0, &key.1).await;
    gw.logins().lock().expect("login map lock").remove(&key);
    result
}

async fn claim_and_exchange(
    gw: &Gateway,
    snap: &Snapshot,
    appid: &str,
    code: &str,
) -> Result<CodeOutcome, Error> {
    let hold = snap.config.wechat.timeout + HOLD_MARGIN;
    // A claim seen busy lapses within `hold`; past that, something is wrong
    // with the store's clock or contents, and the client hears it.
    let give_up = Instant::now() + hold + HOLD_MARGIN;
    let mut pause = FIRST_PAUSE;
    let mut waited = false;
    loop {
        match gw.store().claim_code(appid, code, hold, waited).await? {
            Claim::Done(outcome) => return Ok(outcome),
            Claim::Failed(error) => return Err(error),
            Claim::Mine(lease) => return exchange(gw, snap, appid, code, lease).await,
            Claim::Busy if Instant::now() >= give_up => return Err(Error::WeChatTimeout),
            Claim::Busy => {
                waited = true;
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LONGEST_PAUSE);
            }
        }
    }
}

/// The call to WeChat, by the code's one claimant; its answer goes to the
/// store before anyone hears it.
async fn exchange(
    gw: &Gateway,
    snap: &Snapshot,
    appid: &str,
    code: &str,
    lease: Lease,
) -> Result<CodeOutcome, Error> {
    let started = Instant::now();
    let result = match &snap.wechat {
        Some(client) => {
            let secret = snap
                .config
                .apps
                .iter()
                .find(|a| a.appid == appid)
                .map(|a| &a.secret)
                .expect("selected from the config");
            client.code2session(appid, secret, code).await
        }
        None => wechat::simulate(code),
    };
    let elapsed_ms = started.elapsed().as_millis() as u64;
    if snap.wechat.is_some() {
        let errcode = match &result {
            Err(WeChatError::Errcode(code)) => Some(*code),
            _ => None,
        };
        gw.metrics().wechat_call(started.elapsed(), errcode);
    }
    let store = gw.store();
    let outcome = match result {
        Ok(session) => {
            let minted = snap.keys.mint(
                &session.openid,
                appid,
                session.unionid.as_deref(),
                snap.keys.ttl(),
                token::now(),
            );
            let (access_token, claims) = match minted {
                Ok(minted) => minted,
                Err(e) => {
                    tracing::error!(error = %e, "cannot sign a token");
                    return give_back(gw, appid, code, lease, Error::Internal).await;
                }
            };
            let user = UserSession {
                session_key: session.session_key,
                unionid: session.unionid,
            };
            if let Err(e) = store.put_session(appid, &session.openid, user).await {
                return give_back(gw, appid, code, lease, e.into()).await;
            }
            let openid = snap.openid_log.field(&session.openid);
            tracing::info!(appid = %appid, openid, elapsed_ms, "login");
            CodeOutcome::Token {
                access_token: Secret::new(access_token),
                lifetime: claims.exp.saturating_sub(claims.iat),
                issued_ms: now_ms(),
                jti: claims.jti,
            }
        }
        Err(e) => {
            let mapped = super::map_wechat_error(&e);
            tracing::warn!(appid = %appid, error = %e, elapsed_ms, code = %mapped.code(), "login refused");
            match mapped {
                Error::InvalidCode | Error::CodeUsed | Error::UserBlocked => {
                    CodeOutcome::Refused(mapped)
                }
                transient => return give_back(gw, appid, code, lease, transient).await,
            }
        }
    };
    store
        .settle_code(appid, code, lease, Settle::Answered(&outcome))
        .await?;
    Ok(outcome)
}

/// A transient failure is not remembered (the client may send the code
/// again), but the replicas waiting on this claim share it.
async fn give_back(
    gw: &Gateway,
    appid: &str,
    code: &str,
    lease: Lease,
    error: Error,
) -> Result<CodeOutcome, Error> {
    // Best effort: if this fails too, the claim lapses by itself.
    let _ = gw
        .store()
        .settle_code(appid, code, lease, Settle::Transient(&error))
        .await;
    Err(error)
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
