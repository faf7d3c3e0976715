//! The PIAS appliance: boot, config, clock, interrupts, virtio-net, then the
//! one polling loop (`netloop`). Boot-time failures print one line on the
//! serial console and exit through QEMU's debug-exit with a distinct status.
#![no_std]
#![no_main]

extern crate alloc;

mod arena;
mod bootinfo;
mod config;
mod console;
mod exit;
mod fwcfg;
mod interrupts;
mod logger;
mod netloop;
mod pci;
mod phys;
mod port;
mod serial;
mod time;
mod virtio;

use core::fmt::Write;

use log::{error, info, LevelFilter};

/// The crate version and the git revision built from, as on the console
/// and in the status.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+", env!("PIAS_GIT_REV"));

#[no_mangle]
pub extern "C" fn kernel_main(eax: u32, ebx: u32) -> ! {
    time::mark_boot();
    serial::Serial::init();
    console::line(format_args!("pias: starting, version {VERSION}"));
    logger::init(LevelFilter::Info);

    let mut boot = match bootinfo::read(eax, ebx) {
        Ok(b) => b,
        Err(e) => {
            error!("boot: {e}");
            exit::exit(pias::exit::BAD_BOOT_INFO)
        }
    };
    if boot.ram.is_empty() {
        if let Some((sel, size)) = fwcfg::find("etc/e820") {
            let mut raw = [0u8; 20 * 32];
            let n = size.min(raw.len());
            fwcfg::read(sel, &mut raw[..n]);
            bootinfo::ram_from_e820(&mut boot, &raw[..n]);
        }
    }

    let clock = time::init();

    // The arena first: the config blob is read into it and the decoded
    // config's proxy list lives in it. It needs only the memory map and the
    // boot modules (a blob given as a module is left out of it).
    let arena_bytes = arena::init(&boot);
    let load_start = time::uptime_us();
    let (cfg, source, blob_bytes) = match config::load(&boot) {
        Ok(c) => c,
        Err(e) => {
            error!("config: {e}");
            exit::exit(e.exit_code())
        }
    };
    logger::set_level(cfg.log_level);
    info!(
        "config: {} bytes, {} proxies, read and checked in {} us",
        blob_bytes,
        cfg.deployment.proxies.len(),
        time::uptime_us().saturating_sub(load_start)
    );

    let pins = interrupts::init();
    info!(
        "boot: {:?}, clock {:?} {} kHz, config from {:?}, arena {} KiB, {} irq pins",
        boot.protocol,
        clock,
        time::tsc_khz(),
        source,
        arena_bytes / 1024,
        pins
    );

    if cfg.interfaces.len() > 1 {
        error!("config: config field {}", too_many_interfaces());
        exit::exit(pias::blob::BlobError::Invalid(too_many_interfaces()).exit_code())
    }

    let nic = match virtio::VirtioNic::probe() {
        Ok(n) => n,
        Err(e @ virtio::ProbeError::OutOfMemory(_)) => {
            error!("memory: {e}");
            exit::exit(pias::exit::OUT_OF_MEMORY)
        }
        Err(e) => {
            error!("net: {e}");
            exit::exit(pias::exit::NO_NIC)
        }
    };
    netloop::run(cfg, nic)
}

fn too_many_interfaces() -> pias::config::ConfigError {
    let mut field = heapless::String::new();
    let _ = field.push_str("interfaces");
    pias::config::ConfigError {
        field,
        reason: "this build drives one interface",
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    interrupts::disable();
    // The lines queued before it, then the panic itself, written in place.
    console::flush();
    // The tables reserve their room at boot through `Vec` and `Box`, which
    // on stable Rust can only panic when the arena is out of room: that is
    // this config's capacities against too little RAM, said as such.
    if let Some(bytes) = allocation_failure(info) {
        let (used, size) = arena::try_fill().unwrap_or_default();
        let us = time::uptime_us();
        let _ = writeln!(
            serial::Serial,
            "[{:>4}.{:06}] ERROR memory: the arena ({} KiB, {} KiB used) has no room for {bytes} more bytes: this config's capacities need more memory (-m)",
            us / 1_000_000,
            us % 1_000_000,
            size / 1024,
            used / 1024
        );
        exit::exit(pias::exit::OUT_OF_MEMORY)
    }
    let _ = writeln!(serial::Serial, "PANIC: {info}");
    exit::exit(pias::exit::PANIC)
}

/// The size asked for, if `info` is the allocator's "memory allocation of N
/// bytes failed" (`alloc::alloc::handle_alloc_error`'s panic on no_std).
fn allocation_failure(info: &core::panic::PanicInfo) -> Option<usize> {
    let mut text: heapless::String<96> = heapless::String::new();
    write!(text, "{}", info.message()).ok()?;
    text.strip_prefix("memory allocation of ")?
        .strip_suffix(" bytes failed")?
        .parse()
        .ok()
}
