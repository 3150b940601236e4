//! Why a message or a header could not be read, and what a server answers.

/// A message the parser refuses. [`ParseError::status`] is the answer a
/// server sends when the message was a request it can still answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("message larger than the limit")]
    TooLarge,
    #[error("body larger than the limit")]
    BodyTooLarge,
    #[error("too many header fields")]
    TooManyHeaders,
    #[error("header line too long")]
    LineTooLong,
    #[error("malformed start line: {0}")]
    StartLine(&'static str),
    #[error("unsupported SIP version")]
    Version,
    #[error("malformed {name} header: {why}")]
    Header {
        name: &'static str,
        why: &'static str,
    },
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("more than one {0} header")]
    Duplicate(&'static str),
    #[error("malformed Content-Length")]
    ContentLength,
    #[error("body shorter than Content-Length")]
    Truncated,
    #[error("CSeq method does not match the request method")]
    CSeqMismatch,
    #[error("no end of headers")]
    NoHeaderEnd,
}

impl ParseError {
    pub(crate) fn header(name: &'static str, why: &'static str) -> ParseError {
        ParseError::Header { name, why }
    }

    /// Status code and reason phrase for answering a request that failed to parse.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            ParseError::TooLarge | ParseError::TooManyHeaders | ParseError::LineTooLong => {
                (513, "Message Too Large")
            }
            ParseError::BodyTooLarge => (413, "Request Entity Too Large"),
            ParseError::Version => (505, "Version Not Supported"),
            ParseError::StartLine(_) => (400, "Malformed Request-Line"),
            ParseError::Header { name, .. } => (400, malformed_reason(name)),
            ParseError::Missing(name) => (400, missing_reason(name)),
            ParseError::Duplicate(_) => (400, "Duplicate Single-Value Header"),
            ParseError::ContentLength => (400, "Bad Content-Length"),
            ParseError::Truncated => (400, "Body Shorter Than Content-Length"),
            ParseError::CSeqMismatch => (400, "CSeq Method Mismatch"),
            ParseError::NoHeaderEnd => (400, "Incomplete Headers"),
        }
    }
}

fn malformed_reason(name: &str) -> &'static str {
    match name {
        "Via" => "Malformed Via",
        "From" => "Malformed From",
        "To" => "Malformed To",
        "Call-ID" => "Malformed Call-ID",
        "CSeq" => "Malformed CSeq",
        "Max-Forwards" => "Malformed Max-Forwards",
        "Contact" => "Malformed Contact",
        "Expires" => "Malformed Expires",
        "Route" => "Malformed Route",
        "Record-Route" => "Malformed Record-Route",
        "Request-URI" => "Malformed Request-URI",
        _ => "Malformed Header",
    }
}

fn missing_reason(name: &str) -> &'static str {
    match name {
        "Via" => "Missing Via",
        "From" => "Missing From",
        "To" => "Missing To",
        "Call-ID" => "Missing Call-ID",
        "CSeq" => "Missing CSeq",
        _ => "Missing Header",
    }
}
