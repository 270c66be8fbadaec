//! The SSRF guard (SPEC §4): [`SsrfPolicy`] says which addresses are blocked (loopback,
//! private, link-local and metadata, CGNAT, unspecified, multicast, broadcast, documentation,
//! IPv6 unique-local) unless allow-listed; [`validate_target`] refuses what can be refused
//! before any DNS (the kickoff's 422); and [`GuardedConnector`] enforces the policy on the
//! address actually connected to: names are resolved and blocked addresses dropped before
//! connecting, literal IPs are checked before connecting, and the peer address of every new
//! connection is checked again.
//!
//! This module decides reachability only; it does not classify retries (a refusal is a dead
//! letter, decided in `retry`).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use tokio::net::TcpStream;
use url::{Host, Url};

use crate::config::{check_url_shape, ConfigError};

/// Which target addresses delivery may connect to: everything but the blocked ranges, plus
/// what the allow-list names.
///
/// ```
/// use hookstream_delivery_http::SsrfPolicy;
/// let policy = SsrfPolicy::default();
/// assert!(policy.check("127.0.0.1".parse()?).is_err());
/// assert!(policy.check("93.184.215.14".parse()?).is_ok());
/// let policy = SsrfPolicy::new(vec!["127.0.0.0/8".parse()?]);
/// assert!(policy.check("127.0.0.1".parse()?).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SsrfPolicy {
    allow: Vec<IpNet>,
}

impl SsrfPolicy {
    /// The default blocked ranges, minus what `allow` covers.
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    /// The allow-listed ranges.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allow
    }

    /// Whether `ip` may be connected to; when not, the blocked range it falls in.
    /// IPv4-mapped, NAT64 and 6to4 IPv6 addresses are judged by the IPv4 address they carry.
    pub fn check(&self, ip: IpAddr) -> Result<(), BlockedAddress> {
        if self.allow.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        match blocked_range(ip) {
            Some(range) => {
                // An allow-listed IPv4 range also allows its IPv4-mapped form.
                if let Some(v4) = embedded_v4(ip) {
                    if self.allow.iter().any(|net| net.contains(&IpAddr::V4(v4))) {
                        return Ok(());
                    }
                }
                Err(BlockedAddress { ip, range })
            }
            None => Ok(()),
        }
    }
}

/// A target address refused by the [`SsrfPolicy`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("target address {ip} is in a blocked range ({range}); allow-list it to deliver there")]
pub struct BlockedAddress {
    /// The address refused.
    pub ip: IpAddr,
    /// The range it falls in.
    pub range: BlockedRange,
}

/// The kinds of address ranges blocked by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlockedRange {
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10/8`, `172.16/12`, `192.168/16`.
    Private,
    /// `169.254/16`, `fe80::/10`.
    LinkLocal,
    /// Cloud metadata: `169.254.169.254`, `fd00:ec2::254`.
    Metadata,
    /// Carrier-grade NAT, `100.64.0.0/10`.
    SharedAddressSpace,
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `240.0.0.0/4` and `255.255.255.255`.
    ReservedOrBroadcast,
    /// `192.0.0.0/24`, `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`.
    Documentation,
    /// IPv6 unique-local, `fc00::/7`.
    UniqueLocal,
}

impl std::fmt::Display for BlockedRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::LinkLocal => "link-local",
            Self::Metadata => "cloud metadata",
            Self::SharedAddressSpace => "carrier-grade NAT",
            Self::Unspecified => "unspecified",
            Self::Multicast => "multicast",
            Self::ReservedOrBroadcast => "reserved or broadcast",
            Self::Documentation => "documentation",
            Self::UniqueLocal => "IPv6 unique-local",
        })
    }
}

fn blocked_range(ip: IpAddr) -> Option<BlockedRange> {
    match ip {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(ip) {
            Some(v4) => blocked_v4(v4),
            None => blocked_v6(v6),
        },
    }
}

fn blocked_v4(ip: Ipv4Addr) -> Option<BlockedRange> {
    let o = ip.octets();
    Some(match o {
        [169, 254, 169, 254] => BlockedRange::Metadata,
        [127, ..] => BlockedRange::Loopback,
        [10, ..] | [192, 168, ..] => BlockedRange::Private,
        [172, b, ..] if (16..32).contains(&b) => BlockedRange::Private,
        [169, 254, ..] => BlockedRange::LinkLocal,
        [100, b, ..] if (64..128).contains(&b) => BlockedRange::SharedAddressSpace,
        [0, ..] => BlockedRange::Unspecified,
        [a, ..] if (224..240).contains(&a) => BlockedRange::Multicast,
        [a, ..] if a >= 240 => BlockedRange::ReservedOrBroadcast,
        [192, 0, 0 | 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => BlockedRange::Documentation,
        _ => return None,
    })
}

fn blocked_v6(ip: Ipv6Addr) -> Option<BlockedRange> {
    let s = ip.segments();
    Some(match s {
        [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254] => BlockedRange::Metadata,
        _ if ip == Ipv6Addr::LOCALHOST => BlockedRange::Loopback,
        _ if ip == Ipv6Addr::UNSPECIFIED => BlockedRange::Unspecified,
        [a, ..] if a & 0xfe00 == 0xfc00 => BlockedRange::UniqueLocal,
        [a, ..] if a & 0xffc0 == 0xfe80 => BlockedRange::LinkLocal,
        // Deprecated site-local, fec0::/10: private in effect.
        [a, ..] if a & 0xffc0 == 0xfec0 => BlockedRange::Private,
        [a, ..] if a & 0xff00 == 0xff00 => BlockedRange::Multicast,
        [0x2001, 0x0db8, ..] => BlockedRange::Documentation,
        _ => return None,
    })
}

/// The IPv4 address an IPv6 address carries: IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`).
fn embedded_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let tail = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        // `::` and `::1` are IPv6's own unspecified and loopback, not IPv4-compatible.
        [0, 0, 0, 0, 0, 0, 0, 0 | 1] => None,
        [0, 0, 0, 0, 0, 0, hi, lo] => Some(tail(hi, lo)),
        [0x0064, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(tail(hi, lo)),
        [0x2002, hi, lo, ..] => Some(tail(hi, lo)),
        _ => None,
    }
}

