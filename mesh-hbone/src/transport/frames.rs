//! Following an HTTP/2 byte stream frame by frame (RFC 9113 section 4.1) without buffering it: the client
//! preface, then 9-byte frame headers, each followed by its payload. Only headers are read; a caller learns
//! of each frame's header, payload bytes and end as they pass, and can stop in front of the payload of a PING
//! to transform it.

/// The client connection preface: `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`.
pub(super) const PREFACE_LEN: u32 = 24;
pub(super) const HEADER_LEN: usize = 9;

pub(super) const DATA: u8 = 0x0;
pub(super) const PRIORITY: u8 = 0x2;
pub(super) const RST_STREAM: u8 = 0x3;
pub(super) const SETTINGS: u8 = 0x4;
pub(super) const PING: u8 = 0x6;
pub(super) const GOAWAY: u8 = 0x7;
pub(super) const WINDOW_UPDATE: u8 = 0x8;
pub(super) const CONTINUATION: u8 = 0x9;

pub(super) const END_STREAM: u8 = 0x1;
pub(super) const ACK: u8 = 0x1;

/// A frame's header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Head {
    pub(super) len: u32,
    pub(super) kind: u8,
    pub(super) flags: u8,
    pub(super) stream: u32,
}

impl Head {
    fn parse(b: &[u8; HEADER_LEN]) -> Self {
        Head {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }
}

/// What the cursor reports as bytes pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Event {
    /// A frame header is complete.
    Head(Head),
    /// Payload bytes of the current frame.
    Payload(Head, u32),
    /// The frame is complete.
    End(Head),
}

/// Which PING payloads are masked in this direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Masked {
    /// PINGs sent (not ACKs).
    Pings,
    /// PING ACKs received.
    Acks,
}

/// Where a one-way HTTP/2 byte stream is.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cursor {
    preface_left: u32,
    header: [u8; HEADER_LEN],
    header_len: usize,
    /// The frame whose payload is passing, with how much of it has passed.
    current: Option<(Head, u32)>,
    masked: Masked,
}

impl Cursor {
    pub(super) fn new(preface: bool, masked: Masked) -> Self {
        Cursor {
            preface_left: if preface { PREFACE_LEN } else { 0 },
            header: [0; HEADER_LEN],
            header_len: 0,
            current: None,
            masked,
        }
    }

    /// The offset into a masked PING payload the next byte is at, and how many masked bytes follow it, if it
    /// is one.
    pub(super) fn in_masked(&self) -> Option<(usize, usize)> {
        let (head, done) = self.current?;
        let masked = head.kind == PING
            && match self.masked {
                Masked::Pings => head.flags & ACK == 0,
                Masked::Acks => head.flags & ACK != 0,
            };
        let end = head.len.min(8);
        if masked && done < end { Some((done as usize, (end - done) as usize)) } else { None }
    }

