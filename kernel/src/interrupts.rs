//! Interrupts exist only to wake the halted CPU: an IDT whose device and timer
//! vectors just acknowledge the local APIC, exception vectors that report and
//! exit, the LAPIC one-shot timer for deadlines, and IOAPIC routing for the
//! NIC's line. All packet work stays in the polling loop.

use core::arch::{asm, global_asm};
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};
use pias::status::ClockSource;

/// LAPIC timer (deadline) vector.
pub const TIMER_VECTOR: u8 = 0x20;
/// Device (NIC) vector.
pub const DEVICE_VECTOR: u8 = 0x21;
const SPURIOUS_VECTOR: u8 = 0xff;

const LAPIC_BASE: usize = 0xfee0_0000;
const LAPIC_ID: usize = 0x20;
const LAPIC_TPR: usize = 0x80;
const LAPIC_SVR: usize = 0xf0;
const LAPIC_LVT_TIMER: usize = 0x320;
const LAPIC_TIMER_INIT: usize = 0x380;
const LAPIC_TIMER_CURRENT: usize = 0x390;
const LAPIC_TIMER_DIVIDE: usize = 0x3e0;
const LVT_MASKED: u32 = 1 << 16;

const IOAPIC_BASES: [usize; 2] = [0xfec0_0000, 0xfec1_0000];

/// Wake-ups counted by the interrupt stubs.
#[no_mangle]
static PIAS_WAKEUPS: AtomicU64 = AtomicU64::new(0);

/// Of those, the device vector's.
#[no_mangle]
static PIAS_DEVICE_WAKEUPS: AtomicU64 = AtomicU64::new(0);

static LAPIC_TICKS_PER_MS: AtomicU64 = AtomicU64::new(0);

global_asm!(
    r#"
    .section .text.pias_irq, "ax"
    .global pias_irq_device
pias_irq_device:
    lock incq PIAS_DEVICE_WAKEUPS(%rip)
    jmp pias_irq_wake

    .global pias_irq_wake
pias_irq_wake:
    push %rax
    lock incq PIAS_WAKEUPS(%rip)
    movabs $0xfee000b0, %rax
    movl $0, (%rax)
    pop %rax
    iretq

    .global pias_irq_spurious
pias_irq_spurious:
    iretq

    .macro exc_noerr n
    .global pias_exc_\n
pias_exc_\n:
    pushq $0
    pushq $\n
    jmp pias_exc_common
    .endm
    .macro exc_err n
    .global pias_exc_\n
pias_exc_\n:
    pushq $\n
    jmp pias_exc_common
    .endm

    exc_noerr 0
    exc_noerr 1
    exc_noerr 2
    exc_noerr 3
    exc_noerr 4
    exc_noerr 5
    exc_noerr 6
    exc_noerr 7
    exc_err 8
    exc_noerr 9
    exc_err 10
    exc_err 11
    exc_err 12
    exc_err 13
    exc_err 14
    exc_noerr 15
    exc_noerr 16
    exc_err 17
    exc_noerr 18
    exc_noerr 19
    exc_noerr 20
    exc_err 21
    exc_noerr 22
    exc_noerr 23
    exc_noerr 24
    exc_noerr 25
    exc_noerr 26
    exc_noerr 27
    exc_noerr 28
    exc_err 29
    exc_err 30
    exc_noerr 31

pias_exc_common:
    mov %rsp, %rdi
    and $-16, %rsp
    call pias_exception
1:  cli
    hlt
    jmp 1b

    .section .rodata.pias_exc_table, "a"
    .balign 8
    .global pias_exc_table
pias_exc_table:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad pias_exc_\n
    .endr
"#,
    options(att_syntax)
);

extern "C" {
    fn pias_irq_wake();
    fn pias_irq_device();
    fn pias_irq_spurious();
    static pias_exc_table: [u64; 32];
}

/// Called by the exception stubs with a pointer to [vector, error, rip, cs, rflags, rsp, ss].
#[no_mangle]
extern "C" fn pias_exception(frame: *const u64) -> ! {
    // SAFETY: only `pias_exc_common` calls this, with `%rdi` = its stack pointer
    // after pushing the vector and the error code (real or 0); above those lie
    // the 5 words the CPU pushes in 64-bit mode (rip, cs, rflags, rsp, ss). So 7
    // aligned, initialised u64 are readable, and nothing writes them: the stub
    // moved `%rsp` below them, and this function never returns.
    let f = unsafe { core::slice::from_raw_parts(frame, 7) };
    let cr2: u64;
    // SAFETY: reading CR2 (the last page-fault address) is allowed at CPL 0,
    // changes nothing and touches no memory or stack.
    unsafe { asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack)) };
    // Written in place, not through the logger: the fault may have come
    // while its lock, or the console queue's, was held.
    crate::console::flush();
    let _ = writeln!(
        crate::serial::Serial,
        "ERROR cpu exception {} error={:#x} rip={:#x} rsp={:#x} cr2={:#x}",
        f[0],
        f[1],
        f[2],
        f[5],
        cr2
    );
    crate::exit::exit(pias::exit::CPU_EXCEPTION)
}

