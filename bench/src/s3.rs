//! A minimal S3 client over one HTTP/1.1 connection per worker: path-style URLs, SigV4
//! headers, bodies streamed from one shared buffer (no per-request allocation of data).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::sigv4::{Signer, UNSIGNED, uri_encode};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// A request or response body: nothing, one buffer, or `len` bytes cut from a repeated
/// shared buffer.
pub enum Payload {
    Empty,
    Full(Option<Bytes>),
    Repeat { buf: Bytes, left: u64 },
}

impl Payload {
    pub fn repeat(buf: &Bytes, len: u64) -> Self {
        Payload::Repeat { buf: buf.clone(), left: len }
    }
}

impl Body for Payload {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        Poll::Ready(match this {
            Payload::Empty => None,
            Payload::Full(b) => b.take().map(|b| Ok(Frame::data(b))),
            Payload::Repeat { buf, left } => {
                if *left == 0 {
                    None
                } else {
                    let n = (*left).min(buf.len() as u64) as usize;
                    *left -= n as u64;
                    Some(Ok(Frame::data(buf.slice(..n))))
                }
            }
        })
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Payload::Empty => true,
            Payload::Full(b) => b.is_none(),
            Payload::Repeat { left, .. } => *left == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(match self {
            Payload::Empty => 0,
            Payload::Full(b) => b.as_ref().map_or(0, |b| b.len() as u64),
            Payload::Repeat { left, .. } => *left,
        })
    }
}

/// Where to send and how to sign.
pub struct Target {
    pub addr: String,
    pub bucket: String,
    pub signer: Signer,
}

/// A response: status, the headers we need, the body bytes counted (and kept when asked).
pub struct Resp {
    pub status: u16,
    pub etag: Option<String>,
    pub len: u64,
    pub body: Vec<u8>,
}

/// One keep-alive connection; reconnects when the server closed it.
pub struct Conn {
    t: Arc<Target>,
    tx: Option<SendRequest<Payload>>,
}

impl Conn {
    pub fn new(t: Arc<Target>) -> Self {
        Self { t, tx: None }
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<Payload>> {
        if let Some(tx) = &mut self.tx
            && tx.ready().await.is_ok()
        {
            return Ok(self.tx.as_mut().unwrap());
        }
        let s = TcpStream::connect(&self.t.addr).await?;
        s.set_nodelay(true)?;
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.tx = Some(tx);
        Ok(self.tx.as_mut().unwrap())
    }

    /// Sends one signed request for `key` (empty: the bucket) and reads the whole response;
    /// the body is kept only when `keep`.
    pub async fn call(
        &mut self,
        method: &str,
        key: &str,
        query: &[(&str, &str)],
        body: Payload,
        keep: bool,
    ) -> Result<Resp> {
        let t = self.t.clone();
        let path =
            if key.is_empty() { format!("/{}", t.bucket) } else { format!("/{}/{}", t.bucket, uri_encode(key, true)) };
        let (date, auth) = t.signer.sign(method, &t.addr, &path, query);
        let uri = if query.is_empty() {
            path
        } else {
            let q: Vec<String> = query
                .iter()
                .map(|(k, v)| {
                    if v.is_empty() {
                        uri_encode(k, false)
                    } else {
                        format!("{}={}", uri_encode(k, false), uri_encode(v, false))
                    }
                })
                .collect();
            format!("{path}?{}", q.join("&"))
        };
        let len = body.size_hint().exact().unwrap_or(0);
        let mut b = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", &t.addr)
            .header("x-amz-date", date)
            .header("x-amz-content-sha256", UNSIGNED)
            .header("authorization", auth);
        if method == "PUT" || method == "POST" {
            b = b.header("content-length", len);
        }
        let req = b.body(body)?;
        let resp = self.sender().await?.send_request(req).await?;
        let status = resp.status().as_u16();
        let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut body = resp.into_body();
        let mut out = Vec::new();
        let mut n = 0u64;
        while let Some(f) = body.frame().await {
            if let Ok(d) = f?.into_data() {
                n += d.len() as u64;
                if keep || status >= 300 {
                    out.extend_from_slice(&d);
                }
            }
        }
        Ok(Resp { status, etag, len: n, body: out })
    }

    /// `call` that fails on a non-2xx answer, with the status and the start of the body.
    pub async fn ok(
        &mut self,
        method: &str,
        key: &str,
        query: &[(&str, &str)],
        body: Payload,
        keep: bool,
    ) -> Result<Resp> {
        let r = self.call(method, key, query, body, keep).await?;
        if r.status >= 300 {
            let text = String::from_utf8_lossy(&r.body[..r.body.len().min(300)]).into_owned();
            return Err(format!("{method} {key}: HTTP {}: {text}", r.status).into());
        }
        Ok(r)
    }
}

/// The text of the first `<tag>...</tag>` in `xml`.
pub fn xml_tag<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}

/// Every `<tag>...</tag>` text in `xml`.
pub fn xml_all<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        rest = &rest[i + open.len()..];
        let Some(j) = rest.find(&close) else { break };
        out.push(&rest[..j]);
        rest = &rest[j + close.len()..];
    }
    out
}
