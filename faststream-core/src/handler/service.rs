//! A handler as a tower service: the [`MessageService`] every layer of the handler pipeline is,
//! and the innermost one, which extracts the parameters and calls the handler.

use super::async_fn::Handler;
use super::extract::{AckDecision, AckSlot, AppState, MessageContext};
use super::pattern::TopicPattern;
use super::reply::Reply;
use super::seeker::Seeker;
use super::teardown::{Outcome, Teardown};
use crate::error::{BoxError, HandlerPanicked, Nacked, Rejected};
use crate::message::codec::CodecRef;
use crate::message::Message;
use futures::future::BoxFuture;
use std::cell::OnceCell;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use tokio_util::task::TaskTracker;
use tower::util::BoxCloneService;
use tower::Service;

/// A service that handles one message: what the handler pipeline and every layer in it are.
///
/// Implemented for every `tower::Service<Message, Response = Reply, Error = BoxError>`.
pub trait MessageService:
    Service<Message, Response = Reply, Error = BoxError, Future = Self::CallFuture>
{
    /// The future of one call (the service's `Future`, named for bounds).
    type CallFuture: std::future::Future<Output = Result<Reply, BoxError>> + Send + 'static;
}

impl<S> MessageService for S
where
    S: Service<Message, Response = Reply, Error = BoxError>,
    S::Future: Send + 'static,
{
    type CallFuture = S::Future;
}

/// The handler pipeline with its type erased: what user layers wrap.
pub type BoxMessageService = BoxCloneService<Message, Reply, BoxError>;

/// Runs a [`Handler`] on each message: extraction, then the call, then the [`Teardown`]
/// steps its dependencies registered. A handler's `Err` (a [`Reply::Failed`]) and an
/// extraction error become the service's error; with a manual ack policy a nack or reject
/// through the `Ack` extractor becomes [`Nacked`] or [`Rejected`].
pub struct HandlerService<H, T> {
    handler: H,
    state: Arc<AppState>,
    manual_ack: bool,
    pattern: Option<Arc<TopicPattern>>,
    seeker: Option<Seeker>,
    tracker: Option<TaskTracker>,
    codec: Option<CodecRef>,
    reply_codec: Option<CodecRef>,
    key_codec: Option<CodecRef>,
    _marker: PhantomData<fn() -> T>,
}

impl<H: Clone, T> Clone for HandlerService<H, T> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
            state: Arc::clone(&self.state),
            manual_ack: self.manual_ack,
            pattern: self.pattern.clone(),
            seeker: self.seeker.clone(),
            tracker: self.tracker.clone(),
            codec: self.codec.clone(),
            reply_codec: self.reply_codec.clone(),
            key_codec: self.key_codec.clone(),
            _marker: PhantomData,
        }
    }
}

impl<H, T> std::fmt::Debug for HandlerService<H, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerService")
            .field("manual_ack", &self.manual_ack)
            .finish_non_exhaustive()
    }
}

impl<H, T> HandlerService<H, T> {
    /// `handler` with the app's `state`; `manual_ack` gives handlers an `Ack` extractor.
    pub fn new(handler: H, state: Arc<AppState>, manual_ack: bool) -> Self {
        Self {
            handler,
            state,
            manual_ack,
            pattern: None,
            seeker: None,
            tracker: None,
            codec: None,
            reply_codec: None,
            key_codec: None,
            _marker: PhantomData,
        }
    }

    /// For a pattern subscriber: its handler's [`crate::pattern::Path`] parameters come from
    /// `pattern`.
    pub fn with_pattern(mut self, pattern: Option<Arc<TopicPattern>>) -> Self {
        self.pattern = pattern;
        self
    }

    /// The payload codecs its handlers decode with and encode their return values with
    /// (`None`: FastStream's JSON).
    pub fn with_codecs(mut self, decode: Option<CodecRef>, reply: Option<CodecRef>) -> Self {
        self.codec = decode;
        self.reply_codec = reply;
        self
    }

    /// The codec its handlers' `Key<T>` parameters decode with (`None`: JSON or text).
    pub fn with_key_codec(mut self, codec: Option<CodecRef>) -> Self {
        self.key_codec = codec;
        self
    }

    /// The [`Seeker`] its handlers' `Seeker` parameters get.
    pub fn with_seeker(mut self, seeker: Seeker) -> Self {
        self.seeker = Some(seeker);
        self
    }

    /// Where the teardown steps of a call that was dropped before it finished run (the app's
    /// tracker, which shutdown waits for). Without one they are spawned untracked.
    pub fn with_tracker(mut self, tracker: TaskTracker) -> Self {
        self.tracker = Some(tracker);
        self
    }
}

