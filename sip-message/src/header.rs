//! Header fields: names (full and compact forms, RFC 3261 §7.3.3 and the
//! extensions), and values kept as the bytes received.

use std::borrow::Cow;

use bytes::Bytes;

macro_rules! header_names {
    ($( $variant:ident => $full:literal $(, $compact:literal)? ; )+) => {
        /// A header field name. Known names compare and print in their full
        /// form; others keep the spelling received.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum HeaderName {
            $( $variant, )+
            Other(String),
        }

        impl HeaderName {
            /// Recognises full names case-insensitively and compact forms.
            pub fn parse(name: &str) -> HeaderName {
                $(
                    if name.eq_ignore_ascii_case($full) $( || name.eq_ignore_ascii_case($compact) )? {
                        return HeaderName::$variant;
                    }
                )+
                HeaderName::Other(name.to_owned())
            }

            pub fn as_str(&self) -> &str {
                match self {
                    $( HeaderName::$variant => $full, )+
                    HeaderName::Other(name) => name,
                }
            }
        }
    };
}

header_names! {
    Accept => "Accept";
    AcceptContact => "Accept-Contact", "a";
    AcceptEncoding => "Accept-Encoding";
    AcceptLanguage => "Accept-Language";
    AlertInfo => "Alert-Info";
    Allow => "Allow";
    AllowEvents => "Allow-Events", "u";
    AuthenticationInfo => "Authentication-Info";
    Authorization => "Authorization";
    CallId => "Call-ID", "i";
    CallInfo => "Call-Info";
    Contact => "Contact", "m";
    ContentDisposition => "Content-Disposition";
    ContentEncoding => "Content-Encoding", "e";
    ContentLanguage => "Content-Language";
    ContentLength => "Content-Length", "l";
    ContentType => "Content-Type", "c";
    CSeq => "CSeq";
    Date => "Date";
    Diversion => "Diversion";
    ErrorInfo => "Error-Info";
    Event => "Event", "o";
    Expires => "Expires";
    From => "From", "f";
    HistoryInfo => "History-Info";
    Identity => "Identity", "y";
    InReplyTo => "In-Reply-To";
    // Node-internal: on an unsolicited message-summary NOTIFY from the
    // node's application server, a contact whose lamp already has a
    // subscription (the proxy skips it and removes the header).
    LampSubscribed => "Lamp-Subscribed";
    MaxForwards => "Max-Forwards";
    MinExpires => "Min-Expires";
    MinSe => "Min-SE";
    MimeVersion => "MIME-Version";
    Organization => "Organization";
    PAssertedIdentity => "P-Asserted-Identity";
    PChargeInfo => "P-Charge-Info";
    PPreferredIdentity => "P-Preferred-Identity";
    Path => "Path";
    Priority => "Priority";
    Privacy => "Privacy";
    ProxyAuthenticate => "Proxy-Authenticate";
    ProxyAuthorization => "Proxy-Authorization";
    ProxyRequire => "Proxy-Require";
    RAck => "RAck";
    Reason => "Reason";
    RemotePartyId => "Remote-Party-ID";
    RecordRoute => "Record-Route";
    ReferTo => "Refer-To", "r";
    ReferredBy => "Referred-By", "b";
    RejectContact => "Reject-Contact", "j";
    ReplyTo => "Reply-To";
    RequestDisposition => "Request-Disposition", "d";
    Require => "Require";
    RetryAfter => "Retry-After";
    Route => "Route";
    RSeq => "RSeq";
    Server => "Server";
    SessionExpires => "Session-Expires", "x";
    Subject => "Subject", "s";
    SubscriptionState => "Subscription-State";
    Supported => "Supported", "k";
    Timestamp => "Timestamp";
    To => "To", "t";
    Unsupported => "Unsupported";
    UserAgent => "User-Agent";
    Via => "Via", "v";
    Warning => "Warning";
    WwwAuthenticate => "WWW-Authenticate";
}

impl HeaderName {
    /// Headers whose comma-separated values this layer splits into one
    /// [`Header`] each (RFC 3261 §7.3.1), so that Via and Route edits touch
    /// exactly one value.
    pub(crate) fn is_split_list(&self) -> bool {
        matches!(
            self,
            HeaderName::Via
                | HeaderName::Contact
                | HeaderName::Route
                | HeaderName::RecordRoute
                | HeaderName::Path
        )
    }
}

/// One header field: a name and a value exactly as received (folding kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: HeaderName,
    pub value: Bytes,
}

impl Header {
    pub fn new(name: HeaderName, value: impl Into<Bytes>) -> Header {
        Header {
            name,
            value: value.into(),
        }
    }

    /// The value as text with line folding turned into single spaces; None
    /// if it is not UTF-8.
    pub fn text(&self) -> Option<Cow<'_, str>> {
        let s = std::str::from_utf8(&self.value).ok()?;
        if !s.contains(['\r', '\n']) {
            return Some(Cow::Borrowed(s));
        }
        let mut out = String::with_capacity(s.len());
        let mut last_space = false;
        for c in s.chars() {
            let space = matches!(c, '\r' | '\n' | ' ' | '\t');
            if space {
                if !last_space {
                    out.push(' ');
                }
            } else {
                out.push(c);
            }
            last_space = space;
        }
        Some(Cow::Owned(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_case_insensitive_names() {
        for (raw, name) in [
            ("v", HeaderName::Via),
            ("VIA", HeaderName::Via),
            ("m", HeaderName::Contact),
            ("i", HeaderName::CallId),
            ("l", HeaderName::ContentLength),
            ("f", HeaderName::From),
            ("t", HeaderName::To),
            ("s", HeaderName::Subject),
            ("k", HeaderName::Supported),
            ("c", HeaderName::ContentType),
            ("e", HeaderName::ContentEncoding),
            ("call-id", HeaderName::CallId),
            ("cseq", HeaderName::CSeq),
        ] {
            assert_eq!(HeaderName::parse(raw), name, "{raw}");
        }
        assert_eq!(HeaderName::parse("X-Custom").as_str(), "X-Custom");
    }

    #[test]
    fn folding_reads_as_one_space() {
        let h = Header::new(
            HeaderName::Subject,
            Bytes::from_static(b"I know you're there,\r\n         pick up the phone"),
        );
        assert_eq!(
            h.text().as_deref(),
            Some("I know you're there, pick up the phone")
        );
    }
}