    /// Passes `bytes`, reporting events; stops before the first masked PING payload byte when `stop_at_mask`.
    /// Returns how many bytes were passed.
    pub(super) fn pass(&mut self, bytes: &[u8], stop_at_mask: bool, events: &mut impl FnMut(Event)) -> usize {
        let mut i = 0;
        while i < bytes.len() {
            if self.preface_left > 0 {
                let n = (bytes.len() - i).min(self.preface_left as usize);
                self.preface_left -= n as u32;
                i += n;
                continue;
            }
            if let Some((head, done)) = self.current {
                if stop_at_mask && self.in_masked().is_some() {
                    break;
                }
                let n = (bytes.len() - i).min((head.len - done) as usize);
                i += n;
                let done = done + n as u32;
                events(Event::Payload(head, n as u32));
                if done == head.len {
                    self.current = None;
                    events(Event::End(head));
                } else {
                    self.current = Some((head, done));
                }
                continue;
            }
            let n = (bytes.len() - i).min(HEADER_LEN - self.header_len);
            self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[i..i + n]);
            self.header_len += n;
            i += n;
            if self.header_len == HEADER_LEN {
                self.header_len = 0;
                let head = Head::parse(&self.header);
                events(Event::Head(head));
                if head.len == 0 {
                    events(Event::End(head));
                } else {
                    self.current = Some((head, 0));
                }
            }
        }
        i
    }

    /// How many of `bytes` come before the first masked PING payload byte.
    pub(super) fn unmasked_prefix(&self, bytes: &[u8]) -> usize {
        let mut ahead = *self;
        ahead.pass(bytes, true, &mut |_| {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut out = len.to_be_bytes()[1..].to_vec();
        out.extend([kind, flags]);
        out.extend(stream.to_be_bytes());
        out.extend(payload);
        out
    }

    fn events_of(cursor: &mut Cursor, bytes: &[u8], chunk: usize) -> Vec<Event> {
        let mut events = Vec::new();
        for piece in bytes.chunks(chunk) {
            let n = cursor.pass(piece, false, &mut |e| events.push(e));
            assert_eq!(n, piece.len());
        }
        events
    }

    #[test]
    fn frames_are_followed_across_any_split() {
        let mut stream = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        stream.extend(frame(SETTINGS, 0, 0, &[0; 6]));
        stream.extend(frame(DATA, END_STREAM, 5, &[7; 100]));
        stream.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]));
        for chunk in [1, 2, 9, 10, 1000] {
            let events = events_of(&mut Cursor::new(true, Masked::Acks), &stream, chunk);
            let heads: Vec<u8> =
                events.iter().filter_map(|e| if let Event::Head(h) = e { Some(h.kind) } else { None }).collect();
            assert_eq!(heads, [SETTINGS, DATA, WINDOW_UPDATE], "chunk {chunk}");
            let data: u32 = events
                .iter()
                .filter_map(|e| match e {
                    Event::Payload(h, n) if h.kind == DATA => Some(*n),
                    _ => None,
                })
                .sum();
            assert_eq!(data, 100);
            assert!(events.contains(&Event::End(Head { len: 100, kind: DATA, flags: END_STREAM, stream: 5 })));
        }
    }

    #[test]
    fn only_ping_payloads_are_fenced_off() {
        let mut bytes = frame(DATA, 0, 1, &[1; 20]);
        let ping_at = bytes.len() + HEADER_LEN;
        bytes.extend(frame(PING, 0, 0, &[9; 8]));
        let cursor = Cursor::new(false, Masked::Pings);
        assert_eq!(cursor.unmasked_prefix(&bytes), ping_at);
        // A PING ACK is not masked on the way out.
        let mut acks = frame(DATA, 0, 1, &[1; 20]);
        acks.extend(frame(PING, ACK, 0, &[9; 8]));
        assert_eq!(cursor.unmasked_prefix(&acks), acks.len());
    }

    #[test]
    fn masked_pings_come_back_as_sent_only_when_echoed() {
        let mask = [1, 2, 3, 4, 5, 6, 7, 8];
        let sent = [9u8; 8];
        // What goes out for h2's PING, written a byte at a time.
        let mut out = Cursor::new(false, Masked::Pings);
        let ping = frame(PING, 0, 0, &sent);
        let mut wire = Vec::new();
        for byte in &ping {
            let b = match out.in_masked() {
                Some((offset, _)) => byte ^ mask[offset],
                None => *byte,
            };
            out.pass(&[*byte], false, &mut |_| {});
            wire.push(b);
        }
        assert_ne!(wire[HEADER_LEN..], sent, "the payload on the wire is not h2's");
        // An honest ACK echoes the wire payload; unmasked, h2 sees its own.
        let unmask = |payload: &[u8]| {
            let mut back = Cursor::new(false, Masked::Acks);
            let mut bytes = frame(PING, ACK, 0, payload);
            let mut i = 0;
            while i < bytes.len() {
                i += back.pass(&bytes[i..], true, &mut |_| {});
                if let Some((offset, left)) = back.in_masked() {
                    let run = left.min(bytes.len() - i);
                    back.pass(&bytes[i..i + run], false, &mut |_| {});
                    for k in 0..run {
                        bytes[i + k] ^= mask[offset + k];
                    }
                    i += run;
                }
            }
            bytes[HEADER_LEN..].to_vec()
        };
        assert_eq!(unmask(&wire[HEADER_LEN..]), sent);
        assert_ne!(unmask(&sent), sent, "a blind ACK of h2's payload does not match");
    }
}
