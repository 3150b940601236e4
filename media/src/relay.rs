//! The relay: sockets from a port range, one task per socket forwarding
//! what `session` decides, and the narrow interface the proxy drives
//! (`reserve`, `update` at each offer and answer, `choose`, `delete`, the
//! shape of rtpengine's control protocol, which `ng` serves), so the relay
//! can run on a node of its own.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use crate::audio::FRAME;
use crate::ports::PortPool;
use crate::sdp::{Anchor, Sdp, SdpError};
use crate::session::{CallMedia, Drop, Endpoint, Party, SideReport};

/// Largest datagram relayed; larger ones are dropped (a datagram that big
/// is no voice packet, and a buffer one byte larger tells it apart).
pub const MAX_PACKET: usize = 2048;

#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Even first, odd last: RTP on even ports, RTCP on the next.
    pub ports: (u16, u16),
    /// Addresses sockets bind to, per family (unspecified: all).
    pub bind_v4: Ipv4Addr,
    pub bind_v6: Ipv6Addr,
    /// What SDP names, per family, when the node is behind a 1:1 NAT; else
    /// the address the proxy's signalling uses toward the party.
    pub advertise_v4: Option<Ipv4Addr>,
    pub advertise_v6: Option<Ipv6Addr>,
    /// Silence in both directions that ends an answered call.
    pub timeout: Duration,
    pub hold_timeout: Duration,
    /// A held party hears the default tune (`music`) unless the proxy
    /// gives the call other music, or none.
    pub music_on_hold: bool,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            ports: (20000, 29999),
            bind_v4: Ipv4Addr::UNSPECIFIED,
            bind_v6: Ipv6Addr::UNSPECIFIED,
            advertise_v4: None,
            advertise_v6: None,
            timeout: Duration::from_secs(60),
            hold_timeout: Duration::from_secs(3600),
            music_on_hold: true,
        }
    }
}

/// Why the relay could not anchor.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error(transparent)]
    Sdp(#[from] SdpError),
    #[error("no free media ports")]
    PortsExhausted,
    /// Offer or answer for a call the relay does not hold (it ended, or was
    /// never reserved): nothing is opened for it.
    #[error("no media session for this call")]
    UnknownCall,
    /// A call to record that is not answered, or not plain G.711 on both
    /// sides (SRTP, another codec): it goes on unrecorded.
    #[error("this call's media cannot be recorded")]
    NotRecordable,
    #[error("recording file: {0}")]
    RecordingFile(#[from] std::io::Error),
}

impl MediaError {
    pub fn sip_status(&self) -> u16 {
        match self {
            MediaError::Sdp(e) => e.sip_status(),
            MediaError::PortsExhausted => 503,
            MediaError::UnknownCall => 481,
            MediaError::NotRecordable | MediaError::RecordingFile(_) => 500,
        }
    }
}

/// A call never answered is given up after this (longer than timer C).
const STALE_SETUP: Duration = Duration::from_secs(600);

/// A call's key: its Call-ID and the caller's From tag.
pub type CallKey = (String, String);

/// Totals for `/metrics`.
#[derive(Debug, Default)]
pub struct RelayStats {
    pub forwarded_packets: AtomicU64,
    pub forwarded_bytes: AtomicU64,
    pub dropped_garbage: AtomicU64,
    pub dropped_stranger: AtomicU64,
    pub dropped_no_route: AtomicU64,
    pub dropped_oversize: AtomicU64,
    pub send_errors: AtomicU64,
    pub ports_exhausted: AtomicU64,
    pub timeouts: AtomicU64,
    /// Packets of a holding phone not sent on: the held party heard music.
    pub replaced_by_music: AtomicU64,
    /// Packets not sent on while both parties heard the recording announcement.
    pub replaced_by_announcement: AtomicU64,
    /// Calls whose recording began, and recordings that stopped early
    /// (their file could not be written).
    pub recordings_started: AtomicU64,
    pub recording_errors: AtomicU64,
    /// Packets a recording's writer was too far behind to take.
    pub recording_dropped_packets: AtomicU64,
}

/// The figures of a call's media when it ends, for its record.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MediaReport {
    pub caller: Option<SideReport>,
    pub callee: Option<SideReport>,
}

/// A call whose media stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idle {
    pub call: CallKey,
    /// Wall clock of the last packet (ms since the epoch): billing ends there.
    pub last_packet_ms: i64,
    pub on_hold: bool,
}

/// The sockets of one endpoint; dropping it stops their tasks and gives
/// the ports back.
#[derive(Debug)]
pub struct Ports {
    rtp: Arc<UdpSocket>,
    rtcp: Arc<UdpSocket>,
    port: u16,
    address: IpAddr,
    tasks: [tokio::task::AbortHandle; 2],
    pool: Weak<Mutex<PortPool>>,
}

