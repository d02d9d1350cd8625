//! HTTP request metrics: a middleware that counts every answered request by route template,
//! method and status, and times it.

use std::hash::{Hash, Hasher};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

use super::Metrics;

/// The route label: the template the router matched (`/api/expenses/{id}`), never the path the
/// client sent, so ids and query strings (the `/sync` token) never become labels and the number
/// of series stays bounded by the routes.
#[derive(Clone, Debug)]
pub(super) enum Route {
    /// A route of the router.
    Matched(MatchedPath),
    /// No route matched (the 404 fallback): one series for every unknown path.
    Unmatched,
}

impl Route {
    fn as_str(&self) -> &str {
        match self {
            Route::Matched(path) => path.as_str(),
            Route::Unmatched => "unmatched",
        }
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl Hash for Route {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RequestLabels {
    route: Route,
    method: &'static str,
    status: u16,
}

/// Labels of the latency histogram: without the status, which would multiply its buckets.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RouteLabels {
    route: Route,
    method: &'static str,
}

/// The method label: the methods the API serves by name, anything else as `other` (a client may
/// send any token as a method, and each would otherwise make a series).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware counting and timing every request. Layered on the whole router, outermost, so the
/// time covers every other layer and the status is the one the client got; axum runs it inside
/// the matched route, where `MatchedPath` is known. Installed only while metrics are on.
pub async fn track_requests(
    State(metrics): State<Metrics>,
    request: Request,
    next: Next,
) -> Response {
    let Some(m) = metrics.0.as_deref() else {
        return next.run(request).await;
    };
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .cloned()
        .map_or(Route::Unmatched, Route::Matched);
    let method = method_label(request.method());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    m.http_duration
        .get_or_create(&RouteLabels {
            route: route.clone(),
            method,
        })
        .observe(started.elapsed().as_secs_f64());
    m.http_requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status,
        })
        .inc();
    response
}
