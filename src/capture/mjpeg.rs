//! Motion-JPEG streams: a plain concatenation of JPEG frames, as a V4L2 camera in MJPEG mode
//! delivers them and as `ffmpeg -f mjpeg` writes them (`tests/data/vtest_10s.mjpeg`).
//!
//! Frames are found by walking JPEG segments rather than searching for the EOI marker: `FF D9`
//! can occur inside a segment's payload (an EXIF thumbnail is a whole JPEG with its own EOI), and
//! inside entropy-coded data a literal `FF` is stuffed as `FF 00`, while `FF D0`..`FF D7` are
//! restart markers that do not end the scan.

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const TEM: u8 = 0x01;

/// Split a Motion-JPEG byte stream into its frames, each from its SOI marker through its EOI
/// marker. Bytes between frames are skipped; a frame that is cut off (no EOI before the end of
/// the stream or before the next SOI) or malformed is dropped.
pub fn split_mjpeg(bytes: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    let mut pos = 0;
    while let Some(start) = find_soi(bytes, pos) {
        match frame_end(bytes, start) {
            Ok(end) => {
                frames.push(&bytes[start..end]);
                pos = end;
            }
            // Resume at the point where the walk gave up: a new SOI there starts the next frame.
            Err(resume) => pos = resume,
        }
    }
    frames
}

fn find_soi(bytes: &[u8], from: usize) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(2)
        .position(|w| w == [0xFF, SOI])
        .map(|i| from + i)
}

/// Walk the segments of the JPEG starting with SOI at `start`. `Ok(end)`: the frame is
/// `bytes[start..end]`, ending with EOI. `Err(resume)`: no complete frame; look for the next SOI
/// from `resume` (always beyond `start`).
fn frame_end(bytes: &[u8], start: usize) -> Result<usize, usize> {
    let n = bytes.len();
    let mut p = start + 2;
    loop {
        // A marker: FF, any number of FF fill bytes, then the marker code.
        if p >= n || bytes[p] != 0xFF {
            return Err(p);
        }
        while p < n && bytes[p] == 0xFF {
            p += 1;
        }
        if p >= n {
            return Err(n);
        }
        let marker = bytes[p];
        let marker_at = p - 1;
        p += 1;
        match marker {
            EOI => return Ok(p),
            // A new frame begins before this one ended: this one is truncated.
            SOI => return Err(marker_at),
            // Standalone markers without a length (RSTn outside a scan, TEM).
            0xD0..=0xD7 | TEM => {}
            0x00 => return Err(p),
            _ => {
                // Segment with a big-endian length that counts itself but not the marker.
                if p + 2 > n {
                    return Err(n);
                }
                let len = u16::from_be_bytes([bytes[p], bytes[p + 1]]) as usize;
                if len < 2 || p + len > n {
                    return Err(p);
                }
                p += len;
                if marker == SOS {
                    p = skip_entropy_coded(bytes, p);
                }
            }
        }
    }
}

