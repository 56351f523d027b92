//! The part checksums a CompleteMultipartUpload lists for the algorithms `s3s` 0.14.1 does
//! not know (`ChecksumSHA512`, `ChecksumMD5`, `ChecksumXXHASH64`, `ChecksumXXHASH3`,
//! `ChecksumXXHASH128` inside `<Part>`). `s3s` refuses an XML body holding them
//! (`MalformedXML`, unexpected tag), so the server takes them out before it parses:
//!
//! - an unsigned payload (`UNSIGNED-PAYLOAD`: every SDK over HTTPS) is held whole
//!   ([`StripBody`], at most [`crate::server::XML_MAX_BODY`], the limit `s3s` holds it to),
//!   their values recorded in the request's [`CompleteBody`] and the elements blanked
//!   (spaces, same length) before `s3s` reads it;
//! - a body whose SHA-256 is signed (botocore over HTTP) cannot be changed: the server
//!   reads it up front ([`hold`]) and, when it holds such elements, marks the request
//!   ([`super::complete_route::Routed`]) for the custom route that verifies the hash,
//!   then blanks and parses the body itself ([`super::complete_route`]).
//!
//! Either way `do_complete_multipart_upload` adds the values ([`CompleteBody::listed`]) to
//! the listed parts, compared with the staged parts' as the other five are (S3:
//! `InvalidPart`). A body over the cap, or aws-chunked (decoded inside `s3s`), is passed
//! as sent.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use quick_xml::events::Event;
use s3s::{S3Error, S3Result, s3_error};

use crate::store::checksum::Algorithm;

/// The algorithms whose `<Part>` elements `s3s` 0.14.1 does not parse.
pub const UNPARSED: [Algorithm; 5] =
    [Algorithm::Sha512, Algorithm::Md5, Algorithm::Xxhash64, Algorithm::Xxhash3, Algorithm::Xxhash128];

/// Most bytes of a Complete body kept, the same as `s3s`'s `xml_max_body_size`. The
/// Complete of 10,000 parts with SHA-512 values is about 3 MB.
const CAPTURE_LIMIT: usize = crate::server::XML_MAX_BODY as usize;

/// The XML body of one CompleteMultipartUpload as it went into `s3s`: a request extension,
/// put there by the server and filled by [`CaptureBody`] while `s3s` reads the body
/// (which it does whole before the handler runs).
#[derive(Debug, Clone, Default)]
pub struct CompleteBody(Arc<Mutex<Captured>>);

#[derive(Debug, Default)]
struct Captured {
    /// The values read from the body, `(part number, algorithm, base64)`.
    values: Vec<(u32, Algorithm, String)>,
}

impl CompleteBody {
    fn lock(&self) -> std::sync::MutexGuard<'_, Captured> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The values listed for the [`UNPARSED`] algorithms: `(part number, algorithm,
    /// base64)`, in document order.
    pub fn listed(&self) -> Vec<(u32, Algorithm, String)> {
        self.lock().values.clone()
    }

    /// A slot holding `values` (the custom route's, which reads the body itself).
    pub fn with(values: Vec<(u32, Algorithm, String)>) -> Self {
        Self(Arc::new(Mutex::new(Captured { values })))
    }
}

/// A CompleteMultipartUpload body held whole (up to [`CAPTURE_LIMIT`]) and passed on with
/// the [`UNPARSED`] algorithms' elements blanked, their values recorded in a
/// [`CompleteBody`]. Over the limit, or when the XML does not parse, it is passed on as
/// sent (`s3s` refuses it). Only for a body whose SHA-256 is not signed.
pub struct StripBody<B> {
    inner: B,
    slot: CompleteBody,
    held: Vec<u8>,
    /// Holding is over: what comes is passed through.
    passing: bool,
}

impl<B> StripBody<B> {
    /// Holds `inner`, a body whose SHA-256 is not signed (`UNSIGNED-PAYLOAD`).
    pub fn new(inner: B, slot: CompleteBody) -> Self {
        Self { inner, slot, held: Vec::new(), passing: false }
    }