#[repr(C, packed)]
struct IdtPointer {
    limit: u16,
    base: u64,
}

static mut IDT: [u64; 512] = [0; 512];

fn gate(handler: u64) -> (u64, u64) {
    let low =
        (handler & 0xffff) | (0x08 << 16) | (0x8e00u64 << 32) | ((handler >> 16) & 0xffff) << 48;
    (low, handler >> 32)
}

fn lapic_read(reg: usize) -> u32 {
    // SAFETY: `reg` is one of the LAPIC_* register offsets, so the address is
    // an aligned 32-bit xAPIC register in the page at the APIC's reset base,
    // identity-mapped uncached (above 2 GiB); a volatile read is how xAPIC
    // registers are read, and no Rust reference points there.
    unsafe { core::ptr::read_volatile((LAPIC_BASE + reg) as *const u32) }
}

fn lapic_write(reg: usize, v: u32) {
    // SAFETY: the register as in `lapic_read`. Writes change only the APIC's
    // state (TPR, SVR, timer); none makes the APIC write memory.
    unsafe { core::ptr::write_volatile((LAPIC_BASE + reg) as *mut u32, v) }
}

fn ioapic_read(base: usize, reg: u32) -> u32 {
    // SAFETY: `base` is one of IOAPIC_BASES, identity-mapped uncached. Writing
    // IOREGSEL (base) and then reading IOWIN (base + 0x10) is the IOAPIC's
    // indirect access, and no interrupt handler uses it, so the pair is not
    // split. Where no IOAPIC answers, the address is unassigned: reads give 0
    // or all-ones (which `init` skips) and writes are dropped.
    unsafe {
        core::ptr::write_volatile(base as *mut u32, reg);
        core::ptr::read_volatile((base + 0x10) as *const u32)
    }
}

fn ioapic_write(base: usize, reg: u32, v: u32) {
    // SAFETY: the indirect access as in `ioapic_read`; the writes set
    // redirection entries, which only route interrupts.
    unsafe {
        core::ptr::write_volatile(base as *mut u32, reg);
        core::ptr::write_volatile((base + 0x10) as *mut u32, v);
    }
}

/// Installs the IDT, masks the legacy PIC, enables the LAPIC and routes the
/// IOAPIC pins a virtio NIC may use (the timer: `start_timer`).
/// Returns the number of IOAPIC pins routed.
pub fn init() -> usize {
    // SAFETY: writing 0xff to the interrupt mask registers of the master and
    // slave 8259 (0x21, 0xa1) masks every legacy line; it touches no memory and
    // can only prevent interrupts.
    unsafe {
        crate::port::outb(0x21, 0xff);
        crate::port::outb(0xa1, 0xff);
    }
    // SAFETY: interrupts are still disabled (entry.S cleared IF), so no handler
    // runs and the CPU reads no gate while IDT is written; this `&mut` is the
    // only reference ever made to it, and `init` runs once. `pias_exc_table` is
    // the 32 stub addresses the global_asm above puts in .rodata. `lidt` reads
    // the 10-byte pointer on our stack (`readonly`), and from then on the CPU
    // reads IDT, a static that stays valid and is not written again.
    unsafe {
        let idt = &mut *core::ptr::addr_of_mut!(IDT);
        for v in 0..256 {
            let handler = if v < 32 {
                pias_exc_table[v]
            } else if v == usize::from(SPURIOUS_VECTOR) {
                pias_irq_spurious as *const () as u64
            } else if v == usize::from(DEVICE_VECTOR) {
                pias_irq_device as *const () as u64
            } else {
                pias_irq_wake as *const () as u64
            };
            let (lo, hi) = gate(handler);
            idt[2 * v] = lo;
            idt[2 * v + 1] = hi;
        }
        let ptr = IdtPointer {
            limit: (core::mem::size_of::<[u64; 512]>() - 1) as u16,
            base: core::ptr::addr_of!(IDT) as u64,
        };
        asm!("lidt [{}]", in(reg) &ptr, options(readonly, nostack, preserves_flags));
    }

    lapic_write(LAPIC_TPR, 0);
    lapic_write(LAPIC_SVR, 0x100 | u32::from(SPURIOUS_VECTOR));
    let apic_id = lapic_read(LAPIC_ID) >> 24;
    let mut routed = 0;
    for (i, &base) in IOAPIC_BASES.iter().enumerate() {
        let ver = ioapic_read(base, 1);
        if ver == 0 || ver == u32::MAX {
            continue;
        }
        let pins = ((ver >> 16) & 0xff) + 1;
        for pin in 0..pins.min(24) {
            // On the first IOAPIC, pins 0-4 and 8 belong to legacy devices (PIT,
            // keyboard, cascade, serial, RTC); virtio lines use 5-7 and 9-23
            // (microvm: 5 + transport, q35: PIRQ A-H = 16-23). The second
            // IOAPIC (microvm with ACPI) carries only virtio lines.
            if i == 0 && (pin < 5 || pin == 8) {
                continue;
            }
            // Edge-triggered, active high, fixed delivery to this CPU: the loop
            // acknowledges the device before halting, so each new event is an edge.
            ioapic_write(base, 0x10 + 2 * pin, u32::from(DEVICE_VECTOR));
            ioapic_write(base, 0x11 + 2 * pin, apic_id << 24);
            routed += 1;
        }
    }
    routed
}

