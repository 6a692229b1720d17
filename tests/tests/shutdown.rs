//! The one shutdown path on a real Kafka broker: bounded by the graceful timeout even with a
//! handler that never returns, a revoke bounded by the rebalance timeout, a failing
//! `after_startup` hook stopping what started, and a missing `State` failing the start.

use faststream::kafka::KafkaBroker;
use faststream::{FastStream, State, SubscriberConfig};
use faststream_integration_tests::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

fn broker() -> KafkaBroker {
    logs();
    KafkaBroker::new(bootstrap())
}

/// A handler that finishes `done` messages, then never returns on the one called `hang`.
async fn finish_or_hang(done: State<Arc<AtomicUsize>>, text: String) {
    if text == "hang" {
        std::future::pending::<()>().await;
    }
    done.fetch_add(1, Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_with_a_handler_that_never_returns() {
    let input = unique("sd-hang");
    create_topic(&input, 1).await;
    let group = unique("g");
    let done = Arc::new(AtomicUsize::new(0));
    let graceful = Duration::from_secs(2);
    let flush = Duration::from_secs(3);
    let running = FastStream::new(broker())
        .with_state(Arc::clone(&done))
        .graceful_timeout(graceful)
        .flush_timeout(flush)
        .subscriber(
            SubscriberConfig::new("hangs", [input.as_str()]).group_id(group.as_str()),
            finish_or_hang,
        )
        .start()
        .await
        .expect("app starts");
    produce(
        &input,
        ["one", "two", "hang", "never reached"].map(Input::new),
    )
    .await;
    wait_for(WAIT, "two messages handled", || {
        done.load(Ordering::SeqCst) == 2
    })
    .await;
    let started = Instant::now();
    running.shutdown().await.expect("shutdown");
    let took = started.elapsed();
    // It waited for the handler (the graceful timeout), then gave up on it, within the
    // bound: graceful timeout + producer flush + committing and leaving the group.
    assert!(took >= graceful, "shutdown took {took:?}");
    assert!(
        took < graceful + flush + Duration::from_secs(3),
        "shutdown took {took:?}"
    );
    // The two finished messages are committed; the hanging one is not.
    assert_eq!(committed(&group, &input, 1), [2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_waits_at_most_the_rebalance_timeout() {
    let input = unique("sd-revoke");
    create_topic(&input, 2).await;
    let group = unique("g");
    // The first member hangs on every message; the second handles them.
    let first = FastStream::new(broker())
        .graceful_timeout(Duration::from_secs(120))
        .rebalance_timeout(Duration::from_secs(1))
        .subscriber(
            SubscriberConfig::new("stuck", [input.as_str()]).group_id(group.as_str()),
            |_text: String| std::future::pending::<()>(),
        )
        .start()
        .await
        .expect("first member starts");
    produce(
        &input,
        [Input::new("a").partition(0), Input::new("b").partition(1)],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let handled = Arc::new(AtomicUsize::new(0));
    let joined = Instant::now();
    let second = FastStream::new(broker())
        .with_state(Arc::clone(&handled))
        .subscriber(
            SubscriberConfig::new("rescuer", [input.as_str()]).group_id(group.as_str()),
            |handled: State<Arc<AtomicUsize>>, _text: String| async move {
                handled.fetch_add(1, Ordering::SeqCst);
            },
        )
        .start()
        .await
        .expect("second member starts");
    // The revoke of the first member gives up on its stuck workers after 1 s instead of
    // blocking the rebalance for the 120 s graceful timeout, so the second member gets a
    // partition and handles its message.
    wait_for(
        Duration::from_secs(40),
        "the second member handles a message",
        || handled.load(Ordering::SeqCst) >= 1,
    )
    .await;
    let took = joined.elapsed();
    assert!(took < Duration::from_secs(40), "took {took:?}");
    second.shutdown().await.expect("second shuts down");
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_after_startup_hook_stops_what_was_started() {
    let input = unique("sd-after");
    create_topic(&input, 1).await;
    let group = unique("g");
    produce(&input, ["1", "2", "3"].map(Input::new)).await;
    let done = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&done);
    let result = FastStream::new(broker())
        .with_state(Arc::clone(&done))
        .subscriber(
            SubscriberConfig::new("counts", [input.as_str()]).group_id(group.as_str()),
            |done: State<Arc<AtomicUsize>>, _n: i64| async move {
                done.fetch_add(1, Ordering::SeqCst);
            },
        )
        .after_startup(move || async move {
            wait_for(WAIT, "three messages handled", || {
                seen.load(Ordering::SeqCst) == 3
            })
            .await;
            Err::<(), _>(std::io::Error::other("config check failed"))
        })
        .start()
        .await;
    let err = result.expect_err("start fails");
    assert!(
        err.to_string()
            .contains("after_startup hook failed: config check failed"),
        "{err}"
    );
    // Stopped cleanly before `start` returned: the handled offsets are committed.
    assert_eq!(committed(&group, &input, 1), [3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_state_fails_the_start_naming_handler_and_type() {
    struct Database;
    let input = unique("sd-state");
    let err = FastStream::new(broker())
        .subscriber(
            SubscriberConfig::new("needs_db", [input.as_str()]),
            |_db: State<Database>, _text: String| async {},
        )
        .start()
        .await
        .expect_err("start fails");
    let text = err.to_string();
    assert!(text.contains("`needs_db`"), "{text}");
    assert!(text.contains("Database"), "{text}");
    assert!(text.contains("with_state"), "{text}");

    // The same through the macro, with the state between payload fields. The check fails
    // the start before anything subscribes, so the literal topic is never consumed.
    let err = FastStream::new(broker())
        .include(register_user)
        .start()
        .await
        .expect_err("start fails");
    let text = err.to_string();
    assert!(text.contains("`register_user`"), "{text}");
    assert!(text.contains("UserStore"), "{text}");
}

/// Never registered on any app.
struct UserStore;

#[faststream::subscriber("shutdown-test-never-consumed")]
async fn register_user(user: String, store: State<UserStore>, user_id: i64) {
    let _ = (user, store, user_id);
}
