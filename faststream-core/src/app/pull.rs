//! Pull-style consumption: [`RunningApp::pull`] gives a [`Pull`], a [`Stream`] of decoded
//! messages with [`Pull::get_one`] (FastStream's `await subscriber.get_one(timeout=5)` and
//! `async for msg in subscriber`).
//!
//! A pull is an ordinary subscriber added at runtime (see [`RunningApp::subscribe`]): its
//! handler decodes the payload, hands the value and the [`Message`] to the puller and waits
//! until the puller is done with it. So everything a subscriber has holds here too: one worker
//! per partition (order per partition), the error policy (a malformed payload gives the usual
//! error line, then the policy), the memory budget, health, rebalances, and at-least-once:
//! an offset is committed only after its [`Pulled`] was acked (or dropped).
//!
//! What follows from the handler waiting for the puller:
//!
//! - Each partition hands over one message at a time: the next message of a partition comes
//!   only once the previous one was acked or nacked. Nothing is buffered beyond one message
//!   per partition.
//! - A held [`Pulled`] is in-flight work: it counts for the subscriber's `handler_timeout`
//!   and the app's stuck-message check, and a rebalance or shutdown waits for it (at most the
//!   rebalance or graceful timeout; then it is cancelled and stays uncommitted).
//! - A message the puller never received (the [`Pull`] was dropped or closed first) is never
//!   committed; its call is cancelled when the subscription stops.

use crate::app::RunningApp;
use crate::broker::Broker;
use crate::config::subscriber::SubscriberConfig;
use crate::error::Nacked;
use crate::error::Result;
use crate::handler::extract::{Ack, AckSlot};
use crate::message::Message;
use futures::Stream;
use serde::de::DeserializeOwned;
use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What the puller decided about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    Ack,
    Nack,
}

/// One message on its way from the subscriber's handler to the puller. Dropped unreceived,
/// it drops `done` undecided, and the handler leaves the message uncommitted.
struct Handoff<T> {
    value: T,
    message: Message,
    done: oneshot::Sender<Settle>,
}

/// Sends the decision once; an undecided drop acks.
#[derive(Debug)]
struct Settler(Option<oneshot::Sender<Settle>>);

impl Settler {
    fn settle(&mut self, decision: Settle) {
        if let Some(done) = self.0.take() {
            // The handler is gone only when its subscription stopped; nothing left to tell.
            let _ = done.send(decision);
        }
    }
}

impl Drop for Settler {
    fn drop(&mut self) {
        self.settle(Settle::Ack);
    }
}

/// A message taken from a [`Pull`]: the decoded value (through `Deref`, [`Pulled::value`] or
/// [`Pulled::into_inner`]) and the [`Message`] it came in (topic, partition, offset, key,
/// headers).
///
/// Its offset is committed only once it is acked: by [`Pulled::ack`], by
/// [`Pulled::into_inner`], or by dropping it. [`Pulled::nack`] hands it to the subscriber's
/// error policy instead (redelivered under `AckPolicy::NackOnError`, logged and skipped under
/// the default `AckAfter`). Until then the next message of its partition waits.
///
/// ```
/// use faststream_core::pull::Pull;
/// use std::time::Duration;
/// # async fn demo(mut orders: Pull<i64>) {
/// if let Some(order) = orders.get_one(Duration::from_secs(5)).await {
///     println!("order {} at {}[{}]@{}", *order, order.message().topic,
///         order.message().partition, order.message().offset);
///     if *order < 0 {
///         order.nack(); // the subscriber's error policy decides
///     } else {
///         order.ack(); // now its offset may be committed
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Pulled<T> {
    value: T,
    message: Message,
    settler: Settler,
}

