//! Calls to and from the public network, as decisions: what a phone dialled
//! (read by its customer's numbering plan), which trunks may carry it and in
//! what order, how the request is dressed for a carrier (its number format,
//! the caller's number as P-Asserted-Identity, privacy); and for calls a
//! carrier delivers, which customer's number they are for and where that
//! number sends them now (business hours in the customer's time zone).
//! The proxy does the sending.

use std::collections::VecDeque;
use std::net::SocketAddr;

use pbx_sip_message::{Header, HeaderName, Host, Message, SipUri, Uri};
use pbx_store::numbering::{self, Class, Destination, NumberError};
use pbx_store::numbers::Destination as NumberDestination;
use pbx_store::trunks::{Transport, Trunk};
use pbx_store::{Millis, TrunkId};

use crate::directory::{Carriers, Tenant};
use crate::transport::Protocol;
use pbx_store::directory::RoutedNumber;

/// One trunk to try for a call.
#[derive(Debug, Clone)]
pub struct Hop {
    pub trunk: TrunkId,
    pub max_channels: Option<i64>,
    pub addr: SocketAddr,
    pub protocol: Protocol,
    /// The Request-URI: the number as the carrier wants it, at the carrier.
    pub uri: Uri,
    /// The carrier's host, for the caller's identity.
    host: String,
    /// The trunk's user name and secret, answering a carrier that challenges calls.
    pub credentials: Option<(String, String)>,
    format: numbering::NumberFormat,
    country: String,
}

/// A call leaving through trunks: what was dialled, who calls, and the
/// trunks left to try (failover order).
#[derive(Debug)]
pub struct CarrierLeg {
    /// What was dialled (or a forward's target as configured).
    pub dialled: String,
    pub destination: Destination,
    /// The caller's number (E.164 digits), if the customer has one.
    pub caller_id: Option<String>,
    pub hops: VecDeque<Hop>,
    /// The trunk tried now.
    pub current: Option<Hop>,
    /// Whether the current trunk's challenge was answered already.
    pub challenge_answered: bool,
}

/// The user part of a Request-URI: a `sip:` user or a `tel:` number.
pub fn dialled_user(req: &Message) -> Option<String> {
    match req.request_line().map(|r| &r.uri) {
        Some(Uri::Sip(u)) => u.user_unescaped(),
        Some(Uri::Tel(t)) => Some(t.number.clone()),
        _ => None,
    }
}

/// What `dialled` means as a public-network number for `tenant`: None when
/// it is not one (letters, or a short number without area code: most
/// likely an extension that does not exist, 404), else the destination or
/// the refusal (484 for numbers cut short).
pub fn read_dialled(
    dialled: &str,
    tenant: &Tenant,
) -> Option<Result<Destination, (u16, &'static str)>> {
    match numbering::read_dialled(dialled, &tenant.country) {
        Ok(d) => Some(Ok(d)),
        Err(NumberError::NotANumber) | Err(NumberError::NeedsAreaCode) => None,
        Err(NumberError::Incomplete) => Some(Err((484, "Address Incomplete"))),
        Err(NumberError::TooLong) => Some(Err((404, "Not Found"))),
    }
}

/// Whether `dialled` is an emergency number where `tenant` is: those go
/// out before anything else, whatever extension might share the number.
pub fn is_emergency(dialled: &str, tenant: &Tenant) -> bool {
    numbering::read_dialled(dialled, &tenant.country).is_ok_and(|d| d.class == Class::Emergency)
}

/// The trunks that may carry `destination` for `tenant` (the operator's and
/// its reseller's own), in failover order, with where to send.
pub fn hops(carriers: &Carriers, tenant: &Tenant, destination: &Destination) -> Vec<Hop> {
    let usable = carriers
        .trunks
        .iter()
        .filter(|(t, _)| t.reseller_id.is_none_or(|r| r == tenant.reseller));
    pbx_store::trunks::candidates(usable, &destination.e164)
        .into_iter()
        .filter_map(|t| {
            let mut h = hop(t, destination)?;
            h.credentials = t
                .username
                .clone()
                .zip(carriers.secret(t.id).map(str::to_owned));
            Some(h)
        })
        .collect()
}

