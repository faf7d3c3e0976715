//! Tables whose capacity is fixed when they are built (`FixedVec`, `FixedMap`): they
//! allocate once, answer `Full` instead of growing, and never allocate again.

use alloc::vec::Vec;
use core::fmt;
use core::hash::{BuildHasher, Hash, Hasher};

/// The table is at its capacity; nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// FxHash (rustc's): fast, deterministic, fine for keys no outsider chooses
/// freely in bulk (proxy ids, groups from the config, flows are bounded per group).
#[derive(Default, Clone, Copy)]
pub struct FxBuild;

/// SipHash-1-3 with a secret 128-bit key: for tables whose keys outsiders
/// choose (client endpoints), so that colliding keys cannot be computed
/// without the key.
#[derive(Clone, Copy)]
pub struct KeyedBuild {
    k0: u64,
    k1: u64,
}

impl KeyedBuild {
    /// A hasher keyed by `key` (keep it secret: derive it from a secret).
    pub fn new(key: [u8; 16]) -> Self {
        let mut k0 = [0u8; 8];
        let mut k1 = [0u8; 8];
        k0.copy_from_slice(&key[..8]);
        k1.copy_from_slice(&key[8..]);
        KeyedBuild {
            k0: u64::from_le_bytes(k0),
            k1: u64::from_le_bytes(k1),
        }
    }
}

impl BuildHasher for KeyedBuild {
    type Hasher = siphasher::sip::SipHasher13;
    fn build_hasher(&self) -> Self::Hasher {
        siphasher::sip::SipHasher13::new_with_keys(self.k0, self.k1)
    }
}

/// The running state of one FxHash computation (built by [`FxBuild`]).
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
///
/// Every way in refuses at `cap` items, so the buffer reserved for `cap` items
/// is never outgrown; a clone reserves its own `cap` items too.
#[derive(Debug)]
pub struct FixedVec<T> {
    items: Vec<T>,
    cap: usize,
}

impl<T: Clone> Clone for FixedVec<T> {
    /// A copy with its own room for `capacity()` items (a derived clone would
    /// keep only `len()` and reallocate on the next push).
    fn clone(&self) -> Self {
        let mut items = Vec::with_capacity(self.cap);
        items.extend(self.items.iter().cloned());
        FixedVec {
            items,
            cap: self.cap,
        }
    }
}

impl<T> FixedVec<T> {
    /// An empty vector with room for `cap` items, allocated now and only now.
    pub fn with_capacity(cap: usize) -> Self {
        FixedVec {
            items: Vec::with_capacity(cap),
            cap,
        }
    }

    /// Appends `v`; refuses when full.
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

    /// The most items it will ever hold.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The items, in order.
    pub fn as_slice(&self) -> &[T] {
        &self.items
    }

    /// The items, in order, mutably (the length cannot change through it).
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.items
    }

    /// How many items it holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether it holds no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Keeps only the items `f` accepts, in order.
    pub fn retain(&mut self, f: impl FnMut(&T) -> bool) {
        self.items.retain(f);
    }

    /// Removes item `i`, moving the last item into its place.
    ///
    /// Panics if `i >= len()`, as `Vec::swap_remove` does: callers check.
    pub fn swap_remove(&mut self, i: usize) -> T {
        self.items.swap_remove(i)
    }

    /// Removes every item (the room stays).
    pub fn clear(&mut self) {
        self.items.clear();
    }

    /// Sorts in place by `f`'s key, without allocating.
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

/// A hash map that never grows past the capacity it was built with, and never
/// allocates after `with_capacity`.
///
/// The entries sit densely in one vector with room for `cap` reserved by
/// `with_capacity`; an index of `cap + cap/7 + 1` slots rounded up to a power
/// of two (4 bytes each) finds them, by open addressing with linear probing,
/// so at most 7/8 of the slots are ever full and every probe run ends at an
/// empty slot. `remove` (and `retain`) shift the rest of the run back into
/// the hole (backward-shift deletion) and move the last entry into the
/// removed one's place, so there are no tombstones and nothing ever needs a
/// rehash or a bigger array. Only the index is written when the map is
/// built: the entries' memory is first touched as entries arrive, so a large
/// table costs its pages only as it fills (a boot under TCG pays dearly for
/// each page written). Iteration order is unspecified.
///
/// `S` hashes the keys: FxHash by default (fast, for keys no outsider picks
/// in bulk); a `KeyedBuild` (SipHash with a secret key) where outsiders choose
/// the keys, such as client flows, so that nobody can aim keys at one run.
pub struct FixedMap<K, V, S = FxBuild> {
    /// `mask + 1` slots (a power of two): 0 for empty, else 1 + the index in
    /// `entries` of an entry whose run starts at its key's home slot, with no
    /// empty slot between home and this slot.
    index: Vec<u32>,
    /// The entries, in no particular order; room for `cap` of them.
    entries: Vec<(K, V)>,
    /// Slot count minus one.
    mask: usize,
    /// Entries allowed (less than 7/8 of the slots).
    cap: usize,
    /// Hashes keys to their home slots.
    hasher: S,
}

