//! `ListPool`: one slab of entries reserved at boot and shared by many short
//! per-group lists (`List` handles), so per-group tables never allocate after construction.

use crate::fixed::Full;
use alloc::vec::Vec;

/// A group's list inside a [`ListPool`]: a handle, `Copy`, with no storage of
/// its own. The default value is the empty list.
///
/// A `List` is only meaningful with the pool it was filled by, and only in its
/// latest state (a copy taken before a `push`, `retain` or `clear` is stale).
/// A foreign or stale handle never makes the pool panic or loop: walks stop at
/// the first slot not in use and after at most `len` (and at most the pool's
/// capacity) steps. It may, however, read, change or free entries of other
/// lists of that pool, or strand entries so they are never reused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct List {
    head: Option<u32>,
    tail: Option<u32>,
    len: u32,
}

impl List {
    /// The number of entries in the list.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the list has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One entry of the slab: on the free list, or in use by one list.
#[derive(Debug)]
enum Slot<T> {
    Free { next: Option<u32> },
    Used { value: T, next: Option<u32> },
}

/// A fixed slab of entries shared by many [`List`]s, reserved once by
/// [`ListPool::with_capacity`]. Appending takes a slot from the free list in
/// O(1), or the next never-used slot of the reserved room (so the slab's
/// memory is first written as it fills, not when it is built); a full pool
/// refuses with [`Full`] and changes nothing.
#[derive(Debug)]
pub struct ListPool<T> {
    /// Every slot used so far (room for `cap` reserved): the rest of the
    /// room is free without being on the free list.
    slots: Vec<Slot<T>>,
    /// The most slots it holds.
    cap: usize,
    /// Freed slots, newest first.
    free: Option<u32>,
    used: usize,
}

impl<T> ListPool<T> {
    /// A pool of `cap` entries (at most `u32::MAX`; more is clamped), all free.
    /// This is the pool's only allocation.
    pub fn with_capacity(cap: usize) -> Self {
        let cap = cap.min(u32::MAX as usize);
        ListPool {
            slots: Vec::with_capacity(cap),
            cap,
            free: None,
            used: 0,
        }
    }

    /// The number of entries the pool holds at most, over all lists.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The number of entries in use, over all lists.
    pub fn len(&self) -> usize {
        self.used
    }

    /// Whether no entry is in use.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// The number of free entries (`capacity() - len()`).
    pub fn available(&self) -> usize {
        self.capacity().saturating_sub(self.used)
    }

    /// Appends `v` at the end of `list` (insertion order is kept); `Err(Full)`
    /// when the pool is full, in which case nothing changes (`v` is dropped).
    pub fn push(&mut self, list: &mut List, v: T) -> Result<(), Full> {
        let used = Slot::Used {
            value: v,
            next: None,
        };
        let idx = match self.free {
            Some(idx) => {
                let slot = self.slots.get_mut(idx as usize).ok_or(Full)?;
                let next_free = match slot {
                    Slot::Free { next } => *next,
                    // Unreachable: the free list only ever links free slots.
                    Slot::Used { .. } => return Err(Full),
                };
                *slot = used;
                self.free = next_free;
                idx
            }
            // `cap <= u32::MAX`, so every index below it fits in u32; within
            // the reserved room, so the push does not allocate.
            None if self.slots.len() < self.cap => {
                let idx = self.slots.len() as u32;
                self.slots.push(used);
                idx
            }
            None => return Err(Full),
        };
        self.used = self.used.saturating_add(1);
        match list.tail.and_then(|t| self.slots.get_mut(t as usize)) {
            Some(Slot::Used { next, .. }) => *next = Some(idx),
            // Empty list (or a broken handle): the new entry starts the chain.
            _ => list.head = Some(idx),
        }
        list.tail = Some(idx);
        list.len = list.len.saturating_add(1);
        Ok(())
    }

    /// Entries of `list` in order.
    pub fn iter<'a>(&'a self, list: &List) -> impl Iterator<Item = &'a T> + 'a {
        Iter {
            slots: &self.slots,
            next: list.head,
            left: self.bound(list),
        }
    }

