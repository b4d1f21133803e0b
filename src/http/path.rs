//! Request-path normalization: the single place that decides what a request
//! path means before routing and access rules look at it, and which paths are
//! refused outright because they could be read differently by the upstream.

use std::borrow::Cow;
use std::fmt;

/// Why a request path was refused (each becomes 400 invalid_request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    NotAbsolute,
    EncodedSlash,
    Backslash,
    Nul,
    ClimbsAboveRoot,
    BadEncoding,
    /// `..;x`, `.;x` or `;x`: Tomcat, Jetty and Spring drop `;` parameters
    /// and then read the segment as a dot or empty segment, so the upstream
    /// would climb or merge where wxgate did not (the `..;/` authorization
    /// bypass; `/;/api` read as `/api`).
    DotWithParameters,
}

impl PathError {
    /// The refusal in words, for the client's error message.
    pub fn reason(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "path does not start with '/'",
            PathError::EncodedSlash => "path contains an encoded '/'",
            PathError::Backslash => "path contains a '\\'",
            PathError::Nul => "path contains a NUL byte",
            PathError::ClimbsAboveRoot => "path climbs above the root with '..'",
            PathError::BadEncoding => "path contains a malformed percent-encoding",
            PathError::DotWithParameters => {
                "path has an empty, '.' or '..' segment with ';' parameters"
            }
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for PathError {}

/// Normalizes the path part of a request target (no query string, no fragment).
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if raw.is_empty() {
        return Ok(Cow::Borrowed("/"));
    }
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if !needs_rewrite(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    rewrite(raw).map(Cow::Owned)
}

/// Cheap scan deciding whether `raw` is already canonical, so the common case
/// costs no allocation. Anything that might be an error also goes to the slow
/// path, which is where errors are diagnosed.
fn needs_rewrite(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    let mut seg_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'%' | b'\\' | 0 => return true,
            b'/' => {
                // i == 0 is the leading slash, not the end of a segment.
                if i > 0 && is_dot_or_empty(&bytes[seg_start..i]) {
                    return true;
                }
                seg_start = i + 1;
            }
            _ => {}
        }
    }
    // A trailing empty segment is just the preserved trailing slash.
    let last = &bytes[seg_start..];
    !last.is_empty() && is_dot_or_empty(last)
}

fn is_dot_or_empty(seg: &[u8]) -> bool {
    seg.is_empty()
        || seg == b"."
        || seg == b".."
        || seg.starts_with(b";")
        || seg.starts_with(b".;")
        || seg.starts_with(b"..;")
}

fn rewrite(raw: &str) -> Result<String, PathError> {
    // Invariant: `out` is "/" followed by kept segments, each ending in '/'.
    // +1 because that invariant briefly adds a slash the input may not have.
    let mut out = String::with_capacity(raw.len() + 1);
    out.push('/');
    // Whether the last thing seen was an ordinary segment with no slash after
    // it in the input, i.e. the invariant's trailing '/' must be removed.
    let mut drop_trailing = false;

    for seg in raw[1..].split('/') {
        if seg.is_empty() {
            drop_trailing = false;
            continue;
        }
        let start = out.len();
        decode_into(seg, &mut out)?;
        if let Some((name, _params)) = out[start..].split_once(';') {
            if name.is_empty() || name == "." || name == ".." {
                return Err(PathError::DotWithParameters);
            }
        }
        // Checked after decoding so that encoded dots cannot smuggle a `..`.
        match &out[start..] {
            "." => {
                out.truncate(start);
                drop_trailing = false;
            }
            ".." => {
                out.truncate(start);
                if out.len() == 1 {
                    return Err(PathError::ClimbsAboveRoot);
                }
                let parent_end = out[..out.len() - 1].rfind('/').map_or(0, |p| p + 1);
                out.truncate(parent_end);
                drop_trailing = false;
            }
            _ => {
                out.push('/');
                drop_trailing = true;
            }
        }
    }

    if drop_trailing {
        out.pop();
    }
    Ok(out)
}

