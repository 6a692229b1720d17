//! The `Handler` trait: any async function whose parameters are extractors.

use crate::handler::extract::{AppState, ExtractError, FromMessage, MessageContext};
use crate::handler::reply::{IntoReply, Reply};
use crate::message::Message;
use futures::future::{FutureExt, Map};
use std::future::Future;

/// An async function usable as a subscriber: every parameter implements [`FromMessage`] and
/// the output implements [`IntoReply`]. `T` is a marker (return kind and parameter types)
/// that keeps the impls for different arities apart.
///
/// Implemented for functions and closures of up to 12 parameters; `#[subscriber]` only adds
/// metadata on top of this trait.
///
/// ```
/// use faststream_core::{Handler, extract::Key};
/// async fn greet(name: String, key: Key<String>) -> String {
///     format!("hello {name} ({})", key.0)
/// }
/// fn assert_handler<T>(_: impl Handler<T>) {}
/// assert_handler(greet);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a faststream handler",
    note = "a handler is an async fn (or closure returning a future) whose parameters are payload types or extractors and whose output is `()`, a `Serialize` type, `Response<T>` or `Result<T, E>`"
)]
pub trait Handler<T>: Clone + Send + Sync + 'static {
    /// The future of one call, already converted into a [`Reply`].
    type Future: Future<Output = Reply> + Send + 'static;

    /// Extracts the parameters from `message` and starts the call.
    fn call(
        &self,
        message: &Message,
        cx: &MessageContext<'_>,
    ) -> Result<Self::Future, ExtractError>;

    /// Checks, when the app starts, what the parameters need from the app
    /// ([`FromMessage::check`]).
    fn check(state: &AppState) -> Result<(), ExtractError>;

    /// The payload schemas of a handler made of several handlers (a
    /// [`Filtered`](crate::filter::Filtered) one), for the AsyncAPI document's `oneOf`; empty
    /// for a plain function (its schema comes from `#[subscriber]` or
    /// [`SubscriberConfig::payload_schema`](crate::SubscriberConfig::payload_schema)).
    fn payload_schemas(&self) -> Vec<crate::handler::schema::SchemaFn> {
        Vec::new()
    }
}

macro_rules! impl_handler {
    ($($arg:ident),*) => {
        #[allow(non_snake_case, unused_variables)]
        impl<F, Fut, M, $($arg,)*> Handler<(M, $($arg,)*)> for F
        where
            F: Fn($($arg),*) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future + Send + 'static,
            Fut::Output: IntoReply<M>,
            $($arg: FromMessage,)*
        {
            type Future = Map<Fut, fn(Fut::Output) -> Reply>;

            fn check(state: &AppState) -> Result<(), ExtractError> {
                $($arg::check(state)?;)*
                Ok(())
            }

            fn call(&self, message: &Message, cx: &MessageContext<'_>) -> Result<Self::Future, ExtractError> {
                $(let $arg = $arg::from_message(message, cx)?;)*
                Ok((self)($($arg),*).map(<Fut::Output as IntoReply<M>>::into_reply as fn(_) -> Reply))
            }
        }
    };
}

impl_handler!();
impl_handler!(A1);
impl_handler!(A1, A2);
impl_handler!(A1, A2, A3);
impl_handler!(A1, A2, A3, A4);
impl_handler!(A1, A2, A3, A4, A5);
impl_handler!(A1, A2, A3, A4, A5, A6);
impl_handler!(A1, A2, A3, A4, A5, A6, A7);
impl_handler!(A1, A2, A3, A4, A5, A6, A7, A8);
impl_handler!(A1, A2, A3, A4, A5, A6, A7, A8, A9);
impl_handler!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10);
impl_handler!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11);
impl_handler!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::extract::Key;

    async fn call<T>(h: impl Handler<T>, msg: &Message) -> Result<Reply, ExtractError> {
        let state = AppState::default();
        let fut = h.call(msg, &MessageContext::new(&state, None))?;
        Ok(fut.await)
    }

    #[tokio::test]
    async fn functions_and_closures_are_handlers() {
        async fn echo(body: String, key: Key<Option<String>>) -> String {
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
}
