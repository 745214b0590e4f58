use std::{env, error::Error, path::PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    // A vendored protoc keeps the build free of system packages.
    if env::var_os("PROTOC").is_none() {
        env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("orderdeck_descriptor.bin"))
        .compile_protos(&["proto/orders.proto", "proto/orderdeck.proto"], &["proto"])?;
    Ok(())
}
