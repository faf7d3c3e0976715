//! The little of HTTP/1.x the metrics port speaks: a request head parsed
//! from untrusted bytes (never panicking), and the heads of its answers.

use core::fmt::Write;

/// The longest request head read; a longer one is answered 431.
pub const MAX_HEAD: usize = 1024;

/// A well-formed request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// HEAD: answer the head only.
    pub head_only: bool,
    /// The target is `/metrics` (with or without a query).
    pub metrics: bool,
    /// The connection stays open after the answer (HTTP/1.1 without
    /// `Connection: close`, or HTTP/1.0 with `Connection: keep-alive`), and
    /// the request has no body to skip.
    pub keep_alive: bool,
    /// Bytes of the head, blank line included.
    pub len: usize,
}

/// Why a request head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// Not HTTP/1.x: bad request line, header line or version (400).
    Malformed,
    /// A well-formed method other than GET and HEAD (405).
    Method,
    /// No end of the head within `MAX_HEAD` bytes (431).
    TooLarge,
}

/// What the bytes received so far hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// The head has not ended yet.
    Incomplete,
    /// A complete, well-formed head.
    Request(Request),
    /// A head to refuse.
    Error(HttpError),
}

/// Parses the request head at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let Some(len) = head_end(buf) else {
        return if buf.len() >= MAX_HEAD {
            Parsed::Error(HttpError::TooLarge)
        } else if buf.contains(&0) {
            // No HTTP head holds a NUL: refuse now rather than wait.
            Parsed::Error(HttpError::Malformed)
        } else {
            Parsed::Incomplete
        };
    };
    if len > MAX_HEAD {
        return Parsed::Error(HttpError::TooLarge);
    }
    match parse_head(&buf[..len]) {
        Ok(mut r) => {
            r.len = len;
            Parsed::Request(r)
        }
        Err(e) => Parsed::Error(e),
    }
}

/// The length of the head (through its blank line), if it has ended.
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// RFC 9110's token characters (method and header names).
fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

fn parse_head(head: &[u8]) -> Result<Request, HttpError> {
    let text = core::str::from_utf8(head).map_err(|_| HttpError::Malformed)?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let line = lines.next().ok_or(HttpError::Malformed)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed);
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(HttpError::Malformed),
    };
    if !target.starts_with('/') || !target.bytes().all(|c| c.is_ascii_graphic()) {
        return Err(HttpError::Malformed);
    }
    if !is_token(method.as_bytes()) {
        return Err(HttpError::Malformed);
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Err(HttpError::Method),
    };
    let path = target.split('?').next().unwrap_or(target);
    let mut keep_alive = http11;
    let mut body = false;
    for l in lines.filter(|l| !l.is_empty()) {
        let (name, value) = l.split_once(':').ok_or(HttpError::Malformed)?;
        if !is_token(name.as_bytes()) {
            return Err(HttpError::Malformed);
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("connection") {
            for option in value.split(',').map(str::trim) {
                if option.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if option.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || (name.eq_ignore_ascii_case("content-length") && value != "0")
        {
            // A body this port would have to skip: answer, then close.
            body = true;
        }
    }
    Ok(Request {
        head_only,
        metrics: path == "/metrics",
        keep_alive: keep_alive && !body,
        len: 0,
    })
}

/// The status line of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200: the metrics follow.
    Ok,
    /// 400.
    BadRequest,
    /// 404: only `/metrics` is served.
    NotFound,
    /// 405: only GET and HEAD.
    MethodNotAllowed,
    /// 431: the head was too long.
    TooLarge,
    /// 500: the metrics did not fit their buffer.
    Internal,
}

impl Answer {
    fn status(self) -> &'static str {
        match self {
            Answer::Ok => "200 OK",
            Answer::BadRequest => "400 Bad Request",
            Answer::NotFound => "404 Not Found",
            Answer::MethodNotAllowed => "405 Method Not Allowed",
            Answer::TooLarge => "431 Request Header Fields Too Large",
            Answer::Internal => "500 Internal Server Error",
        }
    }

    /// The body of an error answer (one line).
    pub fn error_body(self) -> &'static str {
        match self {
            Answer::Ok => "",
            Answer::BadRequest => "not a well-formed HTTP/1.x request\n",
            Answer::NotFound => "not found: the metrics are at /metrics\n",
            Answer::MethodNotAllowed => "only GET and HEAD are served\n",
            Answer::TooLarge => "request head too long\n",
            Answer::Internal => "the metrics did not fit their buffer\n",
        }
    }
}

/// The longest head `write_head` writes.
pub const MAX_RESPONSE_HEAD: usize = 192;

