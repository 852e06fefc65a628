//! Request paths: normalization before matching, and the matchers a policy's `paths` compile to.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::string_match::StringMatch;

/// How request paths are normalized before authorization, as `meshConfig.pathNormalization` sets it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PathNormalization {
    /// Only the query and fragment are removed.
    None,
    /// RFC 3986 normalization (Istio's default): backslashes become slashes, percent-encoded unreserved
    /// characters are decoded, other escapes are upper-cased, and `.` / `..` segments are removed.
    #[default]
    Base,
    /// `Base`, then runs of slashes become one.
    MergeSlashes,
    /// `%2F` and `%5C` (any case) are decoded first, then `MergeSlashes`.
    DecodeAndMergeSlashes,
}

/// The path a policy sees: query and fragment removed, then normalized.
///
/// Borrows when nothing changes, which is the common case.
pub fn normalize(raw: &str, mode: PathNormalization) -> Cow<'_, str> {
    let path = match raw.find(['?', '#']) {
        Some(end) => &raw[..end],
        None => raw,
    };
    if mode == PathNormalization::None || is_normal(path, mode) {
        return Cow::Borrowed(path);
    }
    let mut decoded = String::with_capacity(path.len());
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            let c = (h << 4) | l;
            let decode_slash = mode == PathNormalization::DecodeAndMergeSlashes && (c == b'/' || c == b'\\');
            if is_unreserved(c) || decode_slash {
                decoded.push(if c == b'\\' { '/' } else { char::from(c) });
            } else {
                decoded.push('%');
                decoded.push(char::from(bytes[i + 1].to_ascii_uppercase()));
                decoded.push(char::from(bytes[i + 2].to_ascii_uppercase()));
            }
            i += 3;
            continue;
        }
        if b == b'\\' {
            decoded.push('/');
        } else {
            // Copy the whole UTF-8 sequence starting here.
            let len = utf8_len(b);
            let end = (i + len).min(bytes.len());
            decoded.push_str(path.get(i..end).unwrap_or(""));
            i = end;
            continue;
        }
        i += 1;
    }
    let merged = if mode == PathNormalization::MergeSlashes || mode == PathNormalization::DecodeAndMergeSlashes {
        merge_slashes(&decoded)
    } else {
        decoded
    };
    Cow::Owned(remove_dot_segments(&merged))
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

fn is_normal(path: &str, mode: PathNormalization) -> bool {
    let merge = mode != PathNormalization::Base;
    let bytes = path.as_bytes();
    if bytes.contains(&b'%') || bytes.contains(&b'\\') {
        return false;
    }
    if bytes.windows(2).any(|w| w[0] == b'/' && (w[1] == b'.' || (merge && w[1] == b'/'))) {
        return false;
    }
    !(path == "." || path == ".." || path.starts_with("./") || path.starts_with("../"))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut last_slash = false;
    for c in path.chars() {
        if c == '/' && last_slash {
            continue;
        }
        last_slash = c == '/';
        out.push(c);
    }
    out
}

/// RFC 3986 section 5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let absolute = path.starts_with('/');
    let body = if absolute { &path[1..] } else { path };
    let segments: Vec<&str> = body.split('/').collect();
    let mut output: Vec<&str> = Vec::with_capacity(segments.len());
    for seg in &segments {
        match *seg {
            "." => {}
            ".." => {
                output.pop();
            }
            s => output.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    if absolute {
        out.push('/');
    }
    out.push_str(&output.join("/"));
    if matches!(segments.last(), Some(&".") | Some(&"..")) && !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// A compiled `paths` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// `*`, `prefix*`, `*suffix` or exact.
    Str(StringMatch),
    /// A template with `{*}` / `{**}` operators.
    Template(PathTemplate),
}

impl PathMatch {
    /// Whether a normalized path matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Str(m) => m.matches(path),
            PathMatch::Template(t) => t.matches(path),
        }
    }
}

/// A path template: `{*}` is exactly one non-empty segment, `{**}` zero or more characters including `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    source: Box<str>,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(Box<str>),
    Segment,
    Rest,
}

/// Why a `paths` value is not a valid path template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathTemplateError {
    /// `{**}` is followed by another operator.
    #[error("{{**}} is not the last operator")]
    RestNotLast,
    /// A segment holds `{` or `}` other than a whole `{*}` or `{**}`.
    #[error("contains '{{' or '}}' beyond a supported path template (a segment must be exactly {{*}} or {{**}})")]
    BadOperator,
    /// A literal segment of a template has characters outside the path character set, or is empty.
    #[error("contains segment {0:?} with invalid string literal")]
    BadLiteral(String),
}

fn is_path_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@=".contains(&c)
}

