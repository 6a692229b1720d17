//! Filters: several handlers on one subscriber, FastStream's `@subscriber(filter=...)`.
//!
//! A [`Filtered`] handler tries its handlers in the order they were added; the first whose
//! [`Filter`] accepts the message handles it, else the default handler
//! ([`Filtered::otherwise`]) if there is one. A message that no handler accepts fails with
//! [`ExtractError::NoHandler`]: it is logged once (one error line naming
//! `topic[partition]@offset`) and follows the subscriber's error policy as an error that is
//! not retried (skipped, dead-lettered or stopping its partition, as the policy says).
//! Once a filter accepted a message, its handler owns it: if that handler then fails (its
//! payload does not decode, it returns an error), the message has failed; later branches are
//! not tried. Filters on the payload's shape ([`decodes`], [`payload`]) avoid that.
//!
//! `Filtered` is itself a [`Handler`], so it runs through the same pipeline, layers and
//! policies as any handler. Each branch's payload schema (from [`payload`], or a filter's
//! [`Filter::with_schema`]) is listed in the AsyncAPI document as a `oneOf` on the channel.
//!
//! ```
//! use faststream_core::filter::{self, Filter, Filtered};
//! use faststream_core::{App, Message, SubscriberConfig};
//! # #[derive(serde::Deserialize, schemars::JsonSchema)]
//! # struct Order { id: i64 }
//! # #[derive(serde::Deserialize, schemars::JsonSchema)]
//! # struct Refund { order_id: i64, amount: f64 }
//!
//! async fn order(order: Order) -> String {
//!     format!("order {}", order.id)
//! }
//! async fn refund(refund: Refund) -> String {
//!     format!("refund of {} for {}", refund.amount, refund.order_id)
//! }
//!
//! # fn app<B: faststream_core::Broker>(broker: B) -> App<B> {
//! let events = Filtered::new()
//!     .when(filter::header("type", "refund").and(filter::payload::<Refund>()), refund)
//!     .when(filter::payload::<Order>(), order)
//!     .when(|m: &Message| m.key.is_none(), |text: String| async move { format!("unkeyed {text}") })
//!     .otherwise(|m: Message| async move { format!("unknown event at offset {}", m.offset) });
//! App::new(broker).subscriber(SubscriberConfig::new("events", ["events"]).publish_to("log"), events)
//! # }
//! ```

use crate::handler::extract::{CheckContext, ExtractError, MessageContext};
use crate::handler::reply::Reply;
use crate::handler::schema::SchemaFn;
use crate::handler::Handler;
use crate::message::codec;
use crate::message::{Message, CONTENT_TYPE};
use bytes::Bytes;
use futures::future::Either;
use serde::de::DeserializeOwned;
use std::future::{Future, Ready};
use std::marker::PhantomData;
use std::sync::Arc;

/// A predicate on a message: whether a branch of a [`Filtered`] handler takes it.
///
/// Implemented for closures `Fn(&Message) -> bool` and for the filters of this module
/// ([`header`], [`has_header`], [`key`], [`content_type`], [`decodes`], [`payload`]).
pub trait Filter: Send + Sync + 'static {
    /// Whether the branch takes `message`.
    fn matches(&self, message: &Message) -> bool;

    /// The payload schema of the messages it accepts, for the AsyncAPI document.
    fn payload_schema(&self) -> Option<SchemaFn> {
        None
    }

    /// Both this and `other` must accept (the schema is the first one's, else `other`'s).
    fn and<F: Filter>(self, other: F) -> And<Self, F>
    where
        Self: Sized,
    {
        And(self, other)
    }

    /// Documents the accepted payload as `schema` (e.g. [`schema_of::<T>`](schema_of)).
    fn with_schema(self, schema: SchemaFn) -> WithSchema<Self>
    where
        Self: Sized,
    {
        WithSchema(self, schema)
    }
}

impl<F> Filter for F
where
    F: Fn(&Message) -> bool + Send + Sync + 'static,
{
    fn matches(&self, message: &Message) -> bool {
        self(message)
    }
}

/// The schema of `T`, as a [`SchemaFn`].
pub fn schema_of<T: schemars::JsonSchema>(
    generator: &mut schemars::r#gen::SchemaGenerator,
) -> schemars::schema::Schema {
    generator.subschema_for::<T>()
}

