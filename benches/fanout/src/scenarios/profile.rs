//! The relay under callgrind while events flow, for the report's hot spots.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{Bench, TargetKind};
use crate::client::{self, Proto, Tally};

impl Bench {
    /// Runs the relay under callgrind (instrumentation switched on only while events flow) on a
    /// moderate load; returns the callgrind output file.
    pub async fn profile(&self, index: usize) -> Result<PathBuf> {
        let (c, m, events, rate) = *self.sizes.profile.get(index).context("no such profile")?;
        let out = self.work.join(format!("callgrind.{index}.out"));
        let wrapper: Vec<String> = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            "--vgdb=yes",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("--callgrind-out-file={}", out.display())])
        .collect();
        let mut t = self.start(TargetKind::Relay, "profile", &wrapper)?;
        let tally = Tally::new();
        let sub = t.subscribe(self, Proto::H2, &tally);
        let (fleet, _) = client::open(&sub, c, m, 4, Duration::from_secs(600)).await?;
        t.wait_ready((c * m) as u64).await?;
        let pid = t.measured().pid().to_string();
        callgrind_control(&["-i", "on", &pid])?;
        let mut ticks = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
        for seq in 0..events {
            ticks.tick().await;
            t.publisher.publish(&t.channel, seq).await?;
        }
        tally
            .wait_delivered((c * m) as u64 * events, Duration::from_secs(600))
            .await?;
        callgrind_control(&["-i", "off", &pid])?;
        tally.check()?;
        drop(fleet);
        let relay = t.relay.take().context("no relay")?;
        relay.child.terminate(Duration::from_secs(120))?;
        Ok(out)
    }
}

fn callgrind_control(args: &[&str]) -> Result<()> {
    let status = std::process::Command::new("callgrind_control")
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .context("run callgrind_control")?;
    if !status.success() {
        bail!("callgrind_control {args:?} failed: {status}");
    }
    Ok(())
}
