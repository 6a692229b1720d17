//! Extractors: how a handler's parameters are taken from a message.
//!
//! Two traits, as in axum:
//!
//! - [`FromMessageParts`]: taken from what surrounds the payload (key, headers, metadata, app
//!   state, a layer's [`Extension`], a dependency built from those). A handler may take any
//!   number of them, in any order.
//! - [`FromMessage`]: may consume the payload. Any `serde::de::DeserializeOwned` type is the
//!   payload, decoded by [`crate::codec::decode`]. Only a handler's **last** parameter may be
//!   one (every parts extractor is a `FromMessage` too), so a closure with two payload
//!   parameters does not compile: its parameter names do not exist at the type level, so
//!   there would be no way to pick fields by name. Take one struct parameter, or write the
//!   handler with `#[subscriber]`, which decodes each payload parameter from the JSON field
//!   of its name.
//!
//! # Writing an extractor, and dependencies that wait
//!
//! Extraction returns an [`Extraction`]: either the value now (every built-in extractor, no
//! allocation), or a future for one that must wait (`Extraction::pending`, one boxed future
//! per message for that dependency only). A dependency built from other extractors calls
//! theirs first and awaits them inside its own future:
//!
//! ```
//! use faststream_core::extract::{Extraction, ExtractError, FromMessageParts, Key, MessageContext};
//! use faststream_core::Message;
//!
//! /// The tenant a message belongs to, from its `tenant` header.
//! struct Tenant(String);
//!
//! impl FromMessageParts for Tenant {
//!     fn from_message_parts(message: &Message, _cx: &MessageContext<'_>) -> Extraction<Self> {
//!         message
//!             .headers
//!             .get_str("tenant")
//!             .map(|t| Tenant(t.to_owned()))
//!             .ok_or(ExtractError::MissingHeader("tenant"))
//!             .into()
//!     }
//! }
//!
//! /// A user looked up (asynchronously) from the key, within the tenant.
//! struct User { tenant: String, id: String }
//!
//! impl FromMessageParts for User {
//!     fn from_message_parts(message: &Message, cx: &MessageContext<'_>) -> Extraction<Self> {
//!         // Start the extractors this one is built from; their futures own what they need.
//!         let tenant = Tenant::from_message_parts(message, cx);
//!         let key = Key::<String>::from_message_parts(message, cx);
//!         Extraction::pending(async move {
//!             let (Tenant(tenant), Key(id)) = (tenant.await?, key.await?);
//!             tokio::task::yield_now().await; // a database lookup would go here
//!             Ok(User { tenant, id })
//!         })
//!     }
//! }
//! ```
//!
//! # Cleanup after the handler
//!
//! Rust has no async `Drop`, so a dependency that must release something asynchronously (a
//! transaction, a lease) registers a [`Teardown`] step through [`MessageContext::teardown`].
//! The handler's future runs the steps, newest first, after the handler returns or fails and
//! before the message is acknowledged. When the handler's future is dropped instead (a
//! handler timeout, a revoked partition, shutdown), its `Drop` hands the remaining steps to
//! the app's task tracker, which shutdown waits for. Each step is told the [`Outcome`].
//!
//! # Payload or extractor: by trait, never by name
//!
//! `#[subscriber]` tells the two apart on the parameter's concrete type: a
//! [`FromMessageParts`] type is taken from the message; a `Deserialize` type is payload; a
//! type that implements [`FromMessage`] by hand (so it cannot be `Deserialize`) is taken from
//! the message too. A user type named `Message` or `State` that derives `Deserialize` is
//! therefore payload like any other.

use super::pattern::{Path, TopicPattern};
use super::seeker::Seeker;
pub use super::teardown::{Outcome, Teardown};
use crate::message::codec::{self, CodecRef, DecodeError, DecodeFailure};
use crate::message::{Batch, Headers, Message};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use std::any::{Any, TypeId};
use std::cell::OnceCell;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// Why a parameter could not be extracted. The message then follows the subscriber's
/// error policy, like a handler error.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// The payload did not decode into the parameter's type.
    #[error("cannot decode payload: {0}")]
    Payload(DecodeError),
    /// The payload's codec cannot decode it for now (a schema registry out of reach): not
    /// bad data, so retrying may help ([`ExtractError::is_transient`]).
    #[error("cannot decode payload yet: {0}")]
    PayloadUnavailable(String),
    /// The key did not decode into the parameter's type.
    #[error("cannot decode key: {0}")]
    Key(DecodeError),
    /// A required header is absent.
    #[error("missing header `{0}`")]
    MissingHeader(&'static str),
    /// A header is present but does not decode into the parameter's type.
    #[error("bad header `{name}`: {error}")]
    BadHeader {
        /// Header name.
        name: &'static str,
        /// What was wrong with it.
        error: DecodeError,
    },
    /// `State<T>` was asked for but no `T` was registered on the app.
    #[error("no application state of type `{0}` was registered (FastStream::with_state)")]
    MissingState(&'static str),
    /// `Ack` was asked for by a subscriber whose policy is not `AckPolicy::Manual`.
    #[error("the `Ack` extractor needs the subscriber's ack policy to be AckPolicy::Manual")]
    AckNotManual,
    /// `Extension<T>` was asked for but no layer attached a `T` to this message.
    #[error("no layer attached an extension of type `{0}` to the message")]
    MissingExtension(&'static str),
    /// A parameter that cannot work on this subscriber, found when the app starts.
    #[error("parameter `{parameter}` {problem}: {fix}")]
    Unavailable {
        /// The parameter's type, without module paths.
        parameter: String,
        /// What the subscriber lacks.
        problem: &'static str,
        /// What to change.
        fix: &'static str,
    },
    /// A custom extractor's rejection.
    #[error("{0}")]
    Other(String),
    /// No handler of a [`Filtered`](crate::filter::Filtered) subscriber accepts the message
    /// (none of its filters matched and it has no default).
    #[error(
        "no handler accepts the message (none of {filters} filters matched, no default handler)"
    )]
    NoHandler {
        /// How many filters were tried.
        filters: usize,
    },
}

impl ExtractError {
    /// Whether retrying may help: the payload's codec could not reach what it needs
    /// ([`ExtractError::PayloadUnavailable`]). Every other extraction error is the message's
    /// own and fails the same way again.
    pub fn is_transient(&self) -> bool {
        matches!(self, ExtractError::PayloadUnavailable(_))
    }

    /// The start-time error for a parameter of type `T` that this subscriber cannot give.
    pub fn unavailable<T: ?Sized>(problem: &'static str, fix: &'static str) -> Self {
        ExtractError::Unavailable {
            parameter: short_type_name::<T>(),
            problem,
            fix,
        }
    }
}

/// `T`'s name without module paths: `Path<String>` for
/// `faststream_core::handler::pattern::Path<alloc::string::String>`.
fn short_type_name<T: ?Sized>() -> String {
    let full = std::any::type_name::<T>();
    let mut out = String::with_capacity(full.len());
    let mut segment = String::new();
    for c in full.chars() {
        match c {
            ':' => segment.clear(),
            '<' | '>' | ',' | ' ' | '(' | ')' | '[' | ']' | '&' | ';' => {
                out.push_str(&segment);
                segment.clear();
                out.push(c);
            }
            _ => segment.push(c),
        }
    }
    out.push_str(&segment);
    out
}

/// Shared values registered on the app, looked up by type (see [`State`]).
///
/// Apps register a handful of values, so a linear scan beats hashing on every message.
#[derive(Clone, Default)]
pub struct AppState {
    values: Vec<(TypeId, Arc<dyn Any + Send + Sync>)>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("values", &self.values.len())
            .finish()
    }
}

impl AppState {
    /// Registers `value`, replacing an earlier value of the same type.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        let id = TypeId::of::<T>();
        self.values.retain(|(existing, _)| *existing != id);
        self.values.push((id, Arc::new(value)));
    }

    /// The registered value of type `T`.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let id = TypeId::of::<T>();
        self.values
            .iter()
            .find(|(existing, _)| *existing == id)
            .and_then(|(_, v)| Arc::clone(v).downcast::<T>().ok())
    }
}

