//! What a handler returns, turned into something to publish (or an error).

use crate::error::BoxError;
use crate::message::codec::{self, Codec, Encoded};
use crate::message::{Headers, CORRELATION_ID};
use bytes::Bytes;
use serde::Serialize;

/// A handler's result, ready for the runtime: publish a body, publish nothing, or fail.
#[derive(Debug)]
pub enum Reply {
    /// Nothing to publish (`()`, `None`).
    Nothing,
    /// Publish this to every publisher of the subscriber and to an incoming `reply_to`.
    Publish(Outgoing),
    /// The handler failed; the subscriber's ack policy decides what happens to the message.
    Failed(BoxError),
}

/// An encoded body with the record fields a handler may set through [`Response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Encoded payload.
    pub payload: Bytes,
    /// Value for the `content-type` header.
    pub content_type: &'static str,
    /// Record key.
    pub key: Option<Bytes>,
    /// Extra headers. The runtime adds `content-type`, and `correlation_id` unless one is
    /// here (see [`Outgoing::correlation_id`]).
    pub headers: Headers,
    /// Target partition; the partitioner decides when `None`.
    pub partition: Option<i32>,
    /// Record timestamp in milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
}

// A reply moves through several futures per message: at 128 bytes or less each move is
// inline, past it a call to `memcpy` (issue 21's profile). The correlation id lives in the
// headers, where it goes on the wire, rather than in a field of 32 bytes more.
const _: () = assert!(std::mem::size_of::<Reply>() <= 128);

impl Outgoing {
    /// The correlation id to write: the `correlation_id` header. Without one, the records
    /// carry the incoming message's (or a new one).
    ///
    /// ```
    /// use faststream_core::{IntoReply, Reply, Response};
    /// let Reply::Publish(out) = Response::new("done").correlation_id("c-7").into_reply() else {
    ///     unreachable!()
    /// };
    /// assert_eq!(out.correlation_id().map(|id| &id[..]), Some(&b"c-7"[..]));
    /// ```
    pub fn correlation_id(&self) -> Option<&Bytes> {
        self.headers.get(CORRELATION_ID)
    }

    #[inline]
    fn from_encoded(encoded: Encoded) -> Reply {
        match encoded {
            Encoded::Nothing => Reply::Nothing,
            Encoded::Body {
                payload,
                content_type,
            } => Reply::Publish(Outgoing {
                payload,
                content_type,
                key: None,
                headers: Headers::new(),
                partition: None,
                timestamp: None,
            }),
            Encoded::Failed(message) => Reply::Failed(message.into()),
        }
    }
}

/// A return value carrying record fields besides the body.
///
/// ```
/// use faststream_core::Response;
/// async fn handler(id: i64) -> Response<String> {
///     Response::new(format!("done {id}")).key(id.to_string()).header("source", "billing")
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Response<T> {
    body: T,
    key: Option<Bytes>,
    headers: Headers,
    partition: Option<i32>,
    timestamp: Option<i64>,
    correlation_id: Option<Bytes>,
}

impl<T> Response<T> {
    /// A response with this body.
    pub fn new(body: T) -> Self {
        Self {
            body,
            key: None,
            headers: Headers::new(),
            partition: None,
            timestamp: None,
            correlation_id: None,
        }
    }

    /// Sets the correlation id of what is published, instead of the incoming message's.
    pub fn correlation_id(mut self, id: impl Into<Bytes>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the record key.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the header `name`, replacing any header of that name set before (as
    /// [`Record::header`](crate::Record::header) does). To send a name several times, use
    /// [`Response::append_header`].
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Adds a header, keeping those of the same name set before (Kafka allows repeated
    /// names), as [`Record::append_header`](crate::Record::append_header) does.
    ///
    /// ```
    /// use faststream_core::Response;
    /// async fn handler(id: i64) -> Response<i64> {
    ///     Response::new(id).append_header("hop", "billing").append_header("hop", "audit")
    /// }
    /// ```
    pub fn append_header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Sends to this partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the record timestamp (milliseconds since the Unix epoch).
    pub fn timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }
}

/// Turns a handler's return value into a [`Reply`]. `M` is a marker that keeps the impls
/// apart; you never name it.
///
/// Implemented for every `Serialize` type (`String` as text, `bytes::Bytes` raw, `()` and `None`
/// as nothing, the rest JSON), for `Result<T, E>` with `E: std::error::Error` or a boxed
/// error, and for [`Response`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned from a handler",
    note = "return a `serde::Serialize` type, `()`, `Response<T>`, or `Result<T, E>` where `E: std::error::Error`"
)]
pub trait IntoReply<M> {
    /// Converts the value.
    fn into_reply(self) -> Reply;

