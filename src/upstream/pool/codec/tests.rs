use proptest::prelude::*;

use super::*;

fn parse(bytes: &[u8], method: &Method) -> (Result<Option<Head>, ProtocolError>, BytesMut) {
    let mut buf = BytesMut::from(bytes);
    let head = parse_head(&mut buf, method);
    (head, buf)
}

fn head(bytes: &[u8]) -> Head {
    parse(bytes, &Method::GET).0.unwrap().expect("a whole head")
}

fn error(bytes: &[u8]) -> ProtocolError {
    parse(bytes, &Method::GET).0.unwrap_err()
}

#[test]
fn a_request_head_is_written_as_given() {
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, HeaderValue::from_static("up:8080"));
    headers.append("x-wx-openid", HeaderValue::from_static("o1"));
    let mut out = b"left over".to_vec();
    encode_head(&Method::DELETE, "/a/b?c=d", &headers, &mut out);
    assert_eq!(
        out,
        b"DELETE /a/b?c=d HTTP/1.1\r\nhost: up:8080\r\nx-wx-openid: o1\r\n\r\n"
    );
}

#[test]
fn an_answer_head_is_taken_off_and_its_body_left() {
    let (parsed, rest) = parse(
        b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello",
        &Method::POST,
    );
    let head = parsed.unwrap().unwrap();
    assert_eq!(head.status, StatusCode::CREATED);
    assert_eq!(head.framing, Framing::Length(5));
    assert!(head.reusable);
    let values: Vec<_> = head.headers.get_all("x-a").iter().collect();
    assert_eq!(values, ["1", "2"]);
    assert_eq!(&rest[..], b"hello");
}

#[test]
fn a_partial_head_asks_for_more_and_consumes_nothing() {
    let whole = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    for cut in 0..whole.len() {
        let (parsed, rest) = parse(&whole[..cut], &Method::GET);
        assert!(parsed.unwrap().is_none(), "cut at {cut}");
        assert_eq!(rest.len(), cut);
    }
}

#[test]
fn connection_fields_go_by_the_one_rule_for_answers() {
    let head = head(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\n\
          X-Secret: s\r\nProxy-Connection: x\r\nUpgrade: h2c\r\nTE: trailers\r\nServer: up\r\n\
          Content-Length: 0\r\n\r\n",
    );
    // The codec reads them for the framing and applies the one rule for
    // answers (AnswerRule, the same for hyper's client) as it goes.
    let mut names: Vec<_> = head.headers.keys().map(|n| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["content-length", "server"]);
    assert!(head.reusable);
}

#[test]
fn interim_answers_are_skipped_and_an_unasked_upgrade_refused() {
    let head = head(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
          HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    );
    assert_eq!(head.status, StatusCode::OK);
    assert!(!head.headers.contains_key("link"));
    assert_eq!(
        error(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"),
        ProtocolError::UnaskedUpgrade
    );
}

#[test]
fn lengths_must_be_digits_and_agree() {
    let ok = head(b"HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\nContent-Length: 7\r\n\r\n");
    assert_eq!(ok.framing, Framing::Length(7));
    for bad in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
    ] {
        let shown = String::from_utf8_lossy(bad);
        assert_eq!(error(bad), ProtocolError::ContentLength, "{shown}");
    }
}

#[test]
fn framing_follows_rfc_9112_and_doubt_ends_the_connection() {
    let cases: [(&[u8], Framing, bool); 11] = [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Framing::Chunked,
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            Framing::Chunked,
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            Framing::Close,
            false,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            Framing::Chunked,
            false,
        ),
        (b"HTTP/1.1 200 OK\r\n\r\n", Framing::Close, false),
        (
            b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
            Framing::Length(1),
            false,
        ),
        (
            b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 1\r\n\r\n",
            Framing::Length(1),
            false,
        ),
        // No body, but one declared: should it come after all, it would be
        // read as the next answer, so the connection is not reused.
        (
            b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n",
            Framing::Length(0),
            false,
        ),
        (
            b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
            Framing::Length(0),
            false,
        ),
        (
            b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
            Framing::Length(0),
            true,
        ),
        (
            b"HTTP/1.1 304 Not Modified\r\n\r\n",
            Framing::Length(0),
            true,
        ),
    ];
    for (bytes, framing, reusable) in cases {
        let head = head(bytes);
        let shown = String::from_utf8_lossy(bytes);
        assert_eq!(
            (head.framing, head.reusable),
            (framing, reusable),
            "{shown}"
        );
    }
    let (head_answer, _) = parse(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
        &Method::HEAD,
    );
    let head_answer = head_answer.unwrap().unwrap();
    assert_eq!(head_answer.framing, Framing::Length(0));
    assert!(
        !head_answer.reusable,
        "a HEAD answer that declared a length"
    );
}

