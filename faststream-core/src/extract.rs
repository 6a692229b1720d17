//! Extractors: how a handler's parameters are taken from a message.
//!
//! Every parameter type implements [`FromMessage`]. Any `serde::de::DeserializeOwned` type is
//! the payload (decoded by [`crate::codec::decode`]); the types in this module take everything
//! else. Write your own by implementing [`FromMessage`].
//!
//! ```
//! use faststream_core::extract::{FromMessage, ExtractError, MessageContext};
//! use faststream_core::Message;
//!
//! /// The tenant a message belongs to, from its `tenant` header.
//! struct Tenant(String);
//!
//! impl FromMessage for Tenant {
//!     fn from_message(message: &Message, _cx: &MessageContext<'_>) -> Result<Self, ExtractError> {
//!         message
//!             .headers
//!             .get_str("tenant")
//!             .map(|t| Tenant(t.to_owned()))
//!             .ok_or(ExtractError::MissingHeader("tenant"))
//!     }
//! }
//! ```

use crate::codec::{self, DecodeError};
use crate::message::{Headers, Message, CONTENT_TYPE};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use std::any::{Any, TypeId};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// Why a parameter could not be extracted. The message then follows the subscriber's
/// error policy, like a handler error.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// The payload did not decode into the parameter's type.
    #[error("cannot decode payload: {0}")]
    Payload(DecodeError),
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
    /// A custom extractor's rejection.
    #[error("{0}")]
    Other(String),
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

/// What extractors may look at besides the message: app state and the manual-ack slot.
#[derive(Debug)]
pub struct MessageContext<'a> {
    state: &'a AppState,
    ack: Option<&'a Arc<AckSlot>>,
}

impl<'a> MessageContext<'a> {
    /// A context over `state`; `ack` is set for subscribers with `AckPolicy::Manual`.
    pub fn new(state: &'a AppState, ack: Option<&'a Arc<AckSlot>>) -> Self {
        Self { state, ack }
    }

    /// The app's shared state.
    pub fn state(&self) -> &AppState {
        self.state
    }
}

