//! Publisher objects: a topic with default record fields (key, headers, partition), declared
//! once and registered on the app ([`App::with_publisher`](crate::App::with_publisher)), so
//! that it appears in the AsyncAPI document like a `#[publisher]` and publishes through the
//! app's publish layers; usable from handlers (`State<Publisher>` or inside your own state)
//! and from outside once the app started.
//!
//! ```
//! use faststream_core::{App, Publisher, SubscriberConfig, State};
//!
//! # fn app<B: faststream_core::Broker>(broker: B) -> App<B> {
//! let audit = Publisher::to("audit").key("billing").header("source", "billing");
//! App::new(broker)
//!     .with_publisher(&audit)
//!     .with_state(audit.clone())
//!     .subscriber(
//!         SubscriberConfig::new("bill", ["orders"]),
//!         |audit: State<Publisher>, order_id: i64| async move {
//!             audit.publish(&format!("billed {order_id}")).await.map(|_| ())
//!         },
//!     )
//! # }
//! ```

use crate::config::subscriber::PublisherConfig;
use crate::error::{Error, PublishError, Result};
use crate::message::codec::Codec;
use crate::message::record::{Delivered, Record};
use crate::message::Headers;
use bytes::Bytes;
use futures::future::BoxFuture;
use std::sync::{Arc, OnceLock};

/// Hands a record to the started app's publish pipeline and waits for the acknowledgement.
pub(crate) type SendFn =
    Box<dyn Fn(Record) -> BoxFuture<'static, Result<Delivered, PublishError>> + Send + Sync>;

/// A publisher to one topic with default record fields. Cheap to clone; clones share the
/// binding to the app they were registered on.
#[derive(Clone)]
pub struct Publisher {
    spec: Arc<Spec>,
    binding: Arc<OnceLock<SendFn>>,
}

#[derive(Clone)]
struct Spec {
    config: PublisherConfig,
    key: Option<Bytes>,
    headers: Headers,
    partition: Option<i32>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.spec.config.topic)
            .field("bound", &self.binding.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher to `topic`, with no defaults yet.
    pub fn to(topic: impl Into<Arc<str>>) -> Self {
        Self {
            spec: Arc::new(Spec {
                config: PublisherConfig::new(topic),
                key: None,
                headers: Headers::new(),
                partition: None,
            }),
            binding: Arc::new(OnceLock::new()),
        }
    }

    fn spec_mut(&mut self) -> &mut Spec {
        Arc::make_mut(&mut self.spec)
    }

    /// The key of every record that sets none.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.spec_mut().key = Some(key.into());
        self
    }

    /// A header added to every record that sets none of that name; replaces a default of
    /// that name set before (as [`Record::header`] does).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.spec_mut().headers.insert(name, value);
        self
    }

    /// A header added to every record that sets none of that name, keeping the defaults of
    /// that name set before (as [`Record::append_header`] does).
    pub fn append_header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.spec_mut().headers.append(name, value);
        self
    }

    /// The partition of every record that sets none.
    pub fn partition(mut self, partition: i32) -> Self {
        self.spec_mut().partition = Some(partition);
        self
    }

    /// Its AsyncAPI description (title, description, payload schema...).
    pub fn describe(mut self, describe: impl FnOnce(PublisherConfig) -> PublisherConfig) -> Self {
        let spec = self.spec_mut();
        spec.config = describe(spec.config.clone());
        self
    }

    /// What the AsyncAPI document says of it.
    pub fn config(&self) -> &PublisherConfig {
        &self.spec.config
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.spec.config.topic
    }

    /// Publishes `value` (encoded by FastStream's rules, or with its codec) with the
    /// defaults, and waits for the broker's acknowledgement.
    pub async fn publish<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<Delivered> {
        let config = &self.spec.config;
        let record =
            Record::encode_with(Arc::clone(&config.topic), value, config.codec.as_deref())?;
        self.publish_record(record).await
    }

    /// Encodes what [`Publisher::publish`] publishes with `codec` instead of JSON (FastStream's
    /// `encoder`), and says so in the AsyncAPI document.
    pub fn codec(mut self, codec: impl Codec) -> Self {
        self.spec_mut().config.codec = Some(Arc::new(codec));
        self
    }

    /// Publishes `record` to this publisher's topic, filling in the defaults it does not set.
    pub async fn publish_record(&self, mut record: Record) -> Result<Delivered> {
        let spec = &self.spec;
        record.topic = Arc::clone(&spec.config.topic);
        if record.key.is_none() {
            record.key = spec.key.clone();
        }
        if record.partition.is_none() {
            record.partition = spec.partition;
        }
        for (name, value) in spec.headers.iter() {
            if !record.headers.contains(name) {
                record.headers.append(name, value.clone());
            }
        }
        let send = self.binding.get().ok_or_else(|| {
            Error::config_msg(format!(
                "the publisher to `{}` is not registered on a started app (App::with_publisher)",
                spec.config.topic
            ))
        })?;
        Ok(send(record).await?)
    }

    /// Binds it to a started app's publish pipeline; false when it already was.
    pub(crate) fn bind(&self, send: SendFn) -> bool {
        self.binding.set(send).is_ok()
    }
}
