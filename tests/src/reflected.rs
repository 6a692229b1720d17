//! Protobuf types generated from `tests/proto` by `build.rs` (protox, prost-build and
//! prost-reflect-build: no protoc), with their descriptors (`prost_reflect::ReflectMessage`),
//! for the registry tests.

use prost_reflect::DescriptorPool;
use std::sync::LazyLock;

/// The descriptors of `tests/proto` and what they import, as build.rs compiled them.
pub static DESCRIPTOR_POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(
        include_bytes!(concat!(env!("OUT_DIR"), "/file_descriptor_set.bin")).as_ref(),
    )
    .expect("build.rs wrote a valid descriptor set")
});

/// Package `shop`.
pub mod shop {
    /// Package `shop.v1`: `pings.proto` and `common.proto`.
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/shop.v1.rs"));
    }
}