impl PathTemplate {
    /// Parses a `paths` value. Returns `Ok(None)` when the value holds no template operator.
    pub fn parse(value: &str) -> Result<Option<Self>, PathTemplateError> {
        let trimmed = value.trim_matches('/');
        let segments: Vec<&str> = trimmed.split('/').collect();
        let mut has_template = false;
        let mut seen_rest = false;
        for seg in &segments {
            match *seg {
                "{*}" | "{**}" => {
                    if seen_rest {
                        return Err(PathTemplateError::RestNotLast);
                    }
                    seen_rest = *seg == "{**}";
                    has_template = true;
                }
                s if s.contains(['{', '}']) => return Err(PathTemplateError::BadOperator),
                _ => {}
            }
        }
        if !has_template {
            return Ok(None);
        }
        for seg in &segments {
            if *seg != "{*}" && *seg != "{**}" && (seg.is_empty() || !seg.bytes().all(is_path_char)) {
                return Err(PathTemplateError::BadLiteral((*seg).to_owned()));
            }
        }
        let mut tokens = Vec::new();
        let mut literal = String::new();
        let mut rest = value;
        while !rest.is_empty() {
            let (tok, len) = if rest.starts_with("{**}") {
                (Some(Token::Rest), 4)
            } else if rest.starts_with("{*}") {
                (Some(Token::Segment), 3)
            } else {
                (None, rest.chars().next().map_or(1, char::len_utf8))
            };
            match tok {
                Some(t) => {
                    if !literal.is_empty() {
                        tokens.push(Token::Literal(std::mem::take(&mut literal).into()));
                    }
                    tokens.push(t);
                }
                None => literal.push_str(&rest[..len]),
            }
            rest = &rest[len..];
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal.into()));
        }
        Ok(Some(PathTemplate { source: value.into(), tokens }))
    }

    /// Whether a normalized path matches the whole template.
    pub fn matches(&self, path: &str) -> bool {
        let mut rest = path;
        let mut iter = self.tokens.iter().peekable();
        while let Some(tok) = iter.next() {
            match tok {
                Token::Literal(l) => match rest.strip_prefix(&**l) {
                    Some(r) => rest = r,
                    None => return false,
                },
                Token::Segment => {
                    let end = rest.find('/').unwrap_or(rest.len());
                    let seg = &rest[..end];
                    if seg.is_empty() || !seg.bytes().all(is_path_char) {
                        return false;
                    }
                    rest = &rest[end..];
                }
                Token::Rest => {
                    // `{**}` is the last operator: only literals follow, so their concatenation must close
                    // the path and what is left before it is the `{**}` match.
                    let tail: String = iter
                        .by_ref()
                        .map(|t| match t {
                            Token::Literal(l) => &**l,
                            _ => "",
                        })
                        .collect();
                    let Some(middle) = rest.strip_suffix(tail.as_str()) else {
                        return false;
                    };
                    return middle.bytes().all(|c| c == b'/' || is_path_char(c));
                }
            }
        }
        rest.is_empty()
    }
}

impl fmt::Display for PathMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathMatch::Str(m) => m.fmt(f),
            PathMatch::Template(t) => f.write_str(&t.source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> PathTemplate {
        match PathTemplate::parse(s) {
            Ok(Some(t)) => t,
            other => panic!("{s:?} is a valid template: {other:?}"),
        }
    }

    #[test]
    fn templates_from_the_api_reference() {
        assert!(t("/foo/{*}").matches("/foo/bar"));
        assert!(!t("/foo/{*}").matches("/foo/bar/baz"));
        assert!(!t("/foo/{*}").matches("/foo/"));
        assert!(t("/foo/{**}/").matches("/foo/bar/"));
        assert!(t("/foo/{**}/").matches("/foo//"));
        assert!(!t("/foo/{**}/").matches("/foo/bar"));
        assert!(t("/foo/{*}/bar/{**}").matches("/foo/buzz/bar/"));
        assert!(t("/foo/{*}/bar/{**}").matches("/foo/buzz/bar/baz"));
        assert!(!t("/foo/{*}/bar/{**}").matches("/foo/buzz/qux/baz"));
    }

    #[test]
    fn invalid_templates() {
        assert_eq!(PathTemplate::parse("/*/baz/{*}"), Err(PathTemplateError::BadLiteral("*".into())));
        assert_eq!(PathTemplate::parse("/**/baz/{*}"), Err(PathTemplateError::BadLiteral("**".into())));
        assert_eq!(PathTemplate::parse("/{**}/foo/{*}"), Err(PathTemplateError::RestNotLast));
        assert_eq!(PathTemplate::parse("/foo/{*}.txt"), Err(PathTemplateError::BadOperator));
        assert_eq!(PathTemplate::parse("/a/{id}"), Err(PathTemplateError::BadOperator));
        assert_eq!(PathTemplate::parse("/plain/*"), Ok(None));
    }

    #[test]
    fn normalization() {
        use PathNormalization::*;
        assert_eq!(normalize("/a/b?x=1", Base), "/a/b");
        assert_eq!(normalize("/a/../b", Base), "/b");
        assert_eq!(normalize("/a/./b/.", Base), "/a/b/");
        assert_eq!(normalize("/a/%2e%2E/b", Base), "/b");
        assert_eq!(normalize("/a/%7euser", Base), "/a/~user");
        assert_eq!(normalize("/a/%2fb", Base), "/a/%2Fb");
        assert_eq!(normalize("/a\\b", Base), "/a/b");
        assert_eq!(normalize("/a//b", Base), "/a//b");
        assert_eq!(normalize("/a//b", MergeSlashes), "/a/b");
        assert_eq!(normalize("/a/%2F/b", DecodeAndMergeSlashes), "/a/b");
        assert_eq!(normalize("/../../x", Base), "/x");
        assert_eq!(normalize("/a/..", Base), "/");
        assert_eq!(normalize("/a/../b/..%2f", None), "/a/../b/..%2f");
        assert_eq!(normalize("/ü/../x", Base), "/x");
        assert!(matches!(normalize("/plain/path?q", Base), Cow::Borrowed(_)));
    }
}
