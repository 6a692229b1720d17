//! Dead letters: the records a message that failed for good becomes on its dead-letter topic.
//! Pure, so the worker only enqueues what this yields.

use crate::broker::{Record, DLT_ORIGINAL_TOPIC};
use crate::error::BoxError;
use crate::message::Message;
use crate::policy::error_type;
use crate::runtime::retry_topic::{copy_to, kept_headers, Provenance};

/// Why and where a message goes to its dead-letter topic.
pub(crate) struct DeadLetter<'a> {
    /// The dead-letter topic.
    pub(crate) topic: &'a str,
    /// The consumer group the message failed in.
    pub(crate) group: &'a str,
    /// Its last error.
    pub(crate) error: &'a BoxError,
    /// How many times its handler ran.
    pub(crate) attempts: u32,
}

impl DeadLetter<'_> {
    /// The dead letters of `message`: one per record (a batch's records each get their own).
    pub(crate) fn records<'m>(&'m self, message: &'m Message) -> impl Iterator<Item = Record> + 'm {
        message
            .records()
            .iter()
            .map(move |record| self.record(record))
    }

    /// The dead letter of one record: its key, payload and headers (the correlation id kept),
    /// plus where it came from and why it failed, in `dlt-*` headers. A record of a retry
    /// topic names the position it was first read at, its retry headers dropped.
    pub(crate) fn record(&self, message: &Message) -> Record {
        let mut headers = kept_headers(message, 8);
        let origin = Provenance::of(message);
        headers.insert(DLT_ORIGINAL_TOPIC, origin.topic.into_owned());
        headers.insert("dlt-original-partition", origin.partition.into_owned());
        headers.insert("dlt-original-offset", origin.offset.into_owned());
        if let Some(timestamp) = message.timestamp {
            headers.insert("dlt-original-timestamp", timestamp.to_string());
        }
        headers.insert("dlt-original-group", self.group.to_owned());
        headers.insert("dlt-exception-type", error_type(self.error));
        headers.insert("dlt-exception-message", self.error.to_string());
        headers.insert("dlt-attempts", self.attempts.to_string());
        copy_to(message, self.topic, headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::retry_topic::tests::failed;

    #[test]
    fn a_dead_letter_keeps_the_record_and_names_its_origin_and_failure() {
        let error: BoxError = Box::new(std::io::Error::other("db down"));
        let letter = DeadLetter {
            topic: "orders-dlt",
            group: "billing",
            error: &error,
            attempts: 3,
        };
        let record = letter.record(&failed(41));
        assert_eq!(&*record.topic, "orders-dlt");
        assert_eq!(record.payload.as_deref(), Some(&br#"{"n":41}"#[..]));
        assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(record.correlation_id.as_deref(), Some(&b"c-1"[..]));
        assert_eq!(record.content_type, None);
        let headers: Vec<(&str, String)> = record
            .headers
            .iter()
            .map(|(n, v)| (n, String::from_utf8_lossy(v).into_owned()))
            .collect();
        let expected = [
            ("content-type", "application/json"),
            ("trace", "t"),
            ("dlt-original-topic", "orders"),
            ("dlt-original-partition", "2"),
            ("dlt-original-offset", "41"),
            ("dlt-original-timestamp", "1700000000000"),
            ("dlt-original-group", "billing"),
            ("dlt-exception-type", "HandlerError"),
            ("dlt-exception-message", "db down"),
            ("dlt-attempts", "3"),
        ]
        .map(|(n, v)| (n, v.to_owned()));
        assert_eq!(headers, expected);
    }

    #[test]
    fn a_batch_becomes_one_dead_letter_per_record() {
        let error: BoxError = "boom".into();
        let letter = DeadLetter {
            topic: "orders-dlt",
            group: "g",
            error: &error,
            attempts: 1,
        };
        let batch = Message::batch_of(vec![failed(5), failed(6), failed(7)]).unwrap();
        let offsets: Vec<String> = letter
            .records(&batch)
            .map(|r| {
                r.headers
                    .get_str("dlt-original-offset")
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert_eq!(offsets, ["5", "6", "7"]);
        assert_eq!(letter.records(&failed(9)).count(), 1);
    }
}
