//! Plain rdkafka clients (independent of the framework under test): topic creation, filling,
//! offsets, leaders, and reading topics to their end for verification.

use crate::avro::Writers;
use crate::error::BoxError;
use crate::marks::{Kind, Marks};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// A client for offsets and metadata. `read_uncommitted`, so that asking for a group's
/// committed offsets does not wait for stable ones: librdkafka's default `read_committed`
/// fetches them with `require_stable` (KIP-447), which an exactly-once app killed with a
/// transaction open holds back until that transaction ends, i.e. until the restarted app
/// fences it or the 15 s transaction timeout aborts it. The suite asks right after the kill,
/// before restarting the app, and waited for the timeout (`kill 1: up 21.0 s`).
fn consumer(bootstrap: &str, group: &str) -> Result<BaseConsumer, BoxError> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_uncommitted")
        .create()?)
}

/// Polls `condition` every 200 ms until it holds; transient errors (a broker restarting)
/// count as "not yet". Fails naming `what` after `timeout`.
pub async fn wait_until(
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut() -> Result<bool, BoxError>,
) -> Result<(), BoxError> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match condition() {
            Ok(true) => return Ok(()),
            Ok(false) => None,
            Err(err) => Some(err),
        };
        if Instant::now() >= deadline {
            let why = last
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default();
            return Err(format!("timed out after {timeout:?} waiting for {what}{why}").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn partition_count<C: ConsumerContext>(
    client: &BaseConsumer<C>,
    topic: &str,
) -> Result<i32, BoxError> {
    let metadata = client.fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
    let entry = metadata
        .topics()
        .first()
        .ok_or_else(|| format!("no metadata for {topic}"))?;
    if let Some(err) = entry.error() {
        return Err(format!("metadata for {topic}: {err:?}").into());
    }
    Ok(entry.partitions().len() as i32)
}

/// Creates `topic` (replication `replication`, `configs`) and waits until every partition
/// has a leader.
pub async fn create_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    replication: i32,
    configs: &[(&str, &str)],
) -> Result<(), BoxError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    for (key, value) in configs {
        new = new.set(key, value);
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics([&new], &options).await? {
        result.map_err(|(topic, code)| format!("creating {topic}: {code}"))?;
    }
    let probe = consumer(bootstrap, "chaos-probe")?;
    wait_until(Duration::from_secs(30), "topic leaders", || {
        let metadata = probe.fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
        Ok(metadata.topics().first().is_some_and(|t| {
            t.error().is_none()
                && t.partitions().len() as i32 == partitions
                && t.partitions().iter().all(|p| p.leader() >= 0)
        }))
    })
    .await
}

/// Produces records `from..count` with an idempotent producer (acks=all), record `seq` to
/// partition `seq % partitions` (at offset `seq / partitions` when the topic was filled from
/// 0); as text, or as Avro in the registry's wire format with `avro`.
pub async fn fill(
    bootstrap: &str,
    topic: &str,
    from: u64,
    count: u64,
    marks: Marks,
    avro: Option<&Writers>,
) -> Result<(), BoxError> {
    let partitions = partition_count(&consumer(bootstrap, "chaos-probe")?, topic)? as u64;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "200000")
        .create()?;
    let started = Instant::now();
    // Bounded batches keep the number of pending deliveries (and memory) small.
    let mut seq = from;
    while seq < count {
        let end = (seq + 10_000).min(count);
        let mut pending = Vec::with_capacity((end - seq) as usize);
        for s in seq..end {
            let tag = match marks.kind(s) {
                Kind::Good => "",
                Kind::Poison => "poison",
                Kind::Big => "big",
            };
            let payload = match avro {
                Some(writers) => writers.encode(s / partitions, s, tag)?,
                None if tag.is_empty() => s.to_string().into_bytes(),
                None => format!("{s}:{tag}").into_bytes(),
            };
            let key = s.to_string();
            let record = FutureRecord::to(topic)
                .partition((s % partitions) as i32)
                .key(&key)
                .payload(&payload);
            pending.push(
                producer
                    .send_result(record)
                    .map_err(|(err, _)| format!("enqueue failed: {err}"))?,
            );
        }
        for delivery in pending {
            delivery
                .await
                .map_err(|_| "delivery future cancelled")?
                .map_err(|(err, _)| format!("delivery failed: {err}"))?;
        }
        seq = end;
    }
    tracing::info!(topic, from, count, elapsed = ?started.elapsed(), "filled");
    Ok(())
}

