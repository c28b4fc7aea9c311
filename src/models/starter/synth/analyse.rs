//! The clip analyser: reads background, object colour, shape and motion back out of frames.

use image::RgbImage;

use super::vocab::{Background, Colour, Motion, Rgb, Shape};

/// What the analyser saw in a clip.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub background: Background,
    /// None when no object could be found.
    pub colour: Option<Colour>,
    pub shape: Option<Shape>,
    pub motion: Option<Motion>,
    /// Mean jump of the object's mean colour between consecutive frames (RGB units, 0–441).
    pub flicker: f32,
    /// Per-frame object track in normalised coordinates: (x, y, area fraction).
    pub track: Vec<(f32, f32, f32)>,
}

fn dist(a: [f32; 3], b: Rgb) -> f32 {
    let d: f32 = (0..3).map(|i| (a[i] - b[i] as f32).powi(2)).sum();
    d.sqrt()
}

fn px(img: &RgbImage, x: u32, y: u32) -> [f32; 3] {
    let p = img.get_pixel(x, y).0;
    [p[0] as f32, p[1] as f32, p[2] as f32]
}

fn median(mut v: Vec<f32>) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f32::total_cmp);
    v[v.len() / 2]
}

/// The background: the palette entry nearest the median colour of all border pixels.
fn background_of(frames: &[RgbImage]) -> (Background, [f32; 3]) {
    let mut ch: [Vec<f32>; 3] = Default::default();
    for f in frames {
        let (w, h) = f.dimensions();
        let border = (0..w)
            .flat_map(|x| [(x, 0), (x, h - 1)])
            .chain((0..h).flat_map(|y| [(0, y), (w - 1, y)]));
        for (x, y) in border {
            let p = px(f, x, y);
            for c in 0..3 {
                ch[c].push(p[c]);
            }
        }
    }
    let m = [
        median(ch[0].clone()),
        median(ch[1].clone()),
        median(ch[2].clone()),
    ];
    let bg = Background::ALL
        .into_iter()
        .min_by(|a, b| dist(m, a.rgb()).total_cmp(&dist(m, b.rgb())))
        .unwrap();
    (bg, m)
}

struct FrameStats {
    area: f32,
    cx: f32,
    cy: f32,
    /// Bounding box of confidently covered pixels, normalised.
    bbox: (f32, f32, f32, f32),
    /// Share of covered mass in the lower half of the bounding box.
    lower_share: f32,
    touches_edge: bool,
    mean_colour: [f32; 3],
}

/// Coverage of one pixel by the object, by projecting it onto the bg → object colour line.
fn coverage(p: [f32; 3], bg: [f32; 3], obj: Rgb) -> f32 {
    let d: [f32; 3] = std::array::from_fn(|i| obj[i] as f32 - bg[i]);
    let len2: f32 = d.iter().map(|x| x * x).sum();
    if len2 < 1.0 {
        return 0.0;
    }
    let dot: f32 = (0..3).map(|i| (p[i] - bg[i]) * d[i]).sum();
    (dot / len2).clamp(0.0, 1.0)
}

fn frame_stats(f: &RgbImage, bg: [f32; 3], obj: Rgb) -> FrameStats {
    let (w, h) = f.dimensions();
    let (mut area, mut sx, mut sy) = (0.0f32, 0.0f32, 0.0f32);
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0u32, 0u32);
    let mut colour_sum = [0.0f32; 3];
    let mut colour_n = 0.0f32;
    for y in 0..h {
        for x in 0..w {
            let p = px(f, x, y);
            let c = coverage(p, bg, obj);
            if c < 0.08 {
                continue;
            }
            area += c;
            sx += c * (x as f32 + 0.5);
            sy += c * (y as f32 + 0.5);
            if c > 0.5 {
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x);
                y1 = y1.max(y);
            }
            if c > 0.9 {
                for i in 0..3 {
                    colour_sum[i] += p[i];
                }
                colour_n += 1.0;
            }
        }
    }
    let (wf, hf) = (w as f32, h as f32);
    let (cx, cy) = if area > 0.0 {
        (sx / area / wf, sy / area / hf)
    } else {
        (0.5, 0.5)
    };
    let mut lower = 0.0;
    let mut total = 0.0;
    if x1 >= x0 && y1 >= y0 {
        let mid = (y0 + y1 + 1) as f32 / 2.0;
        for y in y0..=y1 {
            for x in x0..=x1 {
                let c = coverage(px(f, x, y), bg, obj);
                total += c;
                if y as f32 + 0.5 > mid {
                    lower += c;
                }
            }
        }
    }
    let touches_edge = x1 >= x0 && (x0 == 0 || y0 == 0 || x1 == w - 1 || y1 == h - 1);
    FrameStats {
        area: area / (wf * hf),
        cx,
        cy,
        bbox: if x1 >= x0 {
            (
                x0 as f32 / wf,
                y0 as f32 / hf,
                (x1 + 1) as f32 / wf,
                (y1 + 1) as f32 / hf,
            )
        } else {
            (0.0, 0.0, 0.0, 0.0)
        },
        lower_share: if total > 0.0 { lower / total } else { 0.5 },
        touches_edge,
        mean_colour: if colour_n > 0.0 {
            colour_sum.map(|s| s / colour_n)
        } else {
            [f32::NAN; 3]
        },
    }
}