impl<H, T> tower::Service<Message> for HandlerService<H, T>
where
    H: Handler<T>,
{
    type Response = Reply;
    type Error = BoxError;
    type Future = HandlerFuture<H::Future>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, message: Message) -> Self::Future {
        // The partition worker gives each record a slot it can be decided through after the
        // handler returned (weakly: a layer keeping the message must not keep its slot
        // alive); without one (a handler called elsewhere) undecided means acked.
        let slot = self.manual_ack.then(|| {
            message
                .extensions
                .get::<Weak<AckSlot>>()
                .and_then(Weak::upgrade)
                .unwrap_or_default()
        });
        let teardown = OnceCell::new();
        let cx = MessageContext::new(&self.state, slot.as_ref())
            .with_pattern(self.pattern.as_deref())
            .with_seeker(self.seeker.as_ref())
            .with_codecs(self.codec.as_ref(), self.reply_codec.as_ref())
            .with_key_codec(self.key_codec.as_ref())
            .with_teardown(&teardown);
        // A panicking extractor (or the synchronous part of a handler) fails its message
        // only: caught here and in the future's poll, rather than by a layer around this
        // service, whose call and future cost a level more per message (issue 21's profile).
        let call = catch_unwind(AssertUnwindSafe(|| self.handler.call(&message, &cx)));
        let teardown = teardown.into_inner();
        // Only a call with teardown steps may need the tracker (when dropped unfinished): a
        // clone per message changed the reference count every worker shares.
        let tracker = teardown.as_ref().and_then(|_| self.tracker.clone());
        let error: BoxError = match call {
            Ok(Ok(call)) => {
                let state = FutureState::Running {
                    call,
                    slot,
                    teardown,
                };
                return HandlerFuture { state, tracker };
            }
            Ok(Err(err)) => Box::new(err),
            Err(panic) => Box::new(HandlerPanicked::from_payload(&*panic)),
        };
        let state = match teardown {
            Some(teardown) => FutureState::cleaning(teardown.run(Outcome::Failed), Err(error)),
            None => FutureState::Failed { error: Some(error) },
        };
        HandlerFuture { state, tracker }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`HandlerService`].
    pub struct HandlerFuture<F> {
        #[pin]
        state: FutureState<F>,
        tracker: Option<TaskTracker>,
    }

    impl<F> PinnedDrop for HandlerFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before its teardown ran (timeout, revoke, shutdown, panic): the steps
            // still run, on the app's tracker.
            let this = this.project();
            let cleanup = match this.state.project() {
                StateProj::Running { teardown, .. } => {
                    teardown.take().map(|t| t.run(Outcome::Cancelled))
                }
                StateProj::Cleaning { cleaning } => cleaning.take().map(|c| c.0),
                StateProj::Failed { .. } => None,
            };
            if let Some(cleanup) = cleanup {
                spawn_cleanup(cleanup, this.tracker.as_ref());
            }
        }
    }
}

impl<F> std::fmt::Debug for HandlerFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerFuture").finish_non_exhaustive()
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum FutureState<F> {
        Running {
            #[pin]
            call: F,
            slot: Option<Arc<AckSlot>>,
            teardown: Option<Teardown>,
        },
        // Boxed, like the steps themselves: only a message whose dependencies registered
        // teardown gets here, and the common future stays small.
        Cleaning {
            cleaning: Option<Box<(BoxFuture<'static, ()>, Result<Reply, BoxError>)>>,
        },
        Failed {
            error: Option<BoxError>,
        },
    }
}

impl<F> FutureState<F> {
    /// Running the teardown `cleanup`, then answering `result`.
    fn cleaning(cleanup: BoxFuture<'static, ()>, result: Result<Reply, BoxError>) -> Self {
        FutureState::Cleaning {
            cleaning: Some(Box::new((cleanup, result))),
        }
    }
}

/// Runs the teardown of a call that did not finish, on `tracker` when there is one.
fn spawn_cleanup(cleanup: BoxFuture<'static, ()>, tracker: Option<&TaskTracker>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("a handler's teardown steps were dropped: no tokio runtime to run them");
        return;
    };
    match tracker {
        Some(tracker) => drop(runtime.spawn(tracker.track_future(cleanup))),
        None => drop(runtime.spawn(cleanup)),
    }
}

impl<F: Future<Output = Reply>> Future for HandlerFuture<F> {
    type Output = Result<Reply, BoxError>;

