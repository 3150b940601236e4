//! The media of one call, without sockets: who may send to which relay
//! port, where each packet goes, what each party sent. The relay (`relay`)
//! owns the sockets and asks this module what to do with every datagram.
//!
//! Parties: the caller, and each callee branch the offer was forked to.
//! Until one branch wins (its 2xx), the caller's media goes to the branch
//! that last sent SDP (early media) and the other branches' media is
//! dropped; after that only the winner's remains.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::g711::Law;
use crate::rtp::{self, Packet, Receiver, Report};
use crate::sdp::{Direction, Sdp, Stream};

/// A party of a call's media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Party {
    Caller,
    /// A callee branch, numbered by the proxy.
    Callee(u32),
}

/// How long after an offer or answer a party may move to a new source
/// port (and, for its own address, a new address): phones behind NAT get a
/// new mapping when they start sending.
pub const LEARN_US: u64 = 5_000_000;

/// Where one party receives and sends one stream, as learnt from its SDP
/// and its packets (symmetric RTP: we answer where its packets come from).
#[derive(Debug, Clone, Default)]
pub struct Peer {
    sdp_rtp: Option<SocketAddr>,
    sdp_rtcp: Option<SocketAddr>,
    mux: bool,
    /// Addresses its media may come from: its signalling source and the
    /// address its SDP names. Anything else is a stranger.
    allowed: Vec<IpAddr>,
    latched_rtp: Option<SocketAddr>,
    latched_rtcp: Option<SocketAddr>,
    learn_until_us: u64,
    clock_rate: u32,
}

impl Peer {
    fn learn(&mut self, s: &Stream, source: IpAddr, now_us: u64) {
        self.sdp_rtp = s.address.map(|a| SocketAddr::new(a, s.port));
        self.sdp_rtcp = s
            .rtcp_address
            .or(s.address)
            .map(|a| SocketAddr::new(a, s.rtcp_port.unwrap_or(s.port.wrapping_add(1))));
        self.mux = s.rtcp_mux;
        self.allowed.clear();
        self.allowed.push(source);
        for a in [s.address, s.rtcp_address].into_iter().flatten() {
            if !self.allowed.contains(&a) && !a.is_unspecified() {
                self.allowed.push(a);
            }
        }
        // A re-INVITE may come from a new network (Wi-Fi to mobile): the
        // packets from there latch anew, within the learning window.
        self.learn_until_us = now_us + LEARN_US;
        self.clock_rate = s.clock_rate.max(1);
    }

    /// Whether a packet from `src` is this party's, latching to it if so.
    fn admit(&mut self, src: SocketAddr, rtcp: bool, now_us: u64) -> bool {
        if !self.allowed.contains(&src.ip()) {
            return false;
        }
        let slot = if rtcp {
            &mut self.latched_rtcp
        } else {
            &mut self.latched_rtp
        };
        match slot {
            Some(at) if *at == src => true,
            Some(_) if now_us >= self.learn_until_us => false,
            _ => {
                *slot = Some(src);
                true
            }
        }
    }

    fn rtp_dest(&self) -> Option<SocketAddr> {
        self.latched_rtp.or(self.sdp_rtp)
    }

    /// Where its RTCP goes, and whether on the RTP port (muxed).
    fn rtcp_dest(&self) -> Option<(SocketAddr, bool)> {
        if self.mux {
            return self.rtp_dest().map(|a| (a, true));
        }
        self.latched_rtcp.or(self.sdp_rtcp).map(|a| (a, false))
    }
}

/// What one party sent on one stream (the relay's view), and what it said
/// about what it received (its RTCP).
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
    pub rtcp_packets: u64,
    pub receiver: Receiver,
    pub report: Option<Report>,
}

/// One party's end of one stream: the relay ports it sends to (`io`, set
/// once allocated) and what is known of it.
#[derive(Debug)]
pub struct Endpoint<S> {
    pub io: Option<S>,
    pub peer: Peer,
    pub counters: Counters,
    pub codec: Option<String>,
    /// SRTP (RTP/SAVP, RTP/SAVPF…): packets the relay must not touch.
    pub secure: bool,
    /// The stream the party receives from us, kept continuous.
    pub outgoing: Outgoing,
}

impl<S> Default for Endpoint<S> {
    fn default() -> Self {
        Endpoint {
            io: None,
            peer: Peer::default(),
            counters: Counters::default(),
            codec: None,
            secure: false,
            outgoing: Outgoing::default(),
        }
    }
}

/// The RTP stream a party receives from the relay: what was last sent to
/// it, and how the other party's packets are renumbered once music has
/// been played in between. Phones discard a stream whose timestamps jump
/// back (baresip does), so music continues the stream the held party was
/// hearing, and the holder's audio continues the music's when it resumes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outgoing {
    /// SSRC, sequence number and timestamp of the newest packet sent.
    last: Option<(u32, u16, u32)>,
    /// How forwarded packets of one incoming SSRC are renumbered.
    shift: Option<Shift>,
    /// Music was sent since the last forwarded packet: the next one
    /// decides a new shift.
    after_music: bool,
}

/// Packets of SSRC `from_ssrc` are sent as `ssrc`, with `seq` and `ts`
/// added to their sequence number and timestamp.
#[derive(Debug, Clone, Copy)]
struct Shift {
    from_ssrc: u32,
    ssrc: u32,
    seq: u16,
    ts: u32,
}