#[test]
fn malformed_or_oversized_heads_are_refused() {
    assert_eq!(
        error(b"HTTP/2.0 200 OK\r\n\r\n"),
        ProtocolError::Head(httparse::Error::Version)
    );
    assert!(matches!(
        error(b"HTTP/1.1 20 OK\r\n\r\n"),
        ProtocolError::Head(_)
    ));
    assert!(matches!(
        error(b"\x16\x03\x01\x00\xa5\x01"),
        ProtocolError::Head(_)
    ));
    let mut huge = b"HTTP/1.1 200 OK\r\n".to_vec();
    while huge.len() < MAX_HEAD_BYTES {
        huge.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let (parsed, _) = parse(&huge, &Method::GET);
    let e = parsed.unwrap_err();
    assert!(e == ProtocolError::HeadTooLarge, "{e}");
    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(error(&many), ProtocolError::HeadTooLarge);
}

/// Decodes `wire` fed `step` bytes at a time, as reads would bring it.
fn decode_in_steps(
    wire: &[u8],
    step: usize,
) -> Result<(Vec<u8>, Option<HeaderMap>, BytesMut), ProtocolError> {
    let mut chunked = Chunked::Size;
    let (mut buf, mut fed, mut body) = (BytesMut::new(), 0, Vec::new());
    loop {
        match chunked.decode(&mut buf)? {
            Decoded::Data(data) => body.extend_from_slice(&data),
            Decoded::End(trailers) => return Ok((body, trailers, buf)),
            Decoded::NeedMore if fed == wire.len() => return Err(ProtocolError::Chunked),
            Decoded::NeedMore => {
                let next = (fed + step).min(wire.len());
                buf.extend_from_slice(&wire[fed..next]);
                fed = next;
            }
        }
    }
}

#[test]
fn chunked_bodies_decode_with_extensions_and_trailers() {
    let wire = b"5;name=value\r\nhello\r\nA\r\n, world!!!\r\n0\r\nX-Sum: 1\r\nX-Sum: 2\r\n\r\nNEXT";
    for step in [1, 2, 7, wire.len()] {
        let (body, trailers, rest) = decode_in_steps(wire, step).unwrap();
        assert_eq!(body, b"hello, world!!!");
        let trailers = trailers.expect("trailers");
        assert_eq!(trailers.get_all("x-sum").iter().count(), 2);
        // Whatever follows the body is left for the caller to judge.
        assert!(b"NEXT".starts_with(&rest), "step {step}");
    }
    let (body, trailers, _) = decode_in_steps(b"0\r\n\r\n", 1).unwrap();
    assert!(body.is_empty() && trailers.is_none());
}

#[test]
fn malformed_chunked_bodies_are_refused() {
    let mut long_extension = b"5;".to_vec();
    long_extension.resize(MAX_CHUNK_LINE + 10, b'x');
    let mut long_trailers = b"0\r\n".to_vec();
    while long_trailers.len() < MAX_TRAILER_BYTES + 10 {
        long_trailers.extend_from_slice(b"X-T: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let cases: [(&[u8], ProtocolError); 6] = [
        (b"zz\r\nhello\r\n0\r\n\r\n", ProtocolError::Chunked),
        (b"5\r\nhelloXX0\r\n\r\n", ProtocolError::Chunked),
        (b"10000000000000000\r\n", ProtocolError::Chunked),
        (&long_extension, ProtocolError::Chunked),
        (&long_trailers, ProtocolError::Trailers),
        (b"0\r\nbad trailer\r\n\r\n", ProtocolError::Trailers),
    ];
    for (wire, expected) in cases {
        let shown = String::from_utf8_lossy(&wire[..wire.len().min(40)]);
        assert_eq!(decode_in_steps(wire, 3).unwrap_err(), expected, "{shown}");
    }
}

proptest! {
    /// Any body, cut into any chunks and read in any pieces, decodes to
    /// itself and consumes exactly its encoding.
    #[test]
    fn chunked_round_trip(
        body in proptest::collection::vec(any::<u8>(), 0..2000),
        sizes in proptest::collection::vec(1usize..300, 1..20),
        step in 1usize..64,
    ) {
        let mut wire = Vec::new();
        let (mut at, mut i) = (0, 0);
        while at < body.len() {
            let n = sizes[i % sizes.len()].min(body.len() - at);
            wire.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            wire.extend_from_slice(&body[at..at + n]);
            wire.extend_from_slice(b"\r\n");
            at += n;
            i += 1;
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        let (decoded, trailers, rest) = decode_in_steps(&wire, step).unwrap();
        prop_assert_eq!(decoded, body);
        prop_assert!(trailers.is_none());
        prop_assert!(rest.is_empty());
    }
}
