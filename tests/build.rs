//! Rust types for the Protobuf files of `proto/`, without protoc: protox (a Rust protobuf
//! compiler) compiles them to a descriptor set, prost-build writes the types from it, and
//! prost-reflect-build derives their `ReflectMessage` (their descriptors, from the set).

use std::path::PathBuf;

const PROTOS: [&str; 2] = ["proto/shop/v1/pings.proto", "proto/shop/v1/common.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    let descriptors = out.join("file_descriptor_set.bin");
    let set = protox::compile(PROTOS, ["proto"])?;
    std::fs::write(&descriptors, prost::Message::encode_to_vec(&set))?;
    let mut config = prost_build::Config::new();
    // Read the set above instead of running protoc.
    config.skip_protoc_run();
    prost_reflect_build::Builder::new()
        .file_descriptor_set_path(&descriptors)
        .descriptor_pool("crate::reflected::DESCRIPTOR_POOL")
        .compile_protos_with_config(config, &PROTOS, &["proto"])?;
    Ok(())
}
