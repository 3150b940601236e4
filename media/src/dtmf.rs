//! Keys pressed on a phone: RFC 4733 telephone-events in RTP (what phones
//! send by default) and the `application/dtmf-relay` body of SIP INFO (what
//! some send instead). Each key press arrives as several packets of one
//! event; [`Detector`] reports it once.

/// A key: `0`-`9`, `*`, `#`, `A`-`D`.
pub type Key = char;

/// The key of an RFC 4733 event code (§3.2: 0-9, 10 `*`, 11 `#`, 12-15 A-D).
pub fn key_of_event(event: u8) -> Option<Key> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// The RFC 4733 event code of a key.
pub fn event_of_key(key: Key) -> Option<u8> {
    match key {
        '0'..='9' => Some(key as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(key as u8 - b'A' + 12),
        'a'..='d' => Some(key as u8 - b'a' + 12),
        _ => None,
    }
}

/// One telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub event: u8,
    pub end: bool,
    pub volume: u8,
    /// In timestamp units (1/8000 s).
    pub duration: u16,
}

impl Event {
    pub fn parse(payload: &[u8]) -> Option<Event> {
        let b = payload.get(..4)?;
        Some(Event {
            event: b[0],
            end: b[1] & 0x80 != 0,
            volume: b[1] & 0x3F,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    pub fn write(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (if self.end { 0x80 } else { 0 }) | (self.volume & 0x3F),
            d[0],
            d[1],
        ]
    }
}

/// Turns the packets of telephone-events into key presses: one per event,
/// keyed by the RTP timestamp that all packets of one press share (so the
/// three redundant end packets, or a lost start packet, never make two).
#[derive(Debug, Default)]
pub struct Detector {
    last_timestamp: Option<u32>,
}

impl Detector {
    /// A telephone-event packet with RTP timestamp `timestamp`: the key, the
    /// first time its press is seen.
    pub fn on_event(&mut self, timestamp: u32, payload: &[u8]) -> Option<Key> {
        let e = Event::parse(payload)?;
        let key = key_of_event(e.event)?;
        if self.last_timestamp == Some(timestamp) {
            return None;
        }
        self.last_timestamp = Some(timestamp);
        Some(key)
    }
}

/// The key of an `application/dtmf-relay` INFO body (`Signal=5` lines, as
/// Cisco and most desk phones send them).
pub fn key_of_info(body: &str) -> Option<Key> {
    body.lines().find_map(|line| {
        let (name, value) = line.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("signal") {
            return None;
        }
        let v = value.trim();
        let mut chars = v.chars();
        let c = chars.next()?;
        if chars.next().is_some() {
            // Some phones send the event code instead of the key (10, 11).
            return v.parse::<u8>().ok().and_then(key_of_event);
        }
        event_of_key(c).and_then(key_of_event)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_events_map_both_ways() {
        for (key, event) in [
            ('0', 0),
            ('9', 9),
            ('*', 10),
            ('#', 11),
            ('A', 12),
            ('D', 15),
        ] {
            assert_eq!(key_of_event(event), Some(key));
            assert_eq!(event_of_key(key), Some(event));
        }
        assert_eq!(key_of_event(16), None);
        assert_eq!(event_of_key('x'), None);
    }

    #[test]
    fn an_event_round_trips() {
        let e = Event {
            event: 11,
            end: true,
            volume: 10,
            duration: 1600,
        };
        assert_eq!(Event::parse(&e.write()), Some(e));
        assert_eq!(Event::parse(&[1, 2, 3]), None);
    }

    #[test]
    fn one_press_is_reported_once_whatever_its_packets() {
        let mut d = Detector::default();
        let start = Event {
            event: 5,
            end: false,
            volume: 10,
            duration: 160,
        }
        .write();
        let end = Event {
            event: 5,
            end: true,
            volume: 10,
            duration: 800,
        }
        .write();
        assert_eq!(d.on_event(1000, &start), Some('5'));
        assert_eq!(d.on_event(1000, &start), None);
        for _ in 0..3 {
            assert_eq!(d.on_event(1000, &end), None, "redundant end packets");
        }
        // The same key again is a new press (a new timestamp), even if its
        // first packets were lost.
        assert_eq!(d.on_event(9000, &end), Some('5'));
        assert_eq!(d.on_event(17000, &[200, 0, 0, 0]), None, "not a key");
    }

    #[test]
    fn info_bodies() {
        assert_eq!(key_of_info("Signal=5\r\nDuration=160\r\n"), Some('5'));
        assert_eq!(key_of_info("Signal= #\r\nDuration=160"), Some('#'));
        assert_eq!(key_of_info("signal=11\nduration=100"), Some('#'));
        assert_eq!(key_of_info("Duration=160"), None);
        assert_eq!(key_of_info("Signal=xyz"), None);
    }
}