impl<T> Pulled<T> {
    /// The decoded payload.
    ///
    /// ```
    /// # async fn demo(mut pull: faststream_core::pull::Pull<String>) {
    /// # let Some(item) = pull.get_one(std::time::Duration::from_secs(1)).await else { return };
    /// let text: &String = item.value();
    /// # }
    /// ```
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The message the value was decoded from: topic, partition, offset, key, headers.
    ///
    /// ```
    /// # async fn demo(mut pull: faststream_core::pull::Pull<String>) {
    /// # let Some(item) = pull.get_one(std::time::Duration::from_secs(1)).await else { return };
    /// let key = item.message().key.clone();
    /// # }
    /// ```
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// Done with it: its offset may be committed, and its partition hands over the next
    /// message. Dropping it does the same.
    ///
    /// ```
    /// # async fn demo(mut pull: faststream_core::pull::Pull<String>) {
    /// # let Some(item) = pull.get_one(std::time::Duration::from_secs(1)).await else { return };
    /// item.ack();
    /// # }
    /// ```
    pub fn ack(mut self) {
        self.settler.settle(Settle::Ack);
    }

    /// Not processed: the message goes through the subscriber's error policy as a nack
    /// (`AckPolicy::NackOnError` or `Manual`: delivered again after the backoff; the default
    /// `AckAfter`: logged and skipped; a dead-letter policy: dead-lettered once exhausted).
    ///
    /// ```
    /// # async fn demo(mut pull: faststream_core::pull::Pull<String>) {
    /// # let Some(item) = pull.get_one(std::time::Duration::from_secs(1)).await else { return };
    /// item.nack();
    /// # }
    /// ```
    pub fn nack(mut self) {
        self.settler.settle(Settle::Nack);
    }

    /// The value, acking the message (as [`Pulled::ack`]): take it only once you are done
    /// with what it asks for.
    ///
    /// ```
    /// # async fn demo(mut pull: faststream_core::pull::Pull<String>) {
    /// # let Some(item) = pull.get_one(std::time::Duration::from_secs(1)).await else { return };
    /// let text: String = item.into_inner();
    /// # }
    /// ```
    pub fn into_inner(self) -> T {
        let Pulled {
            value, mut settler, ..
        } = self;
        settler.settle(Settle::Ack);
        value
    }
}

impl<T> std::ops::Deref for Pulled<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// Decoded messages pulled from a subscriber added with [`RunningApp::pull`]: a
/// [`Stream`] of [`Pulled`] values, and [`Pull::get_one`].
///
/// The stream ends once the subscription stopped (closed, or the app shut down). Stop it with
/// [`Pull::close`]; a `Pull` dropped without it leaves its subscriber running until the app
/// stops (or [`RunningApp::unsubscribe`] of [`Pull::name`]), and what it was about to hand
/// over uncommitted.
///
/// ```
/// use faststream_core::pull::Pull;
/// use futures::StreamExt;
/// # async fn demo(mut numbers: Pull<i64>) {
/// let mut sum = 0;
/// while let Some(n) = numbers.next().await {
///     sum += *n;
///     if sum > 100 {
///         break; // `n` is dropped, so acked
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Pull<T> {
    name: String,
    items: mpsc::Receiver<Handoff<T>>,
}

impl<T> std::fmt::Debug for Handoff<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff")
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl<T> Pull<T> {
    /// The name of its subscriber.
    ///
    /// ```
    /// # fn demo(pull: faststream_core::pull::Pull<String>) {
    /// println!("pulling through `{}`", pull.name());
    /// # }
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next message, or `None` when none arrived within `timeout` (or the subscription
    /// stopped). FastStream's `await subscriber.get_one(timeout=...)`.
    ///
    /// ```
    /// use std::time::Duration;
    /// # async fn demo(mut pull: faststream_core::pull::Pull<String>) {
    /// match pull.get_one(Duration::from_secs(5)).await {
    ///     Some(text) => println!("got {}", *text),
    ///     None => println!("nothing within 5 s"),
    /// }
    /// # }
    /// ```
    pub async fn get_one(&mut self, timeout: Duration) -> Option<Pulled<T>> {
        let handoff = tokio::time::timeout(timeout, self.items.recv())
            .await
            .ok()??;
        Some(handoff.into())
    }

    /// Stops its subscriber gracefully ([`RunningApp::unsubscribe`]): what was acked is
    /// committed, it leaves its group. A message the puller had not received yet stays
    /// uncommitted; its call is cancelled within the graceful timeout. [`Pulled`] values
    /// still held can be acked until then.
    ///
    /// ```
    /// # async fn demo<B: faststream_core::Broker>(
    /// #     running: &mut faststream_core::RunningApp<B>,
    /// #     pull: faststream_core::pull::Pull<String>,
    /// # ) -> faststream_core::Result<()> {
    /// pull.close(running).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn close<B: Broker>(self, app: &mut RunningApp<B>) -> Result<()> {
        let Pull { name, items } = self;
        // Undelivered messages go back undecided, so they are never committed.
        drop(items);
        app.unsubscribe(&name).await
    }
}