/// Why a webhook target was refused before any connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// Not http(s), no host, or not a request target.
    #[error(transparent)]
    Shape(#[from] ConfigError),
    /// The host is a literal IP address in a blocked range.
    #[error(transparent)]
    Blocked(#[from] BlockedAddress),
}

/// Refuses a target that can be refused before DNS: a scheme other than http(s), a missing
/// host, or a literal IP address the policy blocks (SPEC §3: 422 at kickoff). Host names pass;
/// they are checked on the resolved address at connect time.
pub fn validate_target(url: &Url, policy: &SsrfPolicy) -> Result<(), TargetError> {
    check_url_shape(url)?;
    let ip = match url.host() {
        Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    policy.check(ip)?;
    Ok(())
}

/// A failure to resolve a webhook host.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ResolveError {
    /// Every address the name resolved to is blocked.
    #[error("every address of the target host is blocked")]
    Blocked(#[source] BlockedAddress),
    /// DNS failed.
    #[error("dns resolution failed")]
    Dns(#[source] std::io::Error),
}

/// Resolves host names and drops the addresses the policy blocks (hyper-util's resolver seam).
#[derive(Clone, Debug)]
pub(crate) struct GuardedResolver {
    policy: Arc<SsrfPolicy>,
}

impl tower::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = ResolveError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ResolveError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ResolveError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((name.as_str(), 0))
                .await
                .map_err(ResolveError::Dns)?
                .collect::<Vec<_>>();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match policy.check(a.ip()) {
                    Ok(()) => true,
                    Err(blocked) => {
                        refused.get_or_insert(blocked);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(blocked)) => Err(ResolveError::Blocked(blocked)),
                _ => Ok(allowed.into_iter()),
            }
        })
    }
}

/// hyper-util's TCP connector behind the SSRF policy: literal IPs are checked before
/// connecting, names through [`GuardedResolver`], and every new connection's peer address
/// after connecting.
#[derive(Clone, Debug)]
pub(crate) struct GuardedConnector {
    inner: HttpConnector<GuardedResolver>,
    policy: Arc<SsrfPolicy>,
}

impl GuardedConnector {
    pub(crate) fn new(policy: SsrfPolicy, connect_timeout: std::time::Duration) -> Self {
        let policy = Arc::new(policy);
        let mut inner =
            HttpConnector::new_with_resolver(GuardedResolver { policy: Arc::clone(&policy) });
        inner.enforce_http(false);
        inner.set_nodelay(true);
        inner.set_connect_timeout(Some(connect_timeout));
        Self { inner, policy }
    }
}

