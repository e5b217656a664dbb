//! Compiles the vendored Feast protocol buffers (proto/feast.fds, see scripts/vendor-feast-protos)
//! into the registry server's gRPC client. No protoc: the descriptors are already compiled.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/feast.fds");
    let bytes = std::fs::read("proto/feast.fds")?;
    let fds = <tonic_prost_build::FileDescriptorSet as prost::Message>::decode(bytes.as_slice())?;
    tonic_prost_build::configure().build_server(false).build_transport(true).compile_fds(fds)?;
    Ok(())
}
