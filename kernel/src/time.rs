//! The monotonic clock: the TSC, with its rate from kvmclock, CPUID 0x15, or a
//! measurement against the CMOS RTC's periodic flag (which every PC and QEMU
//! machine type has, microvm included, unlike the PIT).

use crate::port::{inb, outb};
use core::arch::x86_64::{__cpuid, _rdtsc};
use core::sync::atomic::{AtomicU64, Ordering};
use pias::status::{ClockInfo, ClockSource};

static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);
static TSC_KHZ: AtomicU64 = AtomicU64::new(0);
static SOURCE: AtomicU64 = AtomicU64::new(0);

pub fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` exists on every x86_64 CPU and only reads the time-stamp
    // counter into registers (CR4.TSD, which could forbid it, limits only CPL 3).
    unsafe { _rdtsc() }
}

/// Records the boot TSC; call first thing so uptime counts from entry.
pub fn mark_boot() {
    TSC_AT_BOOT.store(rdtsc(), Ordering::Relaxed);
}

/// Microseconds since `mark_boot` (0 until the rate is known).
pub fn uptime_us() -> u64 {
    uptime_at(rdtsc())
}

fn uptime_at(tsc: u64) -> u64 {
    let khz = TSC_KHZ.load(Ordering::Relaxed);
    if khz == 0 {
        return 0;
    }
    let ticks = tsc.wrapping_sub(TSC_AT_BOOT.load(Ordering::Relaxed));
    UPTIME_BASE_US.load(Ordering::Relaxed) + (u128::from(ticks) * 1000 / u128::from(khz)) as u64
}

pub fn tsc_khz() -> u64 {
    TSC_KHZ.load(Ordering::Relaxed)
}

pub fn info() -> ClockInfo {
    let source = match SOURCE.load(Ordering::Relaxed) {
        1 => ClockSource::Kvmclock,
        2 => ClockSource::Cpuid,
        4 => ClockSource::QemuLapic,
        _ => ClockSource::RtcCalibrated,
    };
    ClockInfo {
        source,
        tsc_khz: tsc_khz(),
    }
}

/// Finds the TSC rate. Returns the source used.
pub fn init() -> ClockSource {
    let (khz, source) = if let Some(k) = kvmclock_khz() {
        (k, ClockSource::Kvmclock)
    } else if let Some(k) = cpuid_khz() {
        (k, ClockSource::Cpuid)
    } else if let Some(k) = qemu_lapic_khz() {
        (k, ClockSource::QemuLapic)
    } else {
        (rtc_calibrated_khz(), ClockSource::RtcCalibrated)
    };
    SOURCE.store(
        match source {
            ClockSource::Kvmclock => 1,
            ClockSource::Cpuid => 2,
            ClockSource::RtcCalibrated => 3,
            ClockSource::QemuLapic => 4,
        },
        Ordering::Relaxed,
    );
    TSC_KHZ.store(khz.max(1), Ordering::Relaxed);
    source
}

/// Busy-waits `us` microseconds (boot-time calibration only).
pub fn spin_us(us: u64) {
    let khz = tsc_khz().max(1);
    let end = rdtsc() + us * khz / 1000;
    while rdtsc() < end {
        core::hint::spin_loop();
    }
}

fn cpuid(leaf: u32) -> (u32, u32, u32, u32) {
    let r = __cpuid(leaf);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// The pvclock record kvmclock fills in (struct pvclock_vcpu_time_info).
#[repr(C, align(64))]
struct PvclockTimeInfo {
    version: u32,
    pad0: u32,
    tsc_timestamp: u64,
    system_time: u64,
    tsc_to_system_mul: u32,
    tsc_shift: i8,
    flags: u8,
    pad: [u8; 2],
}

static mut PVCLOCK: PvclockTimeInfo = PvclockTimeInfo {
    version: 0,
    pad0: 0,
    tsc_timestamp: 0,
    system_time: 0,
    tsc_to_system_mul: 0,
    tsc_shift: 0,
    flags: 0,
    pad: [0; 2],
};

const MSR_KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;

fn kvmclock_khz() -> Option<u64> {
    let (max, b, c, d) = cpuid(0x4000_0000);
    let kvm = (b, c, d) == (0x4b4d_564b, 0x564b_4d56, 0x4d); // "KVMKVMKVM\0\0\0"
    if !kvm || max < 0x4000_0001 {
        return None;
    }
    let (features, ..) = cpuid(0x4000_0001);
    if features & (1 << 3) == 0 {
        return None; // no KVM_FEATURE_CLOCKSOURCE2
    }
    let addr = core::ptr::addr_of_mut!(PVCLOCK) as u64;
    // SAFETY: KVM advertised KVM_FEATURE_CLOCKSOURCE2, so the MSR exists. Its
    // value is PVCLOCK's address plus the enable bit: identity-mapped, so
    // also the physical address, of a static (valid for ever) whose 64-byte
    // alignment keeps the 32-byte record within one page, as KVM requires.
    // From then on the hypervisor may write the record at any time, so it is
    // read only through raw pointers with volatile reads, and no reference to
    // PVCLOCK is ever made. Both ways out of this loop write 0 to the MSR
    // (here on timeout, below otherwise), after which KVM stops writing.
    let (mul, shift) = unsafe {
        wrmsr(MSR_KVM_SYSTEM_TIME_NEW, addr | 1);
        let p = core::ptr::addr_of!(PVCLOCK);
        let mut tries = 0;
        loop {
            let v1 = core::ptr::read_volatile(core::ptr::addr_of!((*p).version));
            let mul = core::ptr::read_volatile(core::ptr::addr_of!((*p).tsc_to_system_mul));
            let shift = core::ptr::read_volatile(core::ptr::addr_of!((*p).tsc_shift));
            let v2 = core::ptr::read_volatile(core::ptr::addr_of!((*p).version));
            if v1 == v2 && v1 & 1 == 0 && mul != 0 {
                break (mul, shift);
            }
            tries += 1;
            if tries > 1000 {
                wrmsr(MSR_KVM_SYSTEM_TIME_NEW, 0);
                return None;
            }
        }
    };
    // SAFETY: writing 0 to the (present) MSR turns kvmclock off: KVM stops
    // writing PVCLOCK.
    unsafe { wrmsr(MSR_KVM_SYSTEM_TIME_NEW, 0) };
    // ns = ((tsc << shift) * mul) >> 32  =>  tsc_hz = 1e9 * 2^32 / mul, shifted back.
    let mut hz = (1_000_000_000u128 << 32) / u128::from(mul);
    if shift >= 0 {
        hz >>= shift as u32;
    } else {
        hz <<= (-shift) as u32;
    }
    Some((hz / 1000) as u64)
}

/// Whether the hypervisor is QEMU's TCG (CPUID 0x40000000 = "TCGTCGTCGTCG").
fn qemu_tcg() -> bool {
    let (_, b, c, d) = cpuid(0x4000_0000);
    let (_, _, ecx, _) = cpuid(1);
    ecx & (1 << 31) != 0
        && b.to_le_bytes() == *b"TCGT"
        && c.to_le_bytes() == *b"CGTC"
        && d.to_le_bytes() == *b"GTCG"
}

const LAPIC_BASE: usize = 0xfee0_0000;
const LAPIC_LVT_TIMER: usize = 0x320;
const LAPIC_TIMER_INIT: usize = 0x380;
const LAPIC_TIMER_CURRENT: usize = 0x390;
const LAPIC_TIMER_DIVIDE: usize = 0x3e0;
/// The provisional rate's reference span: 200 µs of QEMU's virtual clock
/// (within 1 % with a sample's bracket of a few µs). It times only the
/// boot's log lines; `finish_calibration` replaces it.
const LAPIC_FIRST_SPAN_TICKS: u32 = 200_000;
/// The shortest span the final rate is measured over: 10 ms. The boot's own
/// work (config, tables: 20+ ms under TCG) usually covers it, so the boot
/// spends no time waiting on the measurement.
const LAPIC_FINAL_SPAN_TICKS: u32 = 10_000_000;
/// Reads of a count kept to pick the tightest (see `lapic_sample`).
const LAPIC_SAMPLES: usize = 16;

/// The start of the measurement `init` begins under TCG and
/// `finish_calibration` ends: the LAPIC count and the TSC at it (0: none).
static LAPIC_START_COUNT: AtomicU64 = AtomicU64::new(0);
static LAPIC_START_TSC: AtomicU64 = AtomicU64::new(0);
/// Uptime at the TSC in `TSC_AT_BOOT` (moved there when the rate changes,
/// so uptime stays continuous).
static UPTIME_BASE_US: AtomicU64 = AtomicU64::new(0);

fn lapic(reg: usize) -> *mut u32 {
    (LAPIC_BASE + reg) as *mut u32
}

fn lapic_current() -> u32 {
    // SAFETY: the timer's current count is an aligned 32-bit xAPIC register,
    // identity-mapped uncached; reading it has no side effect.
    unsafe { core::ptr::read_volatile(lapic(LAPIC_TIMER_CURRENT)) }
}

/// One reading of the LAPIC timer's count and the TSC at that moment: the
/// midpoint of the TSC read just before and just after it, from the read
/// with the shortest such bracket of `LAPIC_SAMPLES` (a read that a host
/// preemption or a slow exit stretched is not used).
fn lapic_sample() -> (u32, u64) {
    let mut best = (0, 0, u64::MAX);
    for _ in 0..LAPIC_SAMPLES {
        let before = rdtsc();
        let count = lapic_current();
        let after = rdtsc();
        // A TSC read lower the second time says nothing: skip it.
        let Some(width) = after.checked_sub(before) else {
            continue;
        };
        if width < best.2 {
            best = (count, before + width / 2, width);
        }
    }
    (best.0, best.1)
}

/// Waits (bounded) until the count has run `span` ticks from `start`, then
/// returns the TSC's rate in kHz against it; None if the count never got
/// there or had stopped (one-shot: it stops at 0, ~4.3 s after it started).
fn lapic_rate_since(start: (u32, u64), span: u32) -> Option<u64> {
    for _ in 0..(1u32 << 26) {
        if start.0.wrapping_sub(lapic_current()) >= span {
            break;
        }
    }
    let (count, tsc) = lapic_sample();
    let ns = u64::from(start.0.wrapping_sub(count));
    if count == 0 || count > start.0 || ns < u64::from(span) {
        return None;
    }
    Some(tsc.wrapping_sub(start.1) * 1_000_000 / ns)
}

/// Under QEMU's TCG the local APIC timer counts QEMU's virtual clock at 1 GHz
/// by definition (APIC_BUS_CYCLE_NS = 1), and its current count is computed
/// from that clock at each read. Unlike a flag raised by a QEMU timer, which a
/// busy host delays and merges, it cannot lose ticks: measure the TSC against
/// it. Returns a provisional rate from 200 µs and leaves the count running for
/// `finish_calibration`, which measures over the whole boot.
fn qemu_lapic_khz() -> Option<u64> {
    if !qemu_tcg() {
        return None;
    }
    // SAFETY: the xAPIC registers at LAPIC_BASE + LAPIC_* are aligned 32-bit
    // registers, identity-mapped uncached, and accessed volatile. The timer's
    // LVT entry is masked before the count starts, so counting raises no
    // interrupt (interrupts are disabled anyway). `finish_calibration` stops
    // the count (initial count 0) before `interrupts::start_timer` programs
    // the timer for real.
    unsafe {
        core::ptr::write_volatile(lapic(LAPIC_TIMER_DIVIDE), 0b1011);
        core::ptr::write_volatile(lapic(LAPIC_LVT_TIMER), 1 << 16);
        core::ptr::write_volatile(lapic(LAPIC_TIMER_INIT), u32::MAX);
    }
    let start = lapic_sample();
    let khz = lapic_rate_since(start, LAPIC_FIRST_SPAN_TICKS);
    if khz.is_some() {
        LAPIC_START_COUNT.store(u64::from(start.0), Ordering::Relaxed);
        LAPIC_START_TSC.store(start.1, Ordering::Relaxed);
    } else {
        stop_lapic_count();
    }
    khz
}

fn stop_lapic_count() {
    // SAFETY: as in `qemu_lapic_khz`; an initial count of 0 stops the timer.
    unsafe { core::ptr::write_volatile(lapic(LAPIC_TIMER_INIT), 0) };
}

/// Ends the measurement `init` began under TCG: the TSC's rate over the
/// whole boot so far (at least 10 ms), which replaces the provisional one
/// without a jump in uptime; stops the LAPIC count. Call before
/// `interrupts::start_timer`. Returns the span measured over (ms), or None
/// where there was nothing to finish (another clock source).
pub fn finish_calibration() -> Option<u64> {
    let start_count = LAPIC_START_COUNT.swap(0, Ordering::Relaxed);
    if start_count == 0 {
        return None;
    }
    let start = (start_count as u32, LAPIC_START_TSC.load(Ordering::Relaxed));
    let mut khz = lapic_rate_since(start, LAPIC_FINAL_SPAN_TICKS);
    let mut span_ms = u64::from(start.0.wrapping_sub(lapic_current())) / 1_000_000;
    if khz.is_none() {
        // The boot outlasted the count (~4.3 s): measure 10 ms afresh.
        // SAFETY: as in `qemu_lapic_khz`: the LVT entry is still masked.
        unsafe { core::ptr::write_volatile(lapic(LAPIC_TIMER_INIT), u32::MAX) };
        khz = lapic_rate_since(lapic_sample(), LAPIC_FINAL_SPAN_TICKS);
        span_ms = u64::from(LAPIC_FINAL_SPAN_TICKS / 1_000_000);
    }
    stop_lapic_count();
    let Some(khz) = khz else {
        log::warn!("clock: the LAPIC count did not run; keeping the provisional rate");
        return None;
    };
    // Uptime continues from where the provisional rate had it.
    let now_tsc = rdtsc();
    let now_us = uptime_at(now_tsc);
    TSC_AT_BOOT.store(now_tsc, Ordering::Relaxed);
    UPTIME_BASE_US.store(now_us, Ordering::Relaxed);
    TSC_KHZ.store(khz.max(1), Ordering::Relaxed);
    Some(span_ms)
}

fn cpuid_khz() -> Option<u64> {
    let (max, ..) = cpuid(0);
    if max < 0x15 {
        return None;
    }
    let (den, num, crystal_hz, _) = cpuid(0x15);
    if den == 0 || num == 0 || crystal_hz == 0 {
        return None;
    }
    Some(u64::from(crystal_hz) * u64::from(num) / u64::from(den) / 1000)
}

/// # Safety
/// The caller must know the MSR and the effect of the value.
pub unsafe fn wrmsr(msr: u32, v: u64) {
    // SAFETY: the operands are `wrmsr`'s (ecx = index, edx:eax = value) and it
    // uses no stack or flags. It is not `nomem` on purpose: an MSR write can
    // make the CPU or hypervisor access memory (kvmclock). That the MSR exists
    // and what the value does is the caller's to vouch for (`# Safety`).
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32,
            options(nostack, preserves_flags))
    };
}

