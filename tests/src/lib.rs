//! Shared helpers for the QEMU lab tests in `tests/`.

use pias_qemu::client::MgmtClient;
use pias_qemu::{build, Accel, Lab, Machine, Spec};
use std::path::PathBuf;
use std::time::Duration;

/// The accelerator tests use: TCG unless `PIAS_ACCEL` says otherwise (on these
/// machines /dev/kvm is PVM, slower than TCG; see ../shared/PLATFORM.md).
pub fn test_accel() -> Accel {
    match std::env::var("PIAS_ACCEL")
        .ok()
        .as_deref()
        .and_then(Accel::parse)
    {
        Some(a) => a,
        None => Accel::Tcg,
    }
}

pub fn kernel() -> PathBuf {
    build::kernel().expect("building the kernel")
}

/// A lab with `n` appliances of the given machine type booted from the
/// example config (readdressed per appliance), each waited for until ready.
pub fn lab_with(tag: &str, machine: Machine, n: usize) -> Lab {
    let kernel = kernel();
    let mut lab = Lab::new(tag).expect("creating the lab");
    for i in 0..n {
        let blob = pias_image::encode(&lab.config_for(i)).expect("encoding");
        lab.boot(&kernel, Spec::new(machine, test_accel(), blob))
            .expect("booting");
    }
    for i in 0..n {
        lab.appliances[i]
            .wait_for("ready:", Duration::from_secs(30))
            .expect("appliance ready");
        lab.wait_carrier(i, Duration::from_secs(5))
            .expect("tap carrier");
    }
    lab
}

pub fn mgmt(lab: &Lab, n: usize) -> MgmtClient {
    MgmtClient::new(
        lab,
        Lab::appliance_ip(n),
        pias::Config::example().ports.management,
    )
    .expect("mgmt client")
}

/// The status of appliance n; on failure, panics with its console and QEMU's stderr.
pub fn status_of(lab: &Lab, n: usize) -> pias::status::Status {
    match mgmt(lab, n).status() {
        Ok(s) => s,
        Err(e) => panic!(
            "status of appliance {n}: {e:#}\nconsole:\n{}\nqemu stderr:\n{}",
            lab.appliances[n].console(),
            lab.qemu_stderr(n)
        ),
    }
}

/// Fails (panics with the reason) unless every program the multi-POP lab
/// tests run is installed: scripts/install.sh installs them; a lab test
/// never skips for want of one.
pub fn require_lab_programs() {
    for p in [
        "ip",
        "ethtool",
        "sysctl",
        "ping",
        "dig",
        "curl",
        "dnsmasq",
        "nginx",
        "sha256sum",
        "qemu-system-x86_64",
        "bird",
        "birdc",
        "vtysh",
        "/usr/lib/frr/bgpd",
        "/usr/lib/frr/zebra",
        "/usr/lib/frr/bfdd",
    ] {
        if let Err(e) = pias_qemu::services::require(p) {
            panic!("{e:#}");
        }
    }
}

/// Waits (10 s at most) for appliance `n` to exit and checks it stopped
/// cleanly (`exit::SHUTDOWN`, status 33); on failure, shows its console.
pub fn assert_clean_exit(lab: &mut Lab, n: usize) {
    let code = lab.appliances[n]
        .wait_exit(Duration::from_secs(10))
        .expect("exit");
    assert_eq!(
        code,
        Some(pias::exit::qemu_status(pias::exit::SHUTDOWN)),
        "console:\n{}",
        lab.appliances[n].console()
    );
}

/// Records that the calling test did not exercise what it is for (the host
/// lacks something optional, such as a usable /dev/kvm): said on stderr and
/// appended to the file `PIAS_SKIP_LOG` names, which scripts/test.sh counts
/// and lists in its summary line, so a skip is never reported as a pass.
pub fn skip(reason: &str) {
    eprintln!("SKIPPED: {reason}");
    if let Ok(path) = std::env::var("PIAS_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{reason}");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_skip_is_recorded_where_the_test_script_counts_it() {
        let path = std::env::temp_dir().join(format!("pias-skip-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        // The only test in this binary: no other thread reads the variable.
        std::env::set_var("PIAS_SKIP_LOG", &path);
        super::skip("no widget here");
        super::skip("nor there");
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(text, "no widget here\nnor there\n");
    }
}