impl Outgoing {
    /// The header a forwarded packet is to be sent with, if it changes.
    fn forward(&mut self, ssrc: u32, seq: u16, ts: u32) -> Option<(u32, u16, u32)> {
        // After music, or when a renumbered stream is replaced by another
        // (the holder restarted its stream), the stream goes on from the
        // last packet sent.
        let restarted = self.shift.is_some_and(|s| s.from_ssrc != ssrc);
        if self.after_music || restarted {
            self.after_music = false;
            if let Some((s, last_seq, last_ts)) = self.last {
                self.shift = Some(Shift {
                    from_ssrc: ssrc,
                    ssrc: s,
                    seq: last_seq.wrapping_add(1).wrapping_sub(seq),
                    ts: last_ts.wrapping_add(FRAME).wrapping_sub(ts),
                });
            }
        }
        let out = match self.shift {
            Some(s) => (s.ssrc, seq.wrapping_add(s.seq), ts.wrapping_add(s.ts)),
            None => (ssrc, seq, ts),
        };
        self.sent(out);
        self.shift.map(|_| out)
    }

    /// Remembers a packet sent, unless it is older than the newest one of
    /// its stream (reordered on the way): music must not reuse numbers.
    fn sent(&mut self, out: (u32, u16, u32)) {
        let older = self
            .last
            .is_some_and(|(s, seq, _)| s == out.0 && (out.1.wrapping_sub(seq) as i16) <= 0);
        if !older {
            self.last = Some(out);
        }
    }

    /// The header of the next frame of music: the stream goes on.
    fn music(&mut self, fresh: (u32, u16, u32)) -> (u32, u16, u32) {
        let next = match self.last {
            Some((s, seq, ts)) => (s, seq.wrapping_add(1), ts.wrapping_add(FRAME)),
            None => fresh,
        };
        self.last = Some(next);
        self.after_music = true;
        next
    }
}

/// The G.711 law of a codec name.
fn law_of(codec: &str) -> Option<Law> {
    if codec.eq_ignore_ascii_case("PCMU") {
        Some(Law::Mu)
    } else if codec.eq_ignore_ascii_case("PCMA") {
        Some(Law::A)
    } else {
        None
    }
}

/// Samples (timestamp units) of a 20 ms frame at 8 kHz.
const FRAME: u32 = 160;

/// Why a datagram was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// Not RTP/RTCP.
    Garbage,
    /// From an address that is not the party's (a hijack attempt, a scanner).
    Stranger,
    /// Nobody to send it to yet (no answer, a losing branch, no address).
    NoRoute,
    /// The holding party's audio while the held one hears music instead.
    Held,
    /// Audio while both parties hear that the call is recorded.
    Announcing,
}

/// Where a datagram goes: out of `io`'s RTP or RTCP port, to `to`, with
/// a new SSRC, sequence number and timestamp if `header` says.
#[derive(Debug)]
pub struct Forward<S> {
    pub io: S,
    pub rtcp_port: bool,
    pub to: SocketAddr,
    pub header: Option<(u32, u16, u32)>,
}

/// One party's streams, by `m=` line.
type Side<S> = Vec<Endpoint<S>>;

#[derive(Debug)]
pub struct CallMedia<S> {
    caller: Side<S>,
    callees: Vec<(u32, Side<S>)>,
    /// The branch the caller's media goes to.
    active: Option<u32>,
    /// A branch answered with 2xx: the others are gone.
    chosen: bool,
    /// Either party's last SDP holds the call.
    pub hold: bool,
    /// The call was answered: from now on, silence ends it.
    pub established: bool,
    /// When the last packet was forwarded (relay clock, µs).
    pub last_packet_us: u64,
    /// Some packet was forwarded: silence means something from then on.
    pub carried: bool,
    /// The latest SDP named no stream the relay carries.
    pub bypassed: bool,
    /// Who holds the call, and how its SDP said so.
    pub holding: Option<Hold>,
    /// Holds so far: a music player of an earlier hold knows it is over.
    pub holds: u64,
    /// Who held before the latest SDP: an offer that is then rejected
    /// (488, 491, a timeout) changed nothing, and this is put back.
    before_sdp: Option<Option<Hold>>,
    /// What a held party hears (None: what the holding phone sends).
    pub music: Option<Arc<[i16]>>,
    /// The customer's own music, read when a hold starts (else `music`).
    pub music_file: Option<std::path::PathBuf>,
    /// Both parties hear that the call is recorded; what they say is
    /// neither passed on nor recorded meanwhile.
    pub announcing: bool,
    /// Where a recorded call's audio goes.
    pub recording: Option<crate::recording::Tap>,
}

/// A party holding the call: its SDP said `sendonly` or `inactive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    pub holder: Party,
    pub offered: Direction,
}

/// A frame of a held party's music: out of `io`'s RTP port, to `to`, in
/// `law`, with this header.
#[derive(Debug)]
pub struct MusicTarget<S> {
    pub io: S,
    pub to: SocketAddr,
    pub law: Law,
    pub ssrc: u32,
    pub sequence: u16,
    pub timestamp: u32,
}