const CMOS_INDEX: u16 = 0x70;
const CMOS_DATA: u16 = 0x71;
const NMI_OFF: u8 = 0x80;
const RTC_A: u8 = 0x0a;
const RTC_B: u8 = 0x0b;
const RTC_C: u8 = 0x0c;
/// Periodic rate 6: 1024 Hz with the standard 32.768 kHz divider (DV = 010).
const RATE_1024HZ: u8 = 0x26;
const PERIODIC_HZ: u64 = 1024;
/// Periodic ticks measured: ~31 ms.
const CALIBRATION_TICKS: u64 = 32;

fn cmos_read(reg: u8) -> u8 {
    // SAFETY: 0x70/0x71 are the CMOS/RTC index and data ports; selecting a
    // register and reading it touches no memory (reading C clears the RTC's
    // flags, as the callers intend). Bit 7 of the index keeps NMI masked. Only
    // boot-time code on the one CPU, with interrupts disabled, uses CMOS, so
    // the index/data pair is not split.
    unsafe {
        outb(CMOS_INDEX, NMI_OFF | reg);
        inb(CMOS_DATA)
    }
}

fn cmos_write(reg: u8, v: u8) {
    // SAFETY: the port pair as in `cmos_read`. Callers write only RTC registers
    // A (rate) and B (periodic flag), then restore both; the RTC's line (IOAPIC
    // pin 8) is never routed, so the periodic flag raises no interrupt.
    unsafe {
        outb(CMOS_INDEX, NMI_OFF | reg);
        outb(CMOS_DATA, v);
    }
}

