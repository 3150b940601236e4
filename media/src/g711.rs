//! G.711 (ITU-T), the codec every desk phone speaks: 8 kHz samples, one
//! byte each, µ-law (PCMU, payload type 0) or A-law (PCMA, payload type 8).
//! The media applications work on 16-bit linear PCM and convert at the
//! edge. Written here rather than taken from a crate: it is forty lines of
//! arithmetic the standard fixes exactly, and the tests pin it.

/// A G.711 law.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Law {
    /// µ-law, PCMU, RTP payload type 0 (North America, Japan).
    Mu,
    /// A-law, PCMA, RTP payload type 8 (Europe and most of the world).
    A,
}

impl Law {
    /// The static RTP payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        match self {
            Law::Mu => 0,
            Law::A => 8,
        }
    }

    /// The law of a static payload type, if it is one.
    pub fn of_payload_type(pt: u8) -> Option<Law> {
        match pt {
            0 => Some(Law::Mu),
            8 => Some(Law::A),
            _ => None,
        }
    }

    /// The SDP encoding name.
    pub fn name(self) -> &'static str {
        match self {
            Law::Mu => "PCMU",
            Law::A => "PCMA",
        }
    }

    /// The byte that decodes to silence.
    pub fn silence(self) -> u8 {
        match self {
            Law::Mu => 0xFF,
            Law::A => 0xD5,
        }
    }

    pub fn encode(self, sample: i16) -> u8 {
        match self {
            Law::Mu => ulaw_encode(sample),
            Law::A => alaw_encode(sample),
        }
    }

    pub fn decode(self, byte: u8) -> i16 {
        match self {
            Law::Mu => ULAW_TABLE[usize::from(byte)],
            Law::A => ALAW_TABLE[usize::from(byte)],
        }
    }

    /// Encodes `samples` onto the end of `out`.
    pub fn encode_into(self, samples: &[i16], out: &mut Vec<u8>) {
        out.extend(samples.iter().map(|&s| self.encode(s)));
    }

    /// Decodes `bytes` onto the end of `out`.
    pub fn decode_into(self, bytes: &[u8], out: &mut Vec<i16>) {
        out.extend(bytes.iter().map(|&b| self.decode(b)));
    }
}

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 8159;

/// Segment ends of the 14-bit µ-law magnitude.
const ULAW_SEGMENTS: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
/// Segment ends of the 13-bit A-law magnitude.
const ALAW_SEGMENTS: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

fn segment(value: i32, ends: &[i32; 8]) -> usize {
    ends.iter().position(|&end| value <= end).unwrap_or(8)
}

fn ulaw_encode(sample: i16) -> u8 {
    let mut v = i32::from(sample) >> 2;
    let mask: i32 = if v < 0 {
        v = -v;
        0x7F
    } else {
        0xFF
    };
    let v = v.min(ULAW_CLIP) + (ULAW_BIAS >> 2);
    let seg = segment(v, &ULAW_SEGMENTS);
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let code = ((seg as i32) << 4) | ((v >> (seg + 1)) & 0x0F);
    (code ^ mask) as u8
}

const fn ulaw_decode(byte: u8) -> i16 {
    let u = !byte as i32;
    let mut t = ((u & 0x0F) << 3) + ULAW_BIAS;
    t <<= (u & 0x70) >> 4;
    (if u & 0x80 != 0 {
        ULAW_BIAS - t
    } else {
        t - ULAW_BIAS
    }) as i16
}

fn alaw_encode(sample: i16) -> u8 {
    let mut v = i32::from(sample) >> 3;
    let mask: i32 = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    let seg = segment(v, &ALAW_SEGMENTS);
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let mut code = (seg as i32) << 4;
    code |= if seg < 2 {
        (v >> 1) & 0x0F
    } else {
        (v >> seg) & 0x0F
    };
    (code ^ mask) as u8
}

const fn alaw_decode(byte: u8) -> i16 {
    let a = (byte ^ 0x55) as i32;
    let mut t = (a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

const fn ulaw_table() -> [i16; 256] {
    let mut out = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        out[i] = ulaw_decode(i as u8);
        i += 1;
    }
    out
}

const fn alaw_table() -> [i16; 256] {
    let mut out = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        out[i] = alaw_decode(i as u8);
        i += 1;
    }
    out
}

static ULAW_TABLE: [i16; 256] = ulaw_table();
static ALAW_TABLE: [i16; 256] = alaw_table();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_and_the_extremes_decode_as_the_standard_has_them() {
        assert_eq!(Law::Mu.decode(0xFF), 0);
        assert_eq!(Law::Mu.decode(0x7F), 0);
        assert_eq!(Law::Mu.decode(0x00), -32124);
        assert_eq!(Law::Mu.decode(0x80), 32124);
        assert_eq!(Law::A.decode(0xD5), 8);
        assert_eq!(Law::A.decode(0x55), -8);
        assert_eq!(Law::A.decode(0xAA), 32256);
        assert_eq!(Law::A.decode(0x2A), -32256);
        assert_eq!(Law::Mu.encode(0), 0xFF);
        assert_eq!(Law::A.encode(0), 0xD5);
        assert_eq!(Law::Mu.encode(i16::MAX), 0x80);
        assert_eq!(Law::Mu.encode(i16::MIN), 0x00);
        assert_eq!(Law::A.encode(i16::MAX), 0xAA);
        assert_eq!(Law::A.encode(i16::MIN), 0x2A);
    }

    #[test]
    fn every_code_survives_decode_and_encode() {
        for law in [Law::Mu, Law::A] {
            for b in 0..=255u8 {
                let again = law.encode(law.decode(b));
                // µ-law has two zeros (0x7F and 0xFF); both decode to 0.
                if law == Law::Mu && b == 0x7F {
                    assert_eq!(again, 0xFF);
                } else {
                    assert_eq!(again, b, "{law:?} {b:#04x}");
                }
            }
        }
    }

    #[test]
    fn quantisation_error_stays_within_the_step_of_its_segment() {
        for law in [Law::Mu, Law::A] {
            for s in (i16::MIN..=i16::MAX).step_by(7) {
                let back = i32::from(law.decode(law.encode(s)));
                let err = (back - i32::from(s)).abs();
                // The largest step of either law is 1024 (µ-law) / 1024 (A-law),
                // half of it is the worst rounding; small values are finer.
                let bound = (i32::from(s).abs() / 16).max(16);
                assert!(err <= bound, "{law:?} {s} -> {back}");
            }
        }
    }
}