/// Accepts messages with header `name` equal to `value`. From [`header`].
#[derive(Debug, Clone)]
pub struct HeaderIs {
    name: String,
    value: Bytes,
}

/// Accepts messages whose header `name` is `value` (the first such header).
///
/// ```
/// use faststream_core::filter::{header, Filter};
/// use faststream_core::Message;
/// let mut message = Message::new("t", "{}");
/// message.headers.append("type", "order");
/// assert!(header("type", "order").matches(&message));
/// assert!(!header("type", "refund").matches(&message));
/// ```
pub fn header(name: impl Into<String>, value: impl Into<Bytes>) -> HeaderIs {
    HeaderIs {
        name: name.into(),
        value: value.into(),
    }
}

impl Filter for HeaderIs {
    fn matches(&self, message: &Message) -> bool {
        message.headers.get(&self.name) == Some(&self.value)
    }
}

/// Accepts messages that carry header `name`. From [`has_header`].
#[derive(Debug, Clone)]
pub struct HasHeader(String);

/// Accepts messages that carry header `name`, whatever its value.
pub fn has_header(name: impl Into<String>) -> HasHeader {
    HasHeader(name.into())
}

impl Filter for HasHeader {
    fn matches(&self, message: &Message) -> bool {
        message.headers.contains(&self.0)
    }
}

/// Accepts messages with a given key. From [`key`].
#[derive(Debug, Clone)]
pub struct KeyIs(Bytes);

/// Accepts messages whose key is `key` (byte for byte).
///
/// ```
/// use faststream_core::filter::{key, Filter};
/// use faststream_core::Message;
/// let mut message = Message::new("t", "{}");
/// assert!(!key("eu").matches(&message));
/// message.key = Some("eu".into());
/// assert!(key("eu").matches(&message));
/// ```
pub fn key(key: impl Into<Bytes>) -> KeyIs {
    KeyIs(key.into())
}

impl Filter for KeyIs {
    fn matches(&self, message: &Message) -> bool {
        message.key.as_ref() == Some(&self.0)
    }
}

/// Accepts messages of a media type. From [`content_type`].
#[derive(Debug, Clone)]
pub struct ContentTypeIs(String);

/// Accepts messages whose `content-type` header names `media_type` (compared without
/// parameters such as `; charset=utf-8`, ignoring case).
///
/// ```
/// use faststream_core::filter::{content_type, Filter};
/// use faststream_core::Message;
/// let mut message = Message::new("t", "hello");
/// message.headers.append("content-type", "text/plain; charset=utf-8");
/// assert!(content_type("text/plain").matches(&message));
/// assert!(!content_type("application/json").matches(&message));
/// ```
pub fn content_type(media_type: impl Into<String>) -> ContentTypeIs {
    ContentTypeIs(media_type.into())
}

impl Filter for ContentTypeIs {
    fn matches(&self, message: &Message) -> bool {
        message
            .headers
            .get_str(CONTENT_TYPE)
            .and_then(|value| value.split(';').next())
            .is_some_and(|media| media.trim().eq_ignore_ascii_case(self.0.trim()))
    }
}

/// Accepts messages whose payload decodes as `T`. From [`decodes`] and [`payload`].
pub struct Decodes<T> {
    schema: Option<SchemaFn>,
    _marker: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Decodes<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decodes")
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

/// Accepts messages whose payload decodes as `T` by the handlers' rules (JSON, or text for
/// `text/plain`). The payload is decoded again by the handler; use [`payload`] to document
/// `T` in the AsyncAPI document too.
///
/// ```
/// use faststream_core::filter::{decodes, Filter};
/// use faststream_core::Message;
/// #[derive(serde::Deserialize)]
/// struct Order { id: i64 }
/// assert!(decodes::<Order>().matches(&Message::new("t", r#"{"id": 1}"#)));
/// assert!(!decodes::<Order>().matches(&Message::new("t", r#"{"id": "x"}"#)));
/// ```
pub fn decodes<T: DeserializeOwned + 'static>() -> Decodes<T> {
    Decodes {
        schema: None,
        _marker: PhantomData,
    }
}

/// [`decodes`], with `T`'s schema in the AsyncAPI document.
pub fn payload<T: DeserializeOwned + schemars::JsonSchema + 'static>() -> Decodes<T> {
    Decodes {
        schema: Some(schema_of::<T>),
        _marker: PhantomData,
    }
}

