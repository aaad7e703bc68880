//! A fake SMTP server on 127.0.0.1:0 that speaks the real protocol (RFC
//! 5321: greeting, EHLO/HELO, MAIL, RCPT, DATA with dot-stuffing, RSET,
//! NOOP, QUIT) and hands every accepted message to the test, plus a small
//! MIME reader so tests assert what a mail client would show.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::{Mutex, mpsc, watch},
    task::JoinHandle,
};

/// How long the helpers wait for something the test expects.
const WAIT: Duration = Duration::from_secs(10);

/// How the fake behaves.
#[derive(Debug, Default, Clone)]
pub struct FakeSmtpOptions {
    /// Answer the first this-many DATA commands with `451` (a temporary
    /// failure the client should retry).
    pub fail_first_data: usize,
}

/// One message the server accepted.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    /// Envelope sender (MAIL FROM).
    pub from: String,
    /// Envelope recipients (RCPT TO).
    pub to: Vec<String>,
    /// The message as transmitted, dot-unstuffed, lines ending in CRLF.
    pub data: String,
}

/// A running fake; stops when dropped.
pub struct FakeSmtp {
    addr: SocketAddr,
    messages: Mutex<mpsc::UnboundedReceiver<ReceivedMessage>>,
    rejected: watch::Receiver<usize>,
    server: JoinHandle<()>,
}

struct Shared {
    messages: mpsc::UnboundedSender<ReceivedMessage>,
    rejected: watch::Sender<usize>,
    failures_left: AtomicUsize,
}

impl FakeSmtp {
    /// A server that accepts everything.
    pub async fn start() -> Self {
        Self::start_with(FakeSmtpOptions::default()).await
    }