impl<S: Clone> CallMedia<S> {
    pub fn new(now_us: u64) -> Self {
        CallMedia {
            caller: Vec::new(),
            callees: Vec::new(),
            active: None,
            chosen: false,
            hold: false,
            established: false,
            last_packet_us: now_us,
            carried: false,
            bypassed: false,
            holding: None,
            holds: 0,
            before_sdp: None,
            music: None,
            music_file: None,
            announcing: false,
            recording: None,
        }
    }

    pub fn side_mut(&mut self, party: Party) -> &mut Side<S> {
        match party {
            Party::Caller => &mut self.caller,
            Party::Callee(b) => {
                let at = match self.callees.iter().position(|(n, _)| *n == b) {
                    Some(at) => at,
                    None => {
                        self.callees.push((b, Vec::new()));
                        self.callees.len() - 1
                    }
                };
                &mut self.callees[at].1
            }
        }
    }

    pub fn side(&self, party: Party) -> Option<&Side<S>> {
        match party {
            Party::Caller => Some(&self.caller),
            Party::Callee(b) => self.callees.iter().find(|(n, _)| *n == b).map(|(_, s)| s),
        }
    }

    /// Remembers what `from`'s SDP says about where it receives, sent from
    /// signalling address `source`. A callee's SDP makes its branch the
    /// one the caller hears, until a branch has won.
    pub fn learn(&mut self, from: Party, sdp: &Sdp, source: IpAddr, now_us: u64) {
        let side = self.side_mut(from);
        while side.len() < sdp.streams.len() {
            side.push(Endpoint::default());
        }
        for (e, s) in side.iter_mut().zip(&sdp.streams) {
            e.peer.learn(s, source, now_us);
            e.codec = s.codec.clone();
            e.secure = s.proto.to_ascii_uppercase().contains("SAVP");
        }
        if let Party::Callee(b) = from {
            if !self.chosen {
                self.active = Some(b);
            }
        }
        self.hold = sdp.is_hold();
        self.before_sdp = Some(self.holding);
        self.follow_hold(from, sdp.direction());
    }

    /// The latest offer was rejected: the hold is as it was before it.
    /// True when music is to play again (a rejected resume).
    pub fn offer_rejected(&mut self) -> bool {
        let Some(before) = self.before_sdp.take() else {
            return false;
        };
        if before == self.holding {
            return false;
        }
        self.holding = before;
        if before.is_none() {
            return false;
        }
        self.holds += 1;
        self.music_playing(self.holds)
    }

    /// A party saying `sendonly` or `inactive` holds the call (the other's
    /// answer, `recvonly` or `inactive`, does not); its `sendrecv` ends it.
    fn follow_hold(&mut self, from: Party, direction: Option<Direction>) {
        // Before the answer, sendonly is early media (a carrier's
        // announcement) or a page, not a hold.
        if !self.established {
            return;
        }
        let holds = matches!(direction, Some(Direction::SendOnly | Direction::Inactive));
        match (&mut self.holding, direction) {
            (None, Some(offered)) if holds => {
                self.holding = Some(Hold {
                    holder: from,
                    offered,
                });
                self.holds += 1;
            }
            (Some(h), Some(offered)) if h.holder == from && holds => h.offered = offered,
            (Some(h), _) if h.holder == from => self.holding = None,
            _ => {}
        }
    }

    /// The other party of the call: the caller's is the active branch.
    fn other(&self, party: Party) -> Option<Party> {
        match party {
            Party::Caller => self.active.map(Party::Callee),
            Party::Callee(_) => Some(Party::Caller),
        }
    }

    /// Whether hold number `hold` still goes on and plays music.
    pub fn music_playing(&self, hold: u64) -> bool {
        self.holding.is_some() && self.music.is_some() && self.holds == hold
    }

    /// The held party's first stream and its G.711 law, when music can be
    /// played to it: plain RTP (SRTP is not ours to write) in G.711
    /// (music is not transcoded into other codecs).
    fn music_endpoint(&mut self) -> Option<(&mut Endpoint<S>, Law)> {
        self.music.as_ref()?;
        let held = self.other(self.holding?.holder)?;
        self.playable(held)
    }

    /// `party`'s first stream and its G.711 law, when the relay can play
    /// to it (and read it): plain RTP (SRTP is not ours to write) in G.711
    /// (nothing is transcoded into other codecs).
    fn playable(&mut self, party: Party) -> Option<(&mut Endpoint<S>, Law)> {
        let e = self.side_mut(party).first_mut()?;
        let law = law_of(e.codec.as_deref()?)?;
        (!e.secure).then_some((e, law))
    }

    /// The G.711 law both parties of an answered call speak: the first
    /// codec of the callee's answer (what was agreed, whatever the caller
    /// offered first), when neither side's first stream is SRTP. None for
    /// other codecs, and for a late offer whose answer (in the ACK) has
    /// not come yet.
    fn agreed_law(&self) -> Option<Law> {
        let callee = self.active.filter(|_| self.chosen).map(Party::Callee)?;
        let caller = self.side(Party::Caller)?.first()?;
        let answer = self.side(callee)?.first()?;
        if caller.secure || answer.secure {
            return None;
        }
        law_of(answer.codec.as_deref()?)
    }

