//! Starting the servers a comparison needs, each on a fresh data directory and a
//! free port, and reading their memory use from `/proc`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Which server to drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerKind {
    /// `attestix serve` with the idempotency layer on, records in SQLite.
    Sqlite,
    /// `attestix serve` with the layer on, records in the memory store.
    Memory,
    /// `attestix serve --no-idempotency`: the layer is not installed.
    Off,
    /// The bench's own minimal axum server answering a fixed body.
    Ceiling,
    /// `attestix serve --database-url URL` with the layer on: identities and
    /// idempotency records in this PostgreSQL database (used as it is; the
    /// `postgres` command makes a fresh one).
    Postgres(String),
    /// A server already running at this base URL.
    External(String),
}

impl ServerKind {
    /// Parses `sqlite` (or `on`), `memory`, `off`, `ceiling`, a `postgres://`
    /// database URL, or an `http://` URL.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(match text {
            "sqlite" | "on" | "database" => Self::Sqlite,
            "memory" => Self::Memory,
            "off" => Self::Off,
            "ceiling" => Self::Ceiling,
            url if url.starts_with("http://") => Self::External(url.to_owned()),
            url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Self::Postgres(url.to_owned())
            }
            other => anyhow::bail!(
                "unknown server `{other}`: expected sqlite, memory, off, ceiling, a postgres:// URL or an http:// URL"
            ),
        })
    }

    /// A short label for reports.
    pub fn label(&self) -> String {
        match self {
            Self::Sqlite => "attestix (layer on, SQLite store)".into(),
            Self::Memory => "attestix (layer on, memory store)".into(),
            Self::Off => "attestix (layer off)".into(),
            Self::Ceiling => "ceiling (fixed body)".into(),
            Self::Postgres(_) => "attestix (layer on, PostgreSQL store)".into(),
            Self::External(url) => format!("external {url}"),
        }
    }
}

/// Where the executables are.
#[derive(Debug, Clone)]
pub struct Executables {
    /// The `attestix` binary.
    pub server: PathBuf,
    /// This bench's own binary (it serves the ceiling).
    pub bench: PathBuf,
}

impl Executables {
    /// `server` if given, else the `attestix` next to this executable.
    pub fn locate(server: Option<PathBuf>) -> anyhow::Result<Self> {
        let bench = std::env::current_exe().context("cannot find the bench's own executable")?;
        let server = match server {
            Some(path) => path,
            None => bench
                .parent()
                .map(|dir| dir.join("attestix"))
                .context("the bench's executable has no directory")?,
        };
        Ok(Self { server, bench })
    }
}

/// A server under test; a server this bench started is killed when dropped.
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `host:port`, for the Host header.
    pub host: String,
    /// What it is.
    pub kind: ServerKind,
    child: Option<Child>,
    _data_dir: Option<tempfile::TempDir>,
}

