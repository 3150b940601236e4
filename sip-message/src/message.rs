//! Whole messages: parse, check, edit, print (RFC 3261 §7, §8.2, §16.3, §18).

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ParseError;
use crate::header::{Header, HeaderName};
use crate::method::Method;
use crate::name_addr::NameAddr;
use crate::scan::{split_commas, Cursor};
use crate::uri::Uri;
use crate::via::Via;

/// Size limits applied while parsing; beyond them a message is refused
/// before any work is spent on it.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message: usize,
    pub max_headers: usize,
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: 65_535,
            max_headers: 128,
            max_line: 8192,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine {
    pub method: Method,
    pub uri: Uri,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    pub code: u16,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request(RequestLine),
    Response(StatusLine),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(text: &str) -> Result<CSeq, &'static str> {
        let mut c = Cursor::new(text.trim());
        let digits = c.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() || digits.len() > 10 {
            return Err("bad sequence number");
        }
        let seq: u64 = digits.parse().map_err(|_| "bad sequence number")?;
        // RFC 3261 §8.1.1.5: the sequence number MUST be less than 2**31.
        if seq >= 1 << 31 {
            return Err("sequence number out of range");
        }
        if !c.skip_ws() {
            return Err("no method");
        }
        let method = c.token().and_then(Method::parse).ok_or("bad method")?;
        if !c.is_empty() {
            return Err("text after the method");
        }
        Ok(CSeq {
            seq: seq as u32,
            method,
        })
    }
}

/// One Contact value: an address, or `*` (remove all bindings, RFC 3261 §10.2.2).
// Contact lists live only while a request is handled, and `*` is rare:
// boxing every address would cost an allocation each for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    Star,
    Addr(NameAddr),
}

/// A parsed SIP message. Header order and unknown headers are kept; the
/// headers this layer checks are also kept parsed (From, To, Call-ID, CSeq,
/// the top Via) so handlers never parse them again.
#[derive(Debug, Clone)]
pub struct Message {
    pub start: StartLine,
    headers: Vec<Header>,
    pub body: Bytes,
    from: NameAddr,
    to: NameAddr,
    call_id: String,
    cseq: CSeq,
    top_via: Via,
}

/// Splits raw text into lines at CRLF (a lone LF is accepted too).
fn next_line(buf: &[u8], start: usize) -> Option<(usize, usize)> {
    let rel = buf[start..].iter().position(|&b| b == b'\n')?;
    let end = start + rel;
    let content_end = if end > start && buf[end - 1] == b'\r' {
        end - 1
    } else {
        end
    };
    Some((content_end, end + 1))
}

/// The raw header section: start line, headers, and where the body starts.
struct RawParts<'a> {
    start_line: &'a [u8],
    headers: Vec<Header>,
    body_start: usize,
}

fn split_raw<'a>(buf: &'a Bytes, limits: &Limits) -> Result<RawParts<'a>, ParseError> {
    // RFC 3261 §7.5: empty lines before the start line are ignored.
    let mut pos = 0;
    while buf.get(pos..pos + 2) == Some(b"\r\n") {
        pos += 2;
    }
    while buf.get(pos) == Some(&b'\n') {
        pos += 1;
    }
    let (line_end, mut next) = next_line(buf, pos).ok_or(ParseError::NoHeaderEnd)?;
    if line_end - pos > limits.max_line {
        return Err(ParseError::LineTooLong);
    }
    let start_line = &buf[pos..line_end];
    let mut headers: Vec<Header> = Vec::new();
    loop {
        let (end, after) = next_line(buf, next).ok_or(ParseError::NoHeaderEnd)?;
        if end == next {
            return Ok(RawParts {
                start_line,
                headers,
                body_start: after,
            });
        }
        let line = &buf[next..end];
        if line.len() > limits.max_line {
            return Err(ParseError::LineTooLong);
        }
        if matches!(line[0], b' ' | b'\t') {
            // Folding: the value goes on in this line (RFC 3261 §7.3.1).
            let last = headers.last_mut().ok_or(ParseError::header(
                "(first)",
                "continuation line without a header",
            ))?;
            let value_start = value_offset(buf, &last.value);
            last.value = buf.slice(value_start..end);
            if last.value.len() > limits.max_line * 4 {
                return Err(ParseError::LineTooLong);
            }
        } else {
            let colon = line
                .iter()
                .position(|&b| b == b':')
                .ok_or(ParseError::header("(unknown)", "no colon"))?;
            let name = std::str::from_utf8(&line[..colon])
                .map_err(|_| ParseError::header("(unknown)", "name is not text"))?
                .trim_end_matches([' ', '\t']);
            if name.is_empty() || !name.bytes().all(crate::scan::is_token_char) {
                return Err(ParseError::header("(unknown)", "name is not a token"));
            }
            let mut v = next + colon + 1;
            while v < end && matches!(buf[v], b' ' | b'\t') {
                v += 1;
            }
            headers.push(Header::new(HeaderName::parse(name), buf.slice(v..end)));
            if headers.len() > limits.max_headers {
                return Err(ParseError::TooManyHeaders);
            }
        }
        next = after;
    }
}

