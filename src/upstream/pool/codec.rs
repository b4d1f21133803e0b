//! HTTP/1.1 to an upstream, the wire format only (RFC 9112): a request head
//! out, an answer's head in, and the framing of the answer's body. No I/O,
//! so every rule here is tested on bytes.
//!
//! Whatever is ambiguous about where an answer ends (two lengths, a length
//! next to `Transfer-Encoding`, bytes after the end) makes the connection
//! unfit to reuse: a pooled connection that is read out of step would hand
//! one client's answer to the next.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use crate::http::headers::AnswerRule;

/// The most an answer's head may take; nginx stops at 4–8 KiB by default.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The most header lines an answer may have (hyper's limit too).
const MAX_HEADERS: usize = 100;

/// The most a chunk-size line (with extensions) or a trailer section may
/// take.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILER_BYTES: usize = 16 * 1024;
const MAX_TRAILERS: usize = 32;

/// An answer the upstream got wrong; the connection is closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("malformed answer head: {0}")]
    Head(httparse::Error),
    #[error("answer head larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("answer is not HTTP/1.x")]
    Version,
    #[error("invalid Content-Length")]
    ContentLength,
    #[error("101 Switching Protocols to a request that asked for no upgrade")]
    UnaskedUpgrade,
    #[error("malformed chunked body")]
    Chunked,
    #[error("malformed trailers")]
    Trailers,
}

/// Writes `method target HTTP/1.1`, then every header as it is. `HeaderName`
/// and `HeaderValue` hold no CR or LF, so nothing here can split the head.
pub fn encode_head(method: &Method, target: &str, headers: &HeaderMap, dst: &mut Vec<u8>) {
    dst.clear();
    dst.extend_from_slice(method.as_str().as_bytes());
    dst.push(b' ');
    dst.extend_from_slice(target.as_bytes());
    dst.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    dst.extend_from_slice(b"\r\n");
}

/// How an answer's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// After this many bytes (0: no body at all).
    Length(u64),
    Chunked,
    /// When the upstream closes the connection.
    Close,
}

/// An answer's head, with what the connection may do next.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    /// The end-to-end headers: the one rule for answers
    /// ([`AnswerRule`], the same for hyper's client) applied in the same
    /// pass that reads them.
    pub headers: HeaderMap,
    pub framing: Framing,
    /// HTTP/1.1, no `Connection: close`, and a body with a single, certain
    /// end: the connection can serve another request after this answer.
    pub reusable: bool,
}

/// Parses the answer's head at the start of `buf` and takes it off.
/// `Ok(None)`: more bytes are needed. Interim `1xx` answers are skipped.
pub fn parse_head(buf: &mut BytesMut, method: &Method) -> Result<Option<Head>, ProtocolError> {
    loop {
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            buf,
            &mut slots,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
                return Err(ProtocolError::HeadTooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(ProtocolError::HeadTooLarge),
            Err(e) => return Err(ProtocolError::Head(e)),
        };
        let code = response.code.unwrap_or_default();
        let status =
            StatusCode::from_u16(code).map_err(|_| ProtocolError::Head(httparse::Error::Status))?;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(ProtocolError::UnaskedUpgrade);
        }
        if status.is_informational() {
            buf.advance(len);
            continue;
        }
        let http11 = match response.version {
            Some(1) => true,
            Some(0) => false,
            _ => return Err(ProtocolError::Version),
        };
        // Names now (they are copied anyway), values as slices of the head
        // once it is taken off the buffer: no copy, no allocation each.
        let base = buf.as_ptr() as usize;
        let mut fields = Vec::with_capacity(response.headers.len());
        for h in response.headers.iter() {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| ProtocolError::Head(httparse::Error::HeaderName))?;
            let start = h.value.as_ptr() as usize - base;
            fields.push((name, start, start + h.value.len()));
        }
        let head = buf.split_to(len).freeze();
        let mut fields_seen = Fields::default();
        let mut rule = AnswerRule::default();
        let mut headers = HeaderMap::with_capacity(fields.len());
        for (name, start, end) in fields {
            let value = HeaderValue::from_maybe_shared(head.slice(start..end))
                .map_err(|_| ProtocolError::Head(httparse::Error::HeaderValue))?;
            fields_seen.note(&name, &value)?;
            if rule.note(&name, &value) {
                headers.append(name, value);
            }
        }
        rule.finish(&mut headers);
        let (framing, certain) = fields_seen.framing(status, method);
        let reusable = http11 && certain && !fields_seen.close;
        return Ok(Some(Head {
            status,
            headers,
            framing,
            reusable,
        }));
    }
}

