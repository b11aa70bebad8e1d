//! A per-thread cache of in-process routes: the inboxes a thread sent to or
//! received from last, so that a send or a receive finds its inbox without
//! loading the hive's module table.
//!
//! Loading the table (an `ArcSwap`) costs two locked instructions, and
//! hashing the name; in a profile of W1's receiver (one module receiving
//! from another's thread) it was the largest single cost. A cached entry costs one load of the hive's
//! `generation` (a counter that only changes when the table does, so its
//! cache line stays shared between cores) and a comparison of the name.
//!
//! Each entry is tagged with the hive's id (unique for the life of the
//! process, never an address that could be reused) and the table's
//! generation when the entry was made; any change of the table makes every
//! entry of that hive stale. A stale or missing entry falls back to the
//! table. An entry keeps its inbox allocated until the thread replaces the
//! entry or exits: a removed module's inbox (closed, so nothing can be sent
//! to it) or a dropped hive's, never a backend.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::inbox::Inbox;

/// How many routes a thread keeps: a module's thread typically receives
/// from its own inbox and sends to one or two others.
const ENTRIES: usize = 4;

struct Entry {
    hive: u64,
    generation: u64,
    module: Box<str>,
    inbox: Arc<Inbox>,
}

#[derive(Default)]
struct Cache {
    entries: [Option<Entry>; ENTRIES],
    /// The slot the next new entry takes when none is free or stale.
    next: usize,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// A new hive id, never reused in this process.
pub(crate) fn new_hive_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Runs `f` on the cached inbox of `module` of hive `hive` at table
/// generation `generation`. `None` (and `f` not called) when there is no
/// such entry, or when the cache is in use further up this thread's stack.
#[inline]
pub(crate) fn with<R>(hive: u64, generation: u64, module: &str, f: impl FnOnce(&Arc<Inbox>) -> R) -> Option<R> {
    CACHE
        .try_with(|cache| {
            let cache = cache.try_borrow().ok()?;
            let entry = cache
                .entries
                .iter()
                .flatten()
                .find(|e| e.hive == hive && e.generation == generation && *e.module == *module)?;
            Some(f(&entry.inbox))
        })
        .ok()
        .flatten()
}

/// Remembers `inbox` as the route to `module` of hive `hive`, as read from
/// the table at `generation` (read before the table was).
pub(crate) fn remember(hive: u64, generation: u64, module: &str, inbox: &Arc<Inbox>) {
    let _ = CACHE.try_with(|cache| {
        let Ok(mut cache) = cache.try_borrow_mut() else { return };
        let slot = cache
            .entries
            .iter()
            .position(|e| match e {
                None => true,
                Some(e) => e.hive == hive && (e.generation != generation || *e.module == *module),
            })
            .unwrap_or_else(|| {
                let n = cache.next;
                cache.next = (n + 1) % ENTRIES;
                n
            });
        cache.entries[slot] = Some(Entry { hive, generation, module: module.into(), inbox: Arc::clone(inbox) });
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spin::SpinBudget;

    fn inbox(name: &str) -> Arc<Inbox> {
        Arc::new(Inbox::new(name, 4, SpinBudget::OFF))
    }

    /// The inbox cached for (hive, generation, module), if any.
    fn cached(hive: u64, generation: u64, module: &str) -> Option<Arc<Inbox>> {
        with(hive, generation, module, Arc::clone)
    }

    fn is(found: Option<Arc<Inbox>>, inbox: &Arc<Inbox>) -> bool {
        found.is_some_and(|f| Arc::ptr_eq(&f, inbox))
    }

    /// Runs `f` on a thread of its own, so that it starts with an empty
    /// cache whatever ran before on the test harness's threads.
    fn on_new_thread(f: impl FnOnce() + Send + 'static) {
        std::thread::spawn(f).join().expect("test thread");
    }

    #[test]
    fn a_route_is_found_for_its_hive_generation_and_module_only() {
        on_new_thread(|| {
            let a = inbox("a");
            assert!(cached(1, 5, "a").is_none());
            remember(1, 5, "a", &a);
            assert!(is(cached(1, 5, "a"), &a));
            assert!(cached(2, 5, "a").is_none(), "another hive");
            assert!(cached(1, 6, "a").is_none(), "the table changed");
            assert!(cached(1, 5, "b").is_none(), "another module");
            assert!(cached(1, 5, "aa").is_none(), "a longer name");
        });
    }

    #[test]
    fn a_thread_keeps_its_last_four_routes() {
        on_new_thread(|| {
            let names = ["a", "b", "c", "d", "e", "f"];
            let inboxes: Vec<_> = names.iter().map(|n| inbox(n)).collect();
            for (n, i) in names[..4].iter().zip(&inboxes) {
                remember(1, 1, n, i);
            }
            for (n, i) in names[..4].iter().zip(&inboxes) {
                assert!(is(cached(1, 1, n), i), "{n}");
            }
            // A fifth and a sixth take the oldest slots, in turn.
            remember(1, 1, "e", &inboxes[4]);
            remember(1, 1, "f", &inboxes[5]);
            assert!(cached(1, 1, "a").is_none());
            assert!(cached(1, 1, "b").is_none());
            for (n, i) in names[2..].iter().zip(&inboxes[2..]) {
                assert!(is(cached(1, 1, n), i), "{n}");
            }
        });
    }

    #[test]
    fn a_module_remembered_again_keeps_one_slot() {
        on_new_thread(|| {
            let (old, new) = (inbox("a"), inbox("a"));
            remember(1, 1, "a", &old);
            remember(1, 1, "a", &new);
            assert!(is(cached(1, 1, "a"), &new));
            let others: Vec<_> = ["b", "c", "d"].iter().map(|n| inbox(n)).collect();
            for (n, i) in ["b", "c", "d"].iter().zip(&others) {
                remember(1, 1, n, i);
            }
            assert!(is(cached(1, 1, "a"), &new), "a took two slots");
        });
    }

    #[test]
    fn stale_routes_of_the_hive_go_first_and_other_hives_stay() {
        on_new_thread(|| {
            let (other_hive, stale, fresh) = (inbox("a"), inbox("b"), inbox("c"));
            remember(2, 1, "a", &other_hive);
            remember(1, 1, "b", &stale);
            for n in ["x", "y"] {
                remember(2, 1, n, &inbox(n));
            }
            // Full. Hive 1's table changed: its stale entry goes, not hive
            // 2's oldest (which round robin would pick).
            remember(1, 2, "c", &fresh);
            assert!(is(cached(1, 2, "c"), &fresh));
            assert!(cached(1, 1, "b").is_none());
            assert!(is(cached(2, 1, "a"), &other_hive));
        });
    }

    #[test]
    fn hive_ids_are_unique() {
        let ids: Vec<u64> = (0..100).map(|_| new_hive_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len());
    }
}
