//! The C ABI (feature `ffi`): load an artifact, make sessions, run them, from C or any language with a C
//! FFI. The header is `runtime/include/tern.h` (generated from this file by cbindgen; a test keeps it
//! current). Build the static library with
//! `cargo rustc --release -p tern --features ffi --crate-type staticlib` and link `libtern.a`.
//!
//! Shape of the API, after the Rust one: a [`TernModel`] borrows the artifact bytes in place (an artifact
//! in flash or a mapped file costs no copy) and is shared by the sessions made from it; a [`TernSession`]
//! runs the model, one per thread. Every fallible call returns a [`TernStatus`]; creation calls write
//! their error message into a caller buffer, session calls keep it for [`tern_session_error`]. Nothing
//! here allocates in [`tern_session_run`], and no input makes a call panic or unwind into C.
//!
//! Only `core` and `alloc` are used, so the ABI builds for firmware targets too. The firmware supplies the
//! global allocator and panic handler, as for any `no_std` Rust code, or takes them from its C library
//! with feature `c-alloc` (malloc/free/abort: `runtime/examples/c/firmware` runs that on a Cortex-M4).
use crate::error::{ErrorKind, Result};
use crate::{Model, Session, SessionOptions};
use alloc::boxed::Box;
use alloc::ffi::CString;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::ffi::c_char;

/// The version of this C ABI; it grows when functions are added and changes meaning never.
pub const TERN_ABI_VERSION: u32 = 2;

/// The most threads [`tern_session_new`] starts (a larger count is an argument error, not an attempt).
pub const TERN_MAX_THREADS: usize = 256;
const MAX_THREADS: usize = TERN_MAX_THREADS;

/// What a call did: 0 is success; the others name the kind of fault (the message says which thing).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TernStatus {
    /// Success.
    Ok = 0,
    /// The bytes are not a tern artifact (magic, checksum, truncated, undecodable structure).
    Format = 1,
    /// The artifact was made by a format version this runtime does not read.
    Version = 2,
    /// The artifact decodes but is inconsistent (indices, shapes, byte ranges, memory plan).
    Invalid = 3,
    /// An argument is wrong: a null pointer, an index out of range, a buffer of the wrong size.
    Argument = 4,
    /// The model uses something this build of the runtime does not implement.
    Unsupported = 5,
    /// A size computation overflowed or exceeds this runtime's limits.
    TooLarge = 6,
    /// An accelerator failed.
    Device = 7,
    /// A bug in tern (a caught panic): the object it happened on should be freed. Please report it.
    Internal = 8,
}

impl From<ErrorKind> for TernStatus {
    fn from(k: ErrorKind) -> Self {
        match k {
            ErrorKind::Format => TernStatus::Format,
            ErrorKind::Version => TernStatus::Version,
            ErrorKind::Invalid => TernStatus::Invalid,
            ErrorKind::Argument => TernStatus::Argument,
            ErrorKind::Unsupported => TernStatus::Unsupported,
            ErrorKind::TooLarge => TernStatus::TooLarge,
            ErrorKind::Device => TernStatus::Device,
        }
    }
}

/// A validated artifact (opaque). Free with [`tern_model_free`] after every session made from it.
pub struct TernModel {
    model: Model<'static>,
    /// Input names then output names, NUL-terminated for C.
    names: Vec<CString>,
    /// Metadata keys, NUL-terminated for C (in the artifact's order).
    meta_keys: Vec<CString>,
}

/// A model prepared to run on the CPU (opaque): weights packed, arena sized, threads started.
/// Free with [`tern_session_free`].
pub struct TernSession {
    session: Session<'static>,
    /// The last failed call's message, NUL-terminated; just the NUL after a call that succeeded.
    error: Vec<u8>,
    isa: CString,
}

/// One graph input or output, as [`tern_model_input_info`] and [`tern_model_output_info`] describe it.
/// The pointers stay valid while the model lives. Inputs and outputs are row-major `float` tensors.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TernTensorInfo {
    /// The tensor's name in the source model, NUL-terminated.
    pub name: *const c_char,
    /// `rank` dimensions, outermost first.
    pub shape: *const u32,
    /// The number of dimensions.
    pub rank: usize,
    /// The number of `float` elements (the product of the dimensions).
    pub elements: usize,
}

