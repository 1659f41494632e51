//! Photo fixtures and a bare tus client for the end-to-end tests: real JPEGs
//! (encoded by the image crate) with an EXIF APP1 segment written here by
//! kamadak-exif, and plain HTTP requests as a stock tus client sends them.

use std::io::{Cursor, Read as _, Write as _};
use std::net::TcpStream;

use anyhow::{Context, bail};
use base64::Engine as _;
use exif::experimental::Writer;
use exif::{Field, In, Rational, Tag, Value};
use sha2::Digest;

/// What a fixture photo says about itself.
#[derive(Debug, Clone, Default)]
pub struct PhotoSpec {
    pub width: u32,
    pub height: u32,
    /// Pixels are pseudo-random from this seed (so every spec is its own photo).
    pub seed: u64,
    /// EXIF DateTimeOriginal, `YYYY:MM:DD HH:MM:SS`.
    pub taken: Option<String>,
    /// EXIF OffsetTimeOriginal, `+08:00`.
    pub offset: Option<String>,
    /// EXIF GPS position (lat, lon).
    pub position: Option<(f64, f64)>,
    /// EXIF orientation 1–8.
    pub orientation: Option<u16>,
    /// Bytes appended after the image's end (to reach a size cheaply).
    pub padding: usize,
}

fn dms(value: f64) -> Vec<Rational> {
    let v = value.abs();
    let deg = v.floor();
    let min = ((v - deg) * 60.0).floor();
    let sec = ((v - deg) * 60.0 - min) * 60.0;
    vec![
        Rational {
            num: deg as u32,
            denom: 1,
        },
        Rational {
            num: min as u32,
            denom: 1,
        },
        Rational {
            num: (sec * 10_000.0).round() as u32,
            denom: 10_000,
        },
    ]
}

/// The TIFF body of an EXIF segment holding the spec's fields.
pub fn exif_tiff(spec: &PhotoSpec) -> anyhow::Result<Vec<u8>> {
    let ascii = |tag, s: &str| Field {
        tag,
        ifd_num: In::PRIMARY,
        value: Value::Ascii(vec![s.as_bytes().to_vec()]),
    };
    let mut fields = Vec::new();
    if let Some(o) = spec.orientation {
        fields.push(Field {
            tag: Tag::Orientation,
            ifd_num: In::PRIMARY,
            value: Value::Short(vec![o]),
        });
    }
    if let Some(t) = &spec.taken {
        fields.push(ascii(Tag::DateTimeOriginal, t));
    }
    if let Some(o) = &spec.offset {
        fields.push(ascii(Tag::OffsetTimeOriginal, o));
    }
    if let Some((lat, lon)) = spec.position {
        fields.push(ascii(Tag::GPSLatitudeRef, if lat < 0.0 { "S" } else { "N" }));
        fields.push(Field {
            tag: Tag::GPSLatitude,
            ifd_num: In::PRIMARY,
            value: Value::Rational(dms(lat)),
        });
        fields.push(ascii(Tag::GPSLongitudeRef, if lon < 0.0 { "W" } else { "E" }));
        fields.push(Field {
            tag: Tag::GPSLongitude,
            ifd_num: In::PRIMARY,
            value: Value::Rational(dms(lon)),
        });
    }
    let mut w = Writer::new();
    for f in &fields {
        w.push_field(f);
    }
    let mut out = Cursor::new(Vec::new());
    w.write(&mut out, false).context("writing EXIF")?;
    Ok(out.into_inner())
}

/// A JPEG of the spec, its EXIF segment right after SOI.
pub fn jpeg(spec: &PhotoSpec) -> anyhow::Result<Vec<u8>> {
    let mut state = spec.seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let img = image::RgbImage::from_fn(spec.width, spec.height, |x, y| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let n = (state & 0x3f) as u8;
        // A gradient under noise: something to look at, and hard to compress.
        image::Rgb([
            (x * 255 / spec.width.max(1)) as u8 ^ n,
            (y * 255 / spec.height.max(1)) as u8 ^ n,
            n.wrapping_mul(3),
        ])
    });
    let mut encoded = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut encoded, 90).encode_image(&img)?;
    let tiff = exif_tiff(spec)?;
    let mut out = Vec::with_capacity(encoded.len() + tiff.len() + spec.padding + 16);
    out.extend_from_slice(&encoded[..2]);
    if !tiff.is_empty() {
        let len = u16::try_from(tiff.len() + 8).context("EXIF too long for one segment")?;
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(b"Exif\0\0");
        out.extend_from_slice(&tiff);
    }
    out.extend_from_slice(&encoded[2..]);
    out.extend(std::iter::repeat_n(0x5Au8, spec.padding));
    Ok(out)
}

