//! Cutting a stream (TCP) into SIP messages by Content-Length (RFC 3261
//! §18.3), with RFC 5626 §4.4.1 CRLF keep-alives recognised between messages.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::ParseError;
use crate::message::Limits;

/// What the stream yielded.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// One complete message (headers and exactly Content-Length body bytes).
    Message(Bytes),
    /// A double-CRLF keep-alive ping: answer with a single CRLF.
    Ping,
}

/// Accumulates stream bytes and yields frames. After an error the stream is
/// out of step and should be closed.
#[derive(Debug)]
pub struct StreamFramer {
    buf: BytesMut,
    limits: Limits,
}

impl StreamFramer {
    pub fn new(limits: Limits) -> Self {
        StreamFramer {
            buf: BytesMut::with_capacity(4096),
            limits,
        }
    }

    /// The buffer to read more bytes into.
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// The next complete frame, None if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ParseError> {
        // Leading CRLFs: a pong (one CRLF) is skipped, a ping (two) answered.
        loop {
            if self.buf.starts_with(b"\r\n\r\n") {
                self.buf.advance(4);
                return Ok(Some(Frame::Ping));
            }
            if self.buf.starts_with(b"\r\n") {
                if self.buf.len() < 4 && b"\r\n\r\n".starts_with(&self.buf[..]) {
                    return Ok(None);
                }
                self.buf.advance(2);
                continue;
            }
            break;
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        let Some(header_end) = find(&self.buf, b"\r\n\r\n") else {
            if self.buf.len() > self.limits.max_message {
                return Err(ParseError::TooLarge);
            }
            return Ok(None);
        };
        let head = &self.buf[..header_end];
        let length = content_length(head)?.ok_or(ParseError::Missing("Content-Length"))?;
        let total = header_end + 4 + length;
        if total > self.limits.max_message {
            return Err(if header_end + 4 <= self.limits.max_message {
                ParseError::BodyTooLarge
            } else {
                ParseError::TooLarge
            });
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        Ok(Some(Frame::Message(self.buf.split_to(total).freeze())))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Content-Length from a raw header block (full or compact name, any case,
/// whitespace before the colon).
fn content_length(head: &[u8]) -> Result<Option<usize>, ParseError> {
    let mut found = None;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = trim(&line[..colon]);
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let value = trim(&line[colon + 1..]);
            if found.is_some() {
                return Err(ParseError::Duplicate("Content-Length"));
            }
            if value.is_empty() || value.len() > 9 || !value.iter().all(u8::is_ascii_digit) {
                return Err(ParseError::ContentLength);
            }
            let text = std::str::from_utf8(value).map_err(|_| ParseError::ContentLength)?;
            found = Some(text.parse().map_err(|_| ParseError::ContentLength)?);
        }
    }
    Ok(found)
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nl: 3\r\n\r\nabc";

    #[test]
    fn frames_messages_split_anywhere() {
        let mut stream = Vec::new();
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(b"\r\n");
        stream.extend_from_slice(MSG);
        for chunk in 1..stream.len() {
            let mut f = StreamFramer::new(Limits::default());
            let mut frames = Vec::new();
            for piece in stream.chunks(chunk) {
                f.buffer().extend_from_slice(piece);
                while let Some(frame) = f.next_frame().expect("valid stream") {
                    frames.push(frame);
                }
            }
            assert_eq!(
                frames,
                vec![
                    Frame::Ping,
                    Frame::Message(Bytes::from_static(MSG)),
                    Frame::Message(Bytes::from_static(MSG))
                ],
                "chunk size {chunk}"
            );
        }
    }

    #[test]
    fn missing_or_oversized_lengths_are_errors() {
        let mut f = StreamFramer::new(Limits::default());
        f.buffer()
            .extend_from_slice(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n");
        assert_eq!(f.next_frame(), Err(ParseError::Missing("Content-Length")));
        let mut f = StreamFramer::new(Limits {
            max_message: 100,
            ..Limits::default()
        });
        f.buffer()
            .extend_from_slice(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 5000\r\n\r\n");
        assert_eq!(f.next_frame(), Err(ParseError::BodyTooLarge));
        let mut f = StreamFramer::new(Limits {
            max_message: 100,
            ..Limits::default()
        });
        f.buffer().extend_from_slice(&[b'x'; 200]);
        assert_eq!(f.next_frame(), Err(ParseError::TooLarge));
    }
}
