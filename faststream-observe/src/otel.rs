//! OpenTelemetry tracing per the messaging semantic conventions.
//!
//! - Each handled message gets a `process {topic}` span of kind CONSUMER. Its parent is the
//!   context in the message's W3C `traceparent`/`tracestate` headers (what this layer, or
//!   Python FastStream's OpenTelemetry middleware, put there when publishing), so one trace
//!   follows a message through a chain of services.
//! - Each publish gets a `send {topic}` span of kind PRODUCER, and the record carries the
//!   span's context in its `traceparent`/`tracestate` headers.
//! - A reply published for a handled message is a child of that message's `process` span: the
//!   handler layer writes the `process` span's context into the reply's headers, and the
//!   publish layer starts `send` under the context it finds there. When the reply is sent
//!   on the thread its handler ran on (the usual case), that is the `process` span's own
//!   context, kept by the thread for that one send: the `send` span's parent is then local
//!   (`parent_span_is_remote` false, and a parent-based sampler applies its local-parent
//!   rule); otherwise the context parsed from the reply's `traceparent` (a remote parent).
//!   Either way the ids are the same. Records published from
//!   inside a handler by other means (a [`Publisher`](faststream_core::Publisher)) are
//!   children of the span current there, which is the `process` span.
//!
//! Attributes: `messaging.system` = `kafka`, `messaging.operation.type` (`process`/`send`),
//! `messaging.destination.name`, `messaging.destination.partition.id`,
//! `messaging.consumer.group.name` (consumer side), `messaging.kafka.offset`,
//! `messaging.kafka.message.key` (when the key is UTF-8), `messaging.message.conversation_id`
//! (the correlation id), `messaging.message.body.size`, and `error.type` with an error status
//! on failure.
//!
//! Spans cost CPU on every message (see BENCHMARKS.md); for high-rate topics give the tracer
//! provider a sampler (e.g. parent-based ratio sampling). Every attribute that costs no
//! allocation is given when the span starts, so a sampler may look at it; the key and the
//! conversation id are made only for a span that records. A sampled-out message still passes
//! its context on, flagged not sampled.
//!
//! The SDK's batch span processor drops the spans that do not fit its queue
//! (`OTEL_BSP_MAX_QUEUE_SIZE`, 2,048 spans by default), logging only the first drop. Tracing
//! every message of a pipeline at 190,000-270,000 records/s (two spans each), the benchmark lost
//! 8-16 % of its spans that way; a queue of 16,384 kept every one. Raise it
//! (`BatchConfigBuilder::with_max_queue_size`, or the variable) or sample.
//!
//! ```
//! use faststream_core::App;
//! use faststream_observe::otel::Otel;
//! use opentelemetry_sdk::trace::SdkTracerProvider;
//! use opentelemetry::trace::TracerProvider as _;
//!
//! # fn app<B: faststream_core::Broker>(app: App<B>) -> App<B> {
//! let provider = SdkTracerProvider::builder().build();
//! Otel::new(provider.tracer("billing")).install(app)
//! # }
//! ```

use faststream_core::message::CORRELATION_ID;
use faststream_core::middleware::{BoxError, Rejected};
use faststream_core::policy::error_type;
use faststream_core::{
    App, Broker, Headers, Message, PublishError, Record, Reply, SubscriberConfig,
};
use opentelemetry::context::FutureExt as _;
use opentelemetry::global::ObjectSafeSpan;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer,
};
use opentelemetry::{Context as OtelContext, KeyValue, Value};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr as _;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll};

/// The header keys the W3C trace context uses.
const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// The length of a version-00 `traceparent`: `00-` 32 hex digits `-` 16 hex digits `-` 2.
const TRACEPARENT_LEN: usize = 55;

/// Partitions whose `messaging.destination.partition.id` string is made once per process.
const SHARED_PARTITION_IDS: usize = 512;

/// Room for the attributes a span of these layers may get (a `process` span up to nine).
const SPAN_ATTRIBUTES: usize = 10;

/// Topics whose span names are made once per process (see [`SpanNames`]).
const SHARED_SPAN_NAMES: usize = 1024;

/// Consumer groups whose attribute value is made once per process (see [`group_value`]).
const SHARED_GROUPS: usize = 1024;

/// Each byte's two lowercase hex digits, for writing ids without the formatting machinery: a
/// lookup per byte rather than two shifts and two bounds-checked lookups.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0; 2]; 256];
    let mut byte = 0;
    while byte < 256 {
        pairs[byte] = [DIGITS[byte >> 4], DIGITS[byte & 0x0f]];
        byte += 1;
    }
    pairs
};

/// Marks a byte that is no lowercase hex digit in [`HEX_VALUES`].
const NOT_HEX: u8 = 0xff;

/// Each byte's value as a lowercase hex digit, or [`NOT_HEX`].
const HEX_VALUES: [u8; 256] = {
    let mut values = [NOT_HEX; 256];
    let mut digit = 0;
    while digit < 16 {
        values[b"0123456789abcdef"[digit] as usize] = digit as u8;
        digit += 1;
    }
    values
};

/// Spans for an app's handled and published messages, from one tracer. Cloning shares it.
#[derive(Clone)]
pub struct Otel {
    tracer: Arc<dyn StartSpan>,
    propagator: Arc<TraceContextPropagator>,
}

/// Starts a span: the one thing these layers ask of a tracer, object-safe so that `Otel`
/// needs no type parameter.
///
/// The span keeps the tracer's own type. The SDK's `BoxedTracer` would box every span once
/// more: an allocation per span, two per record of a pipeline (issue 21's tracing profile).
/// That holds for [`Otel::new`]; the global provider's tracer ([`Otel::global`]) is a
/// `BoxedTracer` itself.
trait StartSpan: Send + Sync {
    /// A span the handler runs in, in the context that holds it (the context boxes it and
    /// shares it behind a lock).
    fn start(&self, builder: SpanBuilder, parent: &OtelContext) -> OtelContext;

