//! Tests of the Wan tokenizer against the pipeline's tokenizer output and of the prompt
//! cleaning against diffusers' `prompt_clean` (expected strings produced by Python).

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use super::*;

const WAN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/wan");

fn tokenizer_path() -> String {
    format!("{WAN}/tiny-pipeline/tokenizer/tokenizer.json")
}

fn tokenizer() -> WanTokenizer {
    WanTokenizer::from_file(tokenizer_path()).unwrap()
}

fn reference() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(format!("{WAN}/reference/umt5.safetensors"), &Device::Cpu)
        .unwrap()
}

fn spec() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{WAN}/reference/umt5.json")).unwrap())
        .unwrap()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    serde_json::from_value(v.clone()).unwrap()
}

fn as_u32(t: &Tensor) -> Vec<Vec<u32>> {
    let rows: Vec<Vec<i64>> = t.to_vec2().unwrap();
    rows.into_iter()
        .map(|r| r.into_iter().map(|v| u32::try_from(v).unwrap()).collect())
        .collect()
}

#[test]
fn prompt_ids_and_masks_match_the_pipeline() {
    let (r, spec) = (reference(), spec());
    let cleaned: Vec<String> = strings(&spec["prompts"])
        .iter()
        .map(|p| prompt_clean(p))
        .collect();
    assert_eq!(cleaned, strings(&spec["cleaned_prompts"]));
    let max_len = spec["max_sequence_length"].as_u64().unwrap() as usize;
    let (ids, mask) = tokenizer().encode(&cleaned, max_len).unwrap();
    assert_eq!(ids, as_u32(&r["prompt_ids"]));
    assert_eq!(mask, as_u32(&r["prompt_mask"]));
}

#[test]
fn encoder_inputs_match_the_tokenizer_with_truncation() {
    // The encoder fixture's ids: a long text truncated to 12 and a short one padded to 12.
    let (r, spec) = (reference(), spec());
    let max_len = spec["encoder_max_length"].as_u64().unwrap() as usize;
    let (ids, mask) = tokenizer()
        .encode(&strings(&spec["encoder_texts"]), max_len)
        .unwrap();
    assert_eq!(ids, as_u32(&r["input_ids"]));
    assert_eq!(mask, as_u32(&r["attention_mask"]));
}

#[test]
fn truncates_before_eos_and_pads_after_it() {
    let tok = tokenizer();
    let eos = tok.inner().token_to_id("</s>").unwrap();
    let pad = tok.inner().token_to_id("<pad>").unwrap();
    let long = "a cat and a dog in a kitchen ".repeat(20);
    let (full, _) = tok.encode(std::slice::from_ref(&long), 512).unwrap();
    let n = full[0].iter().position(|&t| t == eos).unwrap();
    assert!(n > 8, "the long prompt has {n} tokens");
    let (ids, mask) = tok.encode(&[long, "cat".to_string()], 8).unwrap();
    // Right truncation keeps the first 7 text tokens, then </s>.
    assert_eq!(ids[0][..7], full[0][..7]);
    assert_eq!(ids[0][7], eos);
    assert_eq!(mask[0], vec![1; 8]);
    // A short prompt is </s>-terminated and right-padded with <pad> (mask 0).
    let len = mask[1].iter().sum::<u32>() as usize;
    assert!((2..8).contains(&len));
    assert_eq!(ids[1][len - 1], eos);
    assert!(ids[1][len..].iter().all(|&t| t == pad));
    assert!(mask[1][..len].iter().all(|&m| m == 1) && mask[1][len..].iter().all(|&m| m == 0));
    // As in Python, max_len 1 leaves only </s>; 0 is refused.
    let one = tok.encode(&["cat".to_string()], 1).unwrap();
    assert_eq!(one, (vec![vec![eos]], vec![vec![1]]));
    assert!(tok.encode(&["cat".to_string()], 0).is_err());
}