impl<T> From<Handoff<T>> for Pulled<T> {
    fn from(handoff: Handoff<T>) -> Self {
        Pulled {
            value: handoff.value,
            message: handoff.message,
            settler: Settler(Some(handoff.done)),
        }
    }
}

impl<T> Stream for Pull<T> {
    type Item = Pulled<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Pulled<T>>> {
        self.items.poll_recv(cx).map(|next| next.map(Pulled::from))
    }
}

impl<B: Broker> RunningApp<B> {
    /// Adds a subscriber whose messages are pulled instead of handled: its payloads decode
    /// into `T` (JSON, text for `String`, raw for `bytes::Bytes`, as a handler's payload
    /// parameter) and come out of the returned [`Pull`] (a [`Stream`], and
    /// [`Pull::get_one`]). Added like [`RunningApp::subscribe`]: the app's layers, state and
    /// default policies apply, the name must be unique, and a malformed payload is the
    /// subscriber's error (one error line naming topic, partition and offset, then its error
    /// policy) and never reaches the puller.
    ///
    /// Each message's offset is committed only after the puller acked it (see [`Pulled`]).
    ///
    /// ```
    /// use faststream_core::{App, SubscriberConfig};
    /// use std::time::Duration;
    /// # async fn demo<B: faststream_core::Broker>(broker: B) -> faststream_core::Result<()> {
    /// let mut running = App::new(broker).start().await?;
    /// let mut orders = running
    ///     .pull::<i64>(SubscriberConfig::new("orders-puller", ["orders"]).group_id("billing"))
    ///     .await?;
    /// if let Some(order) = orders.get_one(Duration::from_secs(5)).await {
    ///     println!("{} from offset {}", *order, order.message().offset);
    /// } // dropped: acked, so committed
    /// orders.close(&mut running).await?;
    /// running.shutdown().await
    /// # }
    /// ```
    pub async fn pull<T>(&mut self, config: SubscriberConfig) -> Result<Pull<T>>
    where
        T: DeserializeOwned + Send + 'static,
    {
        // One slot: each partition's handler waits for the puller anyway, so more buffering
        // would only hold messages nobody asked for yet.
        let (items, received) = mpsc::channel::<Handoff<T>>(1);
        let name = config.name.clone();
        let handler = move |mut message: Message, value: T| {
            let items = items.clone();
            // Under `AckPolicy::Manual` the puller's ack decides the record's slot (a pull
            // handler returning undecided would leave it uncommitted).
            let slot = message
                .extensions
                .remove::<Weak<AckSlot>>()
                .and_then(|slot| slot.upgrade());
            async move {
                let (done, decided) = oneshot::channel();
                let handoff = Handoff {
                    value,
                    message,
                    done,
                };
                let decision = match items.send(handoff).await {
                    Ok(()) => decided.await.ok(),
                    Err(_) => None,
                };
                match decision {
                    Some(Settle::Ack) => {
                        if let Some(slot) = &slot {
                            Ack::of(slot).ack();
                        }
                        Ok(())
                    }
                    Some(Settle::Nack) => Err(Nacked),
                    // The puller is gone before it got the message: leave the call unfinished
                    // so the message is never committed; stopping the subscription cancels it.
                    None => std::future::pending().await,
                }
            }
        };
        self.subscribe(config, handler).await?;
        Ok(Pull {
            name,
            items: received,
        })
    }
}
