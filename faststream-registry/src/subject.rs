//! Subject name strategies: under which subject a topic's schemas are registered and looked
//! up (Confluent's `TopicNameStrategy`, `RecordNameStrategy`, `TopicRecordNameStrategy`).

/// How a subject is named from the topic, the record's name and whether it is the key's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubjectStrategy {
    /// `{topic}-value` or `{topic}-key`: one schema (and its versions) per topic and part;
    /// Confluent's default.
    #[default]
    TopicName,
    /// `{record}`, the record's full name: one schema per record type, on any topic.
    RecordName,
    /// `{topic}-{record}`: several record types per topic, each with its versions.
    TopicRecordName,
}

impl SubjectStrategy {
    /// The subject of `record` (an Avro record's full name, a JSON Schema's `title`) on
    /// `topic`, for keys when `key`; `None` when the strategy needs a record name and there
    /// is none.
    ///
    /// ```
    /// use faststream_registry::SubjectStrategy;
    /// let record = Some("shop.Order");
    /// assert_eq!(SubjectStrategy::TopicName.subject("orders", record, false).unwrap(), "orders-value");
    /// assert_eq!(SubjectStrategy::TopicName.subject("orders", record, true).unwrap(), "orders-key");
    /// assert_eq!(SubjectStrategy::RecordName.subject("orders", record, false).unwrap(), "shop.Order");
    /// assert_eq!(SubjectStrategy::TopicRecordName.subject("orders", record, false).unwrap(), "orders-shop.Order");
    /// assert_eq!(SubjectStrategy::RecordName.subject("orders", None, false), None);
    /// ```
    pub fn subject(self, topic: &str, record: Option<&str>, key: bool) -> Option<String> {
        match self {
            SubjectStrategy::TopicName => {
                Some(format!("{topic}-{}", if key { "key" } else { "value" }))
            }
            SubjectStrategy::RecordName => record.map(str::to_owned),
            SubjectStrategy::TopicRecordName => record.map(|record| format!("{topic}-{record}")),
        }
    }
}