/// Waits for the next periodic flag (reading C clears it). Bounded: gives up
/// after ~2^26 polls so a machine without an RTC cannot hang the boot.
fn wait_periodic_flag() -> bool {
    for _ in 0..(1u32 << 22) {
        if cmos_read(RTC_C) & 0x40 != 0 {
            return true;
        }
        // Pause between reads: each CMOS access takes QEMU's global lock, and
        // polling flat out starves the thread that fires the RTC's timer.
        for _ in 0..64 {
            core::hint::spin_loop();
        }
    }
    false
}

/// Measures the TSC against the RTC's 1024 Hz periodic flag. The flag's ticks
/// lie on a fixed grid, but a busy host may make QEMU skip some (lost-tick
/// policy "discard"), so the periods elapsed are not simply the flags seen:
/// the median interval between flags (one period, robust to a minority of
/// skipped or late ticks) tells how many periods the whole span covers.
fn rtc_calibrated_khz() -> u64 {
    let old_a = cmos_read(RTC_A);
    let old_b = cmos_read(RTC_B);
    cmos_write(RTC_A, RATE_1024HZ);
    cmos_write(RTC_B, old_b | 0x40); // periodic interrupt enable (the line stays masked)
    let _ = cmos_read(RTC_C);
    let mut stamps = [0u64; CALIBRATION_TICKS as usize + 1];
    let mut ok = wait_periodic_flag();
    for s in stamps.iter_mut() {
        ok &= wait_periodic_flag();
        *s = rdtsc();
    }
    cmos_write(RTC_B, old_b & !0x40);
    cmos_write(RTC_A, old_a);
    let _ = cmos_read(RTC_C);
    let khz = if ok { khz_from_stamps(&stamps) } else { 0 };
    if khz == 0 {
        log::warn!("clock: RTC did not tick; assuming a 1 GHz TSC");
        return 1_000_000;
    }
    khz
}