/// Offset of a slice of `buf` within it.
fn value_offset(buf: &Bytes, value: &Bytes) -> usize {
    (value.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize)
}

/// Whether a start line is a status line. Compared as bytes: the line may
/// hold any UTF-8, and slicing text at a fixed index could split a character.
fn is_status_line(line: &str) -> bool {
    line.as_bytes()
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
}

fn parse_request_line(line: &str) -> Result<RequestLine, ParseError> {
    // Exactly single spaces between the three elements (RFC 3261 §7.1).
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::StartLine("not METHOD SP URI SP SIP/2.0"));
    };
    check_version(version)?;
    let method = Method::parse(method).ok_or(ParseError::StartLine("method is not a token"))?;
    let uri = Uri::parse(uri).map_err(|_| ParseError::header("Request-URI", "unparsable"))?;
    if let Uri::Sip(u) = &uri {
        // Headers are not allowed in a Request-URI (RFC 3261 §19.1.5).
        if u.headers.is_some() {
            return Err(ParseError::header(
                "Request-URI",
                "headers in a Request-URI",
            ));
        }
    }
    Ok(RequestLine { method, uri })
}

fn check_version(version: &str) -> Result<(), ParseError> {
    let Some(rest) = version
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("SIP/"))
        .map(|_| &version[4..])
    else {
        return Err(ParseError::StartLine("no SIP version"));
    };
    let Some((major, minor)) = rest.split_once('.') else {
        return Err(ParseError::StartLine("bad SIP version"));
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(major) || !digits(minor) {
        return Err(ParseError::StartLine("bad SIP version"));
    }
    if major.trim_start_matches('0') != "2" || !minor.trim_start_matches('0').is_empty() {
        return Err(ParseError::Version);
    }
    Ok(())
}

fn parse_status_line(line: &str) -> Result<StatusLine, ParseError> {
    let (version, rest) = line
        .split_once(' ')
        .ok_or(ParseError::StartLine("not SIP/2.0 SP CODE"))?;
    check_version(version)?;
    let (code, reason) = match rest.split_once(' ') {
        Some((c, r)) => (c, r),
        None => (rest, ""),
    };
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::StartLine("status code is not three digits"));
    }
    let code: u16 = code
        .parse()
        .map_err(|_| ParseError::StartLine("bad status code"))?;
    if !(100..=699).contains(&code) {
        return Err(ParseError::StartLine("status code out of range"));
    }
    Ok(StatusLine {
        code,
        reason: reason.to_owned(),
    })
}

fn content_length(headers: &[Header]) -> Result<Option<usize>, ParseError> {
    let mut found = None;
    for h in headers
        .iter()
        .filter(|h| h.name == HeaderName::ContentLength)
    {
        if found.is_some() {
            return Err(ParseError::Duplicate("Content-Length"));
        }
        let text = h.text().ok_or(ParseError::ContentLength)?;
        let text = text.trim();
        if text.is_empty() || text.len() > 9 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::ContentLength);
        }
        found = Some(
            text.parse::<usize>()
                .map_err(|_| ParseError::ContentLength)?,
        );
    }
    Ok(found)
}

/// The only header named `name`; more than one is an error.
fn single<'h>(
    headers: &'h [Header],
    name: HeaderName,
    label: &'static str,
) -> Result<&'h Header, ParseError> {
    let mut it = headers.iter().filter(|h| h.name == name);
    let first = it.next().ok_or(ParseError::Missing(label))?;
    if it.next().is_some() {
        return Err(ParseError::Duplicate(label));
    }
    Ok(first)
}

