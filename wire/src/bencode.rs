//! Bencode values: a limit-checked reader and a canonical writer.
//!
//! # Why reading is hand-written and writing goes through bendy
//!
//! bendy 0.6's decoder runs every token through a state tracker that
//! rejects a dictionary whose keys are not strictly increasing
//! (`StructureError::UnsortedKeys`). Real `.torrent` files and peers do
//! send unsorted and duplicate keys, and libtorrent and Transmission
//! accept them, so bittern must too. bendy also cannot report the byte span
//! of a value, which the v1 info hash needs (SHA-1 over the exact `info`
//! bytes in the file). Reading is therefore done by the small
//! [`decode_with`] reader below: iterative (no recursion, so nesting
//! cannot overflow the stack), bounded by [`Limits`], allocation-free
//! until a value is known to fit in the input, and able to give byte
//! spans ([`dict_value_span`]).
//!
//! Writing has no such problem, and [`encode`] uses bendy's checked
//! encoder: a [`Value::Dict`] is a `BTreeMap`, so keys come out sorted and
//! unique and everything bittern writes is canonical.
//!
//! # Leniency
//!
//! Accepted when reading: unsorted keys; duplicate keys (the **first**
//! occurrence wins, as in libtorrent). Rejected: integers with leading
//! zeros, `-0`, empty integers, string lengths with leading zeros, negative
//! string lengths, non-string keys, trailing bytes after the top value.

use std::collections::BTreeMap;
use std::ops::Range;

use thiserror::Error as ThisError;

/// A bencoded value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    /// `i<n>e`
    Int(i64),
    /// `<len>:<bytes>`
    Bytes(Vec<u8>),
    /// `l...e`
    List(Vec<Value>),
    /// `d...e`; a `BTreeMap`, so encoding is always sorted.
    Dict(BTreeMap<Vec<u8>, Value>),
}

impl Value {
    /// The integer, if this is an `Int`.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The bytes, if this is a byte string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The string, if this is a byte string holding valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The items, if this is a list.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The map, if this is a dictionary.
    pub fn as_dict(&self) -> Option<&BTreeMap<Vec<u8>, Value>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// `self[key]` if this is a dictionary holding `key`.
    pub fn get(&self, key: &[u8]) -> Option<&Value> {
        self.as_dict().and_then(|d| d.get(key))
    }

    /// A byte-string value.
    pub fn bytes(b: impl Into<Vec<u8>>) -> Value {
        Value::Bytes(b.into())
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Bytes(s.as_bytes().to_vec())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Bytes(s.into_bytes())
    }
}

impl From<Vec<Value>> for Value {
    fn from(l: Vec<Value>) -> Self {
        Value::List(l)
    }
}

impl From<BTreeMap<Vec<u8>, Value>> for Value {
    fn from(d: BTreeMap<Vec<u8>, Value>) -> Self {
        Value::Dict(d)
    }
}

/// Bounds applied while reading untrusted bencode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of lists/dicts (the top container is depth 1).
    pub max_depth: usize,
    /// Largest accepted input, in bytes.
    pub max_len: usize,
    /// Longest single byte string.
    pub max_string_len: usize,
    /// Most values (of any kind, keys excluded) in one document; bounds the
    /// memory a tiny-item document like `llllee...` can cost.
    pub max_items: usize,
}

impl Default for Limits {
    /// depth 64, 64 MiB total and per string, 4 million values.
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_len: 64 << 20,
            max_string_len: 64 << 20,
            max_items: 4_000_000,
        }
    }
}

