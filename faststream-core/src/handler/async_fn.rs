//! The `Handler` trait: any async function whose parameters are extractors, and the future
//! of one call (extraction, which may wait, then the function).

use crate::handler::extract::{
    CheckContext, ExtractError, Extraction, FromMessage, FromMessageParts, MessageContext,
};
use crate::handler::reply::{IntoReply, Reply};
use crate::message::codec::CodecRef;
use crate::message::Message;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

/// An async function usable as a subscriber: every parameter but the last implements
/// [`FromMessageParts`], the last one [`FromMessage`] (the payload, or another extractor),
/// and the output implements [`IntoReply`]. `T` is a marker (return kind, the last
/// parameter's kind and the parameter types) that keeps the impls for different arities
/// apart.
///
/// Implemented for functions and closures of up to 12 parameters; `#[subscriber]` only adds
/// metadata on top of this trait (and decodes several payload parameters by name).
///
/// ```
/// use faststream_core::{Handler, extract::Key};
/// async fn greet(key: Key<String>, name: String) -> String {
///     format!("hello {name} ({})", key.0)
/// }
/// fn assert_handler<T>(_: impl Handler<T>) {}
/// assert_handler(greet);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a faststream handler",
    note = "a handler is an async fn (or closure returning a future) whose output is `()`, a `Serialize` type, `Response<T>` or `Result<T, E>`; its parameters are extractors (`FromMessageParts`) and, last, at most one payload parameter",
    note = "a closure cannot have several payload parameters (their names do not exist at the type level): take one struct parameter that derives `Deserialize`, or write the handler as a `#[subscriber]` fn, which decodes each payload parameter from the JSON field of its name"
)]
pub trait Handler<T>: Clone + Send + Sync + 'static {
    /// The future of one call, already converted into a [`Reply`].
    type Future: Future<Output = Reply> + Send + 'static;

    /// Starts extracting the parameters from `message` and the call. An extraction that
    /// fails without waiting is the `Err`; one that fails later is a [`Reply::Failed`].
    fn call(
        &self,
        message: &Message,
        cx: &MessageContext<'_>,
    ) -> Result<Self::Future, ExtractError>;

    /// Checks, when the app starts, what the parameters need from the app and the subscriber
    /// ([`FromMessageParts::check`]).
    fn check(cx: &CheckContext<'_>) -> Result<(), ExtractError>;

    /// The payload schemas of a handler made of several handlers (a
    /// [`Filtered`](crate::filter::Filtered) one), for the AsyncAPI document's `oneOf`; empty
    /// for a plain function (its schema comes from `#[subscriber]` or
    /// [`SubscriberConfig::payload_schema`](crate::SubscriberConfig::payload_schema)).
    fn payload_schemas(&self) -> Vec<crate::handler::schema::SchemaFn> {
        Vec::new()
    }
}

/// The extractions of a handler's parameters, as a tuple of [`Extraction`]s.
pub trait Extractions: Send + 'static {
    /// The parameter values.
    type Values;

    /// Polls the pending extractions. `Ready(Err)` as soon as one settled with an error (the
    /// first in parameter order), `Ready(Ok)` once all have values.
    fn poll_settle(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ExtractError>>;

    /// The values, once settled.
    fn into_values(self) -> Result<Self::Values, ExtractError>;
}

/// Calls a function with a tuple of its arguments.
pub trait CallWith<Args>: Clone + Send + Sync + 'static {
    /// The function's future.
    type Future: Future + Send + 'static;

    /// Calls `self` with `args`.
    fn call_with(&self, args: Args) -> Self::Future;
}

pin_project_lite::pin_project! {
    /// The future of a function handler's call: its extractions, when one must wait, then the
    /// function's future. `M` is the output's [`IntoReply`] marker.
    #[project = HandlerCallProj]
    pub enum HandlerCall<F, E, Fut, M> {
        /// Waiting for a dependency; then the handler is called with the values. Boxed: only
        /// a dependency that waits gets here (and it allocated already), and the common
        /// future stays as small as the function's own.
        Extracting {
            waiting: Option<Box<(F, E, Option<CodecRef>)>>,
            marker: PhantomData<fn() -> M>,
        },
        /// The function's future; its output is encoded with the subscriber's codec (`None`
        /// for JSON: nothing cloned per call).
        Running {
            #[pin]
            future: Fut,
            codec: Option<CodecRef>,
            marker: PhantomData<fn() -> M>,
        },
    }
}

