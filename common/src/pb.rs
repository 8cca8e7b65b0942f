//! Generated protocol types and gRPC stubs (`proto/tether/v1`).
//!
//! These types stay at the gRPC edge: the hub and the agent convert them to their own
//! domain types as soon as a message arrives.
#![allow(missing_docs, clippy::all, clippy::pedantic, clippy::unwrap_used)]

tonic::include_proto!("tether.v1");

/// The encoded `FileDescriptorSet` of every Tether proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tether_descriptor.bin"));
