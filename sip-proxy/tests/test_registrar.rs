//! RFC 3261 §10.3 registrar behaviour with digest (RFC 7616/8760) and RFC
//! 5626 instance-id/reg-id, one rule per test.

mod support;

use std::time::Duration;

use pbx_sip_message::auth::DigestParams;
use pbx_sip_message::HeaderName;
use pbx_sip_proxy::digest::Algorithm;
use support::{bindings, config, start, Ua, ACME, BOLT};

async fn ua(node: &support::Node, user: &str, password: &str) -> Ua {
    Ua::new(node.udp, user, password, ACME).await
}

#[tokio::test]
async fn registers_with_sha256_offered_first_and_md5_for_older_phones() {
    let node = start(config()).await;
    let phone = ua(&node, "101", "pw-101-xxxxxx").await;
    let call_id = "alg-test";
    phone
        .send(
            &phone.register_head(
                call_id,
                1,
                &format!("Contact: <sip:101@{}>\n", phone.local),
                Some(600),
                "",
            ),
            "",
        )
        .await;
    let challenge = phone.recv().await;
    assert_eq!(challenge.status(), Some(401));
    let offered: Vec<DigestParams> = challenge
        .values(&HeaderName::WwwAuthenticate)
        .filter_map(|h| h.text().and_then(|t| DigestParams::parse(&t).ok()))
        .collect();
    assert_eq!(offered.len(), 2);
    assert_eq!(offered[0].get("algorithm"), Some("SHA-256"));
    assert_eq!(offered[1].get("algorithm"), Some("MD5"));
    assert_eq!(
        offered[0].get("realm"),
        Some(ACME),
        "realm is the customer's domain"
    );
    assert_eq!(offered[0].get("qop"), Some("auth"));
    for (cseq, challenge) in [(2, &offered[0]), (3, &offered[1])] {
        let auth = phone.answer_challenge(challenge, "REGISTER", &format!("sip:{ACME}"), cseq - 1);
        let head = phone.register_head(
            call_id,
            cseq,
            &format!("Contact: <sip:101@{}>\n", phone.local),
            Some(600),
            &format!("Authorization: {auth}\n"),
        );
        phone.send(&head, "").await;
        let ok = phone.recv().await;
        assert_eq!(
            ok.status(),
            Some(200),
            "{:?}",
            Algorithm::parse(challenge.get("algorithm"))
        );
    }
}

#[tokio::test]
async fn query_without_contact_lists_bindings_and_changes_nothing() {
    let node = start(config()).await;
    let phone = ua(&node, "101", "pw-101-xxxxxx").await;
    let ok = phone.register_here(600).await;
    assert_eq!(bindings(&ok).len(), 1);
    let query = phone.register("", None, "").await;
    assert_eq!(query.status(), Some(200));
    assert_eq!(bindings(&query).len(), 1);
    assert_eq!(bindings(&query)[0].0, bindings(&ok)[0].0);
}

#[tokio::test]
async fn expires_below_the_minimum_is_refused_with_423_and_min_expires() {
    let node = start(config()).await;
    let phone = ua(&node, "101", "pw-101-xxxxxx").await;
    let resp = phone.register_here(30).await;
    assert_eq!(resp.status(), Some(423));
    assert_eq!(
        resp.value_text(&HeaderName::MinExpires).as_deref(),
        Some("60")
    );
}

#[tokio::test]
async fn long_expiries_are_capped_and_spread() {
    let node = start(config()).await;
    let phone = ua(&node, "101", "pw-101-xxxxxx").await;
    let resp = phone.register_here(86_400).await;
    let granted = bindings(&resp)[0].1;
    assert!(
        (3240..=3600).contains(&granted),
        "capped at 3600 and spread by up to 10 %: {granted}"
    );
}

