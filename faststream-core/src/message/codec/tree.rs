//! An owned serde value tree, for format libraries that deserialize only into a type of
//! their choosing (ciborium, apache-avro keep their deserializers private): the library
//! builds a [`Tree`], and the handler's type is deserialized from it.

use serde::de::value::{MapAccessDeserializer, MapDeserializer, SeqDeserializer};
use serde::de::{self, IntoDeserializer, Visitor};
use std::fmt;

/// A self-describing value, as a format's deserializer visited it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tree {
    Unit,
    Bool(bool),
    I64(i64),
    U64(u64),
    I128(i128),
    U128(u128),
    F64(f64),
    String(String),
    Bytes(Vec<u8>),
    Some(Box<Tree>),
    Seq(Vec<Tree>),
    Map(Vec<(Tree, Tree)>),
}

impl<'de> de::Deserialize<'de> for Tree {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Tree, E> {
        Ok(Tree::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Tree, E> {
        Ok(Tree::I64(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Tree, E> {
        Ok(Tree::U64(v))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Tree, E> {
        Ok(Tree::I128(v))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Tree, E> {
        Ok(Tree::U128(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Tree, E> {
        Ok(Tree::F64(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Tree, E> {
        Ok(Tree::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Tree, E> {
        Ok(Tree::String(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Tree, E> {
        Ok(Tree::Bytes(v.to_vec()))
    }
    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Tree, E> {
        Ok(Tree::Bytes(v))
    }
    fn visit_none<E>(self) -> Result<Tree, E> {
        Ok(Tree::Unit)
    }
    fn visit_unit<E>(self) -> Result<Tree, E> {
        Ok(Tree::Unit)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Tree, D::Error> {
        Ok(Tree::Some(Box::new(
            <Tree as de::Deserialize>::deserialize(d)?,
        )))
    }
    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<Tree, D::Error> {
        <Tree as de::Deserialize>::deserialize(d)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Tree::Seq(items))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Tree::Map(entries))
    }
}

impl<'de> IntoDeserializer<'de, de::value::Error> for Tree {
    type Deserializer = Tree;

    fn into_deserializer(self) -> Tree {
        self
    }
}

impl<'de> de::Deserializer<'de> for Tree {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self {
            Tree::Unit => visitor.visit_unit(),
            Tree::Bool(v) => visitor.visit_bool(v),
            Tree::I64(v) => visitor.visit_i64(v),
            Tree::U64(v) => visitor.visit_u64(v),
            Tree::I128(v) => visitor.visit_i128(v),
            Tree::U128(v) => visitor.visit_u128(v),
            Tree::F64(v) => visitor.visit_f64(v),
            Tree::String(v) => visitor.visit_string(v),
            Tree::Bytes(v) => visitor.visit_byte_buf(v),
            Tree::Some(v) => visitor.visit_some(*v),
            Tree::Seq(items) => {
                let mut seq = SeqDeserializer::new(items.into_iter());
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Tree::Map(entries) => {
                let mut map = MapDeserializer::new(entries.into_iter());
                let value = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(value)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self {
            Tree::Unit => visitor.visit_none(),
            Tree::Some(v) => visitor.visit_some(*v),
            other => visitor.visit_some(other),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    /// A unit variant is its name; a variant with data is a map of one entry.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self {
            Tree::String(variant) => visitor.visit_enum(variant.into_deserializer()),
            Tree::Map(entries) if entries.len() == 1 => {
                MapAccessDeserializer::new(MapDeserializer::new(entries.into_iter()))
                    .deserialize_enum(name, variants, visitor)
            }
            other => Err(de::Error::custom(format_args!(
                "expected an enum variant (a name, or a map of one entry), found {other:?}"
            ))),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    enum Kind {
        Plain,
        Tagged(u8),
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Doc {
        name: String,
        tags: Vec<String>,
        nick: Option<String>,
        kinds: Vec<Kind>,
    }

    #[test]
    fn a_tree_deserializes_structs_options_and_enums() {
        let text = |s: &str| Tree::String(s.into());
        let tree = Tree::Map(vec![
            (text("name"), text("Ann")),
            (text("tags"), Tree::Seq(vec![text("a")])),
            (text("nick"), Tree::Unit),
            (
                text("kinds"),
                Tree::Seq(vec![
                    text("Plain"),
                    Tree::Map(vec![(text("Tagged"), Tree::U64(3))]),
                ]),
            ),
        ]);
        let doc = Doc::deserialize(tree).unwrap();
        assert_eq!(
            doc,
            Doc {
                name: "Ann".into(),
                tags: vec!["a".into()],
                nick: None,
                kinds: vec![Kind::Plain, Kind::Tagged(3)],
            }
        );
        let err = Doc::deserialize(Tree::Map(vec![(text("name"), Tree::U64(1))])).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
    }
}
