//! Quantization in the tool (issue 3, in progress): calibration observers and the choice of activation
//! ranges. The integer kernels live in the runtime (`tern::cpu::qgemm`).
pub mod calib;