/// A boxed extraction that must wait.
type PendingExtraction<T> = Pin<Box<dyn Future<Output = Result<T, ExtractError>> + Send>>;

/// The result of extracting one parameter: the value (or error) now, or a future for a
/// dependency that must wait. It is itself a future, so a dependency built from other
/// extractors awaits theirs.
///
/// ```
/// use faststream_core::extract::{Extraction, ExtractError};
/// let now: Extraction<u32> = Ok(7).into();
/// assert!(now.is_ready());
/// let later = Extraction::pending(async { Ok::<_, ExtractError>(7_u32) });
/// assert!(!later.is_ready());
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// assert_eq!(later.await.unwrap(), 7);
/// # });
/// ```
#[must_use = "an extraction does nothing unless its value is taken or awaited"]
pub struct Extraction<T>(ExtractionState<T>);

enum ExtractionState<T> {
    Ready(Result<T, ExtractError>),
    Pending(PendingExtraction<T>),
    Taken,
}

// The value is never pinned (it is moved out once ready), so `Extraction` is `Unpin` whatever
// `T` is.
impl<T> Unpin for Extraction<T> {}

impl<T> std::fmt::Debug for Extraction<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.0 {
            ExtractionState::Ready(Ok(_)) => "ready",
            ExtractionState::Ready(Err(_)) => "failed",
            ExtractionState::Pending(_) => "pending",
            ExtractionState::Taken => "taken",
        };
        f.debug_tuple("Extraction").field(&state).finish()
    }
}

impl<T> From<Result<T, ExtractError>> for Extraction<T> {
    #[inline]
    fn from(result: Result<T, ExtractError>) -> Self {
        Extraction(ExtractionState::Ready(result))
    }
}

impl<T> Extraction<T> {
    /// The value, now.
    #[inline]
    pub fn ready(value: T) -> Self {
        Extraction(ExtractionState::Ready(Ok(value)))
    }

    /// The rejection, now.
    #[inline]
    pub fn failed(error: ExtractError) -> Self {
        Extraction(ExtractionState::Ready(Err(error)))
    }

    /// A dependency that must wait (a lookup, a connection from a pool). The future is boxed:
    /// one allocation per message for this parameter only. It must own what it needs (take
    /// it from the message and context before the `async move` block).
    pub fn pending<F>(future: F) -> Self
    where
        F: Future<Output = Result<T, ExtractError>> + Send + 'static,
    {
        Extraction(ExtractionState::Pending(Box::pin(future)))
    }

    /// Whether the value (or rejection) is known without waiting.
    #[inline]
    pub fn is_ready(&self) -> bool {
        !matches!(self.0, ExtractionState::Pending(_))
    }

    /// Polls a pending extraction once; `Ready` when the value or rejection is known.
    pub(crate) fn poll_settle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let ExtractionState::Pending(future) = &mut self.0 {
            let result = std::task::ready!(future.as_mut().poll(cx));
            self.0 = ExtractionState::Ready(result);
        }
        Poll::Ready(())
    }

    /// The rejection of a settled extraction, leaving it taken; `None` when it succeeded or
    /// is still pending.
    pub(crate) fn take_error(&mut self) -> Option<ExtractError> {
        if !matches!(self.0, ExtractionState::Ready(Err(_))) {
            return None;
        }
        match std::mem::replace(&mut self.0, ExtractionState::Taken) {
            ExtractionState::Ready(Err(error)) => Some(error),
            _ => None,
        }
    }

    /// The value of a settled extraction. An error when it failed, is still pending or was
    /// taken (callers settle it first; kept an error, not a panic).
    #[inline]
    pub fn into_ready(self) -> Result<T, ExtractError> {
        match self.0 {
            ExtractionState::Ready(result) => result,
            ExtractionState::Pending(_) | ExtractionState::Taken => Err(ExtractError::Other(
                "an extraction was used before it finished".into(),
            )),
        }
    }
}

impl<T> Future for Extraction<T> {
    type Output = Result<T, ExtractError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        std::task::ready!(this.poll_settle(cx));
        Poll::Ready(
            match std::mem::replace(&mut this.0, ExtractionState::Taken) {
                ExtractionState::Ready(result) => result,
                _ => Err(ExtractError::Other(
                    "an extraction was polled after it finished".into(),
                )),
            },
        )
    }
}

/// What extractors may look at besides the message: app state, the manual-ack slot, the
/// subscriber's topic pattern, and the message's [`Teardown`].
#[derive(Debug)]
pub struct MessageContext<'a> {
    state: &'a AppState,
    ack: Option<&'a Arc<AckSlot>>,
    pattern: Option<&'a TopicPattern>,
    teardown: Option<&'a OnceCell<Teardown>>,
    seeker: Option<&'a Seeker>,
    codec: Option<&'a CodecRef>,
    reply_codec: Option<&'a CodecRef>,
    key_codec: Option<&'a CodecRef>,
}

impl<'a> MessageContext<'a> {
    /// A context over `state`; `ack` is set for subscribers with `AckPolicy::Manual`.
    pub fn new(state: &'a AppState, ack: Option<&'a Arc<AckSlot>>) -> Self {
        Self {
            state,
            ack,
            pattern: None,
            teardown: None,
            seeker: None,
            codec: None,
            reply_codec: None,
            key_codec: None,
        }
    }

    /// The same context where payloads decode with `decode` and return values encode with
    /// `reply` (`None`: FastStream's JSON).
    pub fn with_codecs(
        mut self,
        decode: Option<&'a CodecRef>,
        reply: Option<&'a CodecRef>,
    ) -> Self {
        self.codec = decode;
        self.reply_codec = reply;
        self
    }

    /// The subscriber's payload codec, when it has one.
    pub fn codec(&self) -> Option<&'a CodecRef> {
        self.codec
    }

    /// The codec the handler's return value is encoded with, when not JSON.
    pub fn reply_codec(&self) -> Option<&'a CodecRef> {
        self.reply_codec
    }

    /// The same context where record keys decode with `codec` (`None`: JSON or text).
    pub fn with_key_codec(mut self, codec: Option<&'a CodecRef>) -> Self {
        self.key_codec = codec;
        self
    }

    /// The subscriber's key codec, when it has one.
    pub fn key_codec(&self) -> Option<&'a CodecRef> {
        self.key_codec
    }

    /// The same context where the [`Seeker`] extractor moves `seeker`'s subscriber.
    pub fn with_seeker(mut self, seeker: Option<&'a Seeker>) -> Self {
        self.seeker = seeker;
        self
    }

    /// The subscriber's [`Seeker`], inside its pipeline.
    pub fn seeker(&self) -> Option<&Seeker> {
        self.seeker
    }

    /// The same context for a pattern subscriber.
    pub fn with_pattern(mut self, pattern: Option<&'a TopicPattern>) -> Self {
        self.pattern = pattern;
        self
    }

    /// The same context where [`MessageContext::teardown`] registers into `cell` (created on
    /// first use, so a message whose dependencies need no cleanup allocates nothing).
    pub fn with_teardown(mut self, cell: &'a OnceCell<Teardown>) -> Self {
        self.teardown = Some(cell);
        self
    }

    /// The subscriber's topic pattern, if it has one (for [`Path`]).
    pub fn pattern(&self) -> Option<&TopicPattern> {
        self.pattern
    }

    /// The app's shared state.
    pub fn state(&self) -> &AppState {
        self.state
    }

    /// Where a dependency registers the cleanup it needs after the handler (see the
    /// [module docs](self#cleanup-after-the-handler)). Outside a handler pipeline (a unit test
    /// calling an extractor by hand) the steps registered are dropped unrun.
    pub fn teardown(&self) -> Teardown {
        match self.teardown {
            Some(cell) => cell.get_or_init(Teardown::default).clone(),
            None => Teardown::default(),
        }
    }
}

/// What a subscriber offers its handler's parameters, checked once when the app starts so a
/// parameter that cannot work fails the start instead of every message.
#[derive(Debug, Clone, Copy)]
pub struct CheckContext<'a> {
    state: &'a AppState,
    manual_ack: bool,
    batch: bool,
    pattern: Option<&'a TopicPattern>,
}

