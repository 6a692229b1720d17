//! A panicking handler or extractor is a failed message, not a dead partition worker.

use crate::error::{BoxError, HandlerPanicked};
use crate::message::Message;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Turns panics of the inner service, while it is called (extraction and the synchronous part
/// of a closure run there) or while its future runs, into [`HandlerPanicked`] errors.
///
/// The runtime's own [`HandlerService`](crate::middleware::HandlerService) catches the
/// panics of its extractors and handler itself; this layer is for services of your own.
#[derive(Debug, Clone, Copy, Default)]
pub struct CatchPanicLayer;

impl<S> tower::Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> CatchPanic<S> {
        CatchPanic { inner }
    }
}

/// The service of [`CatchPanicLayer`].
#[derive(Debug, Clone)]
pub struct CatchPanic<S> {
    inner: S,
}

impl<S> tower::Service<Message> for CatchPanic<S>
where
    S: tower::Service<Message, Error = BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = CatchPanicFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, message: Message) -> Self::Future {
        match catch_unwind(AssertUnwindSafe(|| self.inner.call(message))) {
            Ok(future) => CatchPanicFuture {
                state: State::Running { future },
            },
            Err(panic) => CatchPanicFuture {
                state: State::Panicked {
                    message: Some(HandlerPanicked::from_payload(&*panic).0),
                },
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`CatchPanic`].
    #[derive(Debug)]
    pub struct CatchPanicFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State<F> {
        Running { #[pin] future: F },
        Panicked { message: Option<String> },
    }
}

impl<F, T> Future for CatchPanicFuture<F>
where
    F: Future<Output = Result<T, BoxError>>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Panicked { message } => Poll::Ready(Err(Box::new(HandlerPanicked(
                message.take().unwrap_or_default(),
            )))),
            StateProj::Running { future } => {
                match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                    Ok(poll) => poll,
                    Err(panic) => {
                        Poll::Ready(Err(Box::new(HandlerPanicked::from_payload(&*panic))))
                    }
                }
            }
        }
    }
}
