//! A handler as a tower service: the [`MessageService`] every layer of the handler pipeline is,
//! and the innermost one, which extracts the parameters and calls the handler.

use super::async_fn::Handler;
use super::extract::{AckDecision, AckSlot, AppState, MessageContext};
use super::pattern::TopicPattern;
use super::reply::Reply;
use crate::error::{BoxError, Nacked, Rejected};
use crate::message::Message;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
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

/// Runs a [`Handler`] on each message: extraction, then the call. A handler's `Err` (a
/// [`Reply::Failed`]) and an extraction error become the service's error; with a manual
/// ack policy a nack or reject through the `Ack` extractor becomes [`Nacked`] or
/// [`Rejected`].
pub struct HandlerService<H, T> {
    handler: H,
    state: Arc<AppState>,
    manual_ack: bool,
    pattern: Option<Arc<TopicPattern>>,
    _marker: PhantomData<fn() -> T>,
}

impl<H: Clone, T> Clone for HandlerService<H, T> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
            state: Arc::clone(&self.state),
            manual_ack: self.manual_ack,
            pattern: self.pattern.clone(),
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
            _marker: PhantomData,
        }
    }

    /// For a pattern subscriber: its handler's [`crate::pattern::Path`] parameters come from
    /// `pattern`.
    pub fn with_pattern(mut self, pattern: Option<Arc<TopicPattern>>) -> Self {
        self.pattern = pattern;
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
        let slot = self.manual_ack.then(|| Arc::new(AckSlot::default()));
        let cx =
            MessageContext::new(&self.state, slot.as_ref()).with_pattern(self.pattern.as_deref());
        match self.handler.call(&message, &cx) {
            Ok(call) => HandlerFuture {
                state: FutureState::Running { call, slot },
            },
            Err(err) => HandlerFuture {
                state: FutureState::Failed {
                    error: Some(Box::new(err)),
                },
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`HandlerService`].
    #[derive(Debug)]
    pub struct HandlerFuture<F> {
        #[pin]
        state: FutureState<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum FutureState<F> {
        Running {
            #[pin]
            call: F,
            slot: Option<Arc<AckSlot>>,
        },
        Failed {
            error: Option<BoxError>,
        },
    }
}

impl<F: Future<Output = Reply>> Future for HandlerFuture<F> {
    type Output = Result<Reply, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Failed { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "handler future polled after completion".into()))),
            StateProj::Running { call, slot } => {
                let reply = std::task::ready!(call.poll(cx));
                let decision = slot
                    .as_ref()
                    .map_or(AckDecision::Undecided, |s| s.decision());
                Poll::Ready(match (decision, reply) {
                    (AckDecision::Nack, _) => Err(Box::new(Nacked)),
                    (AckDecision::Reject, _) => Err(Box::new(Rejected)),
                    (_, Reply::Failed(err)) => Err(err),
                    (_, reply) => Ok(reply),
                })
            }
        }
    }
}
