//! The msgpack encoding of cty values that tfplugin6 uses for `DynamicValue.msgpack`, following go-cty's `cty/msgpack`.

use std::collections::BTreeMap;

use super::{MAX_DEPTH, Number, PathStep, Refinements, Type, Value, ValueError, type_kind_name};

/// Extension type code of an unknown value that carries refinements.
const REFINED_UNKNOWN_EXT: i8 = 12;

/// Largest refinement payload accepted, as in go-cty: more is not a plausible description of an
/// unknown and would only serve to make the reader allocate.
const MAX_REFINEMENT_PAYLOAD: usize = 1024;

/// Longest string prefix refinement written. go-cty truncates to keep the payload well under
/// [`MAX_REFINEMENT_PAYLOAD`]; a shorter prefix is still a true statement about the value.
const MAX_PREFIX_BYTES: usize = 255;

const REFINE_NULLNESS: i64 = 1;
const REFINE_STRING_PREFIX: i64 = 2;
const REFINE_NUMBER_MIN: i64 = 3;
const REFINE_NUMBER_MAX: i64 = 4;
const REFINE_LENGTH_MIN: i64 = 5;
const REFINE_LENGTH_MAX: i64 = 6;

/// Encodes `value` as a value of type `ty`.
///
/// Fails when the value does not conform to the type, when a plain value sits in a `dynamic`
/// slot (its concrete type is unknown, so wrap it in [`Value::Dynamic`]), or when a value is
/// nested deeper than the decoder would accept.
pub fn encode(value: &Value, ty: &Type) -> Result<Vec<u8>, ValueError> {
    let mut out = Vec::new();
    encode_value(&mut out, value, ty, 0)?;
    Ok(out)
}

/// Decodes one value of type `ty` that must span all of `bytes`.
pub fn decode(bytes: &[u8], ty: &Type) -> Result<Value, ValueError> {
    let mut r = Reader::new(bytes, 0);
    let value = decode_value(&mut r, ty, 0)?;
    if r.remaining() > 0 {
        return Err(error_at(r.pos, "trailing bytes after value"));
    }
    Ok(value)
}

fn error_at(offset: usize, reason: impl Into<String>) -> ValueError {
    ValueError::Msgpack {
        offset,
        path: String::new(),
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// One msgpack item header, with the payload of byte-like items borrowed from the input.
#[derive(Debug, Clone, Copy)]
enum Token<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    Uint(u64),
    F32(f32),
    F64(f64),
    Str(&'a [u8]),
    Bin(&'a [u8]),
    Array(usize),
    Map(usize),
    Ext(i8, &'a [u8]),
}

impl Token<'_> {
    fn name(&self) -> &'static str {
        match self {
            Token::Nil => "nil",
            Token::Bool(_) => "bool",
            Token::Int(_) | Token::Uint(_) => "int",
            Token::F32(_) | Token::F64(_) => "float",
            Token::Str(_) => "str",
            Token::Bin(_) => "bin",
            Token::Array(_) => "array",
            Token::Map(_) => "map",
            Token::Ext(..) => "ext",
        }
    }
}

/// A cursor over untrusted bytes. Every read is bounds-checked and no read allocates.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` within the whole input, so errors inside extension payloads point at
    /// the right byte.
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Reader<'a> {
        Reader { buf, pos: 0, base }
    }

    fn offset(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ValueError> {
        let slice = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end))
            .ok_or_else(|| error_at(self.offset(), "unexpected end of input"))?;
        self.pos += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ValueError> {
        let at = self.offset();
        self.take(N)?
            .try_into()
            .map_err(|_| error_at(at, "unexpected end of input"))
    }

    fn u8(&mut self) -> Result<u8, ValueError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    fn u16(&mut self) -> Result<usize, ValueError> {
        Ok(usize::from(u16::from_be_bytes(self.array()?)))
    }

    fn u32(&mut self) -> Result<usize, ValueError> {
        let at = self.offset();
        usize::try_from(u32::from_be_bytes(self.array()?))
            .map_err(|_| error_at(at, "length does not fit in memory"))
    }

    /// Reads an item header whose element count must be backed by at least one byte per
    /// element still in the input. Checking that here means no caller can be made to loop or
    /// reserve memory for elements that are not there.
    fn container(
        &mut self,
        count: usize,
        bytes_each: usize,
        at: usize,
    ) -> Result<usize, ValueError> {
        if count.saturating_mul(bytes_each) > self.remaining() {
            return Err(error_at(
                at,
                format!("declared length {count} exceeds the remaining input"),
            ));
        }
        Ok(count)
    }

    fn ext(&mut self, len: usize) -> Result<Token<'a>, ValueError> {
        let code = i8::from_be_bytes(self.array()?);
        Ok(Token::Ext(code, self.take(len)?))
    }

    fn token(&mut self) -> Result<Token<'a>, ValueError> {
        let at = self.offset();
        let code = self.u8()?;
        let token = match code {
            0x00..=0x7f => Token::Uint(u64::from(code)),
            0x80..=0x8f => Token::Map(self.container(usize::from(code & 0x0f), 2, at)?),
            0x90..=0x9f => Token::Array(self.container(usize::from(code & 0x0f), 1, at)?),
            0xa0..=0xbf => Token::Str(self.take(usize::from(code & 0x1f))?),
            0xc0 => Token::Nil,
            0xc1 => return Err(error_at(at, "reserved byte 0xc1")),
            0xc2 => Token::Bool(false),
            0xc3 => Token::Bool(true),
            0xc4 => {
                let n = usize::from(self.u8()?);
                Token::Bin(self.take(n)?)
            }
            0xc5 => {
                let n = self.u16()?;
                Token::Bin(self.take(n)?)
            }
            0xc6 => {
                let n = self.u32()?;
                Token::Bin(self.take(n)?)
            }
            0xc7 => {
                let n = usize::from(self.u8()?);
                self.ext(n)?
            }
            0xc8 => {
                let n = self.u16()?;
                self.ext(n)?
            }
            0xc9 => {
                let n = self.u32()?;
                self.ext(n)?
            }
            0xca => Token::F32(f32::from_be_bytes(self.array()?)),
            0xcb => Token::F64(f64::from_be_bytes(self.array()?)),
            0xcc => Token::Uint(u64::from(self.u8()?)),
            0xcd => Token::Uint(u64::from(u16::from_be_bytes(self.array()?))),
            0xce => Token::Uint(u64::from(u32::from_be_bytes(self.array()?))),
            0xcf => Token::Uint(u64::from_be_bytes(self.array()?)),
            0xd0 => Token::Int(i64::from(i8::from_be_bytes(self.array()?))),
            0xd1 => Token::Int(i64::from(i16::from_be_bytes(self.array()?))),
            0xd2 => Token::Int(i64::from(i32::from_be_bytes(self.array()?))),
            0xd3 => Token::Int(i64::from_be_bytes(self.array()?)),
            0xd4 => self.ext(1)?,
            0xd5 => self.ext(2)?,
            0xd6 => self.ext(4)?,
            0xd7 => self.ext(8)?,
            0xd8 => self.ext(16)?,
            0xd9 => {
                let n = usize::from(self.u8()?);
                Token::Str(self.take(n)?)
            }
            0xda => {
                let n = self.u16()?;
                Token::Str(self.take(n)?)
            }
            0xdb => {
                let n = self.u32()?;
                Token::Str(self.take(n)?)
            }
            0xdc => {
                let n = self.u16()?;
                Token::Array(self.container(n, 1, at)?)
            }
            0xdd => {
                let n = self.u32()?;
                Token::Array(self.container(n, 1, at)?)
            }
            0xde => {
                let n = self.u16()?;
                Token::Map(self.container(n, 2, at)?)
            }
            0xdf => {
                let n = self.u32()?;
                Token::Map(self.container(n, 2, at)?)
            }
            0xe0..=0xff => Token::Int(i64::from(i8::from_be_bytes([code]))),
        };
        Ok(token)
    }

    /// Skips one complete item without recursion, so nesting in ignored data costs no stack.
    fn skip(&mut self) -> Result<(), ValueError> {
        let mut pending: usize = 1;
        while pending > 0 {
            pending -= 1;
            match self.token()? {
                Token::Array(n) => pending = pending.saturating_add(n),
                Token::Map(n) => pending = pending.saturating_add(n.saturating_mul(2)),
                _ => {}
            }
        }
        Ok(())
    }
}

