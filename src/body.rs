//! [`ResponseBody`]: the body of responses that pass through this crate's
//! layers.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// Either the inner service's body or the fixed body of a rejection.
    ///
    /// Wrapping the body, rather than asking the inner body type for
    /// `Default` or `From<Bytes>`, lets every layer of this crate answer with
    /// a JSON rejection in front of any service: axum, plain hyper, tonic.
    #[project = ResponseBodyProj]
    #[allow(missing_docs)] // fields of variants: the inner body, the data not yet sent
    pub enum ResponseBody<B> {
        /// The inner service's body.
        Inner {
            #[pin]
            body: B,
        },
        /// A rejection's body.
        Full {
            data: Option<Bytes>,
        },
    }
}

impl<B> ResponseBody<B> {
    /// Wraps an inner body.
    pub fn inner(body: B) -> Self {
        ResponseBody::Inner { body }
    }

    /// A body of `data`.
    pub fn full(data: Bytes) -> Self {
        ResponseBody::Full {
            data: (!data.is_empty()).then_some(data),
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        ResponseBody::Full { data: None }
    }
}

impl<B> Default for ResponseBody<B> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<B: fmt::Debug> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseBody::Inner { body } => f.debug_tuple("Inner").field(body).finish(),
            ResponseBody::Full { data } => f.debug_tuple("Full").field(data).finish(),
        }
    }
}

/// The data type is the inner body's: any [`Buf`](bytes::Buf) that a
/// rejection's [`Bytes`] convert into. For `Bytes` bodies (axum, hyper,
/// tonic) the conversion is the identity and compiles to nothing.
impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project() {
            ResponseBodyProj::Inner { body } => body.poll_frame(cx),
            ResponseBodyProj::Full { data } => {
                Poll::Ready(data.take().map(|d| Ok(Frame::data(B::Data::from(d)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Inner { body } => body.is_end_stream(),
            ResponseBody::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Inner { body } => body.size_hint(),
            ResponseBody::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

/// Wraps the body of an inner response.
pub(crate) fn wrap<B>(res: Response<B>) -> Response<ResponseBody<B>> {
    res.map(ResponseBody::inner)
}

/// Turns a rendered rejection into a response of any wrapped body type.
pub(crate) fn rejection<B>(res: Response<Bytes>) -> Response<ResponseBody<B>> {
    res.map(ResponseBody::full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    struct Never;
    impl Body for Never {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Pending
        }
    }

    #[test]
    fn full_body_yields_once_then_ends() {
        let mut body: ResponseBody<Never> = ResponseBody::full(Bytes::from_static(b"hi"));
        assert_eq!(body.size_hint().exact(), Some(2));
        assert!(!body.is_end_stream());
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let frame = Pin::new(&mut body).poll_frame(&mut cx);
        match frame {
            Poll::Ready(Some(Ok(f))) => assert_eq!(f.into_data().unwrap(), "hi"),
            _ => panic!("expected a data frame"),
        }
        assert!(body.is_end_stream());
        assert!(matches!(
            Pin::new(&mut body).poll_frame(&mut cx),
            Poll::Ready(None)
        ));
    }

    /// A data type other than `Bytes`.
    #[derive(Debug, PartialEq)]
    struct Chunk(Bytes);

    impl bytes::Buf for Chunk {
        fn remaining(&self) -> usize {
            self.0.remaining()
        }
        fn chunk(&self) -> &[u8] {
            self.0.chunk()
        }
        fn advance(&mut self, n: usize) {
            self.0.advance(n)
        }
    }

    impl From<Bytes> for Chunk {
        fn from(b: Bytes) -> Self {
            Chunk(b)
        }
    }

    /// Yields one `Chunk`.
    struct ChunkBody(Option<Chunk>);

    impl Body for ChunkBody {
        type Data = Chunk;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Chunk>, Infallible>>> {
            Poll::Ready(self.0.take().map(|c| Ok(Frame::data(c))))
        }
    }

    #[test]
    fn bodies_whose_data_is_not_bytes_are_wrapped() {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut inner = ResponseBody::inner(ChunkBody(Some(Chunk(Bytes::from_static(b"ok")))));
        match Pin::new(&mut inner).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(f))) => assert_eq!(f.into_data().unwrap(), Chunk("ok".into())),
            _ => panic!("expected a data frame"),
        }
        let mut refused: ResponseBody<ChunkBody> = ResponseBody::full(Bytes::from_static(b"no"));
        match Pin::new(&mut refused).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(f))) => assert_eq!(f.into_data().unwrap(), Chunk("no".into())),
            _ => panic!("expected a data frame"),
        }
        assert!(refused.is_end_stream());
    }

    #[test]
    fn empty_body_is_end_stream() {
        let body: ResponseBody<Never> = ResponseBody::full(Bytes::new());
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
    }
}
