//! The one outbound HTTPS fetcher, used by `did:web` resolution (and, later, agent
//! card discovery and the universal resolver).
//!
//! What it guarantees, for every fetch:
//! - `https` only, to a host name or address that passes the block list: no
//!   loopback, private, link-local, unique-local, CGNAT (100.64/10), multicast,
//!   reserved, documentation or unspecified address, no cloud metadata name, no
//!   `localhost` or name under `.local`, `.internal` or `.localhost`;
//! - the host's addresses are resolved **once**, every one is checked, and the
//!   connection is pinned to the checked addresses, so a DNS answer that changes
//!   between the check and the connection (rebinding) cannot take it elsewhere;
//! - TLS (SNI and the certificate) is verified against the **host name**, not the
//!   address (**fix**: the reference verifies against the IP, so real hosts fail);
//! - no redirects; a body cap enforced while streaming; one overall timeout.
//!
//! Two operator settings, off by default and announced loudly at start, exist for
//! tests and private deployments: extra CA roots ([`FetchSettings::extra_roots`]),
//! and loopback targets allowed ([`FetchSettings::allow_loopback`]; every other
//! blocked range stays blocked).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The URL is not an `https` URL with a host.
    #[error("not a fetchable URL: {0}")]
    InvalidUrl(String),
    /// The target is on the block list.
    #[error("refused: {0}")]
    Blocked(String),
    /// The host name does not resolve.
    #[error("cannot resolve {0}")]
    Unresolvable(String),
    /// The whole fetch took longer than its timeout.
    #[error("the upstream did not answer within {0:?}")]
    Timeout(Duration),
    /// The body is larger than the cap.
    #[error("the upstream's answer is larger than {0} bytes")]
    TooLarge(usize),
    /// The upstream answered a redirect, which is never followed.
    #[error("the upstream answered a redirect ({0}), which is not followed")]
    Redirect(u16),
    /// The upstream answered another non-success status.
    #[error("the upstream answered HTTP {0}")]
    Status(u16),
    /// The connection or TLS failed (an untrusted certificate, a certificate for
    /// another name, a refused connection).
    #[error("the upstream could not be reached securely: {0}")]
    Connect(String),
    /// The body is not JSON.
    #[error("the upstream's answer is not JSON: {0}")]
    NotJson(String),
}

impl FetchError {
    /// Whether the failure is the upstream's timing out (504) rather than failing
    /// (502) or the request being refused (422).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }

    /// Whether the request itself is refused (a bad or blocked target), not the
    /// upstream failing.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::InvalidUrl(_) | Self::Blocked(_))
    }
}

/// Looks up a host's addresses; the system resolver unless a test provides one.
pub trait Resolve: Send + Sync + std::fmt::Debug {
    /// The addresses of `host` for `port`.
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> futures_util::future::BoxFuture<'a, std::io::Result<Vec<SocketAddr>>>;
}

/// The operating system's resolver.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> futures_util::future::BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// A fixed table of names, for tests.
#[derive(Debug, Default, Clone)]
pub struct StaticResolver(pub HashMap<String, Vec<IpAddr>>);

impl Resolve for StaticResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> futures_util::future::BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        let found = self.0.get(host).map(|ips| {
            ips.iter()
                .map(|ip| SocketAddr::new(*ip, port))
                .collect::<Vec<_>>()
        });
        Box::pin(async move {
            found.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "unknown name"))
        })
    }
}

/// The fetcher's operator settings.
#[derive(Debug, Clone, Default)]
pub struct FetchSettings {
    /// CA certificates (DER) trusted besides the web PKI roots.
    pub extra_roots: Vec<Vec<u8>>,
    /// Allow loopback targets (tests); every other blocked range stays blocked.
    pub allow_loopback: bool,
}

/// The outbound HTTPS fetcher. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Fetcher {
    settings: Arc<FetchSettings>,
    resolver: Arc<dyn Resolve>,
}

impl Default for Fetcher {
    fn default() -> Self {
        Self::new(FetchSettings::default())
    }
}

/// Names refused whatever they resolve to: the cloud metadata services.
const METADATA_NAMES: [&str; 4] = [
    "metadata.google.internal",
    "metadata",
    "instance-data",
    "metadata.azure.com",
];

impl Fetcher {
    /// A fetcher with the system resolver.
    pub fn new(settings: FetchSettings) -> Self {
        Self::with_resolver(settings, Arc::new(SystemResolver))
    }

    /// A fetcher with another resolver (tests).
    pub fn with_resolver(settings: FetchSettings, resolver: Arc<dyn Resolve>) -> Self {
        Self {
            settings: Arc::new(settings),
            resolver,
        }
    }

