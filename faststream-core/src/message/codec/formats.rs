//! The serde codecs shipped behind cargo features: MessagePack (`msgpack`) and CBOR (`cbor`).
//! Avro (`avro`) has a module of its own; Protobuf is typed by `prost` rather than serde: see
//! `codec::Proto` (feature `protobuf`).

#[cfg(feature = "msgpack")]
use super::media::media_type;
#[cfg(feature = "cbor")]
use super::media::APPLICATION_CBOR;
#[cfg(feature = "msgpack")]
use super::media::APPLICATION_MSGPACK;
#[cfg(any(feature = "msgpack", feature = "cbor"))]
use super::seam::{deserialize_into, Codec, DecodeTarget};
#[cfg(any(feature = "msgpack", feature = "cbor"))]
use crate::error::{DecodeError, EncodeError};

/// The codec a `content-type` names for certain, among those compiled in that need no
/// configuration (Avro needs a schema, so it is only ever configured).
pub(super) fn known(media: &str) -> Option<&'static dyn super::Codec> {
    #[cfg(feature = "msgpack")]
    if is_msgpack(media) {
        return Some(&MessagePack);
    }
    #[cfg(feature = "cbor")]
    if media == APPLICATION_CBOR {
        return Some(&Cbor);
    }
    let _ = media;
    None
}

/// Whether a media type is MessagePack's, under any of the names in use.
#[cfg(feature = "msgpack")]
fn is_msgpack(media: &str) -> bool {
    matches!(
        media,
        APPLICATION_MSGPACK | "application/vnd.msgpack" | "application/x-msgpack"
    )
}

#[cfg(any(feature = "msgpack", feature = "cbor"))]
fn encode_error(codec: &str, err: impl std::fmt::Display) -> EncodeError {
    EncodeError(format!("{codec}: {err}"))
}

#[cfg(feature = "cbor")]
fn decode_error(err: impl std::fmt::Display) -> DecodeError {
    DecodeError {
        path: ".".into(),
        message: err.to_string(),
    }
}

/// MessagePack (rmp-serde). Structs are written as maps with their field names, as
/// Python's `msgpack.packb` of a dict is; a struct written as an array reads back too.
///
/// ```
/// use faststream_core::codec::{decode_by, encode_with, Encoded, MessagePack};
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Order { id: u32, item: String }
/// let order = Order { id: 7, item: "tea".into() };
/// let Encoded::Body { payload, content_type } = encode_with(&order, Some(&MessagePack)).unwrap() else {
///     unreachable!()
/// };
/// assert_eq!(content_type, "application/msgpack");
/// assert_eq!(decode_by::<Order>(&MessagePack, &payload).unwrap(), order);
/// ```
#[cfg(feature = "msgpack")]
#[derive(Debug, Clone, Copy, Default)]
pub struct MessagePack;

#[cfg(feature = "msgpack")]
impl Codec for MessagePack {
    fn name(&self) -> &'static str {
        "msgpack"
    }

    fn content_type(&self) -> &'static str {
        APPLICATION_MSGPACK
    }

    fn claims(&self, content_type: Option<&str>, _payload: &[u8]) -> bool {
        content_type.is_some_and(|ct| is_msgpack(media_type(ct)))
    }

    fn decode<'de>(
        &self,
        payload: &'de [u8],
        target: &mut dyn DecodeTarget<'de>,
    ) -> Result<(), DecodeError> {
        let mut rest = payload;
        deserialize_into(target, &mut rmp_serde::Deserializer::new(&mut rest))?;
        if !rest.is_empty() {
            let rest = rest.len();
            return Err(DecodeError {
                path: ".".into(),
                message: format!("{rest} trailing bytes after the value"),
            });
        }
        Ok(())
    }

    fn encode(&self, value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, EncodeError> {
        rmp_serde::to_vec_named(value).map_err(|e| encode_error(self.name(), e))
    }
}

/// CBOR (ciborium, RFC 8949).
///
/// ```
/// use faststream_core::codec::{decode_by, encode_with, Cbor, Encoded};
/// let Encoded::Body { payload, content_type } = encode_with(&vec![1, 2, 3], Some(&Cbor)).unwrap() else {
///     unreachable!()
/// };
/// assert_eq!(content_type, "application/cbor");
/// assert_eq!(decode_by::<Vec<u8>>(&Cbor, &payload).unwrap(), [1, 2, 3]);
/// ```
#[cfg(feature = "cbor")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Cbor;

#[cfg(feature = "cbor")]
impl Codec for Cbor {
    fn name(&self) -> &'static str {
        "cbor"
    }

    fn content_type(&self) -> &'static str {
        APPLICATION_CBOR
    }

    fn decode<'de>(
        &self,
        payload: &'de [u8],
        target: &mut dyn DecodeTarget<'de>,
    ) -> Result<(), DecodeError> {
        // ciborium's deserializer is private: it builds a tree, the target reads the tree.
        let tree: super::tree::Tree = ciborium::from_reader(payload).map_err(decode_error)?;
        deserialize_into(target, tree)
    }

    fn encode(&self, value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        ciborium::into_writer(value, &mut out).map_err(|e| encode_error(self.name(), e))?;
        Ok(out)
    }
}