    /// A panic of the handler (or of its teardown steps) fails the message (see
    /// [`HandlerService`]'s call); a panicked call's teardown still runs when it is dropped.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match catch_unwind(AssertUnwindSafe(|| self.poll_state(cx))) {
            Ok(poll) => poll,
            Err(panic) => Poll::Ready(Err(Box::new(HandlerPanicked::from_payload(&*panic)))),
        }
    }
}

impl<F: Future<Output = Reply>> HandlerFuture<F> {
    #[inline(always)]
    fn poll_state(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Reply, BoxError>> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Failed { error } => {
                    return Poll::Ready(Err(error
                        .take()
                        .unwrap_or_else(|| "handler future polled after completion".into())));
                }
                StateProj::Cleaning { cleaning } => {
                    let Some(running) = cleaning.as_mut() else {
                        return Poll::Ready(Err("handler future polled after completion".into()));
                    };
                    std::task::ready!(running.0.as_mut().poll(cx));
                    if let Some(done) = cleaning.take() {
                        return Poll::Ready(done.1);
                    }
                }
                StateProj::Running {
                    call,
                    slot,
                    teardown,
                } => {
                    let reply = std::task::ready!(call.poll(cx));
                    if slot.is_none() && teardown.is_none() {
                        // The common call: the reply goes straight into the result (each
                        // move of it is a `memcpy` per message, issue 21's profile).
                        return Poll::Ready(match reply {
                            Reply::Failed(err) => Err(err),
                            reply => Ok(reply),
                        });
                    }
                    let decision = slot
                        .as_ref()
                        .map_or(AckDecision::Undecided, |s| s.decision());
                    let result = match decision {
                        AckDecision::Nack => Err(Box::new(Nacked) as BoxError),
                        AckDecision::Reject => Err(Box::new(Rejected) as BoxError),
                        // Not a `match` on a tuple of both: that copied the reply (a large
                        // enum) once more per record.
                        _ => match reply {
                            Reply::Failed(err) => Err(err),
                            reply => Ok(reply),
                        },
                    };
                    match teardown.take() {
                        None => return Poll::Ready(result),
                        Some(teardown) => {
                            let outcome = match result {
                                Ok(_) => Outcome::Succeeded,
                                Err(_) => Outcome::Failed,
                            };
                            state.set(FutureState::cleaning(teardown.run(outcome), result));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::extract::{Extraction, FromMessageParts};
    use std::sync::{Mutex, PoisonError};

    type Seen = Arc<Mutex<Vec<Outcome>>>;

    /// Registers a teardown step that records the outcome.
    struct Guarded;

    impl FromMessageParts for Guarded {
        fn from_message_parts(_message: &Message, cx: &MessageContext<'_>) -> Extraction<Self> {
            let seen = cx.state().get::<Seen>();
            cx.teardown().defer(move |outcome| async move {
                tokio::task::yield_now().await;
                if let Some(seen) = seen {
                    seen.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(outcome);
                }
            });
            Extraction::ready(Guarded)
        }
    }

    fn service<H: Handler<T>, T>(
        handler: H,
        seen: &Seen,
        tracker: &TaskTracker,
    ) -> HandlerService<H, T> {
        let mut state = AppState::default();
        state.insert(Arc::clone(seen));
        HandlerService::new(handler, Arc::new(state), false).with_tracker(tracker.clone())
    }

    #[tokio::test]
    async fn teardown_runs_before_the_result_and_on_the_tracker_when_dropped() {
        let seen = Seen::default();
        let tracker = TaskTracker::new();
        let handler = |_g: Guarded, body: String| async move {
            match body.as_str() {
                "hang" => std::future::pending().await,
                "fail" => Err(std::io::Error::other("no")),
                _ => Ok(()),
            }
        };
        let mut svc = service(handler, &seen, &tracker);
        assert!(svc.call(Message::new("t", "ok")).await.is_ok());
        assert!(svc.call(Message::new("t", "fail")).await.is_err());
        // The steps ran before each result was returned.
        assert_eq!(*seen.lock().unwrap(), [Outcome::Succeeded, Outcome::Failed]);

        // Dropped while the handler runs (a timeout, a revoke, shutdown): the step runs on the
        // tracker, told it was cancelled.
        let mut hanging = Box::pin(svc.call(Message::new("t", "hang")));
        assert!(futures::poll!(hanging.as_mut()).is_pending());
        drop(hanging);
        tracker.close();
        tokio::time::timeout(std::time::Duration::from_secs(10), tracker.wait())
            .await
            .expect("the cancelled call's teardown finishes on the tracker");
        assert_eq!(
            *seen.lock().unwrap(),
            [Outcome::Succeeded, Outcome::Failed, Outcome::Cancelled]
        );
    }
}
