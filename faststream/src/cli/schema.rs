//! `schema check`: every payload (and key) schema of the app that something outside governs
//! (a schema registry codec's), checked against the subject's latest version under the
//! subject's compatibility level ([`Codec::check_schema`]), before a deploy.

use faststream_core::codec::{Codec, CodecRef};
use faststream_core::SubscriberConfig;
use std::sync::Arc;

/// What `schema check` found: a line per schema checked, and the problems.
#[derive(Debug, Default)]
pub struct SchemaReport {
    /// One line per compatible schema (`ok: ...`).
    pub checked: Vec<String>,
    /// One line per problem: a breaking field, a subject the registry lacks, a registry
    /// that cannot be asked.
    pub problems: Vec<String>,
}

/// Checks the schemas of `subscribers`' codecs: each subscriber's payload and key codec on
/// each of its topics, and the codec each of its publishers publishes with. A codec is
/// checked once per topic.
pub async fn check_schemas(subscribers: &[Arc<SubscriberConfig>]) -> SchemaReport {
    let mut seen: Vec<(*const (), String)> = Vec::new();
    let mut report = SchemaReport::default();
    for sub in subscribers {
        let mut uses: Vec<(String, &str, &CodecRef)> = Vec::new();
        // A pattern subscriber's topics are a regex: no subject to name.
        if sub.backend.pattern.is_none() {
            for topic in &sub.backend.topics {
                let payload = sub.codec.effective().map(|c| ("payloads", c));
                let key = sub.codec.key.as_ref().map(|c| ("keys", c));
                for (part, codec) in payload.into_iter().chain(key) {
                    uses.push((
                        format!("{part} of subscriber `{}`", sub.name),
                        topic.as_str(),
                        codec,
                    ));
                }
            }
        }
        for publisher in &sub.publishers {
            if let Some(codec) = publisher.codec.as_ref().or(sub.reply_codec()) {
                uses.push((
                    format!("publisher of subscriber `{}`", sub.name),
                    &publisher.topic,
                    codec,
                ));
            }
        }
        for (what, topic, codec) in uses {
            let id = (Arc::as_ptr(codec).cast::<()>(), topic.to_owned());
            if seen.contains(&id) {
                continue;
            }
            seen.push(id);
            check_one(codec.as_ref(), &what, topic, &mut report).await;
        }
    }
    report
}

async fn check_one(codec: &dyn Codec, what: &str, topic: &str, report: &mut SchemaReport) {
    let Some(check) = codec.check_schema(topic) else {
        return;
    };
    let place = format!("{what}, topic `{topic}`");
    match check.await {
        Ok(check) => {
            let level = check.level.as_deref().unwrap_or("its compatibility level");
            let subject = format!("subject `{}` ({place}) under {level}", check.subject);
            if check.problems.is_empty() {
                report.checked.push(format!("ok: {subject}"));
            }
            for problem in check.problems {
                report.problems.push(format!("{subject}: {problem}"));
            }
        }
        Err(err) => report.problems.push(format!("{place}: {err}")),
    }
}
