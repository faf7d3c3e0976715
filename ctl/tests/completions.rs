//! `piasctl completions SHELL` prints a script that knows every subcommand.

use std::process::Command;

fn completions(shell: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_piasctl"))
        .args(["completions", shell])
        .output()
        .expect("running piasctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completion_scripts_name_every_subcommand() {
    let bash = completions("bash");
    assert!(bash.contains("complete -F _piasctl"), "{bash}");
    for sub in [
        "status", "counters", "watch", "routing", "drain", "undrain", "shutdown",
    ] {
        assert!(bash.contains(sub), "bash script lacks {sub}");
    }
    assert!(completions("zsh").starts_with("#compdef piasctl"));
    assert!(completions("fish").contains("complete -c piasctl"));
    let bad = Command::new(env!("CARGO_BIN_EXE_piasctl"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "clap refuses an unknown shell");
}
