//! The torture messages of RFC 4475 and RFC 5118 (bit-exact files in
//! tests/torture/, see SOURCE.md there), each with the outcome its RFC
//! expects of a parser; and parse → print → parse stability for every message
//! that parses. What a proxy then does with the semantic cases (416, 420, 483,
//! …) is tested against the running server in the sip-proxy tests.

use std::path::PathBuf;

use bytes::Bytes;
use pbx_sip_message::{Contact, HeaderName, Limits, Message, Method, ParseError, Uri};

fn load(file: &str) -> Bytes {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/torture")
        .join(file);
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // RFC 5118's own archive uses bare LF; the files here are its CRLF wire
    // form (SOURCE.md). Read them in archive form so that bodies match the
    // RFC's Content-Length values.
    if file.starts_with("rfc5118/") {
        let text = String::from_utf8(data).expect("rfc5118 files are text");
        return Bytes::from(text.replace("\r\n", "\n"));
    }
    Bytes::from(data)
}

fn parse(file: &str) -> Result<Message, ParseError> {
    Message::parse_datagram(load(file), &Limits::default())
}

/// The status a server answers an unparsable request with (None: dropped).
fn answered(file: &str) -> Option<u16> {
    let raw = load(file);
    let err =
        Message::parse_datagram(raw.clone(), &Limits::default()).expect_err("should be refused");
    Message::error_response(&raw, &err, &Limits::default()).map(|_| err.status().0)
}

fn round_trip(file: &str) {
    let first = parse(file).unwrap_or_else(|e| panic!("{file}: {e}"));
    let printed = first.to_bytes();
    let second = Message::parse_datagram(printed.clone(), &Limits::default())
        .unwrap_or_else(|e| panic!("{file} reparse: {e}"));
    assert_eq!(first.start, second.start, "{file}: start line");
    // Printing always states Content-Length (a message may arrive without it).
    let without_length = |m: &Message| {
        m.headers()
            .iter()
            .filter(|h| h.name != HeaderName::ContentLength)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        without_length(&first),
        without_length(&second),
        "{file}: headers"
    );
    assert_eq!(first.body, second.body, "{file}: body");
    assert_eq!(printed, second.to_bytes(), "{file}: print is stable");
}

const VALID: &[&str] = &[
    // RFC 4475 §3.1.1 valid messages.
    "rfc4475/wsinv.dat",
    "rfc4475/intmeth.dat",
    "rfc4475/esc01.dat",
    "rfc4475/escnull.dat",
    "rfc4475/esc02.dat",
    "rfc4475/lwsdisp.dat",
    "rfc4475/longreq.dat",
    "rfc4475/dblreq.dat",
    "rfc4475/semiuri.dat",
    "rfc4475/transports.dat",
    "rfc4475/mpart01.dat",
    "rfc4475/unreason.dat",
    "rfc4475/noreason.dat",
    // §3.1.2.12: the Date header is not interpreted, so a bad one is ignored.
    "rfc4475/baddate.dat",
    // §3.2, §3.3, §3.4: well-formed; what to do with them is the server's business.
    "rfc4475/badbranch.dat",
    "rfc4475/unkscm.dat",
    "rfc4475/novelsc.dat",
    "rfc4475/unksm2.dat",
    "rfc4475/bext01.dat",
    "rfc4475/invut.dat",
    "rfc4475/regaut01.dat",
    "rfc4475/bcast.dat",
    "rfc4475/zeromf.dat",
    "rfc4475/cparam01.dat",
    "rfc4475/cparam02.dat",
    "rfc4475/regescrt.dat",
    "rfc4475/sdp01.dat",
    "rfc4475/inv2543.dat",
    // RFC 5118.
    "rfc5118/ipv6-good.dat",
    "rfc5118/port-ambiguous.dat",
    "rfc5118/port-unambiguous.dat",
    "rfc5118/via-received-param-with-delim.dat",
    "rfc5118/via-received-param-no-delim.dat",
    "rfc5118/mult-ip-in-header.dat",
    "rfc5118/ipv4-mapped-ipv6.dat",
    "rfc5118/ipv6-bug-abnf-3-colons.dat",
    "rfc5118/ipv6-correct-abnf-2-colons.dat",
];