    /// The first entry of `list` matching `f`, mutable.
    pub fn find_mut(&mut self, list: &List, mut f: impl FnMut(&T) -> bool) -> Option<&mut T> {
        let mut cur = list.head;
        let mut found = None;
        for _ in 0..self.bound(list) {
            let Some(i) = cur else { break };
            let Some(Slot::Used { value, next }) = self.slots.get(i as usize) else {
                break;
            };
            if f(value) {
                found = Some(i);
                break;
            }
            cur = *next;
        }
        match self.slots.get_mut(found? as usize) {
            Some(Slot::Used { value, .. }) => Some(value),
            _ => None,
        }
    }

    /// Calls `f` on every entry of `list` in order.
    pub fn for_each_mut(&mut self, list: &List, mut f: impl FnMut(&mut T)) {
        let mut cur = list.head;
        for _ in 0..self.bound(list) {
            let Some(i) = cur else { break };
            let Some(Slot::Used { value, next }) = self.slots.get_mut(i as usize) else {
                break;
            };
            f(value);
            cur = *next;
        }
    }

    /// Keeps the entries for which `f` is true (it may change them); frees the
    /// others; order kept.
    pub fn retain(&mut self, list: &mut List, mut f: impl FnMut(&mut T) -> bool) {
        let mut cur = list.head;
        let mut head = None;
        let mut last_kept: Option<u32> = None;
        let mut kept: u32 = 0;
        for _ in 0..self.bound(list) {
            let Some(i) = cur else { break };
            let Some(slot) = self.slots.get_mut(i as usize) else {
                break;
            };
            let Slot::Used { value, next } = slot else {
                break;
            };
            cur = *next;
            if f(value) {
                kept = kept.saturating_add(1);
                match last_kept.and_then(|p| self.slots.get_mut(p as usize)) {
                    Some(Slot::Used { next, .. }) => *next = Some(i),
                    _ => head = Some(i),
                }
                last_kept = Some(i);
            } else {
                self.release(i);
            }
        }
        if let Some(Slot::Used { next, .. }) =
            last_kept.and_then(|p| self.slots.get_mut(p as usize))
        {
            *next = None;
        }
        *list = List {
            head,
            tail: last_kept,
            len: kept,
        };
    }

    /// Frees every entry of `list`, leaving it empty.
    pub fn clear(&mut self, list: &mut List) {
        let mut cur = list.head;
        for _ in 0..self.bound(list) {
            let Some(i) = cur else { break };
            let Some(Slot::Used { next, .. }) = self.slots.get(i as usize) else {
                break;
            };
            cur = *next;
            self.release(i);
        }
        *list = List::default();
    }

    /// The most steps a walk of `list` may take: its length, and never more
    /// than the pool holds (so a broken handle cannot make a walk loop).
    fn bound(&self, list: &List) -> usize {
        list.len().min(self.slots.len())
    }

    /// Returns slot `i` (in use) to the free list, dropping its value.
    fn release(&mut self, i: u32) {
        if let Some(slot) = self.slots.get_mut(i as usize) {
            if matches!(slot, Slot::Used { .. }) {
                *slot = Slot::Free { next: self.free };
                self.free = Some(i);
                self.used = self.used.saturating_sub(1);
            }
        }
    }
}