    /// A span that never becomes current (a `send` span), in one box: no context, so no
    /// shared copy and no lock, which were an allocation and two locked calls per record.
    fn start_detached(&self, builder: SpanBuilder, parent: &OtelContext) -> DetachedSpan;
}

/// A span held by one owner only (see [`StartSpan::start_detached`]).
type DetachedSpan = Box<dyn ObjectSafeSpan + Send + Sync>;

/// A [`StartSpan`] for any tracer whose spans may cross threads.
struct TracerOf<T>(T);

impl<T> StartSpan for TracerOf<T>
where
    T: Tracer + Send + Sync,
    T::Span: Send + Sync + 'static,
{
    fn start(&self, builder: SpanBuilder, parent: &OtelContext) -> OtelContext {
        parent.with_span(self.0.build_with_context(builder, parent))
    }

    fn start_detached(&self, builder: SpanBuilder, parent: &OtelContext) -> DetachedSpan {
        Box::new(self.0.build_with_context(builder, parent))
    }
}

impl std::fmt::Debug for Otel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Otel")
    }
}

impl Otel {
    /// Spans from `tracer` (e.g. `provider.tracer("my-service")` of an
    /// `opentelemetry_sdk::trace::SdkTracerProvider`).
    pub fn new<T>(tracer: T) -> Self
    where
        T: Tracer + Send + Sync + 'static,
        T::Span: Send + Sync + 'static,
    {
        Self {
            tracer: Arc::new(TracerOf(tracer)),
            propagator: Arc::new(TraceContextPropagator::new()),
        }
    }

    /// Spans from the global tracer provider (`opentelemetry::global`), scope `faststream`.
    /// The tracer is taken when this is called: install the provider first.
    pub fn global() -> Self {
        Self {
            tracer: Arc::new(TracerOf(opentelemetry::global::tracer("faststream"))),
            propagator: Arc::new(TraceContextPropagator::new()),
        }
    }

    /// The handler-side layer of the subscriber `config` describes.
    pub fn process_layer(&self, config: &SubscriberConfig) -> ProcessSpanLayer {
        ProcessSpanLayer {
            otel: self.clone(),
            group: group_value(config.effective_group_id()),
        }
    }

    /// The publish-side layer.
    pub fn send_layer(&self) -> SendSpanLayer {
        SendSpanLayer { otel: self.clone() }
    }

    /// Adds both layers to `app`.
    // Hidden: the runtime's `App` is not part of the public API; users install this with
    // `FastStream::otel`, which calls this.
    #[doc(hidden)]
    pub fn install<B: Broker>(&self, app: App<B>) -> App<B> {
        let process = self.clone();
        app.layer_for(move |config: &SubscriberConfig| process.process_layer(config))
            .publish_layer(self.send_layer())
    }

