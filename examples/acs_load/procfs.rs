//! What the load tool reads from `/proc`: CPU time of a process (and of a process tree, for a
//! PostgreSQL postmaster and its backends), of the calling thread, and peak resident memory.

use std::process::Command;

/// CPU ticks (user + system) of a process, from `/proc/<pid>/stat`.
pub fn cpu_ticks(pid: u32) -> u64 {
    stat_ticks(pid, false)
}

/// [`cpu_ticks`], and with `reaped` those of its children that ended and were waited for.
fn stat_ticks(pid: u32, reaped: bool) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let own = get(11) + get(12);
    if reaped { own + get(13) + get(14) } else { own }
}

/// CPU ticks of `pid` and its children (a postmaster and its backends): those running, and
/// those that ended during the run (a closed connection's backend), whose time the postmaster's
/// own counts once it has waited for them.
pub fn tree_ticks(pid: u32) -> u64 {
    let mut total = stat_ticks(pid, true);
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            if rest.split_whitespace().nth(1) == Some(&pid.to_string()) {
                total += cpu_ticks(child);
            }
        }
    }
    total
}

pub fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Peak resident memory of `pid` in MiB (`VmHWM`).
pub fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU time of the calling thread, from `/proc/thread-self/stat`, in seconds.
pub fn thread_cpu(tps: f64) -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (get(11) + get(12)) / tps
}