/// A bencode reading error. Positions are byte offsets into the input.
#[derive(Debug, Clone, PartialEq, Eq, ThisError)]
#[non_exhaustive]
pub enum Error {
    /// The input ended inside a value.
    #[error("unexpected end of input at byte {0}")]
    UnexpectedEof(usize),
    /// A byte that cannot start or continue a value here.
    #[error("unexpected byte 0x{byte:02x} at byte {pos}")]
    InvalidByte {
        /// Offset of the byte.
        pos: usize,
        /// The byte.
        byte: u8,
    },
    /// An integer that is empty, has leading zeros or is `-0`.
    #[error("malformed integer at byte {0}")]
    InvalidInteger(usize),
    /// An integer outside `i64`.
    #[error("integer out of range at byte {0}")]
    IntegerOverflow(usize),
    /// A malformed string length (leading zeros, overflow).
    #[error("malformed string length at byte {0}")]
    InvalidLength(usize),
    /// A dictionary key that is not a byte string.
    #[error("dictionary key at byte {0} is not a string")]
    KeyNotString(usize),
    /// Bytes left over after the top-level value.
    #[error("trailing data at byte {0}")]
    TrailingData(usize),
    /// Nesting deeper than [`Limits::max_depth`].
    #[error("nesting deeper than {0}")]
    TooDeep(usize),
    /// Input longer than [`Limits::max_len`].
    #[error("input of {len} bytes exceeds the limit of {limit}")]
    InputTooLong {
        /// Input length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A string longer than [`Limits::max_string_len`].
    #[error("string of {len} bytes at byte {pos} exceeds the limit of {limit}")]
    StringTooLong {
        /// Offset of the string's length prefix.
        pos: usize,
        /// Declared length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// More values than [`Limits::max_items`].
    #[error("more than {0} values")]
    TooManyItems(usize),
    /// [`dict_value_span`] was given something other than a dictionary.
    #[error("expected a dictionary")]
    NotADict,
}

/// One lexical token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List,
    Dict,
    End,
}

struct Lexer<'a> {
    buf: &'a [u8],
    pos: usize,
    max_string_len: usize,
}

impl<'a> Lexer<'a> {
    fn peek(&self) -> Result<u8, Error> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(Error::UnexpectedEof(self.pos))
    }

    fn next(&mut self) -> Result<Token<'a>, Error> {
        let start = self.pos;
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let digits_start = self.pos;
                let neg = self.peek()? == b'-';
                if neg {
                    self.pos += 1;
                }
                let first = self.pos;
                let mut n: i64 = 0;
                loop {
                    let c = self.peek()?;
                    match c {
                        b'0'..=b'9' => {
                            let d = i64::from(c - b'0');
                            n = n
                                .checked_mul(10)
                                .and_then(|n| {
                                    if neg {
                                        n.checked_sub(d)
                                    } else {
                                        n.checked_add(d)
                                    }
                                })
                                .ok_or(Error::IntegerOverflow(start))?;
                            self.pos += 1;
                        }
                        b'e' => break,
                        byte => {
                            return Err(Error::InvalidByte {
                                pos: self.pos,
                                byte,
                            })
                        }
                    }
                }
                let digits = &self.buf[first..self.pos];
                if digits.is_empty()
                    || (digits[0] == b'0' && (digits.len() > 1 || neg))
                    || self.pos == digits_start
                {
                    return Err(Error::InvalidInteger(start));
                }
                self.pos += 1; // 'e'
                Ok(Token::Int(n))
            }
            b'0'..=b'9' => {
                let mut len: usize = 0;
                loop {
                    let c = self.peek()?;
                    match c {
                        b'0'..=b'9' => {
                            if self.pos > start && self.buf[start] == b'0' {
                                return Err(Error::InvalidLength(start));
                            }
                            len = len
                                .checked_mul(10)
                                .and_then(|l| l.checked_add(usize::from(c - b'0')))
                                .ok_or(Error::InvalidLength(start))?;
                            self.pos += 1;
                        }
                        b':' => break,
                        byte => {
                            return Err(Error::InvalidByte {
                                pos: self.pos,
                                byte,
                            })
                        }
                    }
                }
                self.pos += 1; // ':'
                if len > self.max_string_len {
                    return Err(Error::StringTooLong {
                        pos: start,
                        len,
                        limit: self.max_string_len,
                    });
                }
                let end = self
                    .pos
                    .checked_add(len)
                    .filter(|&e| e <= self.buf.len())
                    .ok_or(Error::UnexpectedEof(self.buf.len()))?;
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(Token::Bytes(s))
            }
            b'l' => {
                self.pos += 1;
                Ok(Token::List)
            }
            b'd' => {
                self.pos += 1;
                Ok(Token::Dict)
            }
            b'e' => {
                self.pos += 1;
                Ok(Token::End)
            }
            byte => Err(Error::InvalidByte { pos: start, byte }),
        }
    }
}

