//! Giving freed memory back to the system after many connections closed.
//!
//! glibc's allocator keeps what a thread freed in that thread's arena, and
//! returns it to the system only from the top of an arena, when a large
//! block is freed there. After a thousand connections closed, measured
//! with the `hostile_peers` example (`idle`, `idle-blocking`), the process
//! stayed at 6× (tokio driver) to 15× (blocking driver) its resident size
//! before they opened, all of it free memory: free chunks between live
//! ones in the long-lived threads' arenas, and the free tops of the arenas
//! of the ended connection threads.
//!
//! Two measures bring it back to under 2×: a connection thread's last act
//! frees a block large enough to make glibc consolidate its arena and trim
//! its top ([`trim_thread_arena`]), and a server whose open connections
//! fell to a quarter of their peak asks glibc for the free memory of every
//! arena ([`release_free_memory`], `malloc_trim`). Go's runtime does the
//! same on its own (its scavenger). Elsewhere than glibc both do nothing.

/// Closes needed since the last release before another one.
const MIN_CLOSES: usize = 16;

/// When a server's connections have ebbed enough that giving memory back
/// is worth a walk over the allocator's arenas: the open connections fell
/// to a quarter of their peak since the last release, after at least
/// [`MIN_CLOSES`] closes; and once more when the last one closed after
/// such a release. A steady server (closes and opens in balance) never
/// releases; a server whose thousand peers leave releases a few times on
/// the way down (at a quarter, a sixteenth, ..., none left).
#[derive(Debug, Default)]
pub(crate) struct Ebb {
    peak: usize,
    closes: usize,
    /// A release happened since the server was last without connections.
    ebbing: bool,
}

impl Ebb {
    /// A connection opened; `open` are open now.
    pub(crate) fn opened(&mut self, open: usize) {
        self.peak = self.peak.max(open);
    }

    /// A connection closed; `open` remain. True when memory should be
    /// given back now.
    pub(crate) fn closed(&mut self, open: usize) -> bool {
        self.closes += 1;
        let due = (self.closes >= MIN_CLOSES && open.saturating_mul(4) <= self.peak) || (open == 0 && self.ebbing);
        if due {
            self.peak = open;
            self.closes = 0;
            self.ebbing = open > 0;
        }
        due
    }
}

/// How long after the close that made a release due it happens: the
/// closing connections' threads and tasks end after their close is
/// reported, and what they free by then is given back too.
pub(crate) const RELEASE_DELAY: std::time::Duration = std::time::Duration::from_millis(50);

/// A server's giving back of memory: whether it does, when ([`Ebb`]) and
/// how often it did.
#[derive(Debug)]
pub(crate) struct Releases {
    /// `None`: never.
    ebb: Option<std::sync::Mutex<Ebb>>,
    done: std::sync::atomic::AtomicU64,
}

impl Releases {
    /// Releases as [`Ebb`] says when `enabled`, never otherwise.
    pub(crate) fn new(enabled: bool) -> Self {
        Releases { ebb: enabled.then(Default::default), done: Default::default() }
    }

    /// A connection opened; `open` are open now.
    pub(crate) fn opened(&self, open: usize) {
        if let Some(ebb) = &self.ebb {
            ebb.lock().unwrap_or_else(|e| e.into_inner()).opened(open);
        }
    }

    /// A connection closed; `open` remain. True when [`release`](Self::release)
    /// is due.
    pub(crate) fn closed(&self, open: usize) -> bool {
        self.ebb.as_ref().is_some_and(|ebb| ebb.lock().unwrap_or_else(|e| e.into_inner()).closed(open))
    }

    /// Gives the free memory back now, and counts it.
    pub(crate) fn release(&self) {
        release_free_memory();
        self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Releases so far.
    pub(crate) fn count(&self) -> u64 {
        self.done.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Gives the allocator's free memory back to the system: glibc's
/// `malloc_trim(0)`, which consolidates every arena and returns its free
/// pages. True when anything was returned.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn release_free_memory() -> bool {
    // SAFETY: `malloc_trim` takes no pointer and has no precondition; glibc
    // serialises it with every other allocator call.
    let released = unsafe { libc::malloc_trim(0) } == 1;
    tracing::debug!(released, "gave the allocator's free memory back");
    released
}

/// Does nothing: other allocators than glibc's have no such call, or
/// return memory on their own.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_free_memory() -> bool {
    false
}

/// Lets glibc trim the calling thread's arena: freeing a block of 64 KiB
/// or more makes it consolidate the arena's small free chunks and give
/// the free memory at its top back (`malloc_trim` does not trim the tops of
/// threads' arenas). A connection thread calls it last.
pub(crate) fn trim_thread_arena() {
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        // Below glibc's default mmap threshold (128 KiB), so it comes from
        // the arena; black_box keeps the allocation from being elided.
        drop(std::hint::black_box(Vec::<u8>::with_capacity(96 * 1024)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn releases(ebb: &mut Ebb, opens: usize, closes: usize) -> Vec<usize> {
        for open in 1..=opens {
            ebb.opened(open);
        }
        (0..closes).filter_map(|i| ebb.closed(opens - 1 - i).then_some(opens - 1 - i)).collect()
    }

    #[test]
    fn a_mass_close_releases_on_the_way_down() {
        let mut ebb = Ebb::default();
        // 2000 peers leave: at a quarter, a sixteenth, ... while at least
        // 16 closed since the last release.
        assert_eq!(releases(&mut ebb, 2000, 2000), vec![500, 125, 31, 7, 0]);
    }

    #[test]
    fn a_steady_server_never_releases() {
        let mut ebb = Ebb::default();
        for open in 1..=1000 {
            ebb.opened(open);
        }
        for _ in 0..10_000 {
            assert!(!ebb.closed(999));
            ebb.opened(1000);
        }
    }

    #[test]
    fn few_connections_never_release() {
        let mut ebb = Ebb::default();
        assert_eq!(releases(&mut ebb, 15, 15), Vec::<usize>::new());
        let mut ebb = Ebb::default();
        assert_eq!(releases(&mut ebb, 16, 16), vec![0], "16 closes down to none");
    }

    #[test]
    fn the_peak_restarts_after_a_release() {
        let mut ebb = Ebb::default();
        assert_eq!(releases(&mut ebb, 100, 75), vec![25]);
        assert!(ebb.ebbing);
        // Back up to 100: a quarter of the new peak again.
        for open in 26..=100 {
            ebb.opened(open);
        }
        let again: Vec<usize> = (0..75).filter_map(|i| ebb.closed(99 - i).then_some(99 - i)).collect();
        assert_eq!(again, vec![25]);
    }

    #[test]
    fn the_last_close_after_a_release_releases_once() {
        let mut ebb = Ebb::default();
        assert_eq!(releases(&mut ebb, 64, 64), vec![16, 0]);
        // Empty and quiet: closes of a few new connections release nothing.
        assert_eq!(releases(&mut ebb, 3, 3), Vec::<usize>::new());
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn free_memory_below_a_live_block_is_given_back() {
        // 8 MB in blocks below the mmap threshold, then a block that stays:
        // freeing the first ones leaves free memory under a live block,
        // which only a trim gives back.
        let blocks: Vec<Vec<u8>> = (0..128).map(|_| vec![1u8; 64 * 1024]).collect();
        let pin = std::hint::black_box(vec![1u8; 64]);
        drop(std::hint::black_box(blocks));
        assert!(release_free_memory(), "glibc gave nothing back");
        drop(pin);
        trim_thread_arena();
    }
}
