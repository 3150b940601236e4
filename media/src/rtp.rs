//! RTP and RTCP (RFC 3550) as a relay sees them: enough of the header to
//! tell media from garbage and RTCP from RTP on a muxed port (RFC 5761),
//! and to count what a stream lost and how much it jittered.

/// The fixed part of an RTP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// What a datagram on a media port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet {
    Rtp(RtpHeader),
    Rtcp,
    /// Not RTP version 2, or shorter than its own header says: dropped.
    Garbage,
}

/// Classifies one datagram (RFC 5761 §4: RTCP packet types 192–223 where
/// RTP would carry its marker bit and payload type).
pub fn classify(p: &[u8]) -> Packet {
    if p.len() < 8 || p[0] >> 6 != 2 {
        return Packet::Garbage;
    }
    if (192..=223).contains(&p[1]) {
        // An RTCP compound packet's first length must fit.
        let words = usize::from(u16::from_be_bytes([p[2], p[3]]));
        return if (words + 1) * 4 <= p.len() {
            Packet::Rtcp
        } else {
            Packet::Garbage
        };
    }
    if p.len() < 12 {
        return Packet::Garbage;
    }
    let csrc = usize::from(p[0] & 0x0f) * 4;
    let mut header = 12 + csrc;
    if p[0] & 0x10 != 0 {
        if p.len() < header + 4 {
            return Packet::Garbage;
        }
        header += 4 + usize::from(u16::from_be_bytes([p[header + 2], p[header + 3]])) * 4;
    }
    if p.len() < header {
        return Packet::Garbage;
    }
    Packet::Rtp(RtpHeader {
        payload_type: p[1] & 0x7f,
        sequence: u16::from_be_bytes([p[2], p[3]]),
        timestamp: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        ssrc: u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
    })
}

/// An RTP packet's header, marker bit and payload (padding removed); None
/// for anything [`classify`] would not call RTP.
pub fn parse(p: &[u8]) -> Option<(RtpHeader, bool, &[u8])> {
    let Packet::Rtp(h) = classify(p) else {
        return None;
    };
    let csrc = usize::from(p[0] & 0x0f) * 4;
    let mut start = 12 + csrc;
    if p[0] & 0x10 != 0 {
        start += 4 + usize::from(u16::from_be_bytes([p[start + 2], p[start + 3]])) * 4;
    }
    let mut end = p.len();
    if p[0] & 0x20 != 0 {
        let pad = usize::from(p[end - 1]);
        end = end.checked_sub(pad).filter(|&e| e >= start)?;
    }
    Some((h, p[1] & 0x80 != 0, &p[start..end]))
}

/// An RTP packet (version 2, no CSRC, no extension, no padding).
pub fn packet(h: &RtpHeader, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + payload.len());
    out.push(0x80);
    out.push((if marker { 0x80 } else { 0 }) | (h.payload_type & 0x7f));
    out.extend_from_slice(&h.sequence.to_be_bytes());
    out.extend_from_slice(&h.timestamp.to_be_bytes());
    out.extend_from_slice(&h.ssrc.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// `packet` (RTP) with another SSRC, sequence number and timestamp, in
/// `buf`; as it is if it does not fit.
pub fn renumber<'b>(
    packet: &'b [u8],
    (ssrc, seq, ts): (u32, u16, u32),
    buf: &'b mut [u8],
) -> &'b [u8] {
    if packet.len() < 12 || packet.len() > buf.len() {
        return packet;
    }
    let out = &mut buf[..packet.len()];
    out.copy_from_slice(packet);
    out[2..4].copy_from_slice(&seq.to_be_bytes());
    out[4..8].copy_from_slice(&ts.to_be_bytes());
    out[8..12].copy_from_slice(&ssrc.to_be_bytes());
    out
}

/// What a receiver reported about a stream in RTCP (the first report block
/// of an SR or RR).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    pub cumulative_lost: i32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
}

/// The first report block of an RTCP compound packet, if it has one.
pub fn rtcp_report(p: &[u8]) -> Option<Report> {
    let mut at = 0;
    while at + 8 <= p.len() {
        let count = usize::from(p[at] & 0x1f);
        let kind = p[at + 1];
        let len = (usize::from(u16::from_be_bytes([p[at + 2], p[at + 3]])) + 1) * 4;
        let block = match kind {
            200 => at + 28,
            201 => at + 8,
            _ => {
                at += len;
                continue;
            }
        };
        if count > 0 && block + 24 <= p.len() && block + 24 <= at + len {
            let lost = [p[block + 5], p[block + 6], p[block + 7]];
            let mut cumulative = i32::from_be_bytes([0, lost[0], lost[1], lost[2]]);
            if cumulative & 0x0080_0000 != 0 {
                cumulative -= 0x0100_0000;
            }
            let jitter =
                u32::from_be_bytes([p[block + 12], p[block + 13], p[block + 14], p[block + 15]]);
            return Some(Report {
                cumulative_lost: cumulative,
                jitter,
            });
        }
        at += len;
    }
    None
}

/// The relay's own view of the RTP it received from one party: loss from
/// sequence numbers, jitter as RFC 3550 §6.4.1 and appendix A.8 compute it.
#[derive(Debug, Clone, Default)]
pub struct Receiver {
    ssrc: Option<u32>,
    base_seq: u32,
    /// The highest sequence number, extended with its wrap count.
    max_seq: u32,
    pub received: u64,
    /// Last transit time (arrival in timestamp units minus RTP timestamp).
    transit: Option<i64>,
    /// Jitter in timestamp units, scaled by 16 (A.8's fixed point).
    jitter16: u64,
}

