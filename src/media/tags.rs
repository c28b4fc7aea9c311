//! Reads iTunes-style metadata (`moov/udta/meta/ilst`) as the key/value tags ffprobe shows.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::MediaError;

/// Largest moov we are willing to load into memory for tag parsing.
const MAX_MOOV: u64 = 64 << 20;

/// Iterates over the child boxes in `data`: (fourcc, body).
fn children(mut data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 8 {
            return None;
        }
        let size = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = data[4..8].try_into().unwrap();
        let (header, size) = match size {
            0 => (8, data.len()),
            1 if data.len() >= 16 => (
                16,
                u64::from_be_bytes(data[8..16].try_into().unwrap()) as usize,
            ),
            _ => (8, size),
        };
        if size < header || size > data.len() {
            return None;
        }
        let body = &data[header..size];
        data = &data[size..];
        Some((kind, body))
    })
}

fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    children(data).find(|(k, _)| k == kind).map(|(_, b)| b)
}

/// One top-level box: its type, and where its body starts and how long it is.
struct TopBox {
    kind: [u8; 4],
    body: u64,
    len: u64,
}

/// The top-level boxes of the `len`-byte MP4 in `f`, each checked to fit in the file; `path`
/// only names the file in errors.
fn top_level(mut f: impl Read + Seek, len: u64, path: &Path) -> Result<Vec<TopBox>, MediaError> {
    let mut boxes = Vec::new();
    let mut pos = 0u64;
    while pos + 8 <= len {
        let mut h = [0u8; 16];
        f.seek(SeekFrom::Start(pos))
            .map_err(|e| MediaError::io(path, e))?;
        f.read_exact(&mut h[..8])
            .map_err(|e| MediaError::io(path, e))?;
        let mut size = u32::from_be_bytes(h[..4].try_into().unwrap()) as u64;
        let mut header = 8;
        if size == 1 {
            f.read_exact(&mut h[8..])
                .map_err(|e| MediaError::io(path, e))?;
            size = u64::from_be_bytes(h[8..16].try_into().unwrap());
            header = 16;
        } else if size == 0 {
            size = len - pos;
        }
        // `pos + 8 <= len`, so `len - pos` cannot wrap; a 64-bit size can be anything.
        if size < header || size > len - pos {
            return Err(MediaError::container(
                path,
                format!("bad box size {size} at offset {pos}"),
            ));
        }
        boxes.push(TopBox {
            kind: h[4..8].try_into().unwrap(),
            body: pos + header,
            len: size - header,
        });
        pos += size;
    }
    Ok(boxes)
}

/// Reads the body of `b` (a `moov`, bounded by [`MAX_MOOV`]).
fn read_body(mut f: impl Read + Seek, b: &TopBox, path: &Path) -> Result<Vec<u8>, MediaError> {
    if b.len > MAX_MOOV {
        return Err(MediaError::container(path, "moov box is implausibly large"));
    }
    let mut body = vec![0u8; b.len as usize];
    f.seek(SeekFrom::Start(b.body))
        .and_then(|_| f.read_exact(&mut body))
        .map_err(|e| MediaError::io(path, e))?;
    Ok(body)
}

/// Finds the top-level `moov` box of the `len`-byte MP4 in `f` and returns its body; `path`
/// only names the file in errors.
fn read_moov(mut f: impl Read + Seek, len: u64, path: &Path) -> Result<Vec<u8>, MediaError> {
    let boxes = top_level(&mut f, len, path)?;
    match boxes.iter().find(|b| &b.kind == b"moov") {
        Some(moov) => read_body(f, moov, path),
        None => Err(MediaError::container(path, "no moov box")),
    }
}