fn utf8(bytes: &[u8], at: usize) -> Result<String, ValueError> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| error_at(at, "string is not valid utf-8"))
}

/// The number a token holds, or `None` when the token is not a number encoding.
fn token_number(token: Token<'_>, at: usize) -> Option<Result<Number, ValueError>> {
    let nan = || error_at(at, "nan is not a valid number");
    Some(match token {
        Token::Int(i) => Ok(Number::from_i64(i)),
        Token::Uint(u) => Ok(Number::from_u64(u)),
        // An f32 is read through its own shortest text, so 0.1f32 means 0.1 rather than the
        // digits of its widening to f64.
        Token::F32(f) => Number::from_f32(f).ok_or_else(nan),
        Token::F64(f) => Number::from_f64(f).ok_or_else(nan),
        Token::Str(b) => utf8(b, at).and_then(|s| {
            Number::parse(&s).map_err(|e| error_at(at, format!("number required: {e}")))
        }),
        _ => return None,
    })
}

// The functions on the recursive path keep their frames small (formatting and other bulky
// work lives in separate non-inlined functions) so that the full nesting depth fits in a
// 2 MiB thread stack even in unoptimised builds.

fn decode_value(r: &mut Reader<'_>, ty: &Type, depth: usize) -> Result<Value, ValueError> {
    let at = r.offset();
    if depth >= MAX_DEPTH {
        return Err(error_at(at, "value is nested too deeply"));
    }
    let token = r.token()?;
    match (ty, token) {
        (Type::List(et), Token::Array(n)) => {
            decode_elements(r, std::iter::repeat_n(et.as_ref(), n), depth).map(Value::List)
        }
        (Type::Set(et), Token::Array(n)) => {
            decode_elements(r, std::iter::repeat_n(et.as_ref(), n), depth).map(Value::Set)
        }
        (Type::Tuple(ets), Token::Array(n)) => {
            if n != ets.len() {
                return Err(tuple_length_error(at, ets.len(), n));
            }
            decode_elements(r, ets.iter(), depth).map(Value::Tuple)
        }
        (Type::Map(et), Token::Map(n)) => decode_map(r, et, n, depth),
        (Type::Object(attrs), Token::Map(n)) => decode_object(r, attrs, n, at, depth),
        (Type::Dynamic, Token::Array(n)) => decode_dynamic(r, n, at, depth),
        _ => decode_leaf(r, token, ty, at),
    }
}

/// Decodes the items that hold no nested values, and reports mismatches.
#[inline(never)]
fn decode_leaf(
    r: &Reader<'_>,
    token: Token<'_>,
    ty: &Type,
    at: usize,
) -> Result<Value, ValueError> {
    match (ty, token) {
        (_, Token::Nil) => Ok(Value::Null),
        (_, Token::Ext(code, payload)) => {
            let payload_at = r.offset().saturating_sub(payload.len());
            decode_unknown(code, payload, payload_at, ty)
        }
        (Type::String, Token::Str(b) | Token::Bin(b)) => utf8(b, at).map(Value::String),
        (Type::Number, t) => match token_number(t, at) {
            Some(n) => n.map(Value::Number),
            None => Err(mismatch_error(ty, t, at)),
        },
        (Type::Bool, Token::Bool(b)) => Ok(Value::Bool(b)),
        (_, t) => Err(mismatch_error(ty, t, at)),
    }
}

#[cold]
#[inline(never)]
fn mismatch_error(ty: &Type, token: Token<'_>, at: usize) -> ValueError {
    error_at(
        at,
        format!(
            "{} required, got msgpack {}",
            type_kind_name(ty),
            token.name()
        ),
    )
}

#[cold]
#[inline(never)]
fn tuple_length_error(at: usize, want: usize, got: usize) -> ValueError {
    error_at(at, format!("tuple of {want} elements required, got {got}"))
}

#[inline(never)]
fn decode_map(
    r: &mut Reader<'_>,
    elem_ty: &Type,
    n: usize,
    depth: usize,
) -> Result<Value, ValueError> {
    let mut entries = BTreeMap::new();
    for _ in 0..n {
        let key_at = r.offset();
        let key = decode_key(r)?;
        let value =
            decode_value(r, elem_ty, depth + 1).map_err(|e| e.under(PathStep::Key(&key)))?;
        if entries.insert(key, value).is_some() {
            return Err(error_at(key_at, "duplicate map key"));
        }
    }
    Ok(Value::Map(entries))
}

#[inline(never)]
fn decode_object(
    r: &mut Reader<'_>,
    attrs: &BTreeMap<String, Type>,
    n: usize,
    at: usize,
    depth: usize,
) -> Result<Value, ValueError> {
    let mut entries = BTreeMap::new();
    for _ in 0..n {
        let key_at = r.offset();
        let key = decode_key(r)?;
        let Some(attr_ty) = attrs.get(key.as_str()) else {
            return Err(key_error(key_at, "unsupported attribute", &key));
        };
        let value =
            decode_value(r, attr_ty, depth + 1).map_err(|e| e.under(PathStep::Attr(&key)))?;
        if entries.contains_key(&key) {
            return Err(key_error(key_at, "duplicate attribute", &key));
        }
        entries.insert(key, value);
    }
    if let Some(missing) = attrs.keys().find(|k| !entries.contains_key(*k)) {
        return Err(missing_attribute_error(at, missing));
    }
    Ok(Value::Object(entries))
}

#[cold]
#[inline(never)]
fn key_error(at: usize, what: &str, key: &str) -> ValueError {
    error_at(at, format!("{what} {key:?}"))
}

#[cold]
#[inline(never)]
fn missing_attribute_error(at: usize, name: &str) -> ValueError {
    error_at(at, format!("attribute {name:?} is required"))
}