impl<'a> CheckContext<'a> {
    /// A subscriber over `state`, without manual acks, batches or a pattern.
    pub fn new(state: &'a AppState) -> Self {
        Self {
            state,
            manual_ack: false,
            batch: false,
            pattern: None,
        }
    }

    /// Whether the handler acknowledges by hand (`AckPolicy::Manual`).
    pub fn with_manual_ack(mut self, manual_ack: bool) -> Self {
        self.manual_ack = manual_ack;
        self
    }

    /// Whether the subscriber delivers batches.
    pub fn with_batch(mut self, batch: bool) -> Self {
        self.batch = batch;
        self
    }

    /// The subscriber's topic pattern.
    pub fn with_pattern(mut self, pattern: Option<&'a TopicPattern>) -> Self {
        self.pattern = pattern;
        self
    }

    /// The app's shared state.
    pub fn state(&self) -> &AppState {
        self.state
    }

    /// Whether the handler acknowledges by hand.
    pub fn manual_ack(&self) -> bool {
        self.manual_ack
    }

    /// Whether the subscriber delivers batches.
    pub fn batch(&self) -> bool {
        self.batch
    }

    /// The subscriber's topic pattern, if any.
    pub fn pattern(&self) -> Option<&TopicPattern> {
        self.pattern
    }
}

/// Takes a value from a message's parts: everything but the payload (key, headers,
/// metadata, app state, extensions), or a dependency built from those. A handler may have any
/// number of these parameters.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be taken from a message's parts",
    label = "not a parts extractor (only a handler's last parameter may be the payload)",
    note = "a handler takes the payload once, as its last parameter; a closure's parameter names do not exist at the type level, so several payload parameters cannot be told apart: take one struct parameter that derives `Deserialize`, or write the handler as a `#[subscriber]` fn, which decodes each payload parameter from the JSON field of its name",
    note = "extractors implement `faststream::FromMessageParts`"
)]
pub trait FromMessageParts: Sized + Send + 'static {
    /// Extracts the value now, or starts the future that will.
    fn from_message_parts(message: &Message, cx: &MessageContext<'_>) -> Extraction<Self>;

    /// Checks once, when the app starts, that what the extractor needs from the app and the
    /// subscriber is there (e.g. [`State`] checks that its type was registered, [`Ack`] that
    /// the subscriber acks by hand). The default needs nothing.
    fn check(cx: &CheckContext<'_>) -> Result<(), ExtractError> {
        let _ = cx;
        Ok(())
    }
}

/// Takes a handler's last parameter from the whole message: the payload, decoded (any
/// `serde::de::DeserializeOwned` type), a custom body extractor, or any
/// [`FromMessageParts`] type. `M` tells those impls apart; leave it to inference.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler parameter",
    label = "not a payload type or an extractor",
    note = "a payload parameter must implement `serde::Deserialize`; extractors implement `faststream::FromMessageParts`"
)]
pub trait FromMessage<M = via::Body>: Sized + Send + 'static {
    /// Extracts the value now, or starts the future that will.
    fn from_message(message: &Message, cx: &MessageContext<'_>) -> Extraction<Self>;

    /// Checks once, when the app starts (see [`FromMessageParts::check`]).
    fn check(cx: &CheckContext<'_>) -> Result<(), ExtractError> {
        let _ = cx;
        Ok(())
    }
}

/// The markers that keep [`FromMessage`]'s impls apart.
pub mod via {
    /// The payload, or a custom body extractor.
    #[derive(Debug)]
    pub struct Body;
    /// A [`FromMessageParts`](super::FromMessageParts) type.
    #[derive(Debug)]
    pub struct Parts;
}

impl<T: FromMessageParts> FromMessage<via::Parts> for T {
    fn from_message(message: &Message, cx: &MessageContext<'_>) -> Extraction<Self> {
        T::from_message_parts(message, cx)
    }

    fn check(cx: &CheckContext<'_>) -> Result<(), ExtractError> {
        T::check(cx)
    }
}

/// The payload: every deserializable type.
impl<T: DeserializeOwned + Send + 'static> FromMessage for T {
    fn from_message(message: &Message, cx: &MessageContext<'_>) -> Extraction<Self> {
        decode_payload(message, cx, |value| value)
    }
}

/// Decodes the payload with the subscriber's codec (JSON without one, allocation-free), after
/// what the codec must do first ([`Codec::prepare`](crate::codec::Codec::prepare)).
// Inlined into the handler's call, with the configured codec's path out of line: a subscriber
// without a codec pays nothing for the seam.
#[inline]
fn decode_payload<T: DeserializeOwned + Send + 'static, U: Send + 'static>(
    message: &Message,
    cx: &MessageContext<'_>,
    wrap: fn(T) -> U,
) -> Extraction<U> {
    match cx.codec() {
        None => codec::decode_message(message)
            .map(wrap)
            .map_err(ExtractError::Payload)
            .into(),
        Some(codec) => decode_with_codec(message, codec, wrap),
    }
}

/// [`decode_payload`] with a configured codec.
#[inline(never)]
fn decode_with_codec<T: DeserializeOwned + Send + 'static, U: Send + 'static>(
    message: &Message,
    codec: &CodecRef,
    wrap: fn(T) -> U,
) -> Extraction<U> {
    let ready: Vec<_> = match message.batch() {
        Some(batch) => batch
            .iter()
            .filter_map(|record| codec.prepare(&record.payload))
            .collect(),
        None => codec.prepare(&message.payload).into_iter().collect(),
    };
    if ready.is_empty() {
        return codec::decode_message_with(message, Some(&**codec))
            .map(wrap)
            .map_err(ExtractError::Payload)
            .into();
    }
    let (codec, message) = (Arc::clone(codec), message.clone());
    Extraction::pending(async move {
        futures::future::try_join_all(ready)
            .await
            .map_err(|failure| prepare_failed(failure, ExtractError::Payload))?;
        codec::decode_message_with(&message, Some(&*codec))
            .map(wrap)
            .map_err(ExtractError::Payload)
    })
}

/// What a codec's failed [`Codec::prepare`](crate::codec::Codec::prepare) means for the
/// handler: bad data (`invalid`: a payload or key decode error) or an outage, which the error
/// policy waits out.
fn prepare_failed(
    failure: DecodeFailure,
    invalid: fn(DecodeError) -> ExtractError,
) -> ExtractError {
    match failure {
        DecodeFailure::Invalid(error) => invalid(error),
        DecodeFailure::Unavailable(why) => ExtractError::PayloadUnavailable(why),
    }
}

/// A `prost` message as the payload (see [`codec::Proto`]); under a codec that frames its
/// payloads (a schema registry's), the message inside the frame, once the codec is ready.
#[cfg(feature = "protobuf")]
impl<T: prost::Message + Default + Send + 'static> FromMessage for codec::Proto<T> {
    fn from_message(message: &Message, cx: &MessageContext<'_>) -> Extraction<Self> {
        let decode = |codec: Option<&dyn codec::Codec>, payload: &[u8]| {
            let body = match codec {
                Some(codec) => codec.body(payload).map_err(ExtractError::Payload)?,
                None => payload,
            };
            codec::Proto::decode(body).map_err(ExtractError::Payload)
        };
        let codec = cx.codec();
        let Some(ready) = codec.and_then(|codec| codec.prepare(&message.payload)) else {
            return decode(codec.map(|c| &**c), &message.payload).into();
        };
        let (codec, payload) = (codec.map(Arc::clone), message.payload.clone());
        Extraction::pending(async move {
            ready
                .await
                .map_err(|failure| prepare_failed(failure, ExtractError::Payload))?;
            decode(codec.as_deref(), &payload)
        })
    }
}

/// A batch subscriber's records, with their metadata (see [`crate::batch`]). A subscriber
/// that is not a batch subscriber fails to start with this parameter.
impl FromMessageParts for Batch {
    fn from_message_parts(message: &Message, _cx: &MessageContext<'_>) -> Extraction<Self> {
        message
            .batch()
            .cloned()
            .ok_or_else(|| {
                ExtractError::Other("`Batch` is only available to batch subscribers".into())
            })
            .into()
    }

