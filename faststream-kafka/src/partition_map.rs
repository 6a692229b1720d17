//! The consumer's assigned partitions, found by topic name and partition number, and found
//! faster for the partition of the record before.

use rustc_hash::FxHashMap;
use slab::Slab;
use std::sync::Arc;

/// A value per assigned partition (the consumer's `Slot`s).
///
/// The fetch loop looks up the partition of every record it reads. Records come in runs of
/// one partition, so the last partition found is remembered by librdkafka's topic handle
/// (its address, compared without reading the name): such a lookup hashes nothing. That was
/// about 150 instructions per record of issue 21's drain (the topic name's length, its hash,
/// two map lookups).
pub(crate) struct PartitionMap<S> {
    entries: Slab<Entry<S>>,
    /// Where each topic's partitions are in `entries`.
    index: FxHashMap<TopicKey, FxHashMap<i32, usize>>,
    /// The entry of the partition found last, by its topic's handle. Forgotten whenever an
    /// entry is removed: a freed slab key may be given to another partition.
    last: Option<Last>,
}

struct Entry<S> {
    topic: Arc<str>,
    partition: i32,
    value: S,
}

#[derive(Clone, Copy)]
struct Last {
    handle: usize,
    partition: i32,
    key: usize,
}

/// A topic name as the index's key, looked up by its bytes: the fetch loop has a record's
/// topic from librdkafka as bytes, without the UTF-8 check of `Message::topic` on every record
/// (Kafka topic names are ASCII).
#[derive(PartialEq, Eq)]
struct TopicKey(Arc<str>);

impl std::hash::Hash for TopicKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As `[u8]` hashes, so that lookups by bytes find it (`Borrow` below).
        self.0.as_bytes().hash(state);
    }
}

impl std::borrow::Borrow<[u8]> for TopicKey {
    fn borrow(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl<S> Default for PartitionMap<S> {
    fn default() -> Self {
        Self {
            entries: Slab::new(),
            index: FxHashMap::default(),
            last: None,
        }
    }
}

impl<S> PartitionMap<S> {
    /// The value of `topic`'s `partition`.
    pub(crate) fn get_mut(&mut self, topic: &[u8], partition: i32) -> Option<&mut S> {
        let key = *self.index.get(topic)?.get(&partition)?;
        self.entries.get_mut(key).map(|entry| &mut entry.value)
    }

    /// The value of a record's partition: its topic's librdkafka `handle` (stable while the
    /// topic has an assigned partition, which it has while its entry is here) and name, and
    /// its `partition`. The name is read only when the partition is not the last one found.
    pub(crate) fn for_record<'t>(
        &mut self,
        handle: usize,
        topic: impl FnOnce() -> &'t [u8],
        partition: i32,
    ) -> Option<&mut S> {
        let key = match self.last {
            Some(last) if last.handle == handle && last.partition == partition => last.key,
            _ => {
                let key = *self.index.get(topic())?.get(&partition)?;
                self.last = Some(Last {
                    handle,
                    partition,
                    key,
                });
                key
            }
        };
        self.entries.get_mut(key).map(|entry| &mut entry.value)
    }

    /// The name `topic` is kept under, when it has partitions here: the partitions of a topic
    /// share it.
    pub(crate) fn topic_name(&self, topic: &str) -> Option<Arc<str>> {
        self.index
            .get_key_value(topic.as_bytes())
            .map(|(name, _)| Arc::clone(&name.0))
    }

    /// Whether `topic`'s `partition` is here.
    pub(crate) fn contains(&self, topic: &str, partition: i32) -> bool {
        self.index
            .get(topic.as_bytes())
            .is_some_and(|partitions| partitions.contains_key(&partition))
    }

    /// Adds `topic`'s `partition` with `value`, or replaces its value (returned).
    pub(crate) fn insert(&mut self, topic: Arc<str>, partition: i32, value: S) -> Option<S> {
        let old = self.remove(&topic, partition);
        let key = self.entries.insert(Entry {
            topic: Arc::clone(&topic),
            partition,
            value,
        });
        self.index
            .entry(TopicKey(topic))
            .or_default()
            .insert(partition, key);
        old
    }

    /// Takes `topic`'s `partition` out.
    pub(crate) fn remove(&mut self, topic: &str, partition: i32) -> Option<S> {
        let partitions = self.index.get_mut(topic.as_bytes())?;
        let key = partitions.remove(&partition)?;
        if partitions.is_empty() {
            self.index.remove(topic.as_bytes());
        }
        self.last = None;
        Some(self.entries.remove(key).value)
    }

    /// Takes every partition out, with its topic and number.
    pub(crate) fn drain(&mut self) -> Vec<(Arc<str>, i32, S)> {
        self.index.clear();
        self.last = None;
        self.entries
            .drain()
            .map(|entry| (entry.topic, entry.partition, entry.value))
            .collect()
    }

    /// Every partition: its topic, number and value.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Arc<str>, i32, &S)> {
        self.entries
            .iter()
            .map(|(_, entry)| (&entry.topic, entry.partition, &entry.value))
    }