#[inline(never)]
fn decode_dynamic(
    r: &mut Reader<'_>,
    n: usize,
    at: usize,
    depth: usize,
) -> Result<Value, ValueError> {
    if n != 2 {
        return Err(error_at(
            at,
            format!("dynamic value must be a [type, value] array, got {n} elements"),
        ));
    }
    let concrete = decode_dynamic_type(r)?;
    let inner = decode_value(r, &concrete, depth + 1)?;
    Ok(Value::Dynamic(concrete, Box::new(inner)))
}

#[inline(never)]
fn decode_dynamic_type(r: &mut Reader<'_>) -> Result<Type, ValueError> {
    let at = r.offset();
    match r.token()? {
        // go-cty writes the type as bin; some encoders use str for JSON text.
        Token::Bin(b) | Token::Str(b) => {
            Type::from_json_bytes(b).map_err(|e| error_at(at, format!("dynamic value type: {e}")))
        }
        other => Err(error_at(
            at,
            format!(
                "dynamic value type must be bin, got msgpack {}",
                other.name()
            ),
        )),
    }
}

fn decode_elements<'t>(
    r: &mut Reader<'_>,
    types: impl ExactSizeIterator<Item = &'t Type>,
    depth: usize,
) -> Result<Vec<Value>, ValueError> {
    // The count was checked against the remaining input when its header was read; the `min`
    // keeps the reservation bounded by the input even if that check ever changes.
    let mut out = Vec::with_capacity(types.len().min(r.remaining()));
    for (i, ty) in types.enumerate() {
        out.push(decode_value(r, ty, depth + 1).map_err(|e| e.under(PathStep::Index(i)))?);
    }
    Ok(out)
}

fn decode_key(r: &mut Reader<'_>) -> Result<String, ValueError> {
    let at = r.offset();
    match r.token()? {
        Token::Str(b) | Token::Bin(b) => utf8(b, at),
        other => Err(error_at(
            at,
            format!("map key must be a string, got msgpack {}", other.name()),
        )),
    }
}

/// Decodes an unknown from an extension item, as go-cty does: a payload of at most one byte is
/// a plain unknown whatever its type code; a longer one must be a refinement map.
fn decode_unknown(code: i8, payload: &[u8], at: usize, ty: &Type) -> Result<Value, ValueError> {
    if payload.len() <= 1 {
        return Ok(Value::unknown());
    }
    if code != REFINED_UNKNOWN_EXT {
        return Err(error_at(
            at,
            format!(
                "unsupported extension type {code} with {} bytes",
                payload.len()
            ),
        ));
    }
    if payload.len() > MAX_REFINEMENT_PAYLOAD {
        return Err(error_at(at, "unknown value refinements are too large"));
    }
    let mut r = Reader::new(payload, at);
    let Token::Map(count) = r.token()? else {
        return Err(error_at(at, "unknown value refinements must be a map"));
    };
    if *ty == Type::Dynamic {
        // go-cty ignores refinements of a dynamic unknown, leaving room to define them later.
        return Ok(Value::unknown());
    }
    let mut refinements = Refinements::default();
    let mut definitely_null = false;
    for _ in 0..count {
        let key_at = r.offset();
        let key = match r.token()? {
            Token::Int(i) => i,
            Token::Uint(u) => i64::try_from(u).unwrap_or(i64::MAX),
            other => {
                return Err(error_at(
                    key_at,
                    format!(
                        "refinement key must be an integer, got msgpack {}",
                        other.name()
                    ),
                ));
            }
        };
        let value_at = r.offset();
        let inapplicable = |what: &str| {
            Err(error_at(
                key_at,
                format!("{what} refinement for a value of type {ty}"),
            ))
        };
        match key {
            REFINE_NULLNESS => match r.token()? {
                Token::Bool(is_null) => {
                    definitely_null = is_null;
                    refinements.not_null = !is_null;
                }
                _ => return Err(error_at(value_at, "nullness refinement must be a bool")),
            },
            REFINE_STRING_PREFIX => {
                if *ty != Type::String {
                    return inapplicable("string prefix");
                }
                match r.token()? {
                    Token::Str(b) => refinements.string_prefix = Some(utf8(b, value_at)?),
                    _ => return Err(error_at(value_at, "string prefix refinement must be a str")),
                }
            }
            REFINE_NUMBER_MIN | REFINE_NUMBER_MAX => {
                if *ty != Type::Number {
                    return inapplicable("number bound");
                }
                let bound = decode_number_bound(&mut r)?;
                if key == REFINE_NUMBER_MIN {
                    refinements.number_lower = Some(bound);
                } else {
                    refinements.number_upper = Some(bound);
                }
            }
            REFINE_LENGTH_MIN | REFINE_LENGTH_MAX => {
                if !ty.is_collection() {
                    return inapplicable("length bound");
                }
                let len = match r.token()? {
                    Token::Uint(u) => u,
                    Token::Int(i) => u64::try_from(i)
                        .map_err(|_| error_at(value_at, "length bound must not be negative"))?,
                    _ => return Err(error_at(value_at, "length bound refinement must be an int")),
                };
                if key == REFINE_LENGTH_MIN {
                    refinements.length_lower = Some(len);
                } else {
                    refinements.length_upper = Some(len);
                }
            }
            // Unrecognised keys are skipped so that refinements added later still decode.
            _ => r.skip()?,
        }
    }
    // go-cty also ignores bytes after the map, reserving them for future use.
    if definitely_null {
        // An unknown that is known to be null is simply null.
        return Ok(Value::Null);
    }
    Ok(Value::Unknown(refinements.applicable_to(ty)))
}

fn decode_number_bound(r: &mut Reader<'_>) -> Result<(Number, bool), ValueError> {
    let at = r.offset();
    let shape_error = || error_at(at, "number bound refinement must be a [number, bool] array");
    let Token::Array(2) = r.token()? else {
        return Err(shape_error());
    };
    let number_at = r.offset();
    let bound = token_number(r.token()?, number_at).ok_or_else(shape_error)??;
    let Token::Bool(inclusive) = r.token()? else {
        return Err(shape_error());
    };
    Ok((bound, inclusive))
}

// ---------------------------------------------------------------------------------------------
// Writing

fn too_long(what: &str) -> ValueError {
    ValueError::conformance(format!("{what} is too long for msgpack"))
}

fn write_uint(out: &mut Vec<u8>, u: u64) {
    if u < 0x80 {
        out.extend_from_slice(&u.to_be_bytes()[7..]);
    } else if let Ok(b) = u8::try_from(u) {
        out.push(0xcc);
        out.push(b);
    } else if let Ok(h) = u16::try_from(u) {
        out.push(0xcd);
        out.extend_from_slice(&h.to_be_bytes());
    } else if let Ok(w) = u32::try_from(u) {
        out.push(0xce);
        out.extend_from_slice(&w.to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&u.to_be_bytes());
    }
}

