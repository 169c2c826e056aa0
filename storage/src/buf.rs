//! [`AlignedBuf`]: a heap buffer that starts on a page boundary.
//!
//! Every buffer the kernel copies file or socket data into should start on
//! a page boundary. On some CPUs (measured: AMD EPYC, Linux 6.18) the
//! kernel's copy to user space (`rep movsb`) from a page-aligned page-cache
//! page is several times slower when the destination starts 8 or 16 bytes
//! past a page boundary, which is where the allocator puts a `Vec` of 128
//! KiB or more (its header takes the first 16 bytes of the mapping). The
//! storage bench `verify_read_offset/{0,16}` shows the ratio on any CPU.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// Page size the buffers are aligned to (the largest base page of the
/// platforms bittern runs on; a multiple of smaller ones).
pub const PAGE_ALIGN: usize = 4096;

/// Buffers of at least this many bytes are mapped straight from the
/// kernel (anonymous `mmap`: page-aligned and zeroed by construction, and
/// given back whole when dropped) rather than taken from the allocator,
/// whose page-aligned blocks of this size are carved from its arenas and
/// leave them fragmented (measured: a peer's 256 KiB read buffer per
/// connection made the process's RSS creep by about 1 MiB per round of
/// eight torrents added and removed).
const MAP_MIN: usize = 64 * 1024;

/// A zero-initialised, fixed-length byte buffer whose first byte is on a
/// [`PAGE_ALIGN`] boundary. Derefs to `[u8]`.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: an owned heap allocation of plain bytes, like `Vec<u8>`.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only hands out `&[u8]`.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A buffer of `len` zero bytes starting on a page boundary.
    ///
    /// # Panics
    /// When `len` is too large for a `Layout` (over `isize::MAX` bytes);
    /// aborts if the allocation fails, as `vec![0; len]` does.
    pub fn zeroed(len: usize) -> AlignedBuf {
        if len == 0 {
            return AlignedBuf {
                ptr: NonNull::dangling(),
                len,
            };
        }
        let layout = Self::layout(len);
        if len >= MAP_MIN {
            // SAFETY: a fresh private anonymous mapping; no memory is passed.
            let raw = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if raw == libc::MAP_FAILED {
                alloc::handle_alloc_error(layout);
            }
            if let Some(ptr) = NonNull::new(raw.cast::<u8>()) {
                return AlignedBuf { ptr, len };
            }
            alloc::handle_alloc_error(layout);
        }
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        AlignedBuf { ptr, len }
    }

    fn layout(len: usize) -> Layout {
        match Layout::from_size_align(len, PAGE_ALIGN) {
            Ok(l) => l,
            Err(_) => panic!("aligned buffer of {len} bytes is too large"),
        }
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` holds `len` initialised bytes (zeroed at
        // allocation), or is dangling and aligned for `len == 0`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.len >= MAP_MIN {
            // SAFETY: mapped in `zeroed` with this same length, and no
            // borrow of it outlives `self`.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        } else if self.len > 0 {
            // SAFETY: allocated in `zeroed` with this same layout.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.len)) };
        }
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size starts on a page boundary, reads as zeros, and keeps
    /// what is written to it.
    #[test]
    fn buffers_start_on_a_page_and_hold_their_bytes() {
        for len in [1, 16, 4095, 4096, 65_536, 128 * 1024, 256 * 1024 + 3] {
            let mut b = AlignedBuf::zeroed(len);
            assert_eq!(b.as_ptr() as usize % PAGE_ALIGN, 0, "{len}");
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&x| x == 0));
            b[len - 1] = 7;
            b.copy_within(len - 1.., 0);
            assert_eq!((b[0], b[len - 1]), (7, 7));
        }
        assert!(AlignedBuf::zeroed(0).is_empty());
    }
}