    /// The held body, blanked and its values recorded.
    fn release(&mut self) -> Bytes {
        let mut xml = std::mem::take(&mut self.held);
        if let Ok((values, spans)) = listed_checksums(&xml)
            && !spans.is_empty()
        {
            blank(&mut xml, &spans);
            self.slot.lock().values = values;
        }
        Bytes::from(xml)
    }
}

impl<B> Body for StripBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        if this.passing {
            return Pin::new(&mut this.inner).poll_frame(cx);
        }
        // Bounded: each turn takes a frame of the body, and the body ends or passes the cap.
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers (not data) are dropped: a Complete has none worth keeping.
                    if let Ok(data) = frame.into_data() {
                        this.held.extend_from_slice(&data);
                        if this.held.len() > CAPTURE_LIMIT {
                            this.passing = true;
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(std::mem::take(&mut this.held))))));
                        }
                    }
                }
                Poll::Ready(None) => {
                    this.passing = true;
                    let xml = this.release();
                    return Poll::Ready(if xml.is_empty() { None } else { Some(Ok(Frame::data(xml))) });
                }
                other => return other,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.passing && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // Blanking keeps the length: what is held plus what is still to come.
        let inner = self.inner.size_hint();
        let held = self.held.len() as u64;
        let mut h = SizeHint::new();
        h.set_lower(inner.lower() + held);
        if let Some(upper) = inner.upper() {
            h.set_upper(upper + held);
        }
        h
    }
}

/// A Complete body read up front by [`hold`].
pub enum Held<B: Body> {
    /// The whole body (it ended within [`CAPTURE_LIMIT`]).
    Whole(Bytes),
    /// It did not: what was read, then the rest (or the error that stopped the read).
    Partial(Replay<B>),
}

/// Reads `body` whole if it ends within [`CAPTURE_LIMIT`] bytes (the caller's XML budget
/// share covers them); otherwise gives back what was read followed by the rest, so that
/// `s3s` sees the body exactly as sent. Trailers are dropped (a Complete has none worth
/// keeping). The read is bounded in time by the body's own limits ([`crate::request`]).
pub async fn hold<B>(mut body: B) -> Held<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut held = Vec::new();
    // Bounded: each turn takes a frame; the body ends, fails or passes the cap.
    loop {
        match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            None => return Held::Whole(Bytes::from(held)),
            Some(Err(e)) => return Held::Partial(Replay { held: Some(held.into()), error: Some(e), inner: body }),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    held.extend_from_slice(&data);
                    if held.len() > CAPTURE_LIMIT {
                        return Held::Partial(Replay { held: Some(held.into()), error: None, inner: body });
                    }
                }
            }
        }
    }
}

/// A body [`hold`] stopped reading: the bytes it read, then its error or the rest.
pub struct Replay<B: Body> {
    held: Option<Bytes>,
    error: Option<B::Error>,
    inner: B,
}

impl<B: Body> Replay<B> {
    /// True when the body failed while it was held (cut by the body limits, or the client
    /// went away), rather than passing the cap.
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }
}

impl<B> Body for Replay<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        if let Some(held) = this.held.take()
            && !held.is_empty()
        {
            return Poll::Ready(Some(Ok(Frame::data(held))));
        }
        if let Some(e) = this.error.take() {
            return Poll::Ready(Some(Err(e)));
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.held.as_ref().is_none_or(Bytes::is_empty) && self.error.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let held = self.held.as_ref().map_or(0, |h| h.len() as u64);
        let mut h = SizeHint::new();
        h.set_lower(inner.lower() + held);
        if let Some(upper) = inner.upper() {
            h.set_upper(upper + held);
        }
        h
    }
}

/// Blanks (spaces, same length) the byte ranges [`listed_checksums`] found.
pub fn blank(xml: &mut [u8], spans: &[(usize, usize)]) {
    for &(from, to) in spans {
        xml[from..to].fill(b' ');
    }
}

/// Which child of a `<Part>` is being read.
#[derive(Clone, Copy)]
enum Field {
    Number,
    Value(Algorithm),
}