impl std::ops::Drop for Ports {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(pool) = self.pool.upgrade() {
            lock(&pool).give(self.port);
        }
    }
}

type Io = Arc<Ports>;
type Call = Arc<Mutex<CallMedia<Io>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Inner {
    config: RelayConfig,
    pool: Arc<Mutex<PortPool>>,
    calls: Mutex<HashMap<CallKey, Call>>,
    stats: Arc<RelayStats>,
    epoch: Instant,
    epoch_wall_ms: i64,
    /// Customers' music read from its files, while some held call plays it.
    music_files: Mutex<HashMap<PathBuf, Weak<[i16]>>>,
}

/// The media relay of a node. Cheap to clone.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

impl Relay {
    pub fn new(config: RelayConfig) -> Relay {
        let pool = PortPool::new(config.ports.0, config.ports.1);
        let epoch_wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Relay {
            inner: Arc::new(Inner {
                config,
                pool: Arc::new(Mutex::new(pool)),
                calls: Mutex::new(HashMap::new()),
                stats: Arc::default(),
                epoch: Instant::now(),
                epoch_wall_ms,
                music_files: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn stats(&self) -> &RelayStats {
        &self.inner.stats
    }

    pub fn active_calls(&self) -> usize {
        lock(&self.inner.calls).len()
    }

    pub fn ports_in_use(&self) -> usize {
        lock(&self.inner.pool).in_use() * 2
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// SDP from `from` on its way to `to`, offer or answer alike (a relay
    /// that does not transcode treats both the same): learns where `from`
    /// receives (its signalling comes from `source`) and returns the SDP
    /// with the relay's ports for `to` to send to, on `to`'s side of the
    /// network (`toward`: the address our signalling uses toward `to`). A
    /// callee's SDP makes its branch the one the caller hears until a
    /// branch is chosen.
    pub fn update(
        &self,
        key: &CallKey,
        from: Party,
        to: Party,
        body: &[u8],
        source: IpAddr,
        toward: IpAddr,
    ) -> Result<Vec<u8>, MediaError> {
        let mut sdp = Sdp::parse(body)?;
        let now = self.now_us();
        // Only `reserve` opens a call: a late response after its end must
        // not open ports nobody would free.
        let call = self.call(key).ok_or(MediaError::UnknownCall)?;
        let mut m = lock(&call);
        let holds = m.holds;
        m.learn(from, &sdp, source, now);
        if m.holds != holds && m.music_playing(m.holds) {
            tokio::spawn(play_music(
                self.inner.clone(),
                Arc::downgrade(&call),
                m.holds,
            ));
        }
        if let Some(direction) = m.direction_for(from, to, sdp.direction()) {
            sdp.set_direction(direction);
        }
        let mut anchors = Vec::with_capacity(sdp.streams.len());
        for (i, s) in sdp.streams.iter().enumerate() {
            if s.port == 0 || !s.relayable() {
                anchors.push(None);
                continue;
            }
            let io = self.ensure(&call, &mut m, to, i, toward)?;
            anchors.push(Some(Anchor {
                address: io.address,
                rtp_port: io.port,
                rtcp_port: io.port.wrapping_add(1),
            }));
        }
        // SDP that names nothing we relay (T.38 alone, say) takes the media
        // past us: silence here then says nothing about the call.
        m.bypassed = anchors.iter().all(Option::is_none);
        Ok(sdp.rewrite(&anchors))
    }

    /// `party`'s relay ports for stream `i`, opened if it has none yet (or
    /// has them in the other address family).
    fn ensure(
        &self,
        call: &Call,
        m: &mut CallMedia<Io>,
        party: Party,
        i: usize,
        toward: IpAddr,
    ) -> Result<Io, MediaError> {
        let side = m.side_mut(party);
        while side.len() <= i {
            side.push(Endpoint::default());
        }
        match &side[i].io {
            Some(io) if io.address.is_ipv4() == toward.is_ipv4() => Ok(io.clone()),
            _ => {
                let io = self.open(Arc::downgrade(call), party, i, toward)?;
                side[i].io = Some(io.clone());
                Ok(io)
            }
        }
    }

    /// Takes `party`'s ports for the first stream before any SDP needs
    /// them, so a call the relay cannot carry is refused before it rings.
    pub fn reserve(&self, key: &CallKey, party: Party, toward: IpAddr) -> Result<(), MediaError> {
        let call = self.call_or_new(key, self.now_us());
        let mut m = lock(&call);
        self.ensure(&call, &mut m, party, 0, toward).map(|_| ())
    }

    /// Binds a port pair for `party`'s stream and starts its two tasks.
    fn open(
        &self,
        call: Weak<Mutex<CallMedia<Io>>>,
        party: Party,
        stream: usize,
        toward: IpAddr,
    ) -> Result<Io, MediaError> {
        let cfg = &self.inner.config;
        let (bind, advertise): (IpAddr, IpAddr) = match toward {
            IpAddr::V4(t) => (cfg.bind_v4.into(), cfg.advertise_v4.unwrap_or(t).into()),
            IpAddr::V6(t) => (cfg.bind_v6.into(), cfg.advertise_v6.unwrap_or(t).into()),
        };
        // A party we face on loopback (an application of this node) cannot
        // reach a public address the node is mapped to: it gets one of ours.
        let advertise = match toward.is_loopback() && !advertise.is_loopback() {
            true if bind.is_unspecified() => toward,
            true => bind,
            false => advertise,
        };
        // A port someone else holds is skipped; a range of busy ports is
        // tried a bounded number of times.
        for _ in 0..16 {
            let Some(port) = lock(&self.inner.pool).take() else {
                break;
            };
            let bound = bind_pair(bind, port);
            let Ok((rtp, rtcp)) = bound else {
                // Someone else holds it: back in the ring, tried again last.
                lock(&self.inner.pool).give(port);
                continue;
            };
            let rtp = Arc::new(rtp);
            let rtcp = Arc::new(rtcp);
            let tasks = [
                self.spawn(rtp.clone(), call.clone(), party, stream, false),
                self.spawn(rtcp.clone(), call.clone(), party, stream, true),
            ];
            return Ok(Arc::new(Ports {
                rtp,
                rtcp,
                port,
                address: advertise,
                tasks,
                pool: Arc::downgrade(&self.inner.pool),
            }));
        }
        self.inner
            .stats
            .ports_exhausted
            .fetch_add(1, Ordering::Relaxed);
        Err(MediaError::PortsExhausted)
    }

    fn spawn(
        &self,
        socket: Arc<UdpSocket>,
        call: Weak<Mutex<CallMedia<Io>>>,
        party: Party,
        stream: usize,
        rtcp: bool,
    ) -> tokio::task::AbortHandle {
        let relay = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_PACKET + 1];
            loop {
                let Ok((n, src)) = socket.recv_from(&mut buf).await else {
                    // ICMP errors surface here on some systems; go on.
                    continue;
                };
                let (Some(inner), Some(call)) = (relay.upgrade(), call.upgrade()) else {
                    return;
                };
                forward(&inner, &call, party, stream, rtcp, src, &buf[..n]);
            }
        })
        .abort_handle()
    }

    /// A branch answered (2xx): the other branches' ports are freed.
    pub fn choose(&self, key: &CallKey, branch: u32) {
        if let Some(call) = self.call(key) {
            let freed = lock(&call).choose(branch);
            drop(freed);
        }
    }

    /// A branch failed or was cancelled: its ports are freed.
    pub fn remove_branch(&self, key: &CallKey, branch: u32) {
        if let Some(call) = self.call(key) {
            let freed = lock(&call).remove_branch(branch);
            drop(freed);
        }
    }

    /// The call was answered: silence ends it from now on.
    pub fn established(&self, key: &CallKey) {
        if let Some(call) = self.call(key) {
            let mut m = lock(&call);
            m.established = true;
            m.last_packet_us = m.last_packet_us.max(self.now_us());
        }
    }

    /// Whether the relay anchors this call.
    pub fn has(&self, key: &CallKey) -> bool {
        lock(&self.inner.calls).contains_key(key)
    }

    fn call_or_new(&self, key: &CallKey, now_us: u64) -> Call {
        let music = self.inner.config.music_on_hold;
        lock(&self.inner.calls)
            .entry(key.clone())
            .or_insert_with(|| {
                let mut m = CallMedia::new(now_us);
                m.music = music.then(crate::music::default_tune);
                Arc::new(Mutex::new(m))
            })
            .clone()
    }

    /// The call's latest offer was rejected (a re-INVITE's 488, 491 or
    /// timeout): a hold it started is undone, one it ended goes on.
    pub fn offer_rejected(&self, key: &CallKey) {
        if let Some(call) = self.call(key) {
            let mut m = lock(&call);
            if m.offer_rejected() {
                tokio::spawn(play_music(
                    self.inner.clone(),
                    Arc::downgrade(&call),
                    m.holds,
                ));
            }
        }
    }

    /// The call's held party hears the music in the WAV file at `path`
    /// (a customer's upload) instead of the node's tune.
    pub fn set_music_file(&self, key: &CallKey, path: PathBuf) {
        if let Some(call) = self.call(key) {
            lock(&call).music_file = Some(path);
        }
    }

    /// What the call's held party hears: `music`, or (None) what the
    /// holding phone sends (a call to an application, whose other
    /// participants must not hear one's music).
    pub fn set_music(&self, key: &CallKey, music: Option<Arc<[i16]>>) {
        if let Some(call) = self.call(key) {
            lock(&call).music = music;
        }
    }

    /// Records an answered call from now on, into a new file at `path`,
    /// after `announcement` (if any) told both parties so; returns how long
    /// the announcement lasts (ms), after which recording begins. The call
    /// goes on unrecorded when this fails.
    pub fn record(
        &self,
        key: &CallKey,
        path: &std::path::Path,
        announcement: Option<Arc<[i16]>>,
    ) -> Result<u64, MediaError> {
        let call = self.call(key).ok_or(MediaError::UnknownCall)?;
        if !lock(&call).recordable() {
            self.inner
                .stats
                .recording_errors
                .fetch_add(1, Ordering::Relaxed);
            return Err(MediaError::NotRecordable);
        }
        let tap = match crate::recording::start(path, self.inner.stats.clone()) {
            Ok(tap) => tap,
            Err(e) => {
                self.inner
                    .stats
                    .recording_errors
                    .fetch_add(1, Ordering::Relaxed);
                return Err(e.into());
            }
        };
        let mut m = lock(&call);
        let Some(clip) = announcement.filter(|c| !c.is_empty()) else {
            tap.go_live();
            m.recording = Some(tap);
            return Ok(0);
        };
        m.recording = Some(tap);
        m.announcing = true;
        let ms = (clip.len() as u64).div_ceil(FRAME as u64) * 20;
        tokio::spawn(play_announcement(Arc::downgrade(&call), clip));
        Ok(ms)
    }

    fn call(&self, key: &CallKey) -> Option<Call> {
        lock(&self.inner.calls).get(key).cloned()
    }

    /// The call ended: every port is freed; its figures are returned.
    pub fn delete(&self, key: &CallKey) -> Option<MediaReport> {
        let call = lock(&self.inner.calls).remove(key)?;
        let mut m = lock(&call);
        let (caller, callee) = m.report();
        drop(m.take_all());
        Some(MediaReport { caller, callee })
    }

    /// The figures so far, without ending anything.
    pub fn report(&self, key: &CallKey) -> Option<MediaReport> {
        let call = self.call(key)?;
        let (caller, callee) = lock(&call).report();
        Some(MediaReport { caller, callee })
    }

    /// Answered calls silent in both directions for longer than the
    /// timeout (the hold timeout while held).
    pub fn idle(&self) -> Vec<Idle> {
        let now = self.now_us();
        let cfg = &self.inner.config;
        let calls: Vec<(CallKey, Call)> = lock(&self.inner.calls)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut idle = Vec::new();
        for (key, call) in calls {
            let m = lock(&call);
            // Media stopped on an answered call that carried some; or a call
            // never answered and older than any setup can be (its end was
            // lost): both are done.
            let limit = match (m.established, m.carried && !m.bypassed) {
                (true, true) if m.hold => cfg.hold_timeout,
                (true, true) => cfg.timeout,
                (true, false) => continue,
                (false, _) => STALE_SETUP,
            };
            let silent = now.saturating_sub(m.last_packet_us);
            if u128::from(silent) > limit.as_micros() {
                self.inner.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                idle.push(Idle {
                    call: key,
                    last_packet_ms: self.inner.epoch_wall_ms
                        + i64::try_from(m.last_packet_us / 1000).unwrap_or(0),
                    on_hold: m.hold,
                });
            }
        }
        idle
    }

    /// Ends every call's media (node shutdown).
    pub fn clear(&self) {
        let calls: Vec<Call> = lock(&self.inner.calls).drain().map(|(_, c)| c).collect();
        for c in calls {
            drop(lock(&c).take_all());
        }
    }
}

fn forward(
    inner: &Inner,
    call: &Mutex<CallMedia<Io>>,
    party: Party,
    stream: usize,
    rtcp: bool,
    src: SocketAddr,
    data: &[u8],
) {
    let s = &inner.stats;
    if data.len() > MAX_PACKET {
        s.dropped_oversize.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let now = u64::try_from(inner.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
    let decision = lock(call).route(party, stream, rtcp, src, data, now);
    match decision {
        Ok(f) => {
            let socket = if f.rtcp_port { &f.io.rtcp } else { &f.io.rtp };
            let mut renumbered = [0u8; MAX_PACKET];
            let data = match f.header {
                Some(h) => crate::rtp::renumber(data, h, &mut renumbered),
                None => data,
            };
            match socket.try_send_to(data, f.to) {
                Ok(_) => {
                    s.forwarded_packets.fetch_add(1, Ordering::Relaxed);
                    s.forwarded_bytes
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                Err(_) => {
                    s.send_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Err(Drop::Garbage) => {
            s.dropped_garbage.fetch_add(1, Ordering::Relaxed);
        }
        Err(Drop::Stranger) => {
            s.dropped_stranger.fetch_add(1, Ordering::Relaxed);
        }
        Err(Drop::NoRoute) => {
            s.dropped_no_route.fetch_add(1, Ordering::Relaxed);
        }
        Err(Drop::Held) => {
            s.replaced_by_music.fetch_add(1, Ordering::Relaxed);
        }
        Err(Drop::Announcing) => {
            s.replaced_by_announcement.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// How long the announcement waits for both parties' first packets (a
/// phone behind NAT hears nothing sent before it has sent something).
const ANNOUNCE_WAIT_TICKS: u32 = 25;

/// Plays the recording announcement to both parties of a call, 20 ms a
/// frame, once both have sent media (or after half a second); then the
/// call is heard, and recorded, again.
async fn play_announcement(call: Weak<Mutex<CallMedia<Io>>>, clip: Arc<[i16]>) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for _ in 0..ANNOUNCE_WAIT_TICKS {
        tick.tick().await;
        let Some(call) = call.upgrade() else { return };
        if lock(&call).both_heard() {
            break;
        }
    }
    let fresh = fresh_stream();
    let mut payload = Vec::with_capacity(FRAME);
    for (n, chunk) in clip.chunks(FRAME).enumerate() {
        tick.tick().await;
        let Some(call) = call.upgrade() else { return };
        let targets = lock(&call).announcement_frames(fresh);
        for t in targets {
            payload.clear();
            t.law.encode_into(chunk, &mut payload);
            payload.resize(FRAME, t.law.silence());
            let header = crate::rtp::RtpHeader {
                payload_type: t.law.payload_type(),
                sequence: t.sequence,
                timestamp: t.timestamp,
                ssrc: t.ssrc,
            };
            let packet = crate::rtp::packet(&header, n == 0, &payload);
            let _ = t.io.rtp.try_send_to(&packet, t.to);
        }
    }
    if let Some(call) = call.upgrade() {
        let mut m = lock(&call);
        m.announcing = false;
        if let Some(tap) = &m.recording {
            tap.go_live();
        }
    }
}

/// A stream of our own (SSRC, sequence, timestamp) for a party that heard
/// nothing before.
fn fresh_stream() -> (u32, u16, u32) {
    use std::hash::{BuildHasher, Hasher};
    let seed = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (seed as u32, (seed >> 32) as u16, (seed >> 16) as u32)
}

/// The music in the WAV file at `path` (8 kHz mono as uploads are kept),
/// shared by every held call that plays it; None (logged) when it does
/// not read: the held party hears the platform's tune instead.
async fn music_from_file(inner: &Inner, path: PathBuf) -> Option<Arc<[i16]>> {
    if let Some(music) = lock(&inner.music_files).get(&path).and_then(Weak::upgrade) {
        return Some(music);
    }
    let at = path.clone();
    let read = tokio::task::spawn_blocking(move || {
        let bytes = std::fs::read(&at).map_err(|e| e.to_string())?;
        crate::audio::Clip::from_wav(&bytes, crate::audio::LONGEST_UPLOAD_S)
            .map_err(|e| e.to_string())
    })
    .await;
    match read {
        Ok(Ok(clip)) => {
            let music: Arc<[i16]> = clip.samples().into();
            let mut files = lock(&inner.music_files);
            files.retain(|_, m| m.strong_count() > 0);
            files.insert(path, Arc::downgrade(&music));
            Some(music)
        }
        Ok(Err(e)) => {
            tracing::warn!(file = %path.display(), error = %e, "music on hold not read; the default plays");
            None
        }
        Err(_) => None,
    }
}

/// Plays music to a call's held party, 20 ms a frame, while hold number
/// `hold` lasts (and the call does).
async fn play_music(inner: Arc<Inner>, call: Weak<Mutex<CallMedia<Io>>>, hold: u64) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The customer's own music, if it has some and its file reads.
    let file = match call.upgrade() {
        Some(call) => lock(&call).music_file.clone(),
        None => return,
    };
    let own = match file {
        Some(path) => music_from_file(&inner, path).await,
        None => None,
    };
    let mut player: Option<crate::music::Player> = None;
    let fresh = fresh_stream();
    let mut payload = Vec::with_capacity(FRAME);
    let mut first = true;
    loop {
        tick.tick().await;
        let Some(call) = call.upgrade() else { return };
        let target = {
            let mut m = lock(&call);
            if !m.music_playing(hold) {
                return;
            }
            let Some(music) = own.clone().or_else(|| m.music.clone()) else {
                return;
            };
            player.get_or_insert_with(|| crate::music::Player::new(music));
            m.music_frame(fresh)
        };
        // No target yet (no address, a codec we do not play): wait.
        let (Some(t), Some(p)) = (target, player.as_mut()) else {
            continue;
        };
        p.next_frame(t.law, FRAME, &mut payload);
        let header = crate::rtp::RtpHeader {
            payload_type: t.law.payload_type(),
            sequence: t.sequence,
            timestamp: t.timestamp,
            ssrc: t.ssrc,
        };
        // The marker bit: the audio starts anew here.
        let packet = crate::rtp::packet(&header, first, &payload);
        first = false;
        // A full socket buffer loses a frame, as a network would.
        let _ = t.io.rtp.try_send_to(&packet, t.to);
    }
}

fn bind_pair(ip: IpAddr, port: u16) -> std::io::Result<(UdpSocket, UdpSocket)> {
    let one = |port: u16| -> std::io::Result<UdpSocket> {
        let domain = if ip.is_ipv4() {
            socket2::Domain::IPV4
        } else {
            socket2::Domain::IPV6
        };
        let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
        if ip.is_ipv6() {
            s.set_only_v6(true)?;
        }
        s.set_nonblocking(true)?;
        s.bind(&SocketAddr::new(ip, port).into())?;
        UdpSocket::from_std(s.into())
    };
    Ok((one(port)?, one(port.wrapping_add(1))?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::g711::Law;
    use std::path::Path;

    fn sdp(ip: &str, port: u16) -> Vec<u8> {
        format!("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=sendrecv\r\n")
            .into_bytes()
    }

    fn rtp(seq: u16, fill: u8) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[fill; 160]);
        p
    }

    fn port_of(body: &[u8]) -> SocketAddr {
        let s = Sdp::parse(body).unwrap();
        SocketAddr::new(s.streams[0].address.unwrap(), s.streams[0].port)
    }

    async fn recv(sock: &UdpSocket) -> Option<Vec<u8>> {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
            _ => None,
        }
    }

    fn config(first: u16) -> RelayConfig {
        RelayConfig {
            ports: (first, first + 9),
            bind_v4: Ipv4Addr::LOCALHOST,
            ..RelayConfig::default()
        }
    }

    #[tokio::test]
    async fn relays_both_ways_and_frees_ports() {
        let relay = Relay::new(config(41000));
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let lo: IpAddr = Ipv4Addr::LOCALHOST.into();
        let key: CallKey = ("call-1".into(), "tag".into());
        let a_port = a.local_addr().unwrap().port();
        let b_port = b.local_addr().unwrap().port();
        relay.reserve(&key, Party::Caller, lo).unwrap();
        let offer = relay
            .update(
                &key,
                Party::Caller,
                Party::Callee(0),
                &sdp("127.0.0.1", a_port),
                lo,
                lo,
            )
            .unwrap();
        let to_b = port_of(&offer);
        assert!((41000..=41009).contains(&to_b.port()));
        let answer = relay
            .update(
                &key,
                Party::Callee(0),
                Party::Caller,
                &sdp("127.0.0.1", b_port),
                lo,
                lo,
            )
            .unwrap();
        let to_a = port_of(&answer);
        relay.choose(&key, 0);
        a.send_to(&rtp(1, 0xaa), to_a).await.unwrap();
        assert_eq!(recv(&b).await.unwrap(), rtp(1, 0xaa));
        b.send_to(&rtp(1, 0xbb), to_b).await.unwrap();
        assert_eq!(recv(&a).await.unwrap(), rtp(1, 0xbb));
        // Too big, and garbage: dropped and counted.
        a.send_to(&vec![0x80; MAX_PACKET + 100], to_a)
            .await
            .unwrap();
        a.send_to(b"hello", to_a).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(relay.stats().dropped_oversize.load(Ordering::Relaxed), 1);
        assert_eq!(relay.stats().dropped_garbage.load(Ordering::Relaxed), 1);
        assert_eq!(relay.ports_in_use(), 4);
        let report = relay.delete(&key).unwrap();
        assert_eq!(report.caller.unwrap().packets, 1);
        assert_eq!(report.callee.unwrap().packets, 1);
        assert_eq!(relay.ports_in_use(), 0);
        assert_eq!(relay.active_calls(), 0);
    }

    /// Two phones of call `key`, offer and answer through the relay: each
    /// phone's socket and the relay port it sends to.
    struct Phones {
        a: UdpSocket,
        b: UdpSocket,
        to_a: SocketAddr,
        to_b: SocketAddr,
    }

    async fn phones(relay: &Relay, key: &CallKey) -> Phones {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let lo: IpAddr = Ipv4Addr::LOCALHOST.into();
        relay.reserve(key, Party::Caller, lo).unwrap();
        let a_sdp = sdp("127.0.0.1", a.local_addr().unwrap().port());
        let b_sdp = sdp("127.0.0.1", b.local_addr().unwrap().port());
        let to_b = port_of(
            &relay
                .update(key, Party::Caller, Party::Callee(0), &a_sdp, lo, lo)
                .unwrap(),
        );
        let to_a = port_of(
            &relay
                .update(key, Party::Callee(0), Party::Caller, &b_sdp, lo, lo)
                .unwrap(),
        );
        Phones { a, b, to_a, to_b }
    }

    /// A G.711 µ-law packet of `samples`.
    fn voice(seq: u16, ssrc: u32, samples: &[i16]) -> Vec<u8> {
        let mut payload = Vec::new();
        Law::Mu.encode_into(samples, &mut payload);
        let h = crate::rtp::RtpHeader {
            payload_type: 0,
            sequence: seq,
            timestamp: u32::from(seq) * FRAME as u32,
            ssrc,
        };
        crate::rtp::packet(&h, false, &payload)
    }

    #[tokio::test]
    async fn records_both_sides_after_the_announcement() {
        let relay = Relay::new(config(41300));
        let key: CallKey = ("call-rec".into(), "tag".into());
        let Phones { a, b, to_a, to_b } = phones(&relay, &key).await;
        let dir = std::env::temp_dir().join(format!("pbx-rec-{}", std::process::id()));
        let path = dir.join("call.wav");
        // Not answered yet: nothing to record.
        assert!(matches!(
            relay.record(&key, &path, None),
            Err(MediaError::NotRecordable)
        ));
        relay.choose(&key, 0);
        relay.established(&key);
        let announcement: Arc<[i16]> = crate::audio::tone(400.0, 200, 0.5).into();
        assert_eq!(relay.record(&key, &path, Some(announcement)).unwrap(), 200);
        // Both hear the announcement; what they say meanwhile goes nowhere.
        a.send_to(&voice(1, 7, &[0; FRAME]), to_a).await.unwrap();
        for sock in [&a, &b] {
            let mut heard = Vec::new();
            for _ in 0..10 {
                let p = recv(sock).await.unwrap();
                let (_, _, payload) = crate::rtp::parse(&p).unwrap();
                Law::Mu.decode_into(payload, &mut heard);
            }
            assert!(crate::audio::tone_power(&heard, 400.0) > 1e6);
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(
            relay
                .stats()
                .replaced_by_announcement
                .load(Ordering::Relaxed),
            1
        );
        // Then each side's voice goes through and into its channel.
        let (left, right) = (
            crate::audio::tone(1000.0, 1000, 0.5),
            crate::audio::tone(1500.0, 1000, 0.5),
        );
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for (n, (l, r)) in left.chunks(FRAME).zip(right.chunks(FRAME)).enumerate() {
            tick.tick().await;
            let seq = 10 + n as u16;
            a.send_to(&voice(seq, 7, l), to_a).await.unwrap();
            b.send_to(&voice(seq, 8, r), to_b).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        relay.delete(&key).unwrap();
        // The writer finishes the file once the call's media is gone.
        let mut wav = None;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Ok(r) = hound::WavReader::open(&path) {
                if r.duration() > 0 {
                    wav = Some(r);
                    break;
                }
            }
        }
        let wav = wav.expect("a finished recording");
        assert_eq!(wav.spec().channels, 2);
        let samples: Vec<i16> = wav.into_samples().map(|s| s.unwrap()).collect();
        let caller: Vec<i16> = samples.iter().step_by(2).copied().collect();
        let callee: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
        let p = crate::audio::tone_power;
        assert!(p(&caller, 1000.0) > 100.0 * p(&caller, 1500.0));
        assert!(p(&callee, 1500.0) > 100.0 * p(&callee, 1000.0));
        // About the second spoken, not the announcement before it.
        assert!((8000..=16000).contains(&caller.len()), "{}", caller.len());
        assert!(p(&caller, 400.0) < p(&caller, 1000.0) / 100.0);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_call_ended_during_the_announcement_leaves_no_file() {
        let relay = Relay::new(config(41500));
        let key: CallKey = ("call-short".into(), "tag".into());
        let _phones = phones(&relay, &key).await;
        relay.choose(&key, 0);
        relay.established(&key);
        let path = std::env::temp_dir().join(format!("pbx-rec-short-{}.wav", std::process::id()));
        let announcement: Arc<[i16]> = crate::audio::tone(400.0, 2000, 0.5).into();
        relay.record(&key, &path, Some(announcement)).unwrap();
        assert!(
            path.exists(),
            "the file is made at once (a full disk shows now)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        relay.delete(&key).unwrap();
        let mut gone = false;
        for _ in 0..25 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if !path.exists() {
                gone = true;
                break;
            }
        }
        assert!(gone, "nothing was recorded: no file is left");
    }

    #[tokio::test]
    async fn a_full_disk_ends_the_recording_not_the_call() {
        let relay = Relay::new(config(41400));
        let key: CallKey = ("call-full".into(), "tag".into());
        let Phones { a, b, to_a, to_b } = phones(&relay, &key).await;
        relay.choose(&key, 0);
        relay.established(&key);
        // A file that cannot be made: no recording, the call goes on.
        let blocked = std::env::temp_dir().join(format!("pbx-rec-file-{}", std::process::id()));
        std::fs::write(&blocked, b"a file, not a directory").unwrap();
        assert!(matches!(
            relay.record(&key, &blocked.join("call.wav"), None),
            Err(MediaError::RecordingFile(_))
        ));
        let _ = std::fs::remove_file(&blocked);
        // A disk that fills up (every write to /dev/full fails): the
        // recording stops, counted; the call's audio still flows.
        if std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .is_err()
        {
            return;
        }
        relay.record(&key, Path::new("/dev/full"), None).unwrap();
        for seq in 0..300u16 {
            a.send_to(&voice(seq, 7, &[1000; FRAME]), to_a)
                .await
                .unwrap();
            assert!(recv(&b).await.is_some(), "the call goes on");
            if seq % 50 == 0 {
                b.send_to(&voice(seq, 8, &[0; FRAME]), to_b).await.unwrap();
                assert!(recv(&a).await.is_some());
            }
        }
        relay.delete(&key).unwrap();
        let errors = &relay.stats().recording_errors;
        for _ in 0..50 {
            if errors.load(Ordering::Relaxed) == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(errors.load(Ordering::Relaxed), 2, "both failures counted");
    }

    #[tokio::test]
    async fn a_tiny_range_runs_out_cleanly() {
        let relay = Relay::new(RelayConfig {
            ports: (41100, 41103),
            bind_v4: Ipv4Addr::LOCALHOST,
            ..RelayConfig::default()
        });
        let lo: IpAddr = Ipv4Addr::LOCALHOST.into();
        let one: CallKey = ("one".into(), "t".into());
        let two: CallKey = ("two".into(), "t".into());
        relay.reserve(&one, Party::Caller, lo).unwrap();
        relay
            .update(
                &one,
                Party::Caller,
                Party::Callee(0),
                &sdp("127.0.0.1", 4000),
                lo,
                lo,
            )
            .unwrap();
        relay
            .update(
                &one,
                Party::Callee(0),
                Party::Caller,
                &sdp("127.0.0.1", 4002),
                lo,
                lo,
            )
            .unwrap();
        let err = relay.reserve(&two, Party::Caller, lo).unwrap_err();
        assert_eq!(err.sip_status(), 503);
        assert_eq!(relay.stats().ports_exhausted.load(Ordering::Relaxed), 1);
        relay.delete(&two);
        relay.delete(&one);
        // The sockets close when their tasks have stopped (the next turn of
        // the runtime); with a two-pair range the same ports come back.
        tokio::time::sleep(Duration::from_millis(50)).await;
        relay.reserve(&two, Party::Caller, lo).unwrap();
        assert!(relay
            .update(
                &two,
                Party::Caller,
                Party::Callee(0),
                &sdp("127.0.0.1", 4004),
                lo,
                lo
            )
            .is_ok());
    }

    #[tokio::test]
    async fn silence_after_the_answer_is_idle() {
        let relay = Relay::new(RelayConfig {
            timeout: Duration::from_millis(50),
            ..config(41200)
        });
        let lo: IpAddr = Ipv4Addr::LOCALHOST.into();
        let key: CallKey = ("quiet".into(), "t".into());
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        relay.reserve(&key, Party::Caller, lo).unwrap();
        let a_sdp = sdp("127.0.0.1", a.local_addr().unwrap().port());
        let b_sdp = sdp("127.0.0.1", b.local_addr().unwrap().port());
        relay
            .update(&key, Party::Caller, Party::Callee(0), &a_sdp, lo, lo)
            .unwrap();
        let answer = relay
            .update(&key, Party::Callee(0), Party::Caller, &b_sdp, lo, lo)
            .unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(relay.idle().is_empty(), "not answered yet");
        relay.established(&key);
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(
            relay.idle().is_empty(),
            "no media ever came: not the relay's to judge"
        );
        a.send_to(&rtp(1, 1), port_of(&answer)).await.unwrap();
        assert!(recv(&b).await.is_some());
        assert!(relay.idle().is_empty());
        tokio::time::sleep(Duration::from_millis(80)).await;
        let idle = relay.idle();
        assert_eq!(idle.len(), 1);
        assert_eq!(idle[0].call, key);
        assert!(!idle[0].on_hold);
        // Offers to a call the relay no longer holds open nothing.
        relay.delete(&key);
        let late = relay.update(&key, Party::Callee(0), Party::Caller, &b_sdp, lo, lo);
        assert_eq!(late.unwrap_err().sip_status(), 481);
        assert_eq!(relay.active_calls(), 0);
    }
}
