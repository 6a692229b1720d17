//! How a handled message's call ended, as the access log and the metrics tell it apart.

use faststream_core::middleware::{BoxError, Nacked, Rejected};
use faststream_core::Reply;

/// The end of one handler call: a failure, whether returned as `Err` or as
/// [`Reply::Failed`], is a nack, a reject or any other error, in that order.
#[derive(Debug)]
pub(crate) enum Outcome<'a> {
    /// The handler succeeded (with or without a reply to publish).
    Processed,
    /// The handler nacked the message (through the `Ack` extractor).
    Nacked,
    /// The handler rejected the message (through the `Ack` extractor).
    Rejected,
    /// Any other failure.
    Failed(&'a BoxError),
}

impl<'a> Outcome<'a> {
    /// The outcome of a call that returned `result`.
    pub(crate) fn of(result: &'a Result<Reply, BoxError>) -> Self {
        match result {
            Ok(Reply::Failed(err)) | Err(err) if err.is::<Nacked>() => Self::Nacked,
            Ok(Reply::Failed(err)) | Err(err) if err.is::<Rejected>() => Self::Rejected,
            Ok(Reply::Failed(err)) | Err(err) => Self::Failed(err),
            Ok(_) => Self::Processed,
        }
    }
}