/// What the fields that frame an answer, or belong to its connection, say.
#[derive(Default)]
struct Fields {
    /// Every `Content-Length` value agreed on this.
    length: Option<u64>,
    /// `Transfer-Encoding` was sent; its last coding was `chunked`.
    encoded: bool,
    chunked: bool,
    /// `Connection: close`.
    close: bool,
}

impl Fields {
    /// Takes note of one field.
    fn note(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<(), ProtocolError> {
        if *name == header::CONTENT_LENGTH {
            for part in value.as_bytes().split(|&b| b == b',') {
                let n = parse_length(part.trim_ascii()).ok_or(ProtocolError::ContentLength)?;
                if self.length.is_some_and(|l| l != n) {
                    return Err(ProtocolError::ContentLength);
                }
                self.length = Some(n);
            }
        } else if *name == header::TRANSFER_ENCODING {
            self.encoded = true;
            let last = value.as_bytes().rsplit(|&b| b == b',').next();
            self.chunked = last.is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if *name == header::CONNECTION {
            let mut tokens = value.as_bytes().split(|&b| b == b',');
            self.close |= tokens.any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
        Ok(())
    }

    /// RFC 9112 §6.3, and whether the end it gives is beyond doubt.
    fn framing(&self, status: StatusCode, method: &Method) -> (Framing, bool) {
        if method == Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            // No body, whatever the fields say. An answer that declared one
            // anyway ends its connection: should the body come after all,
            // it would be read as the next request's answer.
            let declared = self.length.is_some_and(|n| n > 0) || self.encoded;
            return (Framing::Length(0), !declared);
        }
        if self.encoded {
            // Chunked only if it is the last coding; a length beside it is
            // ignored, and such an answer ends its connection.
            return match self.chunked {
                true => (Framing::Chunked, self.length.is_none()),
                false => (Framing::Close, false),
            };
        }
        match self.length {
            Some(n) => (Framing::Length(n), true),
            None => (Framing::Close, false),
        }
    }
}

fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A chunked body, decoded from the front of a buffer as bytes arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// What one step of decoding gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Data(Bytes),
    /// The body ended, with its trailers if it had any.
    End(Option<HeaderMap>),
    NeedMore,
}

impl Chunked {
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ProtocolError> {
        loop {
            match *self {
                Chunked::Size => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((len, 0))) => {
                        buf.advance(len);
                        *self = Chunked::Trailers;
                    }
                    Ok(httparse::Status::Complete((len, size))) => {
                        buf.advance(len);
                        *self = Chunked::Data(size);
                    }
                    Ok(httparse::Status::Partial) if buf.len() < MAX_CHUNK_LINE => {
                        return Ok(Decoded::NeedMore)
                    }
                    _ => return Err(ProtocolError::Chunked),
                },
                Chunked::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let left = left - n as u64;
                    *self = if left == 0 {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left)
                    };
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ProtocolError::Chunked);
                    }
                    buf.advance(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers => return trailers(buf),
            }
        }
    }
}

fn trailers(buf: &mut BytesMut) -> Result<Decoded, ProtocolError> {
    if buf.starts_with(b"\r\n") {
        buf.advance(2);
        return Ok(Decoded::End(None));
    }
    let mut slots = [httparse::EMPTY_HEADER; MAX_TRAILERS];
    let (len, fields) = match httparse::parse_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(done)) => done,
        Ok(httparse::Status::Partial) if buf.len() < MAX_TRAILER_BYTES => {
            return Ok(Decoded::NeedMore)
        }
        _ => return Err(ProtocolError::Trailers),
    };
    let mut map = HeaderMap::with_capacity(fields.len());
    for h in fields {
        let name =
            HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| ProtocolError::Trailers)?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| ProtocolError::Trailers)?;
        map.append(name, value);
    }
    buf.advance(len);
    Ok(Decoded::End(Some(map)))
}

#[cfg(test)]
mod tests;
