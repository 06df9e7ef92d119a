//! A minimal HTTP/1.1 client for Motion-JPEG camera streams (`multipart/x-mixed-replace`, as
//! IP cameras, mjpg-streamer and motion serve them): one GET on a std `TcpStream`, the response
//! head checked (status 200, a multipart or JPEG content type), the body handed on as a plain
//! reader (chunked transfer coding undone).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// The longest response head line and the most header lines accepted.
const MAX_LINE: usize = 8 << 10;
const MAX_HEADERS: usize = 100;

/// An `http://host[:port]/path` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    /// The path with its query, from the `/`.
    pub path: String,
}

impl Url {
    pub fn parse(s: &str) -> Result<Url> {
        let Some(rest) = s.strip_prefix("http://") else {
            if s.starts_with("https://") {
                bail!("{s}: https is not supported by the MJPEG reader (use source.kind = \"ffmpeg\")");
            }
            bail!("{s}: not an http:// URL");
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.contains('@') {
            bail!("{s}: user:password@ in the URL is not supported");
        }
        let port_of = |p: &str| -> Result<u16> {
            p.parse::<u16>()
                .map_err(|_| anyhow::anyhow!("{s}: bad port '{p}'"))
        };
        let (host, port) = if let Some(h) = authority.strip_prefix('[') {
            let Some((h, rest)) = h.split_once(']') else {
                bail!("{s}: unclosed [ in the host");
            };
            match rest.strip_prefix(':') {
                Some(p) => (h, port_of(p)?),
                None if rest.is_empty() => (h, 80),
                None => bail!("{s}: junk after the host"),
            }
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, port_of(p)?),
                None => (authority, 80),
            }
        };
        if host.is_empty() {
            bail!("{s}: no host");
        }
        Ok(Url {
            host: host.to_string(),
            port,
            path,
        })
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}{}", self.host, self.port, self.path)
        } else {
            write!(f, "http://{}:{}{}", self.host, self.port, self.path)
        }
    }
}

/// What the response announced.
#[derive(Debug)]
pub enum Body {
    /// `multipart/x-mixed-replace` with this boundary.
    Multipart(Vec<u8>),
    /// A bare stream of JPEGs (`image/jpeg`, `video/x-motion-jpeg`, or multipart without a
    /// boundary parameter): split by the JPEG markers alone.
    Jpegs,
}

/// An open stream: the body reader, its kind, and a handle on the socket to shut it down
/// from another thread (which ends a read blocked on it).
pub struct Stream {
    pub body: Box<dyn Read + Send>,
    pub kind: Body,
    pub socket: TcpStream,
}

