//! The content types of the payload formats, and how a `content-type` header is compared.

/// Content type of MessagePack payloads: `application/msgpack`, the name MessagePack's HTTP
/// users and libraries write (FastStream writes none for it). `application/vnd.msgpack` and
/// `application/x-msgpack` are recognised on decode too.
pub const APPLICATION_MSGPACK: &str = "application/msgpack";
/// Content type of CBOR payloads (RFC 8949).
pub const APPLICATION_CBOR: &str = "application/cbor";
/// Content type of Protobuf payloads: `application/protobuf`, registered with IANA
/// (`application/x-protobuf`, its deprecated alias, is recognised on decode too).
pub const APPLICATION_PROTOBUF: &str = "application/protobuf";
/// Content type of Avro payloads: `avro/binary`, the Avro specification's name for
/// binary-encoded Avro over HTTP. `application/avro` is recognised on decode too.
pub const AVRO_BINARY: &str = "avro/binary";

/// The media type of a `content-type` value, without parameters (`; charset=utf-8`).
pub(crate) fn media_type(content_type: &str) -> &str {
    content_type
        .split_once(';')
        .map_or(content_type, |(media, _)| media)
        .trim()
}
