//! SPDY/3.1 framing, as much as `kubectl port-forward` speaks (client-go's
//! spdystream): SYN_STREAM, SYN_REPLY, RST_STREAM, PING, GOAWAY, HEADERS,
//! SETTINGS and WINDOW_UPDATE control frames and data frames. Header
//! blocks are one zlib stream per direction and connection (flushed per
//! block), the client's primed with SPDY/3's dictionary (the draft's
//! §2.6.10.1, `spdy3_dictionary.bin`); ours are plain zlib, which a
//! dictionary reader takes too. Flow control is not enforced: spdystream
//! neither sends nor honours WINDOW_UPDATE.
//!
//! Pure: bytes in, frames out, and frames to bytes.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

const DICTIONARY: &[u8] = include_bytes!("spdy3_dictionary.bin");
const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
/// The FIN flag, of data frames and of SYN_STREAM / SYN_REPLY.
pub const FLAG_FIN: u8 = 0x01;
/// The largest frame accepted (SPDY's length field allows 16 MiB).
const FRAME_BYTES_MAX: usize = 1 << 24;
/// The largest header block once inflated.
const HEADERS_BYTES_MAX: usize = 256 * 1024;
/// RST_STREAM status: the stream is refused / was cancelled.
pub const REFUSED_STREAM: u32 = 3;
pub const CANCEL: u32 = 5;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        id: u32,
        flags: u8,
        headers: Vec<(String, String)>,
    },
    RstStream {
        id: u32,
        status: u32,
    },
    Ping(u32),
    GoAway,
    Data {
        id: u32,
        flags: u8,
        data: Vec<u8>,
    },
    /// A frame we take no action on (SYN_REPLY, SETTINGS, WINDOW_UPDATE,
    /// HEADERS, NOOP...).
    Ignored,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads the client's frames.
pub struct Decoder {
    inflate: Decompress,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder {
            inflate: Decompress::new(true),
        }
    }
}

impl Decoder {
    /// The next whole frame at the front of `buf` (removed from it), None
    /// when more bytes are needed; Err on a frame that breaks the protocol
    /// (the connection cannot go on).
    pub fn next(&mut self, buf: &mut Vec<u8>) -> Result<Option<Frame>, String> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let flags = buf[4];
        let len = (usize::from(buf[5]) << 16) | (usize::from(buf[6]) << 8) | usize::from(buf[7]);
        if len > FRAME_BYTES_MAX {
            return Err(format!("a SPDY frame of {len} bytes"));
        }
        if buf.len() < 8 + len {
            return Ok(None);
        }
        let frame: Vec<u8> = buf.drain(..8 + len).collect();
        let body = &frame[8..];
        if frame[0] & 0x80 == 0 {
            return Ok(Some(Frame::Data {
                id: u32_at(&frame, 0) & 0x7fff_ffff,
                flags,
                data: body.to_vec(),
            }));
        }
        let version = u16::from_be_bytes([frame[0] & 0x7f, frame[1]]);
        if version != VERSION {
            return Err(format!("SPDY version {version} (3 is spoken)"));
        }
        let kind = u16::from_be_bytes([frame[2], frame[3]]);
        let short = || format!("a SPDY control frame of type {kind} is too short");
        Ok(Some(match kind {
            SYN_STREAM => {
                if body.len() < 10 {
                    return Err(short());
                }
                let id = u32_at(body, 0) & 0x7fff_ffff;
                let headers = self.headers(&body[10..])?;
                Frame::SynStream { id, flags, headers }
            }
            SYN_REPLY => {
                // (A server is not sent replies; its headers still go
                // through the shared inflater.)
                if body.len() < 4 {
                    return Err(short());
                }
                self.headers(&body[4..])?;
                Frame::Ignored
            }
            RST_STREAM => {
                if body.len() < 8 {
                    return Err(short());
                }
                Frame::RstStream {
                    id: u32_at(body, 0) & 0x7fff_ffff,
                    status: u32_at(body, 4),
                }
            }
            PING => {
                if body.len() < 4 {
                    return Err(short());
                }
                Frame::Ping(u32_at(body, 0))
            }
            GOAWAY => Frame::GoAway,
            8 => {
                // HEADERS: stream id, then a header block.
                if body.len() < 4 {
                    return Err(short());
                }
                self.headers(&body[4..])?;
                Frame::Ignored
            }
            _ => Frame::Ignored,
        }))
    }

    /// Inflate one header block and parse its name/value pairs.
    fn headers(&mut self, block: &[u8]) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        let mut input = block;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= HEADERS_BYTES_MAX {
                    return Err("a SPDY header block is too large".into());
                }
                out.reserve(out.len().max(256));
            }
            let before_in = self.inflate.total_in();
            let r = self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            let used = usize::try_from(self.inflate.total_in() - before_in).unwrap_or(input.len());
            input = &input[used.min(input.len())..];
            match r {
                Ok(Status::StreamEnd) => break,
                Ok(_) if input.is_empty() && out.len() < out.capacity() => break,
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| format!("SPDY header dictionary: {e}"))?;
                }
                Err(e) => return Err(format!("a SPDY header block does not inflate: {e}")),
            }
        }
        parse_pairs(&out)
    }
}