    /// The `{operation} {topic}` span of `names` with the attributes every such span has and
    /// `known` (`last_name`: the calling service's last span name, see [`SpanNames`]).
    ///
    /// Attributes that cost no allocation are given at the start, where a sampler may look at
    /// them too: each one set on a started span took the context's lock and two dynamic calls
    /// (this, with the `send` span out of its context, took issue 21's traced pipeline from
    /// 34,810 to 33,742 instructions per record). Those that allocate (the key, the
    /// conversation id) are given only to a span that records, so a sampled-out message costs
    /// little more than its context.
    fn span_builder(
        names: &SpanNames,
        kind: SpanKind,
        topic: &Arc<str>,
        last_name: &mut Option<(Arc<str>, &'static str)>,
        known: impl IntoIterator<Item = KeyValue>,
    ) -> SpanBuilder {
        // Room for the attributes a recording span is given after the start.
        let (name, destination) = names.of(topic, last_name);
        let mut attributes = Vec::with_capacity(SPAN_ATTRIBUTES);
        attributes.extend([
            KeyValue::new("messaging.system", "kafka"),
            KeyValue::new("messaging.operation.type", names.operation),
            KeyValue::new("messaging.destination.name", destination),
        ]);
        attributes.extend(known);
        // Built whole rather than by `from_name(..).with_kind(..).with_attributes(..)`, each
        // of which moves the builder (a few hundred bytes) once more.
        SpanBuilder {
            name,
            span_kind: Some(kind),
            attributes: Some(attributes),
            ..SpanBuilder::default()
        }
    }

    /// The context carried in `headers`, if any: what `TraceContextPropagator` extracts. The
    /// canonical version-00 `traceparent` (what every W3C propagator writes, this one's and
    /// Python's) is read here; anything else goes to the propagator, which accepts more forms.
    /// The propagator's split into a `Vec` and its radix parses were a sixth of what tracing
    /// added per record (issue 21's tracing profile).
    fn extract(&self, headers: &Headers) -> Option<OtelContext> {
        let parent = headers.get(TRACE_HEADERS[0])?;
        let canonical = parse_traceparent(parent).and_then(|(trace_id, span_id, flags)| {
            let state = headers
                .get_str(TRACE_HEADERS[1])
                .map(|state| TraceState::from_str(state).unwrap_or_default())
                .unwrap_or_default();
            let context = SpanContext::new(trace_id, span_id, flags, true, state);
            context
                .is_valid()
                .then(|| OtelContext::new().with_remote_span_context(context))
        });
        Some(canonical.unwrap_or_else(|| {
            self.propagator
                .extract_with_context(&OtelContext::new(), &HeaderReader(headers))
        }))
    }

    /// Writes the context of `cx`'s span into `headers`, replacing what was there: what
    /// `TraceContextPropagator::inject_context` writes (a version-00 `traceparent` with the
    /// sampled flag, and `tracestate`, left out when empty as the W3C spec allows and Python's
    /// propagator does; a `tracestate` already there is then removed, as it belonged to another
    /// context), its hex written here: the propagator's `format!` was a fifth of what tracing
    /// added per record (issue 21's tracing profile).
    ///
    /// Returns the `traceparent` written, when the context has no trace state (`None` when
    /// it has one, or is not valid).
    fn inject(context: &SpanContext, headers: &mut Headers) -> Option<[u8; TRACEPARENT_LEN]> {
        if !context.is_valid() {
            return None;
        }
        let parent = traceparent(context);
        // A reply's `send` span rewrites the `traceparent` its `process` span wrote: over the
        // same memory.
        headers.insert_static_copy(TRACE_HEADERS[0], &parent);
        // The usual context has no trace state at all: known without writing it out.
        let state = context.trace_state();
        let state = if *state == TraceState::NONE {
            String::new()
        } else {
            state.header()
        };
        if state.is_empty() {
            headers.remove(TRACE_HEADERS[1]);
            Some(parent)
        } else {
            headers.insert_static(TRACE_HEADERS[1], state);
            None
        }
    }
}

thread_local! {
    /// The `process` span whose context this thread last wrote into a reply, by the
    /// `traceparent` written (see [`ReplyParent`]).
    static REPLY_PARENT: std::cell::RefCell<Option<ReplyParent>> =
        const { std::cell::RefCell::new(None) };
}

/// A reply's `send` span is the child of the `process` span of the message it answers, found
/// through the `traceparent` that span wrote into the reply. The worker publishes the reply
/// right after the handler returns, usually on the same thread, so the `process` span's
/// context is kept here, by the `traceparent` written, and the `send` span takes it as its
/// (local) parent without parsing the header and building a remote context: that round trip
/// was a tenth of what tracing added per replying record (issue 21's tracing profile). A
/// `traceparent` that does not match (another thread, another message, a trace state) is
/// parsed as before. The first send that matches takes the context out (the records a
/// fan-out publishes after it parse theirs), so a thread keeps a span, and through it the
/// tracer provider, only until its reply is sent or the next reply is written.
struct ReplyParent {
    traceparent: [u8; TRACEPARENT_LEN],
    context: OtelContext,
}

impl ReplyParent {
    /// Keeps `context`, whose span wrote `traceparent` (and no `tracestate`) into a reply.
    fn remember(traceparent: [u8; TRACEPARENT_LEN], context: &OtelContext) {
        let kept = ReplyParent {
            traceparent,
            context: context.clone(),
        };
        // The previous one is dropped outside the borrow (it may end the last reference to a
        // span, which runs the span's drop).
        let previous = REPLY_PARENT.with(|slot| slot.replace(Some(kept)));
        drop(previous);
    }

    /// Takes the context kept for the `traceparent` in `headers`, when they carry no
    /// `tracestate`.
    fn take(headers: &Headers) -> Option<OtelContext> {
        let traceparent = headers.get(TRACE_HEADERS[0])?;
        if headers.contains(TRACE_HEADERS[1]) {
            return None;
        }
        let kept = REPLY_PARENT.with(|slot| {
            let mut slot = slot.borrow_mut();
            match slot.as_ref() {
                Some(kept) if kept.traceparent[..] == traceparent[..] => slot.take(),
                _ => None,
            }
        })?;
        Some(kept.context)
    }
}

/// The version-00 `traceparent` of `context`: `00-{trace id}-{span id}-{flags}`, in lowercase
/// hex, with only the sampled flag passed on.
fn traceparent(context: &SpanContext) -> [u8; TRACEPARENT_LEN] {
    let mut value = *b"00-00000000000000000000000000000000-0000000000000000-00";
    write_hex(&context.trace_id().to_bytes(), &mut value[3..35]);
    write_hex(&context.span_id().to_bytes(), &mut value[36..52]);
    let flags = context.trace_flags() & TraceFlags::SAMPLED;
    write_hex(&[flags.to_u8()], &mut value[53..]);
    value
}

/// The ids and flags (only the sampled one) of a canonical version-00 `traceparent`: 55 bytes,
/// lowercase hex. `None` for any other value, valid or not.
fn parse_traceparent(value: &[u8]) -> Option<(TraceId, SpanId, TraceFlags)> {
    if value.len() != TRACEPARENT_LEN
        || !value.starts_with(b"00-")
        || value[35] != b'-'
        || value[52] != b'-'
    {
        return None;
    }
    let trace_id = TraceId::from_bytes(read_hex(&value[3..35])?);
    let span_id = SpanId::from_bytes(read_hex(&value[36..52])?);
    let [flags] = read_hex(&value[53..])?;
    Some((
        trace_id,
        span_id,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
    ))
}

/// `bytes` in lowercase hex, into `out` (twice as long).
fn write_hex(bytes: &[u8], out: &mut [u8]) {
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(*byte)]);
    }
}

/// The `N` bytes that `hex` (`2 * N` lowercase hex digits) spells; `None` when any is not a
/// digit (checked once, after the loop, so the loop does not branch per digit).
fn read_hex<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
    let mut bytes = [0; N];
    let mut seen = 0;
    for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
        let (high, low) = (
            HEX_VALUES[usize::from(pair[0])],
            HEX_VALUES[usize::from(pair[1])],
        );
        seen |= high | low;
        *byte = high << 4 | low;
    }
    // Only NOT_HEX has a bit above the low four.
    (seen & 0xf0 == 0).then_some(bytes)
}