#[test]
fn json_normalizer_and_pre_tokenizer_are_rebuilt_like_transformers() {
    // transformers' T5Tokenizer keeps only a Precompiled normalizer and always uses
    // WhitespaceSplit + Metaspace: a Lowercase normalizer or another pre-tokenizer written
    // in tokenizer.json changes nothing.
    let mut spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tokenizer_path()).unwrap()).unwrap();
    spec["normalizer"] = serde_json::json!({"type": "Lowercase"});
    spec["pre_tokenizer"] = serde_json::json!({"type": "Whitespace"});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, spec.to_string()).unwrap();
    let prompts = vec!["A CAT and\ta Dog, baking.".to_string()];
    let edited = WanTokenizer::from_file(&path)
        .unwrap()
        .encode(&prompts, 32)
        .unwrap();
    assert_eq!(edited, tokenizer().encode(&prompts, 32).unwrap());
}

#[test]
fn errors_name_the_file() {
    let missing = format!("{WAN}/no-such-dir/tokenizer.json");
    let err = WanTokenizer::from_file(&missing).unwrap_err().to_string();
    assert!(err.contains(&missing), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, r#"{"model": {"type": "BPE"}}"#).unwrap();
    let err = WanTokenizer::from_file(&path).unwrap_err().to_string();
    assert!(
        err.contains(&path.display().to_string()) && err.contains("Unigram"),
        "{err}"
    );
}

#[test]
fn prompt_clean_matches_diffusers() {
    // (input, diffusers' prompt_clean(input)) computed with Python 3.11 and `regex`.
    let cases = [
        (
            "  A cat &amp; a dog\u{9}\u{9}baking\u{a} a cake  ",
            "A cat & a dog baking a cake",
        ),
        (
            "Tom &amp;amp; Jerry &lt;3 &quot;quoted&quot; &#39;single&#39; &apos;apos&apos;",
            "Tom & Jerry <3 \"quoted\" 'single' 'apos'",
        ),
        (
            "caf&eacute; cr&egrave;me &eacutex &ampfoo &notit; &notin; &copy2024 &COPY; &Amp; &amp",
            "café crème éx &foo ¬it; ∉ ©2024 © &Amp; &",
        ),
        (
            "&#65;&#x42;&#X43;&#68 &#x45 &#0; &#128; &#150; &#x9F; &#13; &#x7f; &#1; &#xD800; \
             &#x110000; &#99999999999999999999; &#xFFFE; &#x1FFFF; &#xFDD0;",
            "ABCD E \u{fffd} € \u{2013} Ÿ \u{fffd} \u{fffd} \u{fffd}",
        ),
        (
            "&hellip; &mdash; &ndash; &ldquo;hi&rdquo; &lsquo;x&rsquo; &euro;5 &trade; \
             &nbsp;&nbsp;x&nbsp;",
            "\u{2026} \u{2014} \u{2013} \u{201c}hi\u{201d} \u{2018}x\u{2019} €5 ™ x",
        ),
        (
            "&; &# &#x &#xg & amp; && &&amp;amp; &zzzz; &abcdefghijklmnopqrstuvwxyzabcdefghij; \
             &amp;#65;",
            "&; &# &#x &#xg & amp; && && &zzzz; &abcdefghijklmnopqrstuvwxyzabcdefghij; A",
        ),
        (
            "\u{3000}ideographic\u{3000}space\u{2003}em\u{a0}nbsp\u{85}nel\u{1c}fs\u{1d} \u{1e}",
            "ideographic space em nbsp nel\u{1c}fs",
        ),
        ("\u{1c}\u{1d} lead and trail \u{1f}\u{1e}", "lead and trail"),
        ("a\u{1c} b \u{1f} c", "a\u{1c} b \u{1f} c"),
        ("no entities at all", "no entities at all"),
        ("", ""),
        ("   ", ""),
        (
            "&amp;nbsp; double &amp;amp;amp; triple",
            "double &amp; triple",
        ),
        (
            "Ünïcödé &Uuml;ber 一只猫 &#x1F600; emoji",
            "Ünïcödé Über 一只猫 \u{1f600} emoji",
        ),
        (
            "&ampamp; &ltlt; &gt &gt; &GT; &QUOT &quot",
            "& <lt; > > > \" \"",
        ),
        ("&nbsp&nbsp; x &shy; y", "x \u{ad} y"),
    ];
    for (input, want) in cases {
        assert_eq!(prompt_clean(input), want, "prompt_clean({input:?})");
    }
}

#[test]
fn entity_table_is_sorted_for_binary_search() {
    assert!(ENTITIES.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(ENTITIES.iter().filter(|e| e.2).count(), 106);
}
