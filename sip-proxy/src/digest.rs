//! Digest authentication mechanics (RFC 3261 §22, RFC 7616, RFC 8760):
//! nonces, challenges, and verification of credentials against the HA1s the
//! directory holds. Where credentials come from is the directory's business;
//! what to protect is the registrar's and the proxy's.
//!
//! Nonces are stateless to issue and check: `issued time | counter | MAC`,
//! the MAC (HMAC-SHA-256 under a key derived from the platform secret) binding
//! them to the realm and to the source they were sent to (an IPv4 address or
//! IPv6 /64). A wrong response to a nonce of this source is a guess that
//! could have succeeded ([`Verdict::Wrong`]), which the abuse guard counts;
//! anything else that fails ([`Verdict::Invalid`]) could never have
//! succeeded, so a forger spoofing someone else's address cannot get it
//! counted against them. Replays are stopped by nonce-count tracking in a fixed
//! table of slots (the counter picks the slot), so memory does not grow with
//! traffic: a slot reused before a nonce expires only makes that nonce stale.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use md5::Md5;
use pbx_sip_message::auth::{Challenge, DigestParams};
use pbx_sip_message::Uri;
use pbx_store::net::Source;
use sha2::{Digest, Sha256};

/// A digest algorithm (RFC 8760 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Md5,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Md5 => "MD5",
        }
    }

    /// Parses an `algorithm=` value; absent means MD5 (RFC 2617).
    pub fn parse(value: Option<&str>) -> Option<Algorithm> {
        match value {
            None => Some(Algorithm::Md5),
            Some(v) if v.eq_ignore_ascii_case("MD5") => Some(Algorithm::Md5),
            Some(v) if v.eq_ignore_ascii_case("SHA-256") => Some(Algorithm::Sha256),
            _ => None,
        }
    }

    fn hash_hex(self, input: &[u8]) -> String {
        match self {
            Algorithm::Md5 => pbx_store::secrets::hex(&Md5::digest(input)),
            Algorithm::Sha256 => pbx_store::secrets::hex(&Sha256::digest(input)),
        }
    }
}

/// The HA1s of one credential.
pub struct Ha1<'a> {
    pub md5: &'a str,
    pub sha256: &'a str,
}

/// The outcome of checking credentials.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The response is right for this username, computed with this algorithm.
    Valid(Algorithm),
    /// Right response but the nonce is too old (or its slot reused): challenge
    /// again with stale=true so the phone retries without asking its user.
    Stale,
    /// A response to a nonce issued to this source that is wrong, or for a
    /// user who does not exist: a password (or user name) guess. Answered
    /// like [`Verdict::Invalid`], so nothing tells whether the user exists.
    Wrong,
    /// Anything else: malformed, a nonce that is not ours (or was issued to
    /// another source, or for another realm), a digest uri other than the
    /// Request-URI, a replay.
    Invalid,
}

/// Nonce lifetime, digest-uri policy and offered algorithms.
#[derive(Debug, Clone)]
pub struct DigestConfig {
    /// In the order offered; phones take the first they support (RFC 8760).
    pub algorithms: Vec<Algorithm>,
    pub nonce_ttl: Duration,
    /// Require the digest `uri` to equal the Request-URI (RFC 3261 §22.4).
    pub check_uri: bool,
    /// Slots for nonce-count tracking (a power of two).
    pub nonce_slots: usize,
    /// User-Agent prefixes (lower case) of phones that fail when any of the
    /// challenges names an algorithm they do not know, instead of taking one
    /// they do (libre before 3.x, hence baresip 1.x): they are offered MD5 only.
    pub md5_only_user_agents: Vec<String>,
}

impl Default for DigestConfig {
    fn default() -> Self {
        DigestConfig {
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            nonce_ttl: Duration::from_secs(300),
            check_uri: true,
            nonce_slots: 1 << 18,
            md5_only_user_agents: vec!["baresip".to_owned()],
        }
    }
}

