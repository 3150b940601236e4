//! Conference rooms: the callers who dialled a room's number (and keyed
//! its PIN, if it has one) hear each other. Each room has a mixer while
//! anybody is in it: every 20 ms it takes one frame from each participant
//! (put back in order by its jitter buffer) and sends each the sum of all
//! the others, never its own voice, saturated to 16 bits. A rising tone
//! tells the room someone joined, a falling one that someone left. The
//! room's most participants is enforced at the door; a PIN is tried three
//! times before the call ends, and a caller who keyed ten wrong PINs for a
//! room within 15 minutes is refused unchecked until they have passed; a participant silent for a minute (a phone
//! gone without hanging up) is ended. `*6` mutes a participant (it hears a
//! low tone) and unmutes it (a high one).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use pbx_media::audio::{self, FRAME};
use pbx_store::{ConferenceRoomId, Principal};

use crate::keys::{self, Guesses};
use crate::media::{CallEvent, CallMedia, Ended};
use crate::prompts::Prompts;
use crate::Run;

/// Tries at the PIN per call.
const PIN_TRIES: usize = 3;
/// A participant from whom nothing came this long is gone (no phone sends
/// nothing for a minute: silence suppression still sends comfort noise).
const SILENCE: Duration = Duration::from_secs(60);

/// The rooms in use on this node, and who keyed wrong PINs lately.
#[derive(Default)]
pub struct Rooms {
    rooms: Mutex<HashMap<ConferenceRoomId, Arc<Room>>>,
    wrong_pins: Guesses<(ConferenceRoomId, String)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One room in use: who is in it, and the tones everyone is to hear.
#[derive(Default)]
struct Room {
    inside: Mutex<Inside>,
}

#[derive(Default)]
struct Inside {
    participants: Vec<Participant>,
    /// Samples added to everyone's audio (join and leave tones), played
    /// from the front.
    cue: std::collections::VecDeque<i16>,
    next_id: u64,
}

struct Participant {
    id: u64,
    media: Arc<CallMedia>,
    /// Keyed `*6`: the others do not hear it.
    muted: bool,
    /// What only this participant is to hear (the mute and unmute tones).
    cue: std::collections::VecDeque<i16>,
}

/// Whether a caller was let in: as which participant, or not (full).
#[derive(Debug, PartialEq, Eq)]
pub enum Door {
    In(u64),
    Full,
}

impl Door {
    pub fn is_in(&self) -> bool {
        matches!(self, Door::In(_))
    }
}

impl Rooms {
    /// How many are in `room` now.
    fn count(&self, room: ConferenceRoomId) -> usize {
        lock(&self.rooms)
            .get(&room)
            .map_or(0, |r| lock(&r.inside).participants.len())
    }

    /// Lets `media` into `room` unless `most` are in it; starts the
    /// room's mixer for the first one.
    pub fn enter(
        self: &Arc<Self>,
        room: ConferenceRoomId,
        most: usize,
        media: Arc<CallMedia>,
    ) -> Door {
        let mut rooms = lock(&self.rooms);
        let (r, new) = match rooms.get(&room) {
            Some(r) => (r.clone(), false),
            None => {
                let r = Arc::new(Room::default());
                rooms.insert(room, r.clone());
                (r, true)
            }
        };
        let mut inside = lock(&r.inside);
        if inside.participants.len() >= most {
            return Door::Full;
        }
        inside.next_id += 1;
        let id = inside.next_id;
        media.start_listening();
        inside.participants.push(Participant {
            id,
            media,
            muted: false,
            cue: std::collections::VecDeque::new(),
        });
        let joined = join_tone();
        cue(&mut inside.cue, &joined);
        drop(inside);
        if new {
            tokio::spawn(mix(Arc::downgrade(self), room, r));
        }
        Door::In(id)
    }

    /// Mutes participant `id` of `room`, or unmutes it; it hears a low
    /// tone when muted, a high one when heard again. Returns whether it
    /// is muted now.
    pub fn toggle_mute(&self, room: ConferenceRoomId, id: u64) -> bool {
        let rooms = lock(&self.rooms);
        let Some(r) = rooms.get(&room) else {
            return false;
        };
        let mut inside = lock(&r.inside);
        let Some(p) = inside.participants.iter_mut().find(|p| p.id == id) else {
            return false;
        };
        p.muted = !p.muted;
        let tone = audio::tone(if p.muted { 440.0 } else { 880.0 }, 200, 0.25);
        cue(&mut p.cue, &tone);
        p.muted
    }