/// Span names of one operation, `"{operation} {topic}"`, made once per topic. The SDK keeps a
/// name as `Cow<'static, str>`, so a name made per span was a `format!` and an allocation per
/// message; these are leaked instead, for the first [`SHARED_SPAN_NAMES`] topics (a pattern
/// subscriber matching ever new topics gets the rest made per span). Each service also keeps
/// its last name, found by the topic's pointer: a partition's records share one topic `Arc`.
///
/// A shared name's end is the topic, which is the `messaging.destination.name` attribute: a
/// `&'static str` costs nothing to give and to drop, where the topic's `Arc` took an atomic
/// increment per span and a decrement on the export thread.
struct SpanNames {
    operation: &'static str,
    shared: Interned,
}

/// Strings made once per process and never freed, by key, for the first `cap` keys: the span
/// names and attribute values every span repeats. Past the cap (e.g. a pattern subscriber
/// matching ever new topics) the caller makes its own.
struct Interned {
    cap: usize,
    made: OnceLock<RwLock<HashMap<Box<str>, &'static str>>>,
}

impl Interned {
    const fn new(cap: usize) -> Self {
        Self {
            cap,
            made: OnceLock::new(),
        }
    }

    /// The string of `key`, made by `make` the first time; `None` past the cap.
    fn get_or_make(&self, key: &str, make: impl FnOnce() -> String) -> Option<&'static str> {
        let made = self.made.get_or_init(RwLock::default);
        if let Some(string) = made.read().ok()?.get(key) {
            return Some(string);
        }
        let mut strings = made.write().ok()?;
        if let Some(string) = strings.get(key) {
            return Some(string);
        }
        if strings.len() >= self.cap {
            return None;
        }
        let string: &'static str = Box::leak(make().into_boxed_str());
        strings.insert(key.into(), string);
        Some(string)
    }
}

static PROCESS_NAMES: SpanNames = SpanNames::new("process");
static SEND_NAMES: SpanNames = SpanNames::new("send");

impl SpanNames {
    const fn new(operation: &'static str) -> Self {
        Self {
            operation,
            shared: Interned::new(SHARED_SPAN_NAMES),
        }
    }

    /// The name of a span on `topic`, from `last` when it names the same topic `Arc`, and
    /// the topic as an attribute value.
    fn of(
        &self,
        topic: &Arc<str>,
        last: &mut Option<(Arc<str>, &'static str)>,
    ) -> (Cow<'static, str>, Value) {
        if let Some((last_topic, name)) = last {
            if Arc::ptr_eq(last_topic, topic) {
                return (Cow::Borrowed(*name), self.topic_of(name));
            }
        }
        match self.shared_name(topic) {
            Some(name) => {
                *last = Some((Arc::clone(topic), name));
                (Cow::Borrowed(name), self.topic_of(name))
            }
            None => (
                Cow::Owned(format!("{} {topic}", self.operation)),
                Value::from(Arc::clone(topic)),
            ),
        }
    }

    /// The topic a shared `name` of this operation ends with.
    fn topic_of(&self, name: &'static str) -> Value {
        Value::from(name.get(self.operation.len() + 1..).unwrap_or_default())
    }

    fn shared_name(&self, topic: &str) -> Option<&'static str> {
        self.shared
            .get_or_make(topic, || format!("{} {topic}", self.operation))
    }
}

/// The `messaging.destination.partition.id` attribute (a string) of `partition`: static
/// strings for the first partitions, made once (and never freed), rather than one formatted
/// per span or a shared `Arc` counted up and down per span.
fn partition_id(partition: i32) -> KeyValue {
    const KEY: &str = "messaging.destination.partition.id";
    static SHARED: OnceLock<Vec<&'static str>> = OnceLock::new();
    let shared = SHARED.get_or_init(|| {
        (0..SHARED_PARTITION_IDS)
            .map(|p| &*Box::leak(p.to_string().into_boxed_str()))
            .collect()
    });
    match usize::try_from(partition).ok().and_then(|p| shared.get(p)) {
        Some(id) => KeyValue::new(KEY, *id),
        None => KeyValue::new(KEY, partition.to_string()),
    }
}

/// The `messaging.consumer.group.name` attribute's value for `group`: a static string for the
/// first [`SHARED_GROUPS`] groups of the process (made once, never freed; an app has a few),
/// shared otherwise.
fn group_value(group: &str) -> Value {
    static GROUPS: Interned = Interned::new(SHARED_GROUPS);
    GROUPS
        .get_or_make(group, || group.to_owned())
        .map_or_else(|| Value::from(Arc::<str>::from(group)), Value::from)
}

struct HeaderReader<'a>(&'a Headers);

impl Extractor for HeaderReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get_str(key)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name).collect()
    }
}

/// The `messaging.kafka.message.key` attribute, when the key is text.
fn key_attribute(key: Option<&[u8]>) -> Option<KeyValue> {
    key.and_then(|key| std::str::from_utf8(key).ok())
        .map(|key| KeyValue::new("messaging.kafka.message.key", key.to_owned()))
}

/// The `messaging.message.conversation_id` attribute.
fn conversation_id(id: &str) -> KeyValue {
    KeyValue::new("messaging.message.conversation_id", id.to_owned())
}

/// The `messaging.message.body.size` attribute.
fn body_size(payload: &[u8]) -> KeyValue {
    KeyValue::new(
        "messaging.message.body.size",
        i64::try_from(payload.len()).unwrap_or(i64::MAX),
    )
}