#[tokio::test]
async fn contact_star_removes_every_binding_only_with_expires_zero() {
    let node = start(config()).await;
    let phone = ua(&node, "102", "pw-102-xxxxxx").await;
    let two = "Contact: <sip:102@127.0.0.1:7001>, <sip:102@127.0.0.1:7002>\n";
    assert_eq!(bindings(&phone.register(two, Some(600), "").await).len(), 2);
    let bad = phone.register("Contact: *\n", Some(600), "").await;
    assert_eq!(bad.status(), Some(400));
    let gone = phone.register("Contact: *\n", Some(0), "").await;
    assert_eq!(gone.status(), Some(200));
    assert!(bindings(&gone).is_empty());
}

#[tokio::test]
async fn one_contact_can_be_removed_with_expires_zero() {
    let node = start(config()).await;
    let phone = ua(&node, "102", "pw-102-xxxxxx").await;
    phone
        .register(
            "m: <sip:102@127.0.0.1:7001>, <sip:102@127.0.0.1:7002>\n",
            Some(600),
            "",
        )
        .await;
    let resp = phone
        .register("Contact: <sip:102@127.0.0.1:7001>;expires=0\n", None, "")
        .await;
    let left = bindings(&resp);
    assert_eq!(left.len(), 1);
    assert!(left[0].0.ends_with(":7002"));
}

#[tokio::test]
async fn a_rebooted_phone_with_the_same_instance_id_replaces_its_binding() {
    let node = start(config()).await;
    let phone = ua(&node, "101", "pw-101-xxxxxx").await;
    let instance = "+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"";
    phone
        .register(
            &format!("Contact: <sip:101@127.0.0.1:7001>;{instance}\n"),
            Some(600),
            "",
        )
        .await;
    let after_reboot = phone
        .register(
            &format!("Contact: <sip:101@127.0.0.1:7009>;{instance}\n"),
            Some(600),
            "",
        )
        .await;
    let list = bindings(&after_reboot);
    assert_eq!(list.len(), 1, "{list:?}");
    assert!(list[0].0.ends_with(":7009"));
}

#[tokio::test]
async fn outbound_reg_id_is_confirmed_with_require_outbound() {
    let node = start(config()).await;
    let phone = ua(&node, "101", "pw-101-xxxxxx").await;
    let contact = "Contact: <sip:101@10.0.0.9:5060;ob>;+sip.instance=\"<urn:uuid:11111111-0000-1000-8000-000A95A0E128>\";reg-id=1\n";
    let resp = phone
        .register(contact, Some(600), "Supported: outbound, path\n")
        .await;
    assert_eq!(resp.status(), Some(200));
    assert!(resp
        .option_tags(&HeaderName::Require)
        .iter()
        .any(|t| t == "outbound"));
}

#[tokio::test]
async fn an_older_cseq_of_the_same_call_id_cannot_overwrite() {
    let node = start(config()).await;
    let phone = ua(&node, "101", "pw-101-xxxxxx").await;
    let contact = format!("Contact: <sip:101@{}>\n", phone.local);
    // CSeq 5 with credentials, then CSeq 3 of the same Call-ID.
    phone
        .send(
            &phone.register_head("order", 4, &contact, Some(600), ""),
            "",
        )
        .await;
    let challenge = phone.recv().await;
    let c = challenge
        .values(&HeaderName::WwwAuthenticate)
        .find_map(|h| h.text().and_then(|t| DigestParams::parse(&t).ok()))
        .expect("challenge");
    let auth = phone.answer_challenge(&c, "REGISTER", &format!("sip:{ACME}"), 1);
    phone
        .send(
            &phone.register_head(
                "order",
                5,
                &contact,
                Some(600),
                &format!("Authorization: {auth}\n"),
            ),
            "",
        )
        .await;
    assert_eq!(phone.recv().await.status(), Some(200));
    let auth = phone.answer_challenge(&c, "REGISTER", &format!("sip:{ACME}"), 2);
    phone
        .send(
            &phone.register_head(
                "order",
                3,
                &contact,
                Some(600),
                &format!("Authorization: {auth}\n"),
            ),
            "",
        )
        .await;
    assert_eq!(phone.recv().await.status(), Some(500));
}

