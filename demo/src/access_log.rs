//! A node proxy's own log as the evidence of a denial: mesh-ztunnel writes one line per connection it denies,
//! `connection denied` with `decision`, `src.identity`, `dst.addr`, `policy` and `reason`. The demo finds the
//! line of the connection it just made (by source identity and destination, among the lines written since) and
//! shows it. Lines are read in the text format (`key=value`, a value quoted or not) or as JSON objects.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::procs::Procs;

/// The message of a node proxy's denial.
pub const DENIED: &str = "connection denied";

/// A denial a node proxy must have logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial<'a> {
    /// The node proxy that denies (the name of its log: `node-b`).
    pub by: &'a str,
    /// The source's identity, without `spiffe://`: `cluster.local/ns/payments/sa/probe`.
    pub source: &'a str,
    /// The destination it logs: the Pod's address and port.
    pub destination: SocketAddr,
}

impl std::fmt::Display for Denial<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} denying {} to {}", self.by, self.source, self.destination)
    }
}

/// One `connection denied` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The line from its message on (the whole line for JSON), as shown.
    pub shown: String,
    /// Its fields, in order.
    pub fields: Vec<(String, String)>,
}

impl Entry {
    /// The value of field `key`.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// True when this line is the policy denial `denial` describes: `decision` deny, the source identity and
    /// the destination, and the reason (with the deciding policy when one decided; "no ALLOW policy matched"
    /// has none).
    pub fn is(&self, denial: &Denial<'_>) -> bool {
        let identity = self.field("src.identity").unwrap_or_default();
        self.field("decision") == Some("deny")
            && identity.strip_prefix("spiffe://").unwrap_or(identity) == denial.source
            && self.field("dst.addr").and_then(|a| a.parse::<SocketAddr>().ok()) == Some(denial.destination)
            && self.field("reason").is_some()
    }
}

/// The `connection denied` line `line` is, if it is one.
pub fn parse(line: &str) -> Option<Entry> {
    let line = line.trim();
    if line.starts_with('{') {
        return parse_json(line);
    }
    // The message, after the timestamp, level, spans and target.
    let (at, _) = line.match_indices(DENIED).find(|(i, _)| *i == 0 || line[..*i].ends_with(' '))?;
    let shown = &line[at..];
    Some(Entry { shown: shown.to_owned(), fields: text_fields(&shown[DENIED.len()..]) })
}

/// A JSON line, its fields at the top level (flattened) or under `fields`.
fn parse_json(line: &str) -> Option<Entry> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let mut fields = Vec::new();
    for object in [value.as_object(), value.get("fields").and_then(|f| f.as_object())].into_iter().flatten() {
        for (k, v) in object {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            fields.push((k.clone(), v));
        }
    }
    let entry = Entry { shown: line.to_owned(), fields };
    entry.field("message").is_some_and(|m| m.starts_with(DENIED)).then_some(entry)
}

/// `key=value` fields; a value is quoted (`"deny"`, escapes as Rust's `Debug` writes them) or runs to the
/// next ` key=`. Words that are no field (the rest of a message) are skipped.
fn text_fields(mut rest: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return fields;
        }
        let Some((key, after)) = key_at(rest) else {
            rest = rest.split_once(' ').map_or("", |(_, r)| r);
            continue;
        };
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => unquote(quoted),
            None => {
                let end = next_key(after).unwrap_or(after.len());
                (after[..end].trim_end().to_owned(), &after[end..])
            }
        };
        fields.push((key.to_owned(), value));
        rest = next;
    }
}

/// The field name `s` starts with and what follows its `=`.
fn key_at(s: &str) -> Option<(&str, &str)> {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))?;
    let starts_well = s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
    (starts_well && s[end..].starts_with('=')).then(|| (&s[..end], &s[end + 1..]))
}

/// Where the next ` key=` in `s` starts (at its space).
fn next_key(s: &str) -> Option<usize> {
    s.match_indices(' ').map(|(i, _)| i).find(|&i| key_at(&s[i + 1..]).is_some())
}

/// A quoted value (its opening quote already read) and what follows its closing quote.
fn unquote(s: &str) -> (String, &str) {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (value, &s[i + 1..]),
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, 't')) => value.push('\t'),
                Some((_, 'r')) => value.push('\r'),
                Some((_, other)) => value.push(other),
                None => break,
            },
            c => value.push(c),
        }
    }
    (value, "")
}

/// The first line of `log` that is `denial`.
pub fn find(log: &str, denial: &Denial<'_>) -> Option<Entry> {
    log.lines().filter_map(parse).find(|e| e.is(denial))
}

