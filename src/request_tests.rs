//! Unit tests for request validation: every rule, every default, and the wording of messages.

use super::*;

/// The limits the bundled starter model declares.
fn limits() -> Limits {
    crate::models::starter::starter_limits(&crate::models::starter::config::StarterConfig::small())
}

fn raw(prompt: &str) -> RawRequest {
    RawRequest {
        prompt: Some(prompt.to_string()),
        ..Default::default()
    }
}

fn ok(r: RawRequest) -> ValidatedRequest {
    validate(&r, &limits()).unwrap_or_else(|e| panic!("expected valid, got: {e}"))
}

fn err(r: RawRequest) -> ValidationError {
    match validate(&r, &limits()) {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e,
    }
}

#[test]
fn defaults_come_from_the_medium_preset_and_limits() {
    let v = ok(raw("a lighthouse at dusk"));
    assert_eq!(v.quality, Quality::Medium);
    let p = &v.params;
    assert_eq!(p.prompt, "a lighthouse at dusk");
    assert_eq!(
        (p.steps, p.width, p.height, p.frames, p.fps),
        (20, 512, 512, 16, 8)
    );
    assert_eq!(p.guidance, limits().guidance.default);
    assert_eq!(p.negative_prompt, None);
    assert!(v.seed_was_random);
    assert!(p.seed <= u64::from(u32::MAX));
}

#[test]
fn quality_high_alone_is_valid_and_uses_its_default_steps() {
    let v = ok(RawRequest {
        quality: Some("high".into()),
        ..raw("waves")
    });
    assert_eq!(v.quality, Quality::High);
    assert_eq!(v.params.steps, 50);
    let v = ok(RawRequest {
        quality: Some("LOW".into()),
        ..raw("waves")
    });
    assert_eq!(v.quality, Quality::Low);
    assert_eq!(v.params.steps, 8);
}

#[test]
fn unknown_quality_is_rejected_with_the_choices() {
    let e = err(RawRequest {
        quality: Some("ultra".into()),
        ..raw("x")
    });
    assert_eq!(e.field, "quality");
    assert_eq!(e.value.as_deref(), Some("ultra"));
    assert!(e.rule.contains("low, medium, high"), "{e}");
}

#[test]
fn prompt_is_trimmed_and_required() {
    assert_eq!(ok(raw("  \t waves \n")).params.prompt, "waves");
    let e = err(RawRequest::default());
    assert_eq!(e.field, "prompt");
    assert!(e.rule.contains("required"), "{e}");
    let e = err(raw("   \n\t "));
    assert_eq!(e.field, "prompt");
    assert!(e.rule.contains("empty"), "{e}");
}

#[test]
fn prompt_length_counts_characters_not_bytes() {
    // 1000 three-byte characters: 3000 bytes, still valid.
    let p: String = "é".repeat(500) + &"水".repeat(500);
    assert_eq!(ok(raw(&p)).params.prompt.chars().count(), 1000);
    // Surrounding whitespace does not count.
    ok(raw(&format!("  {}  ", "a".repeat(1000))));
    let e = err(raw(&"水".repeat(1001)));
    assert_eq!(e.field, "prompt");
    assert_eq!(e.value.as_deref(), Some("1001 characters"));
    assert_eq!(
        e.to_string(),
        "invalid prompt (1001 characters): a prompt may have at most 1000 characters; \
         shorten the prompt by 1 characters"
    );
}

#[test]
fn the_specs_example_message_for_high_with_30_steps() {
    let e = err(RawRequest {
        quality: Some("high".into()),
        steps: Some(30),
        ..raw("x")
    });
    assert_eq!(e.field, "steps");
    assert_eq!(
        e.to_string(),
        "invalid --steps 30: high quality needs at least 50 steps; use --steps 50 or more, \
         or drop --steps to use the preset's default (50)"
    );
}

#[test]
fn low_quality_allows_at_most_30_steps() {
    assert_eq!(
        ok(RawRequest {
            quality: Some("low".into()),
            steps: Some(30),
            ..raw("x")
        })
        .params
        .steps,
        30
    );
    let e = err(RawRequest {
        quality: Some("low".into()),
        steps: Some(31),
        ..raw("x")
    });
    assert_eq!(e.field, "steps");
    assert_eq!(e.rule, "low quality allows at most 30 steps");
    assert!(e.fix.starts_with("use --steps 30 or fewer"), "{e}");
    assert!(e.fix.contains("default (8)"), "{e}");
}

