//! Whole-process behaviour: SIGTERM mid-stream loses nothing.

use faststream_integration_tests::*;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RECORDS: usize = 3000;
const PARTITIONS: i32 = 3;

fn start_sink(input: &str, output: &str, group: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sink"))
        .env("SINK_IN", input)
        .env("SINK_OUT", output)
        .env("SINK_GROUP", group)
        .env("SINK_DELAY_MS", "2")
        .env("FASTSTREAM_LOG", "info,librdkafka=warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("sink starts")
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM sent");
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the app did not exit within 40 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_loses_nothing_and_a_restart_consumes_the_rest() {
    let (input, output, group) = (unique("term-in"), unique("term-out"), unique("term-g"));
    create_topic(&input, PARTITIONS).await;
    create_topic(&output, PARTITIONS).await;
    produce(
        &input,
        (0..RECORDS).map(|i| Input::new(format!("r{i}")).partition(i as i32 % PARTITIONS)),
    )
    .await;

    let mut first = start_sink(&input, &output, &group);
    wait_until(
        Duration::from_secs(60),
        "the first run to forward some records",
        || records_in(&output, PARTITIONS) >= 300,
    );
    let status = terminate(&mut first);
    assert!(status.success(), "graceful exit on SIGTERM, got {status}");
    let after_first = records_in(&output, PARTITIONS);
    assert!(
        (after_first as usize) < RECORDS,
        "SIGTERM arrived mid-stream ({after_first} of {RECORDS} forwarded)"
    );
    let committed_first: i64 = committed(&group, &input, PARTITIONS).iter().sum();
    assert_eq!(
        committed_first, after_first,
        "exactly the forwarded records are committed at shutdown"
    );

    let restarted = Instant::now();
    let mut second = start_sink(&input, &output, &group);
    wait_until(
        Duration::from_secs(90),
        "the restart to forward the rest",
        || records_in(&output, PARTITIONS) as usize >= RECORDS,
    );
    // The first run left the group on exit, so the restart did not wait out a session timeout.
    assert!(
        restarted.elapsed() < Duration::from_secs(30),
        "restart took {:?}",
        restarted.elapsed()
    );
    let status = terminate(&mut second);
    assert!(status.success(), "graceful exit on SIGTERM, got {status}");

    let out = collect(&output, RECORDS, Duration::from_secs(60));
    let mut counts: HashMap<String, usize> = HashMap::new();
    for record in &out {
        *counts.entry(record.payload.clone()).or_default() += 1;
    }
    let missing: Vec<_> = (0..RECORDS)
        .map(|i| format!("r{i}"))
        .filter(|r| !counts.contains_key(r))
        .collect();
    assert!(missing.is_empty(), "lost records: {missing:?}");
    let duplicated = counts.values().filter(|c| **c > 1).count();
    assert_eq!(
        duplicated, 0,
        "a graceful stop commits what it finished, so nothing is redone"
    );
    assert_eq!(
        committed(&group, &input, PARTITIONS).iter().sum::<i64>(),
        RECORDS as i64
    );
}