/// Starts a `process {topic}` span per message of one subscriber; see [`Otel`].
#[derive(Debug, Clone)]
pub struct ProcessSpanLayer {
    otel: Otel,
    group: Value,
}

impl<S> tower::Layer<S> for ProcessSpanLayer {
    type Service = ProcessSpan<S>;

    fn layer(&self, inner: S) -> ProcessSpan<S> {
        ProcessSpan {
            inner,
            otel: self.otel.clone(),
            group: self.group.clone(),
            last_name: None,
        }
    }
}

/// The service of [`ProcessSpanLayer`].
#[derive(Debug, Clone)]
pub struct ProcessSpan<S> {
    inner: S,
    otel: Otel,
    group: Value,
    /// The last span name and its topic (see [`SpanNames`]).
    last_name: Option<(Arc<str>, &'static str)>,
}

impl<S> tower::Service<Message> for ProcessSpan<S>
where
    S: tower::Service<Message, Response = Reply, Error = BoxError>,
{
    type Response = Reply;
    type Error = BoxError;
    type Future = ProcessSpanFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, message: Message) -> Self::Future {
        let parent = self
            .otel
            .extract(&message.headers)
            .unwrap_or_else(OtelContext::current);
        let builder = Otel::span_builder(
            &PROCESS_NAMES,
            SpanKind::Consumer,
            &message.topic,
            &mut self.last_name,
            [
                partition_id(message.partition),
                KeyValue::new("messaging.consumer.group.name", self.group.clone()),
                KeyValue::new("messaging.kafka.offset", message.offset),
                body_size(&message.payload),
            ],
        );
        let cx = self.otel.tracer.start(builder, &parent);
        let span = cx.span();
        if span.is_recording() {
            let key = key_attribute(message.key.as_deref());
            let id = message.headers.get_str(CORRELATION_ID).map(conversation_id);
            if key.is_some() || id.is_some() {
                span.set_attributes(key.into_iter().chain(id));
            }
        }
        let call = {
            let _attached = cx.clone().attach();
            self.inner.call(message)
        };
        ProcessSpanFuture {
            inner: call.with_context(cx.clone()),
            span: SpanGuard(Some(cx)),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`ProcessSpan`]: runs the call with the span current, then ends it.
    pub struct ProcessSpanFuture<F> {
        #[pin]
        inner: opentelemetry::context::WithContext<F>,
        span: SpanGuard,
    }
}

impl<F> std::fmt::Debug for ProcessSpanFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProcessSpanFuture")
    }
}

impl<F> Future for ProcessSpanFuture<F>
where
    F: Future<Output = Result<Reply, BoxError>>,
{
    type Output = Result<Reply, BoxError>;

    fn poll(self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut outcome = std::task::ready!(this.inner.poll(task));
        if let Some(cx) = this.span.0.take() {
            match &mut outcome {
                // The reply is published after this span ends: it carries the span's context
                // so its `send` span is this one's child.
                Ok(Reply::Publish(out)) => {
                    let span = cx.span();
                    if let Some(parent) = Otel::inject(span.span_context(), &mut out.headers) {
                        ReplyParent::remember(parent, &cx);
                    }
                }
                Ok(Reply::Nothing) => {}
                // A nack or reject is a failed processing too (`error.type` `Nacked`,
                // `Rejected`).
                Ok(Reply::Failed(err)) | Err(err) => {
                    let span = cx.span();
                    span.set_attribute(KeyValue::new("error.type", failure_type(err)));
                    span.set_status(Status::error(err.to_string()));
                }
            }
            cx.span().end();
        }
        Poll::Ready(outcome)
    }
}

/// Ends the span of its context when dropped: a call dropped unfinished (a shutdown) still
/// ends its span.
struct SpanGuard(Option<OtelContext>);

impl Drop for SpanGuard {
    fn drop(&mut self) {
        if let Some(cx) = self.0.take() {
            cx.span().end();
        }
    }
}

/// The `error.type` of a failed message.
fn failure_type(err: &BoxError) -> &'static str {
    if err.is::<Rejected>() {
        "Rejected"
    } else {
        error_type(err)
    }
}

/// Starts a `send {topic}` span per published record and writes its context into the
/// record's headers; see [`Otel`].
#[derive(Debug, Clone)]
pub struct SendSpanLayer {
    otel: Otel,
}

impl<S> tower::Layer<S> for SendSpanLayer {
    type Service = SendSpan<S>;

    fn layer(&self, inner: S) -> SendSpan<S> {
        SendSpan {
            inner,
            otel: self.otel.clone(),
            last_name: None,
        }
    }
}

/// The service of [`SendSpanLayer`].
#[derive(Debug, Clone)]
pub struct SendSpan<S> {
    inner: S,
    otel: Otel,
    /// The last span name and its topic (see [`SpanNames`]).
    last_name: Option<(Arc<str>, &'static str)>,
}

impl<S> tower::Service<Record> for SendSpan<S>
where
    S: tower::Service<Record, Error = PublishError>,
{
    type Response = S::Response;
    type Error = PublishError;
    type Future = SendSpanFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PublishError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut record: Record) -> Self::Future {
        // A reply carries the context of the message it answers; anything else is a child
        // of the span current where it is published.
        let parent = ReplyParent::take(&record.headers)
            .or_else(|| self.otel.extract(&record.headers))
            .unwrap_or_else(OtelContext::current);
        let known = [
            record.partition.map(partition_id),
            record.payload.as_deref().map(body_size),
        ];
        let builder = Otel::span_builder(
            &SEND_NAMES,
            SpanKind::Producer,
            &record.topic,
            &mut self.last_name,
            known.into_iter().flatten(),
        );
        let mut span = self.otel.tracer.start_detached(builder, &parent);
        if span.is_recording() {
            if let Some(key) = key_attribute(record.key.as_deref()) {
                span.set_attribute(key);
            }
            if let Some(id) = record
                .correlation_id
                .as_deref()
                .and_then(|id| std::str::from_utf8(id).ok())
            {
                span.set_attribute(conversation_id(id));
            }
        }
        Otel::inject(span.span_context(), &mut record.headers);
        SendSpanFuture {
            inner: self.inner.call(record),
            span: Some(span),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`SendSpan`]: ends the span when the record was handed to the producer.
    pub struct SendSpanFuture<F> {
        #[pin]
        inner: F,
        // Ended when the record was handed over, or else when dropped (an SDK span ends when
        // dropped).
        span: Option<DetachedSpan>,
    }
}

impl<F> std::fmt::Debug for SendSpanFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SendSpanFuture")
    }
}