    /// Converts the value, structured bodies encoded with the subscriber's `codec` (JSON when
    /// `None`; text, bytes and nothing stay as [`IntoReply::into_reply`] makes them). The
    /// default ignores the codec, for replies that encode themselves.
    fn into_reply_with(self, codec: Option<&dyn Codec>) -> Reply
    where
        Self: Sized,
    {
        let _ = codec;
        self.into_reply()
    }
}

#[doc(hidden)]
#[derive(Debug)]
pub enum ViaSerialize {}
#[doc(hidden)]
#[derive(Debug)]
pub enum ViaResponse {}
#[doc(hidden)]
#[derive(Debug)]
pub struct ViaResult<M>(std::marker::PhantomData<M>);
#[doc(hidden)]
#[derive(Debug)]
pub struct ViaBoxedResult<M>(std::marker::PhantomData<M>);

impl<T: Serialize + 'static> IntoReply<ViaSerialize> for T {
    fn into_reply(self) -> Reply {
        self.into_reply_with(None)
    }

    fn into_reply_with(self, codec: Option<&dyn Codec>) -> Reply {
        // The most common reply, a `String`, moves into the payload instead of being copied
        // through serde (which only lends it out as `&str`).
        let mut value = Some(self);
        if let Some(text) = (&mut value as &mut dyn std::any::Any).downcast_mut::<Option<String>>()
        {
            if let Some(text) = text.take() {
                return Outgoing::from_encoded(Encoded::Body {
                    payload: Bytes::from(text),
                    content_type: codec::TEXT_PLAIN,
                });
            }
        }
        let Some(value) = value else {
            return Reply::Nothing;
        };
        match codec::encode_with(&value, codec) {
            Ok(encoded) => Outgoing::from_encoded(encoded),
            Err(err) => Reply::Failed(Box::new(err)),
        }
    }
}

impl<T: Serialize + 'static> IntoReply<ViaResponse> for Response<T> {
    fn into_reply(self) -> Reply {
        self.into_reply_with(None)
    }

    fn into_reply_with(self, codec: Option<&dyn Codec>) -> Reply {
        let mut reply = self.body.into_reply_with(codec);
        if let Reply::Publish(out) = &mut reply {
            out.key = self.key;
            out.headers = self.headers;
            out.partition = self.partition;
            out.timestamp = self.timestamp;
            if let Some(id) = self.correlation_id {
                out.headers.insert_static(CORRELATION_ID, id);
            }
        }
        reply
    }
}

impl<T, E, M> IntoReply<ViaResult<M>> for Result<T, E>
where
    T: IntoReply<M>,
    E: std::error::Error + Send + Sync + 'static,
{
    fn into_reply(self) -> Reply {
        self.into_reply_with(None)
    }

    fn into_reply_with(self, codec: Option<&dyn Codec>) -> Reply {
        match self {
            Ok(value) => value.into_reply_with(codec),
            Err(err) => Reply::Failed(Box::new(err)),
        }
    }
}

impl<T, M> IntoReply<ViaBoxedResult<M>> for Result<T, BoxError>
where
    T: IntoReply<M>,
{
    fn into_reply(self) -> Reply {
        self.into_reply_with(None)
    }

    fn into_reply_with(self, codec: Option<&dyn Codec>) -> Reply {
        match self {
            Ok(value) => value.into_reply_with(codec),
            Err(err) => Reply::Failed(err),
        }
    }
}

#[doc(hidden)]
#[derive(Debug)]
pub enum ViaProto {}

/// A `prost` message, published with `content-type: application/protobuf`.
#[cfg(feature = "protobuf")]
impl<T: prost::Message + 'static> IntoReply<ViaProto> for codec::Proto<T> {
    fn into_reply(self) -> Reply {
        self.into_reply_with(None)
    }

    /// Framed by a codec that frames (a schema registry's), else the message as it is.
    fn into_reply_with(self, codec: Option<&dyn Codec>) -> Reply {
        match self.encode_with(codec) {
            Ok((payload, content_type)) => Outgoing::from_encoded(Encoded::Body {
                payload,
                content_type,
            }),
            Err(err) => Reply::Failed(Box::new(err)),
        }
    }
}

/// The schema of what a handler's return type publishes, for `#[subscriber]`'s publishers.
///
/// Generated code runs the three stages on the concrete return type `R`:
///
/// ```
/// use faststream_core::reply::schema_probe::{Probe, StripResponse, StripResult, ToSchema};
/// # #[derive(schemars::JsonSchema)] struct Invoice { id: u64 }
/// let probe = Probe::<Result<faststream_core::Response<Invoice>, std::io::Error>>::new();
/// let probe = (&&probe).strip_result();
/// let probe = (&&probe).strip_response();
/// assert!((&&&probe).schema().is_some());
/// ```
///
/// Why probes and autoref: `Result<T, E>` is itself `JsonSchema` and `()` is too, so "the `Ok`
/// type's schema, else the type's own, else none" cannot be blanket impls of one trait
/// (they would overlap). Each stage instead has impls on `Probe<R>` behind different numbers of
/// `&`; method lookup on the concrete type tries the most-referenced receiver first and takes
/// the first impl whose bounds hold (autoref specialization). It only works where `R` is a
/// concrete type, hence in the expansion, not in a generic function.
#[doc(hidden)]
pub mod schema_probe {
    use super::Response;
    use crate::handler::schema::SchemaFn;
    use schemars::r#gen::SchemaGenerator;
    use schemars::JsonSchema;
    use std::marker::PhantomData;