impl<F, E, Fut, M> HandlerCall<F, E, Fut, M> {
    /// The call of a function whose parameters were all extracted without waiting.
    #[inline]
    fn running(future: Fut, codec: Option<CodecRef>) -> Self {
        HandlerCall::Running {
            future,
            codec,
            marker: PhantomData,
        }
    }

    /// The call of `handler` once `extractions` finish.
    fn waiting(handler: F, extractions: E, codec: Option<CodecRef>) -> Self {
        HandlerCall::Extracting {
            waiting: Some(Box::new((handler, extractions, codec))),
            marker: PhantomData,
        }
    }
}

impl<F, E, Fut, M> Future for HandlerCall<F, E, Fut, M>
where
    E: Extractions,
    F: CallWith<E::Values, Future = Fut>,
    Fut: Future,
    Fut::Output: IntoReply<M>,
{
    type Output = Reply;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply> {
        loop {
            match self.as_mut().project() {
                HandlerCallProj::Running { future, codec, .. } => {
                    let codec = codec.as_deref();
                    return future.poll(cx).map(|output| output.into_reply_with(codec));
                }
                HandlerCallProj::Extracting { waiting, .. } => {
                    let Some(mut state) = waiting.take() else {
                        return Poll::Ready(Reply::Failed(
                            "handler future polled after completion".into(),
                        ));
                    };
                    let settled = match state.1.poll_settle(cx) {
                        Poll::Pending => {
                            *waiting = Some(state);
                            return Poll::Pending;
                        }
                        Poll::Ready(settled) => settled,
                    };
                    let (handler, extractions, codec) = *state;
                    match settled.and_then(|()| extractions.into_values()) {
                        Ok(values) => {
                            self.set(HandlerCall::running(handler.call_with(values), codec))
                        }
                        Err(error) => return Poll::Ready(Reply::Failed(Box::new(error))),
                    }
                }
            }
        }
    }
}

