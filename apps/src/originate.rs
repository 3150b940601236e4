//! Calls the application server places through the proxy for a caller it
//! answered (an auto attendant's transfer). It is the INVITE's client
//! (RFC 3261 §17.1.1): the INVITE goes again until something answers, a
//! caller who hangs up while it rings gets it cancelled (§9.1), every
//! final answer is acknowledged (a refusal hop by hop, a 2xx in the
//! dialog it creates). Meanwhile the caller hears ringing. Once answered,
//! the call is kept like the calls the server answered (`server::adopt`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pbx_media::audio;
use pbx_media::audio::FRAME;
use pbx_sip_message::{Message, Method};
use tokio::sync::mpsc;

use crate::dialog::{new_branch, new_token, Dialog};
use crate::media::{read_offer, CallEvent, CallMedia};
use crate::server::{self, lock, reply, send_reliably, Inner};
use crate::Run;

/// T1 and T2 of RFC 3261 §17.1.1.1.
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
/// No answer at all (not even 100 Trying) this long: the proxy is gone.
const NO_ANSWER: Duration = Duration::from_secs(32);
/// Longest a placed call rings before we give up on it (the proxy's own
/// no-answer forwarding acts well before).
const LONGEST_RING: Duration = Duration::from_secs(180);

/// A call we placed that was answered.
pub(crate) struct Placed {
    pub call_id: String,
    pub media: Arc<CallMedia>,
    /// Its BYE (a hang-up) and keys.
    pub events: mpsc::Receiver<CallEvent>,
}

/// How placing a call ended.
pub(crate) enum Outcome {
    Answered(Placed),
    /// Refused with this status (or 408: nothing answered in time).
    Refused(u16),
    /// The caller we placed it for hung up first.
    CallerGone,
}

/// Whom a placed call is for and whom it shows as calling.
pub(crate) struct Target<'a> {
    /// The Request-URI user: an extension's or a ring group's number.
    pub user: &'a str,
    /// The customer's SIP domain: the proxy routes within that customer.
    pub domain: &'a str,
    /// The caller's number or name, shown to the phones.
    pub caller: &'a str,
}

/// The parts of our INVITE that the requests of its transaction repeat.
struct Invite {
    uri: String,
    via: String,
    from: String,
    to: String,
    call_id: String,
}

impl Invite {
    fn request(&self, method: &str, to: Option<&str>, extra: &str, body: &str) -> Bytes {
        Bytes::from(format!(
            "{method} {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\n\
             Call-ID: {}\r\nCSeq: 1 {method}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            self.uri,
            self.via,
            self.from,
            to.unwrap_or(&self.to),
            self.call_id,
            body.len()
        ))
    }
}

/// What may stand in a display name and a URI user unquoted: a caller's
/// number, `anonymous`.
fn shown(caller: &str) -> String {
    let kept: String = caller
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "+-_.*#".contains(*c))
        .take(32)
        .collect();
    if kept.is_empty() {
        "anonymous".to_owned()
    } else {
        kept
    }
}

/// 425 Hz, a second on and four off (ETSI ES 201 970, as German phones
/// ring back).
fn ringback() -> Vec<i16> {
    let mut r = audio::tone(425.0, 1000, 0.2);
    r.extend(audio::silence(4000));
    r
}

/// Places a call to `target` for the caller of `run`, who hears ringing
/// meanwhile.
pub(crate) async fn place(run: &mut Run, target: &Target<'_>) -> Outcome {
    let inner = run.inner.clone();
    let Some(proxy) = inner.proxy() else {
        return Outcome::Refused(503);
    };
    let (events_tx, events) = mpsc::channel(32);
    let media = match CallMedia::offering(inner.local.ip(), events_tx.clone()).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "application server: no media socket to place a call");
            return Outcome::Refused(503);
        }
    };
    let caller = shown(target.caller);
    let invite = Invite {
        uri: format!("sip:{}@{}", target.user, target.domain),
        via: format!("SIP/2.0/UDP {};branch={}", inner.local, new_branch()),
        from: format!(
            "\"{caller}\" <sip:{caller}@{}>;tag={}",
            target.domain,
            new_token()
        ),
        to: format!("<sip:{}@{}>", target.user, target.domain),
        call_id: format!("{}@app", new_token()),
    };
    let session = rand::random::<u32>() as u64;
    let sdp = media.offer_sdp(session);
    let contact = format!(
        "Contact: <sip:app@{}>\r\nContent-Type: application/sdp\r\n",
        inner.local
    );
    let request = invite.request("INVITE", None, &contact, &sdp);
    let (answers_tx, mut answers) = mpsc::channel(16);
    lock(&inner.placing).insert(invite.call_id.clone(), answers_tx);
    tracing::info!(call_id = %run.call_id, placed = %invite.call_id, to = %target.user,
        "application server places a call");
    let outcome = transact(run, &inner, proxy, &invite, request, &mut answers).await;
    lock(&inner.placing).remove(&invite.call_id);
    match outcome {
        Transacted::Answered(ok, caller_gone) => {
            match answered(&inner, proxy, &invite, &ok, (&media, session), events_tx) {
                Some(()) if caller_gone => {
                    // Answered as the CANCEL crossed it: ended at once.
                    server::hang_up_placed(&inner, &invite.call_id).await;
                    Outcome::CallerGone
                }
                Some(()) => Outcome::Answered(Placed {
                    call_id: invite.call_id.clone(),
                    media,
                    events,
                }),
                None => Outcome::Refused(502),
            }
        }
        Transacted::Refused(code) => Outcome::Refused(code),
        Transacted::CallerGone => Outcome::CallerGone,
    }
}

enum Transacted {
    /// The 2xx, and whether the caller had hung up meanwhile.
    Answered(Box<Message>, bool),
    Refused(u16),
    CallerGone,
}

