//! One call's audio at the application server: an RTP socket on loopback,
//! facing the media relay (calls to applications are always anchored, so
//! the relay is the only side a phone sees). It plays audio paced at 20 ms
//! a frame, records what the caller says (back in order through a jitter
//! buffer) and hears the keys the caller presses (RFC 4733).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pbx_media::audio::FRAME;
use pbx_media::dtmf::Detector;
use pbx_media::g711::Law;
use pbx_media::jitter::{Inbound, Keep};
use pbx_media::rtp::{self, RtpHeader};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// What happens to a call while an application runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEvent {
    /// The caller pressed a key.
    Key(char),
    /// The caller hung up (or the call otherwise ended).
    Hangup,
}

/// How a play or a recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It ran to its end (a recording: to its longest).
    Done,
    Key(char),
    Hangup,
}

/// What the caller's SDP offers, as far as the applications care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub address: SocketAddr,
    pub law: Law,
    pub dtmf: Option<u8>,
}

/// Reads an SDP offer: the first audio stream's address, the first G.711
/// law it lists, and its telephone-event payload type. None when there is
/// no audio stream we can answer.
pub fn read_offer(body: &[u8]) -> Option<Offer> {
    let text = std::str::from_utf8(body).ok()?;
    let mut session_ip: Option<IpAddr> = None;
    let mut media_ip: Option<IpAddr> = None;
    let mut in_audio = false;
    let mut seen_audio = false;
    let (mut port, mut formats, mut dtmf) = (0u16, Vec::new(), None);
    for line in text.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            if seen_audio {
                break;
            }
            let mut parts = m.split_whitespace();
            in_audio = parts.next() == Some("audio");
            if in_audio {
                seen_audio = true;
                port = parts.next()?.split('/').next()?.parse().ok()?;
                parts.next();
                formats = parts.filter_map(|f| f.parse::<u8>().ok()).collect();
            }
        } else if let Some(c) = line.strip_prefix("c=") {
            let ip = c.split_whitespace().nth(2)?.parse().ok()?;
            if in_audio {
                media_ip = Some(ip);
            } else if !seen_audio {
                session_ip = Some(ip);
            }
        } else if let Some(map) = line.strip_prefix("a=rtpmap:") {
            if in_audio {
                let (pt, name) = map.split_once(' ')?;
                if name
                    .to_ascii_lowercase()
                    .starts_with("telephone-event/8000")
                {
                    dtmf = pt.parse().ok();
                }
            }
        }
    }
    if port == 0 {
        return None;
    }
    let law = formats.iter().find_map(|&pt| Law::of_payload_type(pt))?;
    Some(Offer {
        address: SocketAddr::new(media_ip.or(session_ip)?, port),
        law,
        dtmf: dtmf.filter(|pt| formats.contains(pt)),
    })
}

/// The telephone-event payload type we offer.
const OFFERED_EVENTS: u8 = 101;

struct Out {
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    first: bool,
}

/// A call's media endpoint.
pub struct CallMedia {
    socket: UdpSocket,
    local: SocketAddr,
    /// Where audio goes: the offer's address, then where the relay's
    /// packets really come from.
    remote: Mutex<SocketAddr>,
    /// The law and telephone-event type agreed: the offer's, or (a call we
    /// place) the answer's.
    format: Mutex<(Law, Option<u8>)>,
    out: Mutex<Out>,
    inbound: Mutex<Option<Inbound>>,
    /// When the relay last sent us anything of the call (a sign of life).
    heard_at: Mutex<std::time::Instant>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl CallMedia {
    /// Opens a socket on `ip` answering `offer`, and starts receiving:
    /// keys go to `events`. The receiver ends when the last handle goes.
    pub async fn open(
        ip: IpAddr,
        offer: &Offer,
        events: mpsc::Sender<CallEvent>,
    ) -> std::io::Result<Arc<CallMedia>> {
        CallMedia::bind(ip, offer.address, (offer.law, offer.dtmf), events).await
    }

    /// Opens a socket on `ip` for a call we place: what it offers is
    /// [`CallMedia::offer_sdp`], and nothing is heard until
    /// [`CallMedia::answered`].
    pub async fn offering(
        ip: IpAddr,
        events: mpsc::Sender<CallEvent>,
    ) -> std::io::Result<Arc<CallMedia>> {
        let nowhere = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);
        CallMedia::bind(ip, nowhere, (Law::Mu, Some(OFFERED_EVENTS)), events).await
    }