#[test]
fn valid_messages_parse_and_print_stably() {
    for file in VALID {
        round_trip(file);
    }
}

#[test]
fn invalid_requests_are_answered_with_the_rfc_status() {
    for (file, status) in [
        ("rfc4475/badinv01.dat", 400),
        ("rfc4475/clerr.dat", 400),
        ("rfc4475/ncl.dat", 400),
        ("rfc4475/scalar02.dat", 400),
        ("rfc4475/quotbal.dat", 400),
        ("rfc4475/ltgtruri.dat", 400),
        ("rfc4475/lwsruri.dat", 400),
        ("rfc4475/lwsstart.dat", 400),
        ("rfc4475/trws.dat", 400),
        ("rfc4475/escruri.dat", 400),
        ("rfc4475/badaspec.dat", 400),
        ("rfc4475/baddn.dat", 400),
        ("rfc4475/badvers.dat", 505),
        ("rfc4475/mismatch01.dat", 400),
        // 501 is preferred, 400 acceptable (§3.1.2.18).
        ("rfc4475/mismatch02.dat", 400),
        ("rfc4475/multi01.dat", 400),
        ("rfc4475/mcl01.dat", 400),
        ("rfc5118/ipv6-bad.dat", 400),
    ] {
        let got = answered(file);
        // Some are so broken that not even a response can be built; those are
        // dropped, which the RFC also allows ("must not break").
        assert!(
            got == Some(status) || got.is_none(),
            "{file}: answered {got:?}, RFC expects {status}"
        );
    }
}

#[test]
fn contact_without_angle_brackets_around_uri_headers_is_refused() {
    // §3.1.2.13: the message parses (Contact is read when a registrar needs it),
    // and reading the Contact fails, which the registrar answers with 400.
    let m = parse("rfc4475/regbadct.dat").expect("headers parse");
    let err = m.contacts().expect_err("Contact is malformed");
    assert_eq!(err.status().0, 400);
}

#[test]
fn insufficient_headers_are_refused() {
    // §3.3.1: no Call-ID, From or To. A 400 needs them, so it is dropped.
    assert!(matches!(
        parse("rfc4475/insuf.dat"),
        Err(ParseError::Missing(_))
    ));
    assert!(
        parse("rfc4475/test.dat").is_err(),
        "the archive's unreferenced test.dat"
    );
}

#[test]
fn invalid_responses_are_dropped() {
    for file in ["rfc4475/scalarlg.dat", "rfc4475/bigcode.dat"] {
        let raw = load(file);
        match Message::parse_datagram(raw.clone(), &Limits::default()) {
            Err(e) => assert!(
                Message::error_response(&raw, &e, &Limits::default()).is_none(),
                "{file}: never answer a response"
            ),
            Ok(m) => panic!("{file} parsed as {:?}", m.start),
        }
    }
}

#[test]
fn rfc5118_sdp_examples_with_wrong_content_length() {
    // Errata: these two declare a Content-Length larger than their body even in
    // the RFC's own form, so our UDP rule (shorter than Content-Length → 400)
    // applies; with the length corrected they parse.
    for file in ["rfc5118/ipv6-in-sdp.dat", "rfc5118/mult-ip-in-sdp.dat"] {
        assert_eq!(parse(file).unwrap_err(), ParseError::Truncated, "{file}");
        let raw = load(file);
        let split = raw
            .windows(2)
            .position(|w| w == b"\n\n")
            .expect("header end")
            + 2;
        let body_len = raw.len() - split;
        let text = String::from_utf8(raw.to_vec()).expect("text");
        let declared = text
            .lines()
            .find(|l| l.starts_with("Content-Length"))
            .expect("CL")
            .to_owned();
        let fixed = text.replacen(&declared, &format!("Content-Length: {body_len}"), 1);
        let m = Message::parse_datagram(Bytes::from(fixed), &Limits::default())
            .expect("parses when corrected");
        assert_eq!(m.body.len(), body_len);
    }
}

