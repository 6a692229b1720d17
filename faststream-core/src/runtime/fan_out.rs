//! Reply fan-out: the records one handler reply becomes. Pure, so the worker only enqueues
//! what this yields.
//!
//! A reply goes to every publisher of the subscriber, in order, then to the message's
//! `reply_to` (unless the subscriber is `no_reply`). A batch publisher sends each element of a
//! returned JSON sequence as its own record. Records carry the reply's correlation id (its
//! `correlation_id` header), else the incoming message's.

use crate::broker::Record;
use crate::config::subscriber::PublisherConfig;
use crate::handler::reply::Outgoing;
use crate::message::{codec, CORRELATION_ID};
use bytes::Bytes;
use std::sync::Arc;

/// Where one reply goes: the subscriber's publishers, then `reply_to`.
pub(crate) struct Destinations<'a> {
    pub(crate) publishers: &'a [PublisherConfig],
    pub(crate) reply_to: Option<Arc<str>>,
}

impl Destinations<'_> {
    fn len(&self) -> usize {
        self.publishers.len() + usize::from(self.reply_to.is_some())
    }

    fn get(&self, index: usize) -> Option<(Arc<str>, bool)> {
        match self.publishers.get(index) {
            Some(publisher) => Some((Arc::clone(&publisher.topic), publisher.batch)),
            None if index == self.publishers.len() => self
                .reply_to
                .as_ref()
                .map(|topic| (Arc::clone(topic), false)),
            None => None,
        }
    }
}

/// The records of one reply, in publish order (see the module docs). Allocates nothing for
/// the common single-destination reply: the last destination takes the body itself.
pub(crate) struct FanOut<'a> {
    destinations: Destinations<'a>,
    next: usize,
    body: Option<Outgoing>,
    /// The reply's correlation id, else the incoming message's.
    correlation_id: Option<Bytes>,
    /// A batch publisher's elements still to send.
    parts: std::vec::IntoIter<(Bytes, &'static str)>,
    parts_of: Option<(Arc<str>, Outgoing)>,
}

/// The records `body` becomes for `destinations`.
pub(crate) fn fan_out(
    mut body: Outgoing,
    destinations: Destinations<'_>,
    correlation_id: Option<Bytes>,
) -> FanOut<'_> {
    // Out of the headers: a record carries it in its own field, written once.
    let own = body.headers.take(CORRELATION_ID);
    FanOut {
        destinations,
        next: 0,
        body: Some(body),
        correlation_id: own.or(correlation_id),
        parts: Vec::new().into_iter(),
        parts_of: None,
    }
}

impl FanOut<'_> {
    /// The record of a whole reply: the body moves into it.
    fn record(&self, topic: Arc<str>, body: Outgoing) -> Record {
        Record {
            topic,
            correlation_id: self.correlation_id.clone(),
            payload: Some(body.payload),
            key: body.key,
            content_type: Some(body.content_type),
            headers: body.headers,
            partition: body.partition,
            timestamp: body.timestamp,
        }
    }

    /// The next element of a batch publisher's sequence, as its own record.
    fn next_part(&mut self) -> Option<Record> {
        let (payload, content_type) = self.parts.next()?;
        let (topic, body) = self.parts_of.as_ref()?;
        Some(Record {
            topic: Arc::clone(topic),
            payload: Some(payload),
            key: body.key.clone(),
            content_type: Some(content_type),
            correlation_id: self.correlation_id.clone(),
            headers: body.headers.clone(),
            partition: body.partition,
            timestamp: body.timestamp,
        })
    }
}