    fn check(cx: &CheckContext<'_>) -> Result<(), ExtractError> {
        if cx.batch() {
            return Ok(());
        }
        Err(ExtractError::unavailable::<Self>(
            "needs a batch subscriber",
            "make it one with `.batch(max_records, timeout)` (or `batch = ...` in #[subscriber]), or take the payload instead",
        ))
    }
}

/// A pattern subscriber's topic parameters (see [`Path`]).
impl<T: DeserializeOwned + Send + 'static> FromMessageParts for Path<T> {
    fn from_message_parts(message: &Message, cx: &MessageContext<'_>) -> Extraction<Self> {
        let Some(pattern) = cx.pattern() else {
            return Extraction::failed(ExtractError::Other(
                "a `Path` parameter needs a pattern subscriber (`SubscriberConfig::pattern`)"
                    .into(),
            ));
        };
        let Some(captures) = pattern.captures(&message.topic) else {
            return Extraction::failed(ExtractError::Other(format!(
                "topic `{}` does not match the pattern `{}`",
                message.topic,
                pattern.template()
            )));
        };
        let object: serde_json::Map<String, serde_json::Value> = captures
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).into()))
            .collect();
        let single = (captures.len() == 1).then(|| captures[0].1);
        match serde_json::from_value(serde_json::Value::Object(object)) {
            Ok(value) => Extraction::ready(Path(value)),
            Err(err) => match single.map(|v| serde_json::from_value(v.into())) {
                Some(Ok(value)) => Extraction::ready(Path(value)),
                _ => Extraction::failed(ExtractError::Other(format!(
                    "path parameters of `{}` do not fit: {err}",
                    message.topic
                ))),
            },
        }
    }

    fn check(cx: &CheckContext<'_>) -> Result<(), ExtractError> {
        if cx.pattern().is_some() {
            return Ok(());
        }
        Err(ExtractError::unavailable::<Self>(
            "needs a pattern subscriber",
            "subscribe with a pattern such as `.pattern(\"orders.{region}\")` (or `#[subscriber(\"orders.{region}\")]`), or remove the parameter",
        ))
    }
}

/// The raw message, cloned (payload and key are reference-counted, so this is cheap).
impl FromMessageParts for Message {
    fn from_message_parts(message: &Message, _cx: &MessageContext<'_>) -> Extraction<Self> {
        Extraction::ready(message.clone())
    }
}

/// All headers.
impl FromMessageParts for Headers {
    fn from_message_parts(message: &Message, _cx: &MessageContext<'_>) -> Extraction<Self> {
        Extraction::ready(message.headers.clone())
    }
}

/// The record key, decoded like a payload: `Key<String>` (text), `Key<Bytes>` (the default,
/// raw), `Key<Option<String>>` (absent key is `None`), or any JSON type; or with the
/// subscriber's key codec ([`SubscriberConfig::key_codec`](crate::SubscriberConfig::key_codec)),
/// e.g. a schema registry's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key<T = Bytes>(pub T);

impl<T: DeserializeOwned + Send + 'static> FromMessageParts for Key<T> {
    fn from_message_parts(message: &Message, cx: &MessageContext<'_>) -> Extraction<Self> {
        let Some(raw) = message.key.as_ref() else {
            return codec::decode_absent()
                .map(Key)
                .map_err(ExtractError::Key)
                .into();
        };
        let codec = cx.key_codec();
        let decode = |raw: &[u8], codec: Option<&dyn codec::Codec>| {
            codec::decode_with(raw, None, codec)
                .map(Key)
                .map_err(ExtractError::Key)
        };
        let Some(ready) = codec.and_then(|codec| codec.prepare(raw)) else {
            return decode(raw, codec.map(|c| &**c)).into();
        };
        let (codec, raw) = (codec.map(Arc::clone), raw.clone());
        Extraction::pending(async move {
            ready
                .await
                .map_err(|failure| prepare_failed(failure, ExtractError::Key))?;
            decode(&raw, codec.as_deref())
        })
    }
}

/// Names the header a [`Header`] extractor reads. `#[subscriber]` writes these for
/// `#[header("name")]` parameters; without the macro, implement it on a marker type.
pub trait HeaderName: Send + 'static {
    /// The header's name.
    const NAME: &'static str;
}

/// One header by name, decoded like a payload (`String` takes the raw text). A missing header
/// is an error unless `T` is an `Option`.
///
/// ```
/// use faststream_core::extract::{Header, HeaderName};
/// struct TraceId;
/// impl HeaderName for TraceId { const NAME: &'static str = "trace-id"; }
/// async fn handler(trace: Header<Option<String>, TraceId>) { let _ = trace.0; }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<T, N>(pub T, pub PhantomData<N>);

impl<T: DeserializeOwned + Send + 'static, N: HeaderName> FromMessageParts for Header<T, N> {
    fn from_message_parts(message: &Message, _cx: &MessageContext<'_>) -> Extraction<Self> {
        let name = N::NAME;
        match message.headers.get(name) {
            Some(raw) => codec::decode(raw, None)
                .map(|v| Header(v, PhantomData))
                .map_err(|error| ExtractError::BadHeader { name, error }),
            None => codec::decode_absent()
                .map(|v| Header(v, PhantomData))
                .map_err(|_| ExtractError::MissingHeader(name)),
        }
        .into()
    }
}

/// Where a message came from: topic, partition, offset, timestamp, correlation id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Timestamp in milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
    /// The `correlation_id` header.
    pub correlation_id: Option<String>,
}

impl FromMessageParts for Meta {
    fn from_message_parts(message: &Message, _cx: &MessageContext<'_>) -> Extraction<Self> {
        Extraction::ready(Meta {
            topic: Arc::clone(&message.topic),
            partition: message.partition,
            offset: message.offset,
            timestamp: message.timestamp,
            correlation_id: message.correlation_id().map(str::to_owned),
        })
    }
}

/// Shared application state registered with `FastStream::with_state(value)`.
#[derive(Debug)]
pub struct State<T>(pub Arc<T>);

impl<T> Clone for State<T> {
    fn clone(&self) -> Self {
        State(Arc::clone(&self.0))
    }
}

impl<T> std::ops::Deref for State<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Send + Sync + 'static> FromMessageParts for State<T> {
    fn from_message_parts(_message: &Message, cx: &MessageContext<'_>) -> Extraction<Self> {
        cx.state
            .get::<T>()
            .map(State)
            // Made only when missing: an error made and dropped per message cost a drop call
            // (issue 21's profile).
            .ok_or_else(|| ExtractError::MissingState(std::any::type_name::<T>()))
            .into()
    }

    fn check(cx: &CheckContext<'_>) -> Result<(), ExtractError> {
        match cx.state().get::<T>() {
            Some(_) => Ok(()),
            None => Err(ExtractError::MissingState(std::any::type_name::<T>())),
        }
    }
}

/// A typed value a layer attached to this message (`message.extensions.insert(value)` in a
/// tower layer's `call`), cloned out of it. A message without one fails with
/// [`ExtractError::MissingExtension`].
///
/// ```
/// use faststream_core::extract::Extension;
/// #[derive(Clone)]
/// struct Tenant(String);
/// async fn handler(Extension(tenant): Extension<Tenant>, body: String) {
///     let _ = (tenant.0, body);
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension<T>(pub T);

impl<T: Clone + Send + Sync + 'static> FromMessageParts for Extension<T> {
    fn from_message_parts(message: &Message, _cx: &MessageContext<'_>) -> Extraction<Self> {
        message
            .extensions
            .get::<T>()
            .cloned()
            .map(Extension)
            .ok_or_else(|| ExtractError::MissingExtension(std::any::type_name::<T>()))
            .into()
    }
}

/// The decision a handler took under `AckPolicy::Manual`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckDecision {
    /// Nothing said (yet). Once the handler returned, its record stays uncommitted until an
    /// [`Ack`] it kept decides it; an `Ack` dropped undecided leaves it uncommitted for good
    /// (it comes again after a restart or a rebalance).
    Undecided,
    /// Processed: commit the offset.
    Ack,
    /// Not processed: deliver the same message again after a backoff.
    Nack,
    /// Drop it: commit the offset without processing, and log it.
    Reject,
}

