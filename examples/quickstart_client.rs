//! Sends the quickstart's sample message and prints the reply the quickstart app publishes:
//! the other half of `scripts/quickstart.sh`.
//!
//! It publishes `{"user": "John", "user_id": 1}` to `in-topic` with a fresh correlation id,
//! then reads `out-topic` until the record carrying that correlation id arrives.
use faststream::kafka::KafkaBroker;
use faststream::{Broker, FastStream, Meta, OffsetReset, Record, SubscriberConfig};
use std::time::Duration;
use tokio::sync::mpsc;

#[tokio::main]
async fn main() -> faststream::Result<()> {
    let servers =
        std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|_| "localhost:9092".into());
    let broker = KafkaBroker::new(servers);
    let correlation_id = uuid::Uuid::new_v4().to_string();

    let (found, mut replies) = mpsc::channel::<String>(1);
    let wanted = correlation_id.clone();
    let watcher = FastStream::new(broker.clone())
        .subscriber(
            SubscriberConfig::new("quickstart_client", ["out-topic"])
                .group_id(format!("quickstart-client-{correlation_id}"))
                .auto_offset_reset(OffsetReset::Earliest),
            move |meta: Meta, text: String| {
                let (found, wanted) = (found.clone(), wanted.clone());
                async move {
                    if meta.correlation_id.as_deref() == Some(wanted.as_str()) {
                        let _ = found.send(text).await;
                    }
                }
            },
        )
        .start()
        .await?;

    let message = serde_json::json!({"user": "John", "user_id": 1});
    let delivered = broker
        .publish_record(
            Record::encode("in-topic", &message)?.correlation_id(correlation_id.clone()),
        )
        .await?;
    println!(
        "sent {message} to in-topic (partition {}, offset {})",
        delivered.partition, delivered.offset
    );

    let reply = tokio::time::timeout(Duration::from_secs(60), replies.recv()).await;
    watcher.shutdown().await?;
    match reply {
        Ok(Some(text)) => {
            println!("received from out-topic: {text}");
            Ok(())
        }
        _ => Err(faststream::Error::broker_msg(
            "no reply on out-topic within 60 s",
            faststream::ErrorClass::Retriable,
        )),
    }
}
