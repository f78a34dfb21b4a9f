//! Who is on the other end: the client address of a request, decided once from the TCP
//! peer and, only when that peer is a trusted reverse proxy, from the header the proxy
//! writes (`X-Forwarded-For`, or RFC 7239 `Forwarded`).
//!
//! A header is text the client can write too, so it is read from the right: each proxy
//! appends the address it received the request from, and the rightmost entry that is not
//! itself one of our proxies is the first address no proxy of ours vouches for beyond —
//! the client. Entries to the left of it are whatever the client sent and are never
//! believed. A header that cannot be read (garbled, obfuscated, `unknown`) falls back to
//! the peer rather than to a guess: the worst a broken proxy can do is make every client
//! look like the proxy, never let a client choose its own address.
//!
//! Nothing here knows HTTP; the web shell hands in the peer and the header values.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

/// Hops read from a header at most; a longer chain is garbage or an attack, and the
/// peer is used instead.
const MAX_HOPS: usize = 64;

/// An address range, `10.0.0.0/8` or `2001:db8::/32`; a bare address is a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Whether `ip` lies in the range. IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`,
    /// what a dual-stack socket reports) count as the IPv4 address they carry.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let (addr, bits) = match text.trim().split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (text.trim(), None),
        };
        let net = addr
            .parse::<IpAddr>()
            .map_err(|_| format!("`{addr}` is not an IP address"))?
            .to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => match b.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("`/{b}` is not a prefix length from 0 to {max}")),
            },
        };
        Ok(Cidr { net, bits })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.bits)
    }
}

/// Which header the trusted proxies write. Only that one is read, so a client cannot
/// slip in the other one past a proxy that passes unknown headers through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, Caddy, most load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for=proxy1`.
    Forwarded,
}

impl ForwardedHeader {
    /// The header's name as it goes over the wire (lower case).
    pub fn name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }
}

/// The client address of a request that came from `peer` carrying `values` (every
/// occurrence of the configured header, in order).
pub fn decide(peer: IpAddr, header: ForwardedHeader, values: &[&str], trusted: &[Cidr]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) || values.is_empty() {
        return peer;
    }
    let hops = match header {
        ForwardedHeader::XForwardedFor => xff_hops(values),
        ForwardedHeader::Forwarded => forwarded_hops(values),
    };
    let Some(hops) = hops.filter(|h| !h.is_empty() && h.len() <= MAX_HOPS) else {
        return peer;
    };
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = hop else {
            // A hop our own proxy could not name: nothing to its left can be believed.
            return peer;
        };
        client = *ip;
        if !is_trusted(*ip) {
            return client;
        }
    }
    // Every hop is one of ours (a request from inside): the earliest is the client.
    client
}

/// `X-Forwarded-For` entries, rightmost last; `None` for an entry that is no address.
fn xff_hops(values: &[&str]) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for value in values {
        for entry in value.split(',') {
            if hops.len() > MAX_HOPS {
                return None;
            }
            hops.push(node_address(entry));
        }
    }
    Some(hops)
}

/// The `for=` of each `Forwarded` element, rightmost last; `None` for an element
/// without a usable `for=`. `None` overall when the header does not parse.
fn forwarded_hops(values: &[&str]) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for value in values {
        for element in split_unquoted(value, ',')? {
            if hops.len() > MAX_HOPS {
                return None;
            }
            let mut found = None;
            for pair in split_unquoted(element, ';')? {
                let Some((name, v)) = pair.split_once('=') else {
                    if pair.trim().is_empty() {
                        continue;
                    }
                    return None;
                };
                if name.trim().eq_ignore_ascii_case("for") {
                    found = node_address(unquote(v.trim())?);
                }
            }
            hops.push(found);
        }
    }
    Some(hops)
}

/// Split at `sep` outside double quotes; `None` for an unterminated quote.
fn split_unquoted(text: &str, sep: char) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if quoted {
        return None;
    }
    parts.push(&text[start..]);
    Some(parts)
}

/// A token or a quoted string's content (RFC 7230 quoted-pair unescaped is not needed:
/// an address never holds a backslash, so one makes the value unusable).
fn unquote(v: &str) -> Option<&str> {
    match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"').filter(|s| !s.contains('\\')),
        None => Some(v),
    }
}

/// One node: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:4711`. `unknown` and obfuscated names (`_hidden`) are no address.
fn node_address(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    if let Some(rest) = node.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || port(after.strip_prefix(':')?)) {
            return None;
        }
        return inside.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    // `a.b.c.d:port`; a bare IPv6 address was caught above, so one colon means a port.
    let (host, p) = node.split_once(':')?;
    if !port(p) {
        return None;
    }
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A port number, or an obfuscated port (`_abc`) as RFC 7239 §6.3 allows.
fn port(p: &str) -> bool {
    p.parse::<u16>().is_ok()
        || (p.starts_with('_')
            && p.len() > 1
            && p[1..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)))
}

/// The part of an address a throttle counts by: the whole IPv4 address, and the /64 of
/// an IPv6 one, since a single subscriber is handed a whole /64 and could otherwise
/// count as 2^64 clients.
pub fn throttle_subject(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & (u128::MAX << 64);
            format!("{}/64", Ipv6Addr::from(prefix))
        }
    }
}

#[cfg(test)]
mod tests;
