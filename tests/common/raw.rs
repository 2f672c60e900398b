//! Raw clients for hostile input: HTTP/1.1 bytes exactly as written, and a minimal
//! HTTP/2 (h2c, prior knowledge) client whose header names and values are bytes,
//! so tests can send what well-behaved client libraries refuse to.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Sends `request` as is and returns what came back until the peer closed, a
/// complete Content-Length answer arrived, or 5 s passed.
pub fn http1(port: u16, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    stream.write_all(request)?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => answer.extend_from_slice(&chunk[..read]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if super::Response::is_complete(&answer) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(e),
        }
        if super::Response::is_complete(&answer) {
            break;
        }
    }
    Ok(answer)
}

/// The status code of an HTTP/1.1 answer, if it has one.
pub fn http1_status(answer: &[u8]) -> Option<u16> {
    let line = answer.split(|&b| b == b'\r').next()?;
    std::str::from_utf8(line).ok()?.split(' ').nth(1)?.parse().ok()
}

/// What an HTTP/2 exchange ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum H2Outcome {
    /// A response HEADERS frame, with its `:status` when it could be read.
    Answered(Option<u16>),
    /// The stream was reset or the connection closed with GOAWAY / EOF.
    Refused,
}

/// One request on a fresh h2c connection: HEADERS (and DATA when `body` is
/// given). Header blocks use "literal without indexing, new name", no Huffman.
pub fn http2(port: u16, headers: &[(&[u8], &[u8])], body: Option<&[u8]>) -> std::io::Result<H2Outcome> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut out, 0x4, 0, 0, &[]); // SETTINGS
    let mut block = Vec::new();
    for (name, value) in headers {
        block.push(0x00);
        hpack_string(&mut block, name);
        hpack_string(&mut block, value);
    }
    let end_stream = if body.is_none() { 0x1 } else { 0 };
    frame(&mut out, 0x1, 0x4 | end_stream, 1, &block); // HEADERS, END_HEADERS
    if let Some(body) = body {
        frame(&mut out, 0x0, 0x1, 1, body); // DATA, END_STREAM
    }
    stream.write_all(&out)?;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        // Parse every complete frame received so far.
        let mut at = 0;
        while buffer.len() >= at + 9 {
            let length =
                (usize::from(buffer[at]) << 16) | (usize::from(buffer[at + 1]) << 8) | usize::from(buffer[at + 2]);
            if buffer.len() < at + 9 + length {
                break;
            }
            let kind = buffer[at + 3];
            let flags = buffer[at + 4];
            let stream_id =
                u32::from_be_bytes([buffer[at + 5], buffer[at + 6], buffer[at + 7], buffer[at + 8]]) & 0x7FFF_FFFF;
            let payload = &buffer[at + 9..at + 9 + length];
            match kind {
                0x1 if stream_id == 1 => return Ok(H2Outcome::Answered(status_of(payload, flags))),
                0x3 if stream_id == 1 => return Ok(H2Outcome::Refused), // RST_STREAM
                0x7 => return Ok(H2Outcome::Refused),                   // GOAWAY
                0x4 if flags & 0x1 == 0 => {
                    let mut ack = Vec::new();
                    frame(&mut ack, 0x4, 0x1, 0, &[]);
                    let _ = stream.write_all(&ack);
                }
                _ => {}
            }
            at += 9 + length;
        }
        buffer.drain(..at);
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(H2Outcome::Refused),
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(H2Outcome::Refused),
            Err(e) => return Err(e),
        }
    }
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let length = payload.len();
    out.extend_from_slice(&[(length >> 16) as u8, (length >> 8) as u8, length as u8, kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

fn hpack_string(out: &mut Vec<u8>, bytes: &[u8]) {
    hpack_int(out, 0x00, 7, bytes.len());
    out.extend_from_slice(bytes);
}

fn hpack_int(out: &mut Vec<u8>, first: u8, prefix_bits: u32, mut value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

/// The `:status` of a response header block: Envoy sends it first, either as an
/// indexed static entry (200, 204, 206, 304, 400, 404, 500) or as a literal with
/// the static name `:status` and a (possibly Huffman-coded) three-digit value.
fn status_of(block: &[u8], flags: u8) -> Option<u16> {
    let mut block = block;
    if flags & 0x8 != 0 {
        let pad = usize::from(*block.first()?);
        block = block.get(1..block.len().checked_sub(pad)?)?;
    }
    if flags & 0x20 != 0 {
        block = block.get(5..)?;
    }
    let first = *block.first()?;
    let indexed = [
        (8u8, 200u16),
        (9, 204),
        (10, 206),
        (11, 304),
        (12, 400),
        (13, 404),
        (14, 500),
    ];
    if first & 0x80 != 0 {
        return indexed.iter().find(|(i, _)| *i == first & 0x7F).map(|(_, s)| *s);
    }
    // Literal with a static name: 01xxxxxx (incremental indexing), 0000xxxx or 0001xxxx.
    let name_index = if first & 0x40 != 0 { first & 0x3F } else { first & 0x0F };
    if !(8..=14).contains(&name_index) {
        return None;
    }
    let length_byte = *block.get(1)?;
    let length = usize::from(length_byte & 0x7F);
    let value = block.get(2..2 + length)?;
    let digits = if length_byte & 0x80 != 0 {
        huffman_digits(value)?
    } else {
        value.to_vec()
    };
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// HPACK's Huffman code, for the digits only (enough for a status code).
fn huffman_digits(bytes: &[u8]) -> Option<Vec<u8>> {
    let codes: [(u32, u32, u8); 10] = [
        (0b00000, 5, b'0'),
        (0b00001, 5, b'1'),
        (0b00010, 5, b'2'),
        (0b011001, 6, b'3'),
        (0b011010, 6, b'4'),
        (0b011011, 6, b'5'),
        (0b011100, 6, b'6'),
        (0b011101, 6, b'7'),
        (0b011110, 6, b'8'),
        (0b011111, 6, b'9'),
    ];
    let bits: Vec<u32> = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| u32::from(b >> i & 1)))
        .collect();
    let mut out = Vec::new();
    let mut at = 0;
    while out.len() < 3 {
        let found = codes.iter().find(|(code, len, _)| {
            let len = *len as usize;
            bits.get(at..at + len)
                .is_some_and(|slice| slice.iter().fold(0, |acc, bit| acc << 1 | bit) == *code)
        })?;
        out.push(found.2);
        at += found.1 as usize;
    }
    Some(out)
}