enum Frame {
    List(Vec<Value>),
    /// The map so far and the key waiting for its value.
    Dict(BTreeMap<Vec<u8>, Value>, Option<Vec<u8>>),
}

/// Decode one whole document with [`Limits::default`].
///
/// # Errors
/// Any [`Error`]; the whole buffer must be one value.
pub fn decode(buf: &[u8]) -> Result<Value, Error> {
    decode_with(buf, &Limits::default())
}

/// Decode one whole document under `limits`.
///
/// # Errors
/// Any [`Error`]; the whole buffer must be one value.
pub fn decode_with(buf: &[u8], limits: &Limits) -> Result<Value, Error> {
    let (v, used) = decode_prefix(buf, limits)?;
    if used != buf.len() {
        return Err(Error::TrailingData(used));
    }
    Ok(v)
}

/// Decode the value at the front of `buf`, returning it and the number of
/// bytes it took. Useful where raw data follows a bencoded header (BEP 9
/// `ut_metadata` data messages).
///
/// # Errors
/// Any [`Error`] except `TrailingData`.
pub fn decode_prefix(buf: &[u8], limits: &Limits) -> Result<(Value, usize), Error> {
    if buf.len() > limits.max_len {
        return Err(Error::InputTooLong {
            len: buf.len(),
            limit: limits.max_len,
        });
    }
    let mut lx = Lexer {
        buf,
        pos: 0,
        max_string_len: limits.max_string_len,
    };
    let mut stack: Vec<Frame> = Vec::new();
    let mut items = 0usize;
    loop {
        let tok_pos = lx.pos;
        let tok = lx.next()?;
        // A dictionary waiting for a key takes only a string or the end.
        if let Some(Frame::Dict(_, key @ None)) = stack.last_mut() {
            match tok {
                Token::Bytes(k) => {
                    *key = Some(k.to_vec());
                    continue;
                }
                Token::End => {}
                _ => return Err(Error::KeyNotString(tok_pos)),
            }
        }
        let value = match tok {
            Token::Int(i) => Value::Int(i),
            Token::Bytes(b) => Value::Bytes(b.to_vec()),
            Token::List | Token::Dict => {
                if stack.len() >= limits.max_depth {
                    return Err(Error::TooDeep(limits.max_depth));
                }
                items += 1;
                if items > limits.max_items {
                    return Err(Error::TooManyItems(limits.max_items));
                }
                stack.push(if tok == Token::List {
                    Frame::List(Vec::new())
                } else {
                    Frame::Dict(BTreeMap::new(), None)
                });
                continue;
            }
            Token::End => match stack.pop() {
                Some(Frame::List(l)) => Value::List(l),
                Some(Frame::Dict(d, _)) => Value::Dict(d),
                None => {
                    return Err(Error::InvalidByte {
                        pos: tok_pos,
                        byte: b'e',
                    })
                }
            },
        };
        if !matches!(tok, Token::End) {
            items += 1;
            if items > limits.max_items {
                return Err(Error::TooManyItems(limits.max_items));
            }
        }
        match stack.last_mut() {
            None => return Ok((value, lx.pos)),
            Some(Frame::List(l)) => l.push(value),
            Some(Frame::Dict(d, key)) => {
                if let Some(k) = key.take() {
                    // first occurrence wins, as in libtorrent
                    d.entry(k).or_insert(value);
                }
            }
        }
    }
}

