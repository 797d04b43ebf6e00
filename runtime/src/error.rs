//! One error type for the whole runtime: a portable [`ErrorKind`] (mapped to C status codes by the FFI) plus
//! a message that names the thing at fault (node, tensor, op, byte offset).
use alloc::string::String;
use core::fmt;

/// What went wrong, independent of where. New kinds may be added, so match with a wildcard arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The bytes are not a tern artifact (magic, checksum, truncated, undecodable structure).
    Format,
    /// The artifact was made by a format version this runtime does not read.
    Version,
    /// The artifact decodes but is inconsistent (indices, shapes, byte ranges, order, memory plan).
    Invalid,
    /// A caller-supplied input, output or arena does not match what the model expects.
    Argument,
    /// The model uses something this build of the runtime does not implement.
    Unsupported,
    /// A size computation overflowed or exceeds the limits of this runtime.
    TooLarge,
    /// An accelerator failed: a shader that did not build, a lost or hung device, a failed readback.
    Device,
}

/// A runtime error: its kind plus a human-readable context naming the node, tensor or offset at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// The portable category.
    pub kind: ErrorKind,
    /// What is wrong and where, e.g. `node 12 "conv_3" (Conv): input 1 shape [8, 3] ...`.
    pub context: String,
}

/// `Result` with the runtime's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;

impl Error {
    /// Makes an error of `kind` with the given context message.
    pub fn new(kind: ErrorKind, context: impl Into<String>) -> Self {
        Error {
            kind,
            context: context.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = match self.kind {
            ErrorKind::Format => "not a valid tern artifact",
            ErrorKind::Version => "unsupported artifact version",
            ErrorKind::Invalid => "invalid model",
            ErrorKind::Argument => "bad argument",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::TooLarge => "too large",
            ErrorKind::Device => "device error",
        };
        write!(f, "{k}: {}", self.context)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// `return Err(Error::new(kind, format!(...)))` in one line.
#[macro_export]
macro_rules! bail {
    ($kind:ident, $($arg:tt)*) => {
        return Err($crate::error::Error::new($crate::error::ErrorKind::$kind, alloc::format!($($arg)*)))
    };
}

/// `Error::new(kind, format!(...))` as an expression.
#[macro_export]
macro_rules! err {
    ($kind:ident, $($arg:tt)*) => {
        $crate::error::Error::new($crate::error::ErrorKind::$kind, alloc::format!($($arg)*))
    };
}
