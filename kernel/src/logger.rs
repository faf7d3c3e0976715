//! `log` backend: one line per record, stamped with uptime, on the serial
//! console (`console`: in place during the boot, then queued for the loop).

use log::{LevelFilter, Log, Metadata, Record};

struct SerialLogger;

static LOGGER: SerialLogger = SerialLogger;
static LOCK: spin::Mutex<()> = spin::Mutex::new(());

impl Log for SerialLogger {
    fn enabled(&self, m: &Metadata) -> bool {
        // virtio-drivers reports negotiation at info level; keep the boot log to
        // our own lines unless something is wrong (serial output is slow under KVM).
        let cap = if m.target().starts_with("virtio_drivers") {
            LevelFilter::Warn
        } else {
            LevelFilter::Trace
        };
        m.level() <= log::max_level() && m.level() <= cap
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let _guard = LOCK.lock();
        let us = crate::time::uptime_us();
        crate::console::line(format_args!(
            "[{:>4}.{:06}] {:<5} {}",
            us / 1_000_000,
            us % 1_000_000,
            r.level(),
            r.args()
        ));
    }

    fn flush(&self) {}
}

pub fn init(level: LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

pub fn set_level(level: pias::config::LogLevel) {
    use pias::config::LogLevel::*;
    log::set_max_level(match level {
        Error => LevelFilter::Error,
        Warn => LevelFilter::Warn,
        Info => LevelFilter::Info,
        Debug => LevelFilter::Debug,
        Trace => LevelFilter::Trace,
    });
}
