//! Wan2.1's prompt tokenizer (umt5-xxl's T5 tokenizer read from `tokenizer.json`) and the
//! pipeline's prompt cleaning.
//!
//! transformers 5 does not run a T5 `tokenizer.json` as written: `T5Tokenizer` keeps its
//! Unigram vocabulary, its added tokens and the SentencePiece precompiled normalizer, and
//! rebuilds the rest (Unigram with `unk_id` 2 and no byte fallback, no other normalizer,
//! `WhitespaceSplit` + `Metaspace("▁", always)` pre-tokenizer, `$A </s>` template).
//! [`WanTokenizer::from_file`] applies the same rebuild, so the ids match the pipeline's.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    PaddingDirection, PaddingParams, PaddingStrategy, PostProcessor, Tokenizer,
    TruncationDirection, TruncationParams, TruncationStrategy, pad_encodings, truncate_encodings,
};

/// Errors from loading the tokenizer or tokenizing prompts; each names the tokenizer file.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot read tokenizer file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse tokenizer file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("tokenizer file {path} is not a usable T5 tokenizer: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    #[error("tokenizer {path} failed: {source}")]
    Tokenizers {
        path: PathBuf,
        source: tokenizers::Error,
    },
}

/// The UMT5 tokenizer as `WanPipeline` calls it.
#[derive(Debug, Clone)]
pub struct WanTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    pad_id: u32,
    pad_token: String,
}

/// A special token of `tokenizer_config.json`: a string or an `AddedToken` object.
fn config_token(config: &Value, key: &str, default: &str) -> String {
    match config.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => match o.get("content") {
            Some(Value::String(s)) => s.clone(),
            _ => default.to_string(),
        },
        _ => default.to_string(),
    }
}