/// Programs the LAPIC timer the loop arms before it halts: divide by 1,
/// one-shot, unmasked. Under TCG it counts QEMU's virtual clock at 1 GHz;
/// elsewhere its rate is measured against the TSC (2 ms). Call after
/// `time::finish_calibration`, which needs the timer's count to itself.
pub fn start_timer() {
    lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    lapic_write(LAPIC_TIMER_INIT, 0); // no count left over from the clock's measurement
    lapic_write(LAPIC_TIMER_DIVIDE, 0b1011); // divide by 1
    if crate::time::info().source == ClockSource::QemuLapic {
        LAPIC_TICKS_PER_MS.store(1_000_000, Ordering::Relaxed);
    } else {
        calibrate_lapic_timer();
    }
    lapic_write(LAPIC_LVT_TIMER, u32::from(TIMER_VECTOR)); // one-shot, unmasked
}

fn calibrate_lapic_timer() {
    lapic_write(LAPIC_TIMER_INIT, u32::MAX);
    crate::time::spin_us(2000);
    let elapsed = u32::MAX - lapic_read(LAPIC_TIMER_CURRENT);
    lapic_write(LAPIC_TIMER_INIT, 0);
    LAPIC_TICKS_PER_MS.store(u64::from(elapsed / 2).max(1), Ordering::Relaxed);
}

/// Arms the one-shot timer to fire after `us` microseconds (0 disarms).
pub fn arm_timer_us(us: u64) {
    let ticks = us.saturating_mul(LAPIC_TICKS_PER_MS.load(Ordering::Relaxed)) / 1000;
    lapic_write(
        LAPIC_TIMER_INIT,
        ticks.clamp(if us == 0 { 0 } else { 1 }, u64::from(u32::MAX)) as u32,
    );
}

/// Halts until the next interrupt or for at most `us` microseconds, and
/// returns with interrupts enabled; false (without halting, interrupts as
/// they were) before `start_timer`, when nothing would end the halt.
pub fn halt_us(us: u64) -> bool {
    if LAPIC_TICKS_PER_MS.load(Ordering::Relaxed) == 0 {
        return false;
    }
    disable();
    arm_timer_us(us.max(1));
    enable_and_halt();
    true
}

pub fn device_wakeups() -> u64 {
    PIAS_DEVICE_WAKEUPS.load(Ordering::Relaxed)
}

pub fn wakeups() -> u64 {
    PIAS_WAKEUPS.load(Ordering::Relaxed)
}

pub fn enable() {
    // SAFETY: `init` has installed a gate for every vector. The wake stub saves
    // the one register it uses and `iretq` restores rflags; the target disables
    // the red zone, so the frame the CPU pushes cannot clobber the interrupted
    // code's locals; exception stubs report and exit. `nomem` holds because the
    // handlers share only the atomic PIAS_WAKEUPS with Rust code.
    unsafe { asm!("sti", options(nomem, nostack)) };
}

pub fn disable() {
    // SAFETY: `cli` only clears IF on this CPU; it touches no memory or stack.
    unsafe { asm!("cli", options(nomem, nostack)) };
}

/// Enables interrupts and halts in one step (`sti` holds interrupts off for
/// one more instruction, so a wake-up between the two cannot be lost).
pub fn enable_and_halt() {
    // SAFETY: as in `enable`: every vector has a gate whose handler returns (or
    // exits). `sti` takes effect after the next instruction, so `hlt` runs with
    // interrupts enabled and the next interrupt resumes after it.
    unsafe { asm!("sti; hlt", options(nomem, nostack)) };
}