/// Appends `seg` to `out`, decoding unreserved escapes and upper-casing the
/// hex of every escape left encoded, so that one resource has one spelling.
fn decode_into(seg: &str, out: &mut String) -> Result<(), PathError> {
    let bytes = seg.as_bytes();
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Err(PathError::Backslash),
            0 => return Err(PathError::Nul),
            b'%' => {
                let (hi, lo) = match (bytes.get(i + 1), bytes.get(i + 2)) {
                    (Some(&h), Some(&l)) => (hex_val(h), hex_val(l)),
                    _ => return Err(PathError::BadEncoding),
                };
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathError::BadEncoding);
                };
                // Byte indices here are all at ASCII bytes, so slicing stays
                // on char boundaries even when the segment holds raw UTF-8.
                out.push_str(&seg[copied..i]);
                let byte = (hi << 4) | lo;
                match byte {
                    b'/' => return Err(PathError::EncodedSlash),
                    b'\\' => return Err(PathError::Backslash),
                    0 => return Err(PathError::Nul),
                    _ if is_unreserved(byte) => out.push(char::from(byte)),
                    _ => {
                        out.push('%');
                        out.push(char::from(HEX_UPPER[usize::from(hi)]));
                        out.push(char::from(HEX_UPPER[usize::from(lo)]));
                    }
                }
                i += 3;
                copied = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&seg[copied..]);
    Ok(())
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 `unreserved`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(raw: &str) -> String {
        normalize(raw)
            .unwrap_or_else(|e| panic!("{raw:?}: {e}"))
            .into_owned()
    }

    fn err(raw: &str) -> PathError {
        normalize(raw).expect_err(raw)
    }

    #[test]
    fn dot_segments_with_parameters_are_refused() {
        for raw in [
            "/public/..;/api",
            "/public/..;x=1/api",
            "/public/.;/api",
            "/public/%2e%2e;/api",
            "/public/.%2E;jsessionid=1/api",
            "/public/..;",
            "/..;/api",
            "/;/api",
            "/;x=1/api",
            "//;",
        ] {
            assert_eq!(err(raw), PathError::DotWithParameters, "{raw}");
        }
        // Only whole dot names: these are ordinary segments.
        assert_eq!(ok("/a/...;x/b"), "/a/...;x/b");
        assert_eq!(ok("/a/..x;/b"), "/a/..x;/b");
        assert_eq!(ok("/a;x/b;y"), "/a;x/b;y");
    }

    #[test]
    fn root_and_empty() {
        assert_eq!(ok("/"), "/");
        assert_eq!(ok(""), "/");
    }

    #[test]
    fn not_absolute() {
        assert_eq!(err("api"), PathError::NotAbsolute);
        assert_eq!(err("%2Fapi"), PathError::NotAbsolute);
    }

    #[test]
    fn fast_path_borrows() {
        for raw in [
            "/api/v1/users",
            "/",
            "/api/",
            "/a/..b/c.d/...",
            "/~u;p=1:x@y",
        ] {
            match normalize(raw) {
                Ok(Cow::Borrowed(s)) => assert_eq!(s, raw),
                other => panic!("{raw:?} not borrowed: {other:?}"),
            }
        }
    }

    #[test]
    fn dot_segments() {
        assert_eq!(ok("/public/../api"), "/api");
        assert_eq!(ok("/public/%2e%2e/api"), "/api");
        assert_eq!(ok("/public/.%2E/api"), "/api");
        assert_eq!(ok("/a/./b"), "/a/b");
        assert_eq!(ok("/a/%2E/b"), "/a/b");
        assert_eq!(ok("/a/b/c/../../d"), "/a/d");
    }

    #[test]
    fn only_whole_segments_are_dots() {
        for raw in ["/..a", "/a..", "/...", "/.x", "/a/.b/c."] {
            assert_eq!(ok(raw), raw);
        }
        assert_eq!(ok("/%2e%2e%2e"), "/...");
    }

    #[test]
    fn climbs_above_root() {
        assert_eq!(err("/.."), PathError::ClimbsAboveRoot);
        assert_eq!(err("/a/../.."), PathError::ClimbsAboveRoot);
        assert_eq!(err("/%2e%2e/a"), PathError::ClimbsAboveRoot);
        assert_eq!(err("/./../a"), PathError::ClimbsAboveRoot);
    }

    #[test]
    fn trailing_slash_preserved() {
        assert_eq!(ok("/api/"), "/api/");
        assert_eq!(ok("/api/."), "/api/");
        assert_eq!(ok("/api/.."), "/");
        assert_eq!(ok("/a/b/.."), "/a/");
        assert_eq!(ok("/a//"), "/a/");
        assert_eq!(ok("/."), "/");
    }

    #[test]
    fn merges_slashes() {
        assert_eq!(ok("//api///x"), "/api/x");
        assert_eq!(ok("//"), "/");
    }

    #[test]
    fn encoded_slash() {
        assert_eq!(err("/api%2fadmin"), PathError::EncodedSlash);
        assert_eq!(err("/api%2Fadmin"), PathError::EncodedSlash);
    }

    #[test]
    fn backslash() {
        assert_eq!(err("/a%5cb"), PathError::Backslash);
        assert_eq!(err("/a%5Cb"), PathError::Backslash);
        assert_eq!(err("/a\\b"), PathError::Backslash);
    }

    #[test]
    fn nul() {
        assert_eq!(err("/a%00"), PathError::Nul);
        assert_eq!(err("/a\0b"), PathError::Nul);
    }

    #[test]
    fn bad_encoding() {
        assert_eq!(err("/a%zz"), PathError::BadEncoding);
        assert_eq!(err("/a%4"), PathError::BadEncoding);
        assert_eq!(err("/a%"), PathError::BadEncoding);
        assert_eq!(err("/a%g1"), PathError::BadEncoding);
    }

    #[test]
    fn decodes_unreserved_only() {
        assert_eq!(ok("/%7euser"), "/~user");
        assert_eq!(ok("/%41%7a%30%2d%5f"), "/Az0-_");
        assert_eq!(ok("/a%3bb"), "/a%3Bb");
        assert_eq!(ok("/%25"), "/%25");
        assert_eq!(ok("/%252e%252e"), "/%252e%252e");
        assert_eq!(ok("/caf%c3%a9"), "/caf%C3%A9");
    }

    #[test]
    fn leaves_other_text_alone() {
        assert_eq!(ok("/A;b=1/:x@y/%2e"), "/A;b=1/:x@y/");
        assert_eq!(ok("/café/%41"), "/café/A");
    }

    #[test]
    fn display_is_short_text() {
        assert_eq!(
            PathError::EncodedSlash.to_string(),
            "path contains an encoded '/'"
        );
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9_~;:@-]{1,6}",
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just("%2e".to_owned()),
            Just("%2E".to_owned()),
            Just("%41".to_owned()),
            Just("%25".to_owned()),
            Just("%3b".to_owned()),
            Just(".%2E".to_owned()),
            Just(String::new()),
        ]
    }

    fn path() -> impl Strategy<Value = String> {
        prop::collection::vec(segment(), 0..10).prop_map(|segs| format!("/{}", segs.join("/")))
    }

    proptest! {
        #[test]
        fn idempotent(raw in path()) {
            if let Ok(once) = normalize(&raw) {
                let twice = normalize(&once);
                prop_assert_eq!(twice.as_deref(), Ok(&*once));
            }
        }

        #[test]
        fn never_climbs(raw in path()) {
            if let Ok(out) = normalize(&raw) {
                prop_assert!(out.starts_with('/'));
                prop_assert!(!out.contains("//"));
                prop_assert!(out.split('/').all(|s| s != "." && s != ".."));
            }
        }

        #[test]
        fn no_forbidden_bytes(raw in path()) {
            if let Ok(out) = normalize(&raw) {
                let upper = out.to_ascii_uppercase();
                for bad in ["%2F", "%5C", "%00", "\\"] {
                    prop_assert!(!upper.contains(bad), "{:?} -> {:?}", raw, out);
                }
            }
        }

        #[test]
        fn encoded_slash_always_fails(
            prefix in path(),
            slash in prop_oneof![Just("%2f"), Just("%2F")],
            suffix in path(),
        ) {
            let raw = format!("{prefix}{slash}{suffix}");
            prop_assert!(normalize(&raw).is_err());
        }
    }
}
