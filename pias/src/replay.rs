//! Anti-replay state of fixed size: `SeqWindow` (a peer's sequence numbers, which
//! arrive sparse and reordered) and `NonceCache` (registration nonces, kept while fresh).

use crate::fixed::{FixedMap, FixedVec};

/// How many accepted sequence numbers a `SeqWindow` remembers.
const REMEMBERED: usize = 16;

/// Why a sequence number was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqError {
    /// This exact sequence number was accepted before.
    Replay,
    /// At or below the floor: too old to tell, or 0 (never valid).
    Stale,
}

/// One sender incarnation's accepted sequence numbers, as seen by one receiver.
///
/// The sender numbers all its messages from one counter, whatever their
/// destination, so a receiver sees a sparse subset that may arrive out of order
/// (300 before 100). A bitmap over the sequence space would refuse 100 as too
/// old; instead the window remembers the last `REMEMBERED` accepted numbers
/// (the largest ones) and a floor below which everything is refused. A number
/// is accepted iff it is above the floor and not remembered, so reordering
/// within the last `REMEMBERED` accepted messages is tolerated however large
/// the gaps. Every accepted number is always either remembered or at or below
/// the floor (which only rises), so none is ever accepted twice.
#[derive(Clone, Debug, Default)]
pub struct SeqWindow {
    /// Everything at or below this is refused.
    floor: u64,
    /// The largest accepted numbers, all above `floor`; 0 marks a free slot
    /// (0 is never accepted).
    seen: [u64; REMEMBERED],
}

impl SeqWindow {
    /// How many accepted sequence numbers are remembered above the floor.
    pub const REMEMBERED: usize = REMEMBERED;

    /// Whether `seq` would be accepted now: `Stale` if it is 0 or at or below
    /// the floor, `Replay` if it was accepted before. Changes nothing.
    pub fn check(&self, seq: u64) -> Result<(), SeqError> {
        if seq <= self.floor {
            return Err(SeqError::Stale);
        }
        if self.seen.contains(&seq) {
            return Err(SeqError::Replay);
        }
        Ok(())
    }

    /// Marks `seq` accepted; call only once its message verified. A number
    /// `check` refuses is ignored. When the window is full the smallest of
    /// the remembered numbers and `seq` is forgotten and becomes the floor.
    pub fn record(&mut self, seq: u64) {
        if self.check(seq).is_err() {
            return;
        }
        let Some(low) = self.seen.iter_mut().min_by_key(|s| **s) else {
            // No slots at all: only the floor can hold the news.
            self.floor = seq;
            return;
        };
        if *low == 0 {
            *low = seq;
        } else if seq < *low {
            self.floor = seq;
        } else {
            self.floor = *low;
            *low = seq;
        }
    }

    /// A window that refuses everything at or below `floor`: for a sender
    /// whose sequence numbers follow its clock (µs), `floor` = now − the
    /// freshness window refuses any message older than that, so a window
    /// made afresh (a new peer, a restart, an entry forgotten and made again)
    /// cannot be fed an old captured message.
    pub fn above(floor: u64) -> Self {
        SeqWindow {
            floor,
            seen: [0; REMEMBERED],
        }
    }

    /// Forgets everything: the sender restarted, and its new incarnation counts from 1 again.
    pub fn reset(&mut self) {
        *self = SeqWindow::default();
    }
}

/// Why a registration nonce was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceError {
    /// Seen before, and its registration is still fresh: a replay.
    Replayed,
    /// Every slot holds a nonce that has not expired: answer Capacity.
    Full,
}

/// The JAP's memory of registration (join/leave) nonces.
///
/// A registration with timestamp `ts` is fresh while `|ts - now| <= F`, so its
/// nonce must be refused until `ts + F` (inclusive) and may be forgotten after:
/// a replay then fails the freshness check anyway. Entries leave only when
/// they expire (`now > expires`) and never to make room: a cache full of
/// unexpired nonces answers `Full`.
///
/// The nonces sit in a no-grow `FixedMap` (the set) and, with their expiry
/// times, in a binary min-heap on expiry kept in a `FixedVec` of the same
/// capacity; both are allocated by `with_capacity` and never again. Expiry
/// times are not monotone in arrival order (timestamps vary by ±F), so a
/// first-in-first-out queue could not drop an expired nonce stuck behind a
/// younger-arrived, later-expiring one without either scanning or assuming a
/// bound on the spread; the heap's root is always the next nonce to expire,
/// so purging pops exactly the expired ones (each nonce is popped once:
/// amortised one pop, O(log cap), per insert) and never an unexpired one.
#[derive(Clone, Debug)]
pub struct NonceCache {
    /// The remembered nonces; once `expire(now)` ran, none has expired.
    nonces: FixedMap<u64, ()>,
    /// `(expires, nonce)` for each remembered nonce: a min-heap on `expires`.
    heap: FixedVec<(u64, u64)>,
}