/// Runs `f`, turning a panic (a tern bug) into `fallback` instead of unwinding into C.
fn guard<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    #[cfg(feature = "std")]
    {
        std::panic::catch_unwind(core::panic::AssertUnwindSafe(f)).unwrap_or(fallback)
    }
    #[cfg(not(feature = "std"))]
    {
        // without std a panic aborts (extern "C" does not unwind); nothing to catch
        let _ = fallback;
        f()
    }
}

/// Copies `msg` into the caller's buffer, cut at a character boundary to fit, NUL-terminated.
///
/// # Safety
/// `dst` is null or points to `cap` writable bytes.
unsafe fn write_message(dst: *mut c_char, cap: usize, msg: &str) {
    if dst.is_null() || cap == 0 {
        return;
    }
    let mut n = msg.len().min(cap - 1);
    while !msg.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: n < cap bytes of `dst` are writable (caller), and `msg` has n readable bytes.
    unsafe {
        core::ptr::copy_nonoverlapping(msg.as_ptr(), dst.cast::<u8>(), n);
        *dst.add(n) = 0;
    }
}

/// A C string of `s` (interior NULs, possible in source-model names, become `?`).
fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "?")).unwrap_or_default()
}

/// The creation calls' protocol: `*out` is the object `make` returns (boxed for C) or NULL, and `err`
/// receives the failure's message (empty on success).
///
/// # Safety
/// `out` is NULL or valid for a write; `err` is NULL or points to `err_cap` writable bytes.
unsafe fn create<T>(
    what: &str,
    out: *mut *mut T,
    err: *mut c_char,
    err_cap: usize,
    make: impl FnOnce() -> Result<T>,
) -> TernStatus {
    let (status, msg) = if out.is_null() {
        (TernStatus::Argument, format!("{what}: `out` is NULL"))
    } else {
        // SAFETY: `out` is valid for writes (caller).
        unsafe { *out = core::ptr::null_mut() };
        guard((TernStatus::Internal, format!("{what}: panic")), || {
            match make() {
                // SAFETY: as above.
                Ok(v) => unsafe { *out = Box::into_raw(Box::new(v)) },
                Err(e) => return (e.kind.into(), e.to_string()),
            }
            (TernStatus::Ok, String::new())
        })
    };
    // SAFETY: the caller's contract on `err`.
    unsafe { write_message(err, err_cap, &msg) };
    status
}

/// The runtime's version, e.g. `"0.1.0"` (NUL-terminated, static).
#[no_mangle]
pub extern "C" fn tern_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// [`TERN_ABI_VERSION`] of the library linked (compare with the header's to catch a stale library).
#[no_mangle]
pub extern "C" fn tern_abi_version() -> u32 {
    TERN_ABI_VERSION
}

/// Decodes and validates the artifact in `bytes[0..len]` into `*out`. The model reads the bytes in place:
/// they must stay valid and unchanged until [`tern_model_free`]. On failure `*out` is set to NULL and
/// the reason (naming the thing at fault) is written to `err` (up to `err_cap` bytes with the NUL; `err`
/// may be NULL).
///
/// # Safety
/// `bytes` points to `len` readable bytes that outlive the model; `out` is a valid pointer; `err` is NULL
/// or points to `err_cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn tern_model_load(
    bytes: *const u8,
    len: usize,
    out: *mut *mut TernModel,
    err: *mut c_char,
    err_cap: usize,
) -> TernStatus {
    // SAFETY: the caller's contract on `out` and `err`.
    unsafe {
        create("tern_model_load", out, err, err_cap, || {
            if bytes.is_null() {
                crate::bail!(Argument, "tern_model_load: `bytes` is NULL");
            }
            // SAFETY: the caller guarantees `len` readable bytes that outlive the model.
            let bytes: &'static [u8] = core::slice::from_raw_parts(bytes, len);
            let model = Model::from_bytes(bytes)?;
            let g = &model.graph;
            let names = g
                .inputs
                .iter()
                .chain(&g.outputs)
                .map(|&t| c_string(&g.tensors[t as usize].name))
                .collect();
            let meta_keys = model.metadata.iter().map(|(k, _)| c_string(k)).collect();
            Ok(TernModel {
                model,
                names,
                meta_keys,
            })
        })
    }
}

/// Frees a model from [`tern_model_load`] (NULL is ignored). Free its sessions first.
///
/// # Safety
/// `model` is NULL or a model from [`tern_model_load`] not yet freed, with no session left.
#[no_mangle]
pub unsafe extern "C" fn tern_model_free(model: *mut TernModel) {
    if !model.is_null() {
        // SAFETY: made by Box::into_raw in tern_model_load and freed once (caller's contract).
        drop(unsafe { Box::from_raw(model) });
    }
}

