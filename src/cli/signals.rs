//! What the CLI's signal handlers share: which signals the process was started ignoring.

use std::ffi::c_int;

/// Whether `signal` is ignored (`SIG_IGN`), from the `SigIgn` mask of `/proc/self/status`: reading the
/// disposition directly needs `sigaction`, which is unsafe. Where that file is missing, not ignored. A
/// handler for an ignored signal would make the process answer what it was told to ignore (`nohup`, a
/// background job of a script).
pub fn ignored(signal: c_int) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return false };
    let mask = status.lines().find_map(|line| line.strip_prefix("SigIgn:"));
    let mask = mask.and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok()).unwrap_or(0);
    u32::try_from(signal - 1).is_ok_and(|bit| bit < 64 && mask & (1 << bit) != 0)
}