/// The end offset of each partition of `topic`.
pub fn end_offsets(bootstrap: &str, topic: &str) -> Result<Vec<i64>, BoxError> {
    let client = consumer(bootstrap, "chaos-probe")?;
    let partitions = partition_count(&client, topic)?;
    (0..partitions)
        .map(|p| Ok(client.fetch_watermarks(topic, p, METADATA_TIMEOUT)?.1))
        .collect()
}

/// The committed offset of `group` on each partition of `topic` (-1 where none).
pub fn committed(bootstrap: &str, group: &str, topic: &str) -> Result<Vec<i64>, BoxError> {
    let client = consumer(bootstrap, group)?;
    let partitions = partition_count(&client, topic)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = client.committed_offsets(tpl, METADATA_TIMEOUT)?;
    Ok((0..partitions)
        .map(
            |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            },
        )
        .collect())
}

/// The broker id leading `topic`'s `partition`.
pub fn leader(bootstrap: &str, topic: &str, partition: i32) -> Result<i32, BoxError> {
    let client = consumer(bootstrap, "chaos-probe")?;
    let metadata = client.fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
    metadata
        .topics()
        .first()
        .and_then(|t| t.partitions().iter().find(|p| p.id() == partition))
        .map(|p| p.leader())
        .ok_or_else(|| format!("no leader known for {topic}[{partition}]").into())
}