/// Validate the value starting at `pos` and return the offset just past it,
/// without building it.
fn skip_value(buf: &[u8], pos: usize, limits: &Limits) -> Result<usize, Error> {
    let mut lx = Lexer {
        buf,
        pos,
        max_string_len: limits.max_string_len,
    };
    // per open container: is it a dict, and does it expect a key next
    let mut stack: Vec<(bool, bool)> = Vec::new();
    loop {
        let tok_pos = lx.pos;
        let tok = lx.next()?;
        if let Some((true, expect_key @ true)) = stack.last_mut() {
            match tok {
                Token::Bytes(_) => {
                    *expect_key = false;
                    continue;
                }
                Token::End => {}
                _ => return Err(Error::KeyNotString(tok_pos)),
            }
        }
        match tok {
            Token::List | Token::Dict => {
                if stack.len() >= limits.max_depth {
                    return Err(Error::TooDeep(limits.max_depth));
                }
                stack.push((tok == Token::Dict, true));
                continue;
            }
            Token::End => {
                if stack.pop().is_none() {
                    return Err(Error::InvalidByte {
                        pos: tok_pos,
                        byte: b'e',
                    });
                }
            }
            Token::Int(_) | Token::Bytes(_) => {}
        }
        match stack.last_mut() {
            None => return Ok(lx.pos),
            Some((true, expect_key)) => *expect_key = true,
            Some((false, _)) => {}
        }
    }
}

/// The byte range, within `buf`, of the value stored under `key` in the
/// top-level dictionary `buf` (the first occurrence if the key repeats,
/// matching [`decode`]). `Ok(None)` if the key is absent.
///
/// This is how the info hash is computed over the exact `info` bytes.
///
/// # Errors
/// [`Error::NotADict`] if `buf` is not a dictionary, or any reading error.
pub fn dict_value_span(
    buf: &[u8],
    key: &[u8],
    limits: &Limits,
) -> Result<Option<Range<usize>>, Error> {
    if buf.len() > limits.max_len {
        return Err(Error::InputTooLong {
            len: buf.len(),
            limit: limits.max_len,
        });
    }
    if buf.first() != Some(&b'd') {
        return Err(Error::NotADict);
    }
    let mut lx = Lexer {
        buf,
        pos: 1,
        max_string_len: limits.max_string_len,
    };
    let sub = Limits {
        max_depth: limits.max_depth.saturating_sub(1),
        ..limits.clone()
    };
    loop {
        let tok_pos = lx.pos;
        match lx.next()? {
            Token::End => return Ok(None),
            Token::Bytes(k) => {
                let start = lx.pos;
                let end = skip_value(buf, start, &sub)?;
                if k == key {
                    return Ok(Some(start..end));
                }
                lx.pos = end;
            }
            _ => return Err(Error::KeyNotString(tok_pos)),
        }
    }
}

fn emit(
    v: &Value,
    e: bendy::encoding::SingleItemEncoder<'_>,
) -> Result<(), bendy::encoding::Error> {
    match v {
        Value::Int(i) => e.emit_int(*i),
        Value::Bytes(b) => e.emit_bytes(b),
        Value::List(l) => e.emit_list(|le| {
            for x in l {
                le.emit_with(|e| emit(x, e))?;
            }
            Ok(())
        }),
        Value::Dict(d) => e.emit_dict(|mut de| {
            for (k, x) in d {
                de.emit_pair_with(k, |e| emit(x, e))?;
            }
            Ok(())
        }),
    }
}

/// Plain writer used only if bendy ever refused a value (it cannot: keys of
/// a `BTreeMap` are sorted and unique and the depth limit is lifted).
fn write_plain(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Int(i) => {
            out.push(b'i');
            out.extend_from_slice(i.to_string().as_bytes());
            out.push(b'e');
        }
        Value::Bytes(b) => {
            out.extend_from_slice(b.len().to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(b);
        }
        Value::List(l) => {
            out.push(b'l');
            l.iter().for_each(|x| write_plain(x, out));
            out.push(b'e');
        }
        Value::Dict(d) => {
            out.push(b'd');
            for (k, x) in d {
                write_plain(&Value::Bytes(k.clone()), out);
                write_plain(x, out);
            }
            out.push(b'e');
        }
    }
}