/// Skip entropy-coded scan data from `p`; returns the position of the marker that ends it
/// (or `bytes.len()`). `FF 00` is a stuffed data byte and `FF D0`..`FF D7` are restart markers
/// inside the scan; `FF` fill bytes may precede a marker.
fn skip_entropy_coded(bytes: &[u8], mut p: usize) -> usize {
    let n = bytes.len();
    while p < n {
        if bytes[p] != 0xFF {
            p += 1;
            continue;
        }
        let mut q = p + 1;
        while q < n && bytes[q] == 0xFF {
            q += 1;
        }
        match bytes.get(q) {
            None => return n,
            Some(0x00) | Some(0xD0..=0xD7) => p = q + 1,
            // Any other marker ends the scan; the caller parses it (fill bytes included).
            Some(_) => return p,
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/vtest_10s.mjpeg");
    const SIDECAR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/vtest_10s.json");

    struct Sidecar {
        frames: usize,
        width: u32,
        height: u32,
    }

    fn sidecar() -> Sidecar {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(SIDECAR).expect("reading sidecar")).unwrap();
        let get = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("sidecar lacks {k}"));
        Sidecar {
            frames: get("frames") as usize,
            width: get("width") as u32,
            height: get("height") as u32,
        }
    }

    fn clip() -> Vec<u8> {
        std::fs::read(CLIP).expect("reading tests/data/vtest_10s.mjpeg")
    }

    fn decode(frame: &[u8]) -> image::DynamicImage {
        image::load_from_memory_with_format(frame, image::ImageFormat::Jpeg).expect("frame decodes")
    }

    #[test]
    fn real_clip_splits_into_sidecar_frame_count_and_every_frame_decodes() {
        let bytes = clip();
        let meta = sidecar();
        let frames = split_mjpeg(&bytes);
        assert_eq!(frames.len(), meta.frames);
        // The frames tile the stream exactly: ffmpeg writes nothing between them.
        assert_eq!(frames.iter().map(|f| f.len()).sum::<usize>(), bytes.len());
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(&f[..2], &[0xFF, SOI], "frame {i} starts with SOI");
            assert_eq!(&f[f.len() - 2..], &[0xFF, EOI], "frame {i} ends with EOI");
            let img = decode(f);
            assert_eq!(
                (img.width(), img.height()),
                (meta.width, meta.height),
                "frame {i}"
            );
        }
    }

    /// Frame `i` of the clip with an APP1 segment after SOI whose payload is frame `j`: a whole
    /// JPEG, EOI included, like an EXIF thumbnail. A search for `FF D9` would cut the frame there.
    fn with_thumbnail(frames: &[&[u8]], i: usize, j: usize) -> Vec<u8> {
        let thumb = frames[j];
        let len = u16::try_from(thumb.len() + 2).expect("thumbnail fits a segment");
        let mut v = vec![0xFF, SOI, 0xFF, 0xE1];
        v.extend_from_slice(&len.to_be_bytes());
        v.extend_from_slice(thumb);
        v.extend_from_slice(&frames[i][2..]);
        v
    }

    #[test]
    fn eoi_inside_a_segment_payload_does_not_end_the_frame() {
        let bytes = clip();
        let frames = split_mjpeg(&bytes);
        let (a, b) = (with_thumbnail(&frames, 0, 1), with_thumbnail(&frames, 2, 3));
        let stream = [a.as_slice(), b.as_slice()].concat();
        let got = split_mjpeg(&stream);
        assert_eq!(got, vec![a.as_slice(), b.as_slice()]);
        // Still the outer picture: decodes like the frame it was made from.
        assert_eq!(decode(got[0]).to_rgb8(), decode(frames[0]).to_rgb8());
    }

    #[test]
    fn junk_between_frames_and_a_truncated_frame_are_skipped() {
        let bytes = clip();
        let frames = split_mjpeg(&bytes);
        let mut stream = b"\x00\x12junk\xFF\xFF".to_vec();
        stream.extend_from_slice(frames[0]);
        stream.extend_from_slice(b"\xFF\x00more junk");
        // A frame cut off mid-scan, then a complete one: the complete one survives.
        stream.extend_from_slice(&frames[1][..frames[1].len() / 2]);
        stream.extend_from_slice(frames[2]);
        // A frame cut off at the end of the stream.
        stream.extend_from_slice(&frames[3][..frames[3].len() - 1]);
        assert_eq!(split_mjpeg(&stream), vec![frames[0], frames[2]]);
    }

    #[test]
    fn camera_stills_with_exif_split_back_into_the_files() {
        // Photos from real cameras (JFIF + EXIF APP segments), not ffmpeg output.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
        let files: Vec<Vec<u8>> = ["person.jpg", "dog.jpg", "horses.jpg", "eagle.jpg"]
            .iter()
            .map(|f| std::fs::read(format!("{dir}/{f}")).expect("reading still"))
            .collect();
        let stream = files.concat();
        let got = split_mjpeg(&stream);
        assert_eq!(got.len(), files.len());
        for (g, f) in got.iter().zip(&files) {
            assert_eq!(*g, f.as_slice());
        }
    }

    #[test]
    fn stuffed_bytes_restart_markers_and_fill_bytes_in_a_scan() {
        // Not a decodable image: exercises the segment walk only.
        let frame: &[u8] = &[
            0xFF, SOI, // SOI
            0xFF, 0xDB, 0x00, 0x04, 0xFF, EOI, // a DQT-like segment whose payload is FF D9
            0xFF, SOS, 0x00, 0x03, 0x01, // SOS header
            0x12, 0xFF, 0x00, 0xD9, // stuffed FF, then a D9 data byte
            0xFF, 0xD0, 0x34, 0xFF, 0xD7, 0x56, // restart markers inside the scan
            0xFF, 0xFF, 0xFF, EOI, // fill bytes before EOI
        ];
        let mut stream = frame.to_vec();
        stream.extend_from_slice(frame);
        assert_eq!(split_mjpeg(&stream), vec![frame, frame]);
        // Shorter prefixes never yield a frame.
        for cut in 0..frame.len() {
            assert!(split_mjpeg(&frame[..cut]).is_empty(), "prefix {cut}");
        }
    }

    #[test]
    fn empty_and_markerless_input() {
        assert!(split_mjpeg(&[]).is_empty());
        assert!(split_mjpeg(&[0xFF]).is_empty());
        assert!(split_mjpeg(&[0xFF, SOI]).is_empty());
        assert!(split_mjpeg(b"no jpeg here").is_empty());
    }
}
