//! Metrics, tracing and the access log on a real Kafka broker: FastStream's Prometheus
//! series scraped from `/metrics`, the OpenTelemetry parent-child chain across two hops, and
//! the access log lines.

use faststream::http::HttpServer;
use faststream::kafka::KafkaBroker;
use faststream::observe::metrics::Metrics;
use faststream::observe::otel::Otel;
use faststream::observe::{watch_lag, Level};
use faststream::{FastStream, SubscriberConfig};
use faststream_integration_tests::*;
use opentelemetry::trace::{SpanId, SpanKind, TraceId, TracerProvider as _};
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(60);

fn broker() -> KafkaBroker {
    logs();
    KafkaBroker::new(bootstrap())
}

/// `GET /metrics` over a plain TCP connection; the response body.
async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to /metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("application/openmetrics-text"));
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// The value of the series `series` (name and labels exactly as rendered), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_counts_received_processed_failed_and_published() {
    let (input, output) = (unique("obs-metrics-in"), unique("obs-metrics-out"));
    create_topic(&input, 1).await;
    create_topic(&output, 1).await;
    let metrics = Metrics::new("observe-test");
    let group = unique("g");
    let app = FastStream::new(broker()).metrics(&metrics).subscriber(
        SubscriberConfig::new("echo", [input.as_str()])
            .group_id(group.as_str())
            .publish_to(output.as_str()),
        |text: String| async move {
            if text == "fail" {
                Err(std::io::Error::other("asked to fail"))
            } else {
                Ok(format!("echo {text}"))
            }
        },
    );
    // The app's HTTP server, as `run --health-port` starts it: `/metrics` is the app's route.
    let routes = app.http_routes().to_vec();
    let subscribers = app.subscribers().to_vec();
    let running = app.start().await.expect("app starts");
    watch_lag(&metrics, running.health_probe(), &subscribers);
    let server = HttpServer::new()
        .health(running.health_probe())
        .routes(routes)
        .bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("HTTP server");
    produce(&input, ["a", "fail", "bb"].map(Input::new)).await;

    let handler = format!(r#"app_name="observe-test",broker="kafka",handler="{input}""#);
    let destination = format!(r#"app_name="observe-test",broker="kafka",destination="{output}""#);
    let processed = |status: &str| {
        format!("faststream_received_processed_messages_total{{{handler},status=\"{status}\"}}")
    };
    let published =
        format!("faststream_published_messages_total{{{destination},status=\"success\"}}");
    // Everything handled: the partition's lag (from librdkafka's statistics) comes down to 0.
    let lag = format!(
        r#"faststream_consumer_lag{{app_name="observe-test",broker="kafka",subscriber="echo",group="{group}",topic="{input}",partition="0"}}"#
    );
    let deadline = Instant::now() + WAIT;
    let text = loop {
        let text = scrape(server.local_addr()).await;
        let done = value(&text, &processed("acked")) == Some(2.0)
            && value(&text, &processed("error")) == Some(1.0)
            && value(&text, &published) == Some(2.0)
            && value(&text, &lag) == Some(0.0);
        if done {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never reached the counts:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(collect(&output, 2, WAIT).len(), 2);
    server.stop().await;
    running.shutdown().await.expect("shutdown");

    let expected = [
        (format!("faststream_received_messages_total{{{handler}}}"), 3.0),
        (format!("faststream_received_messages_in_process{{{handler}}}"), 0.0),
        (processed("acked"), 2.0),
        (processed("error"), 1.0),
        (processed("nacked"), 0.0),
        (processed("rejected"), 0.0),
        (
            format!(
                "faststream_received_processed_messages_exceptions_total{{{handler},exception_type=\"HandlerError\"}}"
            ),
            1.0,
        ),
        (
            format!("faststream_received_processed_messages_duration_seconds_count{{{handler}}}"),
            3.0,
        ),
        (format!("faststream_received_messages_size_bytes_count{{{handler}}}"), 3.0),
        (format!("faststream_received_messages_size_bytes_sum{{{handler}}}"), 7.0),
        (published.clone(), 2.0),
        (
            format!("faststream_published_messages_total{{{destination},status=\"error\"}}"),
            0.0,
        ),
        (
            format!("faststream_published_messages_duration_seconds_count{{{destination}}}"),
            2.0,
        ),
    ];
    for (series, count) in expected {
        assert_eq!(value(&text, &series), Some(count), "{series} in\n{text}");
    }
    assert!(
        !text.contains("faststream_published_messages_exceptions_total{"),
        "no publish failed:\n{text}"
    );
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn text_attribute(span: &SpanData, key: &str) -> Option<String> {
    attribute(span, key).map(|value| value.as_str().into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_two_hops_with_process_and_send_spans() {
    let (first, mid, out) = (
        unique("obs-otel-in"),
        unique("obs-otel-mid"),
        unique("obs-otel-out"),
    );
    for topic in [&first, &mid, &out] {
        create_topic(topic, 1).await;
    }
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let otel = Otel::new(provider.tracer("observe-test"));
    let (group_a, group_b) = (unique("ga"), unique("gb"));
    let running = FastStream::new(broker())
        .otel(&otel)
        .subscriber(
            SubscriberConfig::new("a", [first.as_str()])
                .group_id(group_a.as_str())
                .publish_to(mid.as_str()),
            |text: String| async move {
                if text == "fail" {
                    Err(std::io::Error::other("asked to fail"))
                } else {
                    Ok(format!("{text}+a"))
                }
            },
        )
        .subscriber(
            SubscriberConfig::new("b", [mid.as_str()])
                .group_id(group_b.as_str())
                .publish_to(out.as_str()),
            |text: String| async move { format!("{text}+b") },
        )
        .start()
        .await
        .expect("app starts");
    // An upstream service (Python FastStream, say) sent the first message within its trace.
    let upstream_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let upstream_span = "00f067aa0ba902b7";
    produce(
        &first,
        [
            Input::new("x")
                .key("k1")
                .header("correlation_id", "corr-1")
                .header(
                    "traceparent",
                    format!("00-{upstream_trace}-{upstream_span}-01"),
                ),
            Input::new("fail"),
        ],
    )
    .await;
    let delivered = collect(&out, 1, WAIT);
    assert_eq!(delivered.len(), 1);
    wait_for(WAIT, "five finished spans", || {
        exporter.get_finished_spans().map_or(0, |s| s.len()) >= 5
    })
    .await;
    running.shutdown().await.expect("shutdown");
    let spans = exporter.get_finished_spans().expect("spans");
    let named = |name: String, ok: bool| {
        spans
            .iter()
            .find(|s| s.name == name && (s.status == opentelemetry::trace::Status::Unset) == ok)
            .unwrap_or_else(|| panic!("no span `{name}` (ok: {ok}) in {spans:#?}"))
            .clone()
    };
    let process_a = named(format!("process {first}"), true);
    let send_mid = named(format!("send {mid}"), true);
    let process_b = named(format!("process {mid}"), true);
    let send_out = named(format!("send {out}"), true);
    let failed = named(format!("process {first}"), false);

    let trace = TraceId::from_hex(upstream_trace).expect("trace id");
    for span in [&process_a, &send_mid, &process_b, &send_out] {
        assert_eq!(span.span_context.trace_id(), trace, "{}", span.name);
    }
    assert_eq!(
        process_a.parent_span_id,
        SpanId::from_hex(upstream_span).expect("span id")
    );
    assert_eq!(send_mid.parent_span_id, process_a.span_context.span_id());
    assert_eq!(process_b.parent_span_id, send_mid.span_context.span_id());
    assert_eq!(send_out.parent_span_id, process_b.span_context.span_id());
    assert_eq!(process_a.span_kind, SpanKind::Consumer);
    assert_eq!(process_b.span_kind, SpanKind::Consumer);
    assert_eq!(send_mid.span_kind, SpanKind::Producer);
    assert_eq!(send_out.span_kind, SpanKind::Producer);

    // The record on `out` carries the `send` span's context for the next service.
    let traceparent = delivered[0]
        .headers
        .get("traceparent")
        .expect("traceparent header");
    assert!(
        !delivered[0].headers.contains_key("tracestate"),
        "no empty tracestate header"
    );
    assert_eq!(
        traceparent,
        &format!(
            "00-{}-{}-01",
            send_out.span_context.trace_id(),
            send_out.span_context.span_id()
        )
    );

    let text = |span: &SpanData, key: &str| text_attribute(span, key);
    assert_eq!(
        text(&process_a, "messaging.system").as_deref(),
        Some("kafka")
    );
    assert_eq!(
        text(&process_a, "messaging.destination.name"),
        Some(first.clone())
    );
    assert_eq!(
        text(&process_a, "messaging.destination.partition.id").as_deref(),
        Some("0")
    );
    assert_eq!(
        text(&process_a, "messaging.consumer.group.name"),
        Some(group_a.clone())
    );
    assert_eq!(
        attribute(&process_a, "messaging.kafka.offset"),
        Some(&Value::I64(0))
    );
    assert_eq!(
        text(&process_a, "messaging.kafka.message.key").as_deref(),
        Some("k1")
    );
    assert_eq!(
        text(&process_a, "messaging.message.conversation_id").as_deref(),
        Some("corr-1")
    );
    assert_eq!(attribute(&process_a, "error.type"), None);
    assert_eq!(
        text(&send_mid, "messaging.system").as_deref(),
        Some("kafka")
    );
    assert_eq!(
        text(&send_mid, "messaging.destination.name"),
        Some(mid.clone())
    );
    assert_eq!(
        text(&send_mid, "messaging.message.conversation_id").as_deref(),
        Some("corr-1"),
        "the reply keeps the correlation id"
    );
    assert_eq!(
        text(&process_b, "messaging.consumer.group.name"),
        Some(group_b.clone())
    );
    assert_eq!(
        text(&process_b, "messaging.message.conversation_id").as_deref(),
        Some("corr-1")
    );
    // The failed message: its own trace (no upstream context), `error.type`, no `send`.
    assert_eq!(text(&failed, "error.type").as_deref(), Some("HandlerError"));
    assert_eq!(
        attribute(&failed, "messaging.kafka.offset"),
        Some(&Value::I64(1))
    );
    assert_eq!(attribute(&failed, "messaging.kafka.message.key"), None);
    assert_ne!(failed.span_context.trace_id(), trace);
    assert_eq!(spans.len(), 5, "{spans:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_writes_received_then_processed_or_the_failure() {
    let input = unique("obs-access");
    create_topic(&input, 1).await;
    let group = unique("g");
    let capture = logs();
    let running = FastStream::new(broker())
        .access_log(Level::INFO)
        .subscriber(
            SubscriberConfig::new("logged", [input.as_str()]).group_id(group.as_str()),
            |text: String| async move {
                if text == "fail" {
                    Err(std::io::Error::other("asked to fail"))
                } else {
                    Ok(())
                }
            },
        )
        .start()
        .await
        .expect("app starts");
    produce(
        &input,
        [
            Input::new("ok").header("correlation_id", "corr-ok"),
            Input::new("fail").header("correlation_id", "corr-fail"),
        ],
    )
    .await;
    let access_lines = || {
        capture
            .lines_with(&input)
            .into_iter()
            .filter(|line| line.contains("faststream::access"))
            .collect::<Vec<_>>()
    };
    wait_for(WAIT, "four access lines", || access_lines().len() >= 4).await;
    running.shutdown().await.expect("shutdown");
    let lines = access_lines();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let expectations = [
        ("Received", "offset=0", "corr-ok"),
        ("Processed", "offset=0", "corr-ok"),
        ("Received", "offset=1", "corr-fail"),
        ("Failed: asked to fail", "offset=1", "corr-fail"),
    ];
    for ((what, offset, correlation), line) in expectations.iter().zip(&lines) {
        assert!(line.contains(" INFO "), "{line}");
        assert!(line.contains(what), "{what} in {line}");
        assert!(line.contains(offset), "{offset} in {line}");
        assert!(line.contains(correlation), "{correlation} in {line}");
        assert!(line.contains(&format!("group={group}")), "{line}");
        assert!(line.contains("partition=0"), "{line}");
        assert!(line.contains(&format!("topic={input}")), "{line}");
    }
    assert!(
        lines[3].contains("error_type=\"HandlerError\"")
            || lines[3].contains("error_type=HandlerError"),
        "{}",
        lines[3]
    );
}
