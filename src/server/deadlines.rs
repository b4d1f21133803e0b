//! The life of one client connection once accepted: bounded at every phase
//! so that a client that sends nothing, or stops sending, cannot keep its
//! connection slot (one of `server.max_connections`).
//!
//! - Before the first request: `header_timeout` from accept (hyper would
//!   start a header timer only once it knows the protocol, so a silent
//!   client or half an HTTP/2 preface would otherwise stay forever).
//! - Between requests: an HTTP/1 connection must start its next request
//!   within `header_timeout` of its last answer (a slow head counts, as it
//!   did with hyper's header timer), and any connection is closed after
//!   `idle_timeout` without a request in flight. For HTTP/2, where a live
//!   peer answers keep-alive pings, that close is a graceful one (GOAWAY).
//! - At shutdown: a graceful close, in-flight requests first.
//! - An HTTP/1 request's wait for its upstream: the route's timeout
//!   ([`Within`]; hyper polls the request in this driver's task), also
//!   after a graceful close has begun.
//!
//! A graceful close lets requests in flight finish; only then does the
//! connection end.
//!
//! Cost: the per-request path reads the clock twice (the upstream deadline;
//! the answer done, [`InFlight`]) and bumps two counters; it arms no timer.
//! The driver keeps one timer for the connection's life: when it fires it
//! looks at the counters and either closes the connection or re-arms for
//! the exact moment the connection would be quiet for too long, or a
//! request's upstream wait would end.

use std::future::poll_fn;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http_body::{Frame, SizeHint};
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant, Sleep};

/// What the connection's requests tell its driver.
#[derive(Debug)]
pub struct Activity {
    /// The clock's origin for `last_done`.
    base: Instant,
    /// Requests started on this connection so far.
    started: AtomicU64,
    /// Requests whose answer is done (written, or abandoned) so far.
    done: AtomicU64,
    /// When the latest answer was done, in nanoseconds after `base`.
    last_done: AtomicU64,
    /// HTTP/1: when the request in flight stops waiting for its upstream
    /// (nanoseconds after `base`; 0: no such wait), and whether it has.
    upstream_deadline: AtomicU64,
    upstream_expired: AtomicBool,
}

impl Activity {
    pub fn new(base: Instant) -> Activity {
        Activity {
            base,
            started: AtomicU64::new(0),
            done: AtomicU64::new(0),
            last_done: AtomicU64::new(0),
            upstream_deadline: AtomicU64::new(0),
            upstream_expired: AtomicBool::new(false),
        }
    }

    fn nanos_since_base(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.base).as_nanos();
        u64::try_from(since).unwrap_or(u64::MAX).max(1)
    }

    /// The pending upstream deadline, unless it has already passed.
    fn upstream_deadline(&self) -> Option<Instant> {
        match self.upstream_deadline.load(Ordering::Relaxed) {
            0 => None,
            _ if self.upstream_expired.load(Ordering::Relaxed) => None,
            at => Some(self.base + Duration::from_nanos(at)),
        }
    }

    /// Ends the upstream wait in flight if its deadline has come: the
    /// request sees it when the connection is polled next.
    fn expire_upstream_wait(&self, now: Instant) {
        if self.upstream_deadline().is_some_and(|at| now >= at) {
            self.upstream_expired.store(true, Ordering::Relaxed);
        }
    }

    /// Called by the service at the start of every request; the guard it
    /// returns goes with the answer's body and counts the request done
    /// when dropped.
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.started.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Requests in flight now, and since when none has been (meaningful
    /// only when none is).
    fn quiet_since(&self) -> (u64, u64, Instant) {
        let done = self.done.load(Ordering::Acquire);
        let started = self.started.load(Ordering::Relaxed);
        let at = Duration::from_nanos(self.last_done.load(Ordering::Relaxed));
        (started, started - done.min(started), self.base + at)
    }
}

/// One request in flight, until its answer's body is dropped: hyper drops
/// it once the answer is written (or the client is gone), and only then
/// reads the next request head of an HTTP/1 connection.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.0.nanos_since_base(Instant::now());
        self.0.last_done.store(now, Ordering::Relaxed);
        self.0.done.fetch_add(1, Ordering::Release);
    }
}