    /// A server configured by `options`.
    pub async fn start_with(options: FakeSmtpOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the fake SMTP port");
        let addr = listener.local_addr().expect("fake SMTP address");
        let (messages_tx, messages_rx) = mpsc::unbounded_channel();
        let (rejected_tx, rejected_rx) = watch::channel(0);
        let shared = Arc::new(Shared {
            messages: messages_tx,
            rejected: rejected_tx,
            failures_left: AtomicUsize::new(options.fail_first_data),
        });
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    // A client hanging up mid-session is not the test's concern.
                    let _ = session(stream, shared).await;
                });
            }
        });
        Self {
            addr,
            messages: Mutex::new(messages_rx),
            rejected: rejected_rx,
            server,
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The next accepted message; panics after a few seconds without one.
    pub async fn next_message(&self) -> ReceivedMessage {
        let mut messages = self.messages.lock().await;
        tokio::time::timeout(WAIT, messages.recv())
            .await
            .expect("no email arrived in time")
            .expect("fake SMTP server stopped")
    }

    /// Asserts that no message arrives within `window`.
    pub async fn assert_no_message_within(&self, window: Duration) {
        let mut messages = self.messages.lock().await;
        if let Ok(Some(message)) = tokio::time::timeout(window, messages.recv()).await {
            panic!("unexpected email to {:?}: {}", message.to, message.data);
        }
    }

    /// Waits until at least `count` DATA commands were refused with 451.
    pub async fn wait_for_rejections(&self, count: usize) {
        assert!(
            self.rejected_within(count, WAIT).await,
            "only {} of {count} refusals happened in time",
            self.rejections()
        );
    }

    /// Whether at least `count` DATA commands are refused within `window`.
    pub async fn rejected_within(&self, count: usize, window: Duration) -> bool {
        let mut rejected = self.rejected.clone();
        matches!(
            tokio::time::timeout(window, rejected.wait_for(|n| *n >= count)).await,
            Ok(Ok(_))
        )
    }

    /// DATA commands refused so far.
    pub fn rejections(&self) -> usize {
        *self.rejected.borrow()
    }
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// One client connection, from greeting to QUIT.
async fn session(stream: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    writer.write_all(b"220 fake-smtp.test ESMTP ready\r\n").await?;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    loop {
        let Some(line) = read_line(&mut reader).await? else {
            return Ok(());
        };
        let (verb, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let reply: &[u8] = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => b"250-fake-smtp.test greets you\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            "HELO" => b"250 fake-smtp.test\r\n",
            "MAIL" => match path_argument(arg, "FROM:") {
                Some(address) => {
                    from = Some(address);
                    to.clear();
                    b"250 2.1.0 OK\r\n"
                }
                None => b"501 5.5.4 syntax: MAIL FROM:<address>\r\n",
            },
            "RCPT" => match (&from, path_argument(arg, "TO:")) {
                (None, _) => b"503 5.5.1 MAIL first\r\n",
                (Some(_), Some(address)) => {
                    to.push(address);
                    b"250 2.1.5 OK\r\n"
                }
                (Some(_), None) => b"501 5.5.4 syntax: RCPT TO:<address>\r\n",
            },
            "DATA" => {
                let Some(sender) = from.clone().filter(|_| !to.is_empty()) else {
                    writer.write_all(b"503 5.5.1 RCPT first\r\n").await?;
                    continue;
                };
                let refuse = shared
                    .failures_left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if refuse {
                    from = None;
                    to.clear();
                    writer.write_all(b"451 4.3.0 try again later\r\n").await?;
                    shared.rejected.send_modify(|n| *n += 1);
                    continue;
                }
                writer.write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n").await?;
                let data = read_data(&mut reader).await?;
                let _ = shared.messages.send(ReceivedMessage {
                    from: sender,
                    to: std::mem::take(&mut to),
                    data,
                });
                from = None;
                b"250 2.0.0 OK queued\r\n"
            }
            "RSET" => {
                from = None;
                to.clear();
                b"250 2.0.0 OK\r\n"
            }
            "NOOP" => b"250 2.0.0 OK\r\n",
            "QUIT" => {
                writer.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 5.5.2 command not recognized\r\n",
        };
        writer.write_all(reply).await?;
    }
}

/// A line without its CRLF; `None` at end of stream.
async fn read_line(reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    if reader.read_until(b'\n', &mut buf).await? == 0 {
        return Ok(None);
    }
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// The DATA section up to the lone `.` line, with leading dots unstuffed.
async fn read_data(reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> std::io::Result<String> {
    let mut data = String::new();
    loop {
        let Some(line) = read_line(reader).await? else {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        };
        if line == "." {
            return Ok(data);
        }
        data.push_str(line.strip_prefix('.').unwrap_or(&line));
        data.push_str("\r\n");
    }
}

/// `<address>` out of `FROM:<address> PARAM=...` (case-insensitive keyword).
fn path_argument(arg: &str, keyword: &str) -> Option<String> {
    let arg = arg.trim();
    if arg.len() < keyword.len() || !arg[..keyword.len()].eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let inner = rest.strip_prefix('<')?;
    let end = inner.find('>')?;
    Some(inner[..end].to_owned())
}

/// A decoded leaf part of a MIME message.
#[derive(Debug, Clone)]
pub struct MimePart {
    /// Its Content-Type, lowercased, without parameters (`text/plain`).
    pub content_type: String,
    /// Its body, transfer encoding undone, line ends as `\n`.
    pub body: String,
}

impl ReceivedMessage {
    /// A top-level header's value (unfolded), by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<String> {
        header(&split_entity(&self.data).0, name)
    }

    /// The leaf parts (the message itself when it is not multipart).
    pub fn parts(&self) -> Vec<MimePart> {
        let mut parts = Vec::new();
        collect_parts(&self.data, &mut parts);
        parts
    }

    /// The first leaf part of `content_type` (`text/plain`, `text/html`).
    pub fn part(&self, content_type: &str) -> Option<MimePart> {
        self.parts().into_iter().find(|p| p.content_type == content_type)
    }
}

/// Headers (unfolded) and body of a MIME entity.
fn split_entity(entity: &str) -> (Vec<(String, String)>, String) {
    let (head, body) = entity.split_once("\r\n\r\n").unwrap_or((entity, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    (headers, body.to_owned())
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

fn collect_parts(entity: &str, out: &mut Vec<MimePart>) {
    let (headers, body) = split_entity(entity);
    let content_type = header(&headers, "Content-Type").unwrap_or_else(|| "text/plain".to_owned());
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if mime.starts_with("multipart/") {
        let boundary = content_type
            .split(';')
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
            .map(|(_, v)| v.trim().trim_matches('"').to_owned())
            .expect("multipart without a boundary");
        let delimiter = format!("--{boundary}");
        // Before the first delimiter is the preamble, after the closing one the epilogue.
        for chunk in body.split(delimiter.as_str()).skip(1) {
            if chunk.starts_with("--") {
                break;
            }
            let chunk = chunk.strip_prefix("\r\n").unwrap_or(chunk);
            let chunk = chunk.strip_suffix("\r\n").unwrap_or(chunk);
            collect_parts(chunk, out);
        }
        return;
    }
    let encoding = header(&headers, "Content-Transfer-Encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let bytes = match encoding.as_str() {
        "quoted-printable" => decode_quoted_printable(&body),
        "base64" => decode_base64(&body),
        _ => body.into_bytes(),
    };
    out.push(MimePart {
        content_type: mime,
        body: String::from_utf8_lossy(&bytes).replace("\r\n", "\n"),
    });
}

fn decode_quoted_printable(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'=' {
            out.push(bytes[i]);
            i += 1;
        } else if bytes[i + 1..].starts_with(b"\r\n") {
            // Soft line break.
            i += 3;
        } else if let Some(byte) = text.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
            out.push(byte);
            i += 3;
        } else {
            out.push(b'=');
            i += 1;
        }
    }
    out
}

fn decode_base64(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            // Padding and line breaks.
            _ => continue,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
