//! Policies: when an offset counts as done ([`AckPolicy`]), and what happens to a message whose
//! handler failed ([`ErrorPolicy`]). They see errors only through [`crate::error`] types.

mod ack;
mod error_policy;

pub use ack::{AckPolicy, Backoff};
pub use error_policy::*;
