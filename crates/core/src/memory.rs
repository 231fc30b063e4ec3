//! Memory a command let go of, given back to the system between its phases.
//!
//! A command that reads a fleet's campaign frees a great deal in pieces: the
//! batches of parsed records, each setting's runs once its figures are made. The
//! C allocator keeps what is freed for the process to use again, but only for
//! requests of sizes that fit the pieces: the next phase (settings, tables, a diff's
//! points) asks for other sizes, and the process would hold both. Between phases
//! [`give_back_freed`] returns every free page to the system, so a command's peak
//! memory is what it holds at once, not the sum of its phases (docs/ARCHITECTURE.md §5).

/// Return the allocator's free pages to the system (glibc's `malloc_trim`; a
/// no-op where the C library has none). Cheap next to a phase: it walks the free
/// lists once.
pub fn give_back_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and only releases memory the allocator
    // holds free; it is safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