const UNDECIDED: u8 = 0;
const ACK: u8 = 1;
const NACK: u8 = 2;
const REJECT: u8 = 3;
/// The handler returned undecided; a decision now goes to the partition worker.
const WAITING: u8 = 4;

/// A decision taken after the handler returned, sent to the partition worker: the record's
/// id there and the decision ([`AckDecision::Undecided`]: its last `Ack` was dropped).
pub(crate) type LateDecision = (u64, AckDecision);

/// Where a slot's late decision goes, and the record it names in its warning.
#[derive(Debug)]
pub(crate) struct LateAck {
    pub(crate) id: u64,
    pub(crate) to: tokio::sync::mpsc::UnboundedSender<LateDecision>,
    pub(crate) partition: crate::message::TopicPartition,
    pub(crate) offset: i64,
}

/// Shared slot a manual-ack handler writes its decision into. The partition worker gives
/// each record its own; the [`Ack`] handles are clones of it.
#[derive(Debug, Default)]
pub struct AckSlot {
    state: AtomicU8,
    /// Set by the partition worker: a slot that can be decided after its handler returned.
    late: Option<LateAck>,
}

impl AckSlot {
    /// A slot whose decisions after the handler returned reach the worker through `late`.
    pub(crate) fn deferrable(late: LateAck) -> Self {
        Self {
            state: AtomicU8::new(UNDECIDED),
            late: Some(late),
        }
    }

    /// The decision so far.
    pub fn decision(&self) -> AckDecision {
        decision_of(self.state.load(Ordering::Acquire))
    }

    fn set(&self, decision: AckDecision) {
        let code = match decision {
            AckDecision::Undecided => UNDECIDED,
            AckDecision::Ack => ACK,
            AckDecision::Nack => NACK,
            AckDecision::Reject => REJECT,
        };
        if self.state.swap(code, Ordering::AcqRel) == WAITING {
            self.send_late(decision);
        }
    }

    /// Called by the worker once the handler returned: the decision taken so far, or
    /// `Undecided`, after which the next decision is sent to the worker as a [`LateDecision`].
    /// Only a slot made [`AckSlot::deferrable`] waits: another reads as decided-by-default.
    pub(crate) fn wait_for_decision(&self) -> AckDecision {
        if self.late.is_none() {
            return self.decision();
        }
        match self
            .state
            .compare_exchange(UNDECIDED, WAITING, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => AckDecision::Undecided,
            Err(code) => decision_of(code),
        }
    }

    fn send_late(&self, decision: AckDecision) {
        if let Some(late) = &self.late {
            // The worker is gone (shutdown, revoke): the record stays uncommitted anyway.
            let _ = late.to.send((late.id, decision));
        }
    }
}

fn decision_of(code: u8) -> AckDecision {
    match code {
        ACK => AckDecision::Ack,
        NACK => AckDecision::Nack,
        REJECT => AckDecision::Reject,
        _ => AckDecision::Undecided,
    }
}

impl Drop for AckSlot {
    fn drop(&mut self) {
        if *self.state.get_mut() != WAITING {
            return;
        }
        if let Some(late) = &self.late {
            tracing::warn!(
                "message {}@{}: its `Ack` was dropped undecided; the record stays uncommitted and comes again after a restart or rebalance",
                late.partition,
                late.offset,
            );
        }
        self.send_late(AckDecision::Undecided);
    }
}

/// Manual acknowledgement, for subscribers with `AckPolicy::Manual`. Until the handler
/// returns, the last call wins; after it returned, the first call decides.
///
/// A handler that returns without deciding leaves its record uncommitted: the partition's
/// committed offset stays below it. The `Ack` is `Send + 'static`, so it can be moved into
/// another task and decided later, e.g. once a database batch is flushed. Dropped undecided,
/// its record stays uncommitted (one warning line) and comes again after a restart.
///
/// ```
/// use faststream_core::Ack;
///
/// async fn store(ack: Ack, order: String) {
///     // Decided later, by another task: the offset is committed once it acks.
///     tokio::spawn(async move {
///         let _ = order; // write it somewhere
///         ack.ack();
///     });
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Ack(Arc<AckSlot>);

impl Ack {
    /// The handle of `slot` (handlers get theirs by extraction).
    pub(crate) fn of(slot: &Arc<AckSlot>) -> Self {
        Ack(Arc::clone(slot))
    }

    /// The message is processed; its offset may be committed.
    pub fn ack(&self) {
        self.0.set(AckDecision::Ack);
    }
    /// Deliver this message again (after the subscriber's backoff).
    pub fn nack(&self) {
        self.0.set(AckDecision::Nack);
    }
    /// Give up on this message: commit past it and log it.
    pub fn reject(&self) {
        self.0.set(AckDecision::Reject);
    }
}

impl FromMessageParts for Ack {
    fn from_message_parts(_message: &Message, cx: &MessageContext<'_>) -> Extraction<Self> {
        cx.ack
            .map(|slot| Ack(Arc::clone(slot)))
            .ok_or(ExtractError::AckNotManual)
            .into()
    }

    fn check(cx: &CheckContext<'_>) -> Result<(), ExtractError> {
        if cx.manual_ack() {
            return Ok(());
        }
        Err(ExtractError::unavailable::<Self>(
            "needs a subscriber that acknowledges by hand",
            "set `.ack_policy(AckPolicy::Manual)` on the subscriber (or `ack_policy = \"manual\"` in #[subscriber]), or remove the parameter",
        ))
    }
}

impl FromMessageParts for Seeker {
    fn from_message_parts(_message: &Message, cx: &MessageContext<'_>) -> Extraction<Self> {
        // Outside a subscriber's pipeline (a handler called by hand) there is nothing to
        // move: its seeks answer an error.
        Ok(cx.seeker.cloned().unwrap_or_else(Seeker::detached)).into()
    }
}