#[tokio::test]
async fn a_retransmitted_register_gets_the_same_200() {
    let node = start(config()).await;
    let phone = ua(&node, "101", "pw-101-xxxxxx").await;
    let contact = format!("Contact: <sip:101@{}>\n", phone.local);
    phone
        .send(&phone.register_head("rtx", 1, &contact, Some(600), ""), "")
        .await;
    let challenge = phone.recv().await;
    let auth = phone.answer(
        &challenge,
        &HeaderName::WwwAuthenticate,
        "REGISTER",
        &format!("sip:{ACME}"),
    );
    let head = phone.register_head(
        "rtx",
        2,
        &contact,
        Some(600),
        &format!("Authorization: {auth}\n"),
    );
    phone.send(&head, "").await;
    let first = phone.recv().await.to_bytes();
    // The same bytes again (same branch, nonce and nc): a retransmission.
    phone.send(&head, "").await;
    let second = phone.recv().await.to_bytes();
    assert_eq!(first, second);
}

#[tokio::test]
async fn a_replayed_nonce_count_is_refused() {
    let node = start(config()).await;
    let phone = ua(&node, "101", "pw-101-xxxxxx").await;
    let contact = format!("Contact: <sip:101@{}>\n", phone.local);
    phone
        .send(
            &phone.register_head("replay", 1, &contact, Some(600), ""),
            "",
        )
        .await;
    let challenge = phone.recv().await;
    let auth = phone.answer(
        &challenge,
        &HeaderName::WwwAuthenticate,
        "REGISTER",
        &format!("sip:{ACME}"),
    );
    phone
        .send(
            &phone.register_head(
                "replay",
                2,
                &contact,
                Some(600),
                &format!("Authorization: {auth}\n"),
            ),
            "",
        )
        .await;
    assert_eq!(phone.recv().await.status(), Some(200));
    // Same credentials (nonce, nc=1) on a new request: replay.
    phone
        .send(
            &phone.register_head(
                "replay-2",
                1,
                &contact,
                Some(600),
                &format!("Authorization: {auth}\n"),
            ),
            "",
        )
        .await;
    assert_eq!(phone.recv().await.status(), Some(401));
}

#[tokio::test]
async fn an_expired_nonce_is_answered_with_stale_true() {
    let mut cfg = config();
    cfg.digest.nonce_ttl = Duration::ZERO;
    let node = start(cfg).await;
    let phone = ua(&node, "101", "pw-101-xxxxxx").await;
    let contact = format!("Contact: <sip:101@{}>\n", phone.local);
    phone
        .send(
            &phone.register_head("stale", 1, &contact, Some(600), ""),
            "",
        )
        .await;
    let challenge = phone.recv().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let auth = phone.answer(
        &challenge,
        &HeaderName::WwwAuthenticate,
        "REGISTER",
        &format!("sip:{ACME}"),
    );
    phone
        .send(
            &phone.register_head(
                "stale",
                2,
                &contact,
                Some(600),
                &format!("Authorization: {auth}\n"),
            ),
            "",
        )
        .await;
    let resp = phone.recv().await;
    assert_eq!(resp.status(), Some(401));
    assert!(resp
        .value_text(&HeaderName::WwwAuthenticate)
        .is_some_and(|v| v.contains("stale=true")));
}

