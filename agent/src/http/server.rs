//! The HTTP connection loop, bounded against abuse: at most [`MAX_CONNECTIONS`] at once
//! (more are closed at accept and counted), request headers within [`MAX_HEADER_BYTES`]
//! and [`HEADER_TIMEOUT`] (slowloris), bodies within [`MAX_BODY_BYTES`] and
//! [`BODY_TIMEOUT`] (enforced by the handlers that read a body), and no connection kept
//! longer than [`MAX_CONNECTION_AGE`] (it is closed after its current request). Each
//! refusal is logged and counted in `nodeward_requests_refused_total{interface="http"}`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::Router;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tracing::{debug, warn};

use crate::metrics::Agent;

pub const MAX_CONNECTIONS: usize = 64;
/// hyper's read buffer, which bounds the request line and headers (its minimum is 8 KiB).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
pub const MAX_HEADERS: usize = 64;
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(120);
/// How long a connection asked to close may finish its current request.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The connection loop's bounds (the constants above; smaller in tests).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub connections: usize,
    pub header_timeout: Duration,
    pub connection_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: MAX_CONNECTIONS,
            header_timeout: HEADER_TIMEOUT,
            connection_age: MAX_CONNECTION_AGE,
        }
    }
}

/// Serve `app` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    agent: Arc<Agent>,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.connections));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            agent.record_refusal("http", "connection_limit");
            warn!(%peer, limit = limits.connections, "HTTP connection refused: too many open connections");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (app, agent) = (app.clone(), agent.clone());
        tokio::spawn(async move {
            connection(stream, app, &agent, peer, limits).await;
            drop(slot);
        });
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    app: Router,
    agent: &Agent,
    peer: std::net::SocketAddr,
    limits: Limits,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS);
    let served = Arc::new(AtomicU64::new(0));
    let app = Counted {
        app,
        served: served.clone(),
    };
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = tokio::time::sleep(limits.connection_age) => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await {
                Ok(r) => r,
                Err(_) => {
                    debug!(%peer, "HTTP connection closed at its age limit mid-request");
                    return;
                }
            }
        }
    };
    if let Err(e) = result {
        if e.is_timeout() && served.load(Ordering::Relaxed) > 0 {
            // hyper's header timeout also ends a kept-alive connection that sits idle
            // between requests (Prometheus between scrapes): normal, not an attack.
            debug!(%peer, "idle HTTP keep-alive connection closed");
        } else if e.is_timeout() {
            agent.record_refusal("http", "header_timeout");
            warn!(%peer, timeout = ?limits.header_timeout, "HTTP connection closed: request headers not received in time");
        } else if e.is_parse_too_large() {
            agent.record_refusal("http", "header_too_large");
            warn!(%peer, limit = MAX_HEADER_BYTES, "HTTP request refused: headers too large");
        } else if e.is_parse() {
            agent.record_refusal("http", "malformed");
            debug!(%peer, error = %e, "HTTP request refused: malformed");
        } else {
            debug!(%peer, error = %e, "HTTP connection ended with an error");
        }
    }
}

/// The router, counting the requests of one connection.
#[derive(Clone)]
struct Counted {
    app: Router,
    served: Arc<AtomicU64>,
}

impl<B> tower_service::Service<axum::http::Request<B>> for Counted
where
    Router: tower_service::Service<axum::http::Request<B>>,
{
    type Response = <Router as tower_service::Service<axum::http::Request<B>>>::Response;
    type Error = <Router as tower_service::Service<axum::http::Request<B>>>::Error;
    type Future = <Router as tower_service::Service<axum::http::Request<B>>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        tower_service::Service::<axum::http::Request<B>>::poll_ready(&mut self.app, cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        self.served.fetch_add(1, Ordering::Relaxed);
        self.app.call(req)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    const SHORT: Limits = Limits {
        connections: 2,
        header_timeout: Duration::from_millis(300),
        connection_age: Duration::from_secs(30),
    };

    fn refused(agent: &Agent, reason: &str) -> f64 {
        let text = agent.render();
        let series =
            format!("nodeward_requests_refused_total{{interface=\"http\",reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN)
    }

    /// A server on 127.0.0.1 with [`SHORT`] limits, on its own runtime thread.
    fn start() -> (std::net::SocketAddr, Arc<Agent>) {
        start_with(SHORT)
    }

    fn start_with(limits: Limits) -> (std::net::SocketAddr, Arc<Agent>) {
        let agent = Arc::new(Agent::new(&[], &[], &[]));
        let rt = tokio::runtime::Runtime::new().unwrap();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/", axum::routing::get(|| async { "ok\n" }));
        let a = agent.clone();
        std::thread::spawn(move || {
            rt.block_on(serve(listener, app, a, limits, std::future::pending()))
        });
        (addr, agent)
    }

    /// Read until the server closes the connection (or 10 s pass: then `None`).
    fn read_to_close(s: &mut std::net::TcpStream) -> Option<String> {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut out = Vec::new();
        match s.read_to_end(&mut out) {
            Ok(_) => Some(String::from_utf8_lossy(&out).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                Some(String::from_utf8_lossy(&out).into_owned())
            }
            Err(_) => None,
        }
    }

    fn wait_for(mut f: impl FnMut() -> bool) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn a_client_that_never_finishes_its_headers_is_cut_off_and_counted() {
        let (addr, agent) = start();
        let mut slow = std::net::TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .unwrap();
        // Closed well before the connection age (30 s): by the header timeout.
        assert!(read_to_close(&mut slow).is_some(), "slow client kept open");
        assert!(wait_for(|| refused(&agent, "header_timeout") == 1.0));
    }

    #[test]
    fn an_idle_keep_alive_connection_is_closed_quietly_not_counted_as_slow() {
        let (addr, agent) = start();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let answer = read_to_close(&mut s).expect("closed after the idle timeout");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(refused(&agent, "header_timeout"), 0.0);
    }

    #[test]
    fn oversized_headers_are_refused_and_counted() {
        let (addr, agent) = start();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let big = "a".repeat(MAX_HEADER_BYTES + 1024);
        // The server may close before the whole request is written.
        let _ =
            s.write_all(format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes());
        let answer = read_to_close(&mut s).expect("closed");
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
            "{answer}"
        );
        assert!(wait_for(|| refused(&agent, "header_too_large") == 1.0));
    }

    #[test]
    fn connections_over_the_limit_are_closed_at_once_and_counted_and_service_resumes() {
        // Slots held until the clients go away (the header timeout is far off).
        let (addr, agent) = start_with(Limits {
            header_timeout: Duration::from_secs(60),
            ..SHORT
        });
        // Two idle connections hold both slots.
        let held: Vec<_> = (0..2)
            .map(|_| {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
                s
            })
            .collect();
        assert!(wait_for(|| {
            let mut third = std::net::TcpStream::connect(addr).unwrap();
            let _ = third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
            read_to_close(&mut third).is_some_and(|a| a.is_empty())
        }));
        assert!(refused(&agent, "connection_limit") >= 1.0);
        drop(held);
        // Once the held connections are gone, requests are served again.
        assert!(wait_for(|| {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            read_to_close(&mut s).is_some_and(|a| a.starts_with("HTTP/1.1 200"))
        }));
    }
}