/// Where a probe for a key ended.
enum Probe {
    /// The key is in `entries[.1]`, named by slot `.0`.
    Found(usize, usize),
    /// The key is absent; this empty slot ends its run.
    Vacant(usize),
    /// No empty slot was met (cannot happen while `len < slots`).
    Lost,
}

impl<K: Clone, V: Clone, S: Clone> Clone for FixedMap<K, V, S> {
    /// A copy with its own room for `capacity()` entries (a derived clone
    /// would keep only `len()` and reallocate on the next insert).
    fn clone(&self) -> Self {
        let mut entries = Vec::with_capacity(self.cap);
        entries.extend(self.entries.iter().cloned());
        FixedMap {
            index: self.index.clone(),
            entries,
            mask: self.mask,
            cap: self.cap,
            hasher: self.hasher.clone(),
        }
    }
}

impl<K, V, S> FixedMap<K, V, S> {
    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The most entries it will ever hold.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The entries, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Up to `N` keys whose values `f` picks, on the stack: for handling
    /// due entries in batches without allocating.
    pub fn keys_where<const N: usize>(&self, f: impl Fn(&V) -> bool) -> heapless::Vec<K, N>
    where
        K: Copy,
    {
        self.iter()
            .filter(|(_, v)| f(v))
            .map(|(k, _)| *k)
            .take(N)
            .collect()
    }

    /// The entries with mutable values, in no particular order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    /// The next slot along a run (wrapping at the end of the array).
    fn after(&self, i: usize) -> usize {
        i.wrapping_add(1) & self.mask
    }
}

impl<K: Hash + Eq, V> FixedMap<K, V> {
    /// An empty map with room for `cap` entries, hashed by FxHash; its index
    /// and entry room are allocated here and never again.
    pub fn with_capacity(cap: usize) -> Self {
        Self::with_capacity_and_hasher(cap, FxBuild)
    }
}

/// The most entries a map holds: its index names them in 32 bits.
const MAX_ENTRIES: usize = (u32::MAX - 1) as usize;

impl<K: Hash + Eq, V, S: BuildHasher> FixedMap<K, V, S> {
    /// An empty map with room for `cap` entries whose keys `hasher` hashes;
    /// its index and entry room are allocated here and never again.
    pub fn with_capacity_and_hasher(cap: usize, hasher: S) -> Self {
        let cap = cap.min(MAX_ENTRIES);
        let want = cap.saturating_add(cap / 7).saturating_add(1);
        let slots = want
            .checked_next_power_of_two()
            .unwrap_or(1 << (usize::BITS - 1));
        let mask = slots - 1;
        let cap = cap.min(mask);
        FixedMap {
            index: alloc::vec![0; slots],
            entries: Vec::with_capacity(cap),
            mask,
            cap,
            hasher,
        }
    }

    /// Inserts or replaces; refuses a new key when full.
    pub fn insert(&mut self, k: K, v: V) -> Result<Option<V>, Full> {
        match self.probe(&k) {
            Probe::Found(_, e) => match self.entries.get_mut(e) {
                Some((_, old)) => Ok(Some(core::mem::replace(old, v))),
                None => Err(Full),
            },
            Probe::Vacant(slot) => self.push(slot, k, v).map(|_| None),
            Probe::Lost => Err(Full),
        }
    }