    /// Takes participant `id` out of `room`; the others hear it.
    pub fn leave(&self, room: ConferenceRoomId, id: u64) {
        let rooms = lock(&self.rooms);
        let Some(r) = rooms.get(&room) else { return };
        let mut inside = lock(&r.inside);
        if let Some(at) = inside.participants.iter().position(|p| p.id == id) {
            let gone = inside.participants.remove(at);
            gone.media.stop_listening();
            let left = leave_tone();
            cue(&mut inside.cue, &left);
        }
    }
}

/// Adds `tone` to what everyone is to hear, over what is queued already.
fn cue(queue: &mut std::collections::VecDeque<i16>, tone: &[i16]) {
    for (i, &s) in tone.iter().enumerate() {
        match queue.get_mut(i) {
            Some(q) => *q = q.saturating_add(s),
            None => queue.push_back(s),
        }
    }
}

/// Two short notes, rising.
fn join_tone() -> Vec<i16> {
    let mut t = audio::tone(660.0, 120, 0.25);
    t.extend(audio::tone(880.0, 120, 0.25));
    t
}

/// Two short notes, falling.
fn leave_tone() -> Vec<i16> {
    let mut t = audio::tone(880.0, 120, 0.25);
    t.extend(audio::tone(660.0, 120, 0.25));
    t
}

/// One room's mixer: a frame for everyone every 20 ms while anybody is
/// in; then the room is forgotten.
async fn mix(rooms: Weak<Rooms>, id: ConferenceRoomId, room: Arc<Room>) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut mixer = Mixer::default();
    loop {
        tick.tick().await;
        let Some(rooms) = rooms.upgrade() else { return };
        // Taken in the order `enter` takes them: the map, then the room.
        let mut map = lock(&rooms.rooms);
        let mut inside = lock(&room.inside);
        if inside.participants.is_empty() {
            map.remove(&id);
            return;
        }
        drop(map);
        let Inside {
            participants, cue, ..
        } = &mut *inside;
        mixer.mix(participants.as_mut_slice(), cue);
    }
}

/// What mixing keeps between frames (so that a tick allocates nothing).
#[derive(Default)]
struct Mixer {
    heard: Vec<[i16; FRAME]>,
}

impl Mixer {
    /// One frame: each participant gets everyone's audio but its own, and
    /// the cue.
    fn mix(&mut self, participants: &mut [Participant], cue: &mut std::collections::VecDeque<i16>) {
        self.heard.resize(participants.len(), [0; FRAME]);
        let mut total = [0i32; FRAME];
        for (p, frame) in participants.iter().zip(self.heard.iter_mut()) {
            p.media.take_frame(frame);
            if p.muted {
                // Taken all the same, so that it does not queue up.
                frame.fill(0);
            }
            for (t, &s) in total.iter_mut().zip(frame.iter()) {
                *t += i32::from(s);
            }
        }
        let mut tone = [0i32; FRAME];
        for (t, s) in tone.iter_mut().zip(cue.drain(..FRAME.min(cue.len()))) {
            *t = i32::from(s);
        }
        let mut out = [0i16; FRAME];
        for (p, own) in participants.iter_mut().zip(self.heard.iter()) {
            let mut mine = [0i32; FRAME];
            for (m, s) in mine.iter_mut().zip(p.cue.drain(..FRAME.min(p.cue.len()))) {
                *m = i32::from(s);
            }
            for i in 0..FRAME {
                let v = total[i] - i32::from(own[i]) + tone[i] + mine[i];
                out[i] = v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
            }
            p.media.send_frame(&out);
        }
    }
}

