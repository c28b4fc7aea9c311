//! The procedural clip renderer: anti-aliased shapes moving on a plain background (training data).

use super::vocab::{Background, Colour, Motion, Rgb, Scene, Shape};
use crate::rng::Rng;

/// Supersampling grid per pixel side (4×4 samples give smooth edges).
const SUPERSAMPLE: usize = 4;

/// How far from the middle, as a share of the frame, a moving object's lane may lie.
const LANE_JITTER: f32 = 0.08;

/// A moving or bouncing object's half-extent, as a share of the frame (drawn uniformly).
/// Big enough that a square's corners (where it differs from a circle) cover several
/// pixels at the starter model's 32×32: with 0.14–0.2 and smaller squares, the model
/// never learned to draw a square.
pub const RADIUS: (f32, f32) = (0.18, 0.25);

/// Where the object is and how big, in pixels, at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    pub x: f32,
    pub y: f32,
    /// Half the object's extent.
    pub radius: f32,
}

/// Everything needed to draw one clip: the labels and the random trajectory.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipSpec {
    pub scene: Scene,
    pub size: usize,
    pub frames: usize,
    pub poses: Vec<Pose>,
}

/// A rendered clip: `frames` RGB images of `size`×`size`, row-major, 3 bytes per pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    pub size: usize,
    pub frames: Vec<Vec<u8>>,
}

impl ClipSpec {
    /// Samples a random trajectory for `scene`; the same seed always gives the same clip.
    pub fn sample(scene: Scene, size: usize, frames: usize, rng: &mut Rng) -> ClipSpec {
        let s = size as f32;
        let n = frames.max(2);
        let t = |i: usize| i as f32 / (n - 1) as f32;
        let radius = s * rng.range(RADIUS.0, RADIUS.1);
        let margin = radius + s * 0.04;
        let poses = match scene.motion {
            Motion::Left | Motion::Right | Motion::Up | Motion::Down => {
                // Travel most of the way across, with a random extent, in a lane near the
                // middle. With lanes anywhere, the starter model never learned which way
                // "left" goes: where the object is then comes from the noise, and the
                // prompt's direction only shows at the noisiest times, as a faint band.
                let travel = (s * rng.range(0.45, 0.62)).min(s - 2.0 * margin);
                let start = rng.range(margin, s - margin - travel);
                let lane = s * (0.5 + rng.range(-LANE_JITTER, LANE_JITTER));
                (0..frames)
                    .map(|i| {
                        let along = start + travel * t(i);
                        let (x, y) = match scene.motion {
                            Motion::Right => (along, lane),
                            Motion::Left => (s - along, lane),
                            Motion::Down => (lane, along),
                            _ => (lane, s - along),
                        };
                        Pose { x, y, radius }
                    })
                    .collect()
            }
            Motion::Bouncing => {
                // Falls to the floor and rises again, at least once.
                let x = s * (0.5 + rng.range(-LANE_JITTER, LANE_JITTER));
                let floor = s - margin;
                let height = (s * rng.range(0.42, 0.55)).min(floor - margin);
                let bounces = rng.range(1.0, 1.6);
                let phase = rng.range(0.0, 0.15);
                (0..frames)
                    .map(|i| {
                        let a = (std::f32::consts::PI * (bounces * t(i) + phase))
                            .cos()
                            .abs();
                        Pose {
                            x,
                            y: floor - height * a,
                            radius,
                        }
                    })
                    .collect()
            }
            Motion::Growing | Motion::Shrinking => {
                let small = s * rng.range(0.07, 0.1);
                let big = s * rng.range(0.26, 0.32);
                let x = s * 0.5 + rng.range(-0.06, 0.06) * s;
                let y = s * 0.5 + rng.range(-0.06, 0.06) * s;
                (0..frames)
                    .map(|i| {
                        let k = if scene.motion == Motion::Growing {
                            t(i)
                        } else {
                            1.0 - t(i)
                        };
                        Pose {
                            x,
                            y,
                            radius: small + (big - small) * k,
                        }
                    })
                    .collect()
            }
        };
        ClipSpec {
            scene,
            size,
            frames,
            poses,
        }
    }