impl RunningServer {
    /// The process id of a server this bench started.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Starts (or, for an external URL, resolves) a server of `kind`. `extra_args`
    /// are appended to `attestix serve`.
    pub async fn start(
        kind: &ServerKind,
        executables: &Executables,
        extra_args: &[String],
    ) -> anyhow::Result<Self> {
        let (mut command, data_dir) = match kind {
            ServerKind::External(url) => return Self::external(url).await,
            ServerKind::Ceiling => {
                let mut command = Command::new(&executables.bench);
                command.args(["ceiling", "--bind", "127.0.0.1:0"]);
                (command, None)
            }
            ServerKind::Sqlite | ServerKind::Memory | ServerKind::Off | ServerKind::Postgres(_) => {
                let data_dir = tempfile::Builder::new()
                    .prefix("attestix-bench-")
                    .tempdir()
                    .context("cannot create a data directory")?;
                let mut command = Command::new(&executables.server);
                command
                    .args(["serve", "--bind", "127.0.0.1:0", "--allow-no-auth"])
                    .arg("--data-dir")
                    .arg(data_dir.path());
                match kind {
                    ServerKind::Memory => {
                        command.args(["--idempotency-store", "memory"]);
                    }
                    ServerKind::Off => {
                        command.arg("--no-idempotency");
                    }
                    ServerKind::Postgres(url) => {
                        command
                            .args(["--idempotency-store", "database"])
                            .arg("--database-url")
                            .arg(url);
                    }
                    _ => {
                        command.args(["--idempotency-store", "database"]);
                    }
                }
                command.args(extra_args);
                (command, Some(data_dir))
            }
        };
        // The server's own environment must not change what is measured.
        for variable in [
            "DATABASE_URL",
            "ATTESTIX_DATA_DIR",
            "ATTESTIX_IDEMPOTENCY_STORE",
            "ATTESTIX_API_KEY",
        ] {
            command.env_remove(variable);
        }
        let log = match &data_dir {
            Some(dir) => std::fs::File::create(dir.path().join("server.log"))?,
            None => tempfile::tempfile()?,
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", describe(&command)))?;
        let stdout = child
            .stdout
            .take()
            .context("the server's stdout is piped")?;
        let addr = tokio::time::timeout(Duration::from_secs(60), listening_address(stdout))
            .await
            .with_context(|| format!("{} did not say where it listens within 60 s", kind.label()))?
            .with_context(|| {
                let log = data_dir
                    .as_ref()
                    .map(|dir| tail(&dir.path().join("server.log")))
                    .unwrap_or_default();
                format!("{} did not start: {log}", kind.label())
            })?;
        Ok(Self {
            addr,
            host: addr.to_string(),
            kind: kind.clone(),
            child: Some(child),
            _data_dir: data_dir,
        })
    }

    async fn external(url: &str) -> anyhow::Result<Self> {
        let authority = url
            .strip_prefix("http://")
            .context("only http:// URLs")?
            .trim_end_matches('/');
        anyhow::ensure!(
            !authority.contains('/'),
            "give the server's base URL without a path: {url}"
        );
        let addr = tokio::net::lookup_host(authority)
            .await
            .with_context(|| format!("cannot resolve {authority}"))?
            .next()
            .with_context(|| format!("{authority} has no address"))?;
        Ok(Self {
            addr,
            host: authority.to_owned(),
            kind: ServerKind::External(url.to_owned()),
            child: None,
            _data_dir: None,
        })
    }
}

fn describe(command: &Command) -> String {
    format!("{:?}", command.as_std())
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Reads stdout until `listening on http://ADDR`, then keeps draining it.
async fn listening_address(stdout: tokio::process::ChildStdout) -> anyhow::Result<SocketAddr> {
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await? {
        if let Some(addr) = parse_listening_line(&line) {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok(addr);
        }
    }
    anyhow::bail!("the server exited before listening")
}

/// The address in a `listening on http://ADDR` line.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    line.trim()
        .strip_prefix("listening on http://")?
        .parse()
        .ok()
}

/// Memory figures of a process, in KiB, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessMemory {
    /// Resident set now.
    pub rss_kib: u64,
    /// Peak resident set.
    pub hwm_kib: u64,
    /// Resident anonymous memory (heap, stacks).
    pub anon_kib: u64,
    /// Resident file-backed memory (binary, mapped files).
    pub file_kib: u64,
}

impl ProcessMemory {
    /// Reads `/proc/PID/status`.
    pub fn read(pid: u32) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("cannot read /proc/{pid}/status"))?;
        Ok(Self::parse(&text))
    }

    /// Parses the text of `/proc/PID/status`.
    pub fn parse(status: &str) -> Self {
        let mut memory = Self::default();
        for line in status.lines() {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let kib = value
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            match name {
                "VmRSS" => memory.rss_kib = kib,
                "VmHWM" => memory.hwm_kib = kib,
                "RssAnon" => memory.anon_kib = kib,
                "RssFile" => memory.file_kib = kib,
                _ => {}
            }
        }
        memory
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_parse() {
        assert_eq!(ServerKind::parse("on").ok(), Some(ServerKind::Sqlite));
        assert_eq!(ServerKind::parse("memory").ok(), Some(ServerKind::Memory));
        assert_eq!(
            ServerKind::parse("http://127.0.0.1:8001").ok(),
            Some(ServerKind::External("http://127.0.0.1:8001".into()))
        );
        assert_eq!(
            ServerKind::parse("postgres://postgres@127.0.0.1:5432/db").ok(),
            Some(ServerKind::Postgres(
                "postgres://postgres@127.0.0.1:5432/db".into()
            ))
        );
        assert!(ServerKind::parse("https://example.com").is_err());
    }

    #[test]
    fn the_listening_line_gives_the_address() {
        assert_eq!(
            parse_listening_line("listening on http://127.0.0.1:40123\n"),
            Some(SocketAddr::from(([127, 0, 0, 1], 40123)))
        );
        assert_eq!(parse_listening_line("WARNING: auth off"), None);
    }

    #[test]
    fn proc_status_fields_are_read_in_kib() {
        let status = "Name:\tattestix\nVmHWM:\t   20480 kB\nVmRSS:\t   16384 kB\nRssAnon:\t    9000 kB\nRssFile:\t    7384 kB\n";
        assert_eq!(
            ProcessMemory::parse(status),
            ProcessMemory {
                rss_kib: 16384,
                hwm_kib: 20480,
                anon_kib: 9000,
                file_kib: 7384
            }
        );
    }
}
