//! The callgrind profile's hot spots for the report: `callgrind_annotate`'s top functions,
//! inclusive and self cost.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result};

/// A profile's shape (connections, streams, events, events/s) and its outcome.
pub type ProfileRun = ((usize, usize, u64, u64), Result<Profile, String>);

/// The top functions of a callgrind profile: (inclusive table, self table, totals line).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Profile {
    pub(super) inclusive: String,
    pub(super) exclusive: String,
    pub(super) summary: String,
}

/// Runs `callgrind_annotate` on `out` (inclusive and self cost).
pub fn annotate(out: &Path) -> Result<Profile> {
    let run = |inclusive: bool| -> Result<String> {
        let output = Command::new("callgrind_annotate")
            .arg(format!(
                "--inclusive={}",
                if inclusive { "yes" } else { "no" }
            ))
            .arg("--threshold=100")
            .arg(out)
            .output()
            .context("run callgrind_annotate")?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let inclusive = run(true)?;
    let exclusive = run(false)?;
    let summary = inclusive
        .lines()
        .find(|l| l.contains("PROGRAM TOTALS"))
        .unwrap_or("")
        .trim()
        .to_string();
    Ok(Profile {
        inclusive: top_functions(&inclusive, 30),
        exclusive: top_functions(&exclusive, 30),
        summary,
    })
}

/// The first `n` function rows of callgrind_annotate output: cost, share, function (source
/// file name), shortened.
fn top_functions(text: &str, n: usize) -> String {
    text.lines()
        .skip_while(|l| !l.contains("file:function"))
        .skip(2)
        .filter(|l| l.contains('(') && l.contains('%'))
        .take(n)
        .map(|l| {
            let l = l.trim();
            let Some((cost, rest)) = l.split_once(")  ") else {
                return l.to_string();
            };
            let rest = rest.rsplit_once(" [").map_or(rest, |(f, _)| f);
            let (file, function) = rest.split_once(':').unwrap_or(("", rest));
            let file = file.rsplit('/').next().unwrap_or(file);
            let function: String = function.chars().take(150).collect();
            format!("{cost})  {function}  ({file})")
        })
        .collect::<Vec<_>>()
        .join("\n")
}