fn malformed() -> S3Error {
    s3_error!(
        MalformedXML,
        "The XML you provided was not well-formed or did not validate against our published schema."
    )
}

/// The `<Part>` values of the [`UNPARSED`] algorithms in a CompleteMultipartUpload body:
/// `(PartNumber, algorithm, trimmed text)` for each such element of each `<Part>` child of
/// the root, in document order (a repeated element gives each of its values). Elements are
/// matched by local name, so a namespace prefix or declaration does not matter, nor do
/// whitespace and the order of a part's children; entity and character references and
/// CDATA are resolved.
///
/// With them, the byte ranges of those elements (start tag to end tag).
///
/// Errors: `MalformedXML` for XML that does not parse, a part number that is not a number,
/// or values in a `<Part>` without a `<PartNumber>`.
#[allow(clippy::type_complexity)]
pub fn listed_checksums(xml: &[u8]) -> S3Result<(Vec<(u32, Algorithm, String)>, Vec<(usize, usize)>)> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut out = Vec::new();
    let mut spans = Vec::new();
    let mut field_start = 0usize;
    let mut depth = 0usize;
    // Inside a <Part> at depth 2: its number and values so far.
    let mut part: Option<(Option<u32>, Vec<(Algorithm, String)>)> = None;
    let mut field: Option<(Field, String)> = None;
    // Every event consumes input, and the input is at most CAPTURE_LIMIT bytes.
    loop {
        let at = reader.buffer_position() as usize;
        let event = reader.read_event().map_err(|_| malformed())?;
        match event {
            Event::Start(e) => {
                depth += 1;
                let name = e.local_name();
                if depth == 2 && name.as_ref() == b"Part" {
                    part = Some((None, Vec::new()));
                } else if depth == 3 && part.is_some() {
                    field = field_of(name.as_ref()).map(|f| (f, String::new()));
                    field_start = at;
                }
            }
            Event::Empty(e) if depth == 2 && part.is_some() => {
                if let Some(Field::Value(a)) = field_of(e.local_name().as_ref())
                    && let Some((_, values)) = part.as_mut()
                {
                    if values.iter().any(|(b, _)| *b == a) {
                        return Err(malformed());
                    }
                    values.push((a, String::new()));
                    spans.push((at, reader.buffer_position() as usize));
                }
            }
            Event::Text(t) => {
                if let Some((_, text)) = field.as_mut() {
                    text.push_str(&t.decode().map_err(|_| malformed())?);
                }
            }
            Event::CData(t) => {
                if let Some((_, text)) = field.as_mut() {
                    text.push_str(&t.decode().map_err(|_| malformed())?);
                }
            }
            Event::GeneralRef(r) => {
                if let Some((_, text)) = field.as_mut() {
                    if r.is_char_ref() {
                        text.push(r.resolve_char_ref().ok().flatten().ok_or_else(malformed)?);
                    } else {
                        let name = r.decode().map_err(|_| malformed())?;
                        text.push_str(quick_xml::escape::resolve_xml_entity(&name).ok_or_else(malformed)?);
                    }
                }
            }
            Event::End(_) => {
                if depth == 3
                    && let Some((f, text)) = field.take()
                    && let Some((number, values)) = part.as_mut()
                {
                    match f {
                        Field::Number => *number = Some(text.trim().parse().map_err(|_| malformed())?),
                        Field::Value(a) => {
                            // One value per algorithm and part, as S3's schema has it.
                            if values.iter().any(|(b, _)| *b == a) {
                                return Err(malformed());
                            }
                            values.push((a, text.trim().to_owned()));
                            spans.push((field_start, reader.buffer_position() as usize));
                        }
                    }
                } else if depth == 2
                    && let Some((number, values)) = part.take()
                {
                    match number {
                        Some(n) => out.extend(values.into_iter().map(|(a, v)| (n, a, v))),
                        None if values.is_empty() => {}
                        None => return Err(malformed()),
                    }
                }
                depth = depth.saturating_sub(1);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok((out, spans))
}

fn field_of(local_name: &[u8]) -> Option<Field> {
    if local_name == b"PartNumber" {
        return Some(Field::Number);
    }
    UNPARSED.into_iter().find(|a| a.xml_element().as_bytes() == local_name).map(Field::Value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(xml: &str) -> Vec<(u32, Algorithm, String)> {
        listed_checksums(xml.as_bytes()).unwrap().0
    }

    #[test]
    fn reads_the_new_algorithms_of_each_part_in_any_order_and_namespace() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
            <CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
              <Part>
                <ChecksumSHA512>
                  q+/=
                </ChecksumSHA512>
                <ETag>"abc"</ETag><PartNumber> 2 </PartNumber>
              </Part>
              <s3:Part xmlns:s3="http://s3.amazonaws.com/doc/2006-03-01/"><s3:PartNumber>3</s3:PartNumber>
                <s3:ChecksumXXHASH3>eK9f&#x6C;IkvOVA=</s3:ChecksumXXHASH3><ChecksumCRC32>x</ChecksumCRC32>
                <ChecksumXXHASH128><![CDATA[BrBa]]>&amp;</ChecksumXXHASH128></s3:Part>
              <Part><PartNumber>4</PartNumber><ChecksumMD5>a</ChecksumMD5></Part>
            </CompleteMultipartUpload>"#;
        assert_eq!(
            listed(xml),
            vec![
                (2, Algorithm::Sha512, "q+/=".to_owned()),
                (3, Algorithm::Xxhash3, "eK9flIkvOVA=".to_owned()),
                (3, Algorithm::Xxhash128, "BrBa&".to_owned()),
                (4, Algorithm::Md5, "a".to_owned()),
            ]
        );
        // One value per algorithm and part: a second is refused, not fanned out.
        let twice = "<CompleteMultipartUpload><Part><PartNumber>4</PartNumber>\
                     <ChecksumMD5>a</ChecksumMD5><ChecksumMD5>b</ChecksumMD5></Part></CompleteMultipartUpload>";
        assert!(listed_checksums(twice.as_bytes()).is_err());
        let empty_twice = "<CompleteMultipartUpload><Part><PartNumber>4</PartNumber>\
                           <ChecksumMD5/><ChecksumMD5/></Part></CompleteMultipartUpload>";
        assert!(listed_checksums(empty_twice.as_bytes()).is_err());
    }

    #[test]
    fn ignores_elements_outside_parts_and_the_five_s3s_parses() {
        let xml = "<CompleteMultipartUpload><ChecksumSHA512>x</ChecksumSHA512>\
                   <Part><PartNumber>1</PartNumber><ChecksumSHA256>y</ChecksumSHA256>\
                   <Other><ChecksumMD5>z</ChecksumMD5></Other></Part></CompleteMultipartUpload>";
        assert_eq!(listed(xml), vec![]);
        assert_eq!(listed(""), vec![]);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let code = |xml: &str| listed_checksums(xml.as_bytes()).unwrap_err().code().as_str().to_owned();
        assert_eq!(code("<C><Part><ChecksumMD5>a</ChecksumMD5></Part></C>"), "MalformedXML", "no number");
        assert_eq!(code("<C><Part><PartNumber>x</PartNumber></Part></C>"), "MalformedXML");
        assert_eq!(
            code("<C><Part><PartNumber>1</PartNumber><ChecksumMD5>&bogus;</ChecksumMD5></Part></C>"),
            "MalformedXML"
        );
        assert_eq!(code("<C><Part></C>"), "MalformedXML");
    }

    #[test]
    fn blanks_exactly_the_elements_it_reads() {
        let xml = "<C><Part><PartNumber>1</PartNumber><ChecksumMD5>a</ChecksumMD5><ETag>e</ETag>\
                   <ChecksumXXHASH64/></Part></C>";
        let (values, spans) = listed_checksums(xml.as_bytes()).unwrap();
        assert_eq!(values.len(), 2);
        let mut out = xml.as_bytes().to_vec();
        blank(&mut out, &spans);
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out.len(), xml.len());
        assert_eq!(
            out.split_whitespace().collect::<String>(),
            "<C><Part><PartNumber>1</PartNumber><ETag>e</ETag></Part></C>"
        );
    }
}
