//! The pub/sub task: applies revocations as other replicas publish them,
//! reloads the whole set after every (re)connect (merging: a local entry is
//! never dropped) and writes back what Redis lost. It also says whether
//! Redis is reachable, for `on_error` and `wxgate_store_up`.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::RedisResult;

use super::{Health, Names, Op, RETRY_MAX, RETRY_MIN};
use crate::store::revocations::Revocations;

/// Revocations read per command when reloading.
const RELOAD_BATCH: usize = 10_000;
/// How often the pub/sub connection is checked with a PING.
const PING_EVERY: Duration = Duration::from_secs(5);

/// What the pub/sub task needs.
pub(super) struct Subscriber {
    pub(super) client: redis::Client,
    pub(super) conn: ConnectionManager,
    pub(super) names: Arc<Names>,
    pub(super) revocations: Arc<Revocations>,
    pub(super) health: Arc<Health>,
    pub(super) timeout: Duration,
}

/// Holds the pub/sub connection for the store's life, reconnecting with a
/// capped backoff.
pub(super) async fn subscribe_forever(sub: Subscriber) {
    let mut pause = RETRY_MIN;
    loop {
        let result = sub.subscribed().await;
        let was_up = sub.health.subscribed.swap(false, Ordering::Relaxed);
        if let Err(e) = result {
            if was_up {
                tracing::warn!(error = %e, "lost the Redis store; reconnecting");
            }
            sub.health.failed(Op::Subscribe, &e);
        }
        if was_up {
            pause = RETRY_MIN;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_MAX);
    }
}

impl Subscriber {
    async fn bounded<T>(&self, f: impl Future<Output = RedisResult<T>>) -> RedisResult<T> {
        tokio::time::timeout(self.timeout, f)
            .await
            .unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()))
    }

    /// One pub/sub connection's life: subscribe, then reload (so nothing
    /// published in between is missed), then apply revocations as they
    /// come until the connection fails.
    async fn subscribed(&self) -> RedisResult<()> {
        let mut pubsub = self.bounded(self.client.get_async_pubsub()).await?;
        self.bounded(pubsub.subscribe(self.names.channel())).await?;
        let (mut sink, mut stream) = pubsub.split();
        self.reload().await?;
        self.health.subscribed.store(true, Ordering::Relaxed);
        self.health.commands_ok.store(true, Ordering::Relaxed);
        tracing::info!(
            revocations = self.revocations.len(),
            "connected to the Redis store"
        );
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                message = stream.next() => {
                    let Some(message) = message else {
                        return Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into());
                    };
                    self.apply(message.get_payload_bytes());
                }
                _ = ping.tick() => {
                    self.bounded(sink.ping::<String>()).await?;
                }
            }
        }
    }

    /// A published revocation: `<exp> <jti>`.
    fn apply(&self, payload: &[u8]) {
        let text = std::str::from_utf8(payload).unwrap_or("");
        let parsed = text
            .split_once(' ')
            .and_then(|(exp, jti)| Some((exp.parse::<u64>().ok()?, jti)));
        match parsed {
            Some((exp, jti)) => {
                if self
                    .revocations
                    .insert(jti, exp, crate::auth::token::now())
                    .is_err()
                {
                    tracing::error!("the revocation list is full (store.capacity): logins are refused until tokens expire");
                }
            }
            None => tracing::warn!("ignored a malformed message on the revocation channel"),
        }
    }

    /// Merges Redis's revocations into memory, then writes back the ones
    /// Redis lost (flushed, or restarted without persistence).
    async fn reload(&self) -> RedisResult<()> {
        let mut conn = self.conn.clone();
        let key = self.names.revoked();
        let now = crate::auth::token::now();
        let mut offset = 0;
        loop {
            let batch: Vec<(String, u64)> = self
                .bounded(
                    redis::cmd("ZRANGEBYSCORE")
                        .arg(&key)
                        .arg(now.saturating_sub(self.revocations.leeway()))
                        .arg("+inf")
                        .arg("WITHSCORES")
                        .arg("LIMIT")
                        .arg(offset)
                        .arg(RELOAD_BATCH)
                        .query_async(&mut conn),
                )
                .await?;
            for (jti, exp) in &batch {
                if self.revocations.insert(jti, *exp, now).is_err() {
                    tracing::error!("the revocation list is full (store.capacity): logins are refused until tokens expire");
                    break;
                }
            }
            if batch.len() < RELOAD_BATCH {
                break;
            }
            offset += batch.len();
        }
        let in_redis: u64 = self
            .bounded(redis::cmd("ZCARD").arg(&key).query_async(&mut conn))
            .await?;
        if in_redis >= self.revocations.len() {
            return Ok(());
        }
        let entries = self.revocations.entries();
        tracing::info!(
            known = entries.len(),
            in_redis,
            "writing back revocations the Redis store lost"
        );
        for chunk in entries.chunks(1000) {
            let mut cmd = redis::cmd("ZADD");
            cmd.arg(&key).arg("NX");
            for (jti, exp) in chunk {
                cmd.arg(*exp).arg(jti);
            }
            self.bounded(cmd.query_async::<()>(&mut conn)).await?;
        }
        Ok(())
    }
}