fn text_of<'h>(
    h: &'h Header,
    label: &'static str,
) -> Result<std::borrow::Cow<'h, str>, ParseError> {
    h.text().ok_or(ParseError::header(label, "not UTF-8"))
}

/// Splits values of list headers (Via, Contact, Route, …) into one header each.
fn split_lists(headers: Vec<Header>, limits: &Limits) -> Result<Vec<Header>, ParseError> {
    if !headers
        .iter()
        .any(|h| h.name.is_split_list() && h.value.contains(&b','))
    {
        return Ok(headers);
    }
    let mut out = Vec::with_capacity(headers.len() + 4);
    for h in headers {
        if !h.name.is_split_list() || !h.value.contains(&b',') {
            out.push(h);
            continue;
        }
        let text = h
            .text()
            .ok_or(ParseError::header("(list)", "not UTF-8"))?
            .into_owned();
        for part in split_commas(&text) {
            if part.is_empty() {
                return Err(ParseError::header(label_of(&h.name), "empty list element"));
            }
            out.push(Header::new(
                h.name.clone(),
                Bytes::copy_from_slice(part.as_bytes()),
            ));
        }
        if out.len() > limits.max_headers {
            return Err(ParseError::TooManyHeaders);
        }
    }
    Ok(out)
}

fn label_of(name: &HeaderName) -> &'static str {
    match name {
        HeaderName::Via => "Via",
        HeaderName::Contact => "Contact",
        HeaderName::Route => "Route",
        HeaderName::RecordRoute => "Record-Route",
        HeaderName::Path => "Path",
        _ => "(header)",
    }
}

impl Message {
    /// Parses a UDP datagram: a body longer than Content-Length is cut to it
    /// (trailing bytes are ignored), a shorter one is an error, and without
    /// Content-Length the rest of the datagram is the body.
    pub fn parse_datagram(buf: Bytes, limits: &Limits) -> Result<Message, ParseError> {
        Message::parse(buf, limits, false)
    }

    /// Parses one message cut from a stream by [`crate::framing::StreamFramer`]:
    /// Content-Length is mandatory (RFC 3261 §18.3).
    pub fn parse_stream(buf: Bytes, limits: &Limits) -> Result<Message, ParseError> {
        Message::parse(buf, limits, true)
    }

    fn parse(buf: Bytes, limits: &Limits, stream: bool) -> Result<Message, ParseError> {
        if buf.len() > limits.max_message {
            return Err(ParseError::TooLarge);
        }
        let raw = split_raw(&buf, limits)?;
        let start_text =
            std::str::from_utf8(raw.start_line).map_err(|_| ParseError::StartLine("not text"))?;
        let start = if is_status_line(start_text) {
            StartLine::Response(parse_status_line(start_text)?)
        } else {
            StartLine::Request(parse_request_line(start_text)?)
        };
        let headers = split_lists(raw.headers, limits)?;
        let available = buf.len() - raw.body_start.min(buf.len());
        let body_len = match content_length(&headers)? {
            Some(n) if n > available => return Err(ParseError::Truncated),
            Some(n) => n,
            None if stream => return Err(ParseError::Missing("Content-Length")),
            None => available,
        };
        let body_start = raw.body_start.min(buf.len());
        let body = buf.slice(body_start..body_start + body_len);
        Message::check(start, headers, body)
    }

