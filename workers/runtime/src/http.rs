//! The HTTP-route hook: how a family declares routes it serves on the agent's API port (9529),
//! as Datakit's inputs do (`/v1/write/...` of OpenTelemetry, Pyroscope's `/ingest`, CAT...).
//!
//! Routes work like listeners: an instance declares from its config the [`RoutePath`]s it
//! serves ([`crate::SingleInput::routes_of`], through `Family::routes`); the supervisor serves
//! them on the API port and forwards each request to the family's worker; there the running
//! input's [`HttpRoute`]s ([`crate::Input::routes`]: a method, a path and an [`HttpHandler`],
//! which may hold the input's config and counters) turn the request (query, headers, body
//! bytes) into an [`HttpAnswer`]: the status and body to send back and the points to feed. The
//! handler is plain, synchronous code over bytes, so it runs the same in the worker (behind an
//! RPC) or in a test. [`RouteTable`] collects the routes of a worker's inputs (rebuilt at every
//! reconfigure) and refuses two claims of one route.

use std::sync::Arc;

use dk_proto::{Category, Point};

pub use dk_proto::family::{Method, RoutePath};

/// One request as a route handler sees it: the body already read and bounded by the server,
/// but as the client encoded it (a handler that takes `Content-Encoding: gzip` inflates it
/// itself, under its own cap; Pyroscope forwards compressed profiles as they came).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpRequest {
    /// The raw query string, without `?`.
    pub query: String,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a route handler answers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HttpAnswer {
    /// The HTTP status.
    pub status: u16,
    /// `Content-Type` of the body.
    pub content_type: &'static str,
    /// The body sent back.
    pub body: Vec<u8>,
    /// Points to feed, by category, under the route's input name.
    pub points: Vec<(Category, Vec<Point>)>,
}

impl HttpAnswer {
    /// An answer with `status` and a plain-text body, feeding nothing.
    pub fn text(status: u16, body: impl Into<String>) -> HttpAnswer {
        HttpAnswer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
            points: Vec::new(),
        }
    }
}

/// Turns one request into an answer.
pub trait HttpHandler: Send + Sync + 'static {
    /// Handles `request`. Bad input is an answer (4xx), not a panic.
    fn handle(&self, request: HttpRequest) -> HttpAnswer;
}

impl<F> HttpHandler for F
where
    F: Fn(HttpRequest) -> HttpAnswer + Send + Sync + 'static,
{
    fn handle(&self, request: HttpRequest) -> HttpAnswer {
        self(request)
    }
}

/// A route a running input handles on the API port (declared from its config with
/// [`crate::SingleInput::routes_of`], handled by [`crate::Input::routes`]).
#[derive(Clone)]
pub struct HttpRoute {
    /// The method.
    pub method: Method,
    /// The exact path (`/otel/v1/traces`).
    pub path: String,
    /// The input the points are fed under.
    pub input: &'static str,
    /// How the points are fed (election-aware inputs set `election`).
    pub feed: crate::FeedOpts,
    /// The handler.
    pub handler: Arc<dyn HttpHandler>,
}

impl std::fmt::Debug for HttpRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {} ({})", self.method, self.path, self.input)
    }
}

impl HttpRoute {
    /// A route of `input` answering `method path` with `handler`.
    pub fn new(
        method: Method,
        path: impl Into<String>,
        input: &'static str,
        handler: impl HttpHandler,
    ) -> HttpRoute {
        HttpRoute {
            method,
            path: path.into(),
            input,
            feed: crate::FeedOpts::default(),
            handler: Arc::new(handler),
        }
    }

    /// The same route feeding its points with `feed` (election tags for election-aware inputs).
    #[must_use]
    pub fn with_feed(mut self, feed: crate::FeedOpts) -> HttpRoute {
        self.feed = feed;
        self
    }

    /// The method and path this route answers.
    pub fn path(&self) -> RoutePath {
        RoutePath::new(self.method, self.path.clone())
    }
}

/// Two inputs claimed one route.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{method} {path} is served by both {first} and {second}; disable one of the two inputs")]
pub struct RouteConflict {
    /// The method.
    pub method: Method,
    /// The path.
    pub path: String,
    /// The input that claimed it first.
    pub first: String,
    /// The input that claimed it again.
    pub second: String,
}

/// The routes of every family, looked up by method and path.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: std::collections::BTreeMap<(Method, String), HttpRoute>,
}

impl RouteTable {
    /// Adds `route`.
    ///
    /// # Errors
    /// [`RouteConflict`] when another input serves the same method and path.
    pub fn add(&mut self, route: HttpRoute) -> Result<(), RouteConflict> {
        let key = (route.method, route.path.clone());
        if let Some(first) = self.routes.get(&key) {
            return Err(RouteConflict {
                method: route.method,
                path: route.path.clone(),
                first: first.input.to_string(),
                second: route.input.to_string(),
            });
        }
        self.routes.insert(key, route);
        Ok(())
    }

    /// The route for `method path`.
    pub fn find(&self, method: Method, path: &str) -> Option<&HttpRoute> {
        self.routes.get(&(method, path.to_string()))
    }

    /// Handles a request: the route's answer, 404 for an unknown path, 405 for a known path
    /// with another method.
    pub fn handle(&self, method: Method, path: &str, request: HttpRequest) -> HttpAnswer {
        match self.find(method, path) {
            Some(route) => route.handler.handle(request),
            None if self.routes.keys().any(|(_, p)| p == path) => {
                HttpAnswer::text(405, format!("{path} does not answer {method}"))
            }
            None => HttpAnswer::text(404, format!("no input serves {path}")),
        }
    }
}

