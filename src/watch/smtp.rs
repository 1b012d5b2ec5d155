//! SMTP delivery on lettre's own client (`SmtpConnection`: connect, STARTTLS or implicit TLS,
//! AUTH, commands), with two differences from lettre's `SmtpTransport`:
//!
//! * The message and its terminating `.` leave in ONE write. lettre 0.11.23 writes them
//!   separately and never sets TCP_NODELAY, so Nagle holds the five-byte terminator until the
//!   server's delayed ACK of the body: 40 ms a message, 23 mails/s to aiosmtpd on loopback
//!   (measured by `make bench`). Fixed upstream in lettre PR #1159 (merged, not released as of
//!   0.11.23); with a release that has it, `lettre::SmtpTransport` (feature `pool` for the kept
//!   connection) can take this file's place.
//! * One connection carries up to [`MESSAGES_PER_CONNECTION`] mails of a delivery batch instead
//!   of one connection per mail; it is closed with QUIT when the batch is done, dropped after
//!   any error, and replaced at once when it fails before a mail went out (server hung up).

use std::time::Duration;

use anyhow::Result;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{SmtpConnection, Tls};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::Message;

/// Some servers refuse more mails on one connection (421 after 100 on several hosted ones).
pub const MESSAGES_PER_CONNECTION: u32 = 100;

pub struct SmtpClient {
    host: String,
    port: u16,
    tls: Tls,
    timeout: Duration,
    credentials: Option<Credentials>,
    hello: ClientId,
    connection: Option<SmtpConnection>,
    /// Mails sent on `connection` so far.
    sent: u32,
}

impl SmtpClient {
    pub fn new(
        host: String,
        port: u16,
        tls: Tls,
        timeout: Duration,
        credentials: Option<Credentials>,
    ) -> SmtpClient {
        SmtpClient {
            host,
            port,
            tls,
            timeout,
            credentials,
            hello: ClientId::default(),
            connection: None,
            sent: 0,
        }
    }

    /// Sends one message, connecting first when no connection is open. A kept connection
    /// that fails before the mail went out (the server dropped it, or allows fewer mails a
    /// connection) is replaced once at once, instead of waiting for the retry backoff.
    pub fn send(&mut self, message: &Message) -> Result<()> {
        self.send_raw(message.envelope(), &message.formatted())
    }

    /// [`SmtpClient::send`] for a mail already in bytes.
    pub fn send_raw(&mut self, envelope: &Envelope, email: &[u8]) -> Result<()> {
        if self.sent >= MESSAGES_PER_CONNECTION {
            self.close();
        }
        let reused = self.connection.as_ref().is_some_and(|c| !c.has_broken());
        match self.send_once(envelope, email) {
            Err(Failed {
                error: _,
                mail_sent: false,
            }) if reused => self.send_once(envelope, email),
            other => other,
        }
        .map_err(|f| f.error)
    }

    fn send_once(&mut self, envelope: &Envelope, email: &[u8]) -> Result<(), Failed> {
        let mut connection = match self.connection.take() {
            Some(c) if !c.has_broken() => c,
            _ => {
                self.sent = 0;
                self.connect().map_err(|error| Failed {
                    error,
                    mail_sent: false,
                })?
            }
        };
        match transaction(&mut connection, envelope, email) {
            Ok(()) => {
                self.connection = Some(connection);
                self.sent += 1;
                Ok(())
            }
            Err(e) => {
                // The server's state is unknown: never reuse this connection.
                connection.abort();
                Err(e)
            }
        }
    }

    /// Ends the open connection politely (QUIT), if there is one.
    pub fn close(&mut self) {
        if let Some(mut c) = self.connection.take() {
            if !c.has_broken() {
                let _ = c.quit();
            }
        }
    }

    /// As lettre's `SmtpTransport` connects: greeting and EHLO, TLS as configured, AUTH.
    fn connect(&self) -> Result<SmtpConnection> {
        let wrapper = match &self.tls {
            Tls::Wrapper(parameters) => Some(parameters),
            _ => None,
        };
        let mut c = SmtpConnection::connect(
            (self.host.as_str(), self.port),
            Some(self.timeout),
            &self.hello,
            wrapper,
            None,
        )
        .map_err(smtp)?;
        if let Tls::Required(parameters) = &self.tls {
            c.starttls(parameters, &self.hello).map_err(smtp)?;
        }
        if let Some(credentials) = &self.credentials {
            c.auth(DEFAULT_MECHANISMS, credentials).map_err(smtp)?;
        }
        Ok(c)
    }
}