    async fn bind(
        ip: IpAddr,
        remote: SocketAddr,
        format: (Law, Option<u8>),
        events: mpsc::Sender<CallEvent>,
    ) -> std::io::Result<Arc<CallMedia>> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let media = Arc::new(CallMedia {
            local: socket.local_addr()?,
            socket,
            remote: Mutex::new(remote),
            format: Mutex::new(format),
            out: Mutex::new(Out {
                sequence: rand::random(),
                timestamp: rand::random(),
                ssrc: rand::random(),
                first: true,
            }),
            inbound: Mutex::new(None),
            heard_at: Mutex::new(std::time::Instant::now()),
        });
        let weak = Arc::downgrade(&media);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let mut keys = Detector::default();
            loop {
                let Some(media) = weak.upgrade() else { return };
                // Wake now and then to notice the call has gone.
                let got =
                    tokio::time::timeout(Duration::from_secs(1), media.socket.recv_from(&mut buf))
                        .await;
                match got {
                    Ok(Ok((n, from))) => media.on_packet(&buf[..n], from, &mut keys, &events),
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "application media receive error");
                        return;
                    }
                    Err(_) => {}
                }
            }
        });
        Ok(media)
    }

    /// The SDP offer of a call we place: both G.711 laws and keys.
    pub fn offer_sdp(&self, session: u64) -> String {
        let ip = self.local.ip();
        let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
        let d = OFFERED_EVENTS;
        format!(
            "v=0\r\no=- {session} 1 IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\n\
             m=audio {} RTP/AVP 0 8 {d}\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:{d} telephone-event/8000\r\na=fmtp:{d} 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
            self.local.port()
        )
    }

    /// The answer to our offer: where audio goes, in which law.
    pub fn answered(&self, answer: &Offer) {
        *lock(&self.remote) = answer.address;
        *lock(&self.format) = (answer.law, answer.dtmf);
    }

    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// The SDP answer (version `version` of session `session`).
    pub fn answer_sdp(&self, session: u64, version: u64) -> String {
        let ip = self.local.ip();
        let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
        let (law, dtmf) = *lock(&self.format);
        let pt = law.payload_type();
        let mut sdp = format!(
            "v=0\r\no=- {session} {version} IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\n"
        );
        match dtmf {
            Some(d) => sdp.push_str(&format!(
                "m=audio {} RTP/AVP {pt} {d}\r\na=rtpmap:{pt} {}/8000\r\na=rtpmap:{d} telephone-event/8000\r\na=fmtp:{d} 0-16\r\n",
                self.local.port(),
                law.name()
            )),
            None => sdp.push_str(&format!(
                "m=audio {} RTP/AVP {pt}\r\na=rtpmap:{pt} {}/8000\r\n",
                self.local.port(),
                law.name()
            )),
        }
        sdp.push_str("a=ptime:20\r\na=sendrecv\r\n");
        sdp
    }

    /// A new offer in the call (a re-INVITE): its address is where audio goes now.
    pub fn reoffer(&self, offer: &Offer) {
        *lock(&self.remote) = offer.address;
    }

    fn on_packet(
        &self,
        p: &[u8],
        from: SocketAddr,
        keys: &mut Detector,
        events: &mpsc::Sender<CallEvent>,
    ) {
        // Only the relay talks to us; its packets come from the offer's
        // address, perhaps another port of it (symmetric RTP: latch).
        {
            let mut remote = lock(&self.remote);
            if from.ip() != remote.ip() {
                return;
            }
            *remote = from;
        }
        *lock(&self.heard_at) = std::time::Instant::now();
        let Some((h, _, payload)) = rtp::parse(p) else {
            return;
        };
        if Some(h.payload_type) == lock(&self.format).1 {
            if let Some(key) = keys.on_event(h.timestamp, payload) {
                tracing::debug!(%key, "key pressed (RFC 4733)");
                let _ = events.try_send(CallEvent::Key(key));
            }
            return;
        }
        let Some(law) = Law::of_payload_type(h.payload_type) else {
            return;
        };
        let mut inbound = lock(&self.inbound);
        let Some(inbound) = inbound.as_mut() else {
            return;
        };
        let mut samples = Vec::with_capacity(payload.len());
        law.decode_into(payload, &mut samples);
        inbound.push(h.ssrc, h.timestamp, samples);
    }

    /// Sends one frame of audio (a mixer paces them).
    pub fn send_frame(&self, frame: &[i16]) {
        let law = lock(&self.format).0;
        let mut payload = Vec::with_capacity(FRAME);
        law.encode_into(frame, &mut payload);
        payload.resize(FRAME, law.silence());
        let packet = {
            let mut out = lock(&self.out);
            let h = RtpHeader {
                payload_type: law.payload_type(),
                sequence: out.sequence,
                timestamp: out.timestamp,
                ssrc: out.ssrc,
            };
            let packet = rtp::packet(&h, out.first, &payload);
            out.first = false;
            out.sequence = out.sequence.wrapping_add(1);
            out.timestamp = out.timestamp.wrapping_add(FRAME as u32);
            packet
        };
        let to = *lock(&self.remote);
        // A full socket buffer loses a frame, as a network would.
        let _ = self.socket.try_send_to(&packet, to);
    }

    /// Plays `samples`, 20 ms a frame; a key ends it early when
    /// `keys_stop` (a caller skipping a greeting), a hang-up always.
    pub async fn play(
        &self,
        samples: &[i16],
        events: &mut mpsc::Receiver<CallEvent>,
        keys_stop: bool,
    ) -> Ended {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for frame in samples.chunks(FRAME) {
            tokio::select! {
                _ = tick.tick() => self.send_frame(frame),
                event = events.recv() => match event {
                    Some(CallEvent::Key(k)) if keys_stop => return Ended::Key(k),
                    Some(CallEvent::Key(_)) => {}
                    Some(CallEvent::Hangup) | None => return Ended::Hangup,
                },
            }
        }
        Ended::Done
    }

    /// Waits up to `longest` for a key, sending silence meanwhile (every
    /// NAT and relay on the way sees the call alive).
    pub async fn wait_key(
        &self,
        longest: Duration,
        events: &mut mpsc::Receiver<CallEvent>,
    ) -> Ended {
        let deadline = tokio::time::sleep(longest);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let silence = [0i16; FRAME];
        loop {
            tokio::select! {
                _ = &mut deadline => return Ended::Done,
                _ = tick.tick() => self.send_frame(&silence),
                event = events.recv() => match event {
                    Some(CallEvent::Key(k)) => return Ended::Key(k),
                    Some(CallEvent::Hangup) | None => return Ended::Hangup,
                },
            }
        }
    }

    /// How long nothing came from the caller's side (not even comfort
    /// noise): a phone gone without hanging up.
    pub fn silent_for(&self) -> Duration {
        lock(&self.heard_at).elapsed()
    }

    /// Starts keeping what the caller says for a mixer, which takes it a
    /// frame at a time ([`CallMedia::take_frame`]).
    pub fn start_listening(&self) {
        // 60 ms of reordering, at most 200 ms held.
        *lock(&self.inbound) = Some(Inbound::new(480, Keep::Latest(10 * FRAME)));
    }

    /// Stops keeping what the caller says.
    pub fn stop_listening(&self) {
        *lock(&self.inbound) = None;
    }

    /// The next frame the caller said into `frame`; false (and silence)
    /// when nothing is there (lost, late, or the caller sends nothing).
    pub fn take_frame(&self, frame: &mut [i16]) -> bool {
        let mut inbound = lock(&self.inbound);
        match inbound.as_mut() {
            Some(inbound) => inbound.take_frame(frame),
            None => {
                frame.fill(0);
                false
            }
        }
    }

    /// Records what the caller says for at most `longest`, until `stop_key`
    /// or a hang-up; returns the audio and how it ended.
    pub async fn record(
        &self,
        longest: Duration,
        events: &mut mpsc::Receiver<CallEvent>,
        stop_key: char,
    ) -> (Vec<i16>, Ended) {
        let longest_samples = (longest.as_millis() as usize).saturating_mul(8);
        // 100 ms: what the relay's path on loopback can reorder.
        *lock(&self.inbound) = Some(Inbound::new(800, Keep::First(longest_samples)));
        let deadline = tokio::time::sleep(longest);
        tokio::pin!(deadline);
        // Silence keeps going out, so that every NAT and relay on the way
        // sees the call alive.
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let silence = [0i16; FRAME];
        let ended = loop {
            tokio::select! {
                _ = &mut deadline => break Ended::Done,
                _ = tick.tick() => self.send_frame(&silence),
                event = events.recv() => match event {
                    Some(CallEvent::Key(k)) if k == stop_key => break Ended::Key(k),
                    Some(CallEvent::Key(_)) => {}
                    Some(CallEvent::Hangup) | None => break Ended::Hangup,
                },
            }
        };
        let mut samples = lock(&self.inbound)
            .take()
            .map(Inbound::finish)
            .unwrap_or_default();
        samples.truncate(longest_samples);
        (samples, ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_are_read_for_their_audio_address_law_and_keys() {
        let offer = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 9 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n";
        assert_eq!(
            read_offer(offer.as_bytes()),
            Some(Offer {
                address: "192.0.2.1:4000".parse().expect("addr"),
                law: Law::A,
                dtmf: Some(101),
            })
        );
        let media_level =
            "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4002 RTP/AVP 0\r\nc=IN IP4 198.51.100.7\r\n";
        let o = read_offer(media_level.as_bytes()).expect("offer");
        assert_eq!(
            o.address,
            "198.51.100.7:4002".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!((o.law, o.dtmf), (Law::Mu, None));
        assert_eq!(
            read_offer(b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 9\r\n"),
            None,
            "no G.711"
        );
        assert_eq!(read_offer(b"v=0\r\nm=video 4000 RTP/AVP 96\r\n"), None);
        assert_eq!(read_offer(b"\xff\xfe"), None);
    }

    #[tokio::test]
    async fn silence_from_the_caller_side_is_measured() {
        let phone = UdpSocket::bind("127.0.0.1:0").await.expect("phone");
        let offer = Offer {
            address: phone.local_addr().expect("addr"),
            law: Law::Mu,
            dtmf: None,
        };
        let (tx, _rx) = mpsc::channel(16);
        let media = CallMedia::open("127.0.0.1".parse().expect("ip"), &offer, tx)
            .await
            .expect("open");
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(media.silent_for() >= Duration::from_millis(100));
        let h = RtpHeader {
            payload_type: 13,
            sequence: 1,
            timestamp: 1,
            ssrc: 1,
        };
        // Comfort noise counts: the phone is there.
        phone
            .send_to(&rtp::packet(&h, false, &[40]), media.local())
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(media.silent_for() < Duration::from_millis(100));
    }

    #[tokio::test]
    async fn plays_paced_frames_and_records_and_hears_keys() {
        let phone = UdpSocket::bind("127.0.0.1:0").await.expect("phone");
        let offer = Offer {
            address: phone.local_addr().expect("addr"),
            law: Law::Mu,
            dtmf: Some(101),
        };
        let (tx, mut rx) = mpsc::channel(16);
        let media = CallMedia::open("127.0.0.1".parse().expect("ip"), &offer, tx)
            .await
            .expect("open");
        let tone = pbx_media::audio::tone(1000.0, 100, 0.5);
        assert_eq!(media.play(&tone, &mut rx, true).await, Ended::Done);
        let mut buf = [0u8; 2048];
        let mut got = Vec::new();
        for _ in 0..5 {
            let (n, _) = phone.recv_from(&mut buf).await.expect("frame");
            let (h, _, payload) = rtp::parse(&buf[..n]).expect("rtp");
            assert_eq!((h.payload_type, payload.len()), (0, 160));
            Law::Mu.decode_into(payload, &mut got);
        }
        assert!(pbx_media::audio::tone_power(&got, 1000.0) > 1e6);
        // The phone sends 200 ms of a 440 Hz tone, then presses '#'.
        let at = media.local();
        let sender = tokio::spawn(async move {
            let voice = pbx_media::audio::tone(440.0, 200, 0.5);
            for (i, frame) in voice.chunks(FRAME).enumerate() {
                let h = RtpHeader {
                    payload_type: 0,
                    sequence: i as u16,
                    timestamp: (i * FRAME) as u32,
                    ssrc: 7,
                };
                let mut payload = Vec::new();
                Law::Mu.encode_into(frame, &mut payload);
                let _ = phone.send_to(&rtp::packet(&h, i == 0, &payload), at).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let key = pbx_media::dtmf::Event {
                event: 11,
                end: true,
                volume: 10,
                duration: 800,
            };
            let h = RtpHeader {
                payload_type: 101,
                sequence: 99,
                timestamp: 9999,
                ssrc: 7,
            };
            for _ in 0..3 {
                let _ = phone
                    .send_to(&rtp::packet(&h, false, &key.write()), at)
                    .await;
            }
        });
        let (recorded, ended) = media.record(Duration::from_secs(5), &mut rx, '#').await;
        sender.await.expect("sender");
        assert_eq!(ended, Ended::Key('#'));
        assert_eq!(recorded.len(), 1600);
        assert!(
            pbx_media::audio::tone_power(&recorded, 440.0)
                > 50.0 * pbx_media::audio::tone_power(&recorded, 1000.0)
        );
    }
}