impl Receiver {
    /// Accounts one RTP packet that arrived at `arrival_us` (a monotonic
    /// microsecond clock) for a stream of `clock_rate` Hz.
    pub fn on_packet(&mut self, h: &RtpHeader, arrival_us: u64, clock_rate: u32) {
        let seq = u32::from(h.sequence);
        if self.ssrc != Some(h.ssrc) {
            // A new source (a phone restarted its stream): start over.
            *self = Receiver {
                ssrc: Some(h.ssrc),
                base_seq: seq,
                max_seq: seq,
                ..Receiver::default()
            };
        } else {
            let cycles = self.max_seq & 0xffff_0000;
            let high = self.max_seq & 0xffff;
            let delta = seq.wrapping_sub(high) & 0xffff;
            if delta < 0x8000 {
                // In order (or a gap): wrapped when the new number is lower.
                let cycles = if seq < high {
                    cycles + 0x1_0000
                } else {
                    cycles
                };
                self.max_seq = cycles | seq;
            }
        }
        self.received += 1;
        let arrival = (u128::from(arrival_us) * u128::from(clock_rate) / 1_000_000) as i64;
        let transit = arrival - i64::from(h.timestamp);
        if let Some(last) = self.transit {
            let d = (transit - last).unsigned_abs();
            // J += (|D| - J) / 16, with J kept 16 times larger.
            self.jitter16 = self.jitter16 + d - ((self.jitter16 + 8) >> 4);
        }
        self.transit = Some(transit);
    }

    pub fn expected(&self) -> u64 {
        if self.ssrc.is_none() {
            return 0;
        }
        u64::from(self.max_seq.wrapping_sub(self.base_seq)) + 1
    }

    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    /// Jitter in timestamp units.
    pub fn jitter(&self) -> u64 {
        self.jitter16 >> 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_written_parses_back_and_padding_is_dropped() {
        let h = RtpHeader {
            payload_type: 101,
            sequence: 7,
            timestamp: 1600,
            ssrc: 42,
        };
        let p = packet(&h, true, &[1, 2, 3, 4]);
        assert_eq!(parse(&p), Some((h, true, &[1u8, 2, 3, 4][..])));
        let mut padded = packet(&h, false, &[9, 9, 0, 0, 3]);
        padded[0] |= 0x20;
        assert_eq!(parse(&padded).map(|(_, _, b)| b.to_vec()), Some(vec![9, 9]));
        let mut bad = packet(&h, false, &[200]);
        bad[0] |= 0x20;
        assert_eq!(parse(&bad), None, "padding longer than the payload");
    }

    fn rtp(seq: u16, ts: u32) -> Vec<u8> {
        let mut p = vec![0x80, 0x00];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(&[0xff; 160]);
        p
    }

    #[test]
    fn tells_rtp_rtcp_and_garbage_apart() {
        assert!(
            matches!(classify(&rtp(1, 160)), Packet::Rtp(h) if h.sequence == 1 && h.timestamp == 160)
        );
        let rr = [
            0x81, 201, 0, 7, 0, 0, 0, 1, 0, 0, 0, 2, 0x10, 0, 0, 5, 0, 0, 0, 9, 0, 0, 0, 33, 0, 0,
            0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(classify(&rr), Packet::Rtcp);
        assert_eq!(
            rtcp_report(&rr),
            Some(Report {
                cumulative_lost: 5,
                jitter: 33
            })
        );
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Packet::Garbage);
        assert_eq!(classify(&[0x80, 0, 0]), Packet::Garbage);
        // An RTCP length beyond the datagram, an RTP extension beyond it.
        assert_eq!(classify(&[0x81, 201, 0, 99, 0, 0, 0, 1]), Packet::Garbage);
        let mut ext = rtp(1, 1);
        ext[0] |= 0x10;
        ext.truncate(16);
        ext[14] = 0xff;
        assert_eq!(classify(&ext), Packet::Garbage);
        // Truncated report blocks read nothing.
        assert_eq!(rtcp_report(&rr[..20]), None);
        assert_eq!(rtcp_report(&[]), None);
    }

    #[test]
    fn counts_loss_across_a_wrap_and_steady_jitter_is_zero() {
        let mut r = Receiver::default();
        let mut seq: u16 = 65_530;
        for i in 0..20u32 {
            if i != 7 && i != 8 {
                let h = match classify(&rtp(seq, i * 160)) {
                    Packet::Rtp(h) => h,
                    _ => unreachable!(),
                };
                r.on_packet(&h, u64::from(i) * 20_000, 8000);
            }
            seq = seq.wrapping_add(1);
        }
        assert_eq!(r.expected(), 20);
        assert_eq!(r.received, 18);
        assert_eq!(r.lost(), 2);
        assert_eq!(r.jitter(), 0);
    }

    #[test]
    fn jitter_grows_with_uneven_arrival() {
        let mut r = Receiver::default();
        for i in 0..50u32 {
            let wobble = if i % 2 == 0 { 0 } else { 5_000 };
            let h = RtpHeader {
                payload_type: 0,
                sequence: i as u16,
                timestamp: i * 160,
                ssrc: 1,
            };
            r.on_packet(&h, u64::from(i) * 20_000 + wobble, 8000);
        }
        // 5 ms of wobble at 8 kHz is 40 units; the estimate approaches it.
        assert!((30..=40).contains(&r.jitter()), "{}", r.jitter());
    }
}