#[test]
fn details_the_rfcs_call_out() {
    // §3.1.1.1: odd whitespace, folding, compact names; unknown headers kept.
    let m = parse("rfc4475/wsinv.dat").expect("wsinv");
    assert_eq!(m.method(), Some(&Method::Invite));
    assert!(m
        .headers()
        .iter()
        .any(|h| matches!(&h.name, HeaderName::Other(n) if n == "NewFangledHeader")));
    // §3.1.1.4: %00 does not shorten the user part; two contacts.
    let m = parse("rfc4475/escnull.dat").expect("escnull");
    assert_eq!(m.contacts().expect("contacts").len(), 2);
    // §3.1.1.5: an escaped method name is a different (unknown) method; two Contacts, not three.
    let m = parse("rfc4475/esc02.dat").expect("esc02");
    assert!(matches!(m.method(), Some(Method::Extension(name)) if name == "RE%47IST%45R"));
    assert_eq!(m.contacts().expect("contacts").len(), 2);
    // §3.1.1.8: the second request in the datagram is ignored.
    let m = parse("rfc4475/dblreq.dat").expect("dblreq");
    assert_eq!(m.method(), Some(&Method::Register));
    assert!(m.body.is_empty());
    // §3.1.1.9: the user part keeps its semicolon parameter.
    let m = parse("rfc4475/semiuri.dat").expect("semiuri");
    let user = m
        .request_line()
        .and_then(|r| r.uri.as_sip())
        .and_then(|u| u.user_unescaped());
    assert_eq!(user.as_deref(), Some("user;par=u@example.net"));
    // §3.1.1.10: unknown transports in Via are fine.
    let m = parse("rfc4475/transports.dat").expect("transports");
    assert!(m.vias().expect("vias").len() >= 3);
    // §3.1.1.11: the binary body is framed by Content-Length.
    let m = parse("rfc4475/mpart01.dat").expect("mpart01");
    let declared: usize = m
        .value_text(&HeaderName::ContentLength)
        .and_then(|v| v.parse().ok())
        .expect("CL");
    assert_eq!(m.body.len(), declared);
    assert!(m.body.contains(&0));
    // §3.1.1.13: an empty reason phrase.
    assert_eq!(
        parse("rfc4475/noreason.dat").expect("noreason").status(),
        Some(100)
    );
    // §3.3.2: an unknown Request-URI scheme parses (the server answers 416).
    let m = parse("rfc4475/unkscm.dat").expect("unkscm");
    assert!(matches!(
        m.request_line().map(|r| &r.uri),
        Some(Uri::Other { .. })
    ));
    // §3.3.12/13: contact-param vs URI parameter.
    let m = parse("rfc4475/cparam01.dat").expect("cparam01");
    let Ok(contacts) = m.contacts() else {
        panic!("contacts")
    };
    let Some(Contact::Addr(a)) = contacts.first() else {
        panic!("contact")
    };
    assert!(a.params.has("unknownparam"));
    let m = parse("rfc4475/cparam02.dat").expect("cparam02");
    let Ok(contacts) = m.contacts() else {
        panic!("contacts")
    };
    let Some(Contact::Addr(a)) = contacts.first() else {
        panic!("contact")
    };
    assert!(a
        .uri
        .as_sip()
        .is_some_and(|u| u.param("unknownparam").is_some()));
    // RFC 5118 §4.3: ":5070" is part of the address, not a port.
    let m = parse("rfc5118/port-ambiguous.dat").expect("ambiguous");
    let uri = m
        .request_line()
        .and_then(|r| r.uri.as_sip())
        .expect("sip uri");
    assert_eq!(uri.port, None);
    // RFC 5118 §4.10: the three-colon form is tolerated.
    let m = parse("rfc5118/ipv6-bug-abnf-3-colons.dat").expect("3 colons");
    assert!(m
        .request_line()
        .and_then(|r| r.uri.as_sip())
        .is_some_and(|u| u.host.ip().is_some()));
    // RFC 5118 §4.5: received with and without brackets.
    for file in [
        "rfc5118/via-received-param-with-delim.dat",
        "rfc5118/via-received-param-no-delim.dat",
    ] {
        let m = parse(file).expect(file);
        assert!(
            m.top_via().received().is_some_and(|ip| ip.is_ipv6()),
            "{file}"
        );
    }
}