/// The INVITE transaction: sends it (again at T1, doubling, until a
/// provisional answer), rings the caller, cancels when the caller hangs
/// up or it rings too long, and acknowledges a refusal.
async fn transact(
    run: &mut Run,
    inner: &Arc<Inner>,
    proxy: SocketAddr,
    invite: &Invite,
    request: Bytes,
    answers: &mut mpsc::Receiver<Message>,
) -> Transacted {
    reply(inner, request.clone(), proxy).await;
    let ring = ringback();
    let mut at = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = tokio::time::Instant::now();
    let mut resend_at = started + T1;
    let mut wait = T1;
    let mut provisional = false;
    let mut cancelled: Option<Transacted> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = tokio::time::Instant::now();
                if cancelled.is_none() {
                    let end = (at + FRAME).min(ring.len());
                    run.media.send_frame(&ring[at..end]);
                    at = if end == ring.len() { 0 } else { end };
                }
                if !provisional && now >= resend_at {
                    if now - started >= NO_ANSWER {
                        return cancelled.unwrap_or(Transacted::Refused(408));
                    }
                    reply(inner, request.clone(), proxy).await;
                    wait = (wait * 2).min(T2);
                    resend_at = now + wait;
                }
                if cancelled.is_none() && provisional && now - started >= LONGEST_RING {
                    send_reliably(inner, invite.request("CANCEL", None, "", ""), proxy).await;
                    cancelled = Some(Transacted::Refused(408));
                }
                if cancelled.is_some() && now - started >= LONGEST_RING + NO_ANSWER {
                    // Nothing ended the cancelled INVITE: give up on it.
                    return cancelled.unwrap_or(Transacted::CallerGone);
                }
            }
            event = run.events.recv(), if cancelled.is_none() => match event {
                Some(CallEvent::Key(_)) => {}
                Some(CallEvent::Hangup) | None => {
                    // A CANCEL only once something answered (§9.1); until
                    // then the INVITE's answer is awaited.
                    if provisional {
                        send_reliably(inner, invite.request("CANCEL", None, "", ""), proxy).await;
                    }
                    cancelled = Some(Transacted::CallerGone);
                }
            },
            answer = answers.recv() => {
                let Some(answer) = answer else {
                    return Transacted::Refused(500);
                };
                if answer.cseq().method != Method::Invite {
                    continue; // the 200 to our CANCEL
                }
                let Some(code) = answer.status() else { continue };
                match code {
                    100..=199 => {
                        if !provisional && matches!(cancelled, Some(Transacted::CallerGone)) {
                            send_reliably(inner, invite.request("CANCEL", None, "", ""), proxy).await;
                        }
                        provisional = true;
                    }
                    200..=299 => {
                        let gone = matches!(cancelled, Some(Transacted::CallerGone));
                        return Transacted::Answered(Box::new(answer), gone);
                    }
                    _ => {
                        // Hop by hop: the ACK of a refusal repeats the
                        // INVITE's branch with the refusal's To (§17.1.1.3).
                        let to = answer.to().to_string();
                        let ack = invite.request("ACK", Some(&to), "", "");
                        reply(inner, ack, proxy).await;
                        return cancelled.unwrap_or(Transacted::Refused(code));
                    }
                }
            }
        }
    }
}

/// Takes the 2xx: its SDP answer, the dialog, our ACK; the call is kept
/// from then on. None when the answer is unusable (it is then hung up).
fn answered(
    inner: &Arc<Inner>,
    proxy: SocketAddr,
    invite: &Invite,
    ok: &Message,
    (media, session): (&Arc<CallMedia>, u64),
    events: mpsc::Sender<CallEvent>,
) -> Option<()> {
    let dialog = Dialog::from_answer(ok, &invite.from)?;
    let (ack, _) = dialog.ack(inner.local)?;
    // In-dialog requests go through the proxy that recorded the route.
    server::send_now(inner, &ack, proxy);
    let Some(answer) = read_offer(&ok.body) else {
        tracing::warn!(placed = %invite.call_id, "placed call answered without usable audio");
        let mut d = dialog;
        if let Some((bye, _)) = d.request("BYE", inner.local) {
            server::send_now(inner, &bye, proxy);
        }
        return None;
    };
    media.answered(&answer);
    server::adopt(inner, dialog, proxy, media.clone(), events, (ack, session));
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_placed_call_shows_is_plain() {
        assert_eq!(shown("+4930123"), "+4930123");
        assert_eq!(shown("\"evil\" <sip:x>"), "evilsipx");
        assert_eq!(shown(""), "anonymous");
        assert_eq!(shown(&"9".repeat(100)).len(), 32);
    }

    #[test]
    fn the_transactions_requests_share_its_branch() {
        let invite = Invite {
            uri: "sip:102@acme.test".into(),
            via: "SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKapp1".into(),
            from: "\"+4930\" <sip:+4930@acme.test>;tag=ours".into(),
            to: "<sip:102@acme.test>".into(),
            call_id: "placed-1@app".into(),
        };
        let cancel = invite.request("CANCEL", None, "", "");
        let cancel = Message::parse_datagram(cancel, &Default::default()).expect("CANCEL");
        assert_eq!(cancel.cseq().method, Method::Cancel);
        assert_eq!(cancel.top_via().branch().as_deref(), Some("z9hG4bKapp1"));
        assert!(cancel.to().tag().is_none());
        let ack = invite.request("ACK", Some("<sip:102@acme.test>;tag=x"), "", "");
        let ack = Message::parse_datagram(ack, &Default::default()).expect("ACK");
        assert_eq!(ack.to().tag().as_deref(), Some("x"));
        assert_eq!(ack.cseq().seq, 1);
    }
}