/// Support for `#[subscriber]`'s expansion: telling extractors from payload by trait, on each
/// parameter's concrete type. Not a public API.
///
/// Generated code cannot ask "is `T` a [`FromMessageParts`]?" in a generic function (there is no
/// specialization), but it can in code where `T` is a concrete type: each probe trait below is
/// implemented on [`Probe<T>`](param_probe::Probe) behind a different number of `&`, and the expansion calls its
/// methods as `(&&&&probe).method()`. Method lookup tries the most-referenced receiver first
/// and takes the first impl whose bounds hold (autoref specialization, as in
/// [`crate::reply::schema_probe`]). The levels of [`Slot`](param_probe::Slot) are:
///
/// 1. `&&&Probe<T>` with `T: FromMessageParts`: taken from the message ([`IsExtractor`](param_probe::IsExtractor));
/// 2. `&&Probe<T>` with `T: DeserializeOwned`: payload ([`IsPayload`](param_probe::IsPayload));
/// 3. `&Probe<T>` with `T: FromMessage`: a custom body extractor (its own `FromMessage` impl
///    means it is not `Deserialize`), taken from the message;
/// 4. `Probe<T>`: not a parameter type at all ([`IsInvalid`](param_probe::IsInvalid)). The expansion reports that with
///    the [`FromMessage`] diagnostic; this level only keeps it the one error.
///
/// ```
/// use faststream_core::extract::param_probe::{Probe, Slot, IsPayload};
/// #[derive(serde::Deserialize)]
/// struct Message { text: String }
/// let kind = (&&&&Probe::<Message>::new()).kind();
/// let _: IsPayload = kind;
/// assert!((&&&&Probe::<Message>::new()).is_payload());
/// assert!(!(&&&&Probe::<faststream_core::Message>::new()).is_payload());
/// ```
#[doc(hidden)]
pub mod param_probe {
    use super::{
        CheckContext, ExtractError, Extraction, FromMessage, FromMessageParts, MessageContext,
    };
    pub use crate::handler::reply::schema_probe::Probe;
    use crate::handler::schema::SchemaFn;
    use crate::message::codec::DecodeError;
    use crate::message::Message;
    use schemars::r#gen::SchemaGenerator;
    use schemars::schema::{InstanceType, Metadata, ObjectValidation, Schema, SchemaObject};
    use schemars::JsonSchema;
    use serde::de::{self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
    use std::fmt;
    use std::marker::PhantomData;

    /// The kind of a parameter taken from the message.
    #[derive(Debug, Clone, Copy)]
    pub struct IsExtractor;

    /// The kind of a parameter decoded from the payload.
    #[derive(Debug, Clone, Copy)]
    pub struct IsPayload;

    /// The kind of a type that cannot be a parameter (reported by the `FromMessage` check).
    #[derive(Debug, Clone, Copy)]
    pub struct IsInvalid;

    /// Holds for every kind that is not payload: the check on the parameters next to
    /// `#[payload]`.
    #[diagnostic::on_unimplemented(
        message = "this parameter is payload, but `#[payload]` already takes the whole payload",
        label = "a `serde::Deserialize` type is payload",
        note = "only extractors and #[header(\"...\")] parameters can sit next to #[payload]; remove #[payload] to make the payload a JSON object with one field per payload parameter"
    )]
    pub trait NotPayload {}
    impl NotPayload for IsExtractor {}
    impl NotPayload for IsInvalid {}

    /// Compiles only if `kind` is not payload.
    pub fn assert_not_payload<K: NotPayload>(kind: K) {
        let _ = kind;
    }

    /// Holds for a pair of kinds that are not both payload.
    #[diagnostic::on_unimplemented(
        message = "a payload parameter without a plain name must be the only payload parameter",
        label = "this pattern has no name to be a field of the JSON payload",
        note = "with several payload parameters the payload is a JSON object with a field per parameter name; bind this one to a plain name (`pair: (i64, i64)`) and destructure it in the body"
    )]
    pub trait NotBothPayload {}
    impl<K> NotBothPayload for (IsExtractor, K) {}
    impl<K> NotBothPayload for (IsInvalid, K) {}
    impl NotBothPayload for (IsPayload, IsExtractor) {}
    impl NotBothPayload for (IsPayload, IsInvalid) {}

    /// Compiles only if the unnamed parameter of kind `unnamed` and the parameter of kind
    /// `other` are not both payload.
    pub fn assert_named_field<A, B>(unnamed: A, other: B)
    where
        (A, B): NotBothPayload,
    {
        let _ = (unnamed, other);
    }

    /// What the generated payload struct does with one parameter, decided by its kind.
    pub trait Slot {
        /// The parameter's type.
        type Value;
        /// The parameter's kind: [`IsExtractor`], [`IsPayload`] or [`IsInvalid`].
        type Kind;
        /// The kind, as a value (for the compile-time checks).
        fn kind(&self) -> Self::Kind;
        /// Whether the parameter is payload.
        fn is_payload(&self) -> bool;
        /// At start: what the parameter needs from the app and the subscriber
        /// ([`FromMessageParts::check`]).
        fn check(&self, cx: &CheckContext<'_>) -> Result<(), ExtractError>;
        /// Takes the parameter when the payload is not split into fields (at most one payload
        /// parameter, which then takes the whole payload): through `FromMessage`.
        fn extract_whole(
            &self,
            message: &Message,
            cx: &MessageContext<'_>,
        ) -> Extraction<Self::Value>;
        /// Reads the value of the JSON field named like the parameter. By default (anything
        /// but payload) the field is skipped.
        fn read_field<'de, A: MapAccess<'de>>(
            &self,
            slot: &mut Option<Self::Value>,
            name: &'static str,
            map: &mut A,
        ) -> Result<(), A::Error> {
            let _ = (slot, name);
            map.next_value::<IgnoredAny>().map(drop)
        }
        /// After the last field: a payload parameter whose field was absent is `None` when it
        /// is an `Option`, else a "missing field" error. By default there is no value.
        fn finish_field<E: de::Error>(
            &self,
            slot: Option<Self::Value>,
            name: &'static str,
        ) -> Result<Option<Self::Value>, E> {
            let _ = (slot, name);
            Ok(None)
        }
        /// Takes the parameter when the payload is split into fields: a payload parameter from
        /// its decoded field, an extractor from the message.
        fn extract_field(
            &self,
            slot: Option<Self::Value>,
            name: &'static str,
            message: &Message,
            cx: &MessageContext<'_>,
        ) -> Extraction<Self::Value>;
    }

    macro_rules! extractor_slot {
        ($receiver:ty, $($bound:tt)*) => {
            impl<T: $($bound)*> Slot for $receiver {
                type Value = T;
                type Kind = IsExtractor;
                fn kind(&self) -> IsExtractor {
                    IsExtractor
                }
                fn is_payload(&self) -> bool {
                    false
                }
                fn check(&self, cx: &CheckContext<'_>) -> Result<(), ExtractError> {
                    <T as $($bound)*>::check(cx)
                }
                fn extract_whole(&self, message: &Message, cx: &MessageContext<'_>) -> Extraction<T> {
                    <T as $($bound)*>::from_message(message, cx)
                }
                fn extract_field(
                    &self,
                    _slot: Option<T>,
                    _name: &'static str,
                    message: &Message,
                    cx: &MessageContext<'_>,
                ) -> Extraction<T> {
                    <T as $($bound)*>::from_message(message, cx)
                }
            }
        };
    }

    extractor_slot!(&&&Probe<T>, FromMessage<super::via::Parts>);
    extractor_slot!(&Probe<T>, FromMessage<super::via::Body>);

    impl<T: DeserializeOwned + Send + 'static> Slot for &&Probe<T> {
        type Value = T;
        type Kind = IsPayload;
        fn kind(&self) -> IsPayload {
            IsPayload
        }
        fn is_payload(&self) -> bool {
            true
        }
        fn check(&self, _cx: &CheckContext<'_>) -> Result<(), ExtractError> {
            Ok(())
        }
        fn extract_whole(&self, message: &Message, cx: &MessageContext<'_>) -> Extraction<T> {
            <T as FromMessage>::from_message(message, cx)
        }
        fn read_field<'de, A: MapAccess<'de>>(
            &self,
            slot: &mut Option<T>,
            name: &'static str,
            map: &mut A,
        ) -> Result<(), A::Error> {
            if slot.is_some() {
                return Err(de::Error::duplicate_field(name));
            }
            *slot = Some(map.next_value()?);
            Ok(())
        }
        fn finish_field<E: de::Error>(
            &self,
            slot: Option<T>,
            name: &'static str,
        ) -> Result<Option<T>, E> {
            match slot {
                Some(value) => Ok(Some(value)),
                None => T::deserialize(MissingField(name, PhantomData)).map(Some),
            }
        }
        fn extract_field(
            &self,
            slot: Option<T>,
            name: &'static str,
            _message: &Message,
            _cx: &MessageContext<'_>,
        ) -> Extraction<T> {
            // `finish_field` filled every payload slot (or failed); kept an error, not a panic.
            slot.ok_or_else(|| {
                ExtractError::Payload(DecodeError {
                    path: name.to_owned(),
                    message: format!("missing field `{name}`"),
                })
            })
            .into()
        }
    }

    impl<T> Slot for Probe<T> {
        type Value = T;
        type Kind = IsInvalid;
        fn kind(&self) -> IsInvalid {
            IsInvalid
        }
        fn is_payload(&self) -> bool {
            false
        }
        fn check(&self, _cx: &CheckContext<'_>) -> Result<(), ExtractError> {
            Ok(())
        }
        fn extract_whole(&self, _message: &Message, _cx: &MessageContext<'_>) -> Extraction<T> {
            Extraction::failed(invalid::<T>())
        }
        fn extract_field(
            &self,
            _slot: Option<T>,
            _name: &'static str,
            _message: &Message,
            _cx: &MessageContext<'_>,
        ) -> Extraction<T> {
            Extraction::failed(invalid::<T>())
        }
    }

    fn invalid<T>() -> ExtractError {
        ExtractError::Other(format!(
            "`{}` cannot be a handler parameter",
            std::any::type_name::<T>()
        ))
    }

    /// The payload schema of one parameter, called as `(&&&&probe).payload_schema()`: `None`
    /// for an extractor, the type's schema for a `JsonSchema` payload type, "any JSON" (`{}`)
    /// for another payload type.
    pub trait SlotSchema {
        /// The schema, `None` when the parameter is not payload.
        fn payload_schema(&self) -> Option<SchemaFn>;
    }

    impl<T: FromMessageParts> SlotSchema for &&&Probe<T> {
        fn payload_schema(&self) -> Option<SchemaFn> {
            None
        }
    }

    impl<T: DeserializeOwned + JsonSchema> SlotSchema for &&Probe<T> {
        fn payload_schema(&self) -> Option<SchemaFn> {
            Some(|generator: &mut SchemaGenerator| generator.subschema_for::<T>())
        }
    }

    impl<T: DeserializeOwned> SlotSchema for &Probe<T> {
        fn payload_schema(&self) -> Option<SchemaFn> {
            Some(any_json)
        }
    }

    impl<T> SlotSchema for Probe<T> {
        fn payload_schema(&self) -> Option<SchemaFn> {
            None
        }
    }

    /// The schema of a payload type without `JsonSchema`: any JSON value (`{}`).
    pub fn any_json(_generator: &mut SchemaGenerator) -> Schema {
        Schema::Object(SchemaObject::default())
    }

    /// Whether a field may be absent, called as `(&&probe).is_optional()`: `Option<T>` may.
    pub trait IsOptional {
        /// `true` for `Option<T>`.
        fn is_optional(&self) -> bool;
    }

    impl<T> IsOptional for &Probe<Option<T>> {
        fn is_optional(&self) -> bool {
            true
        }
    }

    impl<T> IsOptional for Probe<T> {
        fn is_optional(&self) -> bool {
            false
        }
    }

    /// One parameter that may be a field of the payload, for the payload schema.
    #[derive(Debug, Clone, Copy)]
    pub struct Field {
        /// The JSON field name (the parameter's name).
        pub name: &'static str,
        /// Its schema; `None` when the parameter is not payload.
        pub schema: Option<SchemaFn>,
        /// Whether the field may be absent (an `Option`).
        pub optional: bool,
    }

    /// The payload schema of a handler whose parameters are `fields`: none without a payload
    /// parameter, that parameter's schema with exactly one (it takes the whole payload),
    /// else `object` (see [`object_schema`]).
    pub fn payload_schema(fields: &[Field], object: SchemaFn) -> Option<SchemaFn> {
        let mut payload = fields.iter().filter_map(|field| field.schema);
        match (payload.next(), payload.next()) {
            (None, _) => None,
            (Some(whole), None) => Some(whole),
            (Some(_), Some(_)) => Some(object),
        }
    }

    /// A JSON object schema titled `title`, with a property for each payload field, required
    /// unless it is an `Option`.
    pub fn object_schema(title: &str, fields: &[Field], generator: &mut SchemaGenerator) -> Schema {
        let mut object = ObjectValidation::default();
        for field in fields {
            let Some(schema) = field.schema else { continue };
            object
                .properties
                .insert(field.name.to_owned(), schema(generator));
            if !field.optional {
                object.required.insert(field.name.to_owned());
            }
        }
        Schema::Object(SchemaObject {
            metadata: Some(Box::new(Metadata {
                title: Some(title.to_owned()),
                ..Metadata::default()
            })),
            instance_type: Some(InstanceType::Object.into()),
            object: Some(Box::new(object)),
            ..SchemaObject::default()
        })
    }

    /// The generated struct holding what was decoded of each parameter's JSON field.
    pub trait Fields: Default {
        /// The field names; a name's position is the `index` given to [`Fields::read_field`].
        const NAMES: &'static [&'static str];
        /// Reads the value of the field `NAMES[index]`.
        fn read_field<'de, A: MapAccess<'de>>(
            &mut self,
            index: usize,
            map: &mut A,
        ) -> Result<(), A::Error>;
        /// After the last field: fills or rejects the absent ones.
        fn finish<E: de::Error>(self) -> Result<Self, E>;
    }

    /// Deserializes a [`Fields`] struct from a map; unknown fields are skipped.
    pub fn deserialize_fields<'de, D, F>(deserializer: D) -> Result<F, D::Error>
    where
        D: de::Deserializer<'de>,
        F: Fields,
    {
        deserializer.deserialize_map(FieldsVisitor(PhantomData))
    }

    struct FieldsVisitor<F>(PhantomData<F>);

    impl<'de, F: Fields> Visitor<'de> for FieldsVisitor<F> {
        type Value = F;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object with a field per payload parameter")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<F, A::Error> {
            let mut fields = F::default();
            while let Some(index) = map.next_key_seed(FieldIndex(F::NAMES))? {
                match index {
                    Some(index) => fields.read_field(index, &mut map)?,
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            fields.finish()
        }
    }

    /// A map key, as its position in the names (`None`: unknown).
    struct FieldIndex(&'static [&'static str]);

    impl<'de> DeserializeSeed<'de> for FieldIndex {
        type Value = Option<usize>;

        fn deserialize<D: de::Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_identifier(self)
        }
    }

    impl<'de> Visitor<'de> for FieldIndex {
        type Value = Option<usize>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a field name")
        }

        fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
            Ok(self.0.iter().position(|name| *name == key))
        }

        fn visit_bytes<E: de::Error>(self, key: &[u8]) -> Result<Self::Value, E> {
            Ok(self.0.iter().position(|name| name.as_bytes() == key))
        }
    }

    /// An absent field: only an `Option` accepts it (as `None`).
    struct MissingField<E>(&'static str, PhantomData<E>);

    impl<'de, E: de::Error> de::Deserializer<'de> for MissingField<E> {
        type Error = E;

        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, E> {
            Err(E::missing_field(self.0))
        }

        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
            visitor.visit_none()
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
            ignored_any
        }
    }

    /// A `#[payload]` parameter: always decoded from the payload, whatever else it implements.
    #[derive(Debug)]
    pub struct Payload<T>(pub T);

    impl<T: DeserializeOwned + Send + 'static> FromMessage for Payload<T> {
        fn from_message(message: &Message, cx: &MessageContext<'_>) -> Extraction<Self> {
            super::decode_payload(message, cx, Payload)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(state: &AppState) -> MessageContext<'_> {
        MessageContext::new(state, None)
    }

    /// Runs a parts extractor that finishes at once.
    fn parts<T: FromMessageParts>(
        msg: &Message,
        cx: &MessageContext<'_>,
    ) -> Result<T, ExtractError> {
        let extraction = T::from_message_parts(msg, cx);
        assert!(extraction.is_ready());
        extraction.into_ready()
    }

    struct Trace;
    impl HeaderName for Trace {
        const NAME: &'static str = "trace";
    }

    /// A codec that must get ready first, as a schema registry's does when the record's
    /// schema id is not cached: its `prepare` answers with the payload's first byte.
    #[derive(Debug)]
    struct FetchFirst;

    impl crate::codec::Codec for FetchFirst {
        fn name(&self) -> &'static str {
            "fetch-first"
        }
        fn content_type(&self) -> &'static str {
            "application/x-fetch-first"
        }
        fn decode<'de>(
            &self,
            payload: &'de [u8],
            target: &mut dyn crate::codec::DecodeTarget<'de>,
        ) -> Result<(), DecodeError> {
            let json = &payload[1..];
            crate::codec::deserialize_into(target, &mut serde_json::Deserializer::from_slice(json))
        }
        fn encode(&self, _: &dyn erased_serde::Serialize) -> Result<Vec<u8>, codec::EncodeError> {
            Err(codec::EncodeError("decode only".into()))
        }
        fn prepare(
            &self,
            payload: &[u8],
        ) -> Option<futures::future::BoxFuture<'static, Result<(), DecodeFailure>>> {
            let first = payload.first().copied();
            Some(Box::pin(async move {
                tokio::task::yield_now().await;
                match first {
                    Some(b'+') => Ok(()),
                    Some(b'?') => Err(DecodeFailure::Unavailable("registry refused".into())),
                    _ => Err(DecodeFailure::Invalid(DecodeError {
                        path: ".".into(),
                        message: "unknown schema id".into(),
                    })),
                }
            }))
        }
    }

    #[tokio::test]
    async fn a_codec_that_must_prepare_decodes_after_waiting_and_says_when_to_retry() {
        let state = AppState::default();
        let codec: CodecRef = Arc::new(FetchFirst);
        let cx = cx(&state).with_codecs(Some(&codec), None);
        let ready = <i64 as FromMessage>::from_message(&Message::new("t", "+42"), &cx);
        assert!(!ready.is_ready(), "waits for the codec");
        assert_eq!(ready.await.unwrap(), 42);
        let outage = <i64 as FromMessage>::from_message(&Message::new("t", "?42"), &cx)
            .await
            .unwrap_err();
        assert!(outage.is_transient(), "an outage is retried: {outage}");
        assert_eq!(
            outage.to_string(),
            "cannot decode payload yet: registry refused"
        );
        let unknown = <i64 as FromMessage>::from_message(&Message::new("t", "!42"), &cx)
            .await
            .unwrap_err();
        assert!(
            !unknown.is_transient(),
            "bad data is not retried: {unknown}"
        );
        assert!(matches!(unknown, ExtractError::Payload(_)), "{unknown}");
    }

    #[tokio::test]
    async fn a_key_codec_decodes_keys_after_waiting_and_says_when_to_retry() {
        let state = AppState::default();
        let codec: CodecRef = Arc::new(FetchFirst);
        let cx = cx(&state).with_key_codec(Some(&codec));
        let keyed = |key: &'static str| {
            let mut message = Message::new("t", "{}");
            message.key = Some(Bytes::from_static(key.as_bytes()));
            message
        };
        let ready = parts_pending::<Key<i64>>(&keyed("+7"), &cx);
        assert!(!ready.is_ready(), "waits for the codec");
        assert_eq!(ready.await.unwrap().0, 7);
        let outage = parts_pending::<Key<i64>>(&keyed("?7"), &cx)
            .await
            .unwrap_err();
        assert!(outage.is_transient(), "{outage}");
        let unknown = parts_pending::<Key<i64>>(&keyed("!7"), &cx)
            .await
            .unwrap_err();
        assert!(matches!(unknown, ExtractError::Key(_)), "{unknown}");
        let absent = parts_pending::<Key<Option<i64>>>(&Message::new("t", "{}"), &cx);
        assert_eq!(absent.await.unwrap().0, None);
    }

    fn parts_pending<T: FromMessageParts>(
        message: &Message,
        cx: &MessageContext<'_>,
    ) -> Extraction<T> {
        T::from_message_parts(message, cx)
    }

    #[test]
    fn headers_by_name_required_and_optional() {
        let state = AppState::default();
        let mut msg = Message::new("t", "{}");
        assert!(matches!(
            parts::<Header<String, Trace>>(&msg, &cx(&state)),
            Err(ExtractError::MissingHeader("trace"))
        ));
        assert_eq!(
            parts::<Header<Option<String>, Trace>>(&msg, &cx(&state))
                .unwrap()
                .0,
            None
        );
        msg.headers.insert("trace", "abc");
        assert_eq!(
            parts::<Header<String, Trace>>(&msg, &cx(&state)).unwrap().0,
            "abc"
        );
        assert!(matches!(
            parts::<Header<i64, Trace>>(&msg, &cx(&state)),
            Err(ExtractError::BadHeader { name: "trace", .. })
        ));
    }

    #[test]
    fn key_meta_and_state() {
        let mut state = AppState::default();
        state.insert(41_u32);
        let mut msg = Message::new("t", "x");
        msg.key = Some(Bytes::from_static(b"k1"));
        msg.offset = 9;
        assert_eq!(parts::<Key<String>>(&msg, &cx(&state)).unwrap().0, "k1");
        assert_eq!(parts::<Meta>(&msg, &cx(&state)).unwrap().offset, 9);
        assert_eq!(*parts::<State<u32>>(&msg, &cx(&state)).unwrap(), 41);
        assert!(matches!(
            parts::<State<u64>>(&msg, &cx(&state)),
            Err(ExtractError::MissingState(_))
        ));
        msg.key = None;
        assert_eq!(
            parts::<Key<Option<String>>>(&msg, &cx(&state)).unwrap().0,
            None
        );
    }

    #[test]
    fn ack_needs_manual_policy() {
        let state = AppState::default();
        let msg = Message::new("t", "x");
        assert!(matches!(
            parts::<Ack>(&msg, &cx(&state)),
            Err(ExtractError::AckNotManual)
        ));
        let slot = Arc::new(AckSlot::default());
        let ack = parts::<Ack>(&msg, &MessageContext::new(&state, Some(&slot))).unwrap();
        ack.nack();
        assert_eq!(slot.decision(), AckDecision::Nack);
    }

    // The `&`s select the probe impl (autoref specialization); none of them is needless.
    #[allow(clippy::needless_borrow)]
    mod probes {
        use super::super::param_probe::*;
        use super::super::*;
        use crate::handler::schema::SchemaFn;

        /// A user type named like the framework's extractor.
        #[derive(serde::Deserialize, schemars::JsonSchema)]
        #[allow(dead_code)]
        struct Meta {
            x: i64,
        }

        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Opaque;

        /// A custom body extractor.
        struct Custom;
        impl FromMessage for Custom {
            fn from_message(_: &Message, _: &MessageContext<'_>) -> Extraction<Self> {
                Extraction::ready(Custom)
            }
        }

        #[test]
        fn classified_by_trait() {
            assert!((&&&&Probe::<Meta>::new()).is_payload());
            assert!((&&&&Probe::<Opaque>::new()).is_payload());
            assert!((&&&&Probe::<Option<String>>::new()).is_payload());
            assert!(!(&&&&Probe::<super::super::Meta>::new()).is_payload());
            assert!(!(&&&&Probe::<Key<String>>::new()).is_payload());
            assert!(!(&&&&Probe::<State<u8>>::new()).is_payload());
            assert!(!(&&&&Probe::<Custom>::new()).is_payload());
            struct NotAParameter;
            let _: IsInvalid = (&&&&Probe::<NotAParameter>::new()).kind();
            assert!((&&Probe::<Option<u8>>::new()).is_optional());
            assert!(!(&&Probe::<u8>::new()).is_optional());
        }

        fn json(schema: Option<SchemaFn>) -> Option<serde_json::Value> {
            let mut generator = schemars::r#gen::SchemaGenerator::default();
            schema.map(|f| serde_json::to_value(f(&mut generator)).unwrap())
        }

        #[test]
        fn schemas_by_trait() {
            assert_eq!(
                json((&&&&Probe::<Key<String>>::new()).payload_schema()),
                None
            );
            assert_eq!(json((&&&&Probe::<Custom>::new()).payload_schema()), None);
            assert_eq!(
                json((&&&&Probe::<Opaque>::new()).payload_schema()),
                Some(serde_json::json!({}))
            );
            assert_eq!(
                json((&&&&Probe::<Meta>::new()).payload_schema()),
                Some(serde_json::json!({"$ref": "#/definitions/Meta"}))
            );
        }

        #[test]
        fn object_of_the_payload_fields() {
            fn object(
                generator: &mut schemars::r#gen::SchemaGenerator,
            ) -> schemars::schema::Schema {
                object_schema("T", &fields(), generator)
            }
            fn fields() -> Vec<Field> {
                vec![
                    Field {
                        name: "a",
                        schema: (&&&&Probe::<i64>::new()).payload_schema(),
                        optional: false,
                    },
                    Field {
                        name: "key",
                        schema: (&&&&Probe::<Key<String>>::new()).payload_schema(),
                        optional: false,
                    },
                    Field {
                        name: "b",
                        schema: (&&&&Probe::<Option<String>>::new()).payload_schema(),
                        optional: true,
                    },
                ]
            }
            let schema = json(payload_schema(&fields(), object)).unwrap();
            assert_eq!(schema["title"], "T");
            assert_eq!(schema["type"], "object");
            assert_eq!(schema["properties"]["a"]["type"], "integer");
            assert!(schema["properties"].get("key").is_none());
            assert_eq!(schema["required"], serde_json::json!(["a"]));
            // One payload field: its own schema, no object.
            let one = &fields()[..2];
            assert_eq!(
                json(payload_schema(one, object)),
                Some(serde_json::json!({"type": "integer", "format": "int64"}))
            );
            assert_eq!(json(payload_schema(&fields()[1..2], object)), None);
        }
    }
}
