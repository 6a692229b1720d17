//! The app layer, the top of the runtime: an [`App`] holds the broker, its subscribers and
//! publishers ([`publisher`]), shared state and lifecycle hooks; [`router`]s group
//! subscribers under a topic prefix; [`pull`] reads a subscriber's messages on demand. It
//! starts the runtime and stops it on one shutdown path.

mod application;
pub mod publisher;
pub mod pull;
mod retry_topics;
pub mod router;

pub use application::{
    shutdown_signal, App, HealthProbe, HookOutput, RunningApp, DEFAULT_STUCK_AFTER,
};
