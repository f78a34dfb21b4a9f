//! The client address rules: which header entries are believed, and that nothing a
//! client writes can make Usher panic or pick an address no trusted proxy vouched for.

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn cidrs(list: &[&str]) -> Vec<Cidr> {
    list.iter().map(|c| c.parse().unwrap()).collect()
}

const PROXY: &str = "10.0.0.2";

fn xff(values: &[&str]) -> IpAddr {
    decide(
        ip(PROXY),
        ForwardedHeader::XForwardedFor,
        values,
        &cidrs(&["10.0.0.0/8"]),
    )
}

fn fwd(values: &[&str]) -> IpAddr {
    decide(
        ip(PROXY),
        ForwardedHeader::Forwarded,
        values,
        &cidrs(&["10.0.0.0/8"]),
    )
}

#[test]
fn ranges_contain_what_their_prefix_says() {
    let c: Cidr = "10.1.0.0/16".parse().unwrap();
    assert!(c.contains(ip("10.1.200.3")));
    assert!(!c.contains(ip("10.2.0.1")));
    assert!(
        c.contains(ip("::ffff:10.1.0.9")),
        "IPv4-mapped counts as IPv4"
    );
    let v6: Cidr = "2001:db8::/32".parse().unwrap();
    assert!(v6.contains(ip("2001:db8:ffff::1")));
    assert!(!v6.contains(ip("2001:db9::1")));
    assert!(!v6.contains(ip("10.1.0.1")));
    let one: Cidr = "192.0.2.7".parse().unwrap();
    assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
    let all: Cidr = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains(ip("203.0.113.1")));
    for bad in [
        "10.0.0.0/33",
        "nonsense",
        "10.0.0.0/",
        "::/129",
        "10.0.0.0/-1",
    ] {
        assert!(bad.parse::<Cidr>().is_err(), "{bad} accepted");
    }
}

#[test]
fn an_untrusted_peer_is_the_client_whatever_it_claims() {
    let got = decide(
        ip("198.51.100.4"),
        ForwardedHeader::XForwardedFor,
        &["203.0.113.9"],
        &cidrs(&["10.0.0.0/8"]),
    );
    assert_eq!(got, ip("198.51.100.4"));
    let nobody_trusted = decide(
        ip(PROXY),
        ForwardedHeader::XForwardedFor,
        &["203.0.113.9"],
        &[],
    );
    assert_eq!(nobody_trusted, ip(PROXY));
}

#[test]
fn x_forwarded_for_gives_the_rightmost_address_that_is_not_our_proxy() {
    assert_eq!(xff(&["203.0.113.9"]), ip("203.0.113.9"));
    assert_eq!(xff(&["203.0.113.9, 10.0.0.7"]), ip("203.0.113.9"));
    // Two header lines are one list, in order.
    assert_eq!(xff(&["203.0.113.9", "10.0.0.7"]), ip("203.0.113.9"));
    assert_eq!(xff(&[" 203.0.113.9:4711 "]), ip("203.0.113.9"));
}

#[test]
fn spoofed_leftmost_entries_are_never_believed() {
    // The client sent `X-Forwarded-For: 1.2.3.4`; our proxy appended the real address.
    assert_eq!(xff(&["1.2.3.4, 203.0.113.9"]), ip("203.0.113.9"));
    assert_eq!(
        xff(&["10.9.9.9, 1.2.3.4, 203.0.113.9, 10.0.0.7"]),
        ip("203.0.113.9"),
        "a trusted-looking address to the left of the client is the client's word too"
    );
    assert_eq!(fwd(&["for=1.2.3.4, for=203.0.113.9"]), ip("203.0.113.9"));
}

#[test]
fn ipv6_hops_are_read_bare_bracketed_and_with_ports() {
    assert_eq!(xff(&["2001:db8::1"]), ip("2001:db8::1"));
    assert_eq!(xff(&["[2001:db8::1]"]), ip("2001:db8::1"));
    assert_eq!(xff(&["[2001:db8::1]:443"]), ip("2001:db8::1"));
    assert_eq!(
        fwd(&[r#"for="[2001:db8:cafe::17]:4711""#]),
        ip("2001:db8:cafe::17")
    );
    assert_eq!(
        fwd(&[r#"for="[2001:db8:cafe::17]""#]),
        ip("2001:db8:cafe::17")
    );
    assert_eq!(xff(&["::ffff:203.0.113.9"]), ip("203.0.113.9"));
}

#[test]
fn forwarded_reads_for_among_other_parameters_quoted_or_not() {
    assert_eq!(
        fwd(&["for=192.0.2.60;proto=http;by=203.0.113.43"]),
        ip("192.0.2.60")
    );
    assert_eq!(fwd(&[r#"For="192.0.2.60:8080""#]), ip("192.0.2.60"));
    assert_eq!(
        fwd(&[r#"proto=https;for="192.0.2.60", for=10.0.0.7;by="[2001:db8::9]""#]),
        ip("192.0.2.60")
    );
    // A quoted comma does not split elements.
    assert_eq!(
        fwd(&[r#"for=192.0.2.60;host="a,b", for=10.0.0.7"#]),
        ip("192.0.2.60")
    );
}

#[test]
fn a_chain_of_only_our_proxies_names_its_earliest_hop() {
    assert_eq!(xff(&["10.0.0.5, 10.0.0.7"]), ip("10.0.0.5"));
}

#[test]
fn garbled_headers_fall_back_to_the_peer() {
    for bad in [
        "",
        "not an address",
        "203.0.113.9, unknown",
        "203.0.113.9, _hidden",
        "203.0.113.9:99999",
        "[2001:db8::1",
        "[2001:db8::1]x",
        "1.2.3.4, ,",
        "300.1.1.1",
    ] {
        assert_eq!(xff(&[bad]), ip(PROXY), "{bad:?}");
    }
    for bad in [
        "for=\"192.0.2.60",
        "for",
        "for=unknown",
        "for=\"_gazonk\"",
        "by=10.0.0.1",
        "for=\"19\\2.0.2.60\"",
        "for=192.0.2.60;;garbage",
    ] {
        assert_eq!(fwd(&[bad]), ip(PROXY), "{bad:?}");
    }
    let long = vec!["203.0.113.9"; 100].join(",");
    assert_eq!(xff(&[&long]), ip(PROXY), "too many hops");
    // Arbitrary bytes-as-text never panic.
    for junk in ["\u{0}", "[]:", "]:[", "::::", "\"\"", "for=\"\"", "=,=;="] {
        let _ = xff(&[junk]);
        let _ = fwd(&[junk]);
    }
}

#[test]
fn an_ipv6_client_is_throttled_by_its_64() {
    assert_eq!(throttle_subject(ip("203.0.113.9")), "203.0.113.9");
    assert_eq!(
        throttle_subject(ip("2001:db8:1:2:aaaa::1")),
        throttle_subject(ip("2001:db8:1:2:bbbb::9"))
    );
    assert_ne!(
        throttle_subject(ip("2001:db8:1:2::1")),
        throttle_subject(ip("2001:db8:1:3::1"))
    );
    assert_eq!(throttle_subject(ip("::ffff:203.0.113.9")), "203.0.113.9");
}
