//! A small MP4 (ISO BMFF) muxer for one H.264 track, "faststart" (moov before mdat),
//! with iTunes-style metadata (`moov/udta/meta/ilst`) that ffprobe shows as format tags.

use super::h264::EncodedStream;

/// Reverse-DNS "mean" of our freeform (`----`) metadata items.
pub(crate) const FREEFORM_MEAN: &str = "com.aivideo";

/// Metadata written into `ilst`.
pub(crate) struct Tags<'a> {
    /// `©nam`, shown by ffprobe as `title`.
    pub title: &'a str,
    /// `©cmt`, shown by ffprobe as `comment`.
    pub comment: &'a str,
    /// `©too`, shown by ffprobe as `encoder`.
    pub encoder: &'a str,
    /// Freeform `----` items (mean [`FREEFORM_MEAN`], name = key), shown by ffprobe under the key.
    pub extra: &'a [(String, String)],
}

fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + body.len());
    v.extend_from_slice(&((8 + body.len()) as u32).to_be_bytes());
    v.extend_from_slice(kind);
    v.extend_from_slice(body);
    v
}

fn full_box(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + body.len());
    b.push(version);
    b.extend_from_slice(&flags.to_be_bytes()[1..]);
    b.extend_from_slice(body);
    bx(kind, &b)
}

fn be32(x: u32) -> [u8; 4] {
    x.to_be_bytes()
}

fn be16(x: u16) -> [u8; 2] {
    x.to_be_bytes()
}

/// The identity transformation matrix used by mvhd and tkhd.
fn matrix() -> Vec<u8> {
    [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000]
        .iter()
        .flat_map(|x| x.to_be_bytes())
        .collect()
}

fn ftyp() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"isom");
    b.extend_from_slice(&be32(0x200));
    for brand in [b"isom", b"iso2", b"avc1", b"mp41"] {
        b.extend_from_slice(brand);
    }
    bx(b"ftyp", &b)
}

fn mvhd(duration_ms: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&be32(0)); // creation time
    b.extend_from_slice(&be32(0)); // modification time
    b.extend_from_slice(&be32(1000)); // timescale
    b.extend_from_slice(&be32(duration_ms));
    b.extend_from_slice(&be32(0x0001_0000)); // rate 1.0
    b.extend_from_slice(&be16(0x0100)); // volume 1.0
    b.extend_from_slice(&[0; 10]);
    b.extend_from_slice(&matrix());
    b.extend_from_slice(&[0; 24]); // pre_defined
    b.extend_from_slice(&be32(2)); // next track id
    full_box(b"mvhd", 0, 0, &b)
}

fn tkhd(duration_ms: u32, width: u32, height: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&be32(0));
    b.extend_from_slice(&be32(0));
    b.extend_from_slice(&be32(1)); // track id
    b.extend_from_slice(&be32(0));
    b.extend_from_slice(&be32(duration_ms));
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&be16(0)); // layer
    b.extend_from_slice(&be16(0)); // alternate group
    b.extend_from_slice(&be16(0)); // volume (video)
    b.extend_from_slice(&be16(0));
    b.extend_from_slice(&matrix());
    b.extend_from_slice(&be32(width << 16));
    b.extend_from_slice(&be32(height << 16));
    full_box(b"tkhd", 0, 0x3, &b) // enabled | in movie
}

fn mdhd(timescale: u32, duration: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&be32(0));
    b.extend_from_slice(&be32(0));
    b.extend_from_slice(&be32(timescale));
    b.extend_from_slice(&be32(duration));
    b.extend_from_slice(&be16(0x55c4)); // language "und"
    b.extend_from_slice(&be16(0));
    full_box(b"mdhd", 0, 0, &b)
}

fn hdlr(handler: &[u8; 4], name: &str, reserved0: &[u8; 4]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&be32(0));
    b.extend_from_slice(handler);
    b.extend_from_slice(reserved0);
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(name.as_bytes());
    b.push(0);
    full_box(b"hdlr", 0, 0, &b)
}

fn avc1(width: u32, height: u32, sps: &[u8], pps: &[u8]) -> Vec<u8> {
    let mut avcc = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
    avcc.extend_from_slice(&be16(sps.len() as u16));
    avcc.extend_from_slice(sps);
    avcc.push(1);
    avcc.extend_from_slice(&be16(pps.len() as u16));
    avcc.extend_from_slice(pps);

    let mut colr = b"nclx".to_vec(); // BT.601 (SMPTE 170M), limited range
    colr.extend_from_slice(&be16(6));
    colr.extend_from_slice(&be16(6));
    colr.extend_from_slice(&be16(6));
    colr.push(0);

    let mut b = Vec::new();
    b.extend_from_slice(&[0; 6]);
    b.extend_from_slice(&be16(1)); // data reference index
    b.extend_from_slice(&[0; 16]);
    b.extend_from_slice(&be16(width as u16));
    b.extend_from_slice(&be16(height as u16));
    b.extend_from_slice(&be32(0x0048_0000)); // 72 dpi
    b.extend_from_slice(&be32(0x0048_0000));
    b.extend_from_slice(&be32(0));
    b.extend_from_slice(&be16(1)); // frame count
    let mut compressor = [0u8; 32];
    let name = b"aivideo/OpenH264";
    compressor[0] = name.len() as u8;
    compressor[1..=name.len()].copy_from_slice(name);
    b.extend_from_slice(&compressor);
    b.extend_from_slice(&be16(0x18)); // depth
    b.extend_from_slice(&be16(0xffff)); // pre_defined = -1
    b.extend_from_slice(&bx(b"avcC", &avcc));
    b.extend_from_slice(&bx(b"colr", &colr));
    b.extend_from_slice(&bx(b"pasp", &[be32(1), be32(1)].concat()));
    bx(b"avc1", &b)
}

