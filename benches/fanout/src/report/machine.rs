//! The machine and versions table, the date and the load average, read from `/proc` and by
//! running the tools themselves.

use std::fmt::Write as _;
use std::process::Command;

/// The time now, for the report.
pub fn now() -> String {
    sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
}

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`), as `uptime` prints them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|e| format!("(/proc/loadavg: {e})"))
}

fn sh(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if s.is_empty() {
                s = String::from_utf8_lossy(&o.stderr).trim().to_string();
            }
            s
        })
        .unwrap_or_else(|e| format!("({program}: {e})"))
}

pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo.lines().next().unwrap_or("").to_string();
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .unwrap_or("")
        .trim_matches('"')
        .to_string();
    let mut s = String::new();
    let _ = writeln!(s, "| what | value |\n| --- | --- |");
    let _ = writeln!(
        s,
        "| CPU | {model}, **{} cores** (`nproc`) |",
        sh("nproc", &[])
    );
    let _ = writeln!(
        s,
        "| memory | {} |",
        mem.split_whitespace().skip(1).collect::<Vec<_>>().join(" ")
    );
    let _ = writeln!(s, "| OS / kernel | {os} / {} |", sh("uname", &["-r"]));
    let _ = writeln!(
        s,
        "| open-file limit | {} |",
        sh("sh", &["-c", "ulimit -n"])
    );
    let _ = writeln!(
        s,
        "| nginx | {} |",
        sh("nginx", &["-v"]).replace("nginx version: ", "")
    );
    let _ = writeln!(
        s,
        "| nchan | libnginx-mod-nchan {} |",
        sh("dpkg-query", &["-W", "-f=${Version}", "libnginx-mod-nchan"])
    );
    let _ = writeln!(
        s,
        "| OpenSSL (nginx's TLS) | {} |",
        sh("openssl", &["version"])
    );
    let _ = writeln!(s, "| rustc | {} |", sh("rustc", &["-V"]));
    let rev = sh("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = if sh("git", &["status", "--porcelain", "--", "src"]).is_empty() {
        ""
    } else {
        " (+ uncommitted changes in src/)"
    };
    let _ = writeln!(s, "| sse-relay | commit {rev}{dirty} |");
    s
}
