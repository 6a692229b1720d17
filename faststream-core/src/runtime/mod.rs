//! The runtime layer: what runs a subscriber once the app starts. Per partition, a worker
//! ([`worker`]) takes messages in order, runs the handler pipeline, publishes the reply and
//! tracks which offsets are done ([`progress`]); batch subscribers get an assembler in front
//! of it ([`batch`]); a manual-ack record its handler left undecided waits in [`late_ack`]; a partition with
//! lanes has a router in front of a worker per lane ([`lanes`]);
//! [`stats`] are what the worker reports for health. Nothing here is public:
//! the app layer drives it and backends see only the [`crate::broker`] seam.

pub(crate) mod batch;
mod dead_letter;
pub(crate) mod exactly_once;
pub(crate) mod factory;
mod fan_out;
mod lanes;
mod late_ack;
pub(crate) mod progress;
mod retry_topic;
pub(crate) mod stats;
pub(crate) mod worker;
