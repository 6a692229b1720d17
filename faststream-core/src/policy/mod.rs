//! Policies: when an offset counts as done ([`AckPolicy`], [`CommitTiming`]), what happens to a
//! message whose handler failed ([`ErrorPolicy`]), and how the two resolve into a subscriber's
//! [`DeliveryPolicy`] from the subscriber, its routers and the app ([`PolicyLevel`]). They see
//! errors only through [`crate::error`] types.

mod ack;
mod delivery;
mod error_policy;

pub use ack::{AckPolicy, Backoff, CommitTiming};
pub use delivery::{DeliveryPolicy, PolicyLevel};
pub use error_policy::*;
