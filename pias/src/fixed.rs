//! Tables whose capacity is fixed when they are built: `FixedVec` and
//! `FixedMap` reserve once and refuse (with `Full`) instead of growing, so the
//! appliance's memory is decided at boot and a full table is an explicit answer.

use alloc::vec::Vec;
use core::hash::{BuildHasher, Hash, Hasher};
use hashbrown::HashMap;

/// The table is at its capacity; nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// FxHash (rustc's): fast, deterministic, fine for keys no outsider chooses
/// freely in bulk (proxy ids, groups from the config, flows are bounded per group).
#[derive(Default, Clone, Copy)]
pub struct FxBuild;

pub struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(SEED);
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_u16(&mut self, v: u16) {
        self.write_u64(u64::from(v));
    }
    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl BuildHasher for FxBuild {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher(0)
    }
}

/// A vector that never reallocates after `with_capacity`.
#[derive(Debug, Clone)]
pub struct FixedVec<T> {
    items: Vec<T>,
    cap: usize,
}

impl<T> FixedVec<T> {
    pub fn with_capacity(cap: usize) -> Self {
        FixedVec {
            items: Vec::with_capacity(cap),
            cap,
        }
    }

    pub fn push(&mut self, v: T) -> Result<(), Full> {
        if self.items.len() >= self.cap {
            return Err(Full);
        }
        self.items.push(v);
        Ok(())
    }

    /// Inserts at `i` (shifting later items); refuses when full.
    pub fn insert(&mut self, i: usize, v: T) -> Result<(), Full> {
        if self.items.len() >= self.cap || i > self.items.len() {
            return Err(Full);
        }
        self.items.insert(i, v);
        Ok(())
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    pub fn as_slice(&self) -> &[T] {
        &self.items
    }

    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.items
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn retain(&mut self, f: impl FnMut(&T) -> bool) {
        self.items.retain(f);
    }

    pub fn swap_remove(&mut self, i: usize) -> T {
        self.items.swap_remove(i)
    }

    pub fn clear(&mut self) {
        self.items.clear();
    }

    pub fn sort_unstable_by_key<K: Ord>(&mut self, f: impl FnMut(&T) -> K) {
        self.items.sort_unstable_by_key(f);
    }
}

impl<T> core::ops::Deref for FixedVec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.items
    }
}

/// A hash map that never grows past the capacity it was built with.
#[derive(Debug, Clone)]
pub struct FixedMap<K, V> {
    map: HashMap<K, V, FxBuild>,
    cap: usize,
}

impl<K: Hash + Eq, V> FixedMap<K, V> {
    pub fn with_capacity(cap: usize) -> Self {
        FixedMap {
            map: HashMap::with_capacity_and_hasher(cap, FxBuild),
            cap,
        }
    }

    /// Inserts or replaces; refuses a new key when full.
    pub fn insert(&mut self, k: K, v: V) -> Result<Option<V>, Full> {
        if let Some(slot) = self.map.get_mut(&k) {
            return Ok(Some(core::mem::replace(slot, v)));
        }
        if self.map.len() >= self.cap {
            return Err(Full);
        }
        Ok(self.map.insert(k, v))
    }

    /// The value for `k`, inserting `make()` if absent; `Full` if absent and full.
    pub fn get_or_insert_with(&mut self, k: K, make: impl FnOnce() -> V) -> Result<&mut V, Full> {
        if !self.map.contains_key(&k) && self.map.len() >= self.cap {
            return Err(Full);
        }
        Ok(self.map.entry(k).or_insert_with(make))
    }

    pub fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.map.get_mut(k)
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        self.map.remove(k)
    }

    pub fn contains_key(&self, k: &K) -> bool {
        self.map.contains_key(k)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.map.iter_mut()
    }

    pub fn retain(&mut self, f: impl FnMut(&K, &mut V) -> bool) {
        self.map.retain(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_tables_refuse_and_keep_their_entries() {
        let mut m = FixedMap::with_capacity(2);
        m.insert(1, "a").unwrap();
        m.insert(2, "b").unwrap();
        assert_eq!(m.insert(3, "c"), Err(Full));
        assert_eq!(m.insert(2, "B"), Ok(Some("b")));
        assert!(m.get_or_insert_with(4, || "d").is_err());
        assert_eq!((m.get(&1), m.get(&2), m.len()), (Some(&"a"), Some(&"B"), 2));
        let mut v = FixedVec::with_capacity(1);
        v.push(1).unwrap();
        assert_eq!(v.push(2), Err(Full));
        assert_eq!(v.as_slice(), &[1]);
    }
}
