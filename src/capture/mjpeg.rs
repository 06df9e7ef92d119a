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
            Walk::Frame(end) => {
                frames.push(&bytes[start..end]);
                pos = end;
            }
            // Resume at the point where the walk gave up: a new SOI there starts the next frame.
            Walk::Bad(resume) | Walk::Short(resume) => pos = resume,
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

/// What the walk over one JPEG found.
#[derive(Debug, PartialEq, Eq)]
enum Walk {
    /// The frame is `bytes[start..end]`, ending with EOI.
    Frame(usize),
    /// Malformed: no frame here; look for the next SOI from the position given (always beyond
    /// `start`).
    Bad(usize),
    /// The bytes ended before the frame did: a stream reader waits for more, a complete buffer
    /// resumes the SOI search from the position given.
    Short(usize),
}

/// Walk the segments of the JPEG starting with SOI at `start`.
fn frame_end(bytes: &[u8], start: usize) -> Walk {
    let n = bytes.len();
    let mut p = start + 2;
    loop {
        // A marker: FF, any number of FF fill bytes, then the marker code.
        if p >= n {
            return Walk::Short(p);
        }
        if bytes[p] != 0xFF {
            return Walk::Bad(p);
        }
        while p < n && bytes[p] == 0xFF {
            p += 1;
        }
        if p >= n {
            return Walk::Short(n);
        }
        let marker = bytes[p];
        let marker_at = p - 1;
        p += 1;
        match marker {
            EOI => return Walk::Frame(p),
            // A new frame begins before this one ended: this one is truncated.
            SOI => return Walk::Bad(marker_at),
            // Standalone markers without a length (RSTn outside a scan, TEM).
            0xD0..=0xD7 | TEM => {}
            0x00 => return Walk::Bad(p),
            _ => {
                // Segment with a big-endian length that counts itself but not the marker.
                if p + 2 > n {
                    return Walk::Short(n);
                }
                let len = u16::from_be_bytes([bytes[p], bytes[p + 1]]) as usize;
                if len < 2 {
                    return Walk::Bad(p);
                }
                if p + len > n {
                    return Walk::Short(p);
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

/// The largest frame a stream may send, in bytes: a longer one (or a garbage stream that looks
/// like one) is dropped, so memory stays bounded whatever the input.
pub const MAX_FRAME: usize = 16 << 20;

/// Longest multipart part header block (bytes) before it counts as garbage.
const MAX_PART_HEAD: usize = 16 << 10;

/// What [`MjpegReader::next_piece`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// One JPEG frame (SOI through EOI, or one multipart part's body).
    Frame(Vec<u8>),
    /// A frame longer than the cap, dropped; the reader goes on after it.
    Oversize(usize),
    /// The input ended; `partial` bytes of a frame begun were left over.
    End { partial: usize },
}

/// Splits a Motion-JPEG stream read from any [`std::io::Read`] (a pipe, a child's stdout, a
/// socket) into frames as they arrive, with the same segment walk as [`split_mjpeg`]. In
/// multipart mode (`multipart/x-mixed-replace`, as IP cameras serve it) a part's
/// `Content-Length`, when given, delimits its frame; parts without one are split by the walk.
/// Memory is bounded by [`MAX_FRAME`] plus one read.
pub struct MjpegReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Start of the bytes not yet consumed.
    pos: usize,
    eof: bool,
    max_frame: usize,
    /// The multipart boundary (without the leading `--`).
    boundary: Option<Vec<u8>>,
    /// Bytes of a frame cut off, found while looking for the next one at the end of input.
    partial: usize,
}

impl<R: std::io::Read> MjpegReader<R> {
    /// A plain concatenation of JPEG frames.
    pub fn new(inner: R) -> Self {
        MjpegReader {
            inner,
            buf: Vec::new(),
            pos: 0,
            eof: false,
            max_frame: MAX_FRAME,
            boundary: None,
            partial: 0,
        }
    }

    /// A `multipart/x-mixed-replace` body with this boundary (with or without its `--`).
    pub fn multipart(inner: R, boundary: &[u8]) -> Self {
        let b = boundary.strip_prefix(b"--").unwrap_or(boundary);
        let mut r = Self::new(inner);
        if !b.is_empty() {
            r.boundary = Some(b.to_vec());
        }
        r
    }

    /// Cap a single frame at `max` bytes instead of [`MAX_FRAME`].
    pub fn with_max_frame(mut self, max: usize) -> Self {
        self.max_frame = max.max(4);
        self
    }

    /// Read more input; false at its end.
    fn fill(&mut self) -> std::io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        // Bigger reads for a bigger frame, so a long frame is not walked again per 64 KiB.
        let want = (64 << 10).max(self.buf.len() / 2);
        let old = self.buf.len();
        self.buf.resize(old + want, 0);
        let got = loop {
            match self.inner.read(&mut self.buf[old..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(old + got);
        if got == 0 {
            self.eof = true;
        }
        Ok(got > 0)
    }

    /// The next frame, an oversize frame dropped, or the end of the input. Blocks on the
    /// input as its `read` does.
    pub fn next_piece(&mut self) -> std::io::Result<Piece> {
        if self.boundary.is_some() {
            self.next_part()
        } else {
            self.next_jpeg()
        }
    }

    /// The next frame by the segment walk.
    fn next_jpeg(&mut self) -> std::io::Result<Piece> {
        loop {
            let Some(start) = find_soi(&self.buf, self.pos) else {
                // Junk: drop it, keeping a trailing FF that may begin an SOI.
                let keep = usize::from(self.buf.last() == Some(&0xFF));
                self.pos = self.buf.len() - keep;
                if !self.fill()? {
                    let partial = std::mem::take(&mut self.partial);
                    return Ok(Piece::End { partial });
                }
                continue;
            };
            self.pos = start;
            match frame_end(&self.buf, start) {
                Walk::Frame(end) => {
                    let frame = self.buf[start..end].to_vec();
                    self.pos = end;
                    self.partial = 0;
                    return Ok(Piece::Frame(frame));
                }
                Walk::Bad(resume) => self.pos = resume,
                Walk::Short(resume) => {
                    let have = self.buf.len() - start;
                    if have > self.max_frame {
                        self.pos = start + 2;
                        return Ok(Piece::Oversize(have));
                    }
                    if !self.fill()? {
                        // The input ended inside this frame: remember it, and look for a
                        // complete frame beyond the point where the walk stopped.
                        if self.partial == 0 {
                            self.partial = have;
                        }
                        self.pos = resume;
                    }
                }
            }
        }
    }

    /// The next part of a multipart body: the boundary line, the part's headers, then its
    /// body by `Content-Length` or, without one, by the segment walk.
    fn next_part(&mut self) -> std::io::Result<Piece> {
        let boundary = self.boundary.clone().unwrap_or_default();
        // The boundary.
        loop {
            if let Some(i) = find(&self.buf[self.pos..], &boundary) {
                self.pos += i + boundary.len();
                break;
            }
            // Keep a tail that may be the start of a boundary split across reads.
            let keep = (boundary.len() - 1).min(self.buf.len() - self.pos);
            self.pos = self.buf.len() - keep;
            if !self.fill()? {
                return Ok(Piece::End { partial: 0 });
            }
        }
        // The rest of the boundary line and the part's headers, up to a blank line.
        let head_end = loop {
            let rest = &self.buf[self.pos..];
            if let Some(i) = find(rest, b"\r\n\r\n") {
                break self.pos + i + 4;
            }
            if let Some(i) = find(rest, b"\n\n") {
                break self.pos + i + 2;
            }
            if rest.len() > MAX_PART_HEAD {
                // Not a part's head: find the frame by its markers.
                return self.next_jpeg();
            }
            if !self.fill()? {
                return Ok(Piece::End { partial: 0 });
            }
        };
        let head = String::from_utf8_lossy(&self.buf[self.pos..head_end]).into_owned();
        self.pos = head_end;
        let length = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        });
        match length {
            Some(n) if n > self.max_frame => Ok(Piece::Oversize(n)),
            Some(n) => {
                while self.buf.len() - self.pos < n {
                    if !self.fill()? {
                        let partial = self.buf.len() - self.pos;
                        self.pos = self.buf.len();
                        return Ok(Piece::End { partial });
                    }
                }
                let frame = self.buf[self.pos..self.pos + n].to_vec();
                self.pos += n;
                Ok(Piece::Frame(frame))
            }
            None => self.next_jpeg(),
        }
    }
}

impl<R: std::io::Read> Iterator for MjpegReader<R> {
    type Item = std::io::Result<Piece>;
    /// Pieces until the end of the input (the end itself is not an item unless a frame was
    /// cut off there).
    fn next(&mut self) -> Option<Self::Item> {
        match self.next_piece() {
            Ok(Piece::End { partial: 0 }) => None,
            other => Some(other),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
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

    /// A reader that hands out at most `n` bytes per read, like a pipe under load.
    struct Trickle<'a> {
        data: &'a [u8],
        n: usize,
    }

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let k = self.n.min(buf.len()).min(self.data.len());
            buf[..k].copy_from_slice(&self.data[..k]);
            self.data = &self.data[k..];
            Ok(k)
        }
    }

    fn frames_of(r: impl Iterator<Item = std::io::Result<Piece>>) -> Vec<Vec<u8>> {
        r.map(|p| match p.unwrap() {
            Piece::Frame(f) => f,
            other => panic!("{other:?}"),
        })
        .collect()
    }

    #[test]
    fn the_stream_reader_finds_the_same_frames_whatever_the_read_sizes() {
        let bytes = clip();
        let want: Vec<Vec<u8>> = split_mjpeg(&bytes).iter().map(|f| f.to_vec()).collect();
        assert_eq!(want.len(), sidecar().frames);
        for n in [7, 4096, 1 << 20] {
            let got = frames_of(MjpegReader::new(Trickle { data: &bytes, n }));
            assert_eq!(got, want, "reads of {n} bytes");
        }
        // Byte by byte (each read walks the frame again: a short prefix only).
        let three: usize = want[..3].iter().map(Vec::len).sum();
        let got = frames_of(MjpegReader::new(Trickle {
            data: &bytes[..three],
            n: 1,
        }));
        assert_eq!(got, want[..3]);
        // Junk, a frame cut mid-scan, and a stream cut inside its last frame.
        let f: Vec<&[u8]> = split_mjpeg(&bytes);
        let mut stream = b"\x00junk\xFF".to_vec();
        stream.extend_from_slice(f[0]);
        stream.extend_from_slice(&f[1][..f[1].len() / 2]);
        stream.extend_from_slice(f[2]);
        stream.extend_from_slice(&f[3][..100]);
        let mut r = MjpegReader::new(Trickle {
            data: &stream,
            n: 333,
        });
        assert_eq!(r.next_piece().unwrap(), Piece::Frame(f[0].to_vec()));
        assert_eq!(r.next_piece().unwrap(), Piece::Frame(f[2].to_vec()));
        assert_eq!(r.next_piece().unwrap(), Piece::End { partial: 100 });
        assert_eq!(r.next_piece().unwrap(), Piece::End { partial: 0 });
    }

    /// A multipart body as IP cameras send it: each part with its boundary line and headers,
    /// with or without `Content-Length`.
    fn multipart(frames: &[&[u8]], boundary: &str, lengths: bool) -> Vec<u8> {
        let mut v = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            v.extend_from_slice(format!("--{boundary}\r\nContent-Type: image/jpeg\r\n").as_bytes());
            if lengths {
                v.extend_from_slice(format!("Content-Length: {}\r\n", f.len()).as_bytes());
            }
            v.extend_from_slice(format!("X-Timestamp: {i}\r\n\r\n").as_bytes());
            v.extend_from_slice(f);
            v.extend_from_slice(b"\r\n");
        }
        v
    }

    #[test]
    fn multipart_parts_with_and_without_content_length() {
        let bytes = clip();
        let f: Vec<&[u8]> = split_mjpeg(&bytes)[..12].to_vec();
        for lengths in [true, false] {
            let body = multipart(&f, "myboundary", lengths);
            for n in [5, 1500, 1 << 16] {
                let got = frames_of(MjpegReader::multipart(
                    Trickle { data: &body, n },
                    b"--myboundary",
                ));
                assert_eq!(got, f, "lengths {lengths}, reads of {n}");
            }
        }
        // With Content-Length, the part's bytes are the frame, as sent (here: an EXIF-like
        // frame whose APP1 payload holds a whole JPEG, and trailing bytes after EOI).
        let mut odd = with_thumbnail(&f, 0, 1);
        odd.extend_from_slice(b"\x00\x00");
        let body = multipart(&[&odd, f[2]], "b", true);
        let got = frames_of(MjpegReader::multipart(&body[..], b"b"));
        assert_eq!(got, vec![odd.clone(), f[2].to_vec()]);
    }

    #[test]
    fn a_frame_beyond_the_cap_is_dropped_and_memory_stays_bounded() {
        let bytes = clip();
        let f: Vec<&[u8]> = split_mjpeg(&bytes);
        let cap = f[0].len().max(f[1].len()) + 10;
        // A frame whose scan never ends (no EOI), then a good frame.
        let mut stream = f[0].to_vec();
        stream.extend_from_slice(&f[1][..f[1].len() - 2]);
        stream.extend_from_slice(&vec![0x55u8; 5 * cap]);
        stream.extend_from_slice(f[2]);
        let mut r = MjpegReader::new(Trickle {
            data: &stream,
            n: 1000,
        })
        .with_max_frame(cap);
        assert_eq!(r.next_piece().unwrap(), Piece::Frame(f[0].to_vec()));
        assert!(matches!(r.next_piece().unwrap(), Piece::Oversize(n) if n > cap));
        assert!(r.buf.len() <= cap + (64 << 10) + 1000, "{}", r.buf.len());
        assert_eq!(r.next_piece().unwrap(), Piece::Frame(f[2].to_vec()));
        // A part whose Content-Length is beyond the cap is dropped unread; the next is whole.
        let mut body =
            format!("--xboundaryx\r\nContent-Length: {}\r\n\r\n", 1usize << 40).into_bytes();
        body.extend_from_slice(f[3]);
        body.extend_from_slice(&multipart(&[f[4]], "xboundaryx", true));
        let mut r = MjpegReader::multipart(&body[..], b"xboundaryx");
        assert_eq!(r.next_piece().unwrap(), Piece::Oversize(1 << 40));
        assert_eq!(r.next_piece().unwrap(), Piece::Frame(f[4].to_vec()));
        // Endless junk without a marker is dropped as it comes.
        let junk = vec![0x11u8; 8 << 20];
        let mut r = MjpegReader::new(Trickle {
            data: &junk,
            n: 1 << 16,
        });
        assert_eq!(r.next_piece().unwrap(), Piece::End { partial: 0 });
        assert!(r.buf.len() <= 1 << 17);
    }

    #[test]
    fn empty_and_markerless_input() {
        assert!(split_mjpeg(&[]).is_empty());
        assert!(split_mjpeg(&[0xFF]).is_empty());
        assert!(split_mjpeg(&[0xFF, SOI]).is_empty());
        assert!(split_mjpeg(b"no jpeg here").is_empty());
    }
}