    /// Whether an answered call can be recorded (and told so): plain RTP
    /// in G.711 on both sides.
    pub fn recordable(&self) -> bool {
        self.agreed_law().is_some()
    }

    /// Both parties have sent media, so the relay knows where they hear
    /// it (a phone behind NAT hears nothing sent before).
    pub fn both_heard(&self) -> bool {
        let latched = |p: Option<Party>| {
            p.and_then(|p| self.side(p))
                .and_then(|s| s.first())
                .is_some_and(|e| e.peer.latched_rtp.is_some())
        };
        latched(Some(Party::Caller)) && latched(self.active.map(Party::Callee))
    }

    /// Where the next frame of the recording announcement goes, for each
    /// party that can hear it (continuing what it was hearing), and in
    /// which law.
    pub fn announcement_frames(&mut self, fresh: (u32, u16, u32)) -> Vec<MusicTarget<S>> {
        let Some(law) = self.agreed_law() else {
            return Vec::new();
        };
        let parties = [Some(Party::Caller), self.active.map(Party::Callee)];
        let mut out = Vec::with_capacity(2);
        for party in parties.into_iter().flatten() {
            let Some(e) = self.side_mut(party).first_mut() else {
                continue;
            };
            let (Some(io), Some(to)) = (e.io.clone(), e.peer.rtp_dest()) else {
                continue;
            };
            let (ssrc, sequence, timestamp) = e.outgoing.music(fresh);
            out.push(MusicTarget {
                io,
                to,
                law,
                ssrc,
                sequence,
                timestamp,
            });
        }
        out
    }

    /// Where the held party's next frame of music goes, continuing what
    /// it was hearing (`fresh` starts a stream).
    pub fn music_frame(&mut self, fresh: (u32, u16, u32)) -> Option<MusicTarget<S>> {
        let (e, law) = self.music_endpoint()?;
        let (io, to) = (e.io.clone()?, e.peer.rtp_dest()?);
        let (ssrc, sequence, timestamp) = e.outgoing.music(fresh);
        Some(MusicTarget {
            io,
            to,
            law,
            ssrc,
            sequence,
            timestamp,
        })
    }

    /// The direction SDP from `from` to `to` is to say, when music on hold
    /// changes it: a held party is told it receives (the music), even when
    /// the holder said `inactive`; the holder's `inactive` is answered
    /// `inactive` (RFC 3264 §6.1), whatever the held party said to that.
    ///
    /// `said` is the direction `from`'s SDP says. Only the held party's
    /// `recvonly` (its answer to the `sendonly` it was given) is changed:
    /// an offer of its own (a late-offer re-INVITE, its own hold) passes
    /// as it is, so that a resume is never answered `inactive`.
    pub fn direction_for(
        &self,
        from: Party,
        to: Party,
        said: Option<Direction>,
    ) -> Option<Direction> {
        let h = self.holding.filter(|_| self.music.is_some())?;
        match (h.offered, said) {
            (Direction::Inactive, _) if h.holder == from => Some(Direction::SendOnly),
            (Direction::Inactive, Some(Direction::RecvOnly)) if h.holder == to => {
                Some(Direction::Inactive)
            }
            _ => None,
        }
    }

    /// The branch answered the call: only its media remains. Returns the
    /// endpoints of the other branches, whose ports are to be freed.
    pub fn choose(&mut self, branch: u32) -> Vec<Endpoint<S>> {
        self.chosen = true;
        self.active = Some(branch);
        if self
            .holding
            .is_some_and(|h| matches!(h.holder, Party::Callee(b) if b != branch))
        {
            self.holding = None;
        }
        let mut freed = Vec::new();
        self.callees.retain_mut(|(n, side)| {
            if *n == branch {
                return true;
            }
            freed.append(side);
            false
        });
        freed
    }

    /// A branch failed or was cancelled.
    pub fn remove_branch(&mut self, branch: u32) -> Vec<Endpoint<S>> {
        let Some(at) = self.callees.iter().position(|(n, _)| *n == branch) else {
            return Vec::new();
        };
        let (_, side) = self.callees.remove(at);
        if self
            .holding
            .is_some_and(|h| h.holder == Party::Callee(branch))
        {
            self.holding = None;
        }
        if self.active == Some(branch) {
            self.active = self.callees.last().map(|(n, _)| *n);
        }
        side
    }

