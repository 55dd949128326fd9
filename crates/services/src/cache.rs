//! A small time-bounded cache for hot lookups (authentication by API key, a user's provider
//! key). An entry is fresh for `ttl`; for one more `ttl` it is served stale to everyone but one
//! caller, who reads it again — so a busy key never sends a crowd of requests to the database
//! at the same instant. A change made by another replica is thus seen within `2 × ttl`; a
//! change made through this process invalidates its entry at once.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct TtlCache<K, V> {
    /// Value, when it was stored, and whether a caller is already reading it again.
    entries: Mutex<HashMap<K, (Instant, V, bool)>>,
    ttl: Duration,
    capacity: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    /// A cache holding at most `capacity` entries for at most `ttl` each. A zero `ttl`
    /// disables caching.
    pub fn new(ttl: Duration, capacity: usize) -> TtlCache<K, V> {
        TtlCache {
            entries: Mutex::new(HashMap::new()),
            ttl,
            capacity: capacity.max(1),
        }
    }

    /// The cached value, or `None` when the caller should read it (and `insert` it).
    pub fn get(&self, key: &K) -> Option<V> {
        if self.ttl.is_zero() {
            return None;
        }
        let mut entries = self.entries.lock().ok()?;
        let (stored_at, value, refreshing) = entries.get_mut(key)?;
        let age = stored_at.elapsed();
        if age < self.ttl || (age < self.ttl * 2 && *refreshing) {
            Some(value.clone())
        } else if age < self.ttl * 2 {
            *refreshing = true;
            None
        } else {
            None
        }
    }

    pub fn insert(&self, key: K, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= self.capacity {
                // Drop what has expired; if everything is fresh, start over rather than grow.
                let ttl = self.ttl;
                entries.retain(|_, (stored_at, _, _)| stored_at.elapsed() < ttl * 2);
                if entries.len() >= self.capacity {
                    entries.clear();
                }
            }
            entries.insert(key, (Instant::now(), value, false));
        }
    }

    /// Forgets every entry `matches` selects.
    pub fn remove_where(&self, matches: impl Fn(&K) -> bool) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|key, _| !matches(key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_are_removed_and_stay_bounded() {
        let cache = TtlCache::new(Duration::from_millis(30), 2);
        cache.insert("a", 1);
        assert_eq!(cache.get(&"a"), Some(1));
        cache.remove_where(|key| *key == "a");
        assert_eq!(cache.get(&"a"), None);
        cache.insert("a", 1);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.get(&"a"), None, "one caller reads it again");
        assert_eq!(
            cache.get(&"a"),
            Some(1),
            "the others get the stale value meanwhile"
        );
        cache.insert("a", 2);
        assert_eq!(cache.get(&"a"), Some(2));
        std::thread::sleep(Duration::from_millis(70));
        assert_eq!(cache.get(&"a"), None, "too old to serve");
        assert_eq!(cache.get(&"a"), None);
        cache.insert("b", 2);
        cache.insert("c", 3);
        cache.insert("d", 4);
        assert!(cache.entries.lock().unwrap().len() <= 2);
        let disabled = TtlCache::new(Duration::ZERO, 2);
        disabled.insert("a", 1);
        assert_eq!(disabled.get(&"a"), None);
    }
}