/// Runs a caller in `room`; true when the caller hung up (no BYE needed).
pub(crate) async fn join(mut run: Run, room: ConferenceRoomId) -> bool {
    let store = run.inner.store.clone();
    let found = store
        .conference_rooms()
        .get(&Principal::system(), room)
        .await;
    let room_settings = match found {
        Ok(r) => r,
        Err(e) => {
            // Deleted since the proxy routed the call, or the database is away.
            tracing::info!(error = %e, room = room.0, call_id = %run.call_id, "conference room not found");
            return false;
        }
    };
    let prompts = Prompts::of_customer(&store, room_settings.customer_id).await;
    if let Some(pin) = room_settings.pin.as_deref() {
        match ask_pin(&mut run, prompts, pin, room).await {
            Pin::Right => {}
            Pin::Wrong => return false,
            Pin::HungUp => return true,
        }
    }
    let most = usize::try_from(room_settings.max_participants).unwrap_or(0);
    let rooms = run.inner.rooms.clone();
    // Said before the room's audio takes over the call's.
    if rooms.count(room) == 0
        && run
            .media
            .play(prompts.first_participant(), &mut run.events, false)
            .await
            == Ended::Hangup
    {
        return true;
    }
    let id = match rooms.enter(room, most, run.media.clone()) {
        Door::In(id) => id,
        Door::Full => {
            tracing::info!(room = room.0, call_id = %run.call_id, "conference room full");
            return run
                .media
                .play(prompts.conference_full(), &mut run.events, false)
                .await
                == Ended::Hangup;
        }
    };
    tracing::info!(room = room.0, call_id = %run.call_id, "joined conference");
    // In the room the mixer speaks; `*6` mutes and unmutes. The mixer's
    // frames keep the call alive at the relay, so a phone gone without a
    // BYE is noticed here, by its silence.
    let mut check = tokio::time::interval(SILENCE / 6);
    let mut last_key = None;
    let hung_up = loop {
        tokio::select! {
            event = run.events.recv() => match event {
                Some(CallEvent::Hangup) | None => break true,
                Some(CallEvent::Key(k)) => {
                    if last_key == Some('*') && k == '6' {
                        let muted = rooms.toggle_mute(room, id);
                        tracing::debug!(room = room.0, call_id = %run.call_id, muted, "mute toggled");
                        last_key = None;
                    } else {
                        last_key = Some(k);
                    }
                }
            },
            _ = check.tick() => {
                if run.media.silent_for() > SILENCE {
                    tracing::info!(room = room.0, call_id = %run.call_id, "conference participant silent: ended");
                    break false;
                }
            }
        }
    };
    rooms.leave(room, id);
    tracing::info!(room = room.0, call_id = %run.call_id, "left conference");
    hung_up
}

enum Pin {
    Right,
    Wrong,
    HungUp,
}