impl<F, D> Future for SendSpanFuture<F>
where
    F: Future<Output = Result<D, PublishError>>,
{
    type Output = Result<D, PublishError>;

    fn poll(self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let outcome = std::task::ready!(this.inner.poll(task));
        if let Some(mut span) = this.span.take() {
            if let Err(err) = &outcome {
                span.set_attribute(KeyValue::new("error.type", "PublishError"));
                span.set_status(Status::error(err.to_string()));
            }
            span.end();
        }
        Poll::Ready(outcome)
    }
}

/// Could not set up OTLP export.
#[cfg(feature = "otlp")]
#[derive(Debug, thiserror::Error)]
#[error("OTLP exporter: {0}")]
pub struct OtlpError(#[from] opentelemetry_otlp::ExporterBuildError);

/// An OTLP exporter (HTTP/protobuf) configured by the standard environment variables
/// (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
/// `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`...), behind a
/// batching tracer provider that is also installed as the global one. Keep the provider and
/// call `shutdown` on it when the app ends so the last spans are sent.
///
/// ```no_run
/// # fn app<B: faststream_core::Broker>(app: faststream_core::App<B>) -> Result<(), faststream_observe::otel::OtlpError> {
/// use opentelemetry::trace::TracerProvider as _;
/// use faststream_observe::otel::{otlp_from_env, Otel};
/// let provider = otlp_from_env()?;
/// let app = Otel::new(provider.tracer("faststream")).install(app);
/// // ... run the app, then:
/// let _ = provider.shutdown();
/// # Ok(()) }
/// ```
#[cfg(feature = "otlp")]
pub fn otlp_from_env() -> Result<opentelemetry_sdk::trace::SdkTracerProvider, OtlpError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(provider)
}

#[cfg(all(test, feature = "otlp"))]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;

    /// The exporter is built inside a tokio runtime (as `run --otel` does) without panicking,
    /// and a span goes through it; the collector being absent only fails the export.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn otlp_exporter_builds_inside_the_runtime() {
        let provider = otlp_from_env().expect("exporter from the environment");
        let tracer = provider.tracer("test");
        tracer.in_span("probe", |_cx| {});
        let provider = provider.clone();
        tokio::task::spawn_blocking(move || {
            let _ = provider.shutdown();
        })
        .await
        .expect("shutdown");
    }
}

