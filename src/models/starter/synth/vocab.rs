//! The starter model's world: object colours, shapes, motions, backgrounds and the held-out triples.

use serde::{Deserialize, Serialize};

/// An sRGB colour.
pub type Rgb = [u8; 3];

/// Object colours, with their exact sRGB values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    Red,
    Orange,
    Yellow,
    Green,
    Blue,
    Purple,
    Pink,
    White,
}

impl Colour {
    pub const ALL: [Colour; 8] = [
        Colour::Red,
        Colour::Orange,
        Colour::Yellow,
        Colour::Green,
        Colour::Blue,
        Colour::Purple,
        Colour::Pink,
        Colour::White,
    ];

    pub fn rgb(self) -> Rgb {
        match self {
            Colour::Red => [0xDC, 0x28, 0x28],
            Colour::Orange => [0xF5, 0x8C, 0x1E],
            Colour::Yellow => [0xF0, 0xDC, 0x28],
            Colour::Green => [0x28, 0xB4, 0x3C],
            Colour::Blue => [0x28, 0x5A, 0xDC],
            Colour::Purple => [0x8C, 0x3C, 0xC8],
            Colour::Pink => [0xF0, 0x78, 0xB4],
            Colour::White => [0xF0, 0xF0, 0xF0],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Orange => "orange",
            Colour::Yellow => "yellow",
            Colour::Green => "green",
            Colour::Blue => "blue",
            Colour::Purple => "purple",
            Colour::Pink => "pink",
            Colour::White => "white",
        }
    }
}

/// Object shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    Circle,
    Square,
    Triangle,
}

impl Shape {
    pub const ALL: [Shape; 3] = [Shape::Circle, Shape::Square, Shape::Triangle];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
        }
    }

    /// Words a caption may use for this shape (the first is the canonical one).
    pub fn words(self) -> &'static [&'static str] {
        match self {
            Shape::Circle => &["circle", "ball", "dot", "disc"],
            Shape::Square => &["square", "box", "block"],
            Shape::Triangle => &["triangle"],
        }
    }
}

/// How the object moves across the clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Motion {
    Left,
    Right,
    Up,
    Down,
    Bouncing,
    Growing,
    Shrinking,
}

impl Motion {
    pub const ALL: [Motion; 7] = [
        Motion::Left,
        Motion::Right,
        Motion::Up,
        Motion::Down,
        Motion::Bouncing,
        Motion::Growing,
        Motion::Shrinking,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Motion::Left => "left",
            Motion::Right => "right",
            Motion::Up => "up",
            Motion::Down => "down",
            Motion::Bouncing => "bouncing",
            Motion::Growing => "growing",
            Motion::Shrinking => "shrinking",
        }
    }

    /// True for the four motions that travel in a direction.
    pub fn is_directional(self) -> bool {
        matches!(
            self,
            Motion::Left | Motion::Right | Motion::Up | Motion::Down
        )
    }
}

/// Plain backgrounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Background {
    Black,
    White,
    Gray,
    Navy,
}

impl Background {
    pub const ALL: [Background; 4] = [
        Background::Black,
        Background::White,
        Background::Gray,
        Background::Navy,
    ];

    pub fn rgb(self) -> Rgb {
        match self {
            Background::Black => [0x10, 0x10, 0x10],
            Background::White => [0xF0, 0xF0, 0xF0],
            Background::Gray => [0x80, 0x80, 0x80],
            Background::Navy => [0x1E, 0x2A, 0x5A],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Background::Black => "black",
            Background::White => "white",
            Background::Gray => "gray",
            Background::Navy => "navy",
        }
    }

    /// Ways a caption may name this background (the first is the canonical one).
    pub fn words(self) -> &'static [&'static str] {
        match self {
            Background::Black => &["black"],
            Background::White => &["white"],
            Background::Gray => &["gray", "grey"],
            Background::Navy => &["navy", "dark blue"],
        }
    }

    /// A background is never the same colour as the object.
    pub fn allows(self, colour: Colour) -> bool {
        colour.rgb() != self.rgb()
    }
}

/// The labels of one clip: what it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Scene {
    pub colour: Colour,
    pub shape: Shape,
    pub motion: Motion,
    pub background: Background,
}

impl Scene {
    /// `triple` on `background`.
    pub fn of(triple: Triple, background: Background) -> Scene {
        Scene {
            colour: triple.colour,
            shape: triple.shape,
            motion: triple.motion,
            background,
        }
    }

    /// Every scene: each triple on each background it allows.
    pub fn all() -> Vec<Scene> {
        Triple::all()
            .into_iter()
            .flat_map(|t| {
                Background::ALL
                    .into_iter()
                    .filter(move |b| b.allows(t.colour))
                    .map(move |b| Scene::of(t, b))
            })
            .collect()
    }
}

/// A (colour, shape, motion) combination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Triple {
    pub colour: Colour,
    pub shape: Shape,
    pub motion: Motion,
}

impl Triple {
    /// All 8 × 3 × 7 = 168 triples, in a fixed order.
    pub fn all() -> Vec<Triple> {
        let mut out = Vec::with_capacity(168);
        for colour in Colour::ALL {
            for shape in Shape::ALL {
                for motion in Motion::ALL {
                    out.push(Triple {
                        colour,
                        shape,
                        motion,
                    });
                }
            }
        }
        out
    }

    /// The documented held-out rule: a triple is withheld from training when
    /// `(colour_index + 2·shape_index + 3·motion_index) mod 6 == 0`, with indices in the
    /// order of `Colour::ALL`, `Shape::ALL` and `Motion::ALL`. That withholds 28 of the 168
    /// triples (16.7 %), while every colour–shape, colour–motion and shape–motion pair still
    /// occurs in training, so the held-out set measures composition, not new words.
    pub fn is_held_out(self) -> bool {
        let c = Colour::ALL.iter().position(|&x| x == self.colour).unwrap();
        let s = Shape::ALL.iter().position(|&x| x == self.shape).unwrap();
        let m = Motion::ALL.iter().position(|&x| x == self.motion).unwrap();
        (c + 2 * s + 3 * m) % 6 == 0
    }

    pub fn held_out() -> Vec<Triple> {
        Self::all()
            .into_iter()
            .filter(|t| t.is_held_out())
            .collect()
    }

    pub fn training() -> Vec<Triple> {
        Self::all()
            .into_iter()
            .filter(|t| !t.is_held_out())
            .collect()
    }

    pub fn label(self) -> String {
        format!(
            "{} {} {}",
            self.colour.name(),
            self.shape.name(),
            self.motion.name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn held_out_share_is_at_least_15_percent() {
        let held = Triple::held_out().len();
        assert_eq!(Triple::all().len(), 168);
        assert_eq!(held, 28);
        assert!(held as f64 / 168.0 >= 0.15);
    }

    #[test]
    fn every_pair_still_occurs_in_training() {
        let train = Triple::training();
        let cs: HashSet<_> = train.iter().map(|t| (t.colour, t.shape)).collect();
        let cm: HashSet<_> = train.iter().map(|t| (t.colour, t.motion)).collect();
        let sm: HashSet<_> = train.iter().map(|t| (t.shape, t.motion)).collect();
        assert_eq!(cs.len(), 8 * 3);
        assert_eq!(cm.len(), 8 * 7);
        assert_eq!(sm.len(), 3 * 7);
    }

    #[test]
    fn white_object_never_on_white_background() {
        assert!(!Background::White.allows(Colour::White));
        assert!(Background::Black.allows(Colour::White));
        assert!(Background::White.allows(Colour::Red));
    }
}
