//! A stand-in upstream that streams watch events when the test says so: the
//! fake API server answers watches 405, and a streaming test needs an
//! upstream whose every chunk the test controls.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use fault_proxy::CaPem;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::sync::{broadcast, oneshot};

/// HTTPS on 127.0.0.1: a request with `watch` in its query gets `200` and
/// then, as one chunk each, every line [`StubUpstream::send`] sends while it
/// is open; any other request gets `200 {"kind":"Status","status":"Success"}`.
pub struct StubUpstream {
    pub url: String,
    pub ca_pem: String,
    events: broadcast::Sender<String>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type Body = BoxBody<Bytes, Infallible>;

impl StubUpstream {
    pub fn start() -> StubUpstream {
        let ca = CaPem::generate("stub-upstream-ca").unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config().unwrap());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().unwrap().port()
        );
        let (events, _) = broadcast::channel::<String>(64);
        let (tx, mut rx) = oneshot::channel::<()>();
        let ev = events.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let ev = Arc::new(ev);
                loop {
                    tokio::select! {
                        _ = &mut rx => break,
                        Ok((tcp, _)) = listener.accept() => {
                            let acceptor = acceptor.clone();
                            let ev = ev.clone();
                            tokio::spawn(async move {
                                let Ok(tls) = acceptor.accept(tcp).await else { return };
                                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                                    let ev = ev.clone();
                                    async move { Ok::<_, Infallible>(answer(&req, &ev)) }
                                });
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(TokioIo::new(tls), svc)
                                    .await;
                            });
                        }
                    }
                }
            });
            rt.shutdown_background();
        });
        StubUpstream {
            url,
            ca_pem: ca.cert_pem,
            events,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// Sends one line (a newline is added) to every open watch; answers how
    /// many watches got it.
    pub fn send(&self, line: &str) -> usize {
        self.events.send(format!("{line}\n")).unwrap_or(0)
    }
}

fn answer(
    req: &hyper::Request<hyper::body::Incoming>,
    events: &broadcast::Sender<String>,
) -> hyper::Response<Body> {
    let watch = req.uri().query().is_some_and(|q| q.contains("watch"));
    let mut resp = if watch {
        let rx = events.subscribe();
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Ok(line) => Some((Ok(Frame::data(Bytes::from(line))), rx)),
                Err(_) => None,
            }
        });
        hyper::Response::new(StreamBody::new(stream).boxed())
    } else {
        hyper::Response::new(
            Full::new(Bytes::from_static(
                br#"{"kind":"Status","apiVersion":"v1","status":"Success"}"#,
            ))
            .boxed(),
        )
    };
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

impl Drop for StubUpstream {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