macro_rules! impl_extractions {
    ($($arg:ident),*) => {
        #[allow(non_snake_case, unused_variables, unused_mut)]
        impl<$($arg: Send + 'static),*> Extractions for ($(Extraction<$arg>,)*) {
            type Values = ($($arg,)*);

            #[inline]
            fn poll_settle(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ExtractError>> {
                let ($($arg,)*) = self;
                let mut pending = false;
                $(pending |= $arg.poll_settle(cx).is_pending();)*
                $(if let Some(error) = $arg.take_error() {
                    return Poll::Ready(Err(error));
                })*
                if pending { Poll::Pending } else { Poll::Ready(Ok(())) }
            }

            #[inline]
            fn into_values(self) -> Result<Self::Values, ExtractError> {
                let ($($arg,)*) = self;
                Ok(($($arg.into_ready()?,)*))
            }
        }

        #[allow(non_snake_case)]
        impl<F, Fut, $($arg),*> CallWith<($($arg,)*)> for F
        where
            F: Fn($($arg),*) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future + Send + 'static,
        {
            type Future = Fut;

            #[inline]
            fn call_with(&self, ($($arg,)*): ($($arg,)*)) -> Fut {
                (self)($($arg),*)
            }
        }
    };
}

macro_rules! impl_handler {
    ([$($part:ident),*], $last:ident) => {
        impl_extractions!($($part,)* $last);

        #[allow(non_snake_case)]
        impl<F, Fut, M, V, $($part,)* $last> Handler<(M, V, $($part,)* $last,)> for F
        where
            F: Fn($($part,)* $last) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future + Send + 'static,
            Fut::Output: IntoReply<M>,
            $($part: FromMessageParts,)*
            $last: FromMessage<V>,
            M: 'static,
            V: 'static,
        {
            type Future = HandlerCall<F, ($(Extraction<$part>,)* Extraction<$last>,), Fut, M>;

            fn check(cx: &CheckContext<'_>) -> Result<(), ExtractError> {
                $(<$part as FromMessageParts>::check(cx)?;)*
                <$last as FromMessage<V>>::check(cx)
            }

            #[inline]
            fn call(&self, message: &Message, cx: &MessageContext<'_>) -> Result<Self::Future, ExtractError> {
                $(let $part = <$part as FromMessageParts>::from_message_parts(message, cx);)*
                let $last = <$last as FromMessage<V>>::from_message(message, cx);
                // Nothing waits (the framework's extractors never do): call the function now,
                // each value moved once; the first rejection, in parameter order, is the error.
                if $($part.is_ready() &&)* $last.is_ready() {
                    return Ok(HandlerCall::running(
                        (self)($($part.into_ready()?,)* $last.into_ready()?),
                        cx.reply_codec().cloned(),
                    ));
                }
                Ok(HandlerCall::waiting(self.clone(), ($($part,)* $last,), cx.reply_codec().cloned()))
            }
        }
    };
}

impl_extractions!();

impl<F, Fut, M> Handler<(M,)> for F
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoReply<M>,
    M: 'static,
{
    type Future = HandlerCall<F, (), Fut, M>;

    fn check(_cx: &CheckContext<'_>) -> Result<(), ExtractError> {
        Ok(())
    }

    fn call(
        &self,
        _message: &Message,
        cx: &MessageContext<'_>,
    ) -> Result<Self::Future, ExtractError> {
        Ok(HandlerCall::running((self)(), cx.reply_codec().cloned()))
    }
}

impl_handler!([], A1);
impl_handler!([A1], A2);
impl_handler!([A1, A2], A3);
impl_handler!([A1, A2, A3], A4);
impl_handler!([A1, A2, A3, A4], A5);
impl_handler!([A1, A2, A3, A4, A5], A6);
impl_handler!([A1, A2, A3, A4, A5, A6], A7);
impl_handler!([A1, A2, A3, A4, A5, A6, A7], A8);
impl_handler!([A1, A2, A3, A4, A5, A6, A7, A8], A9);
impl_handler!([A1, A2, A3, A4, A5, A6, A7, A8, A9], A10);
impl_handler!([A1, A2, A3, A4, A5, A6, A7, A8, A9, A10], A11);
impl_handler!([A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11], A12);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::extract::Key;

    async fn call<T>(h: impl Handler<T>, msg: &Message) -> Result<Reply, ExtractError> {
        let state = crate::handler::extract::AppState::default();
        let fut = h.call(msg, &MessageContext::new(&state, None))?;
        Ok(fut.await)
    }

    #[tokio::test]
    async fn functions_and_closures_are_handlers() {
        async fn echo(key: Key<Option<String>>, body: String) -> String {
            format!("{body}/{:?}", key.0)
        }
        let msg = Message::new("t", "hello");
        match call(echo, &msg).await.unwrap() {
            Reply::Publish(out) => assert_eq!(out.payload, "hello/None"),
            other => panic!("{other:?}"),
        }
        let closure = |n: i64| async move { n + 1 };
        match call(closure, &Message::new("t", "41")).await.unwrap() {
            Reply::Publish(out) => assert_eq!(out.payload, "42"),
            other => panic!("{other:?}"),
        }
        let err = call(closure, &Message::new("t", "x")).await.unwrap_err();
        assert!(matches!(err, ExtractError::Payload(_)));
    }

    /// Waits a turn of the runtime, then gives the key's length or refuses an empty key.
    struct KeyLength(usize);

    impl FromMessageParts for KeyLength {
        fn from_message_parts(message: &Message, _cx: &MessageContext<'_>) -> Extraction<Self> {
            let key = message.key.clone();
            Extraction::pending(async move {
                tokio::task::yield_now().await;
                match key {
                    Some(key) if !key.is_empty() => Ok(KeyLength(key.len())),
                    _ => Err(ExtractError::MissingHeader("key")),
                }
            })
        }
    }

    #[tokio::test]
    async fn extractions_that_wait_are_awaited_before_the_call() {
        let handler = |len: KeyLength, body: String| async move { format!("{body}/{}", len.0) };
        let mut msg = Message::new("t", "hi");
        msg.key = Some("abc".into());
        match call(handler, &msg).await.unwrap() {
            Reply::Publish(out) => assert_eq!(out.payload, "hi/3"),
            other => panic!("{other:?}"),
        }
        // Refused after the wait: the call's reply is the failure, the function never runs.
        msg.key = None;
        match call(handler, &msg).await.unwrap() {
            Reply::Failed(err) => assert!(
                matches!(err.downcast_ref(), Some(ExtractError::MissingHeader("key"))),
                "{err}"
            ),
            other => panic!("{other:?}"),
        }
    }
}