impl Drop for SmtpClient {
    fn drop(&mut self) {
        self.close();
    }
}

/// A failed transaction, and whether the server may have the mail (its text was written).
struct Failed {
    error: anyhow::Error,
    mail_sent: bool,
}

/// MAIL, RCPT for each recipient, DATA, then the dot-stuffed message and `.` in one write.
fn transaction(c: &mut SmtpConnection, envelope: &Envelope, email: &[u8]) -> Result<(), Failed> {
    let before = |error: anyhow::Error| Failed {
        error,
        mail_sent: false,
    };
    let mut options = Vec::new();
    let non_ascii_address = envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
    if non_ascii_address {
        if !c.server_info().supports_feature(Extension::SmtpUtfEight) {
            return Err(before(anyhow::anyhow!(
                "SMTP: an address is not ASCII and the server does not offer SMTPUTF8"
            )));
        }
        options.push(MailParameter::SmtpUtfEight);
    }
    if !email.is_ascii() {
        if !c.server_info().supports_feature(Extension::EightBitMime) {
            return Err(before(anyhow::anyhow!(
                "SMTP: the mail is not ASCII and the server does not offer 8BITMIME"
            )));
        }
        options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let body = dot_stuffed(email).map_err(before)?;
    c.command(Mail::new(envelope.from().cloned(), options))
        .map_err(|e| before(smtp(e)))?;
    for to in envelope.to() {
        c.command(Rcpt::new(to.clone(), Vec::new()))
            .map_err(|e| before(smtp(e)))?;
    }
    c.command(Data).map_err(|e| before(smtp(e)))?;
    c.command(DataBody(body)).map_err(|e| Failed {
        error: smtp(e),
        mail_sent: true,
    })?;
    Ok(())
}

/// The message as sent after DATA: a line starting with `.` gets a second one (RFC 5321
/// 4.5.2), and `CRLF . CRLF` ends it; lettre's client writes exactly these bytes.
fn dot_stuffed(email: &[u8]) -> Result<String> {
    let text = std::str::from_utf8(email)
        .map_err(|_| anyhow::anyhow!("SMTP: the formatted mail is not UTF-8"))?;
    let mut out = String::with_capacity(text.len() + 16);
    let mut line_start = true;
    let mut after_cr = false;
    for ch in text.chars() {
        if line_start && ch == '.' {
            out.push('.');
        }
        out.push(ch);
        line_start = after_cr && ch == '\n';
        after_cr = ch == '\r';
    }
    out.push_str("\r\n.\r\n");
    Ok(out)
}

/// Lets `SmtpConnection::command` write the message body: it writes a command's `Display` text
/// in one piece and reads the reply.
struct DataBody(String);

impl std::fmt::Display for DataBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn smtp(e: lettre::transport::smtp::Error) -> anyhow::Error {
    anyhow::anyhow!("SMTP: {}", error_text(&e))
}

/// lettre's error text plus its source, on one line (never includes credentials).
fn error_text(e: &lettre::transport::smtp::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        // lettre's errors often repeat their source's text: say it once.
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_at_line_starts_are_doubled_and_the_end_is_marked() {
        assert_eq!(
            dot_stuffed(b"a\r\n.b\r\n..\r\nc.d\r\n").unwrap(),
            "a\r\n..b\r\n...\r\nc.d\r\n\r\n.\r\n"
        );
        assert_eq!(dot_stuffed(b".first").unwrap(), "..first\r\n.\r\n");
        // A lone LF does not start a line for SMTP; lettre's codec agrees.
        assert_eq!(dot_stuffed(b"a\n.b").unwrap(), "a\n.b\r\n.\r\n");
        assert_eq!(
            dot_stuffed("\u{dc}\r\n.".as_bytes()).unwrap(),
            "\u{dc}\r\n..\r\n.\r\n"
        );
    }
}