/// Asks for the PIN up to [`PIN_TRIES`] times.
async fn ask_pin(run: &mut Run, prompts: &Prompts, pin: &str, room: ConferenceRoomId) -> Pin {
    let rooms = run.inner.rooms.clone();
    for _ in 0..PIN_TRIES {
        let Some(keyed) = keys::entry(run, prompts.conference_pin()).await else {
            return Pin::HungUp;
        };
        let who = (room, run.caller.clone());
        if rooms.wrong_pins.locked_out(&who) {
            tracing::warn!(room = room.0, caller = %run.caller, call_id = %run.call_id, "conference PIN guessing: refused unchecked");
        } else if keyed == pin {
            return Pin::Right;
        } else {
            rooms.wrong_pins.wrong(who);
        }
        if run
            .media
            .play(prompts.wrong_pin(), &mut run.events, false)
            .await
            == Ended::Hangup
        {
            return Pin::HungUp;
        }
    }
    Pin::Wrong
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbx_media::audio::{tone, tone_power};
    use pbx_media::g711::Law;
    use pbx_media::rtp::{self, RtpHeader};
    use tokio::net::UdpSocket;

    /// A phone on loopback: sends a tone, keeps what it hears.
    struct Phone {
        socket: Arc<UdpSocket>,
        media: Arc<CallMedia>,
        _events: tokio::sync::mpsc::Receiver<CallEvent>,
    }

    async fn phone() -> Phone {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("phone"));
        let offer = crate::media::Offer {
            address: socket.local_addr().expect("addr"),
            law: Law::Mu,
            dtmf: None,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let media = CallMedia::open("127.0.0.1".parse().expect("ip"), &offer, tx)
            .await
            .expect("media");
        Phone {
            socket,
            media,
            _events: rx,
        }
    }

    /// Sends `freq` for `frames` frames, paced at 20 ms, to the room side.
    fn speak(p: &Phone, freq: f64, frames: usize) -> tokio::task::JoinHandle<()> {
        let socket = p.socket.clone();
        let to = p.media.local();
        tokio::spawn(async move {
            let voice = tone(freq, (frames * 20) as u32, 0.3);
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for (i, frame) in voice.chunks(FRAME).enumerate() {
                tick.tick().await;
                let h = RtpHeader {
                    payload_type: 0,
                    sequence: i as u16,
                    timestamp: (i * FRAME) as u32,
                    ssrc: 9,
                };
                let mut payload = Vec::new();
                Law::Mu.encode_into(frame, &mut payload);
                let _ = socket.send_to(&rtp::packet(&h, i == 0, &payload), to).await;
            }
        })
    }

    /// What `p` hears in its first `frames` frames, decoded.
    async fn heard(p: &Phone, frames: usize) -> Vec<i16> {
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        for _ in 0..frames {
            let got = tokio::time::timeout(Duration::from_secs(2), p.socket.recv(&mut buf)).await;
            let Ok(Ok(n)) = got else { break };
            if let Some((_, _, payload)) = rtp::parse(&buf[..n]) {
                Law::Mu.decode_into(payload, &mut out);
            }
        }
        out
    }

    #[tokio::test]
    async fn everyone_hears_the_others_and_not_themselves() {
        let rooms = Arc::new(Rooms::default());
        let room = ConferenceRoomId(1);
        let phones = [phone().await, phone().await, phone().await];
        let freqs = [500.0, 700.0, 1100.0];
        let mut ids = Vec::new();
        for p in &phones {
            match rooms.enter(room, 3, p.media.clone()) {
                Door::In(id) => ids.push(id),
                Door::Full => panic!("room full too early"),
            }
        }
        let extra = phone().await;
        assert_eq!(rooms.enter(room, 3, extra.media.clone()), Door::Full);
        assert_eq!(rooms.count(room), 3);
        // A second of each tone; every phone keeps what it hears meanwhile.
        let speakers: Vec<_> = phones
            .iter()
            .zip(freqs)
            .map(|(p, f)| speak(p, f, 50))
            .collect();
        let listeners: Vec<_> = phones.iter().map(|p| heard(p, 50)).collect();
        let mut got = Vec::new();
        for l in listeners {
            got.push(l.await);
        }
        for s in speakers {
            s.await.expect("speaker");
        }
        for (i, heard) in got.iter().enumerate() {
            // Past the join tones.
            let heard = &heard[heard.len().min(8000 / 2)..];
            let own = tone_power(heard, freqs[i]);
            for (j, f) in freqs.iter().enumerate() {
                if i != j {
                    let other = tone_power(heard, *f);
                    assert!(
                        other > 100.0 * own.max(1.0),
                        "phone {i} hears {f} Hz ({other}) over its own ({own})"
                    );
                }
            }
        }
        for id in ids {
            rooms.leave(room, id);
        }
        // The mixer notices the empty room and forgets it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(lock(&rooms.rooms).is_empty());
    }

    #[tokio::test]
    async fn a_muted_participant_is_not_heard() {
        let rooms = Arc::new(Rooms::default());
        let room = ConferenceRoomId(2);
        let (a, b) = (phone().await, phone().await);
        let Door::In(id_a) = rooms.enter(room, 10, a.media.clone()) else {
            panic!("a let in")
        };
        assert!(rooms.enter(room, 10, b.media.clone()).is_in());
        assert!(rooms.toggle_mute(room, id_a), "muted");
        let speaker = speak(&a, 600.0, 50);
        let (at_b, at_a) = tokio::join!(heard(&b, 50), heard(&a, 50));
        speaker.await.expect("speaker");
        // Past the join tones: b hears nothing of a.
        let at_b = &at_b[at_b.len().min(4000)..];
        assert!(tone_power(at_b, 600.0) < 1.0, "a is muted");
        // a heard its low "muted" tone.
        assert!(tone_power(&at_a, 440.0) > 1e5, "the mute tone");
        assert!(!rooms.toggle_mute(room, id_a), "unmuted");
    }

    #[test]
    fn loud_rooms_saturate_instead_of_wrapping() {
        let mut queue = std::collections::VecDeque::from(vec![i16::MAX; 4]);
        cue(&mut queue, &[i16::MAX, 1, 2, 3, 4, 5]);
        assert_eq!(queue.len(), 6);
        assert_eq!(queue[0], i16::MAX);
        assert_eq!(queue[5], 5);
    }
}
