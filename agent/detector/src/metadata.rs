//! What a model says about itself: the Ultralytics custom metadata keys (`names`,
//! `imgsz`, `stride`, `channels`, `task`, `end2end`) and our own (`name` or
//! `chitti_model`, `version`),
//! read from the ONNX file's `metadata_props`. Classic YOLOv5 exports carry `names` and
//! `stride`; Ultralytics (YOLOv5u, YOLOv8, YOLO11, YOLO26) exports carry them all.

use std::collections::BTreeMap;

/// The metadata keys the runtime understands, parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelMetadata {
    /// Class names by index (`names`), when the model has them.
    pub names: Option<ClassNames>,
    /// Training input size `(height, width)` (`imgsz`).
    pub imgsz: Option<(u32, u32)>,
    /// Largest stride of the network (`stride`): a dynamic input must be a multiple.
    pub stride: Option<u32>,
    /// Input channels (`channels`).
    pub channels: Option<u32>,
    /// Task (`task`): only `detect` is a detector.
    pub task: Option<String>,
    /// True when NMS is inside the model (`end2end`).
    pub end2end: Option<bool>,
    /// Model name (`name`, else `chitti_model`, the key our training exports write).
    pub name: Option<String>,
    /// Model version (`version`).
    pub version: Option<String>,
}

impl ModelMetadata {
    /// Parses the custom keys; a key that is present but malformed is an error naming
    /// it (a model whose metadata lies should not be guessed at).
    pub fn parse(custom: &BTreeMap<String, String>) -> Result<Self, String> {
        let get = |k: &str| custom.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let names = get("names")
            .map(|v| parse_names(v).map_err(|e| format!("metadata `names` {v:?}: {e}")))
            .transpose()?;
        let imgsz = get("imgsz")
            .map(|v| parse_imgsz(v).ok_or_else(|| format!("metadata `imgsz` {v:?} is not [h, w]")))
            .transpose()?;
        let int = |k: &str| -> Result<Option<u32>, String> {
            get(k)
                .map(|v| {
                    parse_int_list(v)
                        .and_then(|l| l.into_iter().max())
                        .filter(|&n| n > 0)
                        .ok_or_else(|| format!("metadata `{k}` {v:?} is not a positive integer"))
                })
                .transpose()
        };
        let end2end = get("end2end")
            .map(|v| match v.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(format!("metadata `end2end` {v:?} is not True or False")),
            })
            .transpose()?;
        Ok(Self {
            names,
            imgsz,
            stride: int("stride")?,
            channels: int("channels")?,
            task: get("task").map(str::to_string),
            end2end,
            name: get("name").or(get("chitti_model")).map(str::to_string),
            version: get("version").map(str::to_string),
        })
    }
}

/// Class names by index; indices the model has no name for read `class<i>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassNames(BTreeMap<usize, String>);

impl ClassNames {
    /// Names from `(index, name)` pairs.
    pub fn new(names: impl IntoIterator<Item = (usize, String)>) -> Self {
        Self(names.into_iter().collect())
    }

    /// The names in index order (indexes without a name are skipped).
    pub fn in_order(&self) -> Vec<String> {
        self.0.values().cloned().collect()
    }

    /// How many classes the names describe: the highest index + 1.
    pub fn count(&self) -> usize {
        self.0.keys().next_back().map_or(0, |&i| i + 1)
    }

    /// The name of class `index`.
    pub fn name(&self, index: usize) -> String {
        self.0
            .get(&index)
            .cloned()
            .unwrap_or_else(|| format!("class{index}"))
    }
}

/// Parses a Python literal of class names: a dict `{0: 'bushing', 1: "clamp"}` (what
/// Ultralytics writes) or a list `['bushing', 'clamp']` (some YOLOv5 versions).
pub fn parse_names(text: &str) -> Result<ClassNames, String> {
    let mut p = Literal {
        chars: text.chars().collect(),
        at: 0,
    };
    p.skip_ws();
    let (open, close, dict) = match p.next() {
        Some('{') => ('{', '}', true),
        Some('[') => ('[', ']', false),
        _ => return Err("expected a {index: name} dict or a [name] list".into()),
    };
    let _ = open;
    let mut names = BTreeMap::new();
    let mut position = 0usize;
    loop {
        p.skip_ws();
        if p.peek() == Some(close) {
            p.next();
            break;
        }
        let index = if dict {
            let index = p.integer()?;
            p.skip_ws();
            if p.next() != Some(':') {
                return Err(format!("expected ':' after {index}"));
            }
            p.skip_ws();
            index
        } else {
            position
        };
        let name = p.string()?;
        if names.insert(index, name).is_some() {
            return Err(format!("class {index} is named twice"));
        }
        position += 1;
        p.skip_ws();
        match p.next() {
            Some(',') => continue,
            Some(c) if c == close => break,
            other => return Err(format!("expected ',' or '{close}', found {other:?}")),
        }
    }
    p.skip_ws();
    if p.peek().is_some() {
        return Err("text after the closing bracket".into());
    }
    if names.len() > 100_000 {
        return Err("more than 100000 classes".into());
    }
    Ok(ClassNames(names))
}