/// The broker id coordinating consumer group `group`: the leader of the partition of
/// `__consumer_offsets` Kafka assigns the group to (`abs(group.hashCode()) % partitions`, Java's
/// `String.hashCode` over the UTF-16 code units).
pub fn group_coordinator(bootstrap: &str, group: &str) -> Result<i32, BoxError> {
    const OFFSETS: &str = "__consumer_offsets";
    let client = consumer(bootstrap, "chaos-probe")?;
    let metadata = client.fetch_metadata(Some(OFFSETS), METADATA_TIMEOUT)?;
    let partitions = metadata
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{OFFSETS}` has no partitions yet"))?;
    let hash = group.encode_utf16().fold(0_i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    let partition = ((hash & 0x7fff_ffff) as usize % partitions) as i32;
    leader(bootstrap, OFFSETS, partition)
}

/// One record read back: its sequence number and headers.
struct Read {
    seq: Option<u64>,
    headers: HashMap<String, String>,
}

/// A reader that reports reaching a partition's end (transaction markers take offsets no
/// record is read at). `read_committed` sees only committed transactions (and every
/// non-transactional record), as a consumer downstream of an exactly-once app must; with
/// `false` it sees the records of aborted and open transactions too.
fn reader(
    bootstrap: &str,
    group: &str,
    read_committed: bool,
) -> Result<BaseConsumer<ReaderContext>, BoxError> {
    let isolation = if read_committed {
        "read_committed"
    } else {
        "read_uncommitted"
    };
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "true")
        .create_with_context(ReaderContext)?)
}

/// A reader's client context: reaching a partition's end is what the reader waits for, not
/// an error worth a log line.
struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for ReaderContext {}

/// Reads every partition of `topic` from the beginning up to the end offsets seen at the start
/// (see [`reader`] for `read_committed`).
async fn read_all(
    bootstrap: &str,
    topic: &str,
    read_committed: bool,
) -> Result<Vec<Read>, BoxError> {
    let client = reader(bootstrap, "chaos-verify", read_committed)?;
    let mut ends = Vec::new();
    wait_until(Duration::from_secs(60), "end offsets", || {
        ends = end_offsets(bootstrap, topic)?;
        Ok(true)
    })
    .await?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..ends.len() as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    client.assign(&tpl)?;
    let mut next: Vec<i64> = vec![0; ends.len()];
    // Partitions whose end the reader reported: past the last stable offset nothing more is
    // readable, and the last record may sit below the end offset (a commit marker after it).
    let mut at_end = vec![false; ends.len()];
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    let unfinished = |next: &[i64], at_end: &[bool]| {
        next.iter()
            .zip(&ends)
            .zip(at_end)
            .any(|((n, e), done)| n < e && !done)
    };
    while unfinished(&next, &at_end) {
        if Instant::now() > deadline {
            return Err(format!("timed out reading {topic}: at {next:?} of {ends:?}").into());
        }
        let Some(result) = client.poll(Duration::from_millis(200)) else {
            continue;
        };
        // Consumer errors (a broker gone, a leader moving) are transient here: keep polling
        // until the deadline.
        let message = match result {
            Ok(message) => message,
            Err(KafkaError::PartitionEOF(partition)) => {
                if let Some(done) = at_end.get_mut(partition as usize) {
                    *done = true;
                }
                continue;
            }
            Err(err) => {
                tracing::debug!(topic, "read error: {err}");
                continue;
            }
        };
        let slot = next
            .get_mut(message.partition() as usize)
            .ok_or("record from an unknown partition")?;
        *slot = message.offset() + 1;
        let payload = message.payload().unwrap_or_default();
        let text = String::from_utf8_lossy(payload);
        let seq = text.split(':').next().and_then(|s| s.parse().ok());
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                        (h.key.to_owned(), value.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Read { seq, headers });
    }
    Ok(out)
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    #[arg(long)]
    input: String,
    #[arg(long)]
    output: String,
    /// Dead-letter topic to read as well.
    #[arg(long)]
    dlt: Option<String>,
    /// Records filled into the input.
    #[arg(long)]
    count: u64,
    /// The app's group, expected in `dlt-original-group`.
    #[arg(long)]
    group: Option<String>,
    /// Expected `dlt-attempts` of poison records (big ones: any).
    #[arg(long)]
    dlt_attempts: Option<u32>,
    /// Reads as a `read_uncommitted` reader: the records of aborted transactions count too
    /// (an exactly-once scenario shows with it what its aborted transactions held).
    #[arg(long)]
    read_uncommitted: bool,
    #[command(flatten)]
    marks: Marks,
}

const DLT_HEADERS: [&str; 8] = [
    "dlt-original-topic",
    "dlt-original-partition",
    "dlt-original-offset",
    "dlt-original-timestamp",
    "dlt-original-group",
    "dlt-exception-type",
    "dlt-exception-message",
    "dlt-attempts",
];

/// Problems with one dead letter's headers, empty when it is complete and right.
fn dlt_problems(read: &Read, seq: u64, args: &VerifyArgs, partitions: u64) -> Vec<String> {
    let mut problems: Vec<String> = DLT_HEADERS
        .iter()
        .filter(|h| !read.headers.contains_key(**h))
        .map(|h| format!("missing {h}"))
        .collect();
    let header = |name: &str| read.headers.get(name).map(String::as_str);
    let mut expect = |name: &str, value: &str| {
        if let Some(got) = header(name) {
            if got != value {
                problems.push(format!("{name}={got}, expected {value}"));
            }
        }
    };
    // fill placed record `seq` at partition seq % partitions, offset seq / partitions.
    expect("dlt-original-topic", &args.input);
    expect("dlt-original-partition", &(seq % partitions).to_string());
    expect("dlt-original-offset", &(seq / partitions).to_string());
    if let Some(group) = &args.group {
        expect("dlt-original-group", group);
    }
    match args.marks.kind(seq) {
        Kind::Poison => {
            expect("dlt-exception-type", "HandlerError");
            if let Some(attempts) = args.dlt_attempts {
                expect("dlt-attempts", &attempts.to_string());
            }
        }
        Kind::Big => expect("dlt-exception-type", "PublishRefused"),
        Kind::Good => problems.push("a good record was dead-lettered".to_owned()),
    }
    if header("dlt-original-timestamp").is_some_and(|t| t.parse::<i64>().is_err()) {
        problems.push("dlt-original-timestamp is not a number".to_owned());
    }
    problems
}

/// The sequence number of a dead letter whose payload is not text (an Avro record), from the
/// partition and offset its headers name: `fill` put record `seq` at partition
/// `seq % partitions`, offset `seq / partitions`.
fn seq_from_origin(read: &Read, partitions: u64) -> Option<u64> {
    let header = |name: &str| read.headers.get(name)?.parse::<u64>().ok();
    Some(header("dlt-original-offset")? * partitions + header("dlt-original-partition")?)
}

/// Compares output and dead letters with what the input held, prints one `key=value` line.
/// Read `read_committed` unless `read_uncommitted` is asked for.
pub async fn verify(bootstrap: &str, args: VerifyArgs) -> Result<(), BoxError> {
    let partitions = end_offsets(bootstrap, &args.input)?.len() as u64;
    let committed = !args.read_uncommitted;
    let output = read_all(bootstrap, &args.output, committed).await?;
    let dead = match &args.dlt {
        Some(topic) => read_all(bootstrap, topic, committed).await?,
        None => Vec::new(),
    };
    let mut seen_out = HashSet::new();
    let mut seen_dlt = HashSet::new();
    let (mut dup, mut unexpected, mut dlt_bad) = (0_u64, 0_u64, 0_u64);
    for read in &output {
        match read.seq {
            Some(seq) if seq < args.count && args.marks.kind(seq) != Kind::Poison => {
                if !seen_out.insert(seq) {
                    dup += 1;
                }
            }
            _ => unexpected += 1,
        }
    }
    for read in &dead {
        let seq = read.seq.or_else(|| seq_from_origin(read, partitions));
        let Some(seq) = seq.filter(|s| *s < args.count) else {
            unexpected += 1;
            continue;
        };
        if !seen_dlt.insert(seq) {
            dup += 1;
        }
        let problems = dlt_problems(read, seq, &args, partitions);
        if !problems.is_empty() {
            dlt_bad += 1;
            if dlt_bad <= 3 {
                tracing::warn!(seq, ?problems, "dead letter with wrong headers");
            }
        }
    }
    // Lost: in neither the output nor the dead letters. A poison or refused record belongs in
    // the dead letters (with no dead-letter topic it is expected nowhere); a good record in the
    // dead letters is not lost but counts in `dlt_bad`.
    let mut lost = 0_u64;
    let mut lost_examples = Vec::new();
    for seq in 0..args.count {
        let found = match args.marks.kind(seq) {
            Kind::Good => seen_out.contains(&seq) || seen_dlt.contains(&seq),
            Kind::Poison | Kind::Big if args.dlt.is_some() => seen_dlt.contains(&seq),
            Kind::Poison | Kind::Big => true,
        };
        if !found {
            lost += 1;
            if lost_examples.len() < 10 {
                lost_examples.push(seq);
            }
        }
    }
    if lost > 0 {
        tracing::warn!(lost, first = ?lost_examples, "records missing");
    }
    println!(
        "in={} out={} distinct={} lost={lost} dup={dup} dlt={} dlt_bad={dlt_bad} unexpected={unexpected}",
        args.count,
        output.len(),
        seen_out.len(),
        dead.len(),
    );
    Ok(())
}

/// Waits until a `read_committed` reader that starts at the end of `topic` (its last stable
/// offset: an open transaction holds it back) reads a record; prints the seconds since
/// `since` (seconds since the epoch, e.g. when the app was killed) or since the start.
pub async fn wait_visible(
    bootstrap: &str,
    topic: &str,
    since: Option<f64>,
    timeout: Duration,
) -> Result<(), BoxError> {
    let started = since.unwrap_or_else(epoch_seconds);
    let client = reader(bootstrap, "chaos-visible", true)?;
    let partitions = partition_count(&client, topic)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::End)?;
    }
    client.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    loop {
        if Instant::now() > deadline {
            return Err(format!("no new record visible in {topic} within {timeout:?}").into());
        }
        match client.poll(Duration::from_millis(50)) {
            Some(Ok(_)) => break,
            Some(Err(err)) if !matches!(err, KafkaError::PartitionEOF(_)) => {
                tracing::debug!(topic, "read error: {err}");
            }
            _ => {}
        }
    }
    println!("{:.1}", epoch_seconds() - started);
    Ok(())
}

fn epoch_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