#[test]
fn steps_must_be_between_1_and_100() {
    for s in [1, 100] {
        assert_eq!(
            ok(RawRequest {
                steps: Some(s),
                ..raw("x")
            })
            .params
            .steps,
            s as u32
        );
    }
    for s in [0, -3, 101, i64::MAX] {
        let e = err(RawRequest {
            steps: Some(s),
            ..raw("x")
        });
        assert_eq!(e.field, "steps");
        assert_eq!(e.rule, "steps must be between 1 and 100");
        assert_eq!(e.value, Some(s.to_string()));
        assert!(
            e.fix.contains("between 1 and 100 for medium quality"),
            "{e}"
        );
    }
    // The fix names the range that works for the chosen preset.
    let e = err(RawRequest {
        quality: Some("high".into()),
        steps: Some(0),
        ..raw("x")
    });
    assert!(e.fix.contains("between 50 and 100 for high quality"), "{e}");
}

#[test]
fn a_model_preset_narrower_than_the_product_range_is_enforced() {
    let mut l = limits();
    l.presets[1].steps = Bound {
        min: 2,
        max: 4,
        default: 4,
    };
    let e = validate(
        &RawRequest {
            steps: Some(5),
            ..raw("x")
        },
        &l,
    )
    .unwrap_err();
    assert_eq!(e.rule, "medium quality allows at most 4 steps");
    let e = validate(
        &RawRequest {
            steps: Some(1),
            ..raw("x")
        },
        &l,
    )
    .unwrap_err();
    assert_eq!(e.rule, "medium quality needs at least 2 steps");
    assert_eq!(validate(&raw("x"), &l).unwrap().params.steps, 4);
}

#[test]
fn width_and_height_bounds() {
    let v = ok(RawRequest {
        width: Some(256),
        height: Some(256),
        ..raw("x")
    });
    assert_eq!((v.params.width, v.params.height), (256, 256));
    let v = ok(RawRequest {
        width: Some(1024),
        height: Some(1024),
        ..raw("x")
    });
    assert_eq!((v.params.width, v.params.height), (1024, 1024));
    for (field, w, h) in [
        ("width", 248, 256),
        ("width", 1032, 1024),
        ("height", 512, 0),
        ("height", 512, -512),
    ] {
        let e = err(RawRequest {
            width: Some(w),
            height: Some(h),
            ..raw("x")
        });
        assert_eq!(e.field, field, "{e}");
        assert_eq!(
            e.rule,
            format!("{field} must be between 256 and 1024 pixels")
        );
        assert!(e.fix.contains("default (512)"), "{e}");
    }
}

#[test]
fn width_and_height_must_be_multiples_of_8() {
    let e = err(RawRequest {
        width: Some(513),
        ..raw("x")
    });
    assert_eq!(e.field, "width");
    assert_eq!(
        e.to_string(),
        "invalid --width 513: width must be divisible by 8; use --width 512 or --width 520"
    );
    // A suggestion outside the bounds is not offered.
    let mut l = limits();
    l.height = Bound {
        min: 256,
        max: 1020,
        default: 512,
    };
    let e = validate(
        &RawRequest {
            height: Some(1018),
            ..raw("x")
        },
        &l,
    )
    .unwrap_err();
    assert_eq!(e.fix, "use --height 1016");
}

#[test]
fn aspect_ratio_between_half_and_two() {
    ok(RawRequest {
        width: Some(1024),
        height: Some(512),
        ..raw("x")
    });
    ok(RawRequest {
        width: Some(512),
        height: Some(1024),
        ..raw("x")
    });
    let e = err(RawRequest {
        width: Some(1024),
        height: Some(504),
        ..raw("x")
    });
    assert_eq!(e.field, "size");
    assert_eq!(e.value.as_deref(), Some("1024x504"));
    assert!(e.rule.contains("between 0.5 and 2"), "{e}");
    assert!(
        e.to_string()
            .starts_with("invalid size 1024x504: the aspect ratio"),
        "{e}"
    );
    assert_eq!(
        e.fix,
        "for --width 1024 use a --height between 512 and 1024"
    );
    // When no height works for the width, the fix suggests widths instead.
    let mut l = limits();
    l.height = Bound {
        min: 256,
        max: 256,
        default: 256,
    };
    let e = validate(
        &RawRequest {
            width: Some(1024),
            ..raw("x")
        },
        &l,
    )
    .unwrap_err();
    assert_eq!(e.fix, "for --height 256 use a --width between 256 and 512");
}