/// The object's colour: palette entry nearest the median of clearly non-background pixels.
fn object_colour(frames: &[RgbImage], bg: [f32; 3], background: Background) -> Option<Colour> {
    let mut ch: [Vec<f32>; 3] = Default::default();
    for f in frames {
        for p in f.pixels() {
            let p = [p.0[0] as f32, p.0[1] as f32, p.0[2] as f32];
            let d: f32 = (0..3).map(|i| (p[i] - bg[i]).powi(2)).sum::<f32>().sqrt();
            if d > 60.0 {
                for c in 0..3 {
                    ch[c].push(p[c]);
                }
            }
        }
    }
    let total: usize = frames
        .iter()
        .map(|f| f.width() as usize * f.height() as usize)
        .sum();
    if ch[0].len() < total / 2000 + 1 {
        return None;
    }
    let m = [
        median(ch[0].clone()),
        median(ch[1].clone()),
        median(ch[2].clone()),
    ];
    Colour::ALL
        .into_iter()
        .filter(|c| background.allows(*c))
        .min_by(|a, b| dist(m, a.rgb()).total_cmp(&dist(m, b.rgb())))
}

fn classify_shape(stats: &[FrameStats]) -> Option<Shape> {
    let mut votes = [0usize; 3];
    for s in stats {
        let (x0, y0, x1, y1) = s.bbox;
        let box_area = (x1 - x0) * (y1 - y0);
        if s.touches_edge || box_area <= 0.0 || s.area < 0.004 {
            continue;
        }
        let fill = s.area / box_area;
        let shape = if s.lower_share > 0.64 || fill < 0.6 {
            Shape::Triangle
        } else if fill > 0.88 {
            Shape::Square
        } else {
            Shape::Circle
        };
        votes[Shape::ALL.iter().position(|&x| x == shape).unwrap()] += 1;
    }
    let (i, &n) = votes.iter().enumerate().max_by_key(|(_, n)| **n)?;
    (n > 0).then_some(Shape::ALL[i])
}

fn mean(v: &[f32]) -> f32 {
    v.iter().sum::<f32>() / v.len().max(1) as f32
}

fn classify_motion(stats: &[FrameStats]) -> Option<Motion> {
    let n = stats.len();
    if n < 4 || stats.iter().all(|s| s.area < 0.002) {
        return None;
    }
    let k = (n / 5).max(1);
    let head = &stats[..k];
    let tail = &stats[n - k..];
    let a0 = mean(&head.iter().map(|s| s.area).collect::<Vec<_>>()).max(1e-4);
    let a1 = mean(&tail.iter().map(|s| s.area).collect::<Vec<_>>()).max(1e-4);
    let dx = mean(&tail.iter().map(|s| s.cx).collect::<Vec<_>>())
        - mean(&head.iter().map(|s| s.cx).collect::<Vec<_>>());
    let dy = mean(&tail.iter().map(|s| s.cy).collect::<Vec<_>>())
        - mean(&head.iter().map(|s| s.cy).collect::<Vec<_>>());
    let ys: Vec<f32> = stats.iter().map(|s| s.cy).collect();
    // A bounce: the object goes down to a low point inside the clip and comes back up.
    let (low_i, low_y) = ys
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    let fell = low_y - ys[..=low_i].iter().copied().fold(f32::INFINITY, f32::min);
    let rose = low_y - ys[low_i..].iter().copied().fold(f32::INFINITY, f32::min);
    let moved = dx.abs().max(dy.abs());
    if fell > 0.12 && rose > 0.08 && low_i > 0 && low_i < n - 1 && dx.abs() < 0.15 {
        return Some(Motion::Bouncing);
    }
    if a1 / a0 > 2.0 && moved < 0.15 {
        return Some(Motion::Growing);
    }
    if a0 / a1 > 2.0 && moved < 0.15 {
        return Some(Motion::Shrinking);
    }
    if moved < 0.15 {
        return None;
    }
    Some(if dx.abs() >= dy.abs() {
        if dx < 0.0 {
            Motion::Left
        } else {
            Motion::Right
        }
    } else if dy < 0.0 {
        Motion::Up
    } else {
        Motion::Down
    })
}