    /// Where the shape shows, per frame and pixel: how much the coverage of the three shapes
    /// at this clip's poses differs (1 where one shape covers the pixel fully and another
    /// not at all, 0 where all agree). The caption's shape word only matters there.
    pub fn shape_zone(&self) -> Vec<Vec<f32>> {
        self.poses
            .iter()
            .map(|&pose| {
                let covers: Vec<Vec<f32>> = Shape::ALL
                    .iter()
                    .map(|&shape| coverage(self.size, shape, pose))
                    .collect();
                (0..self.size * self.size)
                    .map(|i| {
                        let (lo, hi) = covers
                            .iter()
                            .fold((1f32, 0f32), |(lo, hi), c| (lo.min(c[i]), hi.max(c[i])));
                        hi - lo
                    })
                    .collect()
            })
            .collect()
    }

    /// How much of each pixel the object covers, in [0, 1], per frame (row-major).
    pub fn coverage(&self) -> Vec<Vec<f32>> {
        self.poses
            .iter()
            .map(|&pose| coverage(self.size, self.scene.shape, pose))
            .collect()
    }

    pub fn render(&self) -> Clip {
        self.paint(&self.coverage())
    }

    /// Renders the clip from its coverage (as [`ClipSpec::coverage`] gives it), for callers
    /// that need both.
    pub fn paint(&self, coverage: &[Vec<f32>]) -> Clip {
        let (fg, bg) = (self.scene.colour.rgb(), self.scene.background.rgb());
        let frames = coverage.iter().map(|cover| blend(cover, fg, bg)).collect();
        Clip {
            size: self.size,
            frames,
        }
    }
}

/// Whether point (dx, dy), relative to the object's centre, lies inside the shape.
fn inside(shape: Shape, dx: f32, dy: f32, r: f32) -> bool {
    match shape {
        Shape::Circle => dx * dx + dy * dy <= r * r,
        // As wide as the circle of the same radius, so that the corners stand out.
        Shape::Square => dx.abs() <= r && dy.abs() <= r,
        Shape::Triangle => {
            // Pointing up: apex at the top, flat base at the bottom.
            let top = -r;
            let bottom = r * 0.85;
            if dy < top || dy > bottom {
                return false;
            }
            let half_width = 1.05 * r * (dy - top) / (bottom - top);
            dx.abs() <= half_width
        }
    }
}

/// How much of each pixel of a `size`×`size` frame the shape covers, in [0, 1], row-major.
fn coverage(size: usize, shape: Shape, pose: Pose) -> Vec<f32> {
    let mut out = vec![0f32; size * size];
    let n = SUPERSAMPLE;
    let reach = pose.radius * 1.2 + 1.0;
    for py in 0..size {
        for px in 0..size {
            let cx = px as f32 + 0.5;
            let cy = py as f32 + 0.5;
            if (cx - pose.x).abs() <= reach && (cy - pose.y).abs() <= reach {
                let mut hits = 0;
                for sy in 0..n {
                    for sx in 0..n {
                        let x = px as f32 + (sx as f32 + 0.5) / n as f32;
                        let y = py as f32 + (sy as f32 + 0.5) / n as f32;
                        if inside(shape, x - pose.x, y - pose.y, pose.radius) {
                            hits += 1;
                        }
                    }
                }
                out[py * size + px] = hits as f32 / (n * n) as f32;
            }
        }
    }
    out
}

/// One RGB frame: the object's colour over the background, mixed by coverage.
fn blend(coverage: &[f32], fg: Rgb, bg: Rgb) -> Vec<u8> {
    let mut out = vec![0u8; coverage.len() * 3];
    for (i, &cover) in coverage.iter().enumerate() {
        for c in 0..3 {
            let v = bg[c] as f32 * (1.0 - cover) + fg[c] as f32 * cover;
            out[i * 3 + c] = v.round() as u8;
        }
    }
    out
}

/// Draws a random training scene (never an object on a background of its own colour).
pub fn random_scene(rng: &mut Rng, triples: &[super::vocab::Triple]) -> Scene {
    let t = *rng.pick(triples);
    let backgrounds: Vec<Background> = Background::ALL
        .into_iter()
        .filter(|b| b.allows(t.colour))
        .collect();
    Scene::of(t, *rng.pick(&backgrounds))
}