    /// Stands for the type `T`; carries no value.
    #[derive(Debug)]
    pub struct Probe<T>(PhantomData<T>);

    impl<T> Probe<T> {
        /// The probe of `T`.
        pub const fn new() -> Self {
            Self(PhantomData)
        }
    }

    impl<T> Default for Probe<T> {
        fn default() -> Self {
            Self::new()
        }
    }

    /// Stage 1, called as `(&&probe).strip_result()`: `Result<T, E>` publishes `T`.
    pub trait StripResult {
        /// What is published.
        type Body;
        /// The probe of what is published.
        fn strip_result(&self) -> Probe<Self::Body>;
    }

    impl<T, E> StripResult for &Probe<Result<T, E>> {
        type Body = T;
        fn strip_result(&self) -> Probe<T> {
            Probe::new()
        }
    }

    impl<T> StripResult for Probe<T> {
        type Body = T;
        fn strip_result(&self) -> Probe<T> {
            Probe::new()
        }
    }

    /// Stage 2, called as `(&&probe).strip_response()`: `Response<T>` publishes `T`.
    pub trait StripResponse {
        /// What is published.
        type Body;
        /// The probe of what is published.
        fn strip_response(&self) -> Probe<Self::Body>;
    }

    impl<T> StripResponse for &Probe<Response<T>> {
        type Body = T;
        fn strip_response(&self) -> Probe<T> {
            Probe::new()
        }
    }

    impl<T> StripResponse for Probe<T> {
        type Body = T;
        fn strip_response(&self) -> Probe<T> {
            Probe::new()
        }
    }

    /// Stage 3, called as `(&&&probe).schema()`: `()` publishes nothing, a `JsonSchema` type its
    /// schema, anything else an undocumented payload.
    pub trait ToSchema {
        /// The schema, if there is one to write.
        fn schema(&self) -> Option<SchemaFn>;
    }

    impl ToSchema for &&Probe<()> {
        fn schema(&self) -> Option<SchemaFn> {
            None
        }
    }

    impl<T: JsonSchema> ToSchema for &Probe<T> {
        fn schema(&self) -> Option<SchemaFn> {
            Some(|generator: &mut SchemaGenerator| generator.subschema_for::<T>())
        }
    }

    impl<T> ToSchema for Probe<T> {
        fn schema(&self) -> Option<SchemaFn> {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply_of<M>(v: impl IntoReply<M>) -> Reply {
        v.into_reply()
    }

    #[test]
    fn return_values_map_to_replies() {
        assert!(matches!(reply_of(()), Reply::Nothing));
        match reply_of(String::from("hi")) {
            Reply::Publish(out) => {
                assert_eq!(out.payload, "hi");
                assert_eq!(out.content_type, codec::TEXT_PLAIN);
            }
            other => panic!("{other:?}"),
        }
        let io: Result<String, std::io::Error> = Err(std::io::Error::other("disk"));
        assert!(matches!(reply_of(io), Reply::Failed(e) if e.to_string() == "disk"));
        let boxed: Result<(), BoxError> = Err("boxed".into());
        assert!(matches!(reply_of(boxed), Reply::Failed(e) if e.to_string() == "boxed"));
        let text_err: Result<u8, String> = Err("as text".into());
        assert!(matches!(reply_of(text_err), Reply::Failed(e) if e.to_string() == "as text"));
    }

    #[test]
    fn header_replaces_and_append_header_keeps() {
        match reply_of(
            Response::new(1)
                .header("h", "old")
                .header("h", "new")
                .append_header("hop", "a")
                .append_header("hop", "b"),
        ) {
            Reply::Publish(out) => {
                let headers: Vec<_> = out.headers.iter().map(|(n, v)| (n, &v[..])).collect();
                assert_eq!(headers, [("h", &b"new"[..]), ("hop", b"a"), ("hop", b"b")]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn response_sets_record_fields() {
        match reply_of(
            Response::new(serde_json::json!({"a": 1}))
                .key("k")
                .partition(2)
                .header("h", "v"),
        ) {
            Reply::Publish(out) => {
                assert_eq!(out.payload, r#"{"a":1}"#);
                assert_eq!(out.key.as_deref(), Some(&b"k"[..]));
                assert_eq!(out.partition, Some(2));
                assert_eq!(out.headers.get_str("h"), Some("v"));
            }
            other => panic!("{other:?}"),
        }
    }
}