impl tower::Service<http::Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let policy = Arc::clone(&self.policy);
        let literal = uri
            .host()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
            .and_then(|h| h.parse::<IpAddr>().ok());
        if let Some(Err(blocked)) = literal.map(|ip| policy.check(ip)) {
            return Box::pin(async move { Err(blocked.into()) });
        }
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            let stream = connecting.await?;
            let peer = stream.inner().peer_addr()?;
            policy.check(peer.ip())?;
            Ok(stream)
        })
    }
}

/// The [`BlockedAddress`] somewhere in `error`'s source chain, if the failure was a refusal.
pub(crate) fn find_blocked<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a BlockedAddress> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(b) = e.downcast_ref::<BlockedAddress>() {
            return Some(b);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(s: &str) -> Option<BlockedRange> {
        SsrfPolicy::default().check(s.parse().unwrap()).err().map(|b| b.range)
    }

    #[test]
    fn blocks_the_spec_ranges() {
        assert_eq!(blocked("127.0.0.1"), Some(BlockedRange::Loopback));
        assert_eq!(blocked("10.0.0.1"), Some(BlockedRange::Private));
        assert_eq!(blocked("172.31.255.1"), Some(BlockedRange::Private));
        assert_eq!(blocked("192.168.1.1"), Some(BlockedRange::Private));
        assert_eq!(blocked("169.254.169.254"), Some(BlockedRange::Metadata));
        assert_eq!(blocked("169.254.1.1"), Some(BlockedRange::LinkLocal));
        assert_eq!(blocked("100.64.0.1"), Some(BlockedRange::SharedAddressSpace));
        assert_eq!(blocked("0.0.0.0"), Some(BlockedRange::Unspecified));
        assert_eq!(blocked("224.0.0.1"), Some(BlockedRange::Multicast));
        assert_eq!(blocked("255.255.255.255"), Some(BlockedRange::ReservedOrBroadcast));
        assert_eq!(blocked("::1"), Some(BlockedRange::Loopback));
        assert_eq!(blocked("::"), Some(BlockedRange::Unspecified));
        assert_eq!(blocked("fc00::1"), Some(BlockedRange::UniqueLocal));
        assert_eq!(blocked("fd00:ec2::254"), Some(BlockedRange::Metadata));
        assert_eq!(blocked("fe80::1"), Some(BlockedRange::LinkLocal));
        assert_eq!(blocked("ff02::1"), Some(BlockedRange::Multicast));
        assert_eq!(blocked("::ffff:127.0.0.1"), Some(BlockedRange::Loopback));
        assert_eq!(blocked("::ffff:169.254.169.254"), Some(BlockedRange::Metadata));
        assert_eq!(blocked("64:ff9b::a00:1"), Some(BlockedRange::Private));
        assert_eq!(blocked("2002:7f00:1::"), Some(BlockedRange::Loopback));
        assert_eq!(blocked("172.32.0.1"), None);
        assert_eq!(blocked("100.128.0.1"), None);
        assert_eq!(blocked("8.8.8.8"), None);
        assert_eq!(blocked("2606:4700::1111"), None);
    }

    #[test]
    fn allow_list_wins_also_for_mapped_addresses() {
        let policy = SsrfPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(policy.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(policy.check("::ffff:127.0.0.1".parse().unwrap()).is_ok());
        assert!(policy.check("::1".parse().unwrap()).is_err());
        assert!(policy.check("10.0.0.1".parse().unwrap()).is_err());
    }

    #[test]
    fn validate_target_refuses_literals_and_shapes() {
        let p = SsrfPolicy::default();
        let refused = |u: &str| validate_target(&Url::parse(u).unwrap(), &p).is_err();
        assert!(refused("http://127.0.0.1/"));
        assert!(refused("http://10.0.0.1:8080/x"));
        assert!(refused("http://169.254.169.254/latest/meta-data"));
        assert!(refused("http://[::1]/"));
        assert!(refused("http://[::ffff:10.0.0.1]/"));
        assert!(refused("file:///etc/passwd"));
        assert!(!refused("https://localhost/"), "names are checked at connect time");
        assert!(!refused("https://example.com/hook"));
    }

    #[test]
    fn finds_blocked_through_a_source_chain() {
        let b = BlockedAddress { ip: "10.0.0.1".parse().unwrap(), range: BlockedRange::Private };
        let wrapped = ResolveError::Blocked(b.clone());
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(wrapped);
        assert_eq!(find_blocked(boxed.as_ref()), Some(&b));
        let io = std::io::Error::other("x");
        assert!(find_blocked(&io).is_none());
    }
}