/// Answers `request` on `method path` with the route of `routes` and feeds its points: the
/// handler runs off the runtime (it decodes whole bodies; health checks keep answering), and
/// the answer is returned once its points are in the durable queue, as writes to `/v1/write`
/// are: nothing a client was answered 200 for is lost, and a fast client cannot pile points
/// up in the worker ahead of the supervisor. Both the API-port forwarding and
/// [`crate::serve::http`] answer this way.
pub async fn answer(
    routes: Arc<RouteTable>,
    emitter: &crate::Emitter,
    method: Method,
    path: String,
    request: HttpRequest,
) -> HttpAnswer {
    let target = routes.find(method, &path).map(|r| (r.input, r.feed));
    let Ok(mut answer) =
        tokio::task::spawn_blocking(move || routes.handle(method, &path, request)).await
    else {
        return HttpAnswer::text(500, "the route's handler failed");
    };
    let points = std::mem::take(&mut answer.points);
    if let Some((input, feed)) = target {
        let mut stored = Vec::with_capacity(points.len());
        for (category, points) in points {
            stored.push(emitter.emit_acked(category, input, feed, points).await);
        }
        for done in stored {
            if !done.await {
                return HttpAnswer::text(
                    503,
                    "the points could not be stored now (the queue refused them or the worker is stopping); retry",
                );
            }
        }
    }
    answer
}

/// Debug knob: `DK_DEBUG_ECHO_ROUTE=<family>` makes that family serve `POST /v1/debug/echo`,
/// each body line a logging point (source `echo`), to exercise the API's route forwarding.
pub const DEBUG_ECHO_ROUTE: &str = "DK_DEBUG_ECHO_ROUTE";

/// Whether [`DEBUG_ECHO_ROUTE`] names `family`: then its worker also handles the debug echo
/// route, and the supervisor serves it while the family runs. Both sides ask this.
pub fn debug_echo_enabled(family: &str) -> bool {
    std::env::var(DEBUG_ECHO_ROUTE).is_ok_and(|v| v.split(',').any(|f| f == family))
}

/// The debug echo route (`POST /v1/debug/echo`, input `echo`): each body line becomes a
/// logging point of source `echo` with the line as `message`; answers 200 with the count.
pub fn debug_echo_route() -> HttpRoute {
    HttpRoute::new(
        Method::Post,
        "/v1/debug/echo",
        "echo",
        |req: HttpRequest| {
            let now = dk_proto::clock::now_ns();
            let points: Vec<Point> = String::from_utf8_lossy(&req.body)
                .lines()
                .filter(|l| !l.is_empty())
                .map(|l| {
                    Point::new("echo", now).field("message", dk_proto::Value::S(l.to_string()))
                })
                .collect();
            let mut answer = HttpAnswer::text(200, format!("{} lines", points.len()));
            answer.points = vec![(Category::Logging, points)];
            answer
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handler that feeds one logging point per body line.
    fn lines(request: HttpRequest) -> HttpAnswer {
        let Ok(text) = std::str::from_utf8(&request.body) else {
            return HttpAnswer::text(400, "the body is not UTF-8");
        };
        let points = text
            .lines()
            .map(|l| Point::new("app", 0).field("message", dk_proto::Value::S(l.into())))
            .collect::<Vec<_>>();
        HttpAnswer {
            points: vec![(Category::Logging, points)],
            ..HttpAnswer::text(200, "ok")
        }
    }

    #[test]
    fn a_route_turns_body_bytes_into_points_and_an_answer() {
        let mut table = RouteTable::default();
        table
            .add(HttpRoute::new(Method::Post, "/v1/lines", "lines", lines))
            .unwrap();
        let answer = table.handle(
            Method::Post,
            "/v1/lines",
            HttpRequest {
                body: b"one\ntwo\n".to_vec(),
                ..HttpRequest::default()
            },
        );
        assert_eq!(answer.status, 200);
        assert_eq!(answer.points.len(), 1);
        assert_eq!(answer.points[0].0, Category::Logging);
        assert_eq!(answer.points[0].1.len(), 2);
        let bad = table.handle(
            Method::Post,
            "/v1/lines",
            HttpRequest {
                body: vec![0xff, 0xfe],
                ..HttpRequest::default()
            },
        );
        assert_eq!((bad.status, bad.points.len()), (400, 0));
    }

    #[test]
    fn unknown_paths_get_404_other_methods_405_and_a_second_claim_is_refused() {
        let mut table = RouteTable::default();
        table
            .add(HttpRoute::new(Method::Post, "/v1/lines", "lines", lines))
            .unwrap();
        assert_eq!(
            table
                .handle(Method::Get, "/v1/lines", HttpRequest::default())
                .status,
            405
        );
        assert_eq!(
            table
                .handle(Method::Post, "/v1/other", HttpRequest::default())
                .status,
            404
        );
        let err = table
            .add(HttpRoute::new(Method::Post, "/v1/lines", "other", lines))
            .unwrap_err();
        assert_eq!(
            (err.first.as_str(), err.second.as_str()),
            ("lines", "other")
        );
        assert!(err.to_string().contains("disable one"), "{err}");
        assert_eq!(Method::parse("POST"), Some(Method::Post));
        assert_eq!(Method::parse("TRACE"), None);
        let req = HttpRequest {
            headers: vec![("content-type".into(), "text/plain".into())],
            ..HttpRequest::default()
        };
        assert_eq!(req.header("content-type"), Some("text/plain"));
    }
}