    /// GETs `url` and parses its body as JSON, at most `max_bytes` of it, all
    /// within `timeout`.
    pub async fn get_json(
        &self,
        url: &str,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<serde_json::Value, FetchError> {
        let body = tokio::time::timeout(timeout, self.get(url, max_bytes, timeout))
            .await
            .map_err(|_| FetchError::Timeout(timeout))??;
        serde_json::from_slice(&body).map_err(|error| FetchError::NotJson(error.to_string()))
    }

    async fn get(
        &self,
        url: &str,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<Vec<u8>, FetchError> {
        let parsed = Url::parse(url).map_err(|error| FetchError::InvalidUrl(error.to_string()))?;
        if parsed.scheme() != "https" {
            return Err(FetchError::InvalidUrl(format!(
                "{url}: only https is fetched"
            )));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(FetchError::InvalidUrl(format!(
                "{url}: no credentials in URLs"
            )));
        }
        let port = parsed.port_or_known_default().unwrap_or(443);
        let addresses = match parsed.host() {
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if let Some(reason) = blocked_name(&name) {
                    return Err(FetchError::Blocked(format!("{name}: {reason}")));
                }
                let addresses = self
                    .resolver
                    .resolve(&name, port)
                    .await
                    .map_err(|_| FetchError::Unresolvable(name.clone()))?;
                if addresses.is_empty() {
                    return Err(FetchError::Unresolvable(name));
                }
                for address in &addresses {
                    if let Some(reason) =
                        blocked_address(address.ip(), self.settings.allow_loopback)
                    {
                        return Err(FetchError::Blocked(format!(
                            "{name} resolves to {}, {reason}",
                            address.ip()
                        )));
                    }
                }
                Some((name, addresses))
            }
            Some(url::Host::Ipv4(ip)) => {
                check_literal(IpAddr::V4(ip), self.settings.allow_loopback)?;
                None
            }
            Some(url::Host::Ipv6(ip)) => {
                check_literal(IpAddr::V6(ip), self.settings.allow_loopback)?;
                None
            }
            None => return Err(FetchError::InvalidUrl(format!("{url}: no host"))),
        };
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .no_proxy();
        for root in &self.settings.extra_roots {
            let certificate = reqwest::Certificate::from_der(root)
                .map_err(|error| FetchError::Connect(error.to_string()))?;
            builder = builder.add_root_certificate(certificate);
        }
        if let Some((name, addresses)) = &addresses {
            // Pinned: the connection goes to the addresses just checked, while TLS
            // still verifies the certificate against the name in the URL.
            builder = builder.resolve_to_addrs(name, addresses);
        }
        let client = builder
            .build()
            .map_err(|error| FetchError::Connect(error.to_string()))?;
        let mut response = client
            .get(parsed)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| {
                if error.is_timeout() {
                    FetchError::Timeout(timeout)
                } else {
                    FetchError::Connect(error_chain(&error))
                }
            })?;
        let status = response.status();
        if status.is_redirection() {
            return Err(FetchError::Redirect(status.as_u16()));
        }
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|length| length > max_bytes as u64)
        {
            return Err(FetchError::TooLarge(max_bytes));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| {
            if error.is_timeout() {
                FetchError::Timeout(timeout)
            } else {
                FetchError::Connect(error_chain(&error))
            }
        })? {
            if body.len() + chunk.len() > max_bytes {
                return Err(FetchError::TooLarge(max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn check_literal(ip: IpAddr, allow_loopback: bool) -> Result<(), FetchError> {
    match blocked_address(ip, allow_loopback) {
        Some(reason) => Err(FetchError::Blocked(format!("{ip}: {reason}"))),
        None => Ok(()),
    }
}

/// Why a host name is refused before it is resolved, if it is.
pub fn blocked_name(name: &str) -> Option<&'static str> {
    if METADATA_NAMES.contains(&name) {
        return Some("a cloud metadata service");
    }
    if name == "localhost" || name.ends_with(".localhost") {
        return Some("a loopback name");
    }
    if name.ends_with(".local") || name.ends_with(".internal") {
        return Some("a local-network name");
    }
    None
}

/// Why an address is refused, if it is.
pub fn blocked_address(ip: IpAddr, allow_loopback: bool) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => blocked_v4(ip, allow_loopback),
        IpAddr::V6(ip) => blocked_v6(ip, allow_loopback),
    }
}

fn blocked_v4(ip: Ipv4Addr, allow_loopback: bool) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        return (!allow_loopback).then_some("a loopback address");
    }
    if ip.is_private() {
        return Some("a private address");
    }
    if ip.is_link_local() {
        return Some("a link-local address (the cloud metadata service lives there)");
    }
    if a == 100 && (64..128).contains(&b) {
        return Some("a carrier-grade NAT address (100.64/10)");
    }
    if ip.is_multicast() {
        return Some("a multicast address");
    }
    if a == 0 || ip.is_broadcast() || a >= 240 {
        return Some("a reserved address");
    }
    if (a, b, c) == (192, 0, 0)
        || (a, b, c) == (192, 0, 2)
        || (a, b, c) == (198, 51, 100)
        || (a, b, c) == (203, 0, 113)
        || (a == 198 && (b == 18 || b == 19))
    {
        return Some("a reserved address");
    }
    None
}