impl Iterator for FanOut<'_> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        if let Some(part) = self.next_part() {
            return Some(part);
        }
        loop {
            let (topic, batch) = self.destinations.get(self.next)?;
            self.next += 1;
            // Earlier destinations share a clone (cloning `Bytes` built from a `Vec`
            // allocates, so the one-destination case never clones).
            let body = if self.next == self.destinations.len() {
                self.body.take()
            } else {
                self.body.clone()
            }?;
            let parts = batch
                .then(|| codec::split_sequence(&body.payload, body.content_type))
                .flatten();
            let Some(parts) = parts else {
                return Some(self.record(topic, body));
            };
            self.parts = parts.into_iter();
            self.parts_of = Some((topic, body));
            if let Some(part) = self.next_part() {
                return Some(part);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Headers;

    fn body(payload: &'static str, content_type: &'static str) -> Outgoing {
        Outgoing {
            payload: Bytes::from_static(payload.as_bytes()),
            content_type,
            key: Some(Bytes::from_static(b"k")),
            headers: Headers::from_iter([("x", "1")]),
            partition: None,
            timestamp: None,
        }
    }

    fn summary(records: impl Iterator<Item = Record>) -> Vec<(String, String, String)> {
        records
            .map(|r| {
                let text =
                    |b: Option<Bytes>| String::from_utf8_lossy(&b.unwrap_or_default()).into_owned();
                (r.topic.to_string(), text(r.payload), text(r.correlation_id))
            })
            .collect()
    }

    #[test]
    fn every_publisher_then_reply_to_with_the_incoming_correlation_id() {
        let publishers = [PublisherConfig::new("a"), PublisherConfig::new("b")];
        let destinations = Destinations {
            publishers: &publishers,
            reply_to: Some(Arc::from("replies")),
        };
        let records = fan_out(
            body("1", "application/json"),
            destinations,
            Some("c-1".into()),
        );
        let expected = ["a", "b", "replies"].map(|t| (t.into(), "1".into(), "c-1".into()));
        assert_eq!(summary(records), expected);
    }

    #[test]
    fn a_reply_keeps_its_own_correlation_id_and_extra_headers() {
        let publishers = [PublisherConfig::new("a")];
        let mut reply = body("hi", "text/plain");
        reply.headers.insert(CORRELATION_ID, "own");
        let destinations = Destinations {
            publishers: &publishers,
            reply_to: None,
        };
        let records: Vec<Record> = fan_out(reply, destinations, Some("in".into())).collect();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].correlation_id.as_deref(), Some(&b"own"[..]));
        assert_eq!(records[0].content_type, Some("text/plain"));
        assert_eq!(records[0].headers.get_str("x"), Some("1"));
        assert!(
            !records[0].headers.contains(CORRELATION_ID),
            "the correlation id is written once, from its field"
        );
        assert_eq!(records[0].key.as_deref(), Some(&b"k"[..]));
    }

    #[test]
    fn no_destination_means_no_record() {
        let destinations = Destinations {
            publishers: &[],
            reply_to: None,
        };
        assert_eq!(
            fan_out(body("1", "application/json"), destinations, None).count(),
            0
        );
    }

    #[test]
    fn a_batch_publisher_sends_each_element_on_its_own() {
        let publishers = [
            PublisherConfig::new("each").batch(true),
            PublisherConfig::new("all"),
        ];
        let destinations = Destinations {
            publishers: &publishers,
            reply_to: None,
        };
        let records: Vec<Record> = fan_out(
            body(r#"[1,"two",{"n":3}]"#, "application/json"),
            destinations,
            None,
        )
        .collect();
        let got: Vec<(&str, &[u8], Option<&str>)> = records
            .iter()
            .map(|r| {
                (
                    &*r.topic,
                    r.payload.as_deref().unwrap_or_default(),
                    r.content_type,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("each", &b"1"[..], Some("application/json")),
                ("each", &b"two"[..], Some("text/plain")),
                ("each", &br#"{"n":3}"#[..], Some("application/json")),
                (
                    "all",
                    &br#"[1,"two",{"n":3}]"#[..],
                    Some("application/json")
                ),
            ]
        );
    }

    #[test]
    fn a_batch_publisher_sends_a_non_sequence_as_one_record() {
        let publishers = [PublisherConfig::new("each").batch(true)];
        let destinations = Destinations {
            publishers: &publishers,
            reply_to: Some(Arc::from("r")),
        };
        let topics: Vec<String> = fan_out(body("7", "application/json"), destinations, None)
            .map(|r| r.topic.to_string())
            .collect();
        assert_eq!(topics, ["each", "r"]);
    }
}