/// The model, or None for NULL.
///
/// # Safety
/// `model` is NULL or a live model.
unsafe fn model_ref<'a>(model: *const TernModel) -> Option<&'a TernModel> {
    // SAFETY: the caller's contract.
    unsafe { model.as_ref() }
}

/// The number of graph inputs (0 for a NULL model).
///
/// # Safety
/// `model` is NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn tern_model_input_count(model: *const TernModel) -> usize {
    // SAFETY: the caller's contract.
    unsafe { model_ref(model) }.map_or(0, |m| m.model.graph.inputs.len())
}

/// The number of graph outputs (0 for a NULL model).
///
/// # Safety
/// `model` is NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn tern_model_output_count(model: *const TernModel) -> usize {
    // SAFETY: the caller's contract.
    unsafe { model_ref(model) }.map_or(0, |m| m.model.graph.outputs.len())
}

/// Fills `*info` for input or output `i` (`output` false / true); Argument for NULL or `i` out of range.
///
/// # Safety
/// `model` is NULL or live; `info` is NULL or valid for a write.
unsafe fn io_info(
    model: *const TernModel,
    output: bool,
    i: usize,
    info: *mut TernTensorInfo,
) -> TernStatus {
    // SAFETY: the caller's contract.
    let (Some(m), false) = (unsafe { model_ref(model) }, info.is_null()) else {
        return TernStatus::Argument;
    };
    let g = &m.model.graph;
    let (list, first_name) = if output {
        (&g.outputs, g.inputs.len())
    } else {
        (&g.inputs, 0)
    };
    let Some(&t) = list.get(i) else {
        return TernStatus::Argument;
    };
    let t = &g.tensors[t as usize];
    // SAFETY: `info` is valid for a write (caller); the pointers borrow the live model.
    unsafe {
        *info = TernTensorInfo {
            name: m.names[first_name + i].as_ptr(),
            shape: t.shape.as_ptr(),
            rank: t.shape.len(),
            elements: t.numel(),
        }
    };
    TernStatus::Ok
}

/// Describes graph input `i` (Argument if `i` is out of range or a pointer is NULL).
///
/// # Safety
/// `model` is NULL or a live model; `info` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn tern_model_input_info(
    model: *const TernModel,
    i: usize,
    info: *mut TernTensorInfo,
) -> TernStatus {
    // SAFETY: the caller's contract.
    guard(TernStatus::Internal, || unsafe {
        io_info(model, false, i, info)
    })
}

/// Describes graph output `i` (Argument if `i` is out of range or a pointer is NULL).
///
/// # Safety
/// `model` is NULL or a live model; `info` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn tern_model_output_info(
    model: *const TernModel,
    i: usize,
    info: *mut TernTensorInfo,
) -> TernStatus {
    // SAFETY: the caller's contract.
    guard(TernStatus::Internal, || unsafe {
        io_info(model, true, i, info)
    })
}

/// The number of metadata entries the artifact carries (what `tern inspect` lists: producer, source,
/// passes, the quantization decisions; 0 for NULL).
///
/// # Safety
/// `model` is NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn tern_model_metadata_count(model: *const TernModel) -> usize {
    // SAFETY: the caller's contract.
    unsafe { model_ref(model) }.map_or(0, |m| m.meta_keys.len())
}

/// Metadata key `i`, NUL-terminated and valid while the model lives; NULL for a NULL model or `i` out of
/// range.
///
/// # Safety
/// `model` is NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn tern_model_metadata_key(
    model: *const TernModel,
    i: usize,
) -> *const c_char {
    // SAFETY: the caller's contract.
    unsafe { model_ref(model) }
        .and_then(|m| m.meta_keys.get(i))
        .map_or(core::ptr::null(), |k| k.as_ptr())
}

