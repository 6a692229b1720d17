//! librdkafka's produce call, made with a topic handle kept per topic.
//!
//! rdkafka's `BaseProducer::send` names the topic by a `CString` made for every record, and
//! librdkafka then looks the name up among its topics and takes and drops a reference to it:
//! an allocation and about 650 instructions per published record, a thirtieth of a
//! consume-transform-publish record (issue 21's pipeline profile). [`TopicHandles`] keeps
//! librdkafka's handle of each topic a producer sends to, made once, and [`produce`] hands
//! librdkafka the handle, the record's fields and its headers in one `rd_kafka_produceva`.
//! Each thread remembers the handles it used last, so a record's handle is usually found
//! without the shared map's lock.
//!
//! The handles must be destroyed before their producer is (librdkafka's `rd_kafka_destroy`
//! waits for the topics' references): [`TopicHandles`] holds a clone of the producer, so the
//! producer lives until the handles are gone.

use crate::context::KafkaContext;
use faststream_core::broker::outgoing_headers;
use faststream_core::message::CORRELATION_ID_LEN;
use faststream_core::Record;
use rdkafka::bindings as native;
use rdkafka::producer::{Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::IntoOpaque;
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::ffi::{c_void, CString};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// The producer publishers send through: librdkafka's, with a thread of its own serving the
/// delivery reports into each send's `DeliverySlot`.
pub type KafkaProducer = ThreadedProducer<KafkaContext>;

/// What a record carries to its delivery report (the producer's `DeliverySlot`).
type DeliveryOpaque = <KafkaContext as ProducerContext>::DeliveryOpaque;

/// Topics a producer keeps handles of; records to further topics take rdkafka's own path
/// (a pattern of ever new topics must not grow this without bound).
const MOST_TOPICS: usize = 1024;

/// librdkafka's handle of one topic (an application reference to it).
struct TopicHandle(NonNull<native::rd_kafka_topic_t>);

// SAFETY: a librdkafka topic handle may be used from any thread; its state is behind
// librdkafka's own locks, and this type only ever passes it to librdkafka.
unsafe impl Send for TopicHandle {}
// SAFETY: as for `Send`: shared use is librdkafka's, which is thread-safe.
unsafe impl Sync for TopicHandle {}

/// Handles each thread keeps of the topics it sent to last (see [`RecentHandles`]).
const RECENT_HANDLES: usize = 4;

/// Numbers the [`TopicHandles`] so that a thread's [`RecentHandles`] tell them apart; never
/// reused, so an entry of handles since destroyed never matches.
static HANDLES_IDS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static RECENT: RefCell<RecentHandles> = const {
        RefCell::new(RecentHandles {
            entries: [const { None }; RECENT_HANDLES],
            next: 0,
        })
    };
}

/// The topic handles a thread found last, by the [`TopicHandles`] they belong to. Found
/// here, a record's handle costs no lock and no hash: the shared map's read lock was a count
/// that every worker thread changed twice per published record, a cache line moving between
/// cores (issue 21's pipeline profile).
struct RecentHandles {
    entries: [Option<RecentHandle>; RECENT_HANDLES],
    /// The entry replaced next.
    next: usize,
}

struct RecentHandle {
    /// The [`TopicHandles::id`] of the handle's owner.
    owner: u64,
    topic: Arc<str>,
    handle: NonNull<native::rd_kafka_topic_t>,
}

impl RecentHandles {
    fn find(&self, owner: u64, topic: &Arc<str>) -> Option<NonNull<native::rd_kafka_topic_t>> {
        self.entries
            .iter()
            .flatten()
            .find(|entry| {
                entry.owner == owner
                    && (Arc::ptr_eq(&entry.topic, topic) || *entry.topic == **topic)
            })
            .map(|entry| entry.handle)
    }

    fn keep(&mut self, owner: u64, topic: &Arc<str>, handle: NonNull<native::rd_kafka_topic_t>) {
        self.entries[self.next] = Some(RecentHandle {
            owner,
            topic: Arc::clone(topic),
            handle,
        });
        self.next = (self.next + 1) % RECENT_HANDLES;
    }
}

/// The topic handles of one producer (see the module docs).
pub(crate) struct TopicHandles {
    /// This one's number in the threads' [`RecentHandles`].
    id: u64,
    handles: RwLock<FxHashMap<Arc<str>, TopicHandle>>,
    /// Kept alive until the handles are destroyed (`Drop` below runs before fields drop).
    producer: KafkaProducer,
}

impl TopicHandles {
    pub(crate) fn new(producer: KafkaProducer) -> Self {
        Self {
            id: HANDLES_IDS.fetch_add(1, Ordering::Relaxed),
            handles: RwLock::default(),
            producer,
        }
    }

