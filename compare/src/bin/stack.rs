//! The loopback HTTP test: bare axum, our stack (per-IP rate limit, JWT
//! HS256, role check) with and without the verified-token cache, and the
//! peers' stack (tower_governor, jwt-authorizer with a claims check), each
//! served on 127.0.0.1 by a one-thread runtime and loaded by this
//! program's own HTTP/1 client over N keep-alive connections for a fixed
//! time. Contenders alternate round by round.
//!
//! ```sh
//! cargo run --release --bin stack -- [connections] [seconds] [rounds]
//! ```
//!
//! Reported per contender: requests per second (median of the rounds) and
//! the server thread's CPU time per request, read from
//! `/proc/self/task/<tid>/stat`; ratios are against bare axum measured in
//! the same rounds. With the client on the other core the server is the
//! bottleneck, so both ratios agree when the machine is quiet; on a shared
//! machine the CPU ratio is the steadier one.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use axum::Router;
use http::{header, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tower_auth_compare as common;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Contender {
    Bare,
    Ours,
    OursCached,
    Peers,
}

impl Contender {
    const ALL: [Contender; 4] = [
        Contender::Bare,
        Contender::Ours,
        Contender::OursCached,
        Contender::Peers,
    ];

    fn name(self) -> &'static str {
        match self {
            Contender::Bare => "bare axum (no auth)",
            Contender::Ours => "tower-auth: rate limit + JWT HS256 + role",
            Contender::OursCached => "tower-auth, verified-token cache",
            Contender::Peers => "tower_governor + jwt-authorizer (+ claims check)",
        }
    }

    async fn router(self) -> Router {
        match self {
            Contender::Bare => common::bare_router(),
            Contender::Ours => common::our_router(false),
            Contender::OursCached => common::our_router(true),
            Contender::Peers => common::peer_router().await,
        }
    }
}

/// A server on its own thread and one-thread runtime.
struct Server {
    addr: SocketAddr,
    tid: u32,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

fn start(contender: Contender) -> Server {
    let (tx, rx) = mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let router = contender.router().await;
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("address");
            tx.send((addr, thread_id())).expect("main thread waits");
            let app = router.into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .expect("serve");
        });
    });
    let (addr, tid) = rx.recv().expect("server started");
    Server {
        addr,
        tid,
        stop,
        thread,
    }
}

/// This thread's id, from `/proc/thread-self/stat`.
fn thread_id() -> u32 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("Linux /proc");
    stat.split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .expect("tid")
}

/// CPU time (user + system) of thread `tid` of this process.
fn cpu_time(tid: u32, ticks_per_second: u64) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).expect("stat");
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_nanos(ticks * 1_000_000_000 / ticks_per_second)
}

fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Loads `addr` with `connections` keep-alive connections; counts the
/// `200`s answered while `counting` is set, until `done`.
async fn load(
    addr: SocketAddr,
    connections: usize,
    authorization: HeaderValue,
    counting: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
) {
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (authorization, counting, done, count) = (
            authorization.clone(),
            Arc::clone(&counting),
            Arc::clone(&done),
            Arc::clone(&count),
        );
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            while !done.load(Ordering::Relaxed) {
                let req = Request::get("/")
                    .header(header::HOST, "127.0.0.1")
                    .header(header::AUTHORIZATION, authorization.clone())
                    .body(Empty::<bytes::Bytes>::new())
                    .expect("request");
                sender.ready().await.expect("connection alive");
                let res = sender.send_request(req).await.expect("response");
                let status = res.status();
                let _ = res.into_body().collect().await.expect("body");
                assert_eq!(status, StatusCode::OK, "every request is let through");
                if counting.load(Ordering::Relaxed) {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
}

struct Sample {
    rps: f64,
    cpu_per_request: Duration,
}

fn measure(
    client: &tokio::runtime::Runtime,
    contender: Contender,
    connections: usize,
    seconds: f64,
    authorization: &HeaderValue,
    ticks: u64,
) -> Sample {
    let server = start(contender);
    let counting = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let loader = client.spawn(load(
        server.addr,
        connections,
        authorization.clone(),
        Arc::clone(&counting),
        Arc::clone(&done),
        Arc::clone(&count),
    ));
    // Warm up, then count for `seconds`.
    std::thread::sleep(Duration::from_millis(500));
    let cpu_start = cpu_time(server.tid, ticks);
    let start = Instant::now();
    counting.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs_f64(seconds));
    counting.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let cpu = cpu_time(server.tid, ticks) - cpu_start;
    done.store(true, Ordering::Relaxed);
    client.block_on(loader).expect("load finished");
    let _ = server.stop.send(());
    server.thread.join().expect("server thread");
    let n = count.load(Ordering::Relaxed).max(1);
    Sample {
        rps: n as f64 / elapsed.as_secs_f64(),
        cpu_per_request: cpu / u32::try_from(n).unwrap_or(u32::MAX),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let connections: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let seconds: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3.0);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let ticks = ticks_per_second();
    let authorization = common::bearer(&common::token());
    // One worker thread: the client runs while this thread sleeps.
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("client runtime");

    println!(
        "loopback, {connections} connections, {seconds} s per run, {rounds} rounds, server on one thread"
    );
    let mut samples: Vec<Vec<Sample>> = Contender::ALL.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (i, contender) in Contender::ALL.into_iter().enumerate() {
            let s = measure(
                &client,
                contender,
                connections,
                seconds,
                &authorization,
                ticks,
            );
            println!(
                "round {round}: {:<50} {:>9.0} req/s  {:>6.2} µs server CPU/req",
                contender.name(),
                s.rps,
                s.cpu_per_request.as_secs_f64() * 1e6
            );
            samples[i].push(s);
        }
    }
    let bare_rps = median(samples[0].iter().map(|s| s.rps).collect());
    let bare_cpu = median(
        samples[0]
            .iter()
            .map(|s| s.cpu_per_request.as_secs_f64())
            .collect(),
    );
    println!();
    println!("| stack | req/s (median) | req/s vs bare | server CPU/req | capacity vs bare (CPU) | req/s range vs bare |");
    println!("|---|---|---|---|---|---|");
    for (i, contender) in Contender::ALL.into_iter().enumerate() {
        let rps = median(samples[i].iter().map(|s| s.rps).collect());
        let cpu = median(
            samples[i]
                .iter()
                .map(|s| s.cpu_per_request.as_secs_f64())
                .collect(),
        );
        // Round by round: each against the bare run of its own round.
        let ratios: Vec<f64> = samples[i]
            .iter()
            .zip(&samples[0])
            .map(|(s, b)| s.rps / b.rps)
            .collect();
        let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().copied().fold(0.0, f64::max);
        println!(
            "| {} | {:.0} | {:.2} | {:.2} µs | {:.2} | {:.2}-{:.2} |",
            contender.name(),
            rps,
            rps / bare_rps,
            cpu * 1e6,
            bare_cpu / cpu,
            lo,
            hi
        );
    }
}
