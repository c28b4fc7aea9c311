//! BT.601 limited-range conversion between RGB and planar YUV 4:2:0 (I420).

use image::RgbImage;

/// An I420 picture: full-size Y plane, U and V planes subsampled 2x2, tightly packed.
pub(crate) struct Yuv420 {
    pub width: usize,
    pub height: usize,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

fn clamp_u8(x: i32) -> u8 {
    x.clamp(0, 255) as u8
}

/// Converts an RGB image with even width and height to I420.
///
/// Luma: Y = 16 + (65.738 R + 129.057 G + 25.064 B) / 256. Chroma is computed from
/// the average of each 2x2 block of RGB pixels. Fixed point with rounding.
pub(crate) fn rgb_to_yuv420(img: &RgbImage) -> Yuv420 {
    let (w, h) = (img.width() as usize, img.height() as usize);
    debug_assert!(w % 2 == 0 && h % 2 == 0);
    let (cw, ch) = (w / 2, h / 2);
    let src = img.as_raw();
    let mut y = vec![0u8; w * h];
    let mut u = vec![0u8; cw * ch];
    let mut v = vec![0u8; cw * ch];
    for (i, px) in src.chunks_exact(3).enumerate() {
        let (r, g, b) = (px[0] as i32, px[1] as i32, px[2] as i32);
        // Coefficients scaled by 2^16: 0.256788, 0.504129, 0.097906.
        y[i] = clamp_u8(16 + ((16829 * r + 33039 * g + 6416 * b + 32768) >> 16));
    }
    for cy in 0..ch {
        for cx in 0..cw {
            let mut sum = [0i32; 3];
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let o = ((2 * cy + dy) * w + 2 * cx + dx) * 3;
                for c in 0..3 {
                    sum[c] += src[o + c] as i32;
                }
            }
            // Sums of four pixels: divide by 4 inside the shift (>> 18 instead of >> 16).
            let [r, g, b] = sum;
            let cb = (-9714 * r - 19070 * g + 28784 * b + (1 << 17)) >> 18;
            let cr = (28784 * r - 24103 * g - 4681 * b + (1 << 17)) >> 18;
            u[cy * cw + cx] = clamp_u8(128 + cb);
            v[cy * cw + cx] = clamp_u8(128 + cr);
        }
    }
    Yuv420 {
        width: w,
        height: h,
        y,
        u,
        v,
    }
}

/// Converts I420 planes with the given strides back to RGB (nearest chroma sample).
pub(crate) fn yuv420_to_rgb(
    (w, h): (usize, usize),
    (y, u, v): (&[u8], &[u8], &[u8]),
    (ys, us, vs): (usize, usize, usize),
) -> RgbImage {
    let mut out = vec![0u8; w * h * 3];
    for row in 0..h {
        for col in 0..w {
            let yy = (y[row * ys + col] as i32 - 16) * 76309; // 1.164384 * 2^16
            let cb = u[(row / 2) * us + col / 2] as i32 - 128;
            let cr = v[(row / 2) * vs + col / 2] as i32 - 128;
            let r = (yy + 104597 * cr + 32768) >> 16; // 1.596027
            let g = (yy - 25675 * cb - 53279 * cr + 32768) >> 16; // 0.391762, 0.812968
            let b = (yy + 132201 * cb + 32768) >> 16; // 2.017232
            let o = (row * w + col) * 3;
            out[o] = clamp_u8(r);
            out[o + 1] = clamp_u8(g);
            out[o + 2] = clamp_u8(b);
        }
    }
    RgbImage::from_raw(w as u32, h as u32, out).expect("buffer size matches dimensions")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(r: u8, g: u8, b: u8) -> RgbImage {
        RgbImage::from_pixel(4, 4, image::Rgb([r, g, b]))
    }

    #[test]
    fn reference_colours_match_bt601_limited_range() {
        // Expected values from the BT.601 limited-range equations.
        let cases = [
            ([0, 0, 0], [16, 128, 128]),
            ([255, 255, 255], [235, 128, 128]),
            ([255, 0, 0], [81, 90, 240]),
            ([0, 255, 0], [145, 54, 34]),
            ([0, 0, 255], [41, 240, 110]),
        ];
        for (rgb, yuv) in cases {
            let p = rgb_to_yuv420(&solid(rgb[0], rgb[1], rgb[2]));
            assert_eq!([p.y[0], p.u[0], p.v[0]], yuv, "rgb {rgb:?}");
            assert!(p.y.iter().all(|&x| x == yuv[0]));
        }
    }

    #[test]
    fn chroma_is_the_2x2_average() {
        let mut img = RgbImage::new(2, 2);
        img.put_pixel(0, 0, image::Rgb([255, 0, 0]));
        img.put_pixel(1, 0, image::Rgb([255, 0, 0]));
        img.put_pixel(0, 1, image::Rgb([0, 0, 255]));
        img.put_pixel(1, 1, image::Rgb([0, 0, 255]));
        let p = rgb_to_yuv420(&img);
        let avg = rgb_to_yuv420(&solid(128, 0, 128)); // (255+0)/2 ~ 127.5
        assert!((p.u[0] as i32 - avg.u[0] as i32).abs() <= 1);
        assert!((p.v[0] as i32 - avg.v[0] as i32).abs() <= 1);
    }

    #[test]
    fn round_trip_is_close_for_flat_colours() {
        for rgb in [[0u8, 0, 0], [255, 255, 255], [200, 30, 90], [12, 180, 250]] {
            let img = solid(rgb[0], rgb[1], rgb[2]);
            let p = rgb_to_yuv420(&img);
            let back = yuv420_to_rgb((4, 4), (&p.y, &p.u, &p.v), (4, 2, 2));
            for (a, b) in img.as_raw().iter().zip(back.as_raw()) {
                assert!(
                    (*a as i32 - *b as i32).abs() <= 2,
                    "{rgb:?} -> {:?}",
                    back.get_pixel(0, 0)
                );
            }
        }
    }
}
