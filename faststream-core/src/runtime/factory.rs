//! How a registered handler becomes a running subscriber once the app starts.

use super::worker::{subscriber_workers, BuiltSubscriber, StartContext};
use crate::broker::Publish;
use crate::config::subscriber::SubscriberConfig;
use crate::error::Result;
use crate::handler::Handler;
use std::sync::Arc;

/// Builds a subscriber's pipeline and worker spawner once the app starts, from its final
/// configuration (router prefixes, layers and default policies applied).
pub(crate) type SubscriberFactory<P> =
    Box<dyn FnOnce(Arc<SubscriberConfig>, &StartContext<P>) -> Result<BuiltSubscriber> + Send>;

/// A subscriber's factory for the handler `handler`.
pub(crate) fn factory<H, T, P>(handler: H) -> SubscriberFactory<P>
where
    H: Handler<T>,
    T: Send + 'static,
    P: Publish,
{
    Box::new(move |config, cx| subscriber_workers(config, handler, cx))
}
