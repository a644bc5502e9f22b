//! The response future of [`Idempotency`](crate::Idempotency).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::Response;
use pin_project_lite::pin_project;

pin_project! {
    /// The future returned by [`Idempotency`](crate::Idempotency): the inner
    /// service's own future for requests the layer does not touch, an answer known
    /// at once (a rejected key), or the keyed path (reserve, replay or execute).
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        Passthrough { #[pin] future: F },
        Ready { response: Option<Response<B>> },
        Keyed { future: BoxFuture<'static, Result<Response<B>, E>> },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    pub(crate) fn passthrough(future: F) -> Self {
        Self {
            kind: Kind::Passthrough { future },
        }
    }

    pub(crate) fn ready(response: Response<B>) -> Self {
        Self {
            kind: Kind::Ready {
                response: Some(response),
            },
        }
    }

    pub(crate) fn keyed(future: BoxFuture<'static, Result<Response<B>, E>>) -> Self {
        Self {
            kind: Kind::Keyed { future },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Passthrough { future } => future.poll(cx),
            KindProj::Ready { response } => Poll::Ready(Ok(response
                .take()
                .expect("a Ready response future is polled once more after completing"))),
            KindProj::Keyed { future } => future.as_mut().poll(cx),
        }
    }
}