impl<T: DeserializeOwned + 'static> Filter for Decodes<T> {
    fn matches(&self, message: &Message) -> bool {
        codec::decode_message::<T>(message).is_ok()
    }

    fn payload_schema(&self) -> Option<SchemaFn> {
        self.schema
    }
}

/// Both filters accept. From [`Filter::and`].
#[derive(Debug, Clone)]
pub struct And<A, B>(A, B);

impl<A: Filter, B: Filter> Filter for And<A, B> {
    fn matches(&self, message: &Message) -> bool {
        self.0.matches(message) && self.1.matches(message)
    }

    fn payload_schema(&self) -> Option<SchemaFn> {
        self.0.payload_schema().or_else(|| self.1.payload_schema())
    }
}

/// A filter with a documented payload. From [`Filter::with_schema`].
#[derive(Debug, Clone)]
pub struct WithSchema<F>(F, SchemaFn);

impl<F: Filter> Filter for WithSchema<F> {
    fn matches(&self, message: &Message) -> bool {
        self.0.matches(message)
    }

    fn payload_schema(&self) -> Option<SchemaFn> {
        Some(self.1)
    }
}

/// The branches of a [`Filtered`] handler, tried in order (the first added first). `M` is a
/// marker of the branches' handler types.
pub trait Branches<M>: Clone + Send + Sync + 'static {
    /// The future of whichever branch handles a message.
    type Future: Future<Output = Reply> + Send + 'static;

    /// Calls the first branch whose filter accepts `message`; `None` if none does.
    fn dispatch(
        &self,
        message: &Message,
        cx: &MessageContext<'_>,
    ) -> Option<Result<Self::Future, ExtractError>>;

    /// Checks every branch's handler against the app ([`Handler::check`]).
    fn check(cx: &CheckContext<'_>) -> Result<(), ExtractError>;

    /// How many branches.
    fn len(&self) -> usize;

    /// Whether there are no branches.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the documented payload schemas of the branches, in order.
    fn schemas(&self, out: &mut Vec<SchemaFn>);
}

/// No branch: the start of a [`Filtered`] handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBranch;

impl Branches<()> for NoBranch {
    type Future = Ready<Reply>;

    fn dispatch(
        &self,
        _message: &Message,
        _cx: &MessageContext<'_>,
    ) -> Option<Result<Self::Future, ExtractError>> {
        None
    }

    fn check(_cx: &CheckContext<'_>) -> Result<(), ExtractError> {
        Ok(())
    }

    fn len(&self) -> usize {
        0
    }

    fn schemas(&self, _out: &mut Vec<SchemaFn>) {}
}

/// The branches `prev`, then `handler` for what `filter` accepts. From [`Filtered::when`].
pub struct When<Prev, F, H, T> {
    prev: Prev,
    filter: Arc<F>,
    handler: H,
    _marker: PhantomData<fn() -> T>,
}

impl<Prev: Clone, F, H: Clone, T> Clone for When<Prev, F, H, T> {
    fn clone(&self) -> Self {
        Self {
            prev: self.prev.clone(),
            filter: Arc::clone(&self.filter),
            handler: self.handler.clone(),
            _marker: PhantomData,
        }
    }
}

impl<Prev: std::fmt::Debug, F, H, T> std::fmt::Debug for When<Prev, F, H, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("When")
            .field("prev", &self.prev)
            .finish_non_exhaustive()
    }
}

impl<Prev, PM, F, H, T> Branches<(PM, T)> for When<Prev, F, H, T>
where
    Prev: Branches<PM>,
    F: Filter,
    H: Handler<T>,
    T: Send + 'static,
    PM: 'static,
{
    type Future = Either<Prev::Future, H::Future>;

    fn dispatch(
        &self,
        message: &Message,
        cx: &MessageContext<'_>,
    ) -> Option<Result<Self::Future, ExtractError>> {
        if let Some(earlier) = self.prev.dispatch(message, cx) {
            return Some(earlier.map(Either::Left));
        }
        if self.filter.matches(message) {
            return Some(self.handler.call(message, cx).map(Either::Right));
        }
        None
    }

    fn check(cx: &CheckContext<'_>) -> Result<(), ExtractError> {
        Prev::check(cx)?;
        H::check(cx)
    }

    fn len(&self) -> usize {
        self.prev.len() + 1
    }

    fn schemas(&self, out: &mut Vec<SchemaFn>) {
        self.prev.schemas(out);
        out.extend(self.filter.payload_schema());
    }
}

