//! Which process owns a job and whether it still runs: the pid and host, plus the process's
//! start identity (the boot id and the process's start time), so that neither a reboot nor
//! the reuse of a pid by another program keeps a dead job `processing`.

use std::sync::OnceLock;

/// This machine's host name, as recorded on jobs.
pub fn this_host() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// What identifies process `pid` for real on this machine, `<boot id>:<start time in clock
/// ticks since boot>` (Linux); `None` where that cannot be read (other systems, or the
/// process is gone).
#[cfg(target_os = "linux")]
pub fn identity_of(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let start = start_time_from_stat(&stat)?;
    Some(format!("{}:{start}", boot_id()?))
}

#[cfg(not(target_os = "linux"))]
pub fn identity_of(_pid: u32) -> Option<String> {
    None
}

/// This process's identity (computed once).
pub fn own_identity() -> Option<String> {
    static OWN: OnceLock<Option<String>> = OnceLock::new();
    OWN.get_or_init(|| identity_of(std::process::id())).clone()
}

#[cfg(target_os = "linux")]
fn boot_id() -> Option<String> {
    static BOOT: OnceLock<Option<String>> = OnceLock::new();
    BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    })
    .clone()
}

/// Field 22 of `/proc/<pid>/stat` (`starttime`). The second field, the command name in
/// parentheses, may itself hold spaces and parentheses: fields are counted after the last `)`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn start_time_from_stat(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name come field 3 (state) onwards: starttime is the 20th of those.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process recorded as (`pid`, `identity`) on this host still runs. With an
/// identity, a live pid must also have that identity (a reboot or a reused pid does not);
/// without one (jobs from older versions, or systems where it cannot be read), a live pid is
/// trusted.
pub fn owner_alive(pid: i64, identity: Option<&str>) -> bool {
    if !pid_alive(pid) {
        return false;
    }
    match (identity, u32::try_from(pid).ok().and_then(identity_of)) {
        (Some(recorded), Some(now)) => recorded == now,
        _ => true,
    }
}

/// Whether a process with this pid exists on this host (`kill(pid, 0)`; only ESRCH means gone).
#[cfg(unix)]
pub fn pid_alive(pid: i64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists; nothing is delivered.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Without a portable liveness check, never declare a process dead.
#[cfg(not(unix))]
pub fn pid_alive(_pid: i64) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_read_after_the_command_name() {
        let stat = "4242 (we ird) (name) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654 1000 50";
        assert_eq!(start_time_from_stat(stat), Some(987654));
        assert_eq!(start_time_from_stat("garbage"), None);
        assert_eq!(start_time_from_stat("1 (x) S 1"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn own_identity_is_stable_and_differs_from_another_process() {
        let me = own_identity().expect("/proc is readable");
        assert_eq!(identity_of(std::process::id()), Some(me.clone()));
        assert!(owner_alive(i64::from(std::process::id()), Some(&me)));
        // The same live pid with another start time (a reused pid) or another boot is dead.
        let (boot, start) = me.split_once(':').unwrap();
        let reused = format!("{boot}:{}", start.parse::<u64>().unwrap() + 1);
        assert!(!owner_alive(i64::from(std::process::id()), Some(&reused)));
        let rebooted = format!("00000000-0000-0000-0000-000000000000:{start}");
        assert!(!owner_alive(i64::from(std::process::id()), Some(&rebooted)));
        // No identity recorded: the live pid is trusted.
        assert!(owner_alive(i64::from(std::process::id()), None));
        // Start times count clock ticks (10 ms): let one pass so that the child cannot share
        // this process's tick.
        std::thread::sleep(std::time::Duration::from_millis(30));
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let other = identity_of(child.id()).unwrap();
        assert_ne!(other, me);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!owner_alive(i64::from(child.id()), Some(&other)));
    }
}