#[test]
fn seed_range_and_randomness() {
    for s in [0, 42, MAX_SEED] {
        let v = ok(RawRequest {
            seed: Some(s),
            ..raw("x")
        });
        assert_eq!(v.params.seed, s as u64);
        assert!(!v.seed_was_random);
    }
    for s in [-1, MAX_SEED + 1] {
        let e = err(RawRequest {
            seed: Some(s),
            ..raw("x")
        });
        assert_eq!(e.field, "seed");
        assert!(e.rule.contains("between 0 and 4294967295"), "{e}");
    }
    // Random seeds are 32-bit and not all the same.
    let seeds: std::collections::HashSet<u64> = (0..16).map(|_| ok(raw("x")).params.seed).collect();
    assert!(seeds.len() > 1);
    assert!(seeds.iter().all(|s| *s <= u64::from(u32::MAX)));
}

#[test]
fn frames_fps_and_guidance_follow_the_model() {
    let v = ok(RawRequest {
        frames: Some(16),
        fps: Some(30),
        guidance: Some(15.0),
        ..raw("x")
    });
    assert_eq!(
        (v.params.frames, v.params.fps, v.params.guidance),
        (16, 30, 15.0)
    );
    let e = err(RawRequest {
        frames: Some(24),
        ..raw("x")
    });
    assert_eq!(e.field, "frames");
    assert_eq!(
        e.to_string(),
        "invalid --frames 24: this model supports only frames 16; use --frames 16 or drop --frames"
    );
    for fps in [0, 31] {
        let e = err(RawRequest {
            fps: Some(fps),
            ..raw("x")
        });
        assert_eq!(e.field, "fps");
        assert_eq!(e.rule, "fps must be between 1 and 30");
        assert!(e.fix.contains("default (8)"), "{e}");
    }
    for g in [0.5, 15.5, f64::NAN, f64::INFINITY] {
        let e = err(RawRequest {
            guidance: Some(g),
            ..raw("x")
        });
        assert_eq!(e.field, "guidance");
        assert!(e.rule.contains("between 1 and 15"), "{e}");
    }
}

#[test]
fn negative_prompt_is_trimmed_optional_and_bounded() {
    let v = ok(RawRequest {
        negative_prompt: Some("  blurry ".into()),
        ..raw("x")
    });
    assert_eq!(v.params.negative_prompt.as_deref(), Some("blurry"));
    let v = ok(RawRequest {
        negative_prompt: Some("   ".into()),
        ..raw("x")
    });
    assert_eq!(v.params.negative_prompt, None);
    let e = err(RawRequest {
        negative_prompt: Some("n".repeat(1001)),
        ..raw("x")
    });
    assert_eq!(e.field, "negative-prompt");
}

#[test]
fn the_first_broken_rule_is_reported_with_details() {
    let e = err(RawRequest {
        steps: Some(0),
        width: Some(7),
        ..raw("")
    });
    assert_eq!(e.field, "prompt");
    let d = e.details();
    assert_eq!(d["field"], "prompt");
    assert!(d["rule"].as_str().unwrap().contains("empty"));
    assert!(d["fix"].is_string());
}

#[test]
fn metadata_records_the_validated_request() {
    let v = ok(RawRequest {
        seed: Some(7),
        quality: Some("high".into()),
        ..raw(" waves ")
    });
    let m = v.to_metadata();
    assert_eq!(m["prompt"], "waves");
    assert_eq!(m["quality"], "high");
    assert_eq!(m["num_steps"], 50);
    assert_eq!(m["seed"], 7);
    assert_eq!(m["seed_was_random"], false);
    assert_eq!(m["frames"], 16);
}

/// Limits shaped like Wan2.1's: 4k+1 frames, sides divisible by 16, sizes up to 1280.
fn wan_like() -> Limits {
    let mut l = limits();
    l.frames = Bound {
        min: 5,
        max: 81,
        default: 81,
    };
    l.frame_step = 4;
    l.size_multiple = 16;
    l.width = Bound {
        min: 256,
        max: 1280,
        default: 832,
    };
    l.height = Bound {
        min: 256,
        max: 1280,
        default: 480,
    };
    l
}