pub struct DigestAuth {
    key: [u8; 32],
    config: DigestConfig,
    counter: AtomicU64,
    slots: Box<[AtomicU64]>,
}

const MAC_LEN: usize = 12;
const NONCE_LEN: usize = 8 + 8 + MAC_LEN;

fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let mut inner = Sha256::new();
    inner.update(ipad);
    for p in parts {
        inner.update((p.len() as u32).to_be_bytes());
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(opad);
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl DigestAuth {
    /// `secret` is the platform's secret key; nonces are keyed by a hash of it,
    /// so every node sharing the key accepts the others' nonces.
    pub fn new(secret: &[u8], config: DigestConfig) -> DigestAuth {
        let key: [u8; 32] =
            Sha256::digest([b"sip-digest-nonce:".as_slice(), secret].concat()).into();
        let slots = config.nonce_slots.next_power_of_two().max(1024);
        DigestAuth {
            key,
            config,
            counter: AtomicU64::new(rand::random::<u32>() as u64),
            slots: (0..slots).map(|_| AtomicU64::new(u64::MAX)).collect(),
        }
    }

    fn slot_of(&self, counter: u64) -> (usize, u32) {
        let n = self.slots.len() as u64;
        ((counter % n) as usize, (counter / n) as u32)
    }

    fn mint(&self, realm: &str, source: Source) -> String {
        let counter = self.counter.fetch_add(1, Ordering::Relaxed);
        let (slot, generation) = self.slot_of(counter);
        self.slots[slot].store(u64::from(generation) << 32, Ordering::Relaxed);
        let issued = unix_secs().to_be_bytes();
        let count = counter.to_be_bytes();
        let mac = hmac_sha256(
            &self.key,
            &[&issued, &count, realm.as_bytes(), &source_bytes(source)],
        );
        let mut raw = [0u8; NONCE_LEN];
        raw[..8].copy_from_slice(&issued);
        raw[8..16].copy_from_slice(&count);
        raw[16..].copy_from_slice(&mac[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Header values for a challenge to `source`, one per offered algorithm,
    /// sharing one nonce, in the configured order; MD5 alone for a
    /// `user_agent` known to fail on any other.
    pub fn challenge(
        &self,
        realm: &str,
        stale: bool,
        user_agent: Option<&str>,
        source: Source,
    ) -> Vec<String> {
        let nonce = self.mint(realm, source);
        let md5_only = user_agent.map(str::to_ascii_lowercase).is_some_and(|ua| {
            self.config
                .md5_only_user_agents
                .iter()
                .any(|p| !p.is_empty() && ua.starts_with(p.as_str()))
        }) && self.config.algorithms.contains(&Algorithm::Md5);
        let algorithms: &[Algorithm] = if md5_only {
            &[Algorithm::Md5]
        } else {
            &self.config.algorithms
        };
        algorithms
            .iter()
            .map(|a| {
                Challenge {
                    realm,
                    nonce: &nonce,
                    opaque: None,
                    algorithm: a.name(),
                    stale,
                }
                .to_header_value()
            })
            .collect()
    }

    /// Checks `creds` for a request with `method` and `request_uri` in
    /// `realm`, sent from `source`. `ha1` looks up the username's HA1s; None
    /// (unknown user) costs the same work as a wrong password.
    pub fn verify<'a>(
        &self,
        creds: &DigestParams,
        (method, request_uri): (&str, &Uri),
        realm: &str,
        source: Source,
        ha1: impl FnOnce(&str) -> Option<Ha1<'a>>,
    ) -> Verdict {
        let fields = (
            creds.get("username"),
            creds.get("realm"),
            creds.get("nonce"),
            creds.get("uri"),
            creds.get("response"),
            Algorithm::parse(creds.get("algorithm")),
        );
        let (
            Some(username),
            Some(cred_realm),
            Some(nonce),
            Some(uri),
            Some(response),
            Some(algorithm),
        ) = fields
        else {
            return Verdict::Invalid;
        };
        if !creds.is_digest() || cred_realm != realm || !self.config.algorithms.contains(&algorithm)
        {
            return Verdict::Invalid;
        }
        if self.config.check_uri && Uri::parse(uri).ok().as_ref() != Some(request_uri) {
            return Verdict::Invalid;
        }
        let Some((issued, counter)) = self.open_nonce(nonce, realm, source) else {
            return Verdict::Invalid;
        };
        let qop = creds.get("qop");
        let (nc, cnonce) = match qop {
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let nc = creds
                    .get("nc")
                    .filter(|n| n.len() == 8)
                    .and_then(|n| u32::from_str_radix(n, 16).ok());
                match (nc, creds.get("cnonce")) {
                    (Some(nc), Some(c)) if nc > 0 && !c.is_empty() => {
                        (Some((nc, creds.get("nc").unwrap_or_default())), c)
                    }
                    _ => return Verdict::Invalid,
                }
            }
            Some(_) => return Verdict::Invalid,
            None => (None, ""),
        };
        // The response is computed even for an unknown user, against a dummy HA1.
        let dummy = "0".repeat(64);
        let known = ha1(username);
        let ha1_hex = match (&known, algorithm) {
            (Some(h), Algorithm::Md5) => h.md5,
            (Some(h), Algorithm::Sha256) => h.sha256,
            (None, _) => &dummy,
        };
        let ha2 = algorithm.hash_hex(format!("{method}:{uri}").as_bytes());
        let expected = match nc {
            Some((_, nc_text)) => algorithm
                .hash_hex(format!("{ha1_hex}:{nonce}:{nc_text}:{cnonce}:auth:{ha2}").as_bytes()),
            None => algorithm.hash_hex(format!("{ha1_hex}:{nonce}:{ha2}").as_bytes()),
        };
        if known.is_none()
            || !constant_time_eq(
                expected.as_bytes(),
                response.to_ascii_lowercase().as_bytes(),
            )
        {
            return Verdict::Wrong;
        }
        if unix_secs().saturating_sub(issued) > self.config.nonce_ttl.as_secs() {
            return Verdict::Stale;
        }
        self.use_nonce(counter, nc.map(|(n, _)| n), algorithm)
    }

    /// The nonce's issue time and counter, if its MAC is ours for this realm
    /// and source.
    fn open_nonce(&self, nonce: &str, realm: &str, source: Source) -> Option<(u64, u64)> {
        let raw = URL_SAFE_NO_PAD.decode(nonce).ok()?;
        if raw.len() != NONCE_LEN {
            return None;
        }
        let mac = hmac_sha256(
            &self.key,
            &[
                &raw[..8],
                &raw[8..16],
                realm.as_bytes(),
                &source_bytes(source),
            ],
        );
        if !constant_time_eq(&mac[..MAC_LEN], &raw[16..]) {
            return None;
        }
        let issued = u64::from_be_bytes(raw[..8].try_into().ok()?);
        let counter = u64::from_be_bytes(raw[8..16].try_into().ok()?);
        Some((issued, counter))
    }

    /// Records a use of the nonce: nc must grow; without qop a nonce is single-use.
    fn use_nonce(&self, counter: u64, nc: Option<u32>, algorithm: Algorithm) -> Verdict {
        let (slot, generation) = self.slot_of(counter);
        let cell = &self.slots[slot];
        let mut current = cell.load(Ordering::Acquire);
        loop {
            if (current >> 32) as u32 != generation {
                // The slot now tracks a newer nonce (or another node issued this one).
                return Verdict::Stale;
            }
            let last = current as u32;
            let next = match nc {
                Some(n) if n > last && last != u32::MAX => n,
                None if last == 0 => u32::MAX,
                _ => return Verdict::Invalid,
            };
            let updated = (u64::from(generation) << 32) | u64::from(next);
            match cell.compare_exchange(current, updated, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Verdict::Valid(algorithm),
                Err(seen) => current = seen,
            }
        }
    }
}

/// A source as the nonce MAC covers it.
fn source_bytes(source: Source) -> [u8; 9] {
    let mut out = [0u8; 9];
    match source {
        Source::V4(v4) => {
            out[0] = 4;
            out[1..5].copy_from_slice(&v4.to_be_bytes());
        }
        Source::V6(net) => {
            out[0] = 6;
            out[1..].copy_from_slice(&net.to_be_bytes());
        }
    }
    out
}

/// Answers a challenge with `user`'s `password` (this platform as a
/// client: registering with a carrier): the `Authorization` value for
/// `method` on `uri`, or None for a challenge that cannot be answered (no
/// realm or nonce, an unknown algorithm, or `auth-int` only).
pub fn answer_challenge(
    challenge: &DigestParams,
    method: &str,
    uri: &str,
    (user, password): (&str, &str),
    (nc, cnonce): (u32, &str),
) -> Option<String> {
    let realm = challenge.get("realm")?;
    let nonce = challenge.get("nonce")?;
    let algorithm = Algorithm::parse(challenge.get("algorithm"))?;
    let qop_auth = match challenge.get("qop") {
        None => false,
        Some(q) if q.split(',').any(|x| x.trim().eq_ignore_ascii_case("auth")) => true,
        Some(_) => return None,
    };
    let ha1 = algorithm.hash_hex(format!("{user}:{realm}:{password}").as_bytes());
    let ha2 = algorithm.hash_hex(format!("{method}:{uri}").as_bytes());
    let nc = format!("{nc:08x}");
    let response = if qop_auth {
        algorithm.hash_hex(format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}").as_bytes())
    } else {
        algorithm.hash_hex(format!("{ha1}:{nonce}:{ha2}").as_bytes())
    };
    let credentials = pbx_sip_message::auth::Credentials {
        username: user,
        realm,
        nonce,
        uri,
        response: &response,
        algorithm: algorithm.name(),
        opaque: challenge.get("opaque"),
        qop_auth: qop_auth.then_some((nc.as_str(), cnonce)),
    };
    Some(credentials.to_header_value())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> DigestAuth {
        DigestAuth::new(b"secret", DigestConfig::default())
    }

    /// The phone's address in these tests.
    const HERE: Source = Source::V4(0x7f00_0001);

    fn respond(
        challenge: &str,
        algorithm: Algorithm,
        user: &str,
        password: &str,
        uri: &str,
        nc: u32,
    ) -> DigestParams {
        let c = DigestParams::parse(challenge).expect("challenge");
        assert_eq!(Algorithm::parse(c.get("algorithm")), Some(algorithm));
        let value = answer_challenge(&c, "REGISTER", uri, (user, password), (nc, "abc"))
            .expect("answerable");
        DigestParams::parse(&value).expect("credentials")
    }

    #[test]
    fn answers_a_challenge_as_rfc_2617_computes_it() {
        // RFC 2617 §3.5 (HTTP: method GET, a path as uri).
        let c = DigestParams::parse(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .expect("challenge");
        let value = answer_challenge(
            &c,
            "GET",
            "/dir/index.html",
            ("Mufasa", "Circle Of Life"),
            (1, "0a4f113b"),
        )
        .expect("answerable");
        let p = DigestParams::parse(&value).expect("credentials");
        assert_eq!(p.get("response"), Some("6629fae49393a05397450978507c4ef1"));
        assert_eq!(p.get("nc"), Some("00000001"));
        assert_eq!(p.get("opaque"), Some("5ccc069c403ebaf9f0171e9517f40e41"));
        let int_only = DigestParams::parse(r#"Digest realm="r", nonce="n", qop="auth-int""#)
            .expect("challenge");
        assert!(answer_challenge(&int_only, "GET", "/", ("u", "p"), (1, "c")).is_none());
    }

    fn store_ha1(user: &str, realm: &str, password: &str) -> (String, String) {
        let h = pbx_store::secrets::DigestHa1::compute(user, realm, password);
        (h.md5, h.sha256)
    }

    #[test]
    fn rfc_7616_sha256_example_response() {
        // RFC 7616 §3.9.1 (HTTP, so method GET and a path as uri).
        let ha1 = Algorithm::Sha256.hash_hex(b"Mufasa:http-auth@example.org:Circle of Life");
        let ha2 = Algorithm::Sha256.hash_hex(b"GET:/dir/index.html");
        let response = Algorithm::Sha256.hash_hex(
            format!("{ha1}:7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v:00000001:f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ:auth:{ha2}").as_bytes(),
        );
        assert_eq!(
            response,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn phones_that_fail_on_unknown_algorithms_get_md5_only() {
        let a = auth();
        let normal = a.challenge("acme.example", false, Some("Yealink SIP-T46U"), HERE);
        assert!(normal[0].contains("SHA-256") && normal[1].contains("MD5"));
        let libre = a.challenge(
            "acme.example",
            false,
            Some("baresip v1.0.0 (x86_64/linux)"),
            HERE,
        );
        assert_eq!(libre.len(), 1, "{libre:?}");
        assert!(libre[0].contains("MD5"), "{libre:?}");
    }

    #[test]
    fn both_algorithms_verify_once_per_nonce_count() {
        let a = auth();
        let uri = Uri::parse("sip:acme.example").expect("uri");
        let (md5, sha) = store_ha1("101", "acme.example", "pw");
        for (i, algorithm) in [Algorithm::Sha256, Algorithm::Md5].into_iter().enumerate() {
            let challenges = a.challenge("acme.example", false, None, HERE);
            assert_eq!(challenges.len(), 2);
            assert!(
                challenges[0].contains("algorithm=SHA-256"),
                "SHA-256 offered first"
            );
            let creds = respond(
                &challenges[i],
                algorithm,
                "101",
                "pw",
                "sip:acme.example",
                1,
            );
            let lookup = || {
                Some(Ha1 {
                    md5: &md5,
                    sha256: &sha,
                })
            };
            assert_eq!(
                a.verify(
                    &creds,
                    ("REGISTER", &uri),
                    "acme.example",
                    HERE,
                    |_| lookup()
                ),
                Verdict::Valid(algorithm)
            );
            // The same nc again is a replay.
            assert_eq!(
                a.verify(
                    &creds,
                    ("REGISTER", &uri),
                    "acme.example",
                    HERE,
                    |_| lookup()
                ),
                Verdict::Invalid
            );
            let next = respond(
                &challenges[i],
                algorithm,
                "101",
                "pw",
                "sip:acme.example",
                2,
            );
            assert_eq!(
                a.verify(&next, ("REGISTER", &uri), "acme.example", HERE, |_| lookup(
                )),
                Verdict::Valid(algorithm)
            );
        }
    }

    #[test]
    fn guesses_are_wrong_and_what_could_never_succeed_is_invalid() {
        let a = auth();
        let uri = Uri::parse("sip:acme.example").expect("uri");
        let (md5, sha) = store_ha1("101", "acme.example", "pw");
        let ch = a.challenge("acme.example", false, None, HERE);
        let wrong = respond(
            &ch[0],
            Algorithm::Sha256,
            "101",
            "guess",
            "sip:acme.example",
            1,
        );
        assert_eq!(
            a.verify(&wrong, ("REGISTER", &uri), "acme.example", HERE, |_| Some(
                Ha1 {
                    md5: &md5,
                    sha256: &sha
                }
            )),
            Verdict::Wrong
        );
        // The right answer to a nonce sent to another address (a forger
        // spoofing that address, or a nonce passed around) never counts.
        let right = respond(
            &ch[0],
            Algorithm::Sha256,
            "101",
            "pw",
            "sip:acme.example",
            1,
        );
        let elsewhere_source = Source::V4(0xc000_0201);
        assert_eq!(
            a.verify(
                &right,
                ("REGISTER", &uri),
                "acme.example",
                elsewhere_source,
                |_| Some(Ha1 {
                    md5: &md5,
                    sha256: &sha
                })
            ),
            Verdict::Invalid
        );
        let unknown = respond(
            &ch[0],
            Algorithm::Sha256,
            "999",
            "pw",
            "sip:acme.example",
            1,
        );
        assert_eq!(
            a.verify(&unknown, ("REGISTER", &uri), "acme.example", HERE, |_| None),
            Verdict::Wrong
        );
        // A nonce minted for another realm does not open here.
        let other = a.challenge("other.example", false, None, HERE);
        let creds = respond(
            &other[0],
            Algorithm::Sha256,
            "101",
            "pw",
            "sip:acme.example",
            1,
        );
        let text = format!(
            r#"Digest username="101", realm="acme.example", nonce="{}", uri="sip:acme.example", response="{}", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="abc""#,
            creds.get("nonce").expect("nonce"),
            creds.get("response").expect("response")
        );
        let moved = DigestParams::parse(&text).expect("creds");
        assert_eq!(
            a.verify(&moved, ("REGISTER", &uri), "acme.example", HERE, |_| Some(
                Ha1 {
                    md5: &md5,
                    sha256: &sha
                }
            )),
            Verdict::Invalid
        );
        // A nonce from another key is refused.
        let b = DigestAuth::new(b"other secret", DigestConfig::default());
        let foreign = respond(
            &b.challenge("acme.example", false, None, HERE)[0],
            Algorithm::Sha256,
            "101",
            "pw",
            "sip:acme.example",
            1,
        );
        assert_eq!(
            a.verify(
                &foreign,
                ("REGISTER", &uri),
                "acme.example",
                HERE,
                |_| Some(Ha1 {
                    md5: &md5,
                    sha256: &sha
                })
            ),
            Verdict::Invalid
        );
        // The digest uri must be the Request-URI.
        let elsewhere = respond(
            &ch[0],
            Algorithm::Sha256,
            "101",
            "pw",
            "sip:elsewhere.example",
            1,
        );
        assert_eq!(
            a.verify(&elsewhere, ("REGISTER", &uri), "acme.example", HERE, |_| {
                Some(Ha1 {
                    md5: &md5,
                    sha256: &sha,
                })
            }),
            Verdict::Invalid
        );
    }

    #[test]
    fn expired_and_recycled_nonces_are_stale() {
        let a = DigestAuth::new(
            b"k",
            DigestConfig {
                nonce_ttl: Duration::ZERO,
                nonce_slots: 1024,
                ..DigestConfig::default()
            },
        );
        let uri = Uri::parse("sip:acme.example").expect("uri");
        let (md5, sha) = store_ha1("101", "acme.example", "pw");
        let ch = a.challenge("acme.example", false, None, HERE);
        std::thread::sleep(Duration::from_millis(1100));
        let creds = respond(
            &ch[0],
            Algorithm::Sha256,
            "101",
            "pw",
            "sip:acme.example",
            1,
        );
        assert_eq!(
            a.verify(&creds, ("REGISTER", &uri), "acme.example", HERE, |_| Some(
                Ha1 {
                    md5: &md5,
                    sha256: &sha
                }
            )),
            Verdict::Stale
        );

        let a = DigestAuth::new(
            b"k",
            DigestConfig {
                nonce_slots: 1024,
                ..DigestConfig::default()
            },
        );
        let ch = a.challenge("acme.example", false, None, HERE);
        for _ in 0..1024 {
            a.challenge("acme.example", false, None, HERE);
        }
        let creds = respond(
            &ch[0],
            Algorithm::Sha256,
            "101",
            "pw",
            "sip:acme.example",
            1,
        );
        assert_eq!(
            a.verify(&creds, ("REGISTER", &uri), "acme.example", HERE, |_| Some(
                Ha1 {
                    md5: &md5,
                    sha256: &sha
                }
            )),
            Verdict::Stale
        );
    }
}