/// What a [`Filtered`] handler does with a message no branch accepts.
pub trait Fallback<M>: Clone + Send + Sync + 'static {
    /// The future of the default handler.
    type Future: Future<Output = Reply> + Send + 'static;

    /// Calls the default handler; `None` without one.
    fn fallback(
        &self,
        message: &Message,
        cx: &MessageContext<'_>,
    ) -> Option<Result<Self::Future, ExtractError>>;

    /// Checks the default handler against the app.
    fn check(cx: &CheckContext<'_>) -> Result<(), ExtractError>;

    /// The default handler's documented payload schema.
    fn schema(&self) -> Option<SchemaFn>;
}

/// No default handler: a message no branch accepts fails with [`ExtractError::NoHandler`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDefault;

impl Fallback<()> for NoDefault {
    type Future = Ready<Reply>;

    fn fallback(
        &self,
        _message: &Message,
        _cx: &MessageContext<'_>,
    ) -> Option<Result<Self::Future, ExtractError>> {
        None
    }

    fn check(_cx: &CheckContext<'_>) -> Result<(), ExtractError> {
        Ok(())
    }

    fn schema(&self) -> Option<SchemaFn> {
        None
    }
}

/// The default handler of a [`Filtered`] handler. From [`Filtered::otherwise`].
pub struct Otherwise<H, T> {
    handler: H,
    schema: Option<SchemaFn>,
    _marker: PhantomData<fn() -> T>,
}

impl<H: Clone, T> Clone for Otherwise<H, T> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
            schema: self.schema,
            _marker: PhantomData,
        }
    }
}

impl<H, T> std::fmt::Debug for Otherwise<H, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Otherwise").finish_non_exhaustive()
    }
}

impl<H: Handler<T>, T: Send + 'static> Fallback<T> for Otherwise<H, T> {
    type Future = H::Future;

    fn fallback(
        &self,
        message: &Message,
        cx: &MessageContext<'_>,
    ) -> Option<Result<Self::Future, ExtractError>> {
        Some(self.handler.call(message, cx))
    }

    fn check(cx: &CheckContext<'_>) -> Result<(), ExtractError> {
        H::check(cx)
    }

    fn schema(&self) -> Option<SchemaFn> {
        self.schema
    }
}

/// Several handlers on one subscriber, each behind a [`Filter`], tried in order, with an
/// optional default (see [the module docs](self)). A [`Handler`] itself.
#[derive(Debug, Clone)]
pub struct Filtered<B = NoBranch, D = NoDefault> {
    branches: B,
    default: D,
}

impl Default for Filtered {
    fn default() -> Self {
        Self::new()
    }
}

impl Filtered {
    /// No handlers yet.
    pub fn new() -> Self {
        Self {
            branches: NoBranch,
            default: NoDefault,
        }
    }
}

impl<B> Filtered<B, NoDefault> {
    /// Adds `handler` for the messages `filter` accepts and the branches added before did
    /// not take.
    pub fn when<F, H, T>(self, filter: F, handler: H) -> Filtered<When<B, F, H, T>, NoDefault>
    where
        F: Filter,
        H: Handler<T>,
        T: Send + 'static,
    {
        Filtered {
            branches: When {
                prev: self.branches,
                filter: Arc::new(filter),
                handler,
                _marker: PhantomData,
            },
            default: NoDefault,
        }
    }

    /// Sets the handler of the messages no branch accepts.
    pub fn otherwise<H, T>(self, handler: H) -> Filtered<B, Otherwise<H, T>>
    where
        H: Handler<T>,
        T: Send + 'static,
    {
        Filtered {
            branches: self.branches,
            default: Otherwise {
                handler,
                schema: None,
                _marker: PhantomData,
            },
        }
    }
}

impl<B, H, T> Filtered<B, Otherwise<H, T>> {
    /// Documents the default handler's payload as `schema` in the AsyncAPI document.
    pub fn default_schema(mut self, schema: SchemaFn) -> Self {
        self.default.schema = Some(schema);
        self
    }
}

/// The marker of a [`Filtered`] handler's [`Handler`] impl.
#[derive(Debug)]
pub struct FilteredMarker<BM, DM>(PhantomData<fn() -> (BM, DM)>);