#[test]
fn a_model_with_a_frame_step_takes_only_1_plus_k_steps_and_says_why() {
    let l = wan_like();
    let v = validate(&raw("a fox"), &l).unwrap();
    assert_eq!(
        (v.params.width, v.params.height, v.params.frames),
        (832, 480, 81)
    );
    for frames in [5, 9, 49, 81] {
        let mut r = raw("a fox");
        r.frames = Some(frames);
        assert_eq!(validate(&r, &l).unwrap().params.frames, frames as u32);
    }
    let mut r = raw("a fox");
    r.frames = Some(50);
    let e = validate(&r, &l).unwrap_err();
    assert_eq!(e.field, "frames");
    assert!(e.rule.contains("1 + 4·k"), "{}", e.rule);
    assert_eq!(e.fix, "use --frames 49 or --frames 53");
    // Out of range is reported as a range first.
    r.frames = Some(3);
    assert!(
        validate(&r, &l)
            .unwrap_err()
            .rule
            .contains("between 5 and 81")
    );
    // Sides follow the model's multiple, and its wider maximum.
    r.frames = None;
    r.width = Some(1280);
    r.height = Some(720);
    assert_eq!(validate(&r, &l).unwrap().params.width, 1280);
    r.width = Some(840);
    r.height = None;
    let e = validate(&r, &l).unwrap_err();
    assert_eq!(
        (e.field, e.rule.as_str()),
        ("width", "width must be divisible by 16")
    );
}

#[test]
fn control_characters_other_than_tab_and_newline_are_refused() {
    let e = err(raw("a red\0 ball"));
    assert_eq!(e.field, "prompt");
    assert_eq!(e.value.as_deref(), Some("U+0000 at character 6"));
    assert!(e.to_string().contains("control character"), "{e}");
    assert_eq!(err(raw("ansi \u{1b}[31m red")).field, "prompt");
    assert_eq!(err(raw("del \u{7f}")).field, "prompt");
    assert_eq!(
        ok(raw("a red\tball\non two lines")).params.prompt,
        "a red\tball\non two lines"
    );
    let mut r = raw("a red ball");
    r.negative_prompt = Some("blur\u{7}".into());
    assert_eq!(err(r).field, "negative-prompt");
}

/// A model whose limits allow 0 frames made `frames - 1` underflow (a panic in debug builds).
#[test]
fn zero_frames_is_an_error_not_an_underflow() {
    let mut l = limits();
    l.frames = Bound {
        min: 0,
        max: 16,
        default: 0,
    };
    let e = validate(&raw("a ball"), &l).unwrap_err();
    assert_eq!((e.field, e.value.as_deref()), ("frames", Some("0")));
    let r = RawRequest {
        frames: Some(0),
        ..raw("a ball")
    };
    assert_eq!(validate(&r, &l).unwrap_err().field, "frames");
}

/// A default outside the model's own range was returned as valid; now it is an error that
/// names the field and the inconsistency, and an explicit value still works.
#[test]
fn a_model_default_outside_its_range_is_an_error() {
    let mut l = limits();
    l.fps.default = 0;
    let e = validate(&raw("a ball"), &l).unwrap_err();
    assert_eq!((e.field, e.value.as_deref()), ("fps", Some("0")));
    assert!(
        e.rule
            .contains("default fps 0 is outside its range 1 to 30"),
        "{e}"
    );
    let r = RawRequest {
        fps: Some(8),
        ..raw("a ball")
    };
    assert_eq!(validate(&r, &l).unwrap().params.fps, 8);

    let mut l = limits();
    l.width.default = 500;
    let e = validate(&raw("a ball"), &l).unwrap_err();
    assert!(
        e.field == "width" && e.rule.contains("not a multiple of 8"),
        "{e}"
    );
    let mut l = limits();
    l.guidance.default = 20.0;
    assert_eq!(validate(&raw("a ball"), &l).unwrap_err().field, "guidance");
    let mut l = limits();
    l.presets[1].steps.default = 200;
    assert_eq!(validate(&raw("a ball"), &l).unwrap_err().field, "steps");
}

#[test]
fn raw_requests_read_from_json_and_refuse_unknown_fields() {
    let r: RawRequest = serde_json::from_str(
        r#"{"prompt": "a ball", "steps": 12, "guidance": 3, "seed": -1, "quality": "low"}"#,
    )
    .unwrap();
    assert_eq!(
        r,
        RawRequest {
            steps: Some(12),
            guidance: Some(3.0),
            seed: Some(-1),
            quality: Some("low".into()),
            ..raw("a ball")
        }
    );
    assert_eq!(validate(&r, &limits()).unwrap_err().field, "seed");
    for bad in [
        r#"{"prompt": "a", "sampler": "euler"}"#,
        r#"{"prompt": "a", "steps": 1.5}"#,
        r#"{"prompt": 3}"#,
    ] {
        assert!(serde_json::from_str::<RawRequest>(bad).is_err(), "{bad}");
    }
}