fn hop(trunk: &Trunk, destination: &Destination) -> Option<Hop> {
    let protocol = match trunk.transport {
        Transport::Udp => Protocol::Udp,
        Transport::Tcp => Protocol::Tcp,
        Transport::Tls => {
            tracing::warn!(trunk = %trunk.id, "TLS trunks are not supported yet: skipped");
            return None;
        }
    };
    // Carriers are reached at an address; names would need RFC 3263
    // resolution, which this node does not do yet.
    let Ok(ip) = trunk.host.parse::<std::net::IpAddr>() else {
        tracing::warn!(trunk = %trunk.id, host = %trunk.host, "trunk host is not an IP address: skipped");
        return None;
    };
    let port = u16::try_from(trunk.port).ok()?;
    let number = numbering::for_trunk(destination, trunk.number_format, &trunk.country);
    let mut uri = SipUri::new(Some(&number), Host::from(ip), Some(port));
    if protocol == Protocol::Tcp {
        uri.set_param("transport", Some("tcp"));
    }
    Some(Hop {
        trunk: trunk.id,
        max_channels: trunk.max_channels,
        addr: SocketAddr::new(ip, port),
        protocol,
        uri: Uri::Sip(uri),
        host: trunk.host.clone(),
        credentials: None,
        format: trunk.number_format,
        country: trunk.country.clone(),
    })
}

/// Headers carriers read identity or charging from: a phone's are never
/// passed on (it could claim any number or account).
const IDENTITY_HEADERS: [HeaderName; 7] = [
    HeaderName::PAssertedIdentity,
    HeaderName::PPreferredIdentity,
    HeaderName::RemotePartyId,
    HeaderName::Diversion,
    HeaderName::HistoryInfo,
    HeaderName::PChargeInfo,
    HeaderName::Identity,
];

/// Dresses a request for `hop`: its Request-URI, no credentials of ours
/// (a carrier must never see a phone's digest), and the caller's number as
/// a P-Asserted-Identity the carrier trusts (RFC 3325). What the phone said
/// about its identity is not passed on; a `Privacy` header the phone sent
/// (RFC 3323) is, so the carrier withholds the number from the callee.
pub fn dress(req: &mut Message, hop: &Hop, caller_id: Option<&str>) {
    req.set_request_uri(hop.uri.clone());
    req.remove_all(&HeaderName::ProxyAuthorization);
    req.remove_all(&HeaderName::Authorization);
    for name in &IDENTITY_HEADERS {
        req.remove_all(name);
    }
    if let Some(number) = caller_id {
        let shown = numbering::for_trunk(
            &Destination {
                e164: number.to_owned(),
                class: Class::National,
                emergency_code: None,
            },
            hop.format,
            &hop.country,
        );
        req.push(Header::new(
            HeaderName::PAssertedIdentity,
            format!("<sip:{shown}@{};user=phone>", hop.host),
        ));
    }
}

/// Removes identity assertions from a request going to phones: a phone's
/// own are never believed, and a carrier's are kept only when the caller
/// did not ask for privacy (RFC 3325 §5, RFC 3323).
pub fn screen_identity(req: &mut Message, from_carrier: bool) {
    let private = req
        .values(&HeaderName::Privacy)
        .filter_map(|h| h.text())
        .any(|t| {
            t.split(';').any(|p| {
                matches!(
                    p.trim().to_ascii_lowercase().as_str(),
                    "id" | "header" | "user"
                )
            })
        });
    if !from_carrier || private {
        for name in &IDENTITY_HEADERS {
            req.remove_all(name);
        }
    }
}

/// Where a call to a customer's number goes at `now`.
pub enum Inbound {
    Extension(pbx_store::ExtensionId),
    Group(pbx_store::RingGroupId),
    Room(pbx_store::ConferenceRoomId),
    /// An extension's voicemail box (its phones do not ring).
    Voicemail(pbx_store::ExtensionId),
    /// An auto-attendant menu.
    Menu(pbx_store::IvrMenuId),
    /// Nowhere (no destination set, or the rule's is empty): 480.
    Nowhere,
}