struct Literal {
    chars: Vec<char>,
    at: usize,
}

impl Literal {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.at += usize::from(c.is_some());
        c
    }
    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }
    fn integer(&mut self) -> Result<usize, String> {
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.at += 1;
        }
        let digits: String = self.chars[start..self.at].iter().collect();
        digits
            .parse()
            .map_err(|_| format!("expected a class index at character {start}"))
    }
    fn string(&mut self) -> Result<String, String> {
        let quote = match self.next() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err(format!("expected a quoted name at character {}", self.at)),
        };
        let mut out = String::new();
        loop {
            match self.next() {
                None => return Err("unterminated name".into()),
                Some(c) if c == quote => return Ok(out),
                Some('\\') => match self.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(c) => out.push(c),
                    None => return Err("unterminated name".into()),
                },
                Some(c) => out.push(c),
            }
        }
    }
}

/// The integers of `640`, `[256, 320]` or `(256, 320)`.
fn parse_int_list(text: &str) -> Option<Vec<u32>> {
    let inner = text
        .trim()
        .trim_start_matches(['[', '('])
        .trim_end_matches([']', ')']);
    inner
        .split(',')
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().ok())
        .collect()
}

/// `imgsz` as `(height, width)`: `640` is square, `[h, w]` is Ultralytics' order.
fn parse_imgsz(text: &str) -> Option<(u32, u32)> {
    match parse_int_list(text)?.as_slice() {
        [s] if *s > 0 => Some((*s, *s)),
        [h, w] if *h > 0 && *w > 0 => Some((*h, *w)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn ultralytics_names_dict_parses_with_both_quote_styles_and_escapes() {
        let names =
            parse_names(r#"{0: 'bushing', 1: "clamp", 2: 'ct\'s pt', 5: 'breaker'}"#).unwrap();
        assert_eq!(names.count(), 6);
        assert_eq!(names.name(0), "bushing");
        assert_eq!(names.name(1), "clamp");
        assert_eq!(names.name(2), "ct's pt");
        assert_eq!(names.name(3), "class3", "an index without a name");
        assert_eq!(names.name(5), "breaker");
    }

    #[test]
    fn a_names_list_is_indexed_by_position() {
        let names = parse_names("['a', 'b',]").unwrap();
        assert_eq!((names.count(), names.name(1)), (2, "b".to_string()));
        assert_eq!(parse_names("{}").unwrap().count(), 0);
    }

    #[test]
    fn malformed_names_say_what_is_wrong() {
        for (text, why) in [
            ("bushing", "expected a {index: name}"),
            ("{0 'a'}", "expected ':'"),
            ("{0: a}", "expected a quoted name"),
            ("{0: 'a'", "expected ',' or '}'"),
            ("{0: 'a', 0: 'b'}", "named twice"),
            ("{0: 'a'} x", "text after"),
            ("{x: 'a'}", "expected a class index"),
        ] {
            let err = parse_names(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn metadata_keys_parse_and_bad_values_are_named() {
        let m = ModelMetadata::parse(&custom(&[
            ("names", "{0: 'bushing'}"),
            ("imgsz", "[256, 320]"),
            ("stride", "32"),
            ("channels", "1"),
            ("task", "detect"),
            ("end2end", "False"),
            ("name", "chitti-components"),
            ("version", "1.0.0"),
        ]))
        .unwrap();
        assert_eq!(m.imgsz, Some((256, 320)));
        assert_eq!((m.stride, m.channels), (Some(32), Some(1)));
        assert_eq!(m.end2end, Some(false));
        assert_eq!(m.names.unwrap().name(0), "bushing");
        assert_eq!(m.version.as_deref(), Some("1.0.0"));
        assert_eq!(m.name.as_deref(), Some("chitti-components"));
        let ours = ModelMetadata::parse(&custom(&[("chitti_model", "chitti-components")]));
        assert_eq!(ours.unwrap().name.as_deref(), Some("chitti-components"));

        let square = ModelMetadata::parse(&custom(&[("imgsz", "640"), ("stride", "[8, 16, 32]")]));
        let square = square.unwrap();
        assert_eq!((square.imgsz, square.stride), (Some((640, 640)), Some(32)));
        assert!(ModelMetadata::parse(&custom(&[])).unwrap().names.is_none());

        for (key, value) in [
            ("imgsz", "big"),
            ("stride", "-1"),
            ("end2end", "maybe"),
            ("names", "nope"),
        ] {
            let err = ModelMetadata::parse(&custom(&[(key, value)])).unwrap_err();
            assert!(err.contains(&format!("`{key}`")), "{err}");
        }
    }
}