fn write_int(out: &mut Vec<u8>, i: i64) {
    if let Ok(u) = u64::try_from(i) {
        write_uint(out, u);
    } else if i >= -32 {
        // Negative fixint: the byte is the two's complement of the value itself.
        out.extend_from_slice(&i.to_be_bytes()[7..]);
    } else if let Ok(b) = i8::try_from(i) {
        out.push(0xd0);
        out.extend_from_slice(&b.to_be_bytes());
    } else if let Ok(h) = i16::try_from(i) {
        out.push(0xd1);
        out.extend_from_slice(&h.to_be_bytes());
    } else if let Ok(w) = i32::try_from(i) {
        out.push(0xd2);
        out.extend_from_slice(&w.to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&i.to_be_bytes());
    }
}

/// Writes a length with the smallest of a fix form (when `fix` allows it), 8, 16 or 32 bits.
fn write_len(
    out: &mut Vec<u8>,
    len: usize,
    fix: Option<(u8, usize)>,
    codes: [Option<u8>; 3],
    what: &str,
) -> Result<(), ValueError> {
    if let Some((base, max)) = fix
        && len <= max
        && let Ok(b) = u8::try_from(len)
    {
        out.push(base | b);
        return Ok(());
    }
    if let (Some(code), Ok(b)) = (codes[0], u8::try_from(len)) {
        out.push(code);
        out.push(b);
    } else if let (Some(code), Ok(h)) = (codes[1], u16::try_from(len)) {
        out.push(code);
        out.extend_from_slice(&h.to_be_bytes());
    } else if let (Some(code), Ok(w)) = (codes[2], u32::try_from(len)) {
        out.push(code);
        out.extend_from_slice(&w.to_be_bytes());
    } else {
        return Err(too_long(what));
    }
    Ok(())
}

