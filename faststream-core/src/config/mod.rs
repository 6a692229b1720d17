//! The configuration layer: what a subscriber consumes and how ([`subscriber`]), how a batch
//! subscriber groups records ([`batch`]) and how the app starts ([`options`]). Plain values
//! and builders, above the handler and policy layers and below the broker seam.

pub(crate) mod batch;
pub mod options;
pub mod subscriber;
