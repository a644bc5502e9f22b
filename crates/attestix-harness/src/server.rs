//! Starting, killing and restarting a real `attestix serve` process.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The command line of the server under test; restarts reuse it, port included,
/// so clients keep their URL across crashes.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// The `attestix` binary.
    pub binary: PathBuf,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// PostgreSQL instead of SQLite.
    pub database_url: Option<String>,
    /// The fixed port.
    pub port: u16,
    /// Further `serve` flags.
    pub extra_args: Vec<String>,
}

impl ServerSpec {
    /// The server's base URL.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn command(&self, subcommand: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .args(subcommand)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env_remove("DATABASE_URL")
            .env_remove("ATTESTIX_API_KEY")
            .env_remove("FAILPOINTS");
        if let Some(url) = &self.database_url {
            command.args(["--database-url", url]);
        }
        command
    }

    /// Creates an API key with `attestix keys create`.
    pub fn create_api_key(&self, principal: &str) -> anyhow::Result<String> {
        let output = self
            .command(&["keys", "create", "--principal", principal])
            .output()
            .context("cannot run `attestix keys create`")?;
        if !output.status.success() {
            bail!(
                "`attestix keys create` failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8(output.stdout)?.trim().to_owned())
    }

    /// Starts the server and waits until it listens.
    pub fn start(&self) -> anyhow::Result<ServerProcess> {
        let mut command = self.command(&["serve"]);
        command
            .args(["--bind", &format!("127.0.0.1:{}", self.port)])
            .args(&self.extra_args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().context("cannot start `attestix serve`")?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if !line.starts_with("listening on ") {
            let _ = child.kill();
            bail!("the server did not start: {line:?}");
        }
        Ok(ServerProcess { child })
    }
}

/// A running server process.
pub struct ServerProcess {
    child: Child,
}

impl ServerProcess {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and reap the process.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait up to `grace` for a clean exit.
    pub fn stop(mut self, grace: Duration) -> anyhow::Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        bail!("the server did not stop within {grace:?}")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The `attestix` binary next to this one (both are built into one target dir).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let dir = me.parent().context("the executable has a directory")?;
    let candidate = dir.join(name);
    if candidate.exists() {
        return Ok(candidate);
    }
    bail!(
        "cannot find `{name}` next to {}; build it (cargo build --release -p attestix) or pass --server-bin",
        me.display()
    )
}

/// Resident memory and open file descriptors of a process, from /proc.
pub fn footprint(pid: u32) -> Option<(u64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss_kib * 1024, fds))
}
