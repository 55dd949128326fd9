//! `json_extract_string(json, '$.path')`: a field of a JSON text as a string, with DuckDB's
//! name and meaning, so the same SQL runs in Flywheel and in DuckDB over the lake.
//!
//! Paths: `$`, then `.name` (or `."quoted name"`) and `[index]` steps. A string value comes
//! back unescaped, any other value as its JSON text, a missing path or invalid JSON as NULL.
//! The document is walked without building a tree: values off the path are skipped.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use datafusion::common::cast::{as_large_string_array, as_string_array, as_string_view_array};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Parses `$.a.b[0]."c d"`.
fn parse_path(path: &str) -> std::result::Result<Vec<Step>, String> {
    let rest = path
        .strip_prefix('$')
        .ok_or_else(|| format!("JSON path '{path}' must start with '$'"))?;
    let mut steps = Vec::new();
    let mut chars = rest.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        match c {
            '.' => {
                if chars.peek().map(|(_, c)| *c) == Some('"') {
                    chars.next();
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '"')) => break,
                            Some((_, c)) => name.push(c),
                            None => return Err(format!("unclosed quote in JSON path '{path}'")),
                        }
                    }
                    steps.push(Step::Key(name));
                } else {
                    let mut name = String::new();
                    while let Some((_, c)) = chars.peek() {
                        if *c == '.' || *c == '[' {
                            break;
                        }
                        name.push(*c);
                        chars.next();
                    }
                    if name.is_empty() {
                        return Err(format!("empty key in JSON path '{path}'"));
                    }
                    steps.push(Step::Key(name));
                }
            }
            '[' => {
                let mut digits = String::new();
                loop {
                    match chars.next() {
                        Some((_, ']')) => break,
                        Some((_, c)) => digits.push(c),
                        None => return Err(format!("unclosed '[' in JSON path '{path}'")),
                    }
                }
                let index = digits.trim().parse().map_err(|_| {
                    format!("'[{digits}]' in JSON path '{path}' is not an array index")
                })?;
                steps.push(Step::Index(index));
            }
            other => {
                return Err(format!(
                "unexpected '{other}' in JSON path '{path}'; write $.key, $.key.inner or $.list[0]"
            ))
            }
        }
    }
    Ok(steps)
}

/// Walks `steps` through the document being deserialised; yields the value found, if any.
struct Walk<'p> {
    steps: &'p [Step],
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        match self.steps.first() {
            None => {
                let raw: &'de RawValue = serde::Deserialize::deserialize(deserializer)?;
                Ok(leaf_text(raw.get()))
            }
            Some(_) => deserializer.deserialize_any(self),
        }
    }
}

/// A string unescaped; any other value as its JSON text; `null` as NULL.
fn leaf_text(raw: &str) -> Option<Cow<'_, str>> {
    if raw.starts_with('"') {
        if !raw.contains('\\') {
            return Some(Cow::Borrowed(&raw[1..raw.len() - 1]));
        }
        return serde_json::from_str::<String>(raw).ok().map(Cow::Owned);
    }
    if raw == "null" {
        return None;
    }
    Some(Cow::Borrowed(raw))
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        let mut matched = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let wanted = matches!(self.steps.first(), Some(Step::Key(name)) if *name == key);
            if wanted && !matched {
                matched = true;
                found = map.next_value_seed(Walk {
                    steps: &self.steps[1..],
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        let mut position = 0usize;
        let wanted = match self.steps.first() {
            Some(Step::Index(index)) => Some(*index),
            _ => None,
        };
        loop {
            if Some(position) == wanted {
                match seq.next_element_seed(Walk {
                    steps: &self.steps[1..],
                })? {
                    Some(value) => found = value,
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            position += 1;
        }
        Ok(found)
    }

    // Scalars where the path wants to go deeper: nothing there.
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// The value at `steps` in `json`, or `None` (missing, or the text is not JSON).
fn extract<'a>(json: &'a str, steps: &[Step]) -> Option<Cow<'a, str>> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let value = Walk { steps }.deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    value
}

/// The scalar function.
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonExtractString {
    signature: Signature,
}

/// `json_extract_string`, ready to register.
pub(crate) fn json_extract_string() -> ScalarUDF {
    let text = [DataType::Utf8, DataType::Utf8View, DataType::LargeUtf8];
    let mut variants = Vec::new();
    for json in &text {
        for path in &text {
            variants.push(TypeSignature::Exact(vec![json.clone(), path.clone()]));
        }
    }
    ScalarUDF::new_from_impl(JsonExtractString {
        signature: Signature::one_of(variants, Volatility::Immutable),
    })
}

impl ScalarUDFImpl for JsonExtractString {
    fn name(&self) -> &str {
        "json_extract_string"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [json, path] = args.args.as_slice() else {
            return plan_err!("json_extract_string takes two arguments: a JSON text and a path");
        };
        let path = match path {
            ColumnarValue::Scalar(scalar) => match scalar.try_as_str() {
                Some(Some(path)) => path.to_owned(),
                Some(None) => return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None))),
                None => return exec_err!("json_extract_string: the path must be text"),
            },
            ColumnarValue::Array(_) => {
                return exec_err!(
                    "json_extract_string: the path must be a constant such as '$.metadata.os'"
                )
            }
        };
        let steps = match parse_path(&path) {
            Ok(steps) => steps,
            Err(problem) => return exec_err!("json_extract_string: {problem}"),
        };
        match json {
            ColumnarValue::Scalar(scalar) => {
                let value = match scalar.try_as_str() {
                    Some(Some(text)) => extract(text, &steps).map(Cow::into_owned),
                    Some(None) => None,
                    None => return exec_err!("json_extract_string: the document must be text"),
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(value)))
            }
            ColumnarValue::Array(array) => Ok(ColumnarValue::Array(extract_array(array, &steps)?)),
        }
    }
}