/// The metadata value of `key` (e.g. `"quant.scheme"`): its length in bytes into `*value_len` (if not
/// NULL), and as much of it as fits into `buf` (`cap` bytes, NUL-terminated, cut to at most `cap − 1` bytes
/// at a character boundary, so a cut value stays UTF-8; NULL with `cap` 0 asks for the length alone).
/// Argument if `model` or `key` is NULL, `key` is not UTF-8, or the artifact has no such key.
///
/// # Safety
/// `model` is NULL or live; `key` is NULL or a NUL-terminated string; `buf` is NULL or valid for `cap`
/// bytes; `value_len` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn tern_model_metadata(
    model: *const TernModel,
    key: *const c_char,
    buf: *mut c_char,
    cap: usize,
    value_len: *mut usize,
) -> TernStatus {
    guard(TernStatus::Internal, || {
        // SAFETY: the caller's contract.
        let (Some(m), false) = (unsafe { model_ref(model) }, key.is_null()) else {
            return TernStatus::Argument;
        };
        // SAFETY: `key` is NUL-terminated (caller).
        let Ok(key) = unsafe { core::ffi::CStr::from_ptr(key) }.to_str() else {
            return TernStatus::Argument;
        };
        let Some(v) = m.model.meta(key) else {
            return TernStatus::Argument;
        };
        if !value_len.is_null() {
            // SAFETY: valid for a write (caller).
            unsafe { *value_len = v.len() };
        }
        // SAFETY: `buf` is NULL or holds `cap` bytes (caller).
        unsafe { write_message(buf, cap, v) };
        TernStatus::Ok
    })
}

/// Bytes a caller-provided arena needs for this model (see [`tern_session_new`]); 0 for NULL.
///
/// # Safety
/// `model` is NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn tern_model_arena_bytes(model: *const TernModel) -> usize {
    // SAFETY: the caller's contract.
    unsafe { model_ref(model) }.map_or(0, |m| Session::arena_bytes_needed(&m.model))
}

/// Prepares `model` to run into `*out`: weights packed once, `threads` threads split each op (0 or 1:
/// the caller's thread only; ignored without threads on the target). `arena` NULL: the session allocates
/// its activation memory; else `arena[0..arena_len]` is used (at least [`tern_model_arena_bytes`], any
/// alignment; firmware: a static buffer) and must outlive the session. On failure `*out` is NULL and the
/// reason is written to `err` (as in [`tern_model_load`]).
///
/// # Safety
/// `model` is a live model that outlives the session; `out` is valid; `arena` is NULL or points to
/// `arena_len` writable bytes used by nothing else while the session lives; `err` as in
/// [`tern_model_load`].
#[no_mangle]
pub unsafe extern "C" fn tern_session_new(
    model: *const TernModel,
    threads: usize,
    arena: *mut u8,
    arena_len: usize,
    out: *mut *mut TernSession,
    err: *mut c_char,
    err_cap: usize,
) -> TernStatus {
    // SAFETY: the caller's contract on `out` and `err`.
    unsafe {
        create("tern_session_new", out, err, err_cap, || {
            // SAFETY: the caller's contract: the model outlives the session.
            let Some(m) = model_ref(model) else {
                crate::bail!(Argument, "tern_session_new: `model` is NULL");
            };
            if threads > MAX_THREADS {
                crate::bail!(
                    Argument,
                    "tern_session_new: {threads} threads requested, at most {MAX_THREADS}"
                );
            }
            let options = SessionOptions {
                threads: threads.max(1),
            };
            let session = if arena.is_null() {
                Session::new(&m.model, options)?
            } else {
                // SAFETY: the caller gives `arena_len` writable bytes, exclusively, for the session's life.
                let a: &'static mut [u8] = core::slice::from_raw_parts_mut(arena, arena_len);
                Session::with_arena(&m.model, options, a)?
            };
            let mut error = Vec::with_capacity(256);
            error.push(0);
            let isa = c_string(session.isa());
            Ok(TernSession {
                session,
                error,
                isa,
            })
        })
    }
}

/// Frees a session from [`tern_session_new`] (NULL is ignored).
///
/// # Safety
/// `session` is NULL or a session from [`tern_session_new`] not yet freed.
#[no_mangle]
pub unsafe extern "C" fn tern_session_free(session: *mut TernSession) {
    if !session.is_null() {
        // SAFETY: made by Box::into_raw in tern_session_new and freed once (caller's contract).
        drop(unsafe { Box::from_raw(session) });
    }
}

impl TernSession {
    /// Records the outcome of a call for [`tern_session_error`]: the message on failure, empty on success.
    fn record<T>(&mut self, r: Result<T>) -> core::result::Result<T, TernStatus> {
        self.error.clear();
        let r = r.map_err(|e| {
            self.error
                .extend_from_slice(e.to_string().replace('\0', "?").as_bytes());
            TernStatus::from(e.kind)
        });
        // within the capacity kept from earlier calls: a successful run allocates nothing
        self.error.push(0);
        r
    }
}