/// An answer's body with its request's [`InFlight`] guard.
pub struct Tracked<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B> Tracked<B> {
    pub fn new(body: B, in_flight: InFlight) -> Tracked<B> {
        Tracked {
            body,
            _in_flight: in_flight,
        }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// `wait` if it ends by a deadline, else `None`: an upstream's answer
    /// within the route's timeout. Over HTTP/1 the connection's driver
    /// keeps the time (hyper polls the request in the driver's task), so
    /// no timer is armed per request; otherwise a timer of its own does.
    pub struct Within<'a, F> {
        #[pin]
        wait: F,
        #[pin]
        timer: Option<Sleep>,
        clock: Option<&'a Activity>,
    }

    impl<'a, F> PinnedDrop for Within<'a, F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(clock) = this.clock {
                clock.upstream_deadline.store(0, Ordering::Relaxed);
            }
        }
    }
}

impl<'a, F: Future> Within<'a, F> {
    /// Bounds `wait` by `at`, on `clock` (an HTTP/1 connection's
    /// [`Activity`]) when there is one.
    pub fn new(clock: Option<&'a Activity>, at: Instant, wait: F) -> Self {
        let timer = match clock {
            Some(clock) => {
                clock.upstream_expired.store(false, Ordering::Relaxed);
                let at = clock.nanos_since_base(at);
                clock.upstream_deadline.store(at, Ordering::Relaxed);
                None
            }
            None => Some(sleep_until(at)),
        };
        Within { wait, timer, clock }
    }
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.wait.poll(cx) {
            return Poll::Ready(Some(output));
        }
        // `new` set exactly one of the two.
        let over = match this.timer.as_pin_mut() {
            Some(timer) => timer.poll(cx).is_ready(),
            None => this
                .clock
                .is_some_and(|clock| clock.upstream_expired.load(Ordering::Relaxed)),
        };
        if over {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

/// How long a connection may go without a request in flight.
#[derive(Clone, Copy)]
pub struct Limits {
    /// Accept time + `header_timeout`: the first request must have started.
    pub first_deadline: Instant,
    /// HTTP/1: `header_timeout`, for every later request head.
    pub head_timeout: Option<Duration>,
    pub idle_timeout: Duration,
}

impl Limits {
    /// The longest a connection may be quiet between requests.
    fn quiet(&self) -> Duration {
        self.head_timeout
            .map_or(self.idle_timeout, |h| h.min(self.idle_timeout))
    }
}

/// What the driver's timer found.
enum Tick {
    /// Look again then.
    Rearm(Instant),
    /// No first request in time: close, with nothing to finish.
    Drop,
    /// Quiet for too long: close gracefully.
    Cut,
}

fn on_timer(activity: &Activity, limits: &Limits, now: Instant, peer: SocketAddr) -> Tick {
    let quiet = limits.quiet();
    let (started, in_flight, quiet_since) = activity.quiet_since();
    if started == 0 {
        if now < limits.first_deadline {
            return Tick::Rearm(limits.first_deadline.min(now + quiet));
        }
        tracing::debug!(%peer, "no request within header_timeout; closing");
        return Tick::Drop;
    }
    if in_flight > 0 {
        // Busy: neither idle nor waiting for a head.
        return Tick::Rearm(now + quiet);
    }
    let deadline = quiet_since + quiet;
    if now < deadline {
        return Tick::Rearm(deadline);
    }
    if limits
        .head_timeout
        .is_some_and(|h| h <= limits.idle_timeout)
    {
        tracing::debug!(%peer, "no request head within header_timeout; closing");
    } else {
        tracing::debug!(%peer, "idle for idle_timeout; closing");
    }
    Tick::Cut
}

/// Drives `connection` to its end within `limits`. `cut` starts its
/// graceful close; `draining` turns true when the server shuts down.
///
/// The connection's task wakes a few times per request, for the
/// connection's sake; the timer and the drain signal are polled only when
/// they can be ready (the timer has elapsed, the signal has changed) or
/// when this task's waker is not the one they hold, which saves two polls
/// per wake-up.
pub async fn drive<C, E>(
    connection: C,
    mut cut: impl FnMut(Pin<&mut C>),
    activity: &Activity,
    limits: Limits,
    mut draining: watch::Receiver<bool>,
    peer: SocketAddr,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut connection = pin!(connection);
    let mut timer = pin!(sleep_until(
        limits.first_deadline.min(Instant::now() + limits.quiet())
    ));
    let probe = draining.clone();
    let mut drained = pin!(async move {
        while !*draining.borrow_and_update() {
            if draining.changed().await.is_err() {
                break;
            }
        }
    });
    let mut watching = true;
    let mut registered: Option<Waker> = None;
    let ended = poll_fn(|cx| loop {
        if let Poll::Ready(result) = connection.as_mut().poll(cx) {
            return Poll::Ready(Some(result));
        }
        let fresh = !registered.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
        if fresh {
            registered = Some(cx.waker().clone());
        }
        if watching
            && (fresh || probe.has_changed().unwrap_or(true))
            && drained.as_mut().poll(cx).is_ready()
        {
            cut(connection.as_mut());
            watching = false;
            continue;
        }
        if let Some(at) = activity.upstream_deadline() {
            if at < timer.deadline() {
                // A request's upstream wait ends before the next check.
                timer.as_mut().reset(at);
                registered = None;
                continue;
            }
        }
        if (fresh || timer.is_elapsed()) && timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            activity.expire_upstream_wait(now);
            // Once cut, the connection only finishes what is in flight:
            // the timer still ends upstream waits, nothing else.
            let tick = match watching {
                true => on_timer(activity, &limits, now, peer),
                false => Tick::Rearm(now + limits.quiet()),
            };
            match tick {
                Tick::Rearm(at) => {
                    timer.as_mut().reset(at);
                    // Polled again at once, to take the waker.
                    registered = None;
                    continue;
                }
                Tick::Drop => return Poll::Ready(None),
                Tick::Cut => {
                    cut(connection.as_mut());
                    watching = false;
                    continue;
                }
            }
        }
        return Poll::Pending;
    })
    .await;
    if let Some(Err(e)) = ended {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    const HEAD: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);

    /// Drives a connection that ends as soon as it is cut; returns when,
    /// after `base`, the cut came (`None`: dropped without one).
    async fn cut_after(
        activity: &Activity,
        base: Instant,
        head_timeout: Option<Duration>,
    ) -> Option<Duration> {
        let (_keep, draining) = watch::channel(false);
        cut_or_drained_after(activity, base, head_timeout, draining).await
    }

    async fn cut_or_drained_after(
        activity: &Activity,
        base: Instant,
        head_timeout: Option<Duration>,
        draining: watch::Receiver<bool>,
    ) -> Option<Duration> {
        let cut_at = Mutex::new(None);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut tx = Some(tx);
        let connection = async move {
            let _ = rx.await;
            Ok::<(), std::convert::Infallible>(())
        };
        let limits = Limits {
            head_timeout,
            ..http1_limits(base)
        };
        let peer = "127.0.0.1:1".parse().unwrap();
        let cut = |_: Pin<&mut _>| {
            *cut_at.lock().unwrap() = Some(base.elapsed());
            if let Some(tx) = tx.take() {
                let _ = tx.send(());
            }
        };
        drive(connection, cut, activity, limits, draining, peer).await;
        let at = *cut_at.lock().unwrap();
        at
    }

    #[tokio::test(start_paused = true)]
    async fn http1_waits_header_timeout_after_the_last_answer_exactly() {
        let base = Instant::now();
        let activity = Arc::new(Activity::new(base));
        let requests = activity.clone();
        tokio::spawn(async move {
            // One short request, then one in flight for 35 s.
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(requests.request_started());
            tokio::time::sleep(Duration::from_secs(4)).await;
            let long = requests.request_started();
            tokio::time::sleep(Duration::from_secs(35)).await;
            drop(long);
        });
        let cut = cut_after(&activity, base, Some(HEAD)).await;
        // Answered at 40 s: cut at 50 s, not before, not later.
        assert_eq!(cut, Some(Duration::from_secs(50)));
    }

    #[tokio::test(start_paused = true)]
    async fn http2_waits_idle_timeout_after_the_last_answer() {
        let base = Instant::now();
        let activity = Arc::new(Activity::new(base));
        drop(activity.request_started());
        tokio::time::advance(Duration::from_secs(3)).await;
        drop(activity.request_started());
        let cut = cut_after(&activity, base, None).await;
        assert_eq!(cut, Some(Duration::from_secs(63)));
    }

    #[tokio::test(start_paused = true)]
    async fn no_first_request_is_dropped_at_the_first_deadline() {
        let base = Instant::now();
        let activity = Activity::new(base);
        let started = Instant::now();
        assert_eq!(cut_after(&activity, base, Some(HEAD)).await, None);
        assert_eq!(started.elapsed(), HEAD);
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_cuts_a_busy_connection_at_once() {
        let base = Instant::now();
        let activity = Arc::new(Activity::new(base));
        let _busy = activity.request_started();
        let (drain, draining) = watch::channel(false);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            drain.send_replace(true);
            // Kept until the end, as the server keeps it.
            std::future::pending::<()>().await;
        });
        let cut = cut_or_drained_after(&activity, base, Some(HEAD), draining).await;
        assert_eq!(cut, Some(Duration::from_secs(5)));
    }

