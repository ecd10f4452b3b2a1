//! Instruction counts under callgrind, which hold on a loaded machine where times do not: the
//! server's instructions per sign-in (counters zeroed after a warm-up and dumped after the
//! run, `callgrind_control`), and the bare verification's per response (this tool run again
//! on the same responses with collection only inside [`verify_one`]). The profiles stay in the
//! folder printed, for `callgrind_annotate`.

use std::path::Path;
use std::process::Command;

use nulab_pass::saml::{Connection, SpUrls, acs, outline};

/// The command that runs the server under callgrind, writing to `dir`.
pub fn wrapper(dir: &Path) -> Vec<String> {
    vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        format!("--callgrind-out-file={}", dir.join("server.out").display()),
    ]
}

/// Zeroes the counters of the callgrind-run process `pid`.
pub fn zero(pid: u32) {
    let ok = Command::new("callgrind_control")
        .args(["-z", &pid.to_string()])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "callgrind_control -z failed");
}

/// Dumps the counters of `pid` and returns the instructions since the last zeroing.
pub fn dump(pid: u32, dir: &Path) -> u64 {
    let before: Vec<_> = dumps(dir);
    let ok = Command::new("callgrind_control")
        .args(["-d", &pid.to_string()])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "callgrind_control -d failed");
    let fresh = dumps(dir)
        .into_iter()
        .find(|p| !before.contains(p))
        .expect("a new dump");
    instructions(&fresh)
}

fn dumps(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|p: &std::path::PathBuf| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("server.out."))
        })
        .collect()
}

/// The `summary:` (or `totals:`) instruction count of a callgrind output file.
pub fn instructions(file: &Path) -> u64 {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .max()
        .unwrap_or(0)
}

/// Runs this tool again under callgrind to verify the responses in `responses` (a file, one a
/// line), collecting inside [`verify_one`] only; returns the instructions per response.
pub fn bare_instructions(dir: &Path, responses: &Path, count: usize, target: &[String]) -> u64 {
    let out = dir.join("verify.out");
    let exe = std::env::current_exe().expect("exe");
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg("--toggle-collect=*verify_one*")
        .arg(exe)
        .arg("--verify-only")
        .arg(responses)
        .args(target)
        .status()
        .expect("valgrind");
    assert!(status.success(), "the verification under callgrind failed");
    instructions(&out) / count.max(1) as u64
}

/// Decodes and verifies one response as the ACS does.
#[inline(never)]
pub fn verify_one(b64: &str, connection: &Connection, sp: &SpUrls) {
    verify(b64, connection, sp).expect("valid");
}

/// Decodes and verifies one response as the ACS does: base64, the outline, every signature
/// and the conditions.
pub fn verify(b64: &str, connection: &Connection, sp: &SpUrls) -> Result<(), String> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| e.to_string())?;
    let xml = String::from_utf8(raw).map_err(|e| e.to_string())?;
    let scan = outline::scan(&xml).map_err(|e| format!("{e:?}"))?;
    acs::verify(&xml, scan, connection, sp, None, &[]).map_err(|e| format!("{e:?}"))?;
    Ok(())
}