impl NonceCache {
    /// Room for `cap` nonces: at R registrations/s and freshness F seconds,
    /// cap = R * 2F (plus one, see [`nonce_capacity`]).
    pub fn with_capacity(cap: usize) -> Self {
        NonceCache {
            nonces: FixedMap::with_capacity(cap),
            heap: FixedVec::with_capacity(cap),
        }
    }

    /// The most nonces it remembers at once.
    pub fn capacity(&self) -> usize {
        self.heap.capacity().min(self.nonces.capacity())
    }

    /// Nonces remembered (expired ones count until `expire` or `insert` drops them).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Refuses a nonce seen before (unexpired); else remembers it until
    /// `expires` (µs, inclusive). Expired entries are purged first (amortised
    /// one heap pop per insert). A nonce whose `expires` is already past is
    /// accepted without being stored: its registration is stale anyway.
    pub fn insert(&mut self, nonce: u64, expires: u64, now: u64) -> Result<(), NonceError> {
        self.expire(now);
        if self.nonces.contains_key(&nonce) {
            return Err(NonceError::Replayed);
        }
        if expires < now {
            return Ok(());
        }
        if self.heap.len() >= self.capacity() {
            return Err(NonceError::Full);
        }
        if self.nonces.insert(nonce, ()).is_err() {
            return Err(NonceError::Full);
        }
        if self.heap.push((expires, nonce)).is_err() {
            // Cannot happen (the capacity was checked above); undo the insert.
            self.nonces.remove(&nonce);
            return Err(NonceError::Full);
        }
        let last = self.heap.len().saturating_sub(1);
        sift_up(self.heap.as_mut_slice(), last);
        Ok(())
    }

    /// Drops expired entries (`expires < now`); also done lazily by `insert`.
    pub fn expire(&mut self, now: u64) {
        while let Some(&(expires, nonce)) = self.heap.first() {
            if expires >= now {
                return;
            }
            // Non-empty (just read its first item): cannot panic.
            self.heap.swap_remove(0);
            sift_down(self.heap.as_mut_slice(), 0);
            self.nonces.remove(&nonce);
        }
    }
}

/// Nonce-cache slots for `rate_per_sec` registrations over a freshness window
/// of `freshness_us` (both directions: 2F).
///
/// A nonce accepted at `t` has a timestamp of at most `t + F`, so it expires
/// by `t + 2F`; at any moment the remembered nonces arrived within one closed
/// window of 2F, which at an even R per second holds `R * 2F + 1` of them
/// (both ends count). Rounded up; saturates instead of overflowing.
pub fn nonce_capacity(rate_per_sec: u32, freshness_us: u64) -> usize {
    let per_window = u128::from(rate_per_sec) * u128::from(freshness_us) * 2;
    let slots = per_window.div_ceil(1_000_000) + 1;
    usize::try_from(slots).unwrap_or(usize::MAX)
}

/// Restores the heap order after item `i` got an earlier expiry (or was pushed last).
fn sift_up(heap: &mut [(u64, u64)], mut i: usize) {
    while i > 0 {
        let parent = (i - 1) / 2;
        match (heap.get(parent), heap.get(i)) {
            (Some(p), Some(c)) if c.0 < p.0 => heap.swap(parent, i),
            _ => return,
        }
        i = parent;
    }
}

