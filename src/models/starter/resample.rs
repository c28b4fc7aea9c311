//! Resampling native frames to the requested output size with a Catmull–Rom filter.
//!
//! The model is square; a non-square output is made by scaling the square to the shorter
//! side and extending its edges outwards, which on the plain backgrounds of the starter
//! model reads as more of the same background rather than a stretched object.

use image::{RgbImage, imageops};

/// Resamples one native `size`×`size` RGB frame to `width`×`height`.
pub fn resample_frame(native: &[u8], size: u32, width: u32, height: u32) -> RgbImage {
    let src = RgbImage::from_raw(size, size, native.to_vec()).expect("native frame size");
    let side = width.min(height);
    let square = imageops::resize(&src, side, side, imageops::FilterType::CatmullRom);
    if side == width && side == height {
        return square;
    }
    let ox = (width - side) / 2;
    let oy = (height - side) / 2;
    RgbImage::from_fn(width, height, |x, y| {
        let sx = x.saturating_sub(ox).min(side - 1);
        let sy = y.saturating_sub(oy).min(side - 1);
        *square.get_pixel(sx, sy)
    })
}

/// Resamples every frame of a clip.
pub fn resample_clip(frames: &[Vec<u8>], size: u32, width: u32, height: u32) -> Vec<RgbImage> {
    frames
        .iter()
        .map(|f| resample_frame(f, size, width, height))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checker() -> Vec<u8> {
        (0..32 * 32)
            .flat_map(|i| {
                let v = if (i % 32 < 16) == (i / 32 < 16) {
                    200
                } else {
                    20
                };
                [v, v, v]
            })
            .collect()
    }

    #[test]
    fn square_output_keeps_flat_regions_flat() {
        let out = resample_frame(&checker(), 32, 512, 512);
        assert_eq!(out.dimensions(), (512, 512));
        assert_eq!(out.get_pixel(100, 100).0, [200, 200, 200]);
        assert_eq!(out.get_pixel(400, 100).0, [20, 20, 20]);
    }

    #[test]
    fn wide_output_extends_edges_instead_of_stretching() {
        let out = resample_frame(&checker(), 32, 1024, 512);
        assert_eq!(out.dimensions(), (1024, 512));
        // The square sits in the middle; the far left repeats the square's left edge.
        assert_eq!(out.get_pixel(0, 100).0, out.get_pixel(256, 100).0);
        assert_eq!(out.get_pixel(1023, 400).0, out.get_pixel(767, 400).0);
    }
}
