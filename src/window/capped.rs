//! Key caps that cost only what they hold. `lru::LruCache::new(cap)` sizes
//! its hash table for `cap` keys at once: with the default cap of 100 000
//! keys, every windowed, sequence and first-seen rule held a table of
//! 131 072 buckets (about 2 MiB, its 128 KiB of control bytes written at
//! start), and a few hundred keys were spread over all of it. Each lookup
//! then touched cache lines and pages far apart. [`lru`] keeps the cap
//! and lets the table grow as keys come, as any hash map does.

use std::hash::Hash;
use std::num::NonZeroUsize;

use ::lru::LruCache;

/// An empty LRU map that holds at most `cap` keys (at least one), and
/// allocates as keys arrive.
pub fn lru<K: Hash + Eq, V>(cap: usize) -> LruCache<K, V> {
    let mut keys = LruCache::unbounded();
    keys.resize(NonZeroUsize::new(cap).unwrap_or(NonZeroUsize::MIN));
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_its_cap_and_evicts_the_least_recent() {
        let mut keys = lru::<u32, ()>(3);
        assert_eq!(keys.cap().get(), 3);
        for k in 0..3 {
            assert_eq!(keys.push(k, ()), None);
        }
        keys.get(&0);
        assert_eq!(keys.push(3, ()), Some((1, ())));
        assert_eq!(keys.len(), 3);
        assert!(keys.contains(&0) && keys.contains(&2) && keys.contains(&3));
        assert_eq!(lru::<u32, ()>(0).cap().get(), 1);
    }

    /// A large cap is kept as keys come in. (That the table grows with
    /// them rather than being sized for the cap is not visible through the
    /// crate's interface; BENCHMARKS measures it as peak memory.)
    #[test]
    fn a_large_cap_is_kept_as_keys_arrive() {
        let empty = lru::<u64, u64>(100_000);
        assert_eq!(empty.len(), 0);
        let mut keys = lru::<u64, u64>(100_000);
        for k in 0..10 {
            keys.push(k, k);
        }
        assert_eq!(keys.len(), 10);
        assert_eq!(keys.cap().get(), 100_000);
    }
}