/// Runs `f` on the session's runtime session and records its outcome for [`tern_session_error`]; gives
/// Argument for a NULL session and Internal for a panic.
///
/// # Safety
/// `session` is NULL or a live session used by no other thread now.
unsafe fn session_call(
    session: *mut TernSession,
    f: impl FnOnce(&mut Session<'static>) -> Result<()>,
) -> TernStatus {
    // SAFETY: the caller's contract.
    match unsafe { session.as_mut() } {
        None => TernStatus::Argument,
        Some(s) => {
            let status = guard(TernStatus::Internal, || {
                let r = f(&mut s.session);
                s.record(r).err().unwrap_or(TernStatus::Ok)
            });
            if status == TernStatus::Internal {
                s.error.clear();
                s.error.extend_from_slice(
                    b"internal error: a panic in tern (free this session; please report it)\0",
                );
            }
            status
        }
    }
}

/// A tensor's place in the arena as `f` finds it, with its element count written to `*count`; `null`
/// (and the message kept) on error.
///
/// # Safety
/// `session` as in [`session_call`]; `count` is NULL or valid for a write.
unsafe fn arena_pointer<P>(
    session: *mut TernSession,
    count: *mut usize,
    null: P,
    f: impl FnOnce(&mut Session<'static>) -> Result<(P, usize)>,
) -> P {
    let mut p = None;
    // SAFETY: the caller's contract on `session`.
    let _ = unsafe {
        session_call(session, |s| {
            let (ptr, n) = f(s)?;
            p = Some(ptr);
            if !count.is_null() {
                // SAFETY: `count` is valid for a write (caller).
                *count = n;
            }
            Ok(())
        })
    };
    p.unwrap_or(null)
}

/// The checked `count` of elements against a tensor of `want` elements.
fn check_count(what: &str, i: usize, count: usize, want: usize) -> Result<()> {
    if count != want {
        crate::bail!(
            Argument,
            "{what} {i} has {want} elements, the call passed {count}"
        );
    }
    Ok(())
}

/// Copies `count` floats from `data` into graph input `i` (`count` must equal its element count). Write
/// every input before every [`tern_session_run`]: the arena reuses their bytes during a run. `data` must
/// not point into the session's own arena (a pointer from [`tern_session_output`] or
/// [`tern_session_input`]): copy such values out first.
///
/// # Safety
/// `session` is NULL or live and not in use by another thread; `data` is NULL or points to `count`
/// readable floats outside the session's arena.
#[no_mangle]
pub unsafe extern "C" fn tern_session_set_input(
    session: *mut TernSession,
    i: usize,
    data: *const f32,
    count: usize,
) -> TernStatus {
    // SAFETY: the caller's contract on `session`.
    unsafe {
        session_call(session, |s| {
            let dst = s.input_mut(i)?;
            check_count("input", i, count, dst.len())?;
            if data.is_null() {
                crate::bail!(Argument, "tern_session_set_input: `data` is NULL");
            }
            // SAFETY: `data` has `count` == dst.len() readable floats (caller).
            dst.copy_from_slice(core::slice::from_raw_parts(data, count));
            Ok(())
        })
    }
}

/// Graph input `i`'s place in the session's arena, to fill in place (a frame decoded or DMA'd straight
/// into it saves a copy); `*count` (if not NULL) receives its element count. NULL on error (see
/// [`tern_session_error`]). Valid until the session is freed; refill it before every run.
///
/// # Safety
/// `session` is NULL or live and not in use by another thread; `count` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn tern_session_input(
    session: *mut TernSession,
    i: usize,
    count: *mut usize,
) -> *mut f32 {
    // SAFETY: the caller's contract.
    unsafe {
        arena_pointer(session, count, core::ptr::null_mut(), |s| {
            s.input_mut(i).map(|x| (x.as_mut_ptr(), x.len()))
        })
    }
}

/// Runs the model on the inputs written with [`tern_session_set_input`] or through
/// [`tern_session_input`], leaving the outputs in the arena. Allocates nothing.
///
/// # Safety
/// `session` is NULL or live and not in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn tern_session_run(session: *mut TernSession) -> TernStatus {
    // SAFETY: the caller's contract on `session`.
    unsafe { session_call(session, |s| s.run_in_place()) }
}