/// Rewrites a JPEG's frame header to claim `width` × `height`: a
/// decompression bomb in a few kilobytes.
pub fn claim_dimensions(jpeg: &mut [u8], width: u16, height: u16) -> anyhow::Result<()> {
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .context("no baseline frame header")?;
    jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    Ok(())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Plain requests to the server, as a stock client sends them.
#[derive(Debug, Clone)]
pub struct Http {
    agent: ureq::Agent,
    pub base: String,
    pub token: Option<String>,
}

impl Http {
    pub fn new(base: &str, token: Option<String>) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build();
        Self {
            agent: ureq::Agent::new_with_config(config),
            base: base.trim_end_matches('/').to_string(),
            token,
        }
    }

    /// `target` is a path or a full URL.
    pub fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> anyhow::Result<Answer> {
        let url = if target.starts_with("http") {
            target.to_string()
        } else {
            format!("{}{target}", self.base)
        };
        let mut b = ureq::http::Request::builder().method(method).uri(url.as_str());
        if let Some(t) = &self.token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let mut r = match body {
            Some(body) => self.agent.run(b.body(body)?)?,
            None => self.agent.run(b.body(())?)?,
        };
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        let status = r.status().as_u16();
        let body = r.body_mut().with_config().limit(1 << 30).read_to_vec()?;
        Ok(Answer { status, headers, body })
    }

    /// `POST /api/v1/uploads`; returns the answer (Location on 201).
    pub fn create(&self, length: u64, metadata: &[(&str, &str)]) -> anyhow::Result<Answer> {
        let meta: Vec<String> = metadata
            .iter()
            .map(|(k, v)| format!("{k} {}", b64(v.as_bytes())))
            .collect();
        let length = length.to_string();
        let meta = meta.join(",");
        self.send(
            "POST",
            "/api/v1/uploads",
            &[
                ("tus-resumable", "1.0.0"),
                ("upload-length", &length),
                ("upload-metadata", &meta),
            ],
            None,
        )
    }

    pub fn patch(&self, url: &str, offset: u64, chunk: &[u8], checksum: Option<&str>) -> anyhow::Result<Answer> {
        let offset = offset.to_string();
        let mut h = vec![
            ("tus-resumable", "1.0.0"),
            ("content-type", "application/offset+octet-stream"),
            ("upload-offset", offset.as_str()),
        ];
        if let Some(c) = checksum {
            h.push(("upload-checksum", c));
        }
        self.send("PATCH", url, &h, Some(chunk))
    }

    pub fn offset(&self, url: &str) -> anyhow::Result<Option<u64>> {
        let a = self.send("HEAD", url, &[("tus-resumable", "1.0.0")], None)?;
        match a.status {
            200 => Ok(a.header("upload-offset").and_then(|o| o.parse().ok())),
            404 | 410 => Ok(None),
            s => bail!("HEAD {url} answered {s}"),
        }
    }

    /// A whole upload the way a stock client does it: create, then chunks.
    pub fn upload(&self, bytes: &[u8], chunk: usize, metadata: &[(&str, &str)]) -> anyhow::Result<Answer> {
        let created = self.create(bytes.len() as u64, metadata)?;
        if created.status != 201 {
            return Ok(created);
        }
        let url = created.header("location").context("no Location")?.to_string();
        let mut offset = 0usize;
        loop {
            let end = (offset + chunk).min(bytes.len());
            let a = self.patch(&url, offset as u64, &bytes[offset..end], None)?;
            if a.status != 204 || end == bytes.len() {
                return Ok(a);
            }
            offset = end;
        }
    }

    /// Sends a PATCH promising `body.len()` bytes, writes only the first
    /// `sent` of them, then closes the socket: a link dropping mid-chunk.
    pub fn patch_cut(
        &self,
        url: &str,
        offset: u64,
        body: &[u8],
        sent: usize,
        checksum: Option<&str>,
    ) -> anyhow::Result<()> {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut s = TcpStream::connect(host)?;
        let mut head = format!(
            "PATCH {path} HTTP/1.1\r\nHost: {host}\r\nTus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(t) = &self.token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if let Some(c) = checksum {
            head.push_str(&format!("Upload-Checksum: {c}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes())?;
        s.write_all(&body[..sent.min(body.len())])?;
        s.flush()?;
        s.shutdown(std::net::Shutdown::Write)?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        // Whatever the server says (if anything) is lost with the link.
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
        Ok(())
    }
}