/// Writes an answer's head for a body of `body_len` bytes of `content_type`
/// into `out`; returns its length, or `None` if `out` is too small.
pub fn write_head(
    answer: Answer,
    content_type: &str,
    body_len: usize,
    keep_alive: bool,
    out: &mut [u8],
) -> Option<usize> {
    let mut t = super::text::Text::new(out);
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let allow = if answer == Answer::MethodNotAllowed {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    write!(
        t,
        "HTTP/1.1 {}\r\nContent-Type: {content_type}\r\nContent-Length: {body_len}\r\n{allow}Connection: {connection}\r\n\r\n",
        answer.status()
    )
    .ok()?;
    t.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Parsed {
        parse(s.as_bytes())
    }

    #[test]
    fn well_formed_requests_parse() {
        let get = "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
        assert_eq!(
            req(get),
            Parsed::Request(Request {
                head_only: false,
                metrics: true,
                keep_alive: true,
                len: get.len()
            })
        );
        let Parsed::Request(r) = req("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n") else {
            panic!()
        };
        assert!(r.head_only && r.metrics && !r.keep_alive);
        let Parsed::Request(r) = req("GET /metrics HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
        else {
            panic!()
        };
        assert!(r.keep_alive, "HTTP/1.0 asks for keep-alive");
        let Parsed::Request(r) = req("GET /metrics HTTP/1.1\r\nconnection:  close \r\n\r\n") else {
            panic!()
        };
        assert!(!r.keep_alive, "HTTP/1.1 asks for close");
        let Parsed::Request(r) = req("GET /metrics HTTP/1.1\nHost: x\n\n") else {
            panic!()
        };
        assert_eq!(r.len, "GET /metrics HTTP/1.1\nHost: x\n\n".len(), "bare LF");
        let Parsed::Request(r) = req("GET / HTTP/1.1\r\n\r\n") else {
            panic!()
        };
        assert!(!r.metrics, "another path");
        let Parsed::Request(r) = req("GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\n") else {
            panic!()
        };
        assert!(!r.keep_alive, "a body to skip closes the connection");
    }

    #[test]
    fn a_pipelined_request_ends_at_its_own_head() {
        let two = "GET /metrics HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n";
        let Parsed::Request(r) = req(two) else {
            panic!()
        };
        assert_eq!(r.len, two.len() / 2);
    }

    #[test]
    fn incomplete_heads_wait() {
        for s in [
            "",
            "GET",
            "GET /metrics HTTP/1.1\r\n",
            "GET /metrics HTTP/1.1\r\n\r",
        ] {
            assert_eq!(req(s), Parsed::Incomplete, "{s:?}");
        }
    }

    #[test]
    fn malformed_heads_are_refused() {
        for s in [
            "GET /metrics\r\n\r\n",
            "GET /metrics HTTP/2.0\r\n\r\n",
            "GET  /metrics HTTP/1.1\r\n\r\n",
            "GET metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1 x\r\n\r\n",
            "G(T /metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nno colon\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nbad name: x\r\n\r\n",
            "GET /m\u{e9}trics HTTP/1.1\r\n\r\n",
            "\r\n\r\n",
        ] {
            assert_eq!(req(s), Parsed::Error(HttpError::Malformed), "{s:?}");
        }
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\nX: \xff\r\n\r\n"),
            Parsed::Error(HttpError::Malformed),
            "not UTF-8"
        );
        assert_eq!(
            parse(b"GET /\0"),
            Parsed::Error(HttpError::Malformed),
            "a NUL is refused before the head ends"
        );
    }

    #[test]
    fn other_methods_are_405_and_long_heads_431() {
        for m in ["POST", "PUT", "DELETE", "OPTIONS", "get"] {
            assert_eq!(
                req(&format!("{m} /metrics HTTP/1.1\r\n\r\n")),
                Parsed::Error(HttpError::Method),
                "{m}"
            );
        }
        let long = vec![b'a'; MAX_HEAD];
        assert_eq!(parse(&long), Parsed::Error(HttpError::TooLarge));
        assert_eq!(parse(&long[..MAX_HEAD - 1]), Parsed::Incomplete);
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD, b'x');
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse(&big), Parsed::Error(HttpError::TooLarge));
    }

    #[test]
    fn heads_carry_length_type_and_connection() {
        let mut out = [0u8; MAX_RESPONSE_HEAD];
        let n = write_head(Answer::MethodNotAllowed, "text/plain", 29, false, &mut out).unwrap();
        assert_eq!(
            core::str::from_utf8(&out[..n]).unwrap(),
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\nContent-Length: 29\r\n\
             Allow: GET, HEAD\r\nConnection: close\r\n\r\n"
        );
        let n = write_head(
            Answer::TooLarge,
            super::super::exposition::CONTENT_TYPE,
            usize::MAX,
            true,
            &mut out,
        )
        .unwrap();
        assert!(n <= MAX_RESPONSE_HEAD);
        assert_eq!(write_head(Answer::Ok, "x", 1, true, &mut [0u8; 20]), None);
    }
}
