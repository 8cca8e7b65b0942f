//! Compiles the protocol with `protox` (pure Rust), so a fresh machine needs no `protoc`.

use std::path::PathBuf;

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    let files = ["tether/v1/agent.proto", "tether/v1/api.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let fds = protox::compile(files, [&root])?;
    // The encoded descriptor set serves gRPC reflection.
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("tether_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // No `connect` constructor: it would clash with `AgentService.Connect`, and channels
        // are built by `tls::connect` anyway.
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
