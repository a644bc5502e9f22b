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

/// Runs a future in place and, if dropped before it finishes, moves it to a task of
/// the current Tokio runtime so that it still runs to the end.
///
/// This is how a keyed request survives its client: the reservation, the handler and
/// the completion run on the request's own task (no spawn, no cross-thread hand-off
/// per request), and only a disconnect pays for a spawn. The future is boxed, so it
/// stays pinned where it is while the box moves. Outside a runtime it is dropped,
/// which leaves the key to its lease, as a crash would.
pub(crate) struct DetachOnDrop<T: Send + 'static> {
    future: Option<BoxFuture<'static, T>>,
}

impl<T: Send + 'static> DetachOnDrop<T> {
    pub(crate) fn new(future: impl Future<Output = T> + Send + 'static) -> Self {
        Self {
            future: Some(Box::pin(future)),
        }
    }
}

impl<T: Send + 'static> Future for DetachOnDrop<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let future = self
            .future
            .as_mut()
            .expect("a DetachOnDrop future is polled once more after completing");
        let output = std::task::ready!(future.as_mut().poll(cx));
        self.future = None;
        Poll::Ready(output)
    }
}

impl<T: Send + 'static> Drop for DetachOnDrop<T> {
    fn drop(&mut self) {
        let Some(future) = self.future.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(future);
            }
            Err(_) => tracing::warn!(
                "a keyed request was dropped outside a Tokio runtime; its key stays reserved until the lease ends"
            ),
        }
    }
}
