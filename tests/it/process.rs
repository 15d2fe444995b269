//! Process-wide settings the binary makes for itself (src/main.rs), read back from a running
//! `captioner` through /proc.

use crate::common::exe;
use crate::exit_status::{signal, spawn_until_serving, wait_exit};
use std::time::Duration;

/// The `THP_enabled:` line of a running process's /proc status (Linux 5.0 and later), when the
/// kernel shows it.
fn thp_enabled(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(|v| v.trim().to_string())
}

/// What a served process reports, with `MIMALLOC_ALLOW_THP` set to `allow` or unset.
fn served_thp(allow: Option<&str>) -> Option<String> {
    let mut cmd = exe();
    cmd.args(["serve", "--fake-engine", "--addr", "127.0.0.1:0"]);
    match allow {
        Some(v) => cmd.env("MIMALLOC_ALLOW_THP", v),
        None => cmd.env_remove("MIMALLOC_ALLOW_THP"),
    };
    let mut server = spawn_until_serving(&mut cmd, Duration::from_secs(30));
    let thp = thp_enabled(server.child.id());
    signal(&server.child, "TERM");
    assert_eq!(
        wait_exit(&mut server.child, Duration::from_secs(20)),
        Some(0)
    );
    thp
}

#[test]
fn the_binary_runs_without_transparent_huge_pages_unless_mimalloc_is_told_otherwise() {
    // The child inherits this process's setting, so only a runner with THP allowed can tell
    // the binary's own doing apart.
    match thp_enabled(std::process::id()).as_deref() {
        Some("1") => {}
        other => {
            eprintln!("skipped: this test process's THP_enabled is {other:?}, not 1");
            return;
        }
    }
    assert_eq!(served_thp(None).as_deref(), Some("0"));
    // The user's own switch wins: the binary leaves the process as it found it.
    assert_eq!(served_thp(Some("1")).as_deref(), Some("1"));
}