    /// The value for `k`, inserting `make()` if absent; `Full` if absent and full.
    pub fn get_or_insert_with(&mut self, k: K, make: impl FnOnce() -> V) -> Result<&mut V, Full> {
        let e = match self.probe(&k) {
            Probe::Found(_, e) => e,
            Probe::Vacant(slot) if self.len() < self.cap => self.push(slot, k, make())?,
            Probe::Vacant(_) | Probe::Lost => return Err(Full),
        };
        self.entries.get_mut(e).map(|(_, v)| v).ok_or(Full)
    }

    /// The value for `k`, if present.
    pub fn get(&self, k: &K) -> Option<&V> {
        match self.probe(k) {
            Probe::Found(_, e) => self.entries.get(e).map(|(_, v)| v),
            Probe::Vacant(_) | Probe::Lost => None,
        }
    }

    /// The value for `k`, mutably, if present.
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        match self.probe(k) {
            Probe::Found(_, e) => self.entries.get_mut(e).map(|(_, v)| v),
            Probe::Vacant(_) | Probe::Lost => None,
        }
    }

    /// Removes `k`, returning its value if it was present.
    pub fn remove(&mut self, k: &K) -> Option<V> {
        let Probe::Found(slot, e) = self.probe(k) else {
            return None;
        };
        self.remove_at(slot, e).map(|(_, v)| v)
    }

    /// Whether `k` is present.
    pub fn contains_key(&self, k: &K) -> bool {
        matches!(self.probe(k), Probe::Found(..))
    }

    /// Keeps only the entries `f` accepts; `f` sees each entry exactly once.
    ///
    /// A removal moves the last entry into the removed one's place, which
    /// is looked at next; entries before it never move.
    pub fn retain(&mut self, mut f: impl FnMut(&K, &mut V) -> bool) {
        let mut e = 0;
        while let Some((k, v)) = self.entries.get_mut(e) {
            if f(k, v) {
                e += 1;
                continue;
            }
            let Some(slot) = self.slot_of(e) else {
                // The index lost this entry (cannot happen): stop rather than
                // loop.
                return;
            };
            self.remove_at(slot, e);
        }
    }

    /// Adds `(k, v)` as a new entry named by the empty slot `slot`; returns
    /// its place in `entries`. `Full` at capacity.
    fn push(&mut self, slot: usize, k: K, v: V) -> Result<usize, Full> {
        let e = self.entries.len();
        if e >= self.cap {
            return Err(Full);
        }
        let named = self.index.get_mut(slot).ok_or(Full)?;
        *named = e as u32 + 1;
        self.entries.push((k, v));
        Ok(e)
    }

    /// Removes entry `e`, named by `slot`: empties the slot and closes the
    /// hole in its run, then moves the last entry into `e`'s place and
    /// renames its slot.
    fn remove_at(&mut self, slot: usize, e: usize) -> Option<(K, V)> {
        if e >= self.entries.len() {
            return None;
        }
        if let Some(named) = self.index.get_mut(slot) {
            *named = 0;
        }
        self.close_hole(slot);
        let last = self.entries.len() - 1;
        if e != last {
            if let Some(moved) = self.slot_of(last) {
                if let Some(named) = self.index.get_mut(moved) {
                    *named = e as u32 + 1;
                }
            }
        }
        Some(self.entries.swap_remove(e))
    }

    /// The slot that names entry `e`: along the run from its key's home.
    fn slot_of(&self, e: usize) -> Option<usize> {
        let (k, _) = self.entries.get(e)?;
        let want = e as u32 + 1;
        let mut i = self.home(k);
        for _ in 0..self.index.len() {
            match self.index.get(i) {
                Some(&n) if n == want => return Some(i),
                Some(&n) if n != 0 => i = self.after(i),
                _ => return None,
            }
        }
        None
    }

    /// The slot where `k`'s run starts: the hash's top bits, scaled to the array.
    fn home(&self, k: &K) -> usize {
        let h = self.hasher.hash_one(k);
        let slots = (self.mask as u128) + 1;
        ((u128::from(h) * slots) >> 64) as usize
    }

    /// The entry a slot names, if any.
    fn named(&self, slot: usize) -> Option<(usize, &(K, V))> {
        let n = *self.index.get(slot)?;
        let e = (n as usize).checked_sub(1)?;
        Some((e, self.entries.get(e)?))
    }

    fn probe(&self, k: &K) -> Probe {
        let mut i = self.home(k);
        for _ in 0..self.index.len() {
            match self.named(i) {
                Some((e, (key, _))) if key == k => return Probe::Found(i, e),
                Some(_) => i = self.after(i),
                None => return Probe::Vacant(i),
            }
        }
        Probe::Lost
    }

    /// Refills the just-emptied slot `hole` from later in its run: an entry
    /// moves back into the hole unless its home lies after the hole (then it
    /// would sit before its home), and the entry's old slot is the new hole.
    /// Stops at the empty slot that ends the run.
    fn close_hole(&mut self, mut hole: usize) {
        let mut j = hole;
        for _ in 0..self.mask {
            j = self.after(j);
            let home = match self.named(j) {
                Some((_, (k, _))) => self.home(k),
                None => return,
            };
            let from_home = j.wrapping_sub(home) & self.mask;
            let from_hole = j.wrapping_sub(hole) & self.mask;
            if from_home >= from_hole {
                let moved = self.index.get(j).copied().unwrap_or(0);
                if let Some(named) = self.index.get_mut(hole) {
                    *named = moved;
                }
                if let Some(named) = self.index.get_mut(j) {
                    *named = 0;
                }
                hole = j;
            }
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug, S> fmt::Debug for FixedMap<K, V, S> {
    /// The entries as a map, like `HashMap`'s.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::format;
    use std::vec;

    #[test]
    fn keys_where_picks_matching_keys_up_to_the_batch() {
        let mut m = FixedMap::with_capacity(64);
        for k in 0..40u32 {
            m.insert(k, k % 3 == 0).unwrap();
        }
        let all: heapless::Vec<u32, 64> = m.keys_where(|due| *due);
        let mut all: std::vec::Vec<u32> = all.into_iter().collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..40).filter(|k| k % 3 == 0).collect::<std::vec::Vec<_>>()
        );
        let batch: heapless::Vec<u32, 4> = m.keys_where(|due| *due);
        assert_eq!(batch.len(), 4);
        assert!(batch.iter().all(|k| k % 3 == 0));
    }

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

    /// A key whose hash is chosen by the test: `Clash::at(target, id)` hashes
    /// to exactly `target`, so keys can be put on the same home slot or at
    /// the end of the array (runs that wrap round to slot 0).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Clash {
        word: u64,
        id: u64,
    }

    impl Hash for Clash {
        fn hash<H: Hasher>(&self, state: &mut H) {
            state.write_u64(self.word);
        }
    }

    impl Clash {
        fn at(target: u64, id: u64) -> Self {
            // FxHash of one u64 `w` from a fresh state is `w * SEED`; SEED is
            // odd, so multiplying by its inverse picks the hash.
            let mut inv = SEED;
            for _ in 0..6 {
                inv = inv.wrapping_mul(2u64.wrapping_sub(SEED.wrapping_mul(inv)));
            }
            Clash {
                word: target.wrapping_mul(inv),
                id,
            }
        }
    }

    /// The table's own promises: slots a power of two with `cap` under 7/8 of
    /// them, room reserved for `cap` entries, each entry named by exactly one
    /// slot, and no empty slot between an entry's slot and its home (else a
    /// lookup would stop short).
    fn check_layout<K: Hash + Eq, V>(m: &FixedMap<K, V>) {
        let n = m.index.len();
        assert!(n.is_power_of_two());
        assert_eq!(m.mask, n - 1);
        assert!(m.cap + m.cap / 7 < n, "cap {} in {n} slots", m.cap);
        assert!(m.len() <= m.cap);
        assert!(m.entries.capacity() >= m.cap, "room for every entry");
        assert_eq!(m.index.iter().filter(|&&s| s != 0).count(), m.len());
        let mut named = vec![0; m.len()];
        for (p, &s) in m.index.iter().enumerate() {
            let Some((e, (k, _))) = m.named(p) else {
                assert_eq!(s, 0, "slot {p} names entry {s} of {}", m.len());
                continue;
            };
            named[e] += 1;
            let home = m.home(k);
            let mut i = home;
            while i != p {
                assert!(m.index[i] != 0, "hole at {i} between home {home} and {p}");
                i = (i + 1) & m.mask;
            }
        }
        assert!(
            named.iter().all(|&c| c == 1),
            "each entry named once: {named:?}"
        );
    }

    /// The value of the entry slot `i` names.
    fn at<K, V: Copy>(m: &FixedMap<K, V>, i: usize) -> Option<V>
    where
        K: Hash + Eq,
    {
        m.named(i).map(|(_, (_, v))| *v)
    }

    #[test]
    fn chosen_hashes_land_where_asked() {
        let m: FixedMap<Clash, ()> = FixedMap::with_capacity(7);
        assert_eq!(m.index.len(), 16);
        assert_eq!(m.home(&Clash::at(u64::MAX, 0)), 15);
        assert_eq!(m.home(&Clash::at(0, 0)), 0);
        assert_eq!(m.home(&Clash::at(u64::MAX / 2, 0)), 7);
    }

    #[test]
    fn removal_in_a_run_that_wraps_keeps_every_key_reachable() {
        // 7 entries fit in 16 slots; five share home 15, so they take 15, 0..4,
        // and a key at home 0 lands after them.
        let mut m = FixedMap::with_capacity(7);
        for id in 0..5 {
            assert_eq!(m.insert(Clash::at(u64::MAX, id), id), Ok(None));
        }
        let zero = Clash::at(0, 99);
        assert_eq!(m.insert(zero, 99), Ok(None));
        assert_eq!(at(&m, 4), Some(99));
        check_layout(&m);
        assert_eq!(m.remove(&Clash::at(u64::MAX, 0)), Some(0));
        check_layout(&m);
        // Everything moved back one slot, across the wrap.
        assert_eq!(at(&m, 15), Some(1));
        assert_eq!(at(&m, 3), Some(99));
        assert_eq!(at(&m, 4), None);
        for id in 1..5 {
            assert_eq!(m.get(&Clash::at(u64::MAX, id)), Some(&id));
        }
        assert_eq!(m.get(&zero), Some(&99));
        // Retain across the wrap: drop the odd ids, each entry seen once.
        let mut seen = vec![];
        m.retain(|k, _| {
            seen.push(k.id);
            k.id % 2 == 0
        });
        seen.sort_unstable();
        assert_eq!(seen, vec![1, 2, 3, 4, 99]);
        check_layout(&m);
        let mut left: Vec<u64> = m.iter().map(|(k, _)| k.id).collect();
        left.sort_unstable();
        assert_eq!(left, vec![2, 4]);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn a_full_map_does_not_make_a_value_it_will_refuse() {
        let mut m = FixedMap::with_capacity(2);
        let mut made = 0;
        for k in 0..2u32 {
            m.get_or_insert_with(k, || {
                made += 1;
                k
            })
            .unwrap();
        }
        assert_eq!(made, 2);
        assert_eq!(
            m.get_or_insert_with(9, || {
                made += 1;
                9
            }),
            Err(Full)
        );
        assert_eq!(made, 2, "make() ran for a refused key");
        // A key it holds is found, not made, even when full.
        assert_eq!(m.get_or_insert_with(1, || 7), Ok(&mut 1));
        check_layout(&m);
    }

    #[test]
    fn zero_capacity_refuses_everything() {
        let mut m: FixedMap<u64, u64> = FixedMap::with_capacity(0);
        assert_eq!(m.insert(1, 1), Err(Full));
        assert_eq!(m.get_or_insert_with(1, || 1), Err(Full));
        assert_eq!(m.get(&1), None);
        assert_eq!(m.remove(&1), None);
        m.retain(|_, _| false);
        assert!(m.is_empty());
    }

    #[test]
    fn cloned_fixed_vec_keeps_its_room() {
        let mut v = FixedVec::with_capacity(8);
        v.push(1u32).unwrap();
        let mut c = v.clone();
        let before = c.as_slice().as_ptr();
        for i in 2..=8 {
            c.push(i).unwrap();
        }
        assert_eq!(c.push(9), Err(Full));
        assert_eq!(c.as_slice().as_ptr(), before, "clone reallocated");
        assert_eq!(c.as_slice(), &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(v.as_slice(), &[1]);
    }

    #[test]
    fn cloned_fixed_map_keeps_its_room() {
        let mut m = FixedMap::with_capacity(8);
        m.insert(1u32, 1u32).unwrap();
        let mut c = m.clone();
        let before = c.entries.as_ptr();
        for i in 2..=8 {
            assert_eq!(c.insert(i, i), Ok(None));
        }
        assert_eq!(c.insert(9, 9), Err(Full));
        assert_eq!(c.entries.as_ptr(), before, "clone reallocated");
        check_layout(&c);
        assert_eq!(c.len(), 8);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn debug_shows_the_entries() {
        let mut m = FixedMap::with_capacity(3);
        m.insert(5u8, 'x').unwrap();
        assert_eq!(format!("{m:?}"), "{5: 'x'}");
    }

    #[derive(Clone, Debug)]
    enum Op<K> {
        Insert(K, u32),
        GetOrInsert(K, u32),
        Remove(K),
        Get(K),
        AddToAll(u32),
        Retain(u32),
    }

    fn ops<K: Clone + core::fmt::Debug>(
        key: impl Strategy<Value = K> + Clone,
    ) -> impl Strategy<Value = Vec<Op<K>>> {
        let op = prop_oneof![
            4 => (key.clone(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            2 => (key.clone(), any::<u32>()).prop_map(|(k, v)| Op::GetOrInsert(k, v)),
            4 => key.clone().prop_map(Op::Remove),
            2 => key.prop_map(Op::Get),
            1 => any::<u32>().prop_map(Op::AddToAll),
            1 => (1u32..5).prop_map(Op::Retain),
        ];
        proptest::collection::vec(op, 0..300)
    }

    /// Runs `ops` on a `FixedMap` and on a std `HashMap` limited to `cap`
    /// keys by hand; every answer and, after every step, the contents match.
    fn run_model<K: Hash + Eq + Clone + core::fmt::Debug>(cap: usize, ops: Vec<Op<K>>) {
        let mut m: FixedMap<K, u32> = FixedMap::with_capacity(cap);
        let mut model: HashMap<K, u32> = HashMap::new();
        for op in ops {
            match op {
                Op::Insert(k, v) => {
                    let want = if let Some(old) = model.get_mut(&k) {
                        Ok(Some(core::mem::replace(old, v)))
                    } else if model.len() >= cap {
                        Err(Full)
                    } else {
                        model.insert(k.clone(), v);
                        Ok(None)
                    };
                    assert_eq!(m.insert(k, v), want);
                }
                Op::GetOrInsert(k, v) => {
                    let want = if let Some(old) = model.get(&k) {
                        Ok(*old)
                    } else if model.len() >= cap {
                        Err(Full)
                    } else {
                        model.insert(k.clone(), v);
                        Ok(v)
                    };
                    let got = m.get_or_insert_with(k, || v).map(|x| *x);
                    assert_eq!(got, want);
                }
                Op::Remove(k) => assert_eq!(m.remove(&k), model.remove(&k)),
                Op::Get(k) => {
                    assert_eq!(m.get(&k), model.get(&k));
                    assert_eq!(m.contains_key(&k), model.contains_key(&k));
                    if let Some(v) = m.get_mut(&k) {
                        *v ^= 1;
                    }
                    if let Some(v) = model.get_mut(&k) {
                        *v ^= 1;
                    }
                }
                Op::AddToAll(d) => {
                    for (_, v) in m.iter_mut() {
                        *v = v.wrapping_add(d);
                    }
                    for v in model.values_mut() {
                        *v = v.wrapping_add(d);
                    }
                }
                Op::Retain(modulus) => {
                    let mut calls = 0;
                    m.retain(|_, v| {
                        calls += 1;
                        *v = v.wrapping_add(1);
                        *v % modulus != 0
                    });
                    assert_eq!(calls, model.len(), "retain must see each entry once");
                    model.retain(|_, v| {
                        *v = v.wrapping_add(1);
                        *v % modulus != 0
                    });
                }
            }
            check_layout(&m);
            assert_eq!(m.len(), model.len());
            assert_eq!(m.is_empty(), model.is_empty());
            let got: HashMap<K, u32> = m.iter().map(|(k, v)| (k.clone(), *v)).collect();
            assert_eq!(got, model);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn fixed_map_matches_hash_map_on_plain_keys(cap in 0usize..48, ops in ops(0u64..96)) {
            run_model(cap, ops);
        }

        /// Few distinct hashes, some at the array's end: long runs that wrap.
        #[test]
        fn fixed_map_matches_hash_map_on_clashing_keys(
            cap in 0usize..24,
            ops in ops((0usize..5, 0u64..12).prop_map(|(h, id)| {
                let target = [0, u64::MAX, u64::MAX - u64::MAX / 8, u64::MAX / 2, 1 << 60][h];
                Clash::at(target, id)
            })),
        ) {
            run_model(cap, ops);
        }
    }
}
