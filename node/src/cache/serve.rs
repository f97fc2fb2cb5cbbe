//! The one cache driver: a GET or HEAD that may be answered from the cache
//! goes through [`EdgeCache::serve`], whoever asks: the dispatcher in front
//! of an app, and a component's own fetch. It looks the request up, answers
//! hits, sends misses and revalidations to the caller's [`CacheBackend`],
//! stores what comes back, and runs `stale-while-revalidate` refreshes in a
//! task of their own.

use std::future::Future;
use std::sync::Arc;

use http::{Request, Response};
use http_body_util::BodyExt;

use super::layer::{EdgeCache, Lookup};
use super::result::CacheResult;
use super::store::CacheKey;
use crate::body::{ResponseBody, full_body};

/// What answers what the cache cannot: an app (its component or its origin
/// route) or the origin a component fetches from.
pub trait CacheBackend: Send + Sync {
    type Error: Send + 'static;
    /// The backend a background refresh uses once the client's request is
    /// answered: it must not borrow from that request.
    type Detached: CacheBackend<Error = Self::Error> + 'static;

    /// Sends `request` (a miss, a revalidation or a refresh): the client's
    /// request with the cache's conditionals in place of its own.
    fn send(
        &self,
        request: Request<ResponseBody>,
    ) -> impl Future<Output = Result<Response<ResponseBody>, Self::Error>> + Send;

    /// How the cache answered (counted by the caller's metrics); `collapsed`
    /// if the request waited for a concurrent miss.
    fn record(&self, result: CacheResult, collapsed: bool);

    fn detach(&self) -> Self::Detached;
}

/// Why [`EdgeCache::serve`] has no response.
#[derive(Debug)]
pub enum ServeError<E> {
    /// The request said `only-if-cached` and nothing usable is stored
    /// (RFC 9111 §5.2.1.7: answer 504).
    NotCached,
    /// The backend failed, and no stale response may stand in for it.
    Backend(E),
}

impl EdgeCache {
    /// Answers a GET or HEAD under `key` from the cache, or through
    /// `backend`, with how the cache answered (for the access line: the
    /// `x-cache` header is one a backend could have set). The request's
    /// body is not part of the key and is never sent: the caller only
    /// hands over requests without one.
    pub async fn serve<B: CacheBackend>(
        self: &Arc<Self>,
        key: CacheKey,
        request: Request<()>,
        backend: &B,
    ) -> Result<(Response<ResponseBody>, CacheResult), ServeError<B::Error>> {
        match self.lookup(key, &request).await {
            Lookup::Hit {
                response,
                result,
                collapsed,
            } => {
                backend.record(result, collapsed);
                Ok((response, result))
            }
            Lookup::Refresh { response, refresh } => {
                backend.record(CacheResult::Stale, false);
                let again = refresh.refresh_request(request.uri());
                let (cache, detached) = (self.clone(), backend.detach());
                tokio::spawn(async move {
                    let result = detached.send(again).await;
                    cache.finish_refresh(refresh, result).await;
                });
                Ok((response, CacheResult::Stale))
            }
            Lookup::NotCached => Err(ServeError::NotCached),
            Lookup::Miss(pending) => {
                let mut request = request.map(|()| full_body(bytes::Bytes::new()));
                pending.backend_headers(request.headers_mut());
                let method = request.method().clone();
                // Boxed: the backend's future is large, and a hit never
                // needs it.
                let result = Box::pin(backend.send(request)).await;
                let (result, cache_result) = self.complete(pending, &method, result);
                backend.record(cache_result, false);
                result
                    .map(|response| (response, cache_result))
                    .map_err(ServeError::Backend)
            }
        }
    }

    /// Takes the backend's answer to a background refresh and reads its
    /// body to the end, which stores it.
    async fn finish_refresh<E>(
        self: &Arc<Self>,
        refresh: super::layer::Pending,
        result: Result<Response<ResponseBody>, E>,
    ) {
        let (result, _) = self.complete(refresh, &http::Method::GET, result);
        if let Ok(response) = result {
            let mut body = response.into_body();
            while let Some(Ok(_)) = body.frame().await {}
        }
    }
}