/// Convenience for tests and examples: one scene from its parts.
pub fn scene(colour: Colour, shape: Shape, motion: Motion, background: Background) -> Scene {
    Scene {
        colour,
        shape,
        motion,
        background,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(seed: u64, motion: Motion) -> ClipSpec {
        let sc = scene(Colour::Red, Shape::Circle, motion, Background::Black);
        ClipSpec::sample(sc, 32, 16, &mut Rng::new(seed))
    }

    #[test]
    fn rendering_is_deterministic_for_a_seed() {
        assert_eq!(
            spec(3, Motion::Left).render(),
            spec(3, Motion::Left).render()
        );
        assert_ne!(
            spec(3, Motion::Left).render(),
            spec(4, Motion::Left).render()
        );
    }

    #[test]
    fn background_and_object_colours_are_exact() {
        let clip = spec(1, Motion::Growing).render();
        let f = &clip.frames[15];
        assert_eq!(&f[0..3], &Background::Black.rgb());
        // The grown object covers the centre region fully.
        let pose = spec(1, Motion::Growing).poses[15];
        let o = ((pose.y as usize) * 32 + pose.x as usize) * 3;
        assert_eq!(&f[o..o + 3], &Colour::Red.rgb());
    }

    #[test]
    fn edges_are_anti_aliased() {
        let clip = spec(2, Motion::Right).render();
        let f = &clip.frames[8];
        let partial = f.chunks(3).filter(|p| p[0] > 0x10 && p[0] < 0xDC).count();
        assert!(partial > 4, "expected blended edge pixels, got {partial}");
    }

    #[test]
    fn motions_move_the_way_they_say() {
        let dx = |m| {
            let p = spec(5, m).poses;
            (
                p[15].x - p[0].x,
                p[15].y - p[0].y,
                p[15].radius - p[0].radius,
            )
        };
        assert!(dx(Motion::Left).0 < -8.0);
        assert!(dx(Motion::Right).0 > 8.0);
        assert!(dx(Motion::Up).1 < -8.0);
        assert!(dx(Motion::Down).1 > 8.0);
        assert!(dx(Motion::Growing).2 > 3.0);
        assert!(dx(Motion::Shrinking).2 < -3.0);
        let ys: Vec<f32> = spec(5, Motion::Bouncing)
            .poses
            .iter()
            .map(|p| p.y)
            .collect();
        let low = ys
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert!(low > 0 && low < 15, "bounce floor at frame {low}");
        let rose = ys[low] - ys[low..].iter().copied().fold(f32::INFINITY, f32::min);
        assert!(ys[low] - ys[0] > 5.0 && rose > 3.0, "{ys:?}");
    }

    #[test]
    fn objects_stay_inside_the_frame() {
        for seed in 0..50 {
            for m in Motion::ALL {
                for p in spec(seed, m).poses {
                    assert!(
                        p.x - p.radius >= 0.0 && p.x + p.radius <= 32.0,
                        "{m:?} {p:?}"
                    );
                    assert!(
                        p.y - p.radius >= 0.0 && p.y + p.radius <= 32.0,
                        "{m:?} {p:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn shape_zone_marks_where_the_shapes_differ() {
        let pose = Pose {
            x: 16.0,
            y: 16.0,
            radius: 6.0,
        };
        let sc = scene(
            Colour::Red,
            Shape::Square,
            Motion::Growing,
            Background::Black,
        );
        let spec = ClipSpec {
            scene: sc,
            size: 32,
            frames: 1,
            poses: vec![pose],
        };
        let zone = &spec.shape_zone()[0];
        let at = |x: usize, y: usize| zone[y * 32 + x];
        // Every shape covers the centre and none the far corner of the frame.
        assert_eq!(at(16, 16), 0.0);
        assert_eq!(at(1, 1), 0.0);
        // A square's corner (r out on both axes) is outside the circle and the triangle.
        assert_eq!(at(11, 11), 1.0);
        // The zone is independent of the clip's own shape: it depends on the pose only.
        let circle = ClipSpec {
            scene: Scene {
                shape: Shape::Circle,
                ..sc
            },
            ..spec.clone()
        };
        assert_eq!(&circle.shape_zone()[0], zone);
        let cover = coverage(32, Shape::Circle, pose);
        assert!(zone.iter().zip(&cover).any(|(z, c)| *z > 0.0 && *c == 0.0));
    }
}