    /// Checks the headers every message needs and keeps them parsed.
    fn check(start: StartLine, headers: Vec<Header>, body: Bytes) -> Result<Message, ParseError> {
        let from_h = single(&headers, HeaderName::From, "From")?;
        let from = NameAddr::parse(&text_of(from_h, "From")?)
            .map_err(|w| ParseError::header("From", w))?;
        let to_h = single(&headers, HeaderName::To, "To")?;
        let to = NameAddr::parse(&text_of(to_h, "To")?).map_err(|w| ParseError::header("To", w))?;
        let call_id = text_of(single(&headers, HeaderName::CallId, "Call-ID")?, "Call-ID")?
            .trim()
            .to_owned();
        if call_id.is_empty()
            || call_id
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(ParseError::header("Call-ID", "empty or contains spaces"));
        }
        let cseq = CSeq::parse(&text_of(
            single(&headers, HeaderName::CSeq, "CSeq")?,
            "CSeq",
        )?)
        .map_err(|w| ParseError::header("CSeq", w))?;
        // Only the top Via matters on receipt; the others are read when a
        // response is forwarded (pop_via), where a bad one stops it.
        let via_header = headers
            .iter()
            .find(|h| h.name == HeaderName::Via)
            .ok_or(ParseError::Missing("Via"))?;
        let top_via =
            Via::parse(&text_of(via_header, "Via")?).map_err(|w| ParseError::header("Via", w))?;
        if let StartLine::Request(r) = &start {
            if cseq.method != r.method {
                return Err(ParseError::CSeqMismatch);
            }
            let mut mf = headers.iter().filter(|h| h.name == HeaderName::MaxForwards);
            if let Some(h) = mf.next() {
                if mf.next().is_some() {
                    return Err(ParseError::Duplicate("Max-Forwards"));
                }
                parse_max_forwards(&text_of(h, "Max-Forwards")?)?;
            }
        }
        Ok(Message {
            start,
            headers,
            body,
            from,
            to,
            call_id,
            cseq,
            top_via,
        })
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request(_))
    }

    pub fn request_line(&self) -> Option<&RequestLine> {
        match &self.start {
            StartLine::Request(r) => Some(r),
            StartLine::Response(_) => None,
        }
    }

    pub fn method(&self) -> Option<&Method> {
        self.request_line().map(|r| &r.method)
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response(s) => Some(s.code),
            StartLine::Request(_) => None,
        }
    }

    pub fn from(&self) -> &NameAddr {
        &self.from
    }
    pub fn to(&self) -> &NameAddr {
        &self.to
    }
    pub fn call_id(&self) -> &str {
        &self.call_id
    }
    pub fn cseq(&self) -> &CSeq {
        &self.cseq
    }
    pub fn top_via(&self) -> &Via {
        &self.top_via
    }

    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// All values of a header (list headers are already one value each).
    pub fn values(&self, name: &HeaderName) -> impl Iterator<Item = &Header> {
        let name = name.clone();
        self.headers.iter().filter(move |h| h.name == name)
    }

    /// The first value of a header as text.
    pub fn value_text(&self, name: &HeaderName) -> Option<String> {
        self.values(name)
            .next()
            .and_then(|h| h.text().map(|t| t.trim().to_owned()))
    }

    pub fn has(&self, name: &HeaderName) -> bool {
        self.headers.iter().any(|h| &h.name == name)
    }

    /// Max-Forwards, if present.
    pub fn max_forwards(&self) -> Option<u8> {
        self.value_text(&HeaderName::MaxForwards)
            .and_then(|t| parse_max_forwards(&t).ok())
    }

    /// The Expires header, if present and readable; values beyond 2^32-1 read
    /// as 2^32-1 (RFC 3261 §20.19).
    pub fn expires(&self) -> Option<Result<u32, ParseError>> {
        self.value_text(&HeaderName::Expires)
            .map(|t| parse_delta_seconds(&t, "Expires"))
    }

    /// The Contact values, in order.
    pub fn contacts(&self) -> Result<Vec<Contact>, ParseError> {
        self.values(&HeaderName::Contact)
            .map(|h| {
                let text = text_of(h, "Contact")?;
                if text.trim() == "*" {
                    Ok(Contact::Star)
                } else {
                    NameAddr::parse(&text)
                        .map(Contact::Addr)
                        .map_err(|w| ParseError::header("Contact", w))
                }
            })
            .collect()
    }

    /// Values of a name-addr list header (Route, Record-Route, Path), in order.
    pub fn name_addrs(&self, name: &HeaderName) -> Result<Vec<NameAddr>, ParseError> {
        let label = label_of(name);
        self.values(name)
            .map(|h| NameAddr::parse(&text_of(h, label)?).map_err(|w| ParseError::header(label, w)))
            .collect()
    }

    /// All Via values, top first.
    pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
        self.values(&HeaderName::Via)
            .map(|h| Via::parse(&text_of(h, "Via")?).map_err(|w| ParseError::header("Via", w)))
            .collect()
    }

    /// Option tags of Require / Proxy-Require / Supported / Unsupported.
    pub fn option_tags(&self, name: &HeaderName) -> Vec<String> {
        self.values(name)
            .filter_map(|h| h.text().map(|t| t.into_owned()))
            .flat_map(|t| {
                t.split(',')
                    .map(|s| s.trim().to_owned())
                    .collect::<Vec<_>>()
            })
            .filter(|s| !s.is_empty())
            .collect()
    }

    // ----- editing -----

    /// Inserts a header before all others.
    pub fn push_front(&mut self, header: Header) {
        self.headers.insert(0, header);
    }

    /// Appends a header.
    pub fn push(&mut self, header: Header) {
        self.headers.push(header);
    }

    /// Inserts `header` before the first header named `before` (or at the end).
    pub fn insert_before(&mut self, before: &HeaderName, header: Header) {
        let at = self
            .headers
            .iter()
            .position(|h| &h.name == before)
            .unwrap_or(self.headers.len());
        self.headers.insert(at, header);
    }

    /// Removes and returns the first header named `name`.
    pub fn remove_first(&mut self, name: &HeaderName) -> Option<Header> {
        let i = self.headers.iter().position(|h| &h.name == name)?;
        Some(self.headers.remove(i))
    }

    /// Removes every header named `name`.
    pub fn remove_all(&mut self, name: &HeaderName) {
        self.headers.retain(|h| &h.name != name);
    }

    /// Replaces the first header named `name` (or appends it).
    pub fn set(&mut self, name: HeaderName, value: impl Into<Bytes>) {
        let value = value.into();
        match self.headers.iter_mut().find(|h| h.name == name) {
            Some(h) => h.value = value,
            None => self.headers.push(Header::new(name, value)),
        }
    }

    /// Adds a Via on top (a request this element forwards or sends).
    pub fn push_via(&mut self, via: Via) {
        self.headers
            .insert(0, Header::new(HeaderName::Via, via.to_string()));
        self.top_via = via;
    }

    /// Removes the top Via (a response on its way back); false if it was the
    /// last one or the next one is unreadable.
    pub fn pop_via(&mut self) -> bool {
        let Some(i) = self.headers.iter().position(|h| h.name == HeaderName::Via) else {
            return false;
        };
        let Some(next) = self.headers[i + 1..]
            .iter()
            .find(|h| h.name == HeaderName::Via)
        else {
            return false;
        };
        let Some(via) = next.text().and_then(|t| Via::parse(&t).ok()) else {
            return false;
        };
        self.headers.remove(i);
        self.top_via = via;
        true
    }

    /// Rewrites the top Via (e.g. to stamp received/rport).
    pub fn set_top_via(&mut self, via: Via) {
        self.top_via = via;
        self.write_top_via();
    }

    /// Stamps the top Via with where the request really came from
    /// (`received`, and `rport` when asked for: RFC 3261 §18.2.1, RFC 3581).
    pub fn stamp_source(&mut self, source: std::net::SocketAddr) {
        self.top_via.stamp_source(source);
        self.write_top_via();
    }

    fn write_top_via(&mut self) {
        if let Some(h) = self.headers.iter_mut().find(|h| h.name == HeaderName::Via) {
            let mut text = String::with_capacity(h.value.len() + 40);
            self.top_via.write_to(&mut text);
            h.value = Bytes::from(text);
        }
    }

    /// Sets the To header (a response adding its tag).
    pub fn set_to(&mut self, to: NameAddr) {
        self.set(HeaderName::To, to.to_string());
        self.to = to;
    }

    /// Sets the Request-URI of a request.
    pub fn set_request_uri(&mut self, uri: Uri) {
        if let StartLine::Request(r) = &mut self.start {
            r.uri = uri;
        }
    }

    /// Decrements Max-Forwards, adding it with 70 minus one when absent
    /// (RFC 3261 §16.6 step 3).
    pub fn decrement_max_forwards(&mut self) {
        let next = self
            .max_forwards()
            .map(|m| m.saturating_sub(1))
            .unwrap_or(69);
        self.set(HeaderName::MaxForwards, next.to_string());
    }

    // ----- building -----

    /// A response to `request` (RFC 3261 §8.2.6): Via, From, To, Call-ID and
    /// CSeq copied, a To tag added if `to_tag` is given and To has none.
    pub fn response(request: &Message, code: u16, reason: &str, to_tag: Option<&str>) -> Message {
        let mut headers: Vec<Header> = request
            .headers
            .iter()
            .filter(|h| {
                matches!(
                    h.name,
                    HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq
                )
            })
            .cloned()
            .collect();
        let mut to = request.to.clone();
        if let (Some(tag), None) = (to_tag, to.tag()) {
            to.params.set("tag", Some(tag));
        }
        let to_header = match (to_tag, request.to.tag()) {
            (Some(_), None) => Header::new(HeaderName::To, to.to_string()),
            _ => request
                .headers
                .iter()
                .find(|h| h.name == HeaderName::To)
                .cloned()
                .unwrap_or_else(|| Header::new(HeaderName::To, to.to_string())),
        };
        let at = headers
            .iter()
            .position(|h| h.name == HeaderName::CallId)
            .unwrap_or(headers.len());
        headers.insert(at, to_header);
        // Timestamp is echoed (RFC 3261 §8.2.6.1).
        if let Some(ts) = request
            .headers
            .iter()
            .find(|h| h.name == HeaderName::Timestamp)
        {
            headers.push(ts.clone());
        }
        Message {
            start: StartLine::Response(StatusLine {
                code,
                reason: reason.to_owned(),
            }),
            headers,
            body: Bytes::new(),
            from: request.from.clone(),
            to,
            call_id: request.call_id.clone(),
            cseq: request.cseq.clone(),
            top_via: request.top_via.clone(),
        }
    }

    /// A new request built from parts (a proxy's own CANCEL or ACK).
    pub fn request(
        method: Method,
        uri: Uri,
        via: Via,
        from: NameAddr,
        to: NameAddr,
        call_id: &str,
        seq: u32,
    ) -> Message {
        let headers = vec![
            Header::new(HeaderName::Via, via.to_string()),
            Header::new(HeaderName::MaxForwards, "70"),
            Header::new(HeaderName::From, from.to_string()),
            Header::new(HeaderName::To, to.to_string()),
            Header::new(HeaderName::CallId, call_id.to_owned()),
            Header::new(HeaderName::CSeq, format!("{seq} {method}")),
        ];
        Message {
            start: StartLine::Request(RequestLine {
                method: method.clone(),
                uri,
            }),
            headers,
            body: Bytes::new(),
            from,
            to,
            call_id: call_id.to_owned(),
            cseq: CSeq { seq, method },
            top_via: via,
        }
    }

    /// The message on the wire. Content-Length always states the body's length.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(
            256 + self
                .headers
                .iter()
                .map(|h| h.value.len() + 24)
                .sum::<usize>()
                + self.body.len(),
        );
        let mut line = String::with_capacity(128);
        match &self.start {
            StartLine::Request(r) => {
                line.push_str(r.method.as_str());
                line.push(' ');
                r.uri.write_to(&mut line);
                line.push_str(" SIP/2.0\r\n");
            }
            StartLine::Response(s) => {
                line.push_str("SIP/2.0 ");
                crate::uri::write_u64(s.code.into(), &mut line);
                line.push(' ');
                line.push_str(&s.reason);
                line.push_str("\r\n");
            }
        }
        out.put_slice(line.as_bytes());
        let mut length = String::with_capacity(24);
        length.push_str("Content-Length: ");
        crate::uri::write_u64(self.body.len() as u64, &mut length);
        length.push_str("\r\n");
        let mut length_written = false;
        for h in &self.headers {
            if h.name == HeaderName::ContentLength {
                if !length_written {
                    out.put_slice(length.as_bytes());
                    length_written = true;
                }
                continue;
            }
            out.put_slice(h.name.as_str().as_bytes());
            out.put_slice(b": ");
            out.put_slice(&h.value);
            out.put_slice(b"\r\n");
        }
        if !length_written {
            out.put_slice(length.as_bytes());
        }
        out.put_slice(b"\r\n");
        out.put_slice(&self.body);
        out.freeze()
    }
}