/// Canonical bencoding of `v` (dictionary keys sorted, no duplicates).
pub fn encode(v: &Value) -> Vec<u8> {
    let mut enc = bendy::encoding::Encoder::new().with_max_depth(usize::MAX);
    match enc
        .emit_with(|e| emit(v, e))
        .and_then(|()| enc.get_output())
    {
        Ok(out) => out,
        Err(e) => {
            debug_assert!(false, "bendy refused a Value: {e}");
            let mut out = Vec::new();
            write_plain(v, &mut out);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(pairs: Vec<(&str, Value)>) -> Value {
        Value::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    #[test]
    fn decodes_basic_values() {
        assert_eq!(decode(b"i42e"), Ok(Value::Int(42)));
        assert_eq!(decode(b"i-7e"), Ok(Value::Int(-7)));
        assert_eq!(decode(b"i0e"), Ok(Value::Int(0)));
        assert_eq!(decode(b"4:spam"), Ok(Value::bytes("spam")));
        assert_eq!(decode(b"0:"), Ok(Value::bytes("")));
        assert_eq!(
            decode(b"l4:spami3ee"),
            Ok(Value::List(vec![Value::bytes("spam"), Value::Int(3)]))
        );
        assert_eq!(
            decode(b"d3:cow3:moo4:spaml1:aee"),
            Ok(d(vec![
                ("cow", Value::bytes("moo")),
                ("spam", Value::List(vec![Value::bytes("a")]))
            ]))
        );
        assert_eq!(decode(b"i9223372036854775807e"), Ok(Value::Int(i64::MAX)));
        assert_eq!(decode(b"i-9223372036854775808e"), Ok(Value::Int(i64::MIN)));
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(decode(b""), Err(Error::UnexpectedEof(0)));
        assert_eq!(decode(b"i"), Err(Error::UnexpectedEof(1)));
        assert_eq!(decode(b"ie"), Err(Error::InvalidInteger(0)));
        assert_eq!(decode(b"i-e"), Err(Error::InvalidInteger(0)));
        assert_eq!(decode(b"i-0e"), Err(Error::InvalidInteger(0)));
        assert_eq!(decode(b"i03e"), Err(Error::InvalidInteger(0)));
        assert_eq!(
            decode(b"i9223372036854775808e"),
            Err(Error::IntegerOverflow(0))
        );
        assert_eq!(decode(b"03:abc"), Err(Error::InvalidLength(0)));
        assert_eq!(
            decode(b"-3:abc"),
            Err(Error::InvalidByte { pos: 0, byte: b'-' })
        );
        assert_eq!(decode(b"5:abc"), Err(Error::UnexpectedEof(5)));
        assert_eq!(decode(b"i1ei2e"), Err(Error::TrailingData(3)));
        assert_eq!(decode(b"di1ei2ee"), Err(Error::KeyNotString(1)));
        assert_eq!(decode(b"e"), Err(Error::InvalidByte { pos: 0, byte: b'e' }));
        assert_eq!(decode(b"l"), Err(Error::UnexpectedEof(1)));
        assert_eq!(decode(b"d1:a"), Err(Error::UnexpectedEof(4)));
        assert_eq!(
            decode(b"99999999999999999999999999:x"),
            Err(Error::InvalidLength(0))
        );
        // a 4 GiB string length is refused before anything is allocated
        assert_eq!(
            decode(b"4294967296:abc"),
            Err(Error::StringTooLong {
                pos: 0,
                len: 1 << 32,
                limit: 64 << 20
            })
        );
    }

    #[test]
    fn accepts_unsorted_and_duplicate_keys_first_wins() {
        let v = decode(b"d1:bi1e1:ai2e1:bi3ee").unwrap();
        assert_eq!(v, d(vec![("a", Value::Int(2)), ("b", Value::Int(1))]));
        // and re-encodes canonically
        assert_eq!(encode(&v), b"d1:ai2e1:bi1ee");
        // bendy's strict decoder would refuse the input
        let mut strict = bendy::decoding::Decoder::new(b"d1:bi1e1:ai2ee");
        let res = (|| -> Result<(), bendy::decoding::Error> {
            if let Some(bendy::decoding::Object::Dict(mut dd)) = strict.next_object()? {
                while dd.next_pair()?.is_some() {}
            }
            Ok(())
        })();
        assert!(res.is_err());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let mut buf = vec![b'l'; 100_000];
        buf.extend(std::iter::repeat_n(b'e', 100_000));
        assert_eq!(decode(&buf), Err(Error::TooDeep(64)));
        let unlimited = Limits {
            max_depth: usize::MAX,
            ..Limits::default()
        };
        // iterative: even unlimited depth does not overflow the stack
        let v = decode_with(&buf, &unlimited).unwrap();
        // dropping a 100,000-deep value recursively would overflow; unwind it
        let mut v = v;
        while let Value::List(mut l) = v {
            v = l.pop().unwrap_or(Value::Int(0));
        }
        let mut dicts = b"d1:a".repeat(100_000);
        dicts.extend(std::iter::repeat_n(b'e', 100_000));
        assert_eq!(decode(&dicts), Err(Error::TooDeep(64)));
        assert_eq!(
            dict_value_span(&dicts, b"a", &Limits::default()),
            Err(Error::TooDeep(63))
        );
    }

    #[test]
    fn limits_apply() {
        let l = Limits {
            max_len: 3,
            ..Limits::default()
        };
        assert_eq!(
            decode_with(b"i10e", &l),
            Err(Error::InputTooLong { len: 4, limit: 3 })
        );
        let l = Limits {
            max_string_len: 2,
            ..Limits::default()
        };
        assert_eq!(
            decode_with(b"3:abc", &l),
            Err(Error::StringTooLong {
                pos: 0,
                len: 3,
                limit: 2
            })
        );
        let l = Limits {
            max_items: 3,
            ..Limits::default()
        };
        assert_eq!(
            decode_with(b"li1ei2ee", &l)
                .unwrap()
                .as_list()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(decode_with(b"li1ei2ei3ee", &l), Err(Error::TooManyItems(3)));
    }

    #[test]
    fn spans_point_at_raw_bytes() {
        let buf = b"d8:announce3:url4:infod1:bi1e1:ai2ee1:zi0e4:infoi5ee";
        let span = dict_value_span(buf, b"info", &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(&buf[span], b"d1:bi1e1:ai2ee");
        assert_eq!(dict_value_span(buf, b"nope", &Limits::default()), Ok(None));
        assert_eq!(
            dict_value_span(b"li1ee", b"x", &Limits::default()),
            Err(Error::NotADict)
        );
        assert_eq!(
            dict_value_span(b"d4:infod1:a", b"info", &Limits::default()),
            Err(Error::UnexpectedEof(11))
        );
        // decode agrees that the first duplicate wins
        let v = decode(buf).unwrap();
        assert!(v.get(b"info").unwrap().as_dict().is_some());
    }

    #[test]
    fn prefix_decoding() {
        let (v, n) = decode_prefix(b"d1:ai1eeRAWDATA", &Limits::default()).unwrap();
        assert_eq!(n, 8);
        assert_eq!(v.get(b"a").and_then(Value::as_int), Some(1));
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::Int),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::List),
                proptest::collection::btree_map(
                    proptest::collection::vec(any::<u8>(), 0..8),
                    inner,
                    0..8
                )
                .prop_map(Value::Dict),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trip(v in arb_value()) {
            let bytes = encode(&v);
            prop_assert_eq!(decode(&bytes), Ok(v.clone()));
            let mut plain = Vec::new();
            write_plain(&v, &mut plain);
            prop_assert_eq!(&plain, &bytes);
            // bendy's strict decoder accepts what we write, at the same length
            let mut dec = bendy::decoding::Decoder::new(&bytes).with_max_depth(64);
            let obj = dec.next_object();
            prop_assert!(obj.is_ok());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(v) = decode(&bytes) {
                let again = encode(&v);
                prop_assert_eq!(decode(&again), Ok(v));
            }
        }

        #[test]
        fn truncation_is_eof(v in arb_value()) {
            let bytes = encode(&v);
            for cut in 0..bytes.len() {
                prop_assert!(decode(&bytes[..cut]).is_err());
            }
        }
    }
}