/// `count`, then per pair a length-prefixed name and value (32-bit
/// big-endian lengths).
fn parse_pairs(b: &[u8]) -> Result<Vec<(String, String)>, String> {
    fn take<'a>(b: &'a [u8], at: &mut usize, n: usize) -> Result<&'a [u8], String> {
        let end = at
            .checked_add(n)
            .filter(|e| *e <= b.len())
            .ok_or_else(|| "a malformed SPDY header block".to_string())?;
        let s = &b[*at..end];
        *at = end;
        Ok(s)
    }
    let mut at = 0usize;
    let count = u32_at(take(b, &mut at, 4)?, 0);
    let mut out = Vec::new();
    for _ in 0..count {
        let n = u32_at(take(b, &mut at, 4)?, 0) as usize;
        let name = String::from_utf8_lossy(take(b, &mut at, n)?).into_owned();
        let n = u32_at(take(b, &mut at, 4)?, 0) as usize;
        let value = String::from_utf8_lossy(take(b, &mut at, n)?).into_owned();
        out.push((name, value));
    }
    Ok(out)
}

/// A header block before compression: the count, then each name and
/// value length-prefixed.
fn encode_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut raw = (pairs.len() as u32).to_be_bytes().to_vec();
    for (n, v) in pairs {
        raw.extend_from_slice(&(n.len() as u32).to_be_bytes());
        raw.extend_from_slice(n.as_bytes());
        raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
        raw.extend_from_slice(v.as_bytes());
    }
    raw
}

/// Writes the server's frames.
pub struct Encoder {
    deflate: Compress,
}

impl Default for Encoder {
    fn default() -> Encoder {
        Encoder {
            deflate: Compress::new(Compression::default(), true),
        }
    }
}

fn control(kind: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + body.len());
    f.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    f.extend_from_slice(&kind.to_be_bytes());
    let len = u32::try_from(body.len()).unwrap_or(0) & 0x00ff_ffff;
    f.push(flags);
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.extend_from_slice(body);
    f
}

impl Encoder {
    /// SYN_REPLY for stream `id` (no headers).
    pub fn syn_reply(&mut self, id: u32, flags: u8) -> Result<Vec<u8>, String> {
        let mut body = (id & 0x7fff_ffff).to_be_bytes().to_vec();
        body.extend(self.header_block(&[])?);
        Ok(control(SYN_REPLY, flags, &body))
    }

    fn header_block(&mut self, pairs: &[(&str, &str)]) -> Result<Vec<u8>, String> {
        let mut raw = encode_pairs(pairs);
        let mut out = Vec::with_capacity(raw.len() + 64);
        loop {
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(&raw, &mut out, FlushCompress::Sync)
                .map_err(|e| format!("compress SPDY headers: {e}"))?;
            let used = usize::try_from(self.deflate.total_in() - before).unwrap_or(raw.len());
            raw.drain(..used.min(raw.len()));
            // Done once the input is in and the flush fit.
            if raw.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
            out.reserve(64);
        }
    }
}

/// A data frame.
pub fn data(id: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + data.len());
    f.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
    let len = u32::try_from(data.len()).unwrap_or(0) & 0x00ff_ffff;
    f.push(flags);
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.extend_from_slice(data);
    f
}

pub fn rst_stream(id: u32, status: u32) -> Vec<u8> {
    let mut body = (id & 0x7fff_ffff).to_be_bytes().to_vec();
    body.extend_from_slice(&status.to_be_bytes());
    control(RST_STREAM, 0, &body)
}