fn stbl(width: u32, height: u32, stream: &EncodedStream, delta: u32, data_offset: u32) -> Vec<u8> {
    let n = stream.samples.len() as u32;
    let stsd = full_box(
        b"stsd",
        0,
        0,
        &[&be32(1)[..], &avc1(width, height, &stream.sps, &stream.pps)].concat(),
    );
    let stts = full_box(b"stts", 0, 0, &[be32(1), be32(n), be32(delta)].concat());
    let sync: Vec<u32> = (1..=n)
        .filter(|&i| stream.samples[i as usize - 1].is_sync)
        .collect();
    let mut stss = be32(sync.len() as u32).to_vec();
    sync.iter().for_each(|i| stss.extend_from_slice(&be32(*i)));
    // A single chunk holds every sample.
    let stsc = full_box(
        b"stsc",
        0,
        0,
        &[be32(1), be32(1), be32(n), be32(1)].concat(),
    );
    let mut stsz = [be32(0), be32(n)].concat();
    for s in &stream.samples {
        stsz.extend_from_slice(&be32(s.data.len() as u32));
    }
    let stco = full_box(b"stco", 0, 0, &[be32(1), be32(data_offset)].concat());
    let body = [
        stsd,
        stts,
        full_box(b"stss", 0, 0, &stss),
        stsc,
        full_box(b"stsz", 0, 0, &stsz),
        stco,
    ]
    .concat();
    bx(b"stbl", &body)
}

fn data_atom(value: &str) -> Vec<u8> {
    // Type 1 = UTF-8 text, locale 0.
    bx(
        b"data",
        &[&be32(1)[..], &be32(0), value.as_bytes()].concat(),
    )
}

fn udta(tags: &Tags) -> Vec<u8> {
    let mut items = Vec::new();
    for (kind, value) in [
        (b"\xa9nam", tags.title),
        (b"\xa9cmt", tags.comment),
        (b"\xa9too", tags.encoder),
    ] {
        if !value.is_empty() {
            items.extend_from_slice(&bx(kind, &data_atom(value)));
        }
    }
    for (key, value) in tags.extra {
        let body = [
            full_box(b"mean", 0, 0, FREEFORM_MEAN.as_bytes()),
            full_box(b"name", 0, 0, key.as_bytes()),
            data_atom(value),
        ]
        .concat();
        items.extend_from_slice(&bx(b"----", &body));
    }
    let meta_body = [hdlr(b"mdir", "", b"appl"), bx(b"ilst", &items)].concat();
    bx(b"udta", &full_box(b"meta", 0, 0, &meta_body))
}

fn moov(
    width: u32,
    height: u32,
    fps: u32,
    stream: &EncodedStream,
    tags: &Tags,
    data_offset: u32,
) -> Vec<u8> {
    let timescale = fps * 1000;
    let delta = 1000;
    let n = stream.samples.len() as u64;
    let media_duration = (n * delta as u64) as u32;
    let duration_ms = (n * 1000 / fps as u64) as u32;
    let dinf = bx(
        b"dinf",
        &full_box(
            b"dref",
            0,
            0,
            &[&be32(1)[..], &full_box(b"url ", 0, 1, &[])].concat(),
        ),
    );
    let vmhd = full_box(b"vmhd", 0, 1, &[0; 8]);
    let minf = bx(
        b"minf",
        &[vmhd, dinf, stbl(width, height, stream, delta, data_offset)].concat(),
    );
    let mdia = bx(
        b"mdia",
        &[
            mdhd(timescale, media_duration),
            hdlr(b"vide", "VideoHandler", &[0; 4]),
            minf,
        ]
        .concat(),
    );
    let trak = bx(b"trak", &[tkhd(duration_ms, width, height), mdia].concat());
    bx(b"moov", &[mvhd(duration_ms), trak, udta(tags)].concat())
}

/// Builds the complete file: ftyp, moov, mdat (in that order).
pub(crate) fn mux(
    width: u32,
    height: u32,
    fps: u32,
    stream: &EncodedStream,
    tags: &Tags,
) -> Result<Vec<u8>, String> {
    if stream.samples.is_empty() {
        return Err("no samples to mux".into());
    }
    let ftyp = ftyp();
    // moov's size does not depend on the chunk offset, so build it once to measure.
    let moov_len = moov(width, height, fps, stream, tags, 0).len();
    let payload: usize = stream.samples.iter().map(|s| s.data.len()).sum();
    let data_offset = ftyp.len() + moov_len + 8;
    let total = data_offset + payload;
    let data_offset32 = u32::try_from(data_offset).map_err(|_| "metadata too large")?;
    if u32::try_from(total).is_err() {
        return Err(format!(
            "encoded video too large for a 32-bit MP4 ({total} bytes)"
        ));
    }
    let moov = moov(width, height, fps, stream, tags, data_offset32);
    debug_assert_eq!(moov.len(), moov_len);
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&ftyp);
    out.extend_from_slice(&moov);
    out.extend_from_slice(&be32((8 + payload) as u32));
    out.extend_from_slice(b"mdat");
    for s in &stream.samples {
        out.extend_from_slice(&s.data);
    }
    Ok(out)
}