/// The iterator behind [`ListPool::iter`].
struct Iter<'a, T> {
    slots: &'a [Slot<T>],
    next: Option<u32>,
    left: usize,
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        if self.left == 0 {
            return None;
        }
        let slot = self.next.and_then(|i| self.slots.get(i as usize));
        match slot {
            Some(Slot::Used { value, next }) => {
                self.left = self.left.saturating_sub(1);
                self.next = *next;
                Some(value)
            }
            _ => {
                self.left = 0;
                self.next = None;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec;
    use std::vec::Vec;

    fn items(pool: &ListPool<u32>, list: &List) -> Vec<u32> {
        pool.iter(list).copied().collect()
    }

    fn filled(values: &[u32]) -> (ListPool<u32>, List) {
        let mut pool = ListPool::with_capacity(8);
        let mut list = List::default();
        for &v in values {
            pool.push(&mut list, v).unwrap();
        }
        (pool, list)
    }

    #[test]
    fn room_is_taken_as_needed_and_freed_slots_first() {
        let mut pool = ListPool::with_capacity(1000);
        assert_eq!(
            (pool.capacity(), pool.slots.len()),
            (1000, 0),
            "nothing written yet"
        );
        let room = pool.slots.as_ptr();
        let mut a = List::default();
        assert!(pool.is_empty());
        for v in 0..3 {
            pool.push(&mut a, v).unwrap();
        }
        assert!(!pool.is_empty());
        assert_eq!(pool.slots.len(), 3);
        pool.retain(&mut a, |v| *v != 1);
        let mut b = List::default();
        pool.push(&mut b, 7).unwrap();
        assert_eq!(pool.slots.len(), 3, "the freed slot is reused");
        for v in 0..997 {
            pool.push(&mut b, v).unwrap();
        }
        assert_eq!(pool.push(&mut b, 1), Err(Full));
        assert_eq!((pool.len(), pool.slots.len()), (1000, 1000));
        assert_eq!(pool.slots.as_ptr(), room, "never reallocated");
        assert_eq!(items(&pool, &a), vec![0, 2]);
    }

    #[test]
    fn empty_pool_and_list() {
        let pool: ListPool<u32> = ListPool::with_capacity(4);
        let list = List::default();
        assert_eq!(pool.capacity(), 4);
        assert_eq!(pool.len(), 0);
        assert!(pool.is_empty());
        assert_eq!(pool.available(), 4);
        assert!(list.is_empty());
        assert_eq!(list.len(), 0);
        assert_eq!(items(&pool, &list), Vec::<u32>::new());
    }

    #[test]
    fn push_keeps_insertion_order() {
        let (pool, list) = filled(&[5, 3, 9, 1]);
        assert_eq!(items(&pool, &list), vec![5, 3, 9, 1]);
        assert_eq!(list.len(), 4);
        assert_eq!(pool.len(), 4);
        assert_eq!(pool.available(), 4);
    }

    #[test]
    fn zero_capacity_refuses_everything() {
        let mut pool = ListPool::with_capacity(0);
        let mut list = List::default();
        assert_eq!(pool.push(&mut list, 1u32), Err(Full));
        assert_eq!(list, List::default());
        assert_eq!(pool.len(), 0);
    }

    #[test]
    fn full_pool_refuses_and_changes_nothing() {
        let mut pool = ListPool::with_capacity(3);
        let (mut a, mut b) = (List::default(), List::default());
        pool.push(&mut a, 1u32).unwrap();
        pool.push(&mut b, 2).unwrap();
        pool.push(&mut a, 3).unwrap();
        let (a_before, b_before) = (a, b);
        assert_eq!(pool.push(&mut a, 4), Err(Full));
        assert_eq!(pool.push(&mut b, 5), Err(Full));
        let mut c = List::default();
        assert_eq!(pool.push(&mut c, 6), Err(Full));
        assert_eq!((a, b, c), (a_before, b_before, List::default()));
        assert_eq!(items(&pool, &a), vec![1, 3]);
        assert_eq!(items(&pool, &b), vec![2]);
        assert_eq!(pool.len(), 3);
        assert_eq!(pool.available(), 0);
    }

    #[test]
    fn retain_first_middle_last_all_none() {
        let cases: [(&[u32], &[u32]); 6] = [
            (&[2], &[1, 3, 4, 5]),   // first
            (&[3], &[1, 2, 4, 5]),   // middle
            (&[5], &[1, 2, 3, 4]),   // last
            (&[2, 4], &[1, 3, 5]),   // two apart
            (&[1, 2, 3, 4, 5], &[]), // all removed
            (&[], &[1, 2, 3, 4, 5]), // none removed
        ];
        for (drop, want) in cases {
            let (mut pool, mut list) = filled(&[1, 2, 3, 4, 5]);
            pool.retain(&mut list, |v| !drop.contains(v));
            assert_eq!(items(&pool, &list), want.to_vec(), "dropping {drop:?}");
            assert_eq!(list.len(), want.len());
            assert_eq!(pool.len(), want.len());
            // The list still appends at its (possibly new) tail.
            pool.push(&mut list, 77).unwrap();
            let mut want_after = want.to_vec();
            want_after.push(77);
            assert_eq!(
                items(&pool, &list),
                want_after,
                "push after dropping {drop:?}"
            );
        }
    }

    #[test]
    fn retain_may_change_kept_entries() {
        let (mut pool, mut list) = filled(&[1, 2, 3, 4]);
        pool.retain(&mut list, |v| {
            *v *= 10;
            *v != 20
        });
        assert_eq!(items(&pool, &list), vec![10, 30, 40]);
    }

    #[test]
    fn clear_returns_slots_for_reuse() {
        let mut pool = ListPool::with_capacity(4);
        let (mut a, mut b) = (List::default(), List::default());
        for v in 0..4u32 {
            pool.push(&mut a, v).unwrap();
        }
        assert_eq!(pool.push(&mut b, 9), Err(Full));
        pool.clear(&mut a);
        assert_eq!(a, List::default());
        assert_eq!(pool.len(), 0);
        assert_eq!(items(&pool, &a), Vec::<u32>::new());
        for v in 10..14u32 {
            pool.push(&mut b, v).unwrap();
        }
        assert_eq!(items(&pool, &b), vec![10, 11, 12, 13]);
        assert_eq!(pool.push(&mut a, 99), Err(Full));
        assert_eq!(pool.len(), 4);
    }

    #[test]
    fn retain_frees_slots_for_other_lists() {
        let mut pool = ListPool::with_capacity(3);
        let (mut a, mut b) = (List::default(), List::default());
        for v in [1u32, 2, 3] {
            pool.push(&mut a, v).unwrap();
        }
        pool.retain(&mut a, |v| *v == 2);
        pool.push(&mut b, 7).unwrap();
        pool.push(&mut b, 8).unwrap();
        assert_eq!(pool.push(&mut b, 9), Err(Full));
        assert_eq!(items(&pool, &a), vec![2]);
        assert_eq!(items(&pool, &b), vec![7, 8]);
    }

    #[test]
    fn many_interleaved_lists() {
        let mut pool = ListPool::with_capacity(300);
        let mut lists = [List::default(); 10];
        for v in 0..300u32 {
            let l = &mut lists[(v % 10) as usize];
            pool.push(l, v).unwrap();
        }
        for (k, l) in lists.iter().enumerate() {
            let want: Vec<u32> = (0..30).map(|j| j * 10 + k as u32).collect();
            assert_eq!(items(&pool, l), want);
        }
        assert_eq!(pool.push(&mut lists[0], 1000), Err(Full));
        // Drop the odd values everywhere, then refill list 3 with the freed slots.
        for l in lists.iter_mut() {
            pool.retain(l, |v| *v % 2 == 0);
        }
        assert_eq!(pool.len(), 150);
        for v in 0..150u32 {
            pool.push(&mut lists[3], 1000 + v).unwrap();
        }
        assert_eq!(pool.push(&mut lists[3], 5000), Err(Full));
        assert_eq!(lists[3].len(), 150);
        assert_eq!(items(&pool, &lists[1]), Vec::<u32>::new());
        let want4: Vec<u32> = (0..30).map(|j| j * 10 + 4).collect();
        assert_eq!(items(&pool, &lists[4]), want4);
    }

    #[test]
    fn find_mut_and_for_each_mut() {
        let (mut pool, list) = filled(&[4, 7, 9, 7]);
        *pool.find_mut(&list, |v| *v == 7).unwrap() = 70;
        assert_eq!(items(&pool, &list), vec![4, 70, 9, 7]);
        assert_eq!(pool.find_mut(&list, |v| *v == 100), None);
        pool.for_each_mut(&list, |v| *v += 1);
        assert_eq!(items(&pool, &list), vec![5, 71, 10, 8]);
        assert_eq!(pool.find_mut(&List::default(), |_| true), None);
    }

    #[test]
    fn foreign_and_stale_handles_do_not_panic() {
        let (mut pool, mut list) = filled(&[1, 2, 3]);
        let stale = list;
        pool.clear(&mut list);
        // Every slot is free: a stale handle sees nothing.
        assert_eq!(items(&pool, &stale), Vec::<u32>::new());
        assert_eq!(pool.find_mut(&stale, |_| true), None);
        let mut s = stale;
        pool.retain(&mut s, |_| true);
        assert_eq!(s, List::default());

        // A handle from a bigger pool: indices beyond this pool's slots.
        let mut big = ListPool::with_capacity(100);
        let mut foreign = List::default();
        for v in 0..50u32 {
            big.push(&mut foreign, v).unwrap();
        }
        let mut small = ListPool::<u32>::with_capacity(2);
        let mut a = List::default();
        small.push(&mut a, 1).unwrap();
        small.push(&mut a, 2).unwrap();
        assert!(small.iter(&foreign).count() <= 2);
        small.for_each_mut(&foreign, |v| *v += 1);
        let mut f = foreign;
        small.retain(&mut f, |_| true);
        small.clear(&mut f);
        assert!(small.len() <= 2);

        // Handcrafted cycle and absurd lengths stay bounded.
        let mut pool = ListPool::with_capacity(2);
        let mut l = List::default();
        pool.push(&mut l, 1u32).unwrap();
        pool.push(&mut l, 2).unwrap();
        let cyc = List {
            head: Some(0),
            tail: Some(0),
            len: u32::MAX,
        };
        assert_eq!(pool.iter(&cyc).count(), 2);
        let mut c = cyc;
        assert_eq!(pool.push(&mut c, 3), Err(Full));
        let mut c = cyc;
        pool.clear(&mut c);
        assert_eq!(pool.len(), 0);
        assert_eq!(pool.available(), 2);
    }

    #[test]
    fn slot_overhead_is_at_most_eight_bytes() {
        // The budget behind the pool: a 64-byte entry costs 72 bytes of slab.
        assert!(core::mem::size_of::<Slot<[u64; 8]>>() <= 72);
        assert!(core::mem::size_of::<Slot<[u8; 64]>>() <= 72);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(usize, u32),
        /// Drop entries with `v % m == r`, add `add` to the others.
        Retain(usize, u32, u32, u32),
        Clear(usize),
    }

    const LISTS: usize = 4;

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..LISTS, 0u32..1000).prop_map(|(l, v)| Op::Push(l, v)),
            2 => (0..LISTS, 1u32..5, 0u32..5, 0u32..3)
                .prop_map(|(l, m, r, a)| Op::Retain(l, m, r, a)),
            1 => (0..LISTS).prop_map(Op::Clear),
        ]
    }

    proptest! {
        #[test]
        fn matches_vec_of_vecs(cap in 0usize..12, ops in proptest::collection::vec(op(), 0..200)) {
            let mut pool = ListPool::with_capacity(cap);
            let mut lists = [List::default(); LISTS];
            let mut model: Vec<Vec<u32>> = vec![Vec::new(); LISTS];
            for op in ops {
                match op {
                    Op::Push(l, v) => {
                        let total: usize = model.iter().map(Vec::len).sum();
                        let got = pool.push(&mut lists[l], v);
                        if total < cap {
                            prop_assert_eq!(got, Ok(()));
                            model[l].push(v);
                        } else {
                            prop_assert_eq!(got, Err(Full));
                        }
                    }
                    Op::Retain(l, m, r, add) => {
                        let f = |v: &mut u32| {
                            if *v % m == r {
                                false
                            } else {
                                *v += add;
                                true
                            }
                        };
                        pool.retain(&mut lists[l], f);
                        model[l].retain_mut(f);
                    }
                    Op::Clear(l) => {
                        pool.clear(&mut lists[l]);
                        model[l].clear();
                    }
                }
                for (list, want) in lists.iter().zip(&model) {
                    prop_assert_eq!(&items(&pool, list), want);
                    prop_assert_eq!(list.len(), want.len());
                }
                let total: usize = model.iter().map(Vec::len).sum();
                prop_assert_eq!(pool.len(), total);
                prop_assert_eq!(pool.available(), cap - total);
            }
        }
    }
}
