//! Outgoing e-mail (password resets, security notices, voicemail messages),
//! always in the brand of the reseller's console host: sender name and
//! address, texts, links.
//! Plain SMTP to a relay the operator runs (which does TLS, DKIM and
//! retries outward), so no mail credentials live in this process.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// Where mail goes and who it is from.
#[derive(Debug, Clone)]
pub struct MailConfig {
    pub relay_host: String,
    pub relay_port: u16,
    /// The sender address; None sends from `no-reply@<console host>`, so that
    /// no operator domain shows in a reseller's mail.
    pub from_address: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("e-mail address {0:?} is not valid")]
    Address(String),
    #[error("attachment type {0:?} is not a MIME type")]
    Mime(String),
    #[error("e-mail could not be built: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("SMTP relay refused or unreachable: {0}")]
    Relay(#[from] lettre::transport::smtp::Error),
}

/// Whether `text` is an e-mail address mail can be sent from or to.
pub fn is_address(text: &str) -> bool {
    text.parse::<lettre::Address>().is_ok()
}

/// One e-mail to send.
pub struct Letter<'a> {
    pub to: &'a str,
    pub sender_name: &'a str,
    /// The console host the request came to (sender domain by default).
    pub console_host: &'a str,
    pub subject: &'a str,
    pub text: String,
    /// A file sent along (name, MIME type, content): a voicemail's WAV.
    pub attachment: Option<(String, &'static str, Vec<u8>)>,
}

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from_address: Option<String>,
}

impl Mailer {
    pub fn new(config: &MailConfig) -> Mailer {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.relay_host)
            .port(config.relay_port)
            .timeout(Some(Duration::from_secs(15)))
            .build();
        Mailer {
            transport,
            from_address: config.from_address.clone(),
        }
    }

    pub async fn send(&self, letter: Letter<'_>) -> Result<(), MailError> {
        let from = self
            .from_address
            .clone()
            .unwrap_or_else(|| format!("no-reply@{}", letter.console_host));
        let from = from.parse().map_err(|_| MailError::Address(from.clone()))?;
        let to = letter
            .to
            .parse()
            .map_err(|_| MailError::Address(letter.to.to_owned()))?;
        let builder = Message::builder()
            .from(Mailbox::new(Some(letter.sender_name.to_owned()), from))
            .to(Mailbox::new(None, to))
            .subject(letter.subject);
        let message = match letter.attachment {
            None => builder.header(ContentType::TEXT_PLAIN).body(letter.text)?,
            Some((name, mime, bytes)) => {
                let kind =
                    ContentType::parse(mime).map_err(|_| MailError::Mime(mime.to_owned()))?;
                builder.multipart(
                    MultiPart::mixed()
                        .singlepart(SinglePart::plain(letter.text))
                        .singlepart(Attachment::new(name).body(bytes, kind)),
                )?
            }
        };
        self.transport.send(message).await?;
        Ok(())
    }
}
