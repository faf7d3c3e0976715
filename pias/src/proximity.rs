//! Proximity by Vivaldi network coordinates (Dabek et al., SIGCOMM 2004): each
//! proxy keeps one 2-D + height coordinate, refined from RTT probes to random
//! peers, and predicts the RTT to any proxy whose coordinate it has seen as the
//! distance between the two. Memory is O(1) per peer (16 bytes), probes are
//! O(1) per interval per proxy, so it scales to 20,000 proxies; docs/protocol.md
//! explains the choice over brute-force all-pairs pinging.

use crate::wire::Coord;

/// Vivaldi's tuning constants (the paper's c_c and c_e).
const CC: f32 = 0.25;
const CE: f32 = 0.25;
const MIN_HEIGHT: f32 = 0.1;
/// A new node trusts its (origin) coordinate not at all.
pub const INITIAL_ERROR: f32 = 1.0;

/// The coordinate a proxy starts with (and falls back to if an update ever
/// produced a non-finite one): the origin, the minimum height, and error
/// `INITIAL_ERROR`, so measurements to better-placed peers move it most.
pub fn fresh() -> Coord {
    Coord {
        x: 0.0,
        y: 0.0,
        h: MIN_HEIGHT,
        err: INITIAL_ERROR,
    }
}

/// Predicted RTT in ms between two coordinates.
pub fn distance(a: &Coord, b: &Coord) -> f32 {
    let (dx, dy) = (a.x - b.x, a.y - b.y);
    libm::sqrtf(dx * dx + dy * dy) + a.h + b.h
}

fn finite(c: &Coord) -> bool {
    c.x.is_finite() && c.y.is_finite() && c.h.is_finite() && c.err.is_finite()
}

/// Moves `me` after measuring `rtt_ms` to a node at `remote`. `jitter` picks a
/// direction when the two coordinates coincide (deterministic per caller).
/// Ignores unusable input (non-finite values, non-positive RTT).
pub fn update(me: &mut Coord, remote: &Coord, rtt_ms: f32, jitter: u64) {
    if !(rtt_ms > 0.0 && rtt_ms.is_finite() && finite(remote) && finite(me)) {
        return;
    }
    let remote_err = remote.err.clamp(0.01, 10.0);
    let my_err = me.err.clamp(0.01, 10.0);
    let w = my_err / (my_err + remote_err);
    let dist = distance(me, remote);
    let rel = (dist - rtt_ms).abs() / rtt_ms;
    me.err = (rel * CE * w + my_err * (1.0 - CE * w)).clamp(0.01, 10.0);
    let force = CC * w * (rtt_ms - dist);
    let (mut dx, mut dy) = (me.x - remote.x, me.y - remote.y);
    let planar = libm::sqrtf(dx * dx + dy * dy);
    if planar < 1e-6 {
        let angle = (jitter % 360) as f32 * (core::f32::consts::PI / 180.0);
        dx = libm::cosf(angle);
        dy = libm::sinf(angle);
    } else {
        dx /= planar;
        dy /= planar;
    }
    let norm = (planar + me.h + remote.h).max(1e-6);
    let hx = (me.h + remote.h) / norm;
    let scale = if planar < 1e-6 { 1.0 } else { planar / norm };
    me.x += force * dx * scale;
    me.y += force * dy * scale;
    me.h = (me.h + force * hx).max(MIN_HEIGHT);
    if !finite(me) {
        *me = fresh();
    }
    // Keep within what the wire accepts (a coordinate of 1,000 s is no RTT).
    let m = crate::wire::MAX_COORD;
    me.x = me.x.clamp(-m, m);
    me.y = me.y.clamp(-m, m);
    me.h = me.h.clamp(MIN_HEIGHT, m);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nodes on a line with RTT = |i - j| * 10 ms + 2 ms converge to small error.
    #[test]
    fn converges_on_a_simple_metric() {
        let n = 12;
        let rtt = |i: usize, j: usize| (i as f32 - j as f32).abs() * 10.0 + 2.0;
        let mut c = vec![fresh(); n];
        let mut seed = 1u64;
        for round in 0..4000 {
            let i = round % n;
            seed = crate::ring::mix64(seed);
            let j = (seed as usize) % n;
            if i == j {
                continue;
            }
            let remote = c[j];
            update(&mut c[i], &remote, rtt(i, j), seed);
        }
        let mut total = 0.0;
        let mut pairs = 0.0;
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    total += (distance(&c[i], &c[j]) - rtt(i, j)).abs() / rtt(i, j);
                    pairs += 1.0;
                }
            }
        }
        let mean = total / pairs;
        assert!(mean < 0.15, "mean relative error {mean}");
    }

    #[test]
    fn garbage_input_is_ignored() {
        let mut me = fresh();
        let bad = Coord {
            x: f32::NAN,
            y: 0.0,
            h: 1.0,
            err: 0.5,
        };
        update(&mut me, &bad, 10.0, 1);
        update(&mut me, &fresh(), -1.0, 1);
        update(&mut me, &fresh(), f32::INFINITY, 1);
        assert_eq!(me, fresh());
    }
}
