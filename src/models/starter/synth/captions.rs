//! Caption templates: many ways a person might describe a scene, for training and evaluation.

use super::vocab::{Background, Colour, Motion, Scene};
use crate::rng::Rng;

/// Phrases for each motion (a direction gets one of several verbs).
fn motion_phrase(motion: Motion, rng: &mut Rng) -> String {
    const VERBS: [&str; 5] = ["moving", "moves", "going", "sliding", "drifting"];
    match motion {
        Motion::Left | Motion::Right | Motion::Up | Motion::Down => {
            let verb = rng.pick(&VERBS);
            let dir = motion.name();
            if matches!(motion, Motion::Left | Motion::Right) && rng.chance(0.3) {
                format!("{verb} to the {dir}")
            } else {
                format!("{verb} {dir}")
            }
        }
        Motion::Bouncing => rng.pick(&["bouncing", "bouncing", "bounces"]).to_string(),
        Motion::Growing => rng
            .pick(&["growing", "growing", "getting bigger", "grows"])
            .to_string(),
        Motion::Shrinking => rng
            .pick(&["shrinking", "shrinking", "getting smaller", "shrinks"])
            .to_string(),
    }
}

fn colour_word(c: Colour) -> &'static str {
    c.name()
}

fn background_word(b: Background, rng: &mut Rng) -> &'static str {
    let word: &&'static str = rng.pick(b.words());
    word
}

/// The number of caption templates; `caption_with` accepts 0..TEMPLATES.
pub const TEMPLATES: usize = 10;

/// A random caption for `scene`.
pub fn caption(scene: &Scene, rng: &mut Rng) -> String {
    let template = rng.below(TEMPLATES);
    caption_with(scene, template, rng)
}

/// The caption for `scene` from one template; `rng` picks synonyms and filler words.
pub fn caption_with(scene: &Scene, template: usize, rng: &mut Rng) -> String {
    let c = colour_word(scene.colour);
    let s = *rng.pick(scene.shape.words());
    let m = motion_phrase(scene.motion, rng);
    let b = background_word(scene.background, rng);
    let a = *rng.pick(&["a", "a", "the", "a small", "the small", "one"]);
    let text = match template % TEMPLATES {
        0 => format!("{a} {c} {s} {m} on a {b} background"),
        1 => format!("{c} {s} {m}, {b} background"),
        2 => format!("the {c} {s} is {m} on a {b} background"),
        3 => format!("{a} {c} {s} on a {b} background, {m}"),
        4 => format!("{b} background, {a} {c} {s} {m}"),
        5 => format!("{c} {s} {m} on {b}"),
        6 => format!("a {b} background with {a} {c} {s} {m}"),
        7 => format!("{a} {c} {s} {m} against a plain {b} background"),
        8 => format!("on a {b} background {a} {c} {s} is {m}"),
        _ => format!("{a} {c} {s}, {m}, on the {b} background"),
    };
    text.replace("one ", "a ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::starter::synth::vocab::Shape;

    #[test]
    fn captions_name_every_part_of_the_scene() {
        let mut rng = Rng::new(9);
        for sc in Scene::all() {
            for template in 0..TEMPLATES {
                let cap = caption_with(&sc, template, &mut rng);
                assert!(cap.contains(sc.colour.name()), "{cap}");
                assert!(sc.shape.words().iter().any(|w| cap.contains(w)), "{cap}");
                assert!(
                    sc.background.words().iter().any(|w| cap.contains(w)),
                    "{cap}"
                );
                assert!(cap.contains("background") || template == 5, "{cap}");
            }
        }
    }

    #[test]
    fn every_synonym_is_used_over_many_captions() {
        let mut rng = Rng::new(1);
        let sc = |shape, motion, background| Scene {
            colour: Colour::Red,
            shape,
            motion,
            background,
        };
        let mut all = String::new();
        for i in 0..400 {
            let shape = Shape::ALL[i % 3];
            let motion = Motion::ALL[i % 7];
            let bg = Background::ALL[i % 4];
            all.push_str(&caption(&sc(shape, motion, bg), &mut rng));
            all.push('\n');
        }
        for w in [
            "ball",
            "dot",
            "disc",
            "box",
            "block",
            "triangle",
            "moves",
            "going",
            "sliding",
            "drifting",
            "bouncing",
            "getting bigger",
            "getting smaller",
            "grey",
            "dark blue",
            "to the left",
            "navy",
        ] {
            assert!(all.contains(w), "no caption used `{w}`");
        }
    }
}