/// GET `url`; connect and head within `timeout` each, and reads of the body time out after
/// `read_timeout`.
pub fn open(url: &Url, timeout: Duration, read_timeout: Duration) -> Result<Stream> {
    let addrs: Vec<_> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .with_context(|| format!("{url}: resolving {}", url.host))?
        .collect();
    let mut last = None;
    let mut sock = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => {
                sock = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(sock) = sock else {
        return Err(match last {
            Some(e) => anyhow::Error::new(e).context(format!("{url}: connecting")),
            None => anyhow::anyhow!("{url}: {} has no address", url.host),
        });
    };
    sock.set_read_timeout(Some(timeout))?;
    sock.set_write_timeout(Some(timeout))?;
    let _ = sock.set_nodelay(true);
    let host = if url.port == 80 {
        url.host.clone()
    } else {
        format!("{}:{}", url.host, url.port)
    };
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: edgecam/{}\r\nAccept: multipart/x-mixed-replace, image/jpeg, */*\r\nConnection: close\r\n\r\n",
        url.path,
        env!("CARGO_PKG_VERSION")
    );
    (&sock)
        .write_all(req.as_bytes())
        .with_context(|| format!("{url}: sending the request"))?;
    let socket = sock.try_clone()?;
    let mut r = BufReader::new(sock);
    let status = read_line(&mut r).with_context(|| format!("{url}: reading the response"))?;
    let mut parts = status.splitn(3, ' ');
    let (proto, code, reason) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or("").trim(),
    );
    if !proto.starts_with("HTTP/") {
        bail!("{url}: not an HTTP response: '{}'", printable(&status));
    }
    if code != "200" {
        bail!("{url}: HTTP status {code} {reason} (expected 200)");
    }
    let mut content_type = None;
    let mut chunked = false;
    for _ in 0..MAX_HEADERS {
        let line = read_line(&mut r).with_context(|| format!("{url}: reading the headers"))?;
        if line.is_empty() {
            let ct: String = content_type.unwrap_or_default();
            let kind = body_kind(&ct)
                .ok_or_else(|| anyhow::anyhow!("{url}: content type '{}' is not an MJPEG stream (expected multipart/x-mixed-replace)", printable(&ct)))?;
            r.get_ref().set_read_timeout(Some(read_timeout))?;
            let body: Box<dyn Read + Send> = if chunked {
                Box::new(Chunked::new(r))
            } else {
                Box::new(r)
            };
            return Ok(Stream { body, kind, socket });
        }
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("content-type") {
                content_type = Some(v.to_string());
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.to_ascii_lowercase().contains("chunked");
            }
        }
    }
    bail!("{url}: more than {MAX_HEADERS} response headers")
}

/// The body kind a content type announces; None for anything else.
fn body_kind(ct: &str) -> Option<Body> {
    let mut params = ct.split(';');
    let mime = params.next().unwrap_or("").trim().to_ascii_lowercase();
    match mime.as_str() {
        "multipart/x-mixed-replace" => {
            let boundary = params.find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("boundary")
                    .then(|| v.trim().trim_matches('"').to_string())
            });
            Some(match boundary {
                Some(b) if !b.is_empty() => Body::Multipart(b.into_bytes()),
                _ => Body::Jpegs,
            })
        }
        "image/jpeg" | "video/x-motion-jpeg" | "video/mjpeg" | "video/x-mjpeg" => Some(Body::Jpegs),
        _ => None,
    }
}

fn printable(s: &str) -> String {
    s.chars().take(120).filter(|c| !c.is_control()).collect()
}

/// One CRLF- (or LF-) terminated line of at most [`MAX_LINE`] bytes, without its terminator.
fn read_line(r: &mut impl BufRead) -> Result<String> {
    let mut line = Vec::new();
    let n = r.take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
    if n == 0 {
        bail!("the connection closed");
    }
    if !line.ends_with(b"\n") {
        bail!("a header line longer than {MAX_LINE} bytes");
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// Undoes the chunked transfer coding.
struct Chunked<R> {
    inner: R,
    /// Bytes left in the current chunk.
    left: u64,
    done: bool,
}

impl<R: BufRead> Chunked<R> {
    fn new(inner: R) -> Self {
        Chunked {
            inner,
            left: 0,
            done: false,
        }
    }
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
        while self.left == 0 {
            if self.done {
                return Ok(0);
            }
            let mut line = read_line(&mut self.inner).map_err(|e| bad(&format!("chunk: {e}")))?;
            if line.is_empty() {
                // The CRLF after the previous chunk's data.
                line = read_line(&mut self.inner).map_err(|e| bad(&format!("chunk: {e}")))?;
            }
            let size = line.split(';').next().unwrap_or("").trim();
            self.left =
                u64::from_str_radix(size, 16).map_err(|_| bad("chunk: bad chunk size line"))?;
            if self.left == 0 {
                self.done = true;
            }
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("http://cam.lan:8080/video?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("cam.lan", 8080, "/video?x=1")
        );
        let u = Url::parse("http://10.0.0.5").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("10.0.0.5", 80, "/")
        );
        let u = Url::parse("http://[::1]:81/s").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 81));
        assert_eq!(u.to_string(), "http://[::1]:81/s");
        for bad in [
            "https://a/b",
            "ftp://a",
            "http://:80/",
            "http://a:x/",
            "http://u:p@a/",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn content_types() {
        assert!(matches!(
            body_kind("multipart/x-mixed-replace; boundary=\"--myboundary\""),
            Some(Body::Multipart(b)) if b == b"--myboundary"
        ));
        assert!(matches!(
            body_kind("Multipart/X-Mixed-Replace;boundary=frame"),
            Some(Body::Multipart(b)) if b == b"frame"
        ));
        assert!(matches!(body_kind("image/jpeg"), Some(Body::Jpegs)));
        assert!(body_kind("text/html; charset=utf-8").is_none());
        assert!(body_kind("").is_none());
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        let wire = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n";
        let mut out = String::new();
        Chunked::new(&wire[..]).read_to_string(&mut out).unwrap();
        assert_eq!(out, "Wikipedia in\r\n\r\nchunks.");
        let mut out = Vec::new();
        assert!(Chunked::new(&b"zz\r\n"[..]).read_to_end(&mut out).is_err());
    }
}