fn parse_max_forwards(text: &str) -> Result<u8, ParseError> {
    let t = text.trim();
    if t.is_empty() || t.len() > 10 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::header("Max-Forwards", "not a number"));
    }
    // Leading zeros are allowed (1*DIGIT); the value must fit 0..=255.
    let digits = t.trim_start_matches('0');
    if digits.len() > 3 {
        return Err(ParseError::header("Max-Forwards", "above 255"));
    }
    if digits.is_empty() {
        return Ok(0);
    }
    digits
        .parse::<u8>()
        .map_err(|_| ParseError::header("Max-Forwards", "above 255"))
}

/// `delta-seconds`, saturating at 2^32-1.
pub(crate) fn parse_delta_seconds(text: &str, label: &'static str) -> Result<u32, ParseError> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::header(label, "not a number of seconds"));
    }
    Ok(t.parse::<u64>()
        .map(|v| v.min(u32::MAX as u64) as u32)
        .unwrap_or(u32::MAX))
}

/// An error response for raw bytes that failed to parse, if they are a
/// request with the headers a response needs (Via, From, To, Call-ID, CSeq);
/// None means the bytes can only be dropped.
pub fn error_response(raw: &Bytes, error: &ParseError, limits: &Limits) -> Option<Bytes> {
    let parts = split_raw(raw, limits).ok()?;
    let start = std::str::from_utf8(parts.start_line).ok()?;
    if is_status_line(start) {
        return None;
    }
    let wanted = [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ];
    let mut out = String::new();
    let (code, reason) = error.status();
    let _ = write!(out, "SIP/2.0 {code} {reason}\r\n");
    for name in &wanted {
        let mut any = false;
        for h in parts.headers.iter().filter(|h| &h.name == name) {
            let text = h.text()?;
            if text.contains(['\r', '\n']) {
                return None;
            }
            let _ = write!(out, "{}: {}\r\n", name.as_str(), text);
            any = true;
        }
        if !any {
            return None;
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Some(Bytes::from(out))
}

impl Message {
    /// See [`error_response`].
    pub fn error_response(raw: &Bytes, error: &ParseError, limits: &Limits) -> Option<Bytes> {
        error_response(raw, error, limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
X-Unknown:   keep   this  exactly\r\n\
m: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/octet-stream\r\n\
l: 4\r\n\
\r\n\
\x00\x01\r\n";

    fn parse(text: &[u8]) -> Result<Message, ParseError> {
        Message::parse_datagram(Bytes::copy_from_slice(text), &Limits::default())
    }

    #[test]
    fn parses_lists_compact_names_and_binary_body() {
        let m = parse(INVITE.as_bytes()).expect("parses");
        assert_eq!(m.method(), Some(&Method::Invite));
        assert_eq!(m.values(&HeaderName::Via).count(), 2);
        assert_eq!(m.top_via().branch().as_deref(), Some("z9hG4bK776asdhds"));
        assert_eq!(m.from().tag().as_deref(), Some("1928301774"));
        assert_eq!(m.cseq().seq, 314159);
        assert_eq!(&m.body[..], b"\x00\x01\r\n");
        assert_eq!(m.contacts().expect("contacts").len(), 1);
        let out = m.to_bytes();
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("X-Unknown: keep   this  exactly\r\n"),
            "{text}"
        );
        assert!(
            text.ends_with("Content-Length: 4\r\n\r\n\x00\x01\r\n")
                || text.contains("Content-Length: 4\r\n")
        );
        let again = parse(&out).expect("reparses");
        assert_eq!(again.body, m.body);
        assert_eq!(again.headers().len(), m.headers().len());
    }

    #[test]
    fn datagram_and_stream_rules_for_content_length() {
        let base = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n";
        let with = |cl: &str, body: &str| format!("{base}{cl}\r\n{body}");
        // Extra bytes after the body are ignored.
        let m = parse(with("Content-Length: 2\r\n", "abEXTRA").as_bytes()).expect("trailing bytes");
        assert_eq!(&m.body[..], b"ab");
        // A datagram shorter than Content-Length is refused.
        assert_eq!(
            parse(with("Content-Length: 20\r\n", "ab").as_bytes()).unwrap_err(),
            ParseError::Truncated
        );
        // Without Content-Length a datagram's rest is the body; a stream needs it.
        assert_eq!(
            &parse(with("", "xyz").as_bytes()).expect("no CL").body[..],
            b"xyz"
        );
        let stream = Message::parse_stream(Bytes::from(with("", "")), &Limits::default());
        assert_eq!(stream.unwrap_err(), ParseError::Missing("Content-Length"));
        assert_eq!(
            parse(with("Content-Length: -1\r\n", "").as_bytes()).unwrap_err(),
            ParseError::ContentLength
        );
        assert_eq!(
            parse(with("Content-Length: 0\r\nl: 0\r\n", "").as_bytes()).unwrap_err(),
            ParseError::Duplicate("Content-Length")
        );
    }

    #[test]
    fn start_line_rules() {
        let rest = " SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        assert!(parse(format!("OPTIONS sip:a@b{rest}").as_bytes()).is_ok());
        assert_eq!(
            parse(format!("OPTIONS sip:a@b SIP/7.0{}", &rest[8..]).as_bytes()).unwrap_err(),
            ParseError::Version
        );
        assert!(matches!(
            parse(format!("OPTIONS  sip:a@b{rest}").as_bytes()),
            Err(ParseError::StartLine(_))
        ));
        assert!(parse(format!("OPTIONS <sip:a@b>{rest}").as_bytes()).is_err());
        assert!(parse(format!("OPTIONS sip:a@b?Route=x{rest}").as_bytes()).is_err());
        assert_eq!(
            parse(format!("INVITE sip:a@b{rest}").as_bytes()).unwrap_err(),
            ParseError::CSeqMismatch
        );
        assert!(
            parse(format!("FOO sip:a@b{}", rest.replace("OPTIONS", "FOO")).as_bytes()).is_ok(),
            "extension method"
        );
        assert!(parse(format!("OPTIONS tel:+4930123{rest}").as_bytes()).is_ok());
    }

    #[test]
    fn folding_and_space_before_colon() {
        let text = "OPTIONS sip:a@b SIP/2.0\r\nVia : SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>\r\n ;tag=1\r\nTo\t: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1\r\n  OPTIONS\r\nContent-Length: 0\r\n\r\n";
        let m = parse(text.as_bytes()).expect("folded");
        assert_eq!(m.from().tag().as_deref(), Some("1"));
        assert_eq!(m.cseq().method, Method::Options);
    }

    #[test]
    fn responses_copy_the_right_headers() {
        let req = parse(INVITE.as_bytes()).expect("parses");
        let r = Message::response(&req, 486, "Busy Here", Some("xyz"));
        let text = String::from_utf8(r.to_bytes().to_vec()).expect("utf-8");
        assert!(text.starts_with("SIP/2.0 486 Busy Here\r\n"));
        assert_eq!(text.matches("Via: ").count(), 2);
        assert!(text.contains("To: Bob <sip:bob@biloxi.example.com>;tag=xyz\r\n"));
        assert!(text.contains("Content-Length: 0\r\n\r\n"));
        let parsed = parse(text.as_bytes()).expect("response parses");
        assert_eq!(parsed.status(), Some(486));
    }

    #[test]
    fn error_responses_need_the_core_headers() {
        let raw = Bytes::from_static(b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n");
        let err = parse(&raw).unwrap_err();
        let resp = error_response(&raw, &err, &Limits::default()).expect("answerable");
        assert!(resp.starts_with(b"SIP/2.0 400 CSeq Method Mismatch\r\n"));
        let raw = Bytes::from_static(b"GARBAGE\r\n\r\n");
        assert!(error_response(&raw, &ParseError::NoHeaderEnd, &Limits::default()).is_none());
    }

    #[test]
    fn multibyte_characters_in_the_start_line_are_not_split() {
        // Found by the fuzzer: a 2-byte character across byte 4 of the start line.
        let raw = [
            83, 217, 145, 206, 179, 101, 110, 103, 66, 89, 114, 58, 32, 57, 52, 57, 51, 48, 50, 10,
            13, 10,
        ];
        assert!(parse(&raw).is_err());
        let err = parse(&raw).unwrap_err();
        assert!(error_response(&Bytes::copy_from_slice(&raw), &err, &Limits::default()).is_none());
    }

    #[test]
    fn limits_are_enforced() {
        let limits = Limits {
            max_message: 200,
            max_headers: 5,
            max_line: 100,
        };
        let big = Bytes::from(vec![b'a'; 300]);
        assert_eq!(
            Message::parse_datagram(big, &limits).unwrap_err(),
            ParseError::TooLarge
        );
        let many = format!("OPTIONS sip:a@b SIP/2.0\r\n{}\r\n", "X: y\r\n".repeat(6));
        assert_eq!(
            Message::parse_datagram(Bytes::from(many), &limits).unwrap_err(),
            ParseError::TooManyHeaders
        );
        let long = format!("OPTIONS sip:a@b SIP/2.0\r\nX: {}\r\n\r\n", "y".repeat(120));
        assert_eq!(
            Message::parse_datagram(Bytes::from(long), &limits).unwrap_err(),
            ParseError::LineTooLong
        );
    }
}
