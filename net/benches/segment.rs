//! What the NAT's full checksum recompute costs per carried segment: a
//! 1,300-byte TCP segment re-addressed by `segment_frame` (copy, headers,
//! full IPv4 and TCP checksums) against a bare 20-byte one (headers only) and
//! a plain 1,300-byte copy, on the host. The difference is what an incremental
//! checksum could save; compare it with the appliance's per-packet budget in
//! docs/benchmarks.md (TCG runs the same code some ten times slower).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pias::addr::{Ipv4, Transport};
use pias_net::dataplane::packet::{segment_frame, Addressing};
use std::hint::black_box;

fn segment(c: &mut Criterion) {
    let mut seg = vec![0u8; 1300];
    for (i, b) in seg.iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    seg[12] = 5 << 4; // data offset: 20 bytes
    let a = Addressing {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        src: Ipv4([198, 18, 1, 2]),
        dst: Ipv4([198, 18, 1, 20]),
        ident: 1,
    };
    let mut buf = vec![0u8; 1600];
    let mut g = c.benchmark_group("carried 1300-byte TCP segment");
    g.throughput(Throughput::Bytes(seg.len() as u64));
    g.bench_function("segment_frame (copy, headers, full checksums)", |b| {
        b.iter(|| {
            segment_frame(
                black_box(&mut buf),
                &a,
                Transport::Tcp,
                20000,
                80,
                black_box(&seg),
            )
        })
    });
    let bare = seg[..20].to_vec();
    g.bench_function("segment_frame, 20-byte segment (headers only)", |b| {
        b.iter(|| {
            segment_frame(
                black_box(&mut buf),
                &a,
                Transport::Tcp,
                20000,
                80,
                black_box(&bare),
            )
        })
    });
    g.bench_function("copy of 1300 bytes", |b| {
        b.iter(|| buf[54..54 + 1300].copy_from_slice(black_box(&seg)))
    });
    g.finish();
}

criterion_group!(benches, segment);
criterion_main!(benches);