/// Restores the heap order after item `i` got a later expiry (or was moved to the root).
fn sift_down(heap: &mut [(u64, u64)], mut i: usize) {
    loop {
        let mut first = i;
        for child in [
            i.saturating_mul(2).saturating_add(1),
            i.saturating_mul(2).saturating_add(2),
        ] {
            if let (Some(c), Some(f)) = (heap.get(child), heap.get(first)) {
                if c.0 < f.0 {
                    first = child;
                }
            }
        }
        if first == i {
            return;
        }
        heap.swap(i, first);
        i = first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeSet, HashMap};
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn reordered_messages_with_big_gaps_are_accepted() {
        let mut w = SeqWindow::default();
        // The sender's counter serves many destinations: we see 300 first,
        // then older numbers far below it, then a jump.
        for seq in [300, 100, 1_000_000, 200, 150, 7, 999_999] {
            assert_eq!(w.check(seq), Ok(()), "seq {seq}");
            w.record(seq);
        }
        // A message overtaken by REMEMBERED - 1 later-numbered ones is still accepted.
        let mut w = SeqWindow::default();
        for k in 1..REMEMBERED as u64 {
            w.record(1_000 * k + 5_000);
        }
        assert_eq!(w.check(10), Ok(()));
        w.record(10);
        assert_eq!(w.check(10), Err(SeqError::Replay));
    }

    #[test]
    fn exact_replay_is_refused() {
        let mut w = SeqWindow::default();
        w.record(42);
        w.record(41);
        assert_eq!(w.check(42), Err(SeqError::Replay));
        assert_eq!(w.check(41), Err(SeqError::Replay));
        assert_eq!(w.check(43), Ok(()));
        assert_eq!(w.check(0), Err(SeqError::Stale));
    }

    #[test]
    fn evicted_seq_is_stale() {
        let mut w = SeqWindow::default();
        for k in 1..=REMEMBERED as u64 {
            w.record(10 * k);
        }
        // All remembered: nothing is stale yet but 0.
        assert_eq!(w.check(10), Err(SeqError::Replay));
        assert_eq!(w.check(5), Ok(()));
        w.record(10 * REMEMBERED as u64 + 10);
        // 10 was the smallest: forgotten, and the floor.
        assert_eq!(w.check(10), Err(SeqError::Stale));
        assert_eq!(w.check(5), Err(SeqError::Stale));
        assert_eq!(w.check(15), Ok(()));
        assert_eq!(w.check(20), Err(SeqError::Replay));
        // Recording an older number into a full window moves only the floor.
        w.record(15);
        assert_eq!(w.check(15), Err(SeqError::Stale));
        assert_eq!(w.check(20), Err(SeqError::Replay));
        w.reset();
        assert_eq!(w.check(1), Ok(()));
        assert_eq!(w.check(10), Ok(()));
        // A window made above a floor refuses everything at or below it.
        let w = SeqWindow::above(1_000);
        assert_eq!(w.check(1_000), Err(SeqError::Stale));
        assert_eq!(w.check(999), Err(SeqError::Stale));
        assert_eq!(w.check(1_001), Ok(()));
    }

    #[derive(Clone, Debug)]
    enum SeqOp {
        /// Check, and record if accepted and the message "verified".
        Receive(u64, bool),
        /// A record with no check before it.
        Record(u64),
        Reset,
    }

    fn seq_value() -> impl Strategy<Value = u64> {
        prop_oneof![16 => 0u64..160, 1 => any::<u64>(), 1 => Just(u64::MAX)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Against a model (accepted = the recorded set; the floor is its
        /// 33rd largest): same answers, nothing accepted twice, 0 never.
        #[test]
        fn no_sequence_is_accepted_twice(ops in proptest::collection::vec(
            prop_oneof![
                40 => (seq_value(), any::<bool>()).prop_map(|(s, v)| SeqOp::Receive(s, v)),
                10 => seq_value().prop_map(SeqOp::Record),
                // Rare, so the window often fills and its floor rises.
                1 => Just(SeqOp::Reset),
            ],
            0..400,
        )) {
            let mut w = SeqWindow::default();
            let mut accepted: BTreeSet<u64> = BTreeSet::new();
            let model = |accepted: &BTreeSet<u64>, s: u64| -> Result<(), SeqError> {
                let floor = accepted.iter().rev().nth(REMEMBERED).copied().unwrap_or(0);
                if s <= floor {
                    Err(SeqError::Stale)
                } else if accepted.contains(&s) {
                    Err(SeqError::Replay)
                } else {
                    Ok(())
                }
            };
            for op in ops {
                match op {
                    SeqOp::Receive(s, verified) => {
                        let got = w.check(s);
                        prop_assert_eq!(got, model(&accepted, s));
                        if got.is_ok() && verified {
                            prop_assert!(accepted.insert(s), "{} accepted twice", s);
                            w.record(s);
                        }
                    }
                    SeqOp::Record(s) => {
                        if model(&accepted, s).is_ok() {
                            accepted.insert(s);
                        }
                        w.record(s);
                    }
                    SeqOp::Reset => {
                        w.reset();
                        accepted.clear();
                    }
                }
                prop_assert_eq!(w.check(0), Err(SeqError::Stale));
                for &s in &accepted {
                    prop_assert!(w.check(s).is_err(), "{} accepted again", s);
                }
                if let Some(&top) = accepted.last() {
                    if top < u64::MAX {
                        prop_assert_eq!(w.check(top + 1), Ok(()));
                    }
                }
            }
        }
    }

    /// The heap is in order and holds exactly the set's nonces.
    fn check_heap(c: &NonceCache) {
        let h = c.heap.as_slice();
        for i in 1..h.len() {
            assert!(h[(i - 1) / 2].0 <= h[i].0, "heap order broken at {i}");
        }
        assert_eq!(c.nonces.len(), h.len());
        for &(_, n) in h {
            assert!(c.nonces.contains_key(&n));
        }
    }

    const SEC: u64 = 1_000_000;

    /// splitmix64: distinct nonces for distinct registrations.
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Registrations at `per_sec` for `secs` seconds, with timestamps at the
    /// latest allowed (`now + F`) for the first half and spread over
    /// `[now - F, now + F]` after; each is replayed right away, at the last
    /// moment it is fresh, and a few more times at random while fresh.
    /// Returns the most nonces remembered at once, or the first refusal of a
    /// new nonce.
    fn run_rated(cap: usize, per_sec: u64, fresh: u64, secs: u64) -> Result<usize, NonceError> {
        let tick = SEC / per_sec;
        let mut cache = NonceCache::with_capacity(cap);
        let mut regs: Vec<(u64, u64)> = Vec::new(); // (nonce, timestamp)
        let mut last_fresh: HashMap<u64, Vec<u64>> = HashMap::new(); // ts + F -> nonces
        let mut remembered = 0usize;
        let mut most = 0;
        let mut rng = 0x1234_5678u64;
        let ticks = secs * per_sec;
        for i in 0..ticks {
            let now = 3 * fresh + i * tick;
            rng = mix(rng);
            // ts = now - F + offset, offset in [0, 2F].
            let offset = if i < ticks / 2 {
                2 * fresh
            } else {
                // On the tick grid, both ends included.
                let steps = 2 * fresh / tick;
                (rng % (steps + 1)) * tick
            };
            let ts = now + offset - fresh;
            let nonce = mix(i);
            cache.insert(nonce, ts + fresh, now)?;
            regs.push((nonce, ts));
            last_fresh.entry(ts + fresh).or_default().push(nonce);
            remembered += 1;
            assert_eq!(
                cache.insert(nonce, ts + fresh, now),
                Err(NonceError::Replayed)
            );
            // Replays at the last fresh moment: |ts - now| == F exactly.
            for &n in last_fresh.get(&now).map_or(&[][..], |v| v.as_slice()) {
                assert_eq!(
                    cache.insert(n, now, now),
                    Err(NonceError::Replayed),
                    "last-moment replay"
                );
            }
            // A few random earlier registrations, replayed if still fresh.
            for _ in 0..4 {
                rng = mix(rng);
                let back = (rng % (4 * per_sec * fresh / SEC)) as usize;
                if let Some(&(n, t)) = regs.len().checked_sub(back + 1).and_then(|j| regs.get(j)) {
                    if t.abs_diff(now) <= fresh {
                        assert_eq!(cache.insert(n, t + fresh, now), Err(NonceError::Replayed));
                    }
                }
            }
            // What expired before this tick is forgotten, nothing else.
            if let Some(gone) = last_fresh.remove(&(now - tick)) {
                remembered -= gone.len();
            }
            cache.expire(now);
            assert_eq!(cache.len(), remembered, "at tick {i}");
            most = most.max(cache.len());
        }
        check_heap(&cache);
        Ok(most)
    }

    #[test]
    fn replayed_join_within_freshness_is_refused_at_rated_rate() {
        let fresh = 30 * SEC;
        let cap = nonce_capacity(100, fresh);
        assert_eq!(cap, 6_001);
        // 180 s: the cache fills (60 s at the latest timestamps), holds full,
        // then churns under spread timestamps.
        assert_eq!(
            run_rated(cap, 100, fresh, 180),
            Ok(cap),
            "never Full, and the bound is tight"
        );
    }

    #[test]
    fn one_slot_fewer_than_nonce_capacity_is_too_few() {
        let fresh = 30 * SEC;
        let cap = nonce_capacity(100, fresh) - 1;
        assert_eq!(run_rated(cap, 100, fresh, 180), Err(NonceError::Full));
    }

    #[test]
    fn full_nonce_cache_refuses_instead_of_evicting() {
        let mut c = NonceCache::with_capacity(4);
        for n in 1..=4u64 {
            assert_eq!(c.insert(n, 100 * n, 0), Ok(()));
        }
        assert_eq!(c.insert(5, 1_000, 10), Err(NonceError::Full));
        assert_eq!(c.len(), 4);
        // Every remembered nonce, oldest and newest alike, is still refused.
        for n in 1..=4u64 {
            assert_eq!(c.insert(n, 100 * n, 50), Err(NonceError::Replayed));
        }
        assert_eq!(c.insert(5, 1_000, 100), Err(NonceError::Full));
        // Nonce 1 is remembered through 100 inclusive and gone at 101.
        assert_eq!(c.insert(1, 100, 100), Err(NonceError::Replayed));
        assert_eq!(c.insert(5, 1_000, 101), Ok(()));
        for n in 2..=5u64 {
            assert_eq!(c.insert(n, 1_000, 150), Err(NonceError::Replayed));
        }
        // A nonce used again after it expired is new again (room permitting).
        c.expire(301);
        assert_eq!(c.len(), 2);
        assert_eq!(c.insert(1, 600, 301), Ok(()));
        check_heap(&c);
    }

    #[test]
    fn nonce_capacity_rounds_up_and_saturates() {
        assert_eq!(nonce_capacity(100, 30 * SEC), 6_001);
        assert_eq!(nonce_capacity(3, SEC / 2 + 1), 5);
        assert_eq!(nonce_capacity(0, 30 * SEC), 1);
        assert_eq!(nonce_capacity(u32::MAX, u64::MAX), usize::MAX);
    }

    #[derive(Clone, Debug)]
    enum NonceOp {
        Insert(u64, u64),
        Advance(u64),
        Expire,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Against a plain list: the same answers and the same count after
        /// every step; nothing unexpired is ever dropped.
        #[test]
        fn nonce_cache_matches_a_list(cap in 0usize..12, ops in proptest::collection::vec(
            prop_oneof![
                6 => (0u64..24, 0u64..60).prop_map(|(n, e)| NonceOp::Insert(n, e)),
                3 => (0u64..15).prop_map(NonceOp::Advance),
                1 => Just(NonceOp::Expire),
            ],
            0..300,
        )) {
            let mut c = NonceCache::with_capacity(cap);
            let mut model: Vec<(u64, u64)> = vec![];
            let mut now = 0u64;
            for op in ops {
                match op {
                    NonceOp::Insert(n, ahead) => {
                        // Some already expired (ahead < 5), most not.
                        let expires = (now + ahead).saturating_sub(5);
                        model.retain(|&(_, e)| e >= now);
                        let want = if model.iter().any(|&(m, _)| m == n) {
                            Err(NonceError::Replayed)
                        } else if expires < now {
                            Ok(())
                        } else if model.len() >= cap {
                            Err(NonceError::Full)
                        } else {
                            model.push((n, expires));
                            Ok(())
                        };
                        prop_assert_eq!(c.insert(n, expires, now), want);
                        prop_assert_eq!(c.len(), model.len());
                    }
                    NonceOp::Advance(d) => now += d,
                    NonceOp::Expire => {
                        c.expire(now);
                        model.retain(|&(_, e)| e >= now);
                        prop_assert_eq!(c.len(), model.len());
                    }
                }
                check_heap(&c);
                prop_assert!(c.len() <= c.capacity());
                prop_assert_eq!(c.is_empty(), model.is_empty());
            }
        }
    }
}