/// Takes a value out of a consumed message for a handler parameter.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler parameter",
    label = "not a payload type or an extractor",
    note = "a payload parameter must implement `serde::Deserialize`; extractors implement `faststream::FromMessage`"
)]
pub trait FromMessage: Sized {
    /// Extracts the value, or says why not.
    fn from_message(message: &Message, cx: &MessageContext<'_>) -> Result<Self, ExtractError>;
}

/// The payload: every deserializable type.
impl<T: DeserializeOwned> FromMessage for T {
    fn from_message(message: &Message, _cx: &MessageContext<'_>) -> Result<Self, ExtractError> {
        codec::decode(&message.payload, message.headers.get_str(CONTENT_TYPE))
            .map_err(ExtractError::Payload)
    }
}

/// The raw message, cloned (payload and key are reference-counted, so this is cheap).
impl FromMessage for Message {
    fn from_message(message: &Message, _cx: &MessageContext<'_>) -> Result<Self, ExtractError> {
        Ok(message.clone())
    }
}

/// All headers.
impl FromMessage for Headers {
    fn from_message(message: &Message, _cx: &MessageContext<'_>) -> Result<Self, ExtractError> {
        Ok(message.headers.clone())
    }
}

/// The record key, decoded like a payload: `Key<String>` (text), `Key<Bytes>` (the default,
/// raw), `Key<Option<String>>` (absent key is `None`), or any JSON type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key<T = Bytes>(pub T);

impl<T: DeserializeOwned> FromMessage for Key<T> {
    fn from_message(message: &Message, _cx: &MessageContext<'_>) -> Result<Self, ExtractError> {
        match message.key.as_deref() {
            Some(raw) => codec::decode(raw, None),
            None => codec::decode_absent(),
        }
        .map(Key)
        .map_err(ExtractError::Key)
    }
}

/// Names the header a [`Header`] extractor reads. `#[subscriber]` writes these for
/// `#[header("name")]` parameters; without the macro, implement it on a marker type.
pub trait HeaderName {
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

impl<T: DeserializeOwned, N: HeaderName> FromMessage for Header<T, N> {
    fn from_message(message: &Message, _cx: &MessageContext<'_>) -> Result<Self, ExtractError> {
        let name = N::NAME;
        match message.headers.get(name) {
            Some(raw) => codec::decode(raw, None)
                .map(|v| Header(v, PhantomData))
                .map_err(|error| ExtractError::BadHeader { name, error }),
            None => codec::decode_absent()
                .map(|v| Header(v, PhantomData))
                .map_err(|_| ExtractError::MissingHeader(name)),
        }
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

impl FromMessage for Meta {
    fn from_message(message: &Message, _cx: &MessageContext<'_>) -> Result<Self, ExtractError> {
        Ok(Meta {
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

impl<T: Send + Sync + 'static> FromMessage for State<T> {
    fn from_message(_message: &Message, cx: &MessageContext<'_>) -> Result<Self, ExtractError> {
        cx.state
            .get::<T>()
            .map(State)
            .ok_or(ExtractError::MissingState(std::any::type_name::<T>()))
    }
}

/// The decision a handler took under `AckPolicy::Manual`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckDecision {
    /// Nothing said: treated as an ack once the handler returns.
    Undecided,
    /// Processed: commit the offset.
    Ack,
    /// Not processed: deliver the same message again after a backoff.
    Nack,
    /// Drop it: commit the offset without processing, and log it.
    Reject,
}

/// Shared slot a manual-ack handler writes its decision into.
#[derive(Debug, Default)]
pub struct AckSlot(AtomicU8);

impl AckSlot {
    /// The decision so far.
    pub fn decision(&self) -> AckDecision {
        match self.0.load(Ordering::Acquire) {
            1 => AckDecision::Ack,
            2 => AckDecision::Nack,
            3 => AckDecision::Reject,
            _ => AckDecision::Undecided,
        }
    }

    fn set(&self, decision: AckDecision) {
        let code = match decision {
            AckDecision::Undecided => 0,
            AckDecision::Ack => 1,
            AckDecision::Nack => 2,
            AckDecision::Reject => 3,
        };
        self.0.store(code, Ordering::Release);
    }
}

/// Manual acknowledgement, for subscribers with `AckPolicy::Manual`. The last call wins.
#[derive(Debug, Clone)]
pub struct Ack(Arc<AckSlot>);

impl Ack {
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

impl FromMessage for Ack {
    fn from_message(_message: &Message, cx: &MessageContext<'_>) -> Result<Self, ExtractError> {
        cx.ack
            .map(|slot| Ack(Arc::clone(slot)))
            .ok_or(ExtractError::AckNotManual)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(state: &AppState) -> MessageContext<'_> {
        MessageContext::new(state, None)
    }

    struct Trace;
    impl HeaderName for Trace {
        const NAME: &'static str = "trace";
    }

    #[test]
    fn headers_by_name_required_and_optional() {
        let state = AppState::default();
        let mut msg = Message::new("t", "{}");
        assert!(matches!(
            Header::<String, Trace>::from_message(&msg, &cx(&state)),
            Err(ExtractError::MissingHeader("trace"))
        ));
        assert_eq!(
            Header::<Option<String>, Trace>::from_message(&msg, &cx(&state))
                .unwrap()
                .0,
            None
        );
        msg.headers.insert("trace", "abc");
        assert_eq!(
            Header::<String, Trace>::from_message(&msg, &cx(&state))
                .unwrap()
                .0,
            "abc"
        );
        assert!(matches!(
            Header::<i64, Trace>::from_message(&msg, &cx(&state)),
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
        assert_eq!(
            Key::<String>::from_message(&msg, &cx(&state)).unwrap().0,
            "k1"
        );
        assert_eq!(Meta::from_message(&msg, &cx(&state)).unwrap().offset, 9);
        assert_eq!(*State::<u32>::from_message(&msg, &cx(&state)).unwrap(), 41);
        assert!(matches!(
            State::<u64>::from_message(&msg, &cx(&state)),
            Err(ExtractError::MissingState(_))
        ));
        msg.key = None;
        assert_eq!(
            Key::<Option<String>>::from_message(&msg, &cx(&state))
                .unwrap()
                .0,
            None
        );
    }

    #[test]
    fn ack_needs_manual_policy() {
        let state = AppState::default();
        let msg = Message::new("t", "x");
        assert!(matches!(
            Ack::from_message(&msg, &cx(&state)),
            Err(ExtractError::AckNotManual)
        ));
        let slot = Arc::new(AckSlot::default());
        let ack = Ack::from_message(&msg, &MessageContext::new(&state, Some(&slot))).unwrap();
        ack.nack();
        assert_eq!(slot.decision(), AckDecision::Nack);
    }
}