/// Copies graph output `i` of the last run into `data` (`count` must equal its element count).
///
/// # Safety
/// `session` is NULL or live and not in use by another thread; `data` is NULL or points to `count`
/// writable floats.
#[no_mangle]
pub unsafe extern "C" fn tern_session_get_output(
    session: *mut TernSession,
    i: usize,
    data: *mut f32,
    count: usize,
) -> TernStatus {
    // SAFETY: the caller's contract on `session`.
    unsafe {
        session_call(session, |s| {
            let src = s.output(i)?;
            check_count("output", i, count, src.len())?;
            if data.is_null() {
                crate::bail!(Argument, "tern_session_get_output: `data` is NULL");
            }
            // SAFETY: `data` has `count` == src.len() writable floats (caller), not in the arena.
            core::slice::from_raw_parts_mut(data, count).copy_from_slice(src);
            Ok(())
        })
    }
}

/// Graph output `i` of the last run, read in place in the arena; `*count` (if not NULL) receives its
/// element count. NULL on error (see [`tern_session_error`]). Valid until the next run or input write.
///
/// # Safety
/// `session` is NULL or live and not in use by another thread; `count` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn tern_session_output(
    session: *mut TernSession,
    i: usize,
    count: *mut usize,
) -> *const f32 {
    // SAFETY: the caller's contract.
    unsafe {
        arena_pointer(session, count, core::ptr::null(), |s| {
            s.output(i).map(|x| (x.as_ptr(), x.len()))
        })
    }
}

/// The message of the session's last call if it failed (naming the input, output or count at fault),
/// or `""` if it succeeded; `""` for a NULL session. Valid until the next call on the session.
///
/// # Safety
/// `session` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tern_session_error(session: *const TernSession) -> *const c_char {
    // SAFETY: the caller's contract.
    match unsafe { session.as_ref() } {
        Some(s) => s.error.as_ptr().cast(),
        None => c"".as_ptr(),
    }
}

/// The CPU kernel path the session runs (`"scalar"`, `"avx2"`, `"avxvnni"`, `"neon"`, `"dotprod"`);
/// `""` for NULL. Valid while the session lives.
///
/// # Safety
/// `session` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn tern_session_isa(session: *const TernSession) -> *const c_char {
    // SAFETY: the caller's contract.
    match unsafe { session.as_ref() } {
        Some(s) => s.isa.as_ptr(),
        None => c"".as_ptr(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// A metadata value cut to fit the caller's buffer ends on a character boundary: every `cap` gives the
    /// longest prefix of whole characters that fits, NUL-terminated.
    #[test]
    fn a_cut_metadata_value_stays_utf8() {
        let d = crate::artifact::decode(include_bytes!("../tests/data/cls.tern")).unwrap();
        let mut meta = d.meta.clone();
        let value = "añb€c𝄞d";
        meta.metadata.push(("note".into(), value.into()));
        let bytes = crate::artifact::encode(&meta, &d.weights).unwrap();
        let mut model = core::ptr::null_mut();
        // SAFETY: `bytes` outlives the model; `model` is a valid out pointer.
        let st = unsafe {
            tern_model_load(
                bytes.as_ptr(),
                bytes.len(),
                &mut model,
                core::ptr::null_mut(),
                0,
            )
        };
        assert_eq!(st, TernStatus::Ok);
        for cap in 1..=value.len() + 2 {
            let mut buf = vec![0x55u8; cap];
            let mut len = 0usize;
            // SAFETY: `buf` holds `cap` bytes; the key is NUL-terminated.
            let st = unsafe {
                tern_model_metadata(
                    model,
                    c"note".as_ptr(),
                    buf.as_mut_ptr().cast(),
                    cap,
                    &mut len,
                )
            };
            assert_eq!(st, TernStatus::Ok);
            assert_eq!(len, value.len());
            let n = buf.iter().position(|&b| b == 0).expect("NUL-terminated");
            let want = value
                .char_indices()
                .map(|(i, c)| i + c.len_utf8())
                .take_while(|&end| end < cap)
                .last()
                .unwrap_or(0);
            assert_eq!(n, want, "cap {cap}");
            let got: Vec<u8> = buf[..n].to_vec();
            assert_eq!(
                core::str::from_utf8(&got).unwrap(),
                &value[..n],
                "cap {cap}"
            );
        }
        // SAFETY: made by tern_model_load above, no session.
        unsafe { tern_model_free(model) };
    }
}