fn khz_from_stamps(stamps: &[u64; CALIBRATION_TICKS as usize + 1]) -> u64 {
    let mut intervals = [0u64; CALIBRATION_TICKS as usize];
    for (i, w) in stamps.windows(2).enumerate() {
        intervals[i] = w[1].saturating_sub(w[0]);
    }
    intervals.sort_unstable();
    let period = intervals[intervals.len() / 2].max(1);
    let total = stamps[stamps.len() - 1].saturating_sub(stamps[0]);
    let periods = ((total + period / 2) / period).max(1);
    total * PERIODIC_HZ / periods / 1000
}

/// The wall clock at boot: the RTC's date and time (UTC, as QEMU's default
/// `-rtc base=utc` gives it) in µs since the Unix epoch, minus the uptime at
/// the moment it was read. None if the RTC gives no sensible date.
pub fn read_unix_boot_us() -> Option<u64> {
    // Wait (bounded) until no update is in progress, then read twice until
    // two reads agree, so a second boundary cannot tear the fields.
    let mut last = None;
    for _ in 0..8 {
        for _ in 0..100_000 {
            if cmos_read(RTC_A) & 0x80 == 0 {
                break;
            }
        }
        let now = read_rtc_fields();
        if last == Some(now) {
            let at = uptime_us();
            let secs = now.unix_seconds()?;
            return Some((secs * 1_000_000).saturating_sub(at));
        }
        last = Some(now);
    }
    None
}

fn read_rtc_fields() -> pias::time::DateTime {
    let b = cmos_read(RTC_B);
    let binary = b & 0x04 != 0;
    let h24 = b & 0x02 != 0;
    let dec = |v: u8| {
        if binary {
            v
        } else {
            (v & 0x0f) + (v >> 4) * 10
        }
    };
    let raw_hour = cmos_read(0x04);
    let pm = raw_hour & 0x80 != 0;
    let mut hour = dec(raw_hour & 0x7f);
    if !h24 {
        hour %= 12;
        if pm {
            hour += 12;
        }
    }
    let century = dec(cmos_read(0x32));
    let year = dec(cmos_read(0x09));
    let century = if (19..=30).contains(&century) {
        century
    } else {
        20
    };
    pias::time::DateTime {
        year: u16::from(century) * 100 + u16::from(year),
        month: dec(cmos_read(0x08)),
        day: dec(cmos_read(0x07)),
        hour,
        minute: dec(cmos_read(0x02)),
        second: dec(cmos_read(0x00)),
    }
}