    /// The handle of `topic`, made on its first record; `None` when the topic name cannot be
    /// handed to librdkafka this way or too many topics have handles.
    ///
    /// An entry of this thread's [`RecentHandles`] is used only when it belongs to `self`,
    /// which destroys its handles only when dropped: while `self` is borrowed here, the
    /// handle is alive.
    fn handle(&self, topic: &Arc<str>) -> Option<NonNull<native::rd_kafka_topic_t>> {
        // A thread being torn down looks in the shared map.
        let recent = RECENT
            .try_with(|recent| recent.borrow().find(self.id, topic))
            .ok()
            .flatten();
        if recent.is_some() {
            return recent;
        }
        let handle = self.shared_handle(topic)?;
        let _ = RECENT.try_with(|recent| recent.borrow_mut().keep(self.id, topic, handle));
        Some(handle)
    }

    /// [`Self::handle`] from the map every thread shares.
    fn shared_handle(&self, topic: &Arc<str>) -> Option<NonNull<native::rd_kafka_topic_t>> {
        let found = |handles: &FxHashMap<Arc<str>, TopicHandle>| {
            handles.get(&**topic).map(|handle| handle.0)
        };
        if let Some(handle) = found(&self.handles.read().unwrap_or_else(PoisonError::into_inner)) {
            return Some(handle);
        }
        let mut handles = self.handles.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(handle) = found(&handles) {
            return Some(handle);
        }
        if handles.len() >= MOST_TOPICS {
            return None;
        }
        let name = CString::new(topic.as_bytes()).ok()?;
        // SAFETY: the client pointer is valid while `self.producer` lives; the name is a
        // NUL-terminated string librdkafka copies; a null configuration takes the producer's
        // default topic configuration, as rdkafka's `send` does.
        let raw = unsafe {
            native::rd_kafka_topic_new(
                self.producer.client().native_ptr(),
                name.as_ptr(),
                std::ptr::null_mut(),
            )
        };
        let handle = NonNull::new(raw)?;
        handles.insert(Arc::clone(topic), TopicHandle(handle));
        Some(handle)
    }
}