    /// Decides what to do with a datagram from `src` that arrived on the
    /// relay port of `party`'s stream `stream` (its RTP or RTCP port).
    pub fn route(
        &mut self,
        party: Party,
        stream: usize,
        on_rtcp_port: bool,
        src: SocketAddr,
        data: &[u8],
        now_us: u64,
    ) -> Result<Forward<S>, Drop> {
        let kind = rtp::classify(data);
        let is_rtcp = match kind {
            Packet::Garbage => return Err(Drop::Garbage),
            Packet::Rtcp => true,
            Packet::Rtp(_) if on_rtcp_port => return Err(Drop::Garbage),
            Packet::Rtp(_) => false,
        };
        // Muxed RTCP latches with the RTP (same address and port).
        let latch_rtcp = is_rtcp && on_rtcp_port;
        let other = match party {
            Party::Caller => Party::Callee(self.active.ok_or(Drop::NoRoute)?),
            Party::Callee(b) if self.active == Some(b) => Party::Caller,
            Party::Callee(_) => {
                // A losing branch's early media; still its own, or a stranger.
                return Err(Drop::NoRoute);
            }
        };
        // The holder's audio gives way only to music that can be played.
        let music = !is_rtcp
            && self.holding.is_some_and(|h| h.holder == party)
            && self.music_endpoint().is_some();
        let from = self.side_mut(party).get_mut(stream).ok_or(Drop::NoRoute)?;
        if !from.peer.admit(src, latch_rtcp, now_us) {
            return Err(Drop::Stranger);
        }

        let clock = from.peer.clock_rate;
        let c = &mut from.counters;
        match kind {
            Packet::Rtp(h) => {
                c.packets += 1;
                c.bytes += data.len() as u64;
                c.receiver.on_packet(&h, now_us, clock);
            }
            _ => {
                c.rtcp_packets += 1;
                if let Some(r) = rtp::rtcp_report(data) {
                    c.report = Some(r);
                }
            }
        }
        if music || (self.announcing && !is_rtcp) {
            // The held party hears music, not two streams at once; the
            // call is alive all the same.
            self.last_packet_us = now_us;
            self.carried = true;
            return Err(if music { Drop::Held } else { Drop::Announcing });
        }
        let to = self.side_mut(other).get_mut(stream).ok_or(Drop::NoRoute)?;
        let io = to.io.clone().ok_or(Drop::NoRoute)?;
        let (dest, rtcp_port) = if is_rtcp {
            let (a, muxed) = to.peer.rtcp_dest().ok_or(Drop::NoRoute)?;
            (a, !muxed)
        } else {
            (to.peer.rtp_dest().ok_or(Drop::NoRoute)?, false)
        };
        let header = match kind {
            Packet::Rtp(h) => to.outgoing.forward(h.ssrc, h.sequence, h.timestamp),
            _ => None,
        };
        if let (Some(tap), Packet::Rtp(_), 0) = (&self.recording, kind, stream) {
            tap.packet(party == Party::Caller, data);
        }
        self.last_packet_us = now_us;
        self.carried = true;
        Ok(Forward {
            io,
            rtcp_port,
            to: dest,
            header,
        })
    }

    /// Every endpoint, for freeing them all.
    pub fn take_all(&mut self) -> Vec<Endpoint<S>> {
        let mut all: Vec<Endpoint<S>> = std::mem::take(&mut self.caller);
        for (_, mut side) in std::mem::take(&mut self.callees) {
            all.append(&mut side);
        }
        all
    }

    /// The figures of what each party sent: the caller's, and the
    /// answering (or last active) branch's.
    pub fn report(&self) -> (Option<SideReport>, Option<SideReport>) {
        let callee = self.active.and_then(|b| self.side(Party::Callee(b)));
        (
            SideReport::of(&self.caller),
            callee.and_then(|s| SideReport::of(s)),
        )
    }
}

/// What one party sent over the whole call, summed over its streams.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SideReport {
    pub packets: u64,
    pub bytes: u64,
    /// Lost on the way to the relay, from sequence numbers.
    pub lost: u64,
    /// Interarrival jitter at the relay, in milliseconds.
    pub jitter_ms: u64,
    /// What this party's RTCP said it lost and jittered (receiving).
    pub rtcp_lost: Option<i64>,
    pub rtcp_jitter_ms: Option<u64>,
    pub codec: Option<String>,
    /// Where its media came from (the latched address).
    pub address: Option<String>,
}