fn extract_array(array: &ArrayRef, steps: &[Step]) -> Result<ArrayRef> {
    let mut builder = StringBuilder::with_capacity(array.len(), array.len() * 8);
    let mut push = |value: Option<&str>| {
        builder.append_option(value.and_then(|json| extract(json, steps)));
    };
    match array.data_type() {
        DataType::Utf8View => as_string_view_array(array)?.iter().for_each(&mut push),
        DataType::Utf8 => as_string_array(array)?.iter().for_each(&mut push),
        DataType::LargeUtf8 => as_large_string_array(array)?.iter().for_each(&mut push),
        other => return exec_err!("json_extract_string: the document must be text, not {other}"),
    }
    Ok(Arc::new(builder.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(json: &str, path: &str) -> Option<String> {
        let steps = parse_path(path).ok()?;
        extract(json, &steps).map(Cow::into_owned)
    }

    #[test]
    fn strings_come_back_unescaped_and_other_values_as_json() {
        let doc = r#"{"a":{"b":"x\"y","n":4.5,"t":true,"o":{"k":[1,2]},"z":null},"l":[{"v":"first"},{"v":"second"}]}"#;
        assert_eq!(get(doc, "$.a.b").as_deref(), Some("x\"y"));
        assert_eq!(get(doc, "$.a.n").as_deref(), Some("4.5"));
        assert_eq!(get(doc, "$.a.t").as_deref(), Some("true"));
        assert_eq!(get(doc, "$.a.o").as_deref(), Some(r#"{"k":[1,2]}"#));
        assert_eq!(get(doc, "$.l[1].v").as_deref(), Some("second"));
        assert_eq!(get(doc, "$.a.z"), None);
        assert_eq!(get(doc, "$.a.missing"), None);
        assert_eq!(get(doc, "$.a.b.deeper"), None);
        assert_eq!(get(doc, "$.l[7].v"), None);
        assert_eq!(get("not json", "$.a"), None);
        assert_eq!(get(r#"{"a":1} trailing"#, "$.a"), None);
    }

    #[test]
    fn quoted_keys_and_bad_paths() {
        assert_eq!(
            get(r#"{"a b":{"c":"d"}}"#, r#"$."a b".c"#).as_deref(),
            Some("d")
        );
        assert!(parse_path("a.b").is_err());
        assert!(parse_path("$.").is_err());
        assert!(parse_path("$[x]").is_err());
        assert!(parse_path("$.a[1").is_err());
    }

    #[test]
    fn the_first_of_duplicate_keys_wins() {
        assert_eq!(
            get(r#"{"a":"one","a":"two"}"#, "$.a").as_deref(),
            Some("one")
        );
    }
}