// Not offered as a suggestion when a function is not a handler.
#[diagnostic::do_not_recommend]
impl<B, D, BM, DM> Handler<FilteredMarker<BM, DM>> for Filtered<B, D>
where
    B: Branches<BM>,
    D: Fallback<DM>,
    BM: 'static,
    DM: 'static,
{
    type Future = Either<B::Future, D::Future>;

    fn call(
        &self,
        message: &Message,
        cx: &MessageContext<'_>,
    ) -> Result<Self::Future, ExtractError> {
        if let Some(call) = self.branches.dispatch(message, cx) {
            return call.map(Either::Left);
        }
        match self.default.fallback(message, cx) {
            Some(call) => call.map(Either::Right),
            None => Err(ExtractError::NoHandler {
                filters: self.branches.len(),
            }),
        }
    }

    fn check(cx: &CheckContext<'_>) -> Result<(), ExtractError> {
        B::check(cx)?;
        D::check(cx)
    }

    fn payload_schemas(&self) -> Vec<SchemaFn> {
        let mut schemas = Vec::with_capacity(self.branches.len() + 1);
        self.branches.schemas(&mut schemas);
        schemas.extend(self.default.schema());
        schemas
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::extract::{AppState, Key, State};

    async fn run<T>(handler: &impl Handler<T>, message: &Message) -> Result<String, ExtractError> {
        let mut state = AppState::default();
        state.insert(7_i64);
        let call = handler.call(message, &MessageContext::new(&state, None))?;
        match call.await {
            Reply::Publish(out) => Ok(String::from_utf8_lossy(&out.payload).into_owned()),
            other => panic!("{other:?}"),
        }
    }

    #[derive(serde::Deserialize, schemars::JsonSchema)]
    struct Order {
        id: i64,
    }

    fn json(payload: &str) -> Message {
        let mut message = Message::new("t", payload.to_owned());
        message.headers.append(CONTENT_TYPE, "application/json");
        message
    }

    #[tokio::test]
    async fn branches_are_tried_in_order_then_the_default() {
        let filtered = Filtered::new()
            .when(header("type", "special"), |n: i64| async move {
                format!("special {n}")
            })
            .when(payload::<Order>(), |o: Order| async move {
                format!("order {}", o.id)
            })
            .when(key("k"), |k: Key<String>, s: State<i64>| async move {
                format!("key {} {}", k.0, s.0)
            });
        let mut special = json("5");
        special.headers.append("type", "special");
        assert_eq!(run(&filtered, &special).await.unwrap(), "special 5");
        // Also an order, but the first branch comes first.
        let mut both = json(r#"{"id": 1}"#);
        both.headers.append("type", "special");
        assert!(matches!(
            run(&filtered, &both).await,
            Err(ExtractError::Payload(_))
        ));
        assert_eq!(
            run(&filtered, &json(r#"{"id": 2}"#)).await.unwrap(),
            "order 2"
        );
        let mut keyed = json("[]");
        keyed.key = Some("k".into());
        assert_eq!(run(&filtered, &keyed).await.unwrap(), "key k 7");
        let unmatched = run(&filtered, &json("[]")).await.unwrap_err();
        assert!(matches!(unmatched, ExtractError::NoHandler { filters: 3 }));
        assert_eq!(filtered.payload_schemas().len(), 1);

        let with_default =
            filtered.otherwise(|m: Message| async move { format!("default {}", m.offset) });
        assert_eq!(run(&with_default, &json("[]")).await.unwrap(), "default 0");
        let state = AppState::default();
        // `State<i64>` in a branch is checked at start like any handler's parameters.
        fn check_of<T, H: Handler<T>>(_: &H, state: &AppState) -> Result<(), ExtractError> {
            H::check(&CheckContext::new(state))
        }
        assert!(matches!(
            check_of(&with_default, &state),
            Err(ExtractError::MissingState(_))
        ));
    }

    #[test]
    fn content_type_and_combinators() {
        let mut message = json(r#"{"id": 1}"#);
        message.headers.append("tenant", "eu");
        assert!(content_type("APPLICATION/JSON").matches(&message));
        assert!(has_header("tenant").matches(&message));
        let both = header("tenant", "eu").and(payload::<Order>());
        assert!(both.matches(&message));
        assert!(both.payload_schema().is_some());
        assert!(!header("tenant", "us")
            .and(decodes::<Order>())
            .matches(&message));
        let documented = (|_: &Message| true).with_schema(schema_of::<Order>);
        assert!(documented.payload_schema().is_some());
    }
}