/// How far `name`'s log has got: lines written from now on are after this mark.
pub fn mark(procs: &Procs, name: &str) -> usize {
    procs.log(name).len()
}

/// Waits (a little: the node proxy logs a denial before it answers the CONNECT) for `denial` in its node
/// proxy's log after `mark`.
pub async fn wait_for(procs: &Procs, denial: &Denial<'_>, mark: usize) -> Option<Entry> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let log = procs.log(denial.by);
        if let Some(entry) = log.get(mark..).and_then(|since| find(since, denial)) {
            return Some(entry);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"2026-12-07T20:25:41.516947Z  INFO access: connection denied src.addr=127.61.1.40 src.workload="probe-0" src.namespace="payments" src.identity=spiffe://cluster.local/ns/payments/sa/probe dst.addr=127.61.2.20:8080 dst.hbone_addr=127.61.2.20:8080 dst.workload="ledger-0" dst.namespace="payments" direction="inbound" decision="deny" reason=DENY at ztunnel: no ALLOW policy matched (2 apply) bytes_sent=0 bytes_recv=0 duration="0ms" error=DENY at ztunnel: no ALLOW policy matched (2 apply)"#;

    fn probe() -> Denial<'static> {
        Denial {
            by: "node-b",
            source: "cluster.local/ns/payments/sa/probe",
            destination: "127.61.2.20:8080".parse().unwrap(),
        }
    }

    #[test]
    fn a_text_line_gives_its_fields() {
        let entry = parse(TEXT).unwrap();
        assert!(entry.shown.starts_with("connection denied src.addr=127.61.1.40"));
        assert_eq!(entry.field("dst.workload"), Some("ledger-0"));
        assert_eq!(entry.field("decision"), Some("deny"));
        assert_eq!(entry.field("policy"), None);
        assert_eq!(entry.field("reason"), Some("DENY at ztunnel: no ALLOW policy matched (2 apply)"));
        assert!(entry.is(&probe()));
    }

    #[test]
    fn the_decision_quoted_or_not() {
        let unquoted = TEXT.replace("decision=\"deny\"", "decision=deny");
        assert!(parse(&unquoted).unwrap().is(&probe()));
    }

    #[test]
    fn another_source_destination_or_decision_is_not_the_denial() {
        let entry = parse(TEXT).unwrap();
        assert!(!entry.is(&Denial { source: "cluster.local/ns/payments/sa/accounts", ..probe() }));
        assert!(!entry.is(&Denial { destination: "127.61.2.20:9090".parse().unwrap(), ..probe() }));
        let allowed = TEXT.replace("decision=\"deny\"", "decision=\"allow\"");
        assert!(!parse(&allowed).unwrap().is(&probe()));
        let no_reason = TEXT.split(" reason=").next().unwrap();
        assert!(!parse(no_reason).unwrap().is(&probe()));
    }

    #[test]
    fn other_lines_are_not_denials() {
        let closed = TEXT.replace("connection denied", "connection closed");
        assert_eq!(parse(&closed), None);
        let in_a_value = r#"2026-12-07T20:25:41Z  INFO x: outbound error=connection denied decision="deny""#;
        assert_eq!(parse(in_a_value), None);
    }

    #[test]
    fn a_json_line_flattened_or_not() {
        let flat = r#"{"timestamp":"t","level":"INFO","message":"connection denied","dst.addr":"127.61.2.20:8080","src.identity":"spiffe://cluster.local/ns/payments/sa/probe","decision":"deny","policy":"","reason":"DENY at ztunnel: no ALLOW policy matched","target":"mesh_ztunnel::inbound"}"#;
        assert!(parse(flat).unwrap().is(&probe()));
        let nested = r#"{"timestamp":"t","level":"INFO","fields":{"message":"connection denied","dst.addr":"127.61.2.20:8080","src.identity":"spiffe://cluster.local/ns/payments/sa/probe","decision":"deny","policy":"","reason":"no ALLOW policy matched"}}"#;
        assert!(parse(nested).unwrap().is(&probe()));
        assert_eq!(parse(r#"{"message":"connection closed","decision":"deny"}"#), None);
    }

    #[test]
    fn find_takes_the_matching_line() {
        let other = TEXT.replace("sa/probe", "sa/reports");
        let log = format!("{other}\nsomething else\n{TEXT}\n");
        let found = find(&log, &probe()).unwrap();
        assert_eq!(found.field("src.identity"), Some("spiffe://cluster.local/ns/payments/sa/probe"));
        assert_eq!(find(&other, &probe()), None);
    }
}
