//! What the benchmarks say of the machine they ran on: its CPU and QEMU.

use std::process::Command;

/// The host CPU's model name (`/proc/cpuinfo`), or "unknown CPU".
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "unknown CPU".into())
}

/// `qemu-system-x86_64 --version`'s first line.
pub fn qemu_version() -> String {
    Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "QEMU (version unknown)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_is_the_first_model_name_in_proc_cpuinfo() {
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap();
        let first = info
            .lines()
            .find(|l| l.starts_with("model name"))
            .map(|l| l.split_once(':').unwrap().1.trim().to_string());
        match first {
            Some(m) if !m.is_empty() => assert_eq!(cpu_model(), m),
            _ => assert_eq!(cpu_model(), "unknown CPU"),
        }
        assert!(!cpu_model().contains("model name"));
    }
}