impl SideReport {
    fn of<S>(side: &[Endpoint<S>]) -> Option<SideReport> {
        let first = side.first()?;
        let mut r = SideReport {
            codec: first.codec.clone(),
            address: first.peer.latched_rtp.map(|a| a.to_string()),
            ..SideReport::default()
        };
        for e in side {
            let c = &e.counters;
            let rate = u64::from(e.peer.clock_rate.max(1));
            r.packets += c.packets;
            r.bytes += c.bytes;
            r.lost += c.receiver.lost();
            r.jitter_ms = r.jitter_ms.max(c.receiver.jitter() * 1000 / rate);
            if let Some(rep) = c.report {
                r.rtcp_lost = Some(r.rtcp_lost.unwrap_or(0) + i64::from(rep.cumulative_lost));
                r.rtcp_jitter_ms = Some(u64::from(rep.jitter) * 1000 / rate);
            }
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdp(ip: &str, port: u16) -> Sdp {
        let body = format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n"
        );
        Sdp::parse(body.as_bytes()).unwrap()
    }

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0xd5; 160]);
        p
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A caller behind NAT (SDP says 192.168.1.10, packets come from the
    /// router 10.0.0.11) and a callee behind another (192.168.2.20 / 10.0.0.12).
    fn offering(ip: &str, port: u16, formats: &str) -> Sdp {
        let body = format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {formats}\r\n"
        );
        Sdp::parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn the_answer_decides_whether_a_call_can_be_recorded() {
        let lo = "127.0.0.1".parse().unwrap();
        // The caller offers G.722 first; the callee answers PCMA.
        let mut m: CallMedia<&'static str> = CallMedia::new(0);
        m.learn(Party::Caller, &offering("127.0.0.1", 4000, "9 0 8"), lo, 0);
        assert!(!m.recordable(), "not answered yet");
        m.learn(Party::Callee(0), &offering("127.0.0.1", 5000, "8"), lo, 0);
        m.choose(0);
        assert!(m.recordable());
        assert_eq!(m.agreed_law(), Some(Law::A));
        // An answer in G.722: nothing the relay can read.
        let mut m: CallMedia<&'static str> = CallMedia::new(0);
        m.learn(Party::Caller, &offering("127.0.0.1", 4000, "0 9"), lo, 0);
        m.learn(Party::Callee(0), &offering("127.0.0.1", 5000, "9"), lo, 0);
        m.choose(0);
        assert!(!m.recordable());
        // Neither party has sent anything: the announcement waits.
        assert!(!m.both_heard());
    }

    fn call() -> CallMedia<&'static str> {
        let mut m = CallMedia::new(0);
        m.learn(
            Party::Caller,
            &sdp("192.168.1.10", 4000),
            "10.0.0.11".parse().unwrap(),
            0,
        );
        m.side_mut(Party::Callee(0)).push(Endpoint::default());
        m.side_mut(Party::Callee(0))[0].io = Some("toward-callee");
        m.learn(
            Party::Callee(0),
            &sdp("192.168.2.20", 5000),
            "10.0.0.12".parse().unwrap(),
            0,
        );
        m.side_mut(Party::Caller)[0].io = Some("toward-caller");
        m
    }

    #[test]
    fn answers_where_packets_come_from_not_where_sdp_says() {
        let mut m = call();
        // Before the callee sent anything: its SDP address is all we know.
        let f = m
            .route(
                Party::Caller,
                0,
                false,
                addr("10.0.0.11:31000"),
                &rtp(1),
                10,
            )
            .unwrap();
        assert_eq!(
            (f.io, f.to, f.rtcp_port),
            ("toward-callee", addr("192.168.2.20:5000"), false)
        );
        // The callee's packets latch it; the caller now hears from there.
        let f = m
            .route(
                Party::Callee(0),
                0,
                false,
                addr("10.0.0.12:40000"),
                &rtp(1),
                20,
            )
            .unwrap();
        assert_eq!((f.io, f.to), ("toward-caller", addr("10.0.0.11:31000")));
        let f = m
            .route(
                Party::Caller,
                0,
                false,
                addr("10.0.0.11:31000"),
                &rtp(2),
                30,
            )
            .unwrap();
        assert_eq!(f.to, addr("10.0.0.12:40000"));
        assert_eq!(m.last_packet_us, 30);
    }

    fn with_direction(ip: &str, port: u16, direction: &str) -> Sdp {
        let body = format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na={direction}\r\n"
        );
        Sdp::parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn a_hold_plays_music_to_the_held_party_until_resumed() {
        let mut m = call();
        m.music = Some(Arc::from(vec![0i16; 160]));
        // Early media saying sendonly (an announcement) is no hold.
        m.learn(
            Party::Callee(0),
            &with_direction("192.168.2.20", 5000, "sendonly"),
            "10.0.0.12".parse().unwrap(),
            0,
        );
        assert_eq!(m.holding, None);
        m.established = true;
        let caller_src: IpAddr = "10.0.0.11".parse().unwrap();
        let callee_src: IpAddr = "10.0.0.12".parse().unwrap();
        let f = m
            .route(
                Party::Callee(0),
                0,
                false,
                addr("10.0.0.12:5000"),
                &rtp(0),
                1,
            )
            .unwrap();
        assert_eq!(f.header, None, "passed on as it is");
        // The callee holds (inactive); the caller's answer does not hold.
        m.learn(
            Party::Callee(0),
            &with_direction("192.168.2.20", 5000, "inactive"),
            callee_src,
            1,
        );
        assert_eq!(m.holding.map(|h| h.holder), Some(Party::Callee(0)));
        assert_eq!(m.holds, 1);
        assert!(m.music_playing(1));
        // The caller is told it receives; the callee is answered inactive.
        assert_eq!(
            m.direction_for(Party::Callee(0), Party::Caller, Some(Direction::Inactive)),
            Some(Direction::SendOnly)
        );
        m.learn(
            Party::Caller,
            &with_direction("192.168.1.10", 4000, "recvonly"),
            caller_src,
            2,
        );
        assert_eq!(
            m.holding.map(|h| h.holder),
            Some(Party::Callee(0)),
            "the answer does not hold"
        );
        assert_eq!(
            m.direction_for(Party::Caller, Party::Callee(0), Some(Direction::RecvOnly)),
            Some(Direction::Inactive)
        );
        // An offer of the held party's own (a late-offer resume) passes.
        assert_eq!(
            m.direction_for(Party::Caller, Party::Callee(0), Some(Direction::SendRecv)),
            None
        );
        // Music goes to the caller, in its codec, from the caller's relay
        // port, going on from the stream the caller was hearing.
        let t = m.music_frame((1, 1, 1)).unwrap();
        assert_eq!(
            (t.io, t.to, t.law),
            ("toward-caller", addr("192.168.1.10:4000"), Law::Mu)
        );
        assert_eq!(
            (t.ssrc, t.sequence, t.timestamp),
            (7, 1, 160),
            "after callee packet 0"
        );
        let t = m.music_frame((1, 1, 1)).unwrap();
        assert_eq!((t.sequence, t.timestamp), (2, 320));
        // What the holder sends does not reach the caller meanwhile.
        assert_eq!(
            m.route(
                Party::Callee(0),
                0,
                false,
                addr("10.0.0.12:5000"),
                &rtp(1),
                3
            )
            .unwrap_err(),
            Drop::Held
        );
        assert!(m
            .route(Party::Caller, 0, false, addr("10.0.0.11:4000"), &rtp(1), 3)
            .is_ok());
        // Resumed: no music, audio flows again.
        m.learn(
            Party::Callee(0),
            &with_direction("192.168.2.20", 5000, "sendrecv"),
            callee_src,
            4,
        );
        assert_eq!(m.holding, None);
        assert!(!m.music_playing(1));
        // Its audio goes on from the music: same SSRC, the next numbers.
        let f = m
            .route(
                Party::Callee(0),
                0,
                false,
                addr("10.0.0.12:5000"),
                &rtp(2),
                5,
            )
            .unwrap();
        assert_eq!(f.header, Some((7, 3, 480)));
        let f = m
            .route(
                Party::Callee(0),
                0,
                false,
                addr("10.0.0.12:5000"),
                &rtp(3),
                5,
            )
            .unwrap();
        assert_eq!(
            f.header,
            Some((7, 4, 480)),
            "the rtp() helper keeps timestamp 0"
        );
        // A second hold (sendonly) is a new one; no direction is changed.
        m.learn(
            Party::Caller,
            &with_direction("192.168.1.10", 4000, "sendonly"),
            caller_src,
            6,
        );
        assert!(m.music_playing(2) && !m.music_playing(1));
        let sendonly = Some(Direction::SendOnly);
        assert_eq!(
            m.direction_for(Party::Caller, Party::Callee(0), sendonly),
            None
        );
        // A held party speaking SRTP gets no music: the holder is heard.
        m.side_mut(Party::Callee(0))[0].secure = true;
        assert!(m.music_frame((1, 1, 1)).is_none());
        assert!(m
            .route(Party::Caller, 0, false, addr("10.0.0.11:4000"), &rtp(4), 7)
            .is_ok());
        m.side_mut(Party::Callee(0))[0].secure = false;
        // Without music, a hold changes nothing on the way.
        m.music = None;
        assert_eq!(
            m.direction_for(Party::Caller, Party::Callee(0), sendonly),
            None
        );
        assert!(m
            .route(Party::Caller, 0, false, addr("10.0.0.11:4000"), &rtp(5), 7)
            .is_ok());
        // The held branch going away ends its hold.
        m.music = Some(Arc::from(vec![0i16; 160]));
        m.learn(
            Party::Callee(0),
            &with_direction("192.168.2.20", 5000, "sendonly"),
            callee_src,
            8,
        );
        assert_eq!(
            m.holding.map(|h| h.holder),
            Some(Party::Caller),
            "first holder stays"
        );
        drop(m.remove_branch(0));
    }

    #[test]
    fn a_rejected_offer_leaves_the_hold_as_it_was() {
        let mut m = call();
        m.music = Some(Arc::from(vec![0i16; 160]));
        m.established = true;
        let src: IpAddr = "10.0.0.11".parse().unwrap();
        // A hold offer rejected: no hold, no music.
        m.learn(
            Party::Caller,
            &with_direction("192.168.1.10", 4000, "sendonly"),
            src,
            1,
        );
        assert!(m.music_playing(1));
        assert!(!m.offer_rejected());
        assert_eq!(m.holding, None);
        assert!(!m.music_playing(1));
        // A hold accepted, then a resume rejected: held again, music anew.
        m.learn(
            Party::Caller,
            &with_direction("192.168.1.10", 4000, "sendonly"),
            src,
            2,
        );
        m.learn(
            Party::Callee(0),
            &with_direction("192.168.2.20", 5000, "recvonly"),
            "10.0.0.12".parse().unwrap(),
            3,
        );
        m.learn(
            Party::Caller,
            &with_direction("192.168.1.10", 4000, "sendrecv"),
            src,
            4,
        );
        assert_eq!(m.holding, None);
        assert!(m.offer_rejected());
        assert_eq!(m.holding.map(|h| h.holder), Some(Party::Caller));
        assert!(m.music_playing(m.holds));
        // Nothing more to undo.
        assert!(!m.offer_rejected());
    }

    #[test]
    fn renumbered_streams_never_go_back() {
        let mut o = Outgoing::default();
        assert_eq!(o.forward(9, 100, 1000), None);
        assert_eq!(o.forward(9, 99, 840), None, "reordered, passed on");
        // Music goes on from the newest packet sent, not the reordered one.
        assert_eq!(o.music((1, 1, 1)), (9, 101, 1160));
        // The holder comes back with a new stream: it follows the music.
        assert_eq!(o.forward(5, 7, 70), Some((9, 102, 1320)));
        assert_eq!(o.forward(5, 8, 230), Some((9, 103, 1480)));
        // It restarts its stream again (another SSRC): still continuous.
        assert_eq!(o.forward(6, 60_000, 0), Some((9, 104, 1640)));
        // Sequence numbers wrap.
        let mut w = Outgoing::default();
        w.forward(3, u16::MAX, u32::MAX - 10);
        assert_eq!(w.music((0, 0, 0)), (3, 0, 149));
    }

    #[test]
    fn strangers_never_reach_the_phones() {
        let mut m = call();
        let stranger = addr("198.51.100.66:5004");
        assert_eq!(
            m.route(Party::Caller, 0, false, stranger, &rtp(1), 10)
                .unwrap_err(),
            Drop::Stranger
        );
        // The real phone latches; afterwards even its own router's other
        // ports are refused once the learning window is over.
        m.route(
            Party::Caller,
            0,
            false,
            addr("10.0.0.11:31000"),
            &rtp(1),
            10,
        )
        .unwrap();
        let later = LEARN_US + 1;
        assert_eq!(
            m.route(
                Party::Caller,
                0,
                false,
                addr("10.0.0.11:31002"),
                &rtp(2),
                later
            )
            .unwrap_err(),
            Drop::Stranger
        );
        assert_eq!(
            m.route(
                Party::Caller,
                0,
                false,
                addr("10.0.0.11:31000"),
                b"garbage!!!!!",
                later
            )
            .unwrap_err(),
            Drop::Garbage
        );
        // A re-INVITE opens the window again (the phone moved).
        m.learn(
            Party::Caller,
            &sdp("192.168.1.10", 4000),
            "10.0.0.11".parse().unwrap(),
            later,
        );
        assert!(m
            .route(
                Party::Caller,
                0,
                false,
                addr("10.0.0.11:31002"),
                &rtp(3),
                later + 1
            )
            .is_ok());
        let (caller, _) = m.report();
        let caller = caller.unwrap();
        assert_eq!(caller.packets, 2);
        assert_eq!(caller.codec.as_deref(), Some("PCMU"));
    }

    #[test]
    fn forked_early_media_then_the_winner() {
        let mut m = call();
        m.side_mut(Party::Callee(1)).push(Endpoint::default());
        m.side_mut(Party::Callee(1))[0].io = Some("toward-callee-1");
        m.learn(
            Party::Callee(1),
            &sdp("10.0.0.13", 6000),
            "10.0.0.13".parse().unwrap(),
            0,
        );
        // The last branch with SDP is heard; the other's media is dropped.
        assert_eq!(
            m.route(
                Party::Callee(0),
                0,
                false,
                addr("10.0.0.12:40000"),
                &rtp(1),
                5
            )
            .unwrap_err(),
            Drop::NoRoute
        );
        assert!(m
            .route(
                Party::Callee(1),
                0,
                false,
                addr("10.0.0.13:6000"),
                &rtp(1),
                5
            )
            .is_ok());
        // Branch 0 answers: branch 1's endpoints are freed, 0 is heard.
        let freed = m.choose(0);
        assert_eq!(freed.len(), 1);
        assert!(m
            .route(
                Party::Callee(0),
                0,
                false,
                addr("10.0.0.12:40000"),
                &rtp(2),
                6
            )
            .is_ok());
        let f = m
            .route(Party::Caller, 0, false, addr("10.0.0.11:31000"), &rtp(1), 7)
            .unwrap();
        assert_eq!(f.io, "toward-callee");
        // A later SDP from a loser cannot steal the call.
        m.learn(
            Party::Callee(1),
            &sdp("10.0.0.13", 6000),
            "10.0.0.13".parse().unwrap(),
            8,
        );
        assert_eq!(
            m.route(Party::Caller, 0, false, addr("10.0.0.11:31000"), &rtp(2), 9)
                .unwrap()
                .io,
            "toward-callee"
        );
        assert_eq!(m.take_all().len(), 3);
    }

    #[test]
    fn rtcp_muxed_and_separate() {
        let mut m = call();
        let rr = [
            0x81u8, 201, 0, 7, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 9, 0, 0, 0, 80, 0, 0,
            0, 0, 0, 0, 0, 0,
        ];
        // Separate RTCP from the caller goes to the callee's RTCP port.
        let f = m
            .route(Party::Caller, 0, true, addr("10.0.0.11:31001"), &rr, 1)
            .unwrap();
        assert_eq!((f.to, f.rtcp_port), (addr("192.168.2.20:5001"), true));
        // RTP on an RTCP port is garbage; RTCP on the RTP port is muxed RTCP.
        assert_eq!(
            m.route(Party::Caller, 0, true, addr("10.0.0.11:31001"), &rtp(1), 1)
                .unwrap_err(),
            Drop::Garbage
        );
        let body = "v=0\r\no=- 1 1 IN IP4 192.168.2.20\r\ns=-\r\nc=IN IP4 192.168.2.20\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\na=rtcp-mux\r\n";
        m.learn(
            Party::Callee(0),
            &Sdp::parse(body.as_bytes()).unwrap(),
            "10.0.0.12".parse().unwrap(),
            2,
        );
        let f = m
            .route(Party::Caller, 0, false, addr("10.0.0.11:31000"), &rr, 3)
            .unwrap();
        assert_eq!((f.to, f.rtcp_port), (addr("192.168.2.20:5000"), false));
        let (caller, callee) = m.report();
        let caller = caller.unwrap();
        assert_eq!(caller.rtcp_lost, Some(3));
        assert_eq!(caller.rtcp_jitter_ms, Some(10));
        assert_eq!(callee.unwrap().packets, 0);
    }
}
