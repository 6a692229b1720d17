//! Request/reply on a real Kafka broker: a Rust subscriber answers through `reply_to`,
//! concurrent requests share one reply reader, and a missing reply times out naming the topic
//! and the correlation id.

use faststream::kafka::KafkaBroker;
use faststream::{Broker, Error, FastStream, Record, SubscriberConfig};
use faststream_integration_tests::*;
use std::time::{Duration, Instant};

/// How long a request that should be answered waits (the reply comes in well under it).
const ANSWERED: Duration = Duration::from_secs(30);

fn broker() -> KafkaBroker {
    logs();
    KafkaBroker::new(bootstrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_gets_the_subscribers_reply_matched_by_correlation_id() {
    let input = unique("rr-square");
    create_topic(&input, 3).await;
    let responder = FastStream::new(broker())
        .subscriber(
            SubscriberConfig::new("square", [input.as_str()]).group_id(unique("g").as_str()),
            |n: i64| async move { n * n },
        )
        .start()
        .await
        .expect("responder starts");
    let client = broker().reply_topic(unique("rr-replies"));
    let reply = client
        .request(
            Record::encode(input.as_str(), &7).expect("encode"),
            ANSWERED,
        )
        .await
        .expect("a reply");
    assert_eq!(&reply.payload[..], b"49");
    let id = reply
        .correlation_id()
        .expect("the reply carries the correlation id");
    assert_eq!(id.len(), 36, "a uuid: {id}");
    assert_eq!(
        reply.headers.get_str("content-type"),
        Some("application/json")
    );
    let typed: i64 = client
        .request_as(
            Record::encode(input.as_str(), &12).expect("encode"),
            ANSWERED,
        )
        .await
        .expect("a typed reply");
    assert_eq!(typed, 144);

    // Concurrent requests share the one reply reader; each gets its own answer.
    let requests = (0..20_i64).map(|n| {
        let client = client.clone();
        let input = input.clone();
        async move {
            let squared: i64 = client
                .request_as(
                    Record::encode(input.as_str(), &n).expect("encode"),
                    ANSWERED,
                )
                .await
                .expect("a reply");
            (n, squared)
        }
    });
    for (n, squared) in futures::future::join_all(requests).await {
        assert_eq!(squared, n * n);
    }
    responder.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_nobody_answers_times_out_naming_topic_and_correlation_id() {
    let input = unique("rr-nobody");
    create_topic(&input, 1).await;
    let client = broker();
    let started = Instant::now();
    let err = client
        .request(Record::new(input.as_str(), "ping"), Duration::from_secs(1))
        .await
        .expect_err("no reply");
    assert!(started.elapsed() < Duration::from_secs(20));
    let Error::RequestTimeout {
        topic,
        reply_topic,
        correlation_id,
        timeout,
    } = &err
    else {
        panic!("not a timeout: {err}")
    };
    assert_eq!(topic, &input);
    assert!(reply_topic.starts_with("faststream-replies-"));
    assert_eq!(*timeout, Duration::from_secs(1));
    let text = err.to_string();
    assert!(
        text.contains(&input) && text.contains(correlation_id.as_str()),
        "{text}"
    );
    // The request itself went out with the reply_to header and that correlation id.
    let sent = collect(&input, 1, Duration::from_secs(30));
    assert_eq!(sent[0].headers.get("correlation_id"), Some(correlation_id));
    assert_eq!(sent[0].headers.get("reply_to"), Some(reply_topic));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_reply_subscriber_publishes_but_does_not_answer() {
    let (input, output) = (unique("rr-noreply"), unique("rr-noreply-out"));
    create_topic(&input, 1).await;
    create_topic(&output, 1).await;
    let responder = FastStream::new(broker())
        .subscriber(
            SubscriberConfig::new("quiet", [input.as_str()])
                .group_id(unique("g").as_str())
                .publish_to(output.as_str())
                .no_reply(true),
            |n: i64| async move { n + 1 },
        )
        .start()
        .await
        .expect("responder starts");
    let client = broker();
    let err = client
        .request(
            Record::encode(input.as_str(), &1).expect("encode"),
            Duration::from_secs(2),
        )
        .await
        .expect_err("no reply from a no_reply subscriber");
    assert!(matches!(err, Error::RequestTimeout { .. }), "{err}");
    let out = collect(&output, 1, Duration::from_secs(30));
    responder.shutdown().await.expect("shutdown");
    assert_eq!(out[0].payload, "2", "its publisher still got the value");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_can_set_its_own_correlation_id() {
    let (input, output) = (unique("rr-cid"), unique("rr-cid-out"));
    create_topic(&input, 1).await;
    create_topic(&output, 1).await;
    let app =
        FastStream::new(broker())
            .subscriber(
                SubscriberConfig::new("relabel", [input.as_str()])
                    .group_id(unique("g").as_str())
                    .publish_to(output.as_str()),
                |n: i64| async move {
                    faststream::Response::new(n).correlation_id(format!("order-{n}"))
                },
            )
            .start()
            .await
            .expect("app starts");
    produce(
        &input,
        [
            Input::new("5").header("correlation_id", "incoming"),
            Input::new("6"),
        ],
    )
    .await;
    let out = collect(&output, 2, Duration::from_secs(30));
    app.shutdown().await.expect("shutdown");
    let ids: Vec<_> = out
        .iter()
        .map(|o| o.headers.get("correlation_id").cloned())
        .collect();
    assert_eq!(
        ids,
        [Some("order-5".to_owned()), Some("order-6".to_owned())]
    );
}