fn blocked_v6(ip: Ipv6Addr, allow_loopback: bool) -> Option<&'static str> {
    if ip.is_loopback() {
        return (!allow_loopback).then_some("a loopback address");
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return blocked_v4(v4, allow_loopback);
    }
    let segments = ip.segments();
    if ip.is_unspecified() {
        return Some("a reserved address");
    }
    if segments[0] & 0xfe00 == 0xfc00 {
        return Some("a unique-local address");
    }
    if segments[0] & 0xffc0 == 0xfe80 {
        return Some("a link-local address");
    }
    if segments[0] & 0xff00 == 0xff00 {
        return Some("a multicast address");
    }
    if segments[0] == 0x2001 && segments[1] == 0x0db8 {
        return Some("a documentation address");
    }
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address: judge it.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [a, b] = segments[6].to_be_bytes();
        let [c, d] = segments[7].to_be_bytes();
        return blocked_v4(Ipv4Addr::new(a, b, c, d), false);
    }
    if segments[0] == 0x2002 {
        let [a, b] = segments[1].to_be_bytes();
        let [c, d] = segments[2].to_be_bytes();
        return blocked_v4(Ipv4Addr::new(a, b, c, d), false);
    }
    None
}

/// The CA certificates of a PEM file (`--fetch-ca-file`), as DER.
pub fn load_ca_file(path: &std::path::Path) -> anyhow::Result<Vec<Vec<u8>>> {
    use anyhow::Context as _;
    use rustls_pki_types::pem::PemObject as _;
    let roots = rustls_pki_types::CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read the CA file {}", path.display()))?
        .map(|certificate| certificate.map(|der| der.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("the CA file {} is not PEM certificates", path.display()))?;
    anyhow::ensure!(
        !roots.is_empty(),
        "the CA file {} holds no certificate",
        path.display()
    );
    Ok(roots)
}

/// The most bytes of a fetched DID document.
pub const DID_DOCUMENT_MAX_BYTES: usize = 256 * 1024;
/// How long a DID document fetch may take.
pub const DID_DOCUMENT_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_blocked_kind_of_address_is_refused_and_public_ones_pass() {
        for blocked in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "2001:db8::1",
        ] {
            let ip: IpAddr = blocked.parse().unwrap();
            assert!(blocked_address(ip, false).is_some(), "{blocked} passed");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700::1111", "100.128.0.1"] {
            let ip: IpAddr = public.parse().unwrap();
            assert_eq!(blocked_address(ip, false), None, "{public}");
        }
    }

    #[test]
    fn allowing_loopback_allows_loopback_only() {
        assert_eq!(blocked_address("127.0.0.1".parse().unwrap(), true), None);
        assert_eq!(blocked_address("::1".parse().unwrap(), true), None);
        assert!(blocked_address("10.0.0.1".parse().unwrap(), true).is_some());
        assert!(blocked_address("169.254.169.254".parse().unwrap(), true).is_some());
    }

    #[test]
    fn metadata_and_local_names_are_refused_before_resolution() {
        for name in [
            "metadata.google.internal",
            "metadata",
            "localhost",
            "api.localhost",
            "printer.local",
            "db.internal",
        ] {
            assert!(blocked_name(name).is_some(), "{name}");
        }
        assert_eq!(blocked_name("example.com"), None);
    }

    #[tokio::test]
    async fn a_name_resolving_to_a_private_address_is_refused() {
        let mut names = HashMap::new();
        names.insert(
            "sneaky.example".to_owned(),
            vec![
                "93.184.216.34".parse().unwrap(),
                "10.0.0.7".parse().unwrap(),
            ],
        );
        let fetcher =
            Fetcher::with_resolver(FetchSettings::default(), Arc::new(StaticResolver(names)));
        let error = fetcher
            .get_json(
                "https://sneaky.example/did.json",
                1024,
                Duration::from_secs(2),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&error, FetchError::Blocked(reason) if reason.contains("10.0.0.7")),
            "{error}"
        );
        for url in [
            "http://example.com/",
            "https://127.0.0.1/",
            "https://[::1]/",
            "https://169.254.169.254/latest/meta-data",
            "https://metadata.google.internal/",
            "https://user:pw@example.com/",
        ] {
            let error = fetcher
                .get_json(url, 1024, Duration::from_secs(2))
                .await
                .unwrap_err();
            assert!(error.is_refusal(), "{url}: {error}");
        }
    }
}