pub fn ping(id: u32) -> Vec<u8> {
    control(PING, 0, &id.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's SYN_STREAM as spdystream writes it: headers compressed
    /// with the dictionary.
    fn client_syn(z: &mut Compress, id: u32, pairs: &[(&str, &str)]) -> Vec<u8> {
        let raw = encode_pairs(pairs);
        let mut block = Vec::with_capacity(raw.len() + 256);
        z.compress_vec(&raw, &mut block, FlushCompress::Sync)
            .expect("compress");
        let mut body = id.to_be_bytes().to_vec();
        body.extend_from_slice(&0u32.to_be_bytes());
        body.extend_from_slice(&[0, 0]);
        body.extend(block);
        control(SYN_STREAM, 0, &body)
    }

    fn dict_compressor() -> Compress {
        let mut z = Compress::new(Compression::best(), true);
        z.set_dictionary(DICTIONARY).expect("dictionary");
        z
    }

    #[test]
    fn the_dictionary_is_spdy3s() {
        assert_eq!(DICTIONARY.len(), 1423);
        let mut z = dict_compressor();
        let mut out = Vec::with_capacity(64);
        z.compress_vec(b"", &mut out, FlushCompress::Sync)
            .expect("compress");
        // The zlib header names the dictionary by its Adler-32.
        assert_eq!(&out[2..6], &0xe3c6_a7c2u32.to_be_bytes());
    }

    #[test]
    fn client_frames_decode_across_arbitrary_splits() {
        let mut z = dict_compressor();
        let mut wire = Vec::new();
        let h1 = [
            ("streamtype", "error"),
            ("port", "8080"),
            ("requestid", "0"),
        ];
        let h2 = [("streamtype", "data"), ("port", "8080"), ("requestid", "0")];
        wire.extend(client_syn(&mut z, 1, &h1));
        wire.extend(client_syn(&mut z, 3, &h2));
        wire.extend(data(3, 0, b"GET / HTTP/1.0\r\n\r\n"));
        wire.extend(data(3, FLAG_FIN, b""));
        wire.extend(ping(1));
        wire.extend(rst_stream(1, CANCEL));
        // Fed a byte at a time: the frames come out whole, in order.
        let mut d = Decoder::default();
        let mut buf = Vec::new();
        let mut frames = Vec::new();
        for b in wire {
            buf.push(b);
            while let Some(f) = d.next(&mut buf).expect("decode") {
                frames.push(f);
            }
        }
        let own = |p: &[(&str, &str)]| -> Vec<(String, String)> {
            p.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            frames,
            vec![
                Frame::SynStream {
                    id: 1,
                    flags: 0,
                    headers: own(&h1)
                },
                Frame::SynStream {
                    id: 3,
                    flags: 0,
                    headers: own(&h2)
                },
                Frame::Data {
                    id: 3,
                    flags: 0,
                    data: b"GET / HTTP/1.0\r\n\r\n".to_vec()
                },
                Frame::Data {
                    id: 3,
                    flags: FLAG_FIN,
                    data: vec![]
                },
                Frame::Ping(1),
                Frame::RstStream {
                    id: 1,
                    status: CANCEL
                },
            ]
        );
    }

    #[test]
    fn our_replies_inflate_with_a_dictionary_reader() {
        let mut e = Encoder::default();
        let a = e.syn_reply(1, 0).expect("reply");
        let b = e.syn_reply(3, FLAG_FIN).expect("reply");
        assert_eq!(u16::from_be_bytes([a[2], a[3]]), SYN_REPLY);
        assert_eq!(b[4], FLAG_FIN);
        // One zlib stream across both blocks, each complete on its own.
        let mut z = Decompress::new(true);
        for f in [&a, &b] {
            let mut out = Vec::with_capacity(64);
            z.decompress_vec(&f[12..], &mut out, FlushDecompress::Sync)
                .expect("inflate");
            assert_eq!(parse_pairs(&out), Ok(vec![]));
        }
    }

    #[test]
    fn broken_input_is_an_error_not_a_panic() {
        let mut d = Decoder::default();
        // A SYN_STREAM whose header block is not zlib.
        let mut body = 1u32.to_be_bytes().to_vec();
        body.extend_from_slice(&[0; 6]);
        body.extend_from_slice(b"garbage");
        assert!(d.next(&mut control(SYN_STREAM, 0, &body)).is_err());
        // Too short, wrong version, a header count past the block.
        let mut d = Decoder::default();
        assert!(d.next(&mut control(RST_STREAM, 0, &[0, 0])).is_err());
        let mut v2 = control(PING, 0, &[0, 0, 0, 1]);
        v2[1] = 2;
        assert!(d.next(&mut v2).is_err());
        assert!(parse_pairs(&[0, 0, 0, 5, 0, 0, 0, 1]).is_err());
        assert!(parse_pairs(&[0, 0]).is_err());
    }
}