    /// Every partition's number and value.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (i32, &mut S)> {
        self.entries
            .iter_mut()
            .map(|(_, entry)| (entry.partition, &mut entry.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_finds_its_partition_by_name_then_by_handle() {
        let mut map = PartitionMap::default();
        map.insert(Arc::from("orders"), 0, "orders-0");
        map.insert(Arc::from("orders"), 1, "orders-1");
        map.insert(Arc::from("audit"), 0, "audit-0");
        let mut named = 0;
        let mut find = |map: &mut PartitionMap<&'static str>, handle, topic: &'static str, p| {
            map.for_record(
                handle,
                || {
                    named += 1;
                    topic.as_bytes()
                },
                p,
            )
            .copied()
        };
        assert_eq!(find(&mut map, 10, "orders", 1), Some("orders-1"));
        assert_eq!(find(&mut map, 10, "orders", 1), Some("orders-1"));
        assert_eq!(find(&mut map, 10, "orders", 0), Some("orders-0"));
        assert_eq!(find(&mut map, 20, "audit", 0), Some("audit-0"));
        assert_eq!(find(&mut map, 20, "audit", 3), None);
        // The repeated lookup of orders[1] did not read the name.
        assert_eq!(named, 4);
    }

    #[test]
    fn a_removed_partition_is_not_found_by_its_handle_even_when_its_key_is_reused() {
        let mut map = PartitionMap::default();
        map.insert(Arc::from("orders"), 0, "orders-0");
        assert_eq!(
            map.for_record(10, || b"orders", 0).copied(),
            Some("orders-0")
        );
        assert_eq!(map.remove("orders", 0), Some("orders-0"));
        // The slab hands the freed key to the next partition.
        map.insert(Arc::from("audit"), 5, "audit-5");
        assert_eq!(map.for_record(10, || b"orders", 0), None);
        assert_eq!(map.for_record(20, || b"audit", 5).copied(), Some("audit-5"));
    }

    #[test]
    fn insert_replaces_and_drain_empties() {
        let mut map = PartitionMap::default();
        assert_eq!(map.insert(Arc::from("orders"), 0, 1), None);
        assert_eq!(map.insert(Arc::from("orders"), 0, 2), Some(1));
        map.insert(Arc::from("orders"), 1, 3);
        assert_eq!(map.get_mut(b"orders", 0).copied(), Some(2));
        assert!(map.contains("orders", 1) && !map.contains("orders", 2));
        assert_eq!(map.topic_name("orders").as_deref(), Some("orders"));
        let mut all: Vec<(String, i32, i32)> = map
            .drain()
            .into_iter()
            .map(|(t, p, v)| (t.to_string(), p, v))
            .collect();
        all.sort();
        assert_eq!(all, [("orders".into(), 0, 2), ("orders".into(), 1, 3)]);
        assert_eq!(map.iter().count(), 0);
        assert_eq!(map.topic_name("orders"), None);
    }
}
