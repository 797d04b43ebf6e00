//! Feature `c-alloc` in a `no_std` build: the allocator and panic handler a C firmware cannot write in
//! Rust, on its C library (newlib's malloc/free/abort on Cortex-M). Kept out of `ffi.rs`, whose every
//! item cbindgen puts into the C header.
use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;

extern "C" {
    fn malloc(size: usize) -> *mut c_void;
    fn calloc(n: usize, size: usize) -> *mut c_void;
    fn realloc(p: *mut c_void, size: usize) -> *mut c_void;
    fn free(p: *mut c_void);
    fn abort() -> !;
}

/// The alignment every `malloc` block has (`max_align_t` on 32-bit Arm EABI): larger ones are
/// carved out of a bigger block, whose address is kept in the word before the aligned one.
const MALLOC_ALIGN: usize = 8;
const WORD: usize = core::mem::size_of::<usize>();

struct CAlloc;

// SAFETY: blocks come from malloc and go back to free, aligned as asked (see MALLOC_ALIGN).
unsafe impl GlobalAlloc for CAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if l.align() <= MALLOC_ALIGN {
            return unsafe { malloc(l.size().max(1)) }.cast();
        }
        let Some(total) = l.size().checked_add(l.align() + WORD) else {
            return core::ptr::null_mut();
        };
        let raw = unsafe { malloc(total) }.cast::<u8>();
        if raw.is_null() {
            return raw;
        }
        let aligned = (raw as usize + WORD).next_multiple_of(l.align());
        // SAFETY: aligned - WORD >= raw, and aligned + size <= raw + total.
        unsafe {
            let p = raw.add(aligned - raw as usize);
            p.cast::<usize>().sub(1).write_unaligned(raw as usize);
            p
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if l.align() <= MALLOC_ALIGN {
            unsafe { free(p.cast()) }
        } else {
            // SAFETY: alloc stored the block's address in the word before p.
            unsafe { free(p.cast::<usize>().sub(1).read_unaligned() as *mut c_void) }
        }
    }

    // (the session's zeroed arena and scratch: the C library's calloc, which may know its fresh pages
    // are zero already, instead of malloc and a memset)
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if l.align() <= MALLOC_ALIGN {
            // SAFETY: calloc returns a zeroed, malloc-aligned block (or NULL), freed by dealloc's free.
            return unsafe { calloc(1, l.size().max(1)) }.cast();
        }
        // SAFETY: the caller's contract on `l`.
        let p = unsafe { self.alloc(l) };
        if !p.is_null() {
            // SAFETY: alloc returned l.size() writable bytes at p.
            unsafe { core::ptr::write_bytes(p, 0, l.size()) };
        }
        p
    }

    // (a growing Vec — the loader's, the planner's — then extends its block in place where the C
    // library can, instead of always allocating, copying and freeing)
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        if l.align() <= MALLOC_ALIGN {
            // SAFETY: p came from malloc (alloc above), and realloc keeps malloc's alignment.
            return unsafe { realloc(p.cast(), new_size.max(1)) }.cast();
        }
        // SAFETY: the caller's contract: new_size with l.align() is a valid layout.
        let grown = unsafe { self.alloc(Layout::from_size_align_unchecked(new_size, l.align())) };
        if !grown.is_null() {
            // SAFETY: both blocks hold at least min(old, new) bytes and do not overlap.
            unsafe {
                core::ptr::copy_nonoverlapping(p, grown, l.size().min(new_size));
                self.dealloc(p, l);
            }
        }
        grown
    }
}

#[global_allocator]
static ALLOC: CAlloc = CAlloc;

/// A panic is a bug (no input makes a call panic): stop the firmware as the C library does.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // SAFETY: abort takes nothing and does not return.
    unsafe { abort() }
}