/// Analyses the frames of one clip.
pub fn analyse(frames: &[RgbImage]) -> Analysis {
    let (background, bg) = background_of(frames);
    let colour = object_colour(frames, bg, background);
    let Some(colour) = colour else {
        return Analysis {
            background,
            colour: None,
            shape: None,
            motion: None,
            flicker: 0.0,
            track: Vec::new(),
        };
    };
    let stats: Vec<FrameStats> = frames
        .iter()
        .map(|f| frame_stats(f, bg, colour.rgb()))
        .collect();
    let jumps: Vec<f32> = stats
        .windows(2)
        .filter(|w| !w[0].mean_colour[0].is_nan() && !w[1].mean_colour[0].is_nan())
        .map(|w| {
            (0..3)
                .map(|i| (w[1].mean_colour[i] - w[0].mean_colour[i]).powi(2))
                .sum::<f32>()
                .sqrt()
        })
        .collect();
    Analysis {
        background,
        colour: Some(colour),
        shape: classify_shape(&stats),
        motion: classify_motion(&stats),
        flicker: mean(&jumps),
        track: stats.iter().map(|s| (s.cx, s.cy, s.area)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::starter::synth::render::ClipSpec;
    use crate::models::starter::synth::vocab::Scene;
    use crate::rng::Rng;

    fn frames_of(spec: &ClipSpec) -> Vec<RgbImage> {
        let clip = spec.render();
        clip.frames
            .into_iter()
            .map(|f| RgbImage::from_raw(clip.size as u32, clip.size as u32, f).unwrap())
            .collect()
    }

    /// The analyser must read the renderer's ground truth back almost perfectly.
    #[test]
    fn analyser_recovers_rendered_labels() {
        let mut rng = Rng::new(42);
        let (mut n, mut ok_c, mut ok_b, mut ok_s, mut ok_m) = (0, 0, 0, 0, 0);
        for scene in Scene::all() {
            let a = analyse(&frames_of(&ClipSpec::sample(scene, 32, 16, &mut rng)));
            n += 1;
            ok_b += (a.background == scene.background) as usize;
            ok_c += (a.colour == Some(scene.colour)) as usize;
            ok_s += (a.shape == Some(scene.shape)) as usize;
            ok_m += (a.motion == Some(scene.motion)) as usize;
            assert!(
                a.flicker < 6.0,
                "rendered clips do not flicker: {}",
                a.flicker
            );
        }
        let pct = |k: usize| k as f64 / n as f64;
        eprintln!("n {n} bg {ok_b} colour {ok_c} shape {ok_s} motion {ok_m}");
        assert_eq!(ok_b, n);
        assert_eq!(ok_c, n);
        assert!(pct(ok_s) > 0.95, "shape {}", pct(ok_s));
        assert!(pct(ok_m) > 0.97, "motion {}", pct(ok_m));
    }

    #[test]
    fn blank_clip_has_no_object() {
        let f = RgbImage::from_pixel(32, 32, image::Rgb(Background::Gray.rgb()));
        let a = analyse(&vec![f; 16]);
        assert_eq!(a.background, Background::Gray);
        assert_eq!(a.colour, None);
        assert_eq!(a.motion, None);
    }

    /// `eval` analyses clips resampled to its output size, so the analyser must read
    /// resampled renders back as well as native ones.
    #[test]
    fn analyser_recovers_labels_after_resampling_to_the_eval_size() {
        let mut rng = Rng::new(43);
        let (mut n, mut ok_s, mut ok_m) = (0, 0, 0);
        let mut wrong = std::collections::BTreeMap::new();
        for scene in Scene::all().into_iter().step_by(4) {
            let clip = ClipSpec::sample(scene, 32, 16, &mut rng).render();
            let frames =
                crate::models::starter::resample::resample_clip(&clip.frames, 32, 256, 256);
            let a = analyse(&frames);
            n += 1;
            ok_s += (a.shape == Some(scene.shape)) as usize;
            ok_m += (a.motion == Some(scene.motion)) as usize;
            if a.shape != Some(scene.shape) {
                *wrong
                    .entry(format!("{:?}->{:?}", scene.shape, a.shape))
                    .or_insert(0) += 1;
            }
        }
        eprintln!("n {n} shape {ok_s} motion {ok_m} {wrong:?}");
        assert!(ok_s as f64 > 0.95 * n as f64, "shape {ok_s}/{n}: {wrong:?}");
        assert!(ok_m as f64 > 0.97 * n as f64, "motion {ok_m}/{n}");
    }
}