fn write_str(out: &mut Vec<u8>, s: &str) -> Result<(), ValueError> {
    write_len(
        out,
        s.len(),
        Some((0xa0, 31)),
        [Some(0xd9), Some(0xda), Some(0xdb)],
        "string",
    )?;
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn write_bin(out: &mut Vec<u8>, b: &[u8]) -> Result<(), ValueError> {
    write_len(
        out,
        b.len(),
        None,
        [Some(0xc4), Some(0xc5), Some(0xc6)],
        "binary",
    )?;
    out.extend_from_slice(b);
    Ok(())
}

fn write_array_len(out: &mut Vec<u8>, n: usize) -> Result<(), ValueError> {
    write_len(
        out,
        n,
        Some((0x90, 15)),
        [None, Some(0xdc), Some(0xdd)],
        "array",
    )
}

fn write_map_len(out: &mut Vec<u8>, n: usize) -> Result<(), ValueError> {
    write_len(
        out,
        n,
        Some((0x80, 15)),
        [None, Some(0xde), Some(0xdf)],
        "map",
    )
}

fn write_ext(out: &mut Vec<u8>, code: i8, payload: &[u8]) -> Result<(), ValueError> {
    match payload.len() {
        1 => out.push(0xd4),
        2 => out.push(0xd5),
        4 => out.push(0xd6),
        8 => out.push(0xd7),
        16 => out.push(0xd8),
        n => write_len(
            out,
            n,
            None,
            [Some(0xc7), Some(0xc8), Some(0xc9)],
            "extension",
        )?,
    }
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Writes a number as go-cty does: an int when it is one, else a float64 when that is exact,
/// else its decimal text, which any cty reader parses back without loss.
fn write_number(out: &mut Vec<u8>, n: &Number) -> Result<(), ValueError> {
    if let Some(i) = n.as_i64() {
        write_int(out, i);
    } else if let Some(u) = n.as_u64() {
        write_uint(out, u);
    } else if let Some(f) = n.as_exact_f64() {
        out.push(0xcb);
        out.extend_from_slice(&f.to_be_bytes());
    } else {
        write_str(out, &n.to_string())?;
    }
    Ok(())
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate_at_char(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn write_unknown(out: &mut Vec<u8>, refinements: &Refinements) -> Result<(), ValueError> {
    let mut payload = Vec::new();
    let mut entries = 0;
    if refinements.not_null {
        entries += 1;
        write_int(&mut payload, REFINE_NULLNESS);
        payload.push(0xc2);
    }
    if let Some(prefix) = &refinements.string_prefix {
        entries += 1;
        write_int(&mut payload, REFINE_STRING_PREFIX);
        write_str(&mut payload, truncate_at_char(prefix, MAX_PREFIX_BYTES))?;
    }
    for (key, bound) in [
        (REFINE_NUMBER_MIN, &refinements.number_lower),
        (REFINE_NUMBER_MAX, &refinements.number_upper),
    ] {
        if let Some((n, inclusive)) = bound {
            entries += 1;
            write_int(&mut payload, key);
            payload.push(0x92);
            write_number(&mut payload, n)?;
            payload.push(if *inclusive { 0xc3 } else { 0xc2 });
        }
    }
    for (key, len) in [
        (REFINE_LENGTH_MIN, refinements.length_lower),
        (REFINE_LENGTH_MAX, refinements.length_upper),
    ] {
        if let Some(len) = len {
            entries += 1;
            write_int(&mut payload, key);
            write_uint(&mut payload, len);
        }
    }
    if entries == 0 {
        // The compact form go-cty uses for a wholly unknown value.
        out.extend_from_slice(&[0xd4, 0x00, 0x00]);
        return Ok(());
    }
    let mut body = Vec::with_capacity(payload.len() + 1);
    write_map_len(&mut body, entries)?;
    body.extend_from_slice(&payload);
    write_ext(out, REFINED_UNKNOWN_EXT, &body)
}

fn encode_value(
    out: &mut Vec<u8>,
    value: &Value,
    ty: &Type,
    depth: usize,
) -> Result<(), ValueError> {
    if depth >= MAX_DEPTH {
        return Err(ValueError::conformance("value is nested too deeply"));
    }
    let depth = depth + 1;
    match (ty, value) {
        (Type::Dynamic, Value::Dynamic(concrete, inner)) => {
            encode_dynamic(out, concrete, inner, depth)
        }
        (Type::List(et), Value::List(vs)) | (Type::Set(et), Value::Set(vs)) => {
            encode_elements(out, vs, std::iter::repeat_n(et.as_ref(), vs.len()), depth)
        }
        (Type::Tuple(ets), Value::Tuple(vs)) => {
            if ets.len() != vs.len() {
                return Err(ValueError::conformance(tuple_length_reason(
                    ets.len(),
                    vs.len(),
                )));
            }
            encode_elements(out, vs, ets.iter(), depth)
        }
        (Type::Map(et), Value::Map(entries)) => encode_map(out, entries, et, depth),
        (Type::Object(attrs), Value::Object(entries)) => encode_object(out, entries, attrs, depth),
        _ => encode_leaf(out, value, ty),
    }
}

/// Encodes the values that hold no nested values, and reports mismatches.
#[inline(never)]
fn encode_leaf(out: &mut Vec<u8>, value: &Value, ty: &Type) -> Result<(), ValueError> {
    match (ty, value) {
        (_, Value::Null) => out.push(0xc0),
        (_, Value::Unknown(refinements)) => write_unknown(out, &refinements.applicable_to(ty))?,
        (Type::Dynamic, other) => return Err(unwrapped_dynamic_error(other)),
        (Type::String, Value::String(s)) => write_str(out, s)?,
        (Type::Number, Value::Number(n)) => write_number(out, n)?,
        (Type::Bool, Value::Bool(b)) => out.push(if *b { 0xc3 } else { 0xc2 }),
        (_, other) => return Err(value_mismatch_error(ty, other)),
    }
    Ok(())
}

#[inline(never)]
fn encode_dynamic(
    out: &mut Vec<u8>,
    concrete: &Type,
    inner: &Value,
    depth: usize,
) -> Result<(), ValueError> {
    out.push(0x92);
    write_bin(out, &concrete.to_json_bytes())?;
    encode_value(out, inner, concrete, depth)
}

#[inline(never)]
fn encode_elements<'t>(
    out: &mut Vec<u8>,
    values: &[Value],
    types: impl Iterator<Item = &'t Type>,
    depth: usize,
) -> Result<(), ValueError> {
    write_array_len(out, values.len())?;
    for (i, (v, t)) in values.iter().zip(types).enumerate() {
        encode_value(out, v, t, depth).map_err(|e| e.under(PathStep::Index(i)))?;
    }
    Ok(())
}

#[inline(never)]
fn encode_map(
    out: &mut Vec<u8>,
    entries: &BTreeMap<String, Value>,
    elem_ty: &Type,
    depth: usize,
) -> Result<(), ValueError> {
    write_map_len(out, entries.len())?;
    for (k, v) in entries {
        write_str(out, k)?;
        encode_value(out, v, elem_ty, depth).map_err(|e| e.under(PathStep::Key(k)))?;
    }
    Ok(())
}

#[inline(never)]
fn encode_object(
    out: &mut Vec<u8>,
    entries: &BTreeMap<String, Value>,
    attrs: &BTreeMap<String, Type>,
    depth: usize,
) -> Result<(), ValueError> {
    if let Some(extra) = entries.keys().find(|k| !attrs.contains_key(*k)) {
        return Err(ValueError::conformance(format!(
            "unsupported attribute {extra:?}"
        )));
    }
    write_map_len(out, attrs.len())?;
    for (k, t) in attrs {
        let v = entries
            .get(k)
            .ok_or_else(|| ValueError::conformance(format!("attribute {k:?} is required")))?;
        write_str(out, k)?;
        encode_value(out, v, t, depth).map_err(|e| e.under(PathStep::Attr(k)))?;
    }
    Ok(())
}

#[cold]
#[inline(never)]
fn unwrapped_dynamic_error(value: &Value) -> ValueError {
    ValueError::conformance(format!(
        "a {} in a dynamic slot must be wrapped in Value::Dynamic to give its type",
        value.kind_name()
    ))
}

#[cold]
#[inline(never)]
fn tuple_length_reason(want: usize, got: usize) -> String {
    format!("tuple of {want} elements required, got {got}")
}

#[cold]
#[inline(never)]
fn value_mismatch_error(ty: &Type, value: &Value) -> ValueError {
    ValueError::conformance(format!(
        "{} required, got {}",
        type_kind_name(ty),
        value.kind_name()
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Bytes from space-separated hex, so expected encodings read like a hex dump.
    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    fn num(s: &str) -> Value {
        Value::Number(Number::parse(s).unwrap())
    }

    fn obj<const N: usize>(entries: [(&str, Value); N]) -> Value {
        Value::Object(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    }

    fn refined(r: Refinements) -> Value {
        Value::Unknown(r)
    }

    /// The tuple of this dynamic example has a bool; its JSON text is 48 bytes long.
    const DYNAMIC_TYPE_JSON: &str = r#"["object",{"a":"number","b":["tuple",["bool"]]}]"#;

    fn dynamic_example_type() -> Type {
        Type::object([("a", Type::Number), ("b", Type::Tuple(vec![Type::Bool]))])
    }

    /// Values whose canonical encoding is exactly the given bytes, both ways.
    fn canonical_cases() -> Vec<(Value, Type, Vec<u8>)> {
        let mut long = "d9 20".to_owned();
        long.push_str(&" 61".repeat(32));
        let mut longer = "da 01 00".to_owned();
        longer.push_str(&" 61".repeat(256));
        let mut sixteen = "dc 00 10".to_owned();
        sixteen.push_str(&" c3".repeat(16));
        let mut dynamic = "92 c4 30".to_owned();
        for b in DYNAMIC_TYPE_JSON.bytes() {
            dynamic.push_str(&format!(" {b:02x}"));
        }
        dynamic.push_str(" 82 a1 61 01 a1 62 91 c3");
        vec![
            (Value::Null, Type::String, hex("c0")),
            (Value::Null, Type::list(Type::Number), hex("c0")),
            (Value::Null, Type::Dynamic, hex("c0")),
            (Value::unknown(), Type::String, hex("d4 00 00")),
            (Value::unknown(), Type::Dynamic, hex("d4 00 00")),
            (Value::string("hi"), Type::String, hex("a2 68 69")),
            (Value::string(""), Type::String, hex("a0")),
            (Value::string("a".repeat(32)), Type::String, hex(&long)),
            (Value::string("a".repeat(256)), Type::String, hex(&longer)),
            (Value::bool(true), Type::Bool, hex("c3")),
            (Value::bool(false), Type::Bool, hex("c2")),
            (Value::number(0), Type::Number, hex("00")),
            (Value::number(127), Type::Number, hex("7f")),
            (Value::number(128), Type::Number, hex("cc 80")),
            (Value::number(256), Type::Number, hex("cd 01 00")),
            (Value::number(65536), Type::Number, hex("ce 00 01 00 00")),
            (
                Value::number(1_i64 << 32),
                Type::Number,
                hex("cf 00 00 00 01 00 00 00 00"),
            ),
            (Value::number(-1), Type::Number, hex("ff")),
            (Value::number(-32), Type::Number, hex("e0")),
            (Value::number(-33), Type::Number, hex("d0 df")),
            (Value::number(-129), Type::Number, hex("d1 ff 7f")),
            (Value::number(-32769), Type::Number, hex("d2 ff ff 7f ff")),
            (
                Value::number(i64::MIN),
                Type::Number,
                hex("d3 80 00 00 00 00 00 00 00"),
            ),
            (
                Value::number(u64::MAX),
                Type::Number,
                hex("cf ff ff ff ff ff ff ff ff"),
            ),
            (num("0.5"), Type::Number, hex("cb 3f e0 00 00 00 00 00 00")),
            (num("0.1"), Type::Number, hex("cb 3f b9 99 99 99 99 99 9a")),
            (num("inf"), Type::Number, hex("cb 7f f0 00 00 00 00 00 00")),
            (num("-inf"), Type::Number, hex("cb ff f0 00 00 00 00 00 00")),
            // 2^70 is an f64, but go-cty reads an f64 as its shortest text (1180591620717411300000),
            // which is a different number, so the exact value travels as decimal text.
            (
                num("1180591620717411303424"),
                Type::Number,
                [vec![0xb6], b"1180591620717411303424".to_vec()].concat(),
            ),
            (
                num("1180591620717411300000"),
                Type::Number,
                hex("cb 44 50 00 00 00 00 00 00"),
            ),
            (
                num("1180591620717411303425"),
                Type::Number,
                [vec![0xb6], b"1180591620717411303425".to_vec()].concat(),
            ),
            (
                num("0.1000000000000000000001"),
                Type::Number,
                [vec![0xb8], b"0.1000000000000000000001".to_vec()].concat(),
            ),
            (
                Value::List(vec![Value::string("a"), Value::string("b")]),
                Type::list(Type::String),
                hex("92 a1 61 a1 62"),
            ),
            (Value::List(vec![]), Type::list(Type::String), hex("90")),
            (
                Value::List(vec![Value::bool(true); 16]),
                Type::list(Type::Bool),
                hex(&sixteen),
            ),
            (
                Value::Set(vec![Value::number(1), Value::Null]),
                Type::set(Type::Number),
                hex("92 01 c0"),
            ),
            (
                Value::Map(
                    [("b", true), ("a", false)]
                        .into_iter()
                        .map(|(k, b)| (k.to_owned(), Value::bool(b)))
                        .collect(),
                ),
                Type::map(Type::Bool),
                hex("82 a1 61 c2 a1 62 c3"),
            ),
            (
                obj([("b", Value::string("x")), ("a", Value::number(1))]),
                Type::object([("a", Type::Number), ("b", Type::String)]),
                hex("82 a1 61 01 a1 62 a1 78"),
            ),
            (
                Value::Tuple(vec![Value::string("x"), Value::bool(true)]),
                Type::Tuple(vec![Type::String, Type::Bool]),
                hex("92 a1 78 c3"),
            ),
            (
                Value::Dynamic(
                    dynamic_example_type(),
                    Box::new(obj([
                        ("a", Value::number(1)),
                        ("b", Value::Tuple(vec![Value::bool(true)])),
                    ])),
                ),
                Type::Dynamic,
                hex(&dynamic),
            ),
            (
                Value::Dynamic(Type::String, Box::new(Value::Null)),
                Type::Dynamic,
                hex("92 c4 08 22 73 74 72 69 6e 67 22 c0"),
            ),
            (
                Value::Dynamic(Type::String, Box::new(Value::unknown())),
                Type::Dynamic,
                hex("92 c4 08 22 73 74 72 69 6e 67 22 d4 00 00"),
            ),
            (
                refined(Refinements {
                    not_null: true,
                    ..Refinements::default()
                }),
                Type::String,
                hex("c7 03 0c 81 01 c2"),
            ),
            (
                refined(Refinements {
                    not_null: true,
                    string_prefix: Some("ab".to_owned()),
                    ..Refinements::default()
                }),
                Type::String,
                hex("c7 07 0c 82 01 c2 02 a2 61 62"),
            ),
            // A four-byte payload takes the fixext4 header.
            (
                refined(Refinements {
                    string_prefix: Some("a".to_owned()),
                    ..Refinements::default()
                }),
                Type::String,
                hex("d6 0c 81 02 a1 61"),
            ),
            (
                refined(Refinements {
                    number_lower: Some((Number::from(0), true)),
                    number_upper: Some((Number::parse("10.5").unwrap(), false)),
                    ..Refinements::default()
                }),
                Type::Number,
                hex("c7 11 0c 82 03 92 00 c3 04 92 cb 40 25 00 00 00 00 00 00 c2"),
            ),
            (
                refined(Refinements {
                    length_lower: Some(1),
                    length_upper: Some(10),
                    ..Refinements::default()
                }),
                Type::list(Type::String),
                hex("c7 05 0c 82 05 01 06 0a"),
            ),
            (
                refined(Refinements {
                    not_null: true,
                    length_upper: Some(300),
                    ..Refinements::default()
                }),
                Type::map(Type::String),
                hex("c7 07 0c 82 01 c2 06 cd 01 2c"),
            ),
        ]
    }

    #[test]
    fn canonical_encodings_round_trip_byte_for_byte() {
        for (value, ty, bytes) in canonical_cases() {
            assert_eq!(
                encode(&value, &ty).unwrap(),
                bytes,
                "encode {value:?} as {ty}"
            );
            assert_eq!(
                decode(&bytes, &ty).unwrap(),
                value,
                "decode {bytes:02x?} as {ty}"
            );
        }
    }

    #[test]
    fn dynamic_example_type_json_is_48_bytes() {
        assert_eq!(DYNAMIC_TYPE_JSON.len(), 48);
        assert_eq!(
            dynamic_example_type().to_json_bytes(),
            DYNAMIC_TYPE_JSON.as_bytes()
        );
    }

    #[test]
    fn non_canonical_encodings_decode() {
        let two_pow_70 = [vec![0xb6], b"1180591620717411303424".to_vec()].concat();
        let cases: Vec<(Vec<u8>, Type, Value)> = vec![
            (hex("d9 02 68 69"), Type::String, Value::string("hi")),
            (hex("da 00 02 68 69"), Type::String, Value::string("hi")),
            (
                hex("db 00 00 00 02 68 69"),
                Type::String,
                Value::string("hi"),
            ),
            (hex("c4 02 68 69"), Type::String, Value::string("hi")),
            (hex("d0 05"), Type::Number, Value::number(5)),
            (
                hex("d3 00 00 00 00 00 00 00 05"),
                Type::Number,
                Value::number(5),
            ),
            (
                hex("cf 00 00 00 00 00 00 00 05"),
                Type::Number,
                Value::number(5),
            ),
            (hex("cc 05"), Type::Number, Value::number(5)),
            (hex("ca 3d cc cc cd"), Type::Number, num("0.1")),
            (
                hex("cb 40 00 00 00 00 00 00 00"),
                Type::Number,
                Value::number(2),
            ),
            (hex("a3 31 65 33"), Type::Number, Value::number(1000)),
            (hex("a4 2d 30 2e 30"), Type::Number, Value::number(0)),
            (two_pow_70, Type::Number, num("1180591620717411303424")),
            (
                hex("dc 00 01 01"),
                Type::list(Type::Number),
                Value::List(vec![Value::number(1)]),
            ),
            (
                hex("dd 00 00 00 01 01"),
                Type::set(Type::Number),
                Value::Set(vec![Value::number(1)]),
            ),
            (
                hex("de 00 00"),
                Type::map(Type::Number),
                Value::Map(BTreeMap::new()),
            ),
            (
                hex("df 00 00 00 00"),
                Type::map(Type::Number),
                Value::Map(BTreeMap::new()),
            ),
            // Object keys may come in any order.
            (
                hex("82 a1 62 a1 78 a1 61 01"),
                Type::object([("a", Type::Number), ("b", Type::String)]),
                obj([("a", Value::number(1)), ("b", Value::string("x"))]),
            ),
            // Any extension with at most one byte of payload is a plain unknown.
            (hex("d4 05 ff"), Type::String, Value::unknown()),
            (hex("c7 00 00"), Type::Number, Value::unknown()),
            (hex("c8 00 01 0c 00"), Type::Bool, Value::unknown()),
            (
                hex("c9 00 00 00 00 07"),
                Type::list(Type::Bool),
                Value::unknown(),
            ),
            // The dynamic type may arrive as str.
            (
                hex("92 a8 22 73 74 72 69 6e 67 22 a1 78"),
                Type::Dynamic,
                Value::Dynamic(Type::String, Box::new(Value::string("x"))),
            ),
            (
                hex("92 c4 09 22 64 79 6e 61 6d 69 63 22 c0"),
                Type::Dynamic,
                Value::Dynamic(Type::Dynamic, Box::new(Value::Null)),
            ),
            // A refined unknown in a dynamic slot loses its refinements.
            (hex("c7 03 0c 81 01 c2"), Type::Dynamic, Value::unknown()),
            // Refinement keys not yet defined are skipped, whatever they hold.
            (
                hex("c7 0a 0c 82 09 92 91 01 81 01 02 01 c2"),
                Type::String,
                refined(Refinements {
                    not_null: true,
                    ..Refinements::default()
                }),
            ),
            // Bytes after the refinement map are reserved and ignored.
            (
                hex("c7 04 0c 81 01 c2 ff"),
                Type::String,
                refined(Refinements {
                    not_null: true,
                    ..Refinements::default()
                }),
            ),
            // A refinement saying the value is definitely null makes it null.
            (hex("c7 03 0c 81 01 c3"), Type::String, Value::Null),
            // Bounds may be decimal text, and non-informative refinements are normalised away.
            (
                hex("c7 11 0c 83 03 92 a3 31 65 32 c2 04 92 a3 69 6e 66 c3 01 c2"),
                Type::Number,
                refined(Refinements {
                    not_null: true,
                    number_lower: Some((Number::from(100), false)),
                    ..Refinements::default()
                }),
            ),
            (
                hex("c7 03 0c 81 05 00"),
                Type::set(Type::Bool),
                Value::unknown(),
            ),
        ];
        for (bytes, ty, want) in cases {
            assert_eq!(
                decode(&bytes, &ty).unwrap(),
                want,
                "decode {bytes:02x?} as {ty}"
            );
        }
    }

    #[test]
    fn inapplicable_refinements_are_dropped_on_encode() {
        let everything = Refinements {
            not_null: true,
            string_prefix: Some("pre".to_owned()),
            number_lower: Some((Number::from(1), true)),
            number_upper: Some((Number::from(2), true)),
            length_lower: Some(3),
            length_upper: Some(4),
        };
        let cases = [
            (Type::Bool, "c7 03 0c 81 01 c2"),
            (Type::object([("a", Type::String)]), "c7 03 0c 81 01 c2"),
            (Type::Tuple(vec![]), "c7 03 0c 81 01 c2"),
            (Type::String, "d7 0c 82 01 c2 02 a3 70 72 65"),
            (Type::Number, "c7 0b 0c 83 01 c2 03 92 01 c3 04 92 02 c3"),
            (Type::set(Type::Number), "c7 07 0c 83 01 c2 05 03 06 04"),
            // cty cannot refine an unknown of unknown type at all.
            (Type::Dynamic, "d4 00 00"),
        ];
        for (ty, want) in cases {
            let bytes = encode(&refined(everything.clone()), &ty).unwrap();
            assert_eq!(bytes, hex(want), "{ty}");
            assert_eq!(
                decode(&bytes, &ty).unwrap(),
                refined(everything.applicable_to(&ty)),
                "{ty}"
            );
        }
        // Refinements that say nothing leave the compact unrefined form.
        let nothing = Refinements {
            string_prefix: Some(String::new()),
            number_lower: Some((Number::parse("-inf").unwrap(), true)),
            number_upper: Some((Number::parse("inf").unwrap(), true)),
            length_lower: Some(0),
            ..Refinements::default()
        };
        for ty in [
            Type::String,
            Type::Number,
            Type::list(Type::Bool),
            Type::Bool,
        ] {
            assert_eq!(
                encode(&refined(nothing.clone()), &ty).unwrap(),
                hex("d4 00 00")
            );
        }
    }

    #[test]
    fn long_string_prefixes_are_truncated_on_a_char_boundary() {
        let prefix = "é".repeat(200);
        let value = refined(Refinements {
            string_prefix: Some(prefix.clone()),
            ..Refinements::default()
        });
        let bytes = encode(&value, &Type::String).unwrap();
        let Value::Unknown(r) = decode(&bytes, &Type::String).unwrap() else {
            panic!("not unknown");
        };
        let got = r.string_prefix.unwrap();
        assert_eq!(got.len(), 254);
        assert!(prefix.starts_with(&got));
    }

    #[test]
    fn malformed_input_is_an_error() {
        let obj_ab = Type::object([("a", Type::Number), ("b", Type::String)]);
        let mut big_ext = hex("c9 00 00 04 01 0c 81 02 da 03 fd");
        big_ext.extend(std::iter::repeat_n(b'a', 0x3fd));
        let cases: Vec<(&str, Vec<u8>, Type, &str)> = vec![
            ("empty", vec![], Type::String, "unexpected end of input"),
            (
                "truncated str",
                hex("a5 68"),
                Type::String,
                "unexpected end of input",
            ),
            (
                "truncated float",
                hex("cb 00"),
                Type::Number,
                "unexpected end of input",
            ),
            (
                "truncated array",
                hex("92 01"),
                Type::list(Type::Number),
                "exceeds",
            ),
            ("trailing", hex("c3 c3"), Type::Bool, "trailing bytes"),
            ("reserved", hex("c1"), Type::Bool, "reserved"),
            (
                "wrong type",
                hex("a1 78"),
                Type::Bool,
                "bool required, got msgpack str",
            ),
            ("bad utf-8", hex("a2 c3 28"), Type::String, "utf-8"),
            (
                "nan",
                hex("cb 7f f8 00 00 00 00 00 00"),
                Type::Number,
                "nan",
            ),
            (
                "bad number text",
                hex("a3 61 62 63"),
                Type::Number,
                "number required",
            ),
            (
                "object missing",
                hex("81 a1 61 01"),
                obj_ab.clone(),
                "attribute \"b\" is required",
            ),
            (
                "object extra",
                hex("83 a1 61 01 a1 62 a1 78 a1 63 c0"),
                obj_ab.clone(),
                "unsupported attribute \"c\"",
            ),
            (
                "object duplicate",
                hex("82 a1 61 01 a1 61 02"),
                obj_ab.clone(),
                "duplicate attribute",
            ),
            (
                "map duplicate",
                hex("82 a1 61 01 a1 61 02"),
                Type::map(Type::Number),
                "duplicate",
            ),
            (
                "map int key",
                hex("81 01 01"),
                Type::map(Type::Number),
                "map key must be a string",
            ),
            (
                "tuple too short",
                hex("91 a1 78"),
                Type::Tuple(vec![Type::String, Type::Bool]),
                "tuple of 2 elements required, got 1",
            ),
            (
                "tuple too long",
                hex("93 a1 78 c3 c3"),
                Type::Tuple(vec![Type::String, Type::Bool]),
                "tuple of 2 elements required, got 3",
            ),
            (
                "dynamic 1 element",
                hex("91 c0"),
                Type::Dynamic,
                "[type, value]",
            ),
            (
                "dynamic plain",
                hex("a1 78"),
                Type::Dynamic,
                "dynamic required",
            ),
            (
                "dynamic bad type",
                hex("92 c4 01 31 c0"),
                Type::Dynamic,
                "dynamic value type",
            ),
            (
                "dynamic int type",
                hex("92 01 c0"),
                Type::Dynamic,
                "must be bin",
            ),
            (
                "ext code not 12",
                hex("d5 00 00 00"),
                Type::String,
                "unsupported extension type 0",
            ),
            (
                "refinements not a map",
                hex("d5 0c 91 c2"),
                Type::String,
                "must be a map",
            ),
            (
                "refinement key",
                hex("c7 03 0c 81 a0 c2"),
                Type::String,
                "key must be an integer",
            ),
            (
                "nullness not bool",
                hex("c7 03 0c 81 01 01"),
                Type::String,
                "must be a bool",
            ),
            (
                "prefix not str",
                hex("c7 03 0c 81 02 01"),
                Type::String,
                "must be a str",
            ),
            (
                "prefix on number",
                hex("d6 0c 81 02 a1 61"),
                Type::Number,
                "string prefix",
            ),
            (
                "bound on string",
                hex("c7 05 0c 81 03 92 01 c3"),
                Type::String,
                "number bound",
            ),
            (
                "length on object",
                hex("c7 03 0c 81 05 01"),
                Type::object([("a", Type::Bool)]),
                "length bound",
            ),
            (
                "bound shape",
                hex("c7 04 0c 81 03 91 01"),
                Type::Number,
                "[number, bool]",
            ),
            (
                "bound nil",
                hex("c7 05 0c 81 03 92 c0 c3"),
                Type::Number,
                "[number, bool]",
            ),
            (
                "negative length",
                hex("c7 03 0c 81 05 ff"),
                Type::list(Type::Bool),
                "negative",
            ),
            (
                "truncated refinements",
                hex("c7 03 0c 82 01 c2"),
                Type::String,
                "exceeds",
            ),
            (
                "truncated bound",
                hex("c7 05 0c 81 03 92 cb 00"),
                Type::Number,
                "unexpected end",
            ),
            ("oversized refinements", big_ext, Type::String, "too large"),
        ];
        for (name, bytes, ty, want) in cases {
            let err = decode(&bytes, &ty).unwrap_err();
            assert!(
                err.to_string().contains(want),
                "{name}: {err} does not mention {want:?}"
            );
        }
    }

    #[test]
    fn errors_name_the_path_and_offset() {
        let ty = Type::object([(
            "data_disks",
            Type::list(Type::object([("disk_count", Type::Number)])),
        )]);
        let bytes =
            hex("81 aa 64 61 74 61 5f 64 69 73 6b 73 91 81 aa 64 69 73 6b 5f 63 6f 75 6e 74 c3");
        let err = decode(&bytes, &ty).unwrap_err();
        assert_eq!(err.path(), ".data_disks[0].disk_count");
        assert_eq!(
            err.to_string(),
            "invalid msgpack at byte 25 at .data_disks[0].disk_count: number required, got msgpack bool"
        );
        let value = obj([(
            "data_disks",
            Value::List(vec![obj([("disk_count", Value::string("x"))])]),
        )]);
        assert_eq!(
            encode(&value, &ty).unwrap_err().to_string(),
            "at .data_disks[0].disk_count: number required, got string"
        );
    }

    #[test]
    fn encoding_rejects_values_that_do_not_fit_the_type() {
        let cases = [
            (
                Value::string("x"),
                Type::Dynamic,
                "must be wrapped in Value::Dynamic",
            ),
            (
                Value::Dynamic(Type::String, Box::new(Value::string("x"))),
                Type::String,
                "string required, got dynamically-typed value",
            ),
            (
                Value::number(1),
                Type::String,
                "string required, got number",
            ),
            (
                Value::Tuple(vec![Value::bool(true)]),
                Type::Tuple(vec![Type::Bool, Type::Bool]),
                "tuple of 2 elements required, got 1",
            ),
            (
                obj([("a", Value::bool(true))]),
                Type::object([("a", Type::Bool), ("b", Type::Bool)]),
                "attribute \"b\" is required",
            ),
            (
                obj([("a", Value::bool(true)), ("z", Value::Null)]),
                Type::object([("a", Type::Bool)]),
                "unsupported attribute \"z\"",
            ),
            (
                Value::List(vec![]),
                Type::set(Type::Bool),
                "set required, got list",
            ),
        ];
        for (value, ty, want) in cases {
            let err = encode(&value, &ty).unwrap_err();
            assert!(
                err.to_string().contains(want),
                "{err} does not mention {want:?}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // Each level is a dynamic value whose type is again dynamic.
        let level = hex("92 c4 09 22 64 79 6e 61 6d 69 63 22");
        let bomb: Vec<u8> = level
            .iter()
            .copied()
            .cycle()
            .take(level.len() * 100_000)
            .collect();
        let err = decode(&bomb, &Type::Dynamic).unwrap_err();
        assert!(err.to_string().contains("nested too deeply"), "{err}");

        let mut deep = Type::String;
        for _ in 0..300 {
            deep = Type::list(deep);
        }
        let err = decode(&vec![0x91; 100_000], &deep).unwrap_err();
        assert!(err.to_string().contains("nested too deeply"), "{err}");
        assert!(decode(&vec![0x91; 100_000], &Type::Dynamic).is_err());
        assert!(decode(&vec![0x91; 100_000], &Type::list(Type::String)).is_err());

        // Skipped refinement data is walked without recursion.
        let mut payload = vec![0x81, 0x09];
        payload.extend(std::iter::repeat_n(0x91, 1000));
        payload.push(0xc0);
        let mut bytes = vec![0xc9];
        bytes.extend(u32::try_from(payload.len()).unwrap().to_be_bytes());
        bytes.push(0x0c);
        bytes.extend(&payload);
        assert_eq!(decode(&bytes, &Type::String).unwrap(), Value::unknown());
    }

    #[test]
    fn huge_declared_lengths_fail_fast() {
        let start = std::time::Instant::now();
        for (bytes, ty) in [
            (hex("dd ff ff ff ff"), Type::list(Type::String)),
            (hex("dd ff ff ff ff"), Type::Dynamic),
            (hex("df ff ff ff ff"), Type::map(Type::String)),
            (hex("df ff ff ff ff"), Type::object([("a", Type::Bool)])),
            (hex("db ff ff ff ff"), Type::String),
            (hex("c6 ff ff ff ff"), Type::String),
            (hex("c9 ff ff ff ff 0c"), Type::String),
            (hex("dc ff ff c0"), Type::set(Type::Bool)),
        ] {
            assert!(decode(&bytes, &ty).is_err(), "{bytes:02x?}");
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }
}
