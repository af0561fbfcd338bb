//! Field types for typed decoding that read like `serde_json::Value` lookups: a field of
//! the wrong JSON type reads as absent instead of failing the whole document, so a decoder
//! written with `#[derive(Deserialize)]` structs accepts exactly what one walking a `Value`
//! with `get(..).and_then(Value::as_str)` accepted, without building the `Value` tree.
//! Strings borrow from the input when they have no escapes. Unknown fields are skipped
//! without allocating (serde's default for structs).
//!
//! - [`Str`]: a string, else absent (`as_str`).
//! - [`U64`]: a non-negative integer, else absent (`as_u64`).
//! - [`Obj<T>`]: a JSON object decoded as `T`, else absent (`as_object`).
//! - [`First<T>`]: the first element of an array when it is an object, else absent
//!   (`pointer("/x/0")`).
//! - [`Many<T>`]: each element of an array, `Some` where it is an object; empty for any
//!   other JSON value (`as_array().into_iter().flatten()`).
//! - [`Arr<T>`]: the same, but `None` (not empty) for a value that is not an array
//!   (`as_array()`).
//! - [`F64`] (`as_f64`), [`Bool`] (`as_bool`).
//! - [`present`]: for `Option<Value>` fields, `Some(Value::Null)` for an explicit `null`
//!   (`get(..).cloned()`).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// Visitor methods reading the named JSON types as absent (`Default::default()`); the
/// containers are consumed without being decoded.
macro_rules! absent {
    (numbers) => {
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
    (strings) => {
        fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
    (others) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
    (seq) => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Default::default())
        }
    };
    (map) => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Default::default())
        }
    };
}

/// A JSON string, borrowed when it had no escapes; `None` for any other JSON value.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Str<'a>(pub Option<Cow<'a, str>>);

impl<'a> Str<'a> {
    /// The string, or `""` when absent.
    pub fn as_str(&self) -> &str {
        self.0.as_deref().unwrap_or_default()
    }

    /// The string when present and not empty.
    pub fn non_empty(&self) -> Option<&str> {
        self.0.as_deref().filter(|s| !s.is_empty())
    }

    /// The string, owned (`""` when absent).
    pub fn to_owned_string(&self) -> String {
        self.as_str().to_owned()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Some(Cow::Borrowed(s))))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Str(Some(Cow::Owned(s.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Str(Some(Cow::Owned(s))))
            }
            absent!(numbers);
            absent!(others);
            absent!(seq);
            absent!(map);
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A JSON number that is a non-negative integer; `None` for any other JSON value.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct U64(pub Option<u64>);

impl U64 {
    pub fn or_zero(self) -> u64 {
        self.0.unwrap_or(0)
    }
}

impl<'de> Deserialize<'de> for U64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = U64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                Ok(U64(Some(n)))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                Ok(U64(u64::try_from(n).ok()))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(U64(None))
            }
            absent!(strings);
            absent!(others);
            absent!(seq);
            absent!(map);
        }
        d.deserialize_any(V)
    }
}

/// A JSON object decoded as `T`; `None` for any other JSON value (`null` included).
#[derive(Debug, Clone, PartialEq)]
pub struct Obj<T>(pub Option<T>);

impl<T> Default for Obj<T> {
    fn default() -> Self {
        Obj(None)
    }
}

impl<T> Obj<T> {
    pub fn as_ref(&self) -> Option<&T> {
        self.0.as_ref()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|t| Obj(Some(t)))
            }
            absent!(numbers);
            absent!(strings);
            absent!(others);
            absent!(seq);
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// The first element of a JSON array, when it is an object decoded as `T`; `None` for an
/// empty array, a first element of another type, or any other JSON value. Later elements are
/// skipped without being decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct First<T>(pub Option<T>);

impl<T> Default for First<T> {
    fn default() -> Self {
        First(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for First<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = First<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let first = seq.next_element::<Obj<T>>()?.and_then(|o| o.0);
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(First(first))
            }
            absent!(numbers);
            absent!(strings);
            absent!(others);
            absent!(map);
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// Each element of a JSON array, decoded as `T` where it is an object and `None` where it is
/// not; empty for any other JSON value.
#[derive(Debug, Clone, PartialEq)]
pub struct Many<T>(pub Vec<Option<T>>);

impl<T> Default for Many<T> {
    fn default() -> Self {
        Many(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Many<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Arr::deserialize(d).map(|a| Many(a.0.unwrap_or_default()))
    }
}

/// Each element of a JSON array as in [`Many`]; `None` for any other JSON value.
#[derive(Debug, Clone, PartialEq)]
pub struct Arr<T>(pub Option<Vec<Option<T>>>);

impl<T> Default for Arr<T> {
    fn default() -> Self {
        Arr(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Arr<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Arr<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut all = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(o) = seq.next_element::<Obj<T>>()? {
                    all.push(o.0);
                }
                Ok(Arr(Some(all)))
            }
            absent!(numbers);
            absent!(strings);
            absent!(others);
            absent!(map);
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A JSON number as `f64`; `None` for any other JSON value.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct F64(pub Option<f64>);

impl<'de> Deserialize<'de> for F64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = F64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                Ok(F64(Some(n as f64)))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                Ok(F64(Some(n as f64)))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
                Ok(F64(Some(n)))
            }
            absent!(strings);
            absent!(others);
            absent!(seq);
            absent!(map);
        }
        d.deserialize_any(V)
    }
}

/// A JSON boolean; `None` for any other JSON value.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Bool(pub Option<bool>);

impl<'de> Deserialize<'de> for Bool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Bool;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
                Ok(Bool(Some(b)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Bool(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Bool(None))
            }
            absent!(numbers);
            absent!(strings);
            absent!(seq);
            absent!(map);
        }
        d.deserialize_any(V)
    }
}

/// `#[serde(default, deserialize_with = "present")]` on an `Option<Value>`: any value that is
/// there, `null` included, is `Some` (an absent field stays `None` through `default`).
pub fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

#[cfg(test)]
#[path = "lenient_tests.rs"]
mod tests;