impl WanTokenizer {
    /// Loads `tokenizer.json` (with `tokenizer_config.json` from the same folder, when there,
    /// for the pad and eos tokens) and rebuilds it as transformers' `T5Tokenizer` does.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref().to_path_buf();
        let unsupported = |reason: String| TokenizerError::Unsupported {
            path: path.clone(),
            reason,
        };
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| TokenizerError::Read {
                path: p.to_path_buf(),
                source,
            })
        };
        let parse = |p: &Path, text: &str| {
            serde_json::from_str::<Value>(text).map_err(|source| TokenizerError::Parse {
                path: p.to_path_buf(),
                source,
            })
        };
        let config_path = path.with_file_name("tokenizer_config.json");
        let config = if config_path.is_file() {
            parse(&config_path, &read(&config_path)?)?
        } else {
            Value::Null
        };
        if let Some(class) = config.get("tokenizer_class").and_then(Value::as_str)
            && !matches!(class, "T5Tokenizer" | "T5TokenizerFast")
        {
            return Err(unsupported(format!(
                "tokenizer_class {class:?} in {} (only T5Tokenizer is emulated)",
                config_path.display()
            )));
        }
        let mut spec = parse(&path, &read(&path)?)?;
        let model = spec
            .get_mut("model")
            .filter(|m| m.get("type").and_then(Value::as_str) == Some("Unigram"))
            .ok_or_else(|| unsupported("its model is not Unigram".to_string()))?;
        model["unk_id"] = json!(2);
        model["byte_fallback"] = json!(false);
        let precompiled = match spec.get("normalizer") {
            Some(n) if n.get("type").and_then(Value::as_str) == Some("Precompiled") => n.clone(),
            Some(n) => n
                .get("normalizers")
                .and_then(Value::as_array)
                .and_then(|list| {
                    list.iter()
                        .find(|n| n.get("type").and_then(Value::as_str) == Some("Precompiled"))
                })
                .cloned()
                .unwrap_or(Value::Null),
            None => Value::Null,
        };
        spec["normalizer"] = precompiled;
        spec["pre_tokenizer"] = json!({
            "type": "Sequence",
            "pretokenizers": [
                {"type": "WhitespaceSplit"},
                {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}
            ]
        });
        spec["post_processor"] = Value::Null;
        // Decoding is not used; dropping the decoder also spares parsing older formats.
        spec["decoder"] = Value::Null;
        spec["truncation"] = Value::Null;
        spec["padding"] = Value::Null;
        // Deserialized straight from the edited JSON value (what `Tokenizer::from_str` does
        // with the text).
        let mut inner: Tokenizer =
            serde_json::from_value(spec).map_err(|source| TokenizerError::Parse {
                path: path.clone(),
                source,
            })?;

        let eos = config_token(&config, "eos_token", "</s>");
        let pad_token = config_token(&config, "pad_token", "<pad>");
        let id_of = |token: &str| {
            inner
                .token_to_id(token)
                .ok_or_else(|| unsupported(format!("token {token:?} is not in its vocabulary")))
        };
        let eos_id = id_of(&eos)?;
        let pad_id = id_of(&pad_token)?;
        let template_err = |e: String| unsupported(format!("cannot build the {eos} template: {e}"));
        let mut builder = TemplateProcessing::builder();
        builder
            .try_single(vec!["$A".to_string(), eos.clone()])
            .map_err(template_err)?
            .try_pair(vec!["$A".into(), eos.clone(), "$B".into(), eos.clone()])
            .map_err(template_err)?
            .special_tokens(vec![(eos.clone(), eos_id)]);
        let template = builder.build().map_err(|e| template_err(e.to_string()))?;
        inner.with_post_processor(Some(template));
        Ok(Self {
            inner,
            path,
            pad_id,
            pad_token,
        })
    }

    /// The underlying `tokenizers` tokenizer (rebuilt as described in the module docs).
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Vocabulary size including added tokens (transformers' `len(tokenizer)`).
    pub fn len(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Token ids and attention masks, each `prompts.len()` rows of `max_len`, as
    /// `tokenizer(prompts, padding="max_length", max_length=max_len, truncation=True,
    /// add_special_tokens=True, return_attention_mask=True)` gives them: the text truncated
    /// on the right to leave room for `</s>`, then right-padded with `<pad>` (mask 0).
    /// The prompts are used as given (see [`prompt_clean`]). `max_len` 0 is an error (Python
    /// treats it as "no limit").
    #[allow(clippy::type_complexity)]
    pub fn encode(
        &self,
        prompts: &[String],
        max_len: usize,
    ) -> Result<(Vec<Vec<u32>>, Vec<Vec<u32>>), TokenizerError> {
        let err = |source| TokenizerError::Tokenizers {
            path: self.path.clone(),
            source,
        };
        let processor =
            self.inner
                .get_post_processor()
                .ok_or_else(|| TokenizerError::Unsupported {
                    path: self.path.clone(),
                    reason: "no post-processor".to_string(),
                })?;
        let added = processor.added_tokens(false);
        if max_len == 0 || max_len < added {
            return Err(TokenizerError::Unsupported {
                path: self.path.clone(),
                reason: format!("max_len {max_len} is shorter than the {added} special tokens"),
            });
        }
        let truncation = TruncationParams {
            direction: TruncationDirection::Right,
            max_length: max_len - added,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        };
        let padding = PaddingParams {
            strategy: PaddingStrategy::Fixed(max_len),
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id: self.pad_id,
            pad_type_id: 0,
            pad_token: self.pad_token.clone(),
        };
        let mut ids = Vec::with_capacity(prompts.len());
        let mut masks = Vec::with_capacity(prompts.len());
        for prompt in prompts {
            // The steps of `Tokenizer::post_process` with the call's truncation and padding.
            let raw = self.inner.encode(prompt.as_str(), false).map_err(err)?;
            let (raw, _) = truncate_encodings(raw, None, &truncation).map_err(err)?;
            let mut done = [processor.process(raw, None, true).map_err(err)?];
            pad_encodings(&mut done, &padding).map_err(err)?;
            let [done] = done;
            ids.push(done.get_ids().to_vec());
            masks.push(done.get_attention_mask().to_vec());
        }
        Ok((ids, masks))
    }
}

/// diffusers' Wan `prompt_clean` without ftfy (not installed in the reference either):
/// HTML-unescape twice, strip, turn every run of Unicode whitespace into one space, strip.
pub fn prompt_clean(text: &str) -> String {
    let text = html_unescape(&html_unescape(text));
    let text = text.trim_matches(is_py_space);
    let mut out = String::with_capacity(text.len());
    let mut in_space = false;
    for c in text.chars() {
        // `regex`'s `\s` is Unicode White_Space, which is `char::is_whitespace`.
        if c.is_whitespace() {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    out.trim_matches(is_py_space).to_string()
}

/// Python's `str.isspace` (what `str.strip()` removes): White_Space plus U+001C..U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `html.unescape` for numeric references (decimal and hex, with or without `;`,
/// including its replacements for invalid code points) and for the named references in
/// [`ENTITIES`] (205 of HTML5's 2125): the 106 names HTML5 also accepts without `;`
/// (`&amp`, `&lt`, `&eacute`, `&nbsp`, ... with Python's longest-prefix rule, `&ampx` ->
/// `&x`), the 40 longer names that start with one of those (`&notin;`, `&ltimes;`, ...), so
/// that the prefix rule never fires where Python finds a longer name, and common
/// typographic ones (`&apos;`, `&hellip;`, `&mdash;`, `&ndash;`, curly quotes, `&euro;`,
/// `&trade;`, `&bull;`, arrows, card suits, `&ne;`/`&le;`/`&ge;`, thin and em spaces,
/// zero-width joiners, a few Latin-2 letters). Any other `&name;` is left as written where
/// Python would replace it.
pub fn html_unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '&' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        match reference_at(&chars[i + 1..]) {
            Some((replacement, used)) => {
                out.push_str(&replacement);
                i += 1 + used;
            }
            None => {
                out.push('&');
                i += 1;
            }
        }
    }
    out
}

/// The replacement of the reference right after an `&` and how many chars it spans, or
/// `None` when nothing there matches Python's `&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)`.
fn reference_at(rest: &[char]) -> Option<(String, usize)> {
    let run = |from: usize, ok: fn(&char) -> bool, max: usize| {
        rest[from..].iter().take(max).take_while(|c| ok(c)).count()
    };
    let semi = |end: usize| usize::from(rest.get(end) == Some(&';'));
    if rest.first() == Some(&'#') {
        let dec = run(1, char::is_ascii_digit, usize::MAX);
        let (digits, radix, start) = if dec > 0 {
            (dec, 10, 1)
        } else if matches!(rest.get(1), Some('x' | 'X')) {
            (run(2, char::is_ascii_hexdigit, usize::MAX), 16, 2)
        } else {
            return None;
        };
        if digits == 0 {
            return None;
        }
        let value = rest[start..start + digits].iter().fold(0u64, |acc, c| {
            let d = u64::from(c.to_digit(radix).unwrap_or(0));
            acc.saturating_mul(u64::from(radix)).saturating_add(d)
        });
        let end = start + digits;
        return Some((numeric_reference(value), end + semi(end)));
    }
    let len = run(0, |c| !"\t\n\u{c} <&#;".contains(*c), 32);
    if len == 0 {
        return None;
    }
    let name: String = rest[..len].iter().collect();
    let with_semi = semi(len) == 1;
    let used = len + semi(len);
    if let Some((value, legacy)) = entity(&name)
        && (with_semi || legacy)
    {
        return Some((value.to_string(), used));
    }
    // Longest proper prefix (at least 2 chars) that is a name valid without `;`.
    let whole: Vec<char> = rest[..used].to_vec();
    for x in (2..used).rev() {
        let prefix: String = whole[..x].iter().collect();
        if let Some((value, true)) = entity(&prefix) {
            let tail: String = whole[x..].iter().collect();
            return Some((format!("{value}{tail}"), used));
        }
    }
    Some((format!("&{}", whole.iter().collect::<String>()), used))
}

fn entity(name: &str) -> Option<(&'static str, bool)> {
    ENTITIES
        .binary_search_by(|(n, _, _)| n.cmp(&name))
        .ok()
        .map(|i| (ENTITIES[i].1, ENTITIES[i].2))
}

/// Python's `html._replace_charref` for `&#...;`.
fn numeric_reference(value: u64) -> String {
    const WINDOWS_1252: [char; 32] = [
        '\u{20ac}', '\u{81}', '\u{201a}', '\u{192}', '\u{201e}', '\u{2026}', '\u{2020}',
        '\u{2021}', '\u{2c6}', '\u{2030}', '\u{160}', '\u{2039}', '\u{152}', '\u{8d}', '\u{17d}',
        '\u{8f}', '\u{90}', '\u{2018}', '\u{2019}', '\u{201c}', '\u{201d}', '\u{2022}', '\u{2013}',
        '\u{2014}', '\u{2dc}', '\u{2122}', '\u{161}', '\u{203a}', '\u{153}', '\u{9d}', '\u{17e}',
        '\u{178}',
    ];
    match value {
        0 => "\u{fffd}".to_string(),
        0x0d => "\r".to_string(),
        0x80..=0x9f => WINDOWS_1252[(value - 0x80) as usize].to_string(),
        0xd800..=0xdfff | 0x11_0000.. => "\u{fffd}".to_string(),
        0x01..=0x08 | 0x0b | 0x0e..=0x1f | 0x7f | 0xfdd0..=0xfdef => String::new(),
        v if v & 0xfffe == 0xfffe => String::new(),
        v => char::from_u32(v as u32).map_or_else(String::new, String::from),
    }
}

/// Named references: (name, replacement, also valid without `;`), sorted by name. Generated
/// from Python's `html.entities.html5`.
#[rustfmt::skip]
const ENTITIES: [(&str, &str, bool); 205] = [
    ("AElig", "Æ", true), ("AMP", "&", true), ("Aacute", "Á", true), ("Acirc", "Â", true),
    ("Agrave", "À", true), ("Aring", "Å", true), ("Atilde", "Ã", true), ("Auml", "Ä", true),
    ("COPY", "©", true), ("Ccedil", "Ç", true), ("Dagger", "\u{2021}", false), ("ETH", "Ð", true),
    ("Eacute", "É", true), ("Ecirc", "Ê", true), ("Egrave", "È", true), ("Euml", "Ë", true),
    ("GT", ">", true), ("Iacute", "Í", true), ("Icirc", "Î", true), ("Igrave", "Ì", true),
    ("Iuml", "Ï", true), ("LT", "<", true), ("NewLine", "\u{a}", false), ("Ntilde", "Ñ", true),
    ("OElig", "Œ", false), ("Oacute", "Ó", true), ("Ocirc", "Ô", true), ("Ograve", "Ò", true),
    ("Oslash", "Ø", true), ("Otilde", "Õ", true), ("Ouml", "Ö", true),
    ("Prime", "\u{2033}", false), ("QUOT", "\u{22}", true), ("REG", "®", true),
    ("Scaron", "Š", false), ("THORN", "Þ", true), ("Tab", "\u{9}", false), ("Uacute", "Ú", true),
    ("Ucirc", "Û", true), ("Ugrave", "Ù", true), ("Uuml", "Ü", true), ("Yacute", "Ý", true),
    ("Yuml", "Ÿ", false), ("aacute", "á", true), ("acirc", "â", true), ("acute", "´", true),
    ("aelig", "æ", true), ("agrave", "à", true), ("amp", "&", true), ("apos", "'", false),
    ("aring", "å", true), ("asymp", "\u{2248}", false), ("atilde", "ã", true),
    ("auml", "ä", true), ("bdquo", "\u{201e}", false), ("brvbar", "¦", true),
    ("bull", "\u{2022}", false), ("ccedil", "ç", true), ("cedil", "¸", true), ("cent", "¢", true),
    ("centerdot", "·", false), ("check", "\u{2713}", false), ("circ", "ˆ", false),
    ("clubs", "\u{2663}", false), ("copy", "©", true), ("copysr", "\u{2117}", false),
    ("curren", "¤", true), ("dagger", "\u{2020}", false), ("darr", "\u{2193}", false),
    ("deg", "°", true), ("diams", "\u{2666}", false), ("divide", "÷", true),
    ("divideontimes", "\u{22c7}", false), ("eacute", "é", true), ("ecirc", "ê", true),
    ("egrave", "è", true), ("emsp", "\u{2003}", false), ("ensp", "\u{2002}", false),
    ("eth", "ð", true), ("euml", "ë", true), ("euro", "\u{20ac}", false), ("fnof", "ƒ", false),
    ("frac12", "½", true), ("frac14", "¼", true), ("frac34", "¾", true),
    ("frasl", "\u{2044}", false), ("ge", "\u{2265}", false), ("gt", ">", true),
    ("gtcc", "\u{2aa7}", false), ("gtcir", "\u{2a7a}", false), ("gtdot", "\u{22d7}", false),
    ("gtlPar", "\u{2995}", false), ("gtquest", "\u{2a7c}", false),
    ("gtrapprox", "\u{2a86}", false), ("gtrarr", "\u{2978}", false),
    ("gtrdot", "\u{22d7}", false), ("gtreqless", "\u{22db}", false),
    ("gtreqqless", "\u{2a8c}", false), ("gtrless", "\u{2277}", false),
    ("gtrsim", "\u{2273}", false), ("harr", "\u{2194}", false), ("hearts", "\u{2665}", false),
    ("hellip", "\u{2026}", false), ("iacute", "í", true), ("icirc", "î", true),
    ("iexcl", "¡", true), ("igrave", "ì", true), ("infin", "\u{221e}", false),
    ("iquest", "¿", true), ("iuml", "ï", true), ("laquo", "«", true), ("larr", "\u{2190}", false),
    ("ldquo", "\u{201c}", false), ("le", "\u{2264}", false), ("lowast", "\u{2217}", false),
    ("lrm", "\u{200e}", false), ("lsaquo", "\u{2039}", false), ("lsquo", "\u{2018}", false),
    ("lt", "<", true), ("ltcc", "\u{2aa6}", false), ("ltcir", "\u{2a79}", false),
    ("ltdot", "\u{22d6}", false), ("lthree", "\u{22cb}", false), ("ltimes", "\u{22c9}", false),
    ("ltlarr", "\u{2976}", false), ("ltquest", "\u{2a7b}", false), ("ltrPar", "\u{2996}", false),
    ("ltri", "\u{25c3}", false), ("ltrie", "\u{22b4}", false), ("ltrif", "\u{25c2}", false),
    ("macr", "¯", true), ("mdash", "\u{2014}", false), ("micro", "µ", true),
    ("middot", "·", true), ("minus", "\u{2212}", false), ("nbsp", "\u{a0}", true),
    ("ndash", "\u{2013}", false), ("ne", "\u{2260}", false), ("not", "¬", true),
    ("notin", "\u{2209}", false), ("notinE", "\u{22f9}\u{338}", false),
    ("notindot", "\u{22f5}\u{338}", false), ("notinva", "\u{2209}", false),
    ("notinvb", "\u{22f7}", false), ("notinvc", "\u{22f6}", false), ("notni", "\u{220c}", false),
    ("notniva", "\u{220c}", false), ("notnivb", "\u{22fe}", false),
    ("notnivc", "\u{22fd}", false), ("ntilde", "ñ", true), ("oacute", "ó", true),
    ("ocirc", "ô", true), ("oelig", "œ", false), ("ograve", "ò", true),
    ("oline", "\u{203e}", false), ("ordf", "ª", true), ("ordm", "º", true), ("oslash", "ø", true),
    ("otilde", "õ", true), ("ouml", "ö", true), ("para", "¶", true),
    ("parallel", "\u{2225}", false), ("permil", "\u{2030}", false), ("plusmn", "±", true),
    ("pound", "£", true), ("prime", "\u{2032}", false), ("quot", "\u{22}", true),
    ("raquo", "»", true), ("rarr", "\u{2192}", false), ("rdquo", "\u{201d}", false),
    ("reg", "®", true), ("rlm", "\u{200f}", false), ("rsaquo", "\u{203a}", false),
    ("rsquo", "\u{2019}", false), ("sbquo", "\u{201a}", false), ("scaron", "š", false),
    ("sdot", "\u{22c5}", false), ("sect", "§", true), ("shy", "\u{ad}", true),
    ("sim", "\u{223c}", false), ("spades", "\u{2660}", false), ("star", "\u{2606}", false),
    ("sup1", "¹", true), ("sup2", "²", true), ("sup3", "³", true), ("szlig", "ß", true),
    ("thinsp", "\u{2009}", false), ("thorn", "þ", true), ("tilde", "˜", false),
    ("times", "×", true), ("timesb", "\u{22a0}", false), ("timesbar", "\u{2a31}", false),
    ("timesd", "\u{2a30}", false), ("trade", "\u{2122}", false), ("uacute", "ú", true),
    ("uarr", "\u{2191}", false), ("ucirc", "û", true), ("ugrave", "ù", true), ("uml", "¨", true),
    ("uuml", "ü", true), ("yacute", "ý", true), ("yen", "¥", true), ("yuml", "ÿ", true),
    ("zwj", "\u{200d}", false), ("zwnj", "\u{200c}", false),
];

#[cfg(test)]
#[path = "tokenizer_tests.rs"]
mod tests;
