//! Protocol Buffers payloads: `prost` messages, wrapped in [`Proto`] as a handler parameter,
//! a return value or a record.

use super::media::APPLICATION_PROTOBUF;
use super::seam::Codec;
use crate::error::{DecodeError, EncodeError};
use crate::message::record::Record;
use bytes::Bytes;
use std::sync::Arc;

/// A `prost` message as a payload: a handler parameter `Proto<T>` decodes it, a returned
/// `Proto<T>` publishes it with `content-type: application/protobuf`, and
/// [`Proto::record`] makes a record of it. Protobuf is typed by `prost::Message`, not serde,
/// so it is this wrapper rather than a [`Codec`]; a codec that frames payloads (a schema
/// registry's) frames and unframes it ([`Codec::frame`], [`Codec::body`]).
///
/// ```
/// use faststream_core::codec::Proto;
/// #[derive(Clone, PartialEq, prost::Message)]
/// struct Order {
///     #[prost(uint64, tag = "1")]
///     id: u64,
///     #[prost(string, tag = "2")]
///     item: String,
/// }
/// let order = Order { id: 7, item: "tea".into() };
/// let record = Proto(order.clone()).record("orders");
/// assert_eq!(record.content_type, Some("application/protobuf"));
/// let back = Proto::<Order>::decode(record.payload.as_deref().unwrap()).unwrap();
/// assert_eq!(back.0, order);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proto<T>(pub T);

impl<T: prost::Message + Default> Proto<T> {
    /// Decodes a payload; an error names the field prost stopped at.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        T::decode(payload).map(Proto).map_err(|err| DecodeError {
            path: ".".into(),
            message: format!("protobuf: {err}"),
        })
    }
}

impl<T: prost::Message> Proto<T> {
    /// The encoded message.
    pub fn encode(&self) -> Bytes {
        Bytes::from(self.0.encode_to_vec())
    }

    /// A record for `topic` with this message as its payload.
    pub fn record(&self, topic: impl Into<Arc<str>>) -> Record {
        let mut record = Record::new(topic, self.encode());
        record.content_type = Some(APPLICATION_PROTOBUF);
        record
    }

    /// The payload and content type of this message as `codec` publishes it: framed by a
    /// codec that frames (a schema registry's, see [`Codec::frame`]), else as it is.
    pub fn encode_with(
        &self,
        codec: Option<&dyn Codec>,
    ) -> Result<(Bytes, &'static str), EncodeError> {
        let body = self.0.encode_to_vec();
        match codec.and_then(|codec| Some((codec.frame(&body)?, codec.content_type()))) {
            Some((framed, content_type)) => Ok((Bytes::from(framed?), content_type)),
            None => Ok((Bytes::from(body), APPLICATION_PROTOBUF)),
        }
    }

    /// A record for `topic` with this message as `codec` publishes it (see
    /// [`Proto::encode_with`]).
    pub fn record_with(
        &self,
        topic: impl Into<Arc<str>>,
        codec: &dyn Codec,
    ) -> Result<Record, EncodeError> {
        let (payload, content_type) = self.encode_with(Some(codec))?;
        let mut record = Record::new(topic, payload);
        record.content_type = Some(content_type);
        Ok(record)
    }
}