/// Checks, before the `mp4` crate parses the `len`-byte MP4 in `f`, the box sizes that the
/// crate trusts: in the containers it walks, a box of size 0 made it loop forever, a size
/// below a header's underflowed, and a size past its parent made it read or allocate beyond
/// it. Fragmented files (`moof`) and event messages (`emsg`), which this reader does not
/// support, are refused here too.
pub(crate) fn check_structure(
    mut f: impl Read + Seek,
    len: u64,
    path: &Path,
) -> Result<(), MediaError> {
    for b in top_level(&mut f, len, path)? {
        match &b.kind {
            b"moof" => {
                return Err(MediaError::container(
                    path,
                    "fragmented MP4s (moof boxes) are not supported",
                ));
            }
            // DASH event messages, which belong with fragments; the crate reads their strings
            // past the box and underflows the message size.
            b"emsg" => {
                return Err(MediaError::container(
                    path,
                    "event message (emsg) boxes are not supported",
                ));
            }
            b"moov" => {
                let body = read_body(&mut f, &b, path)?;
                check_tree(b"moov", &body, b.body)
                    .map_err(|reason| MediaError::container(path, reason))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// How many bytes come before the children of a `kind` box inside a `parent` box, when the
/// `mp4` crate walks its children: `None` for boxes it reads as leaves there.
fn children_start(parent: &[u8; 4], kind: &[u8; 4], body: &[u8]) -> Option<usize> {
    // A `meta` box starts with version and flags in ISO files; QuickTime omits them.
    let meta = || {
        if body.get(4..8) == Some(b"hdlr") {
            0
        } else {
            4
        }
    };
    match (parent, kind) {
        (b"moov", b"trak" | b"udta" | b"mvex")
        | (b"trak", b"mdia" | b"edts")
        | (b"mdia", b"minf")
        | (b"minf", b"stbl" | b"dinf")
        | (b"meta", b"ilst")
        | (b"ilst", _) => Some(0),
        (b"moov" | b"trak" | b"udta", b"meta") => Some(meta()),
        // Version, flags and an entry count.
        (b"dinf", b"dref") | (b"stbl", b"stsd") => Some(8),
        _ => None,
    }
}

/// Checks the boxes in `body`, the contents of a `kind` box found at file offset `at`, and
/// recursively those of the containers among them: each has a whole header and a size that
/// fits in what is left of its parent.
fn check_tree(kind: &[u8; 4], body: &[u8], at: u64) -> Result<(), String> {
    let mut pos = 0;
    while pos < body.len() {
        let rest = &body[pos..];
        let offset = at + pos as u64;
        let name = String::from_utf8_lossy(kind);
        let bad = |what: &str| Err(format!("{what} at offset {offset} in a {name} box"));
        if rest.len() < 8 {
            return bad("a truncated box header");
        }
        let (header, size) = match u32::from_be_bytes(rest[..4].try_into().unwrap()) {
            1 if rest.len() >= 16 => (16u64, u64::from_be_bytes(rest[8..16].try_into().unwrap())),
            1 => return bad("a truncated box header"),
            size => (8, u64::from(size)),
        };
        if size < header || size > rest.len() as u64 {
            return bad(&format!("bad box size {size}"));
        }
        let child: [u8; 4] = rest[4..8].try_into().unwrap();
        let child_body = &rest[header as usize..size as usize];
        if let Some(skip) = children_start(kind, &child, child_body) {
            let Some(children) = child_body.get(skip..) else {
                return bad("a box too short for its fields");
            };
            check_tree(&child, children, offset + header + skip as u64)?;
        }
        pos += size as usize;
    }
    Ok(())
}

/// The text of an item's `data` atom, if it holds UTF-8 text (type 1).
fn data_text(item: &[u8]) -> Option<String> {
    let data = child(item, b"data")?;
    if data.len() < 8 || u32::from_be_bytes(data[..4].try_into().unwrap()) != 1 {
        return None;
    }
    Some(String::from_utf8_lossy(&data[8..]).into_owned())
}

/// Name of an ilst item as ffprobe prints it.
fn item_key(kind: &[u8; 4], item: &[u8]) -> Option<String> {
    let key = match kind {
        b"\xa9nam" => "title",
        b"\xa9cmt" => "comment",
        b"\xa9too" => "encoder",
        b"\xa9day" => "date",
        b"\xa9ART" => "artist",
        b"\xa9alb" => "album",
        b"desc" => "description",
        b"----" => {
            // Full boxes: skip version and flags.
            let name = child(item, b"name")?;
            return Some(String::from_utf8_lossy(name.get(4..)?).into_owned());
        }
        _ => return None,
    };
    Some(key.to_string())
}

/// Reads the text tags of the file, in file order. Unknown or non-text items are skipped.
pub(crate) fn read_tags(path: &Path) -> Result<Vec<(String, String)>, MediaError> {
    let f = File::open(path).map_err(|e| MediaError::io(path, e))?;
    let len = f.metadata().map_err(|e| MediaError::io(path, e))?.len();
    read_tags_from(f, len, path)
}

/// [`read_tags`] of the `len`-byte MP4 that `reader` reads from its start; `path` only names
/// it in errors.
pub(crate) fn read_tags_from(
    reader: impl Read + Seek,
    len: u64,
    path: &Path,
) -> Result<Vec<(String, String)>, MediaError> {
    let moov = read_moov(reader, len, path)?;
    let Some(meta) = child(&moov, b"udta").and_then(|u| child(u, b"meta")) else {
        return Ok(Vec::new());
    };
    // `meta` is a full box (4 bytes version/flags) in ISO files; QuickTime omits them.
    let meta = if meta.len() >= 8 && &meta[4..8] == b"hdlr" {
        meta
    } else {
        meta.get(4..).unwrap_or(&[])
    };
    let Some(ilst) = child(meta, b"ilst") else {
        return Ok(Vec::new());
    };
    Ok(children(ilst)
        .filter_map(|(kind, item)| Some((item_key(&kind, item)?, data_text(item)?)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_boxes_and_stops_at_bad_sizes() {
        let data = [
            0, 0, 0, 9, b'a', b'b', b'c', b'd', 7, 0, 0, 0, 99, b'x', b'y', b'z', b'w',
        ];
        let v: Vec<_> = children(&data).collect();
        assert_eq!(v.len(), 1);
        assert_eq!(&v[0].0, b"abcd");
        assert_eq!(v[0].1, &[7]);
    }

    /// A 64-bit box size near 2^64 overflowed `pos + size`.
    #[test]
    fn a_64_bit_box_size_past_the_end_is_a_container_error() {
        let mut data = vec![0, 0, 0, 1, b'f', b'r', b'e', b'e'];
        data.extend_from_slice(&u64::MAX.to_be_bytes());
        data.extend_from_slice(&[0; 16]);
        let len = data.len() as u64;
        let e = read_tags_from(std::io::Cursor::new(data), len, Path::new("big.mp4")).unwrap_err();
        assert!(e.to_string().contains("bad box size"), "{e}");
    }

    #[test]
    fn file_without_moov_is_a_container_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("junk.mp4");
        std::fs::write(&p, [0, 0, 0, 8, b'f', b'r', b'e', b'e']).unwrap();
        let e = read_tags(&p).unwrap_err();
        assert!(e.to_string().contains("no moov box"), "{e}");
        assert!(e.to_string().contains("junk.mp4"), "{e}");
    }
}
