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

/// Finds the top-level `moov` box of the `len`-byte MP4 in `f` and returns its body; `path`
/// only names the file in errors.
fn read_moov(mut f: impl Read + Seek, len: u64, path: &Path) -> Result<Vec<u8>, MediaError> {
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
        if size < header || pos + size > len {
            return Err(MediaError::container(
                path,
                format!("bad box size {size} at offset {pos}"),
            ));
        }
        if &h[4..8] == b"moov" {
            if size - header > MAX_MOOV {
                return Err(MediaError::container(path, "moov box is implausibly large"));
            }
            let mut body = vec![0u8; (size - header) as usize];
            f.read_exact(&mut body)
                .map_err(|e| MediaError::io(path, e))?;
            return Ok(body);
        }
        pos += size;
    }
    Err(MediaError::container(path, "no moov box"))
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