#[cfg(test)]
mod sampling_tests {
    use super::*;
    use faststream_core::reply::Outgoing;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider};
    use tower::{Layer, Service, ServiceExt};

    fn provider(sampler: Sampler) -> (SdkTracerProvider, InMemorySpanExporter) {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_sampler(sampler)
            .with_simple_exporter(exporter.clone())
            .build();
        (provider, exporter)
    }

    /// The handler's reply headers after one message through the process layer.
    async fn reply_headers(otel: &Otel) -> Headers {
        let config = SubscriberConfig::new("s", ["in"]);
        let mut service =
            otel.process_layer(&config)
                .layer(tower::service_fn(|_message: Message| async {
                    Ok::<_, BoxError>(Reply::Publish(Outgoing {
                        payload: "out".into(),
                        content_type: "text/plain",
                        key: None,
                        headers: Headers::new(),
                        partition: None,
                        timestamp: None,
                    }))
                }));
        let mut message = Message::new("in", "payload");
        message.key = Some("k".into());
        match service.ready().await.unwrap().call(message).await {
            Ok(Reply::Publish(out)) => out.headers,
            _ => panic!("a reply"),
        }
    }

    #[tokio::test]
    async fn a_recorded_span_has_every_attribute() {
        let (provider, exporter) = provider(Sampler::AlwaysOn);
        let headers = reply_headers(&Otel::new(provider.tracer("t"))).await;
        let spans = exporter.get_finished_spans().unwrap();
        assert_eq!(spans.len(), 1);
        let keys: Vec<&str> = spans[0]
            .attributes
            .iter()
            .map(|kv| kv.key.as_str())
            .collect();
        for key in [
            "messaging.system",
            "messaging.operation.type",
            "messaging.destination.name",
            "messaging.destination.partition.id",
            "messaging.consumer.group.name",
            "messaging.kafka.offset",
            "messaging.kafka.message.key",
        ] {
            assert!(keys.contains(&key), "{key} in {keys:?}");
        }
        assert!(headers
            .get_str("traceparent")
            .is_some_and(|t| t.ends_with("-01")));
    }

    /// A reply's `send` span is its `process` span's child, whether the `process` span's
    /// context is still kept by the thread (the same thread, right after: a local parent) or
    /// the reply's `traceparent` is parsed (another thread, or a second send: a remote one).
    #[tokio::test]
    async fn a_reply_send_span_is_the_child_of_its_process_span() {
        let (provider, exporter) = provider(Sampler::AlwaysOn);
        let otel = Otel::new(provider.tracer("t"));
        let headers = reply_headers(&otel).await;
        let send = |headers: Headers| {
            let mut service = otel
                .send_layer()
                .layer(tower::service_fn(|_: Record| async {
                    Ok::<_, PublishError>(())
                }));
            let mut record = Record::new("out", "reply");
            record.headers = headers;
            async move { service.ready().await.unwrap().call(record).await.unwrap() }
        };
        send(headers.clone()).await;
        let elsewhere = send(headers.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(elsewhere)
        })
        .join()
        .unwrap();
        // Taken by the first send: a second one on this thread parses the header.
        send(headers.clone()).await;
        let spans = exporter.get_finished_spans().unwrap();
        let process = spans.iter().find(|s| s.name == "process in").unwrap();
        let sends: Vec<_> = spans.iter().filter(|s| s.name == "send out").collect();
        assert_eq!(sends.len(), 3);
        for send in &sends {
            assert_eq!(
                send.span_context.trace_id(),
                process.span_context.trace_id()
            );
            assert_eq!(send.parent_span_id, process.span_context.span_id());
        }
        // In the order they ended: the kept context (a local parent), then two parsed.
        let remote: Vec<bool> = sends.iter().map(|s| s.parent_span_is_remote).collect();
        assert_eq!(remote, [false, true, true]);
    }

    #[tokio::test]
    async fn a_sampled_out_message_still_propagates_its_context() {
        let (provider, exporter) = provider(Sampler::AlwaysOff);
        let headers = reply_headers(&Otel::new(provider.tracer("t"))).await;
        assert!(exporter.get_finished_spans().unwrap().is_empty());
        let traceparent = headers.get_str("traceparent").expect("traceparent");
        assert!(traceparent.ends_with("-00"), "not sampled: {traceparent}");
        assert!(headers.get("tracestate").is_none(), "no empty tracestate");
    }

    /// What the SDK's propagator injects, by header name.
    struct Map(std::collections::HashMap<String, String>);

    impl opentelemetry::propagation::Injector for Map {
        fn set(&mut self, key: &str, value: String) {
            self.0.insert(key.to_owned(), value);
        }
    }

    #[test]
    fn inject_writes_what_the_w3c_propagator_writes() {
        use std::collections::HashMap;

        let state = TraceState::from_key_value([("vendor", "value")]).unwrap();
        // Sampled and not (the other flag bits are not passed on), with and without a
        // trace state.
        for (flags, state) in [
            (TraceFlags::SAMPLED, TraceState::default()),
            (TraceFlags::new(0x02), state.clone()),
            (TraceFlags::new(0x03), state),
        ] {
            let context = SpanContext::new(
                TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
                SpanId::from_hex("00f067aa0ba902b7").unwrap(),
                flags,
                true,
                state,
            );
            let cx = OtelContext::new().with_remote_span_context(context.clone());
            let mut expected = Map(HashMap::new());
            TraceContextPropagator::new().inject_context(&cx, &mut expected);
            let mut headers = Headers::new();
            Otel::inject(&context, &mut headers);
            let traceparent = headers.get_str("traceparent").expect("traceparent");
            assert_eq!(
                Some(traceparent),
                expected.0.get("traceparent").map(String::as_str)
            );
            assert_eq!(traceparent.len(), TRACEPARENT_LEN);
            let tracestate = expected.0.get("tracestate").filter(|s| !s.is_empty());
            assert_eq!(
                headers.get_str("tracestate"),
                tracestate.map(String::as_str)
            );
        }
        // An invalid context writes nothing.
        let mut headers = Headers::new();
        Otel::inject(&SpanContext::empty_context(), &mut headers);
        assert!(headers.get("traceparent").is_none());
    }

    /// What the SDK's propagator extracts from `traceparent` (and `tracestate`).
    fn sdk_extract(traceparent: &str, tracestate: Option<&str>) -> SpanContext {
        let mut headers = Headers::new();
        headers.append("traceparent", traceparent.to_owned());
        if let Some(state) = tracestate {
            headers.append("tracestate", state.to_owned());
        }
        TraceContextPropagator::new()
            .extract_with_context(&OtelContext::new(), &HeaderReader(&headers))
            .span()
            .span_context()
            .clone()
    }

    #[test]
    fn extract_reads_what_the_w3c_propagator_reads() {
        let otel = Otel::new(SdkTracerProvider::builder().build().tracer("t"));
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let span = "00f067aa0ba902b7";
        let mut values: Vec<String> = ["00", "01", "02", "03", "09", "ff", "0A", "qw", "0"]
            .iter()
            .map(|flags| format!("00-{trace}-{span}-{flags}"))
            .collect();
        values.extend(
            [
                // The SDK's own extraction cases (`trace_context.rs`), valid and invalid.
                "02-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "02-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09",
                "02-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-08",
                "0000-00000000000000000000000000000000-0000000000000000-01",
                "00-ab00000000000000000000000000000000-cd00000000000000-01",
                "00-ab000000000000000000000000000000-cd0000000000000000-01",
                "00-ab000000000000000000000000000000-cd00000000000000-0100",
                "qw-00000000000000000000000000000000-0000000000000000-01",
                "00-qw000000000000000000000000000000-cd00000000000000-01",
                "00-ab000000000000000000000000000000-qw00000000000000-01",
                "00-ab000000000000000000000000000000-cd00000000000000-qw",
                "A0-00000000000000000000000000000000-0000000000000000-01",
                "00-AB000000000000000000000000000000-cd00000000000000-01",
                "00-ab000000000000000000000000000000-CD00000000000000-01",
                "00-ab000000000000000000000000000000-cd00000000000000-A1",
                // Canonical but invalid ids; other versions; extra and missing parts; upper
                // case; bad digits; wrong lengths; misplaced dashes; whitespace.
                "00-ab00000000000000000000000000000000-cd000000000000-01",
                "00-00000000000000000000000000000000-0000000000000000-01",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-",
                "02-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-XYZxsf09",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
                "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
                "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
                " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "",
            ]
            .map(str::to_owned),
        );
        for value in &values {
            for state in [None, Some("vendor=value,other=x"), Some("not a state")] {
                let expected = sdk_extract(value, state);
                let mut headers = Headers::new();
                headers.append("traceparent", value.clone());
                if let Some(state) = state {
                    headers.append("tracestate", state);
                }
                let extracted = otel.extract(&headers).expect("a traceparent is there");
                assert_eq!(
                    *extracted.span().span_context(),
                    expected,
                    "{value:?} with {state:?}"
                );
                assert_eq!(
                    extracted.has_active_span(),
                    expected.is_valid(),
                    "{value:?}"
                );
            }
        }
        assert!(otel.extract(&Headers::new()).is_none());
        // The canonical form is read here, not by the SDK.
        assert!(parse_traceparent(format!("00-{trace}-{span}-01").as_bytes()).is_some());
        assert!(
            parse_traceparent(b"00-ab00000000000000000000000000000000-cd000000000000-01").is_none()
        );
    }

    #[test]
    fn traceparent_is_what_the_w3c_propagator_writes_for_any_flags() {
        use std::collections::HashMap;

        for flags in [0x00, 0x01, 0x02, 0x03, 0x80, 0xff] {
            let context = SpanContext::new(
                TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
                SpanId::from(0x00f0_67aa_0ba9_02b7),
                TraceFlags::new(flags),
                false,
                TraceState::default(),
            );
            let mut expected = Map(HashMap::new());
            TraceContextPropagator::new().inject_context(
                &OtelContext::new().with_remote_span_context(context.clone()),
                &mut expected,
            );
            assert_eq!(
                std::str::from_utf8(&traceparent(&context)).ok(),
                expected.0.get("traceparent").map(String::as_str),
                "flags {flags:#x}"
            );
        }
    }

    #[test]
    fn inject_removes_a_tracestate_of_another_context() {
        let context = SpanContext::new(
            TraceId::from(7),
            SpanId::from(9),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        let mut headers = Headers::new();
        headers.append("tracestate", "stale=1");
        Otel::inject(&context, &mut headers);
        assert!(headers.get("tracestate").is_none());
        assert!(headers.get("traceparent").is_some());
    }

    #[test]
    fn an_injected_context_is_extracted_unchanged() {
        let otel = Otel::new(SdkTracerProvider::builder().build().tracer("t"));
        let state = TraceState::from_key_value([("vendor", "value")]).unwrap();
        for (trace, span, flags) in [
            (u128::MAX, u64::MAX, TraceFlags::SAMPLED),
            (1, 1, TraceFlags::default()),
            (
                0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
                0x0f1e_2d3c_4b5a_6978,
                TraceFlags::SAMPLED,
            ),
        ] {
            let context = SpanContext::new(
                TraceId::from(trace),
                SpanId::from(span),
                flags,
                true,
                state.clone(),
            );
            let mut headers = Headers::new();
            Otel::inject(&context, &mut headers);
            let extracted = otel.extract(&headers).expect("injected");
            assert_eq!(*extracted.span().span_context(), context);
        }
    }

    #[test]
    fn span_names_are_made_once_per_topic() {
        let names = SpanNames::new("process");
        let (orders, payments) = (Arc::<str>::from("orders"), Arc::<str>::from("payments"));
        let name = |(name, _): (Cow<'static, str>, Value)| name;
        let mut last = None;
        let (first, topic) = names.of(&orders, &mut last);
        assert_eq!(first, "process orders");
        assert!(matches!(first, Cow::Borrowed(_)));
        // The topic attribute is the end of the shared name: static, no count to keep.
        assert_eq!(topic.as_str(), "orders");
        let shared_end = first[..]
            .get("process ".len()..)
            .expect("the topic")
            .as_ptr();
        assert_eq!(topic.as_str().as_ptr(), shared_end);
        assert_eq!(names.of(&orders, &mut last).1.as_str().as_ptr(), shared_end);
        // The same topic again, by another `Arc`: the name made the first time.
        let again = name(names.of(&Arc::from("orders"), &mut None));
        assert_eq!(again.as_ptr(), first.as_ptr());
        assert_eq!(name(names.of(&payments, &mut last)), "process payments");
        assert_eq!(name(names.of(&orders, &mut last)), "process orders");
        assert_eq!(name(SEND_NAMES.of(&orders, &mut None)), "send orders");
    }

    #[test]
    fn group_values_are_made_once_per_group() {
        let first = group_value("billing");
        let again = group_value("billing");
        assert_eq!(first.as_str(), "billing");
        assert_eq!(again.as_str(), "billing");
        match (first.as_str(), again.as_str()) {
            (Cow::Borrowed(a), Cow::Borrowed(b)) => assert_eq!(a.as_ptr(), b.as_ptr()),
            other => panic!("static group names, got {other:?}"),
        }
    }

    #[test]
    fn partition_ids_are_the_partition_numbers() {
        for partition in [0, 7, 511, 512, 100_000] {
            let id = partition_id(partition);
            assert_eq!(id.key.as_str(), "messaging.destination.partition.id");
            assert_eq!(id.value.as_str(), partition.to_string());
        }
    }
}