impl Drop for TopicHandles {
    fn drop(&mut self) {
        let handles = std::mem::take(
            self.handles
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for handle in handles.into_values() {
            // SAFETY: each handle was made by `rd_kafka_topic_new` and is destroyed once, here,
            // while the producer it belongs to is still alive (`self.producer` drops after).
            unsafe { native::rd_kafka_topic_destroy(handle.0.as_ptr()) };
        }
    }
}

/// A record's headers as librdkafka's list, destroyed unless librdkafka took it.
struct NativeHeaders(NonNull<native::rd_kafka_headers_t>);

impl NativeHeaders {
    /// The headers `record` is published with (see `outgoing_headers`).
    fn of(record: &Record) -> Self {
        // A fresh id is formatted on the stack: librdkafka copies header values.
        let mut fresh_id = [0_u8; CORRELATION_ID_LEN];
        let written = outgoing_headers(record, &mut fresh_id);
        // SAFETY: `rd_kafka_headers_new` allocates a list (it never returns null: librdkafka
        // aborts when out of memory).
        let list = unsafe { native::rd_kafka_headers_new(written.len()) };
        let list = NonNull::new(list).expect("librdkafka allocates a header list");
        for (name, value) in written {
            // SAFETY: the list is ours; name and value are read for the sizes given and
            // copied by librdkafka (a name need not be NUL-terminated when sized).
            unsafe {
                native::rd_kafka_header_add(
                    list.as_ptr(),
                    name.as_ptr().cast(),
                    size_of_slice(name.as_bytes()),
                    value.as_ptr().cast(),
                    size_of_slice(value),
                );
            }
        }
        Self(list)
    }
}

impl Drop for NativeHeaders {
    fn drop(&mut self) {
        // SAFETY: the list is ours (a produced record's list is forgotten, not dropped).
        unsafe { native::rd_kafka_headers_destroy(self.0.as_ptr()) };
    }
}

/// A byte slice's length as librdkafka's signed size (a slice never exceeds `isize::MAX`).
fn size_of_slice(bytes: &[u8]) -> isize {
    isize::try_from(bytes.len()).unwrap_or(isize::MAX)
}

/// One field of `rd_kafka_produceva`'s list.
fn field(
    vtype: native::rd_kafka_vtype_t,
    value: native::rd_kafka_vu_s__bindgen_ty_1,
) -> native::rd_kafka_vu_t {
    native::rd_kafka_vu_t { vtype, u: value }
}

/// A payload or key as librdkafka's (pointer, size); null for none (a tombstone's payload).
fn memory(bytes: Option<&[u8]>) -> native::rd_kafka_vu_s__bindgen_ty_1 {
    let (ptr, size) = bytes.map_or((std::ptr::null_mut(), 0), |bytes| {
        (bytes.as_ptr().cast_mut().cast::<c_void>(), bytes.len())
    });
    native::rd_kafka_vu_s__bindgen_ty_1 {
        mem: native::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 { ptr, size },
    }
}

/// Hands `record` to librdkafka with its topic's handle, its delivery report going to
/// `report`; `None` when the topic has no handle (send it through rdkafka's path instead).
/// librdkafka copies payload, key and headers before this returns.
pub(crate) fn produce(
    topics: &TopicHandles,
    record: &Record,
    report: &DeliveryOpaque,
) -> Option<Result<(), RDKafkaErrorCode>> {
    use native::rd_kafka_vtype_t as V;
    use native::rd_kafka_vu_s__bindgen_ty_1 as U;
    let topic = topics.handle(&record.topic)?;
    let headers = NativeHeaders::of(record);
    let opaque = report.clone().into_ptr();
    let fields = [
        field(
            V::RD_KAFKA_VTYPE_RKT,
            U {
                rkt: topic.as_ptr(),
            },
        ),
        field(
            V::RD_KAFKA_VTYPE_PARTITION,
            U {
                // librdkafka's `RD_KAFKA_PARTITION_UA`: the partitioner decides.
                i32_: record.partition.unwrap_or(-1),
            },
        ),
        field(
            V::RD_KAFKA_VTYPE_MSGFLAGS,
            U {
                i: native::RD_KAFKA_MSG_F_COPY,
            },
        ),
        field(V::RD_KAFKA_VTYPE_VALUE, memory(record.payload.as_deref())),
        field(V::RD_KAFKA_VTYPE_KEY, memory(record.key.as_deref())),
        field(V::RD_KAFKA_VTYPE_OPAQUE, U { ptr: opaque }),
        field(
            V::RD_KAFKA_VTYPE_TIMESTAMP,
            U {
                i64_: record.timestamp.unwrap_or(0),
            },
        ),
        field(
            V::RD_KAFKA_VTYPE_HEADERS,
            U {
                headers: headers.0.as_ptr(),
            },
        ),
    ];
    // SAFETY: the client and the topic handle are alive while `topics` is; every pointer in
    // `fields` is valid for the call, and librdkafka copies what they point to (MSG_F_COPY).
    let error = unsafe {
        native::rd_kafka_produceva(
            topics.producer.client().native_ptr(),
            fields.as_ptr(),
            fields.len(),
        )
    };
    if error.is_null() {
        // The record owns the headers now.
        std::mem::forget(headers);
        return Some(Ok(()));
    }
    // SAFETY: a non-null error is ours to read and destroy, once.
    let code = unsafe {
        let code = native::rd_kafka_error_code(error);
        native::rd_kafka_error_destroy(error);
        code
    };
    // SAFETY: librdkafka refused the record, so the opaque made above was not taken: it is
    // turned back into the reference it was made from, once. The headers stayed ours and drop.
    drop(unsafe { DeliveryOpaque::from_ptr(opaque) });
    Some(Err(code.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::ClientConfig;

    fn handles() -> TopicHandles {
        // No broker is needed to make a producer and its topic handles.
        let producer: KafkaProducer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .create_with_context(KafkaContext::new(None))
            .expect("a producer");
        TopicHandles::new(producer)
    }

    #[test]
    fn a_thread_finds_each_producers_own_handle_of_a_topic() {
        let first = handles();
        let second = handles();
        let topic: Arc<str> = Arc::from("orders");
        let first_orders = first.handle(&topic).expect("a handle");
        let second_orders = second.handle(&topic).expect("a handle");
        assert_ne!(first_orders, second_orders);
        // Found again (from the thread's recent handles), each is its producer's, also
        // through another `Arc` of the same name.
        assert_eq!(first.handle(&Arc::from("orders")), Some(first_orders));
        assert_eq!(second.handle(&topic), Some(second_orders));
        let payments = first.handle(&Arc::from("payments")).expect("a handle");
        assert_ne!(payments, first_orders);
        assert_eq!(first.handle(&topic), Some(first_orders));
    }

    #[test]
    fn more_topics_than_a_thread_keeps_still_find_their_own_handles() {
        let producer = handles();
        let topics: Vec<Arc<str>> = (0..RECENT_HANDLES * 2 + 1)
            .map(|n| Arc::from(format!("topic-{n}")))
            .collect();
        let made: Vec<_> = topics.iter().map(|topic| producer.handle(topic)).collect();
        for _ in 0..2 {
            for (topic, handle) in topics.iter().zip(&made) {
                assert_eq!(producer.handle(topic), *handle);
            }
        }
        let distinct: std::collections::HashSet<_> = made.iter().flatten().collect();
        assert_eq!(distinct.len(), topics.len());
    }
}
