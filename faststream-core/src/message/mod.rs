//! The message layer: the envelope handlers see ([`Message`], [`Headers`]), the records
//! published ([`record`]) and the payload codec ([`codec`]). It depends on nothing of the
//! runtime but [`crate::error`].

pub mod codec;
mod envelope;
mod headers;
pub mod record;
pub mod seek;

pub use envelope::{Batch, Extensions, Message, Position, TopicPartition};
pub use headers::{
    write_correlation_id, Headers, CONTENT_TYPE, CORRELATION_ID, CORRELATION_ID_LEN, REPLY_TO,
};
pub use seek::StartFrom;
