//! Accepted formats, judged from the first bytes of an upload: what the client
//! declares (file name, type) is not trusted.

use serde::{Deserialize, Serialize};

/// What the first bytes must hold before a verdict (WebP needs 12; a HEIC `ftyp` box 12).
pub const SNIFF_BYTES: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Jpeg,
    Png,
    Webp,
    /// HEIF/HEIC as iPads write it: stored and served, no thumbnail.
    Heic,
    /// Documents: stored and served, no thumbnail.
    Pdf,
}

impl Format {
    pub fn mime(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Webp => "image/webp",
            Format::Heic => "image/heic",
            Format::Pdf => "application/pdf",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "JPEG",
            Format::Png => "PNG",
            Format::Webp => "WebP",
            Format::Heic => "HEIC",
            Format::Pdf => "PDF",
        }
    }

    /// The image crate decodes it: a thumbnail can be made and the pixel count is checked.
    pub fn decodable(self) -> Option<image::ImageFormat> {
        match self {
            Format::Jpeg => Some(image::ImageFormat::Jpeg),
            Format::Png => Some(image::ImageFormat::Png),
            Format::Webp => Some(image::ImageFormat::WebP),
            Format::Heic | Format::Pdf => None,
        }
    }

    /// Whether EXIF is looked for in it.
    pub fn may_have_exif(self) -> bool {
        !matches!(self, Format::Pdf)
    }
}

/// The verdict on the first bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniff {
    Accepted(Format),
    /// Not an accepted format; says what it looked like.
    Refused(String),
    /// Too few bytes yet (and the upload is longer).
    NeedMore,
}

/// HEIF brands of still images (ISO/IEC 23008-12): HEVC-coded and the generic ones.
const HEIF_BRANDS: [&[u8; 4]; 8] = [b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"];

/// Judges `head`, the first bytes of an upload of `total` bytes.
pub fn sniff(head: &[u8], total: u64) -> Sniff {
    let complete = head.len() as u64 >= total;
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Sniff::Accepted(Format::Jpeg);
    }
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Sniff::Accepted(Format::Png);
    }
    if head.starts_with(b"%PDF-") {
        return Sniff::Accepted(Format::Pdf);
    }
    if head.len() >= 12 {
        if &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
            return Sniff::Accepted(Format::Webp);
        }
        if &head[4..8] == b"ftyp" && HEIF_BRANDS.iter().any(|b| &head[8..12] == *b) {
            return Sniff::Accepted(Format::Heic);
        }
    } else if !complete {
        // A prefix of a magic number still counts as "maybe".
        let maybe = [&b"\xFF\xD8\xFF"[..], b"\x89PNG\r\n\x1a\n", b"%PDF-", b"RIFF"]
            .iter()
            .any(|m| m.starts_with(head) || head.starts_with(m))
            || head.len() <= 8;
        if maybe {
            return Sniff::NeedMore;
        }
    }
    Sniff::Refused(describe(head))
}

/// A short description of unrecognised bytes, for the error message.
fn describe(head: &[u8]) -> String {
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        return format!("an ISO media file of brand {:?}", String::from_utf8_lossy(&head[8..12]));
    }
    if head.starts_with(b"GIF8") {
        return "a GIF".into();
    }
    let shown: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("bytes starting {}", shown.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_numbers_decide() {
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE1\0\0Exif", 1000), Sniff::Accepted(Format::Jpeg));
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n\0\0\0\x0d", 1000),
            Sniff::Accepted(Format::Png)
        );
        assert_eq!(sniff(b"RIFF\x10\0\0\0WEBPVP8 ", 1000), Sniff::Accepted(Format::Webp));
        assert_eq!(sniff(b"\0\0\0\x18ftypheic\0\0", 1000), Sniff::Accepted(Format::Heic));
        assert_eq!(sniff(b"\0\0\0\x18ftypmif1\0\0", 1000), Sniff::Accepted(Format::Heic));
        assert_eq!(sniff(b"%PDF-1.7\n%", 1000), Sniff::Accepted(Format::Pdf));
    }

    #[test]
    fn other_bytes_are_refused_and_short_heads_wait() {
        assert!(matches!(sniff(b"GIF89a\x01\0\x01\0\0\0", 1000), Sniff::Refused(m) if m.contains("GIF")));
        assert!(matches!(sniff(b"\0\0\0\x18ftypisom\0\0", 1000), Sniff::Refused(m) if m.contains("isom")));
        assert!(matches!(sniff(b"<html><body>", 1000), Sniff::Refused(_)));
        assert_eq!(sniff(b"\xFF\xD8", 1000), Sniff::NeedMore);
        assert_eq!(sniff(b"RIFF\0\0", 1000), Sniff::NeedMore);
        // The whole upload is shorter than any magic number.
        assert!(matches!(sniff(b"\xFF\xD8", 2), Sniff::Refused(_)));
    }
}