    /// A connection whose one request waits `secs` on an upstream that
    /// never answers, as hyper polls it: inside the connection's future.
    /// `ended` gets the time the wait ended.
    async fn waiting_connection(
        activity: &Arc<Activity>,
        secs: u64,
        ended: &Mutex<Option<Duration>>,
    ) -> Result<(), std::convert::Infallible> {
        let _in_flight = activity.request_started();
        let deadline = activity.base + Duration::from_secs(secs);
        let answer = Within::new(Some(activity), deadline, std::future::pending::<()>()).await;
        assert_eq!(answer, None);
        *ended.lock().unwrap() = Some(activity.base.elapsed());
        Ok(())
    }

    fn http1_limits(base: Instant) -> Limits {
        Limits {
            first_deadline: base + HEAD,
            head_timeout: Some(HEAD),
            idle_timeout: IDLE,
        }
    }

    /// The driver's one timer ends a request's upstream wait on time,
    /// whether that comes before the driver's next check or after several.
    #[tokio::test(start_paused = true)]
    async fn the_driver_times_a_requests_upstream_wait() {
        for wait in [3, 25] {
            let base = Instant::now();
            let activity = Arc::new(Activity::new(base));
            let ended = Mutex::new(None);
            let connection = waiting_connection(&activity, wait, &ended);
            let (_keep, draining) = watch::channel(false);
            let peer = "127.0.0.1:1".parse().unwrap();
            drive(
                connection,
                |_| {},
                &activity,
                http1_limits(base),
                draining,
                peer,
            )
            .await;
            assert_eq!(*ended.lock().unwrap(), Some(Duration::from_secs(wait)));
            // A wait that ends in time leaves no deadline behind.
            let answer = Within::new(Some(&activity), Instant::now() + HEAD, async { 7 }).await;
            assert_eq!(answer, Some(7));
            assert_eq!(activity.upstream_deadline(), None);
        }
    }

    /// A drain (or an idle cut) lets in-flight requests finish, and the
    /// driver still ends their upstream waits on time.
    #[tokio::test(start_paused = true)]
    async fn upstream_waits_are_timed_after_a_graceful_cut() {
        let base = Instant::now();
        let activity = Arc::new(Activity::new(base));
        let ended = Mutex::new(None);
        let connection = waiting_connection(&activity, 25, &ended);
        let (drain, draining) = watch::channel(false);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            drain.send_replace(true);
            std::future::pending::<()>().await;
        });
        let peer = "127.0.0.1:1".parse().unwrap();
        let cut_at = Mutex::new(None);
        let cut = |_: Pin<&mut _>| *cut_at.lock().unwrap() = Some(base.elapsed());
        let driven = drive(
            connection,
            cut,
            &activity,
            http1_limits(base),
            draining,
            peer,
        );
        tokio::time::timeout(Duration::from_secs(100), driven)
            .await
            .expect("the upstream wait never ended");
        assert_eq!(*cut_at.lock().unwrap(), Some(Duration::from_secs(2)));
        assert_eq!(*ended.lock().unwrap(), Some(Duration::from_secs(25)));
    }
}