/// Follows a number's destination (through its business-hours rule, if it
/// has one, evaluated in the customer's time zone at `now`).
pub fn inbound_destination(
    destination: Option<NumberDestination>,
    tenant: &Tenant,
    now: Millis,
) -> Inbound {
    let direct = |d: Option<NumberDestination>| match d {
        Some(NumberDestination::Extension(e)) => Inbound::Extension(e),
        Some(NumberDestination::RingGroup(g)) => Inbound::Group(g),
        Some(NumberDestination::ConferenceRoom(r)) => Inbound::Room(r),
        Some(NumberDestination::Voicemail(e)) => Inbound::Voicemail(e),
        Some(NumberDestination::IvrMenu(m)) => Inbound::Menu(m),
        // A rule never leads to a rule (the store refuses it).
        Some(NumberDestination::BusinessHours(_)) | None => Inbound::Nowhere,
    };
    match destination {
        Some(NumberDestination::BusinessHours(id)) => {
            match (tenant.business_hours(id), tenant.is_open(id, now)) {
                (Some(rule), Some(open)) => direct(if open {
                    rule.open_destination
                } else {
                    rule.closed_destination
                }),
                _ => Inbound::Nowhere,
            }
        }
        other => direct(other),
    }
}

/// The number a carrier delivered a call for (E.164 digits) and who holds
/// it: the Request-URI's user, or, when that is not one of the platform's
/// numbers (registering trunks send calls to the registered contact), the
/// To header's. A reseller's own trunk reaches only that reseller's numbers.
pub fn called_number<'c>(
    req: &Message,
    trunk: &Trunk,
    carriers: &'c Carriers,
) -> Option<(String, &'c RoutedNumber)> {
    if !trunk.enabled {
        return None;
    }
    let to_user = req.to().uri.as_sip().and_then(|u| u.user_unescaped());
    [dialled_user(req), to_user]
        .into_iter()
        .flatten()
        .filter_map(|user| numbering::read_from_trunk(&user, trunk.number_format, &trunk.country))
        .find_map(|e164| {
            let routed = carriers.number(&e164)?;
            Some((e164, routed))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbx_store::business_hours::{Holiday, Interval};
    use pbx_store::{CustomerId, ResellerId};

    fn tenant() -> Tenant {
        Tenant::build(
            CustomerId(1),
            ResellerId(1),
            "a.example",
            &[("110", &[("110", "pw")])],
        )
    }

    #[test]
    fn dialled_strings_read_by_the_customers_country() {
        let t = tenant();
        assert!(
            read_dialled("999", &t).is_none(),
            "an extension, if anything"
        );
        assert!(read_dialled("alice", &t).is_none());
        let d = read_dialled("030 1234567", &t).unwrap().unwrap();
        assert_eq!(d.e164, "49301234567");
        assert_eq!(
            read_dialled("0301", &t).unwrap().err(),
            Some((484, "Address Incomplete"))
        );
        assert!(is_emergency("110", &t), "even with an extension 110");
        assert!(!is_emergency("0301234567", &t));
    }

    fn invite(extra: &str) -> Message {
        let text = format!(
            "INVITE sip:0301234567@a.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx\r\n\
             From: <sip:101@a.example>;tag=a\r\nTo: <sip:0301234567@a.example>\r\nCall-ID: c\r\n\
             CSeq: 2 INVITE\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Message::parse_datagram(
            bytes::Bytes::from(text),
            &pbx_sip_message::Limits::default(),
        )
        .expect("parses")
    }

    #[test]
    fn a_carrier_gets_no_credentials_and_only_our_identity() {
        let t = tenant();
        let d = read_dialled("0301234567", &t).unwrap().unwrap();
        let trunk = Trunk {
            id: TrunkId(1),
            reseller_id: None,
            name: "C".into(),
            host: "127.0.0.2".into(),
            port: 5060,
            transport: Transport::Udp,
            auth_mode: pbx_store::trunks::AuthMode::Ip,
            username: None,
            realm: None,
            register_expires_s: 600,
            inbound_sources: Vec::new(),
            number_format: numbering::NumberFormat::National,
            country: "DE".into(),
            max_channels: None,
            priority: 1,
            enabled: true,
            registration: None,
            created_at: 0,
            version: 1,
        };
        let hop = hop(&trunk, &d).expect("a hop");
        let mut req = invite(
            "Proxy-Authorization: Digest username=\"101\", realm=\"carrier\"\r\n\
             P-Asserted-Identity: <sip:+4989999@x>\r\nRemote-Party-ID: <sip:+4989999@x>\r\n\
             Diversion: <sip:+4989999@x>\r\nP-Charge-Info: <sip:+4989999@x>\r\nPrivacy: id\r\n",
        );
        dress(&mut req, &hop, Some("49301111111"));
        let text = String::from_utf8_lossy(&req.to_bytes()).into_owned();
        assert!(
            text.starts_with("INVITE sip:0301234567@127.0.0.2:5060 SIP/2.0"),
            "{text}"
        );
        assert!(!text.contains("4989999"), "{text}");
        assert!(!text.contains("Proxy-Authorization"), "{text}");
        assert!(
            text.contains("P-Asserted-Identity: <sip:0301111111@127.0.0.2;user=phone>"),
            "{text}"
        );
        assert!(
            text.contains("Privacy: id"),
            "the caller's wish goes on: {text}"
        );
        // Towards phones: a carrier's assertion stays unless privacy is asked.
        let mut shown = invite("P-Asserted-Identity: <sip:+4989123@c>\r\n");
        screen_identity(&mut shown, true);
        assert!(shown.has(&HeaderName::PAssertedIdentity));
        let mut hidden = invite("P-Asserted-Identity: <sip:+4989123@c>\r\nPrivacy: id\r\n");
        screen_identity(&mut hidden, true);
        assert!(!hidden.has(&HeaderName::PAssertedIdentity));
        let mut phone = invite("P-Asserted-Identity: <sip:+4989123@c>\r\n");
        screen_identity(&mut phone, false);
        assert!(
            !phone.has(&HeaderName::PAssertedIdentity),
            "a phone asserts nothing"
        );
    }

    #[test]
    fn a_business_hours_number_follows_the_rule_in_the_customers_zone() {
        use pbx_store::business_hours::BusinessHours;
        let mut dir = pbx_store::directory::CustomerDirectory::empty(
            CustomerId(1),
            ResellerId(1),
            "a.example",
        );
        // Open Mondays 08:00-17:00 Berlin time, closed on 2026-11-30.
        dir.business_hours.push(BusinessHours {
            id: pbx_store::BusinessHoursId(5),
            customer_id: CustomerId(1),
            reseller_id: ResellerId(1),
            name: "Office".into(),
            weekly: vec![Interval {
                day: 1,
                open: "08:00".into(),
                close: "17:00".into(),
            }],
            holidays: vec![Holiday {
                date: "2026-11-30".into(),
                name: String::new(),
            }],
            open_destination: Some(NumberDestination::Extension(pbx_store::ExtensionId(7))),
            closed_destination: Some(NumberDestination::RingGroup(pbx_store::RingGroupId(9))),
            created_at: 0,
            version: 1,
        });
        let t = crate::directory::Tenant::from_store(dir);
        let rule = Some(NumberDestination::BusinessHours(
            pbx_store::BusinessHoursId(5),
        ));
        // Monday 2026-11-23 09:00 CET = 08:00 UTC: open.
        let monday_nine = 1_795_420_800_000;
        assert!(matches!(
            inbound_destination(rule, &t, monday_nine),
            Inbound::Extension(pbx_store::ExtensionId(7))
        ));
        // 07:30 CET: closed.
        assert!(matches!(
            inbound_destination(rule, &t, monday_nine - 90 * 60_000),
            Inbound::Group(pbx_store::RingGroupId(9))
        ));
        // The holiday a week later, at nine: closed.
        assert!(matches!(
            inbound_destination(rule, &t, monday_nine + 7 * 86_400_000),
            Inbound::Group(_)
        ));
        assert!(matches!(
            inbound_destination(None, &t, monday_nine),
            Inbound::Nowhere
        ));
    }
}