#[tokio::test]
async fn unknown_user_and_wrong_password_get_the_same_answer() {
    let node = start(config()).await;
    let wrong = ua(&node, "101", "not-the-password").await;
    let unknown = ua(&node, "199", "whatever-password").await;
    let a = wrong.register_here(600).await;
    let b = unknown.register_here(600).await;
    assert_eq!((a.status(), b.status()), (Some(401), Some(401)));
    let shape = |m: &pbx_sip_message::Message| {
        m.values(&HeaderName::WwwAuthenticate)
            .map(|h| {
                let p = DigestParams::parse(&h.text().unwrap_or_default()).expect("challenge");
                format!(
                    "{:?}/{:?}/{:?}/{:?}",
                    p.get("realm"),
                    p.get("algorithm"),
                    p.get("qop"),
                    p.get("stale")
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(shape(&a), shape(&b));
}

#[tokio::test]
async fn a_device_may_not_register_another_devices_address() {
    let node = start(config()).await;
    // Device 101's credentials, To/From of 102.
    let phone = Ua::new(node.udp, "101", "pw-101-xxxxxx", ACME).await;
    let contact = format!("Contact: <sip:102@{}>\n", phone.local);
    let head = phone
        .register_head("steal", 1, &contact, Some(600), "")
        .replace("sip:101@", "sip:102@");
    phone.send(&head, "").await;
    let challenge = phone.recv().await;
    let auth = phone.answer(
        &challenge,
        &HeaderName::WwwAuthenticate,
        "REGISTER",
        &format!("sip:{ACME}"),
    );
    let head = phone
        .register_head(
            "steal",
            2,
            &contact,
            Some(600),
            &format!("Authorization: {auth}\n"),
        )
        .replace("<sip:101@", "<sip:102@");
    phone.send(&head, "").await;
    assert_eq!(phone.recv().await.status(), Some(403));
}

#[tokio::test]
async fn domains_decide_the_tenant_and_foreign_ones_are_refused() {
    let node = start(config()).await;
    // An unknown domain: 403 at once, no challenge, nothing revealed.
    let stranger = Ua::new(node.udp, "101", "pw-101-xxxxxx", "nowhere.example").await;
    assert_eq!(stranger.register_here(600).await.status(), Some(403));
    // Acme's credentials presented in Bolt's realm never verify.
    let wrong_tenant = Ua::new(node.udp, "101", "pw-101-xxxxxx", BOLT).await;
    assert_eq!(wrong_tenant.register_here(600).await.status(), Some(401));
    // Bolt's own device registers fine.
    let bolt = Ua::new(node.udp, "101", "pw-b101-xxxxx", BOLT).await;
    assert_eq!(bolt.register_here(600).await.status(), Some(200));
}

#[tokio::test]
async fn a_suspended_customer_cannot_register() {
    let node = start(config()).await;
    let mut tenant = pbx_sip_proxy::directory::Tenant::build(
        pbx_store::CustomerId(1),
        pbx_store::ResellerId(1),
        ACME,
        &[("101", &[("101", "pw-101-xxxxxx")])],
    );
    tenant.active = false;
    node.directory
        .replace(pbx_store::CustomerId(1), Some(tenant));
    let phone = ua(&node, "101", "pw-101-xxxxxx").await;
    assert_eq!(phone.register_here(600).await.status(), Some(403));
}

#[tokio::test]
async fn malformed_and_unsupported_requests_get_clear_errors() {
    let node = start(config()).await;
    let phone = ua(&node, "101", "pw-101-xxxxxx").await;
    let bad_contact = phone
        .register("Contact: sip:101@h?Route=x\n", Some(600), "")
        .await;
    assert_eq!(bad_contact.status(), Some(400));
    let require = phone.register_here_with_require().await;
    assert_eq!(require.status(), Some(420));
    assert_eq!(
        require.value_text(&HeaderName::Unsupported).as_deref(),
        Some("nosuchext")
    );
    let head = phone
        .register_head("tel", 1, "", None, "")
        .replace(&format!("REGISTER sip:{ACME}"), "REGISTER tel:+4930123");
    phone.send(&head, "").await;
    assert_eq!(phone.recv().await.status(), Some(416));
}

trait RequireExt {
    async fn register_here_with_require(&self) -> pbx_sip_message::Message;
}

impl RequireExt for Ua {
    async fn register_here_with_require(&self) -> pbx_sip_message::Message {
        let contact = format!("Contact: <sip:{}@{}>\n", self.user, self.local);
        self.send(
            &self.register_head("req", 1, &contact, Some(600), "Require: nosuchext\n"),
            "",
        )
        .await;
        self.recv().await
    }
}
