//! # tern — the on-device runtime
//!
//! tern loads a `.tern` artifact (made by the `tern` tool from an ONNX model), validates every byte of it,
//! and runs it on the CPU (or, with the `gpu` feature, on a GPU through wgpu) from one pre-planned arena.
//! Data flow and module map: `shared/design.md`.
//!
//! ```text
//! bytes ──artifact::decode+validate──▶ Model (borrows the weights in place; inflates deflated ones once)
//!       ──Session::new(&model, opts)──▶ Session (weights packed once, arena sized from the plan)
//!       ──session.run_into(inputs, outputs)──▶ no allocation, no panic
//! ```
//!
//! Without the default `std` feature the crate is `#![no_std]` + `alloc` (firmware); math comes from `libm`.
//! Feature `ffi` adds the C ABI (module `ffi`, header `include/tern.h`).
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

extern crate alloc;

#[cfg(target_endian = "big")]
compile_error!(
    "tern artifacts are little-endian and read in place; big-endian targets are not supported"
);

pub mod artifact;
pub mod cpu;
pub mod error;
#[cfg(feature = "ffi")]
pub mod ffi;

#[cfg(all(feature = "c-alloc", not(feature = "std")))]
mod c_alloc;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod ir;
pub mod model;
pub mod plan;
pub mod session;

pub use error::{Error, ErrorKind, Result};
pub use ir::{DType, Graph, Node, Op, QParams, Tensor};
pub use model::Model;
pub use session::{Session, SessionOptions};
