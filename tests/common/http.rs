//! A tiny HTTP/1.1 server on 127.0.0.1 for fakes of the endpoints a binary talks to (the Lambda Extensions
//! API): each request is read whole (request line, headers, a `Content-Length` body) and answered with the
//! bytes the test's function returns, verbatim, so that a fake can answer what no real server would.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One request as the server read it.
pub struct Request {
    pub method: String,
    /// The request target as sent (path and query).
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

/// A complete response: status line, `headers`, a `content-length` and `body`.
pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status} Fake\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    [head.into_bytes(), body.to_vec()].concat()
}

type Handler = dyn Fn(&Request) -> Option<Vec<u8>> + Send + Sync;

/// The server: one thread accepting, one per connection, until the test process ends.
pub struct FakeServer {
    /// `127.0.0.1:port`.
    pub address: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl FakeServer {
    /// Answers each request with what `handler` returns; `None` closes the connection without an answer.
    pub fn start(handler: impl Fn(&Request) -> Option<Vec<u8>> + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let handler: Arc<Handler> = Arc::new(handler);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (handler, log) = (handler.clone(), log.clone());
                std::thread::spawn(move || serve(stream, &*handler, &log));
            }
        });
        Self { address, seen }
    }

    /// `METHOD path` of every request so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, handler: &Handler, seen: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    while let Some(request) = read_request(&mut reader) {
        seen.lock().unwrap().push(format!("{} {}", request.method, request.path));
        match handler(&request) {
            Some(bytes) if writer.write_all(&bytes).is_ok() => {}
            _ => return,
        }
    }
}

/// The next request on the connection, or `None` at its end.
fn read_request(reader: &mut impl BufRead) -> Option<Request> {
    let mut request = read_head(reader)?;
    read_body(reader, &mut request)?;
    Some(request)
}

/// The request line and headers of the next request on the connection (its body still to be read).
fn read_head(reader: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    reader.read_line(&mut line).ok().filter(|&n| n > 0)?;
    let mut words = line.split_whitespace();
    let (method, path) = (words.next()?.to_owned(), words.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok().filter(|&n| n > 0)?;
        let Some((name, value)) = line.trim_end().split_once(':') else { break };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Some(Request { method, path, headers, body: Vec::new() })
}

/// The `Content-Length` body of `request`, read into it.
fn read_body(reader: &mut impl BufRead, request: &mut Request) -> Option<()> {
    let length = request.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    request.body = vec![0; length];
    reader.read_exact(&mut request.body).ok()
}

/// What a [`ForwardingProxy`] does with a request.
pub enum Verdict {
    /// Forwarded to the upstream server, its answer returned.
    Forward,
    /// Held until the test releases it ([`ForwardingProxy::release_all`]), then forwarded.
    Hold,
    /// Answered with these bytes; the upstream server never sees it.
    Answer(Vec<u8>),
}

type Policy = dyn Fn(&Request) -> Verdict + Send + Sync;

/// A proxy in front of a real server (moto): every request is logged, then forwarded, held or answered as
/// the test's policy says. It counts what a client really sends, and holds requests to show how many are
/// in flight at once, without a double of the client's code.
pub struct ForwardingProxy {
    /// `http://127.0.0.1:port`.
    pub url: String,
    shared: Arc<ProxyShared>,
}

struct ProxyShared {
    upstream: String,
    policy: Mutex<Arc<Policy>>,
    seen: Mutex<Vec<Seen>>,
    held: Mutex<Held>,
    changed: std::sync::Condvar,
}

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// The request target (path and query).
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
}

#[derive(Default)]
struct Held {
    /// Requests waiting now.
    waiting: usize,
    /// The most ever waiting at once.
    most: usize,
    /// Tickets below this one are released (tickets are handed out in arrival order).
    released_below: u64,
    next_ticket: u64,
}

impl ForwardingProxy {
    /// A proxy to `upstream` (`http://host:port`) forwarding everything.
    pub fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.strip_prefix("http://").expect("a plain-HTTP upstream").trim_end_matches('/');
        let shared = Arc::new(ProxyShared {
            upstream: upstream.to_owned(),
            policy: Mutex::new(Arc::new(|_: &Request| Verdict::Forward)),
            seen: Mutex::default(),
            held: Mutex::default(),
            changed: std::sync::Condvar::new(),
        });
        let accepting = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let shared = accepting.clone();
                std::thread::spawn(move || shared.serve(stream));
            }
        });
        Self { url, shared }
    }

    /// From now on, `policy` decides what happens to each request.
    pub fn set_policy(&self, policy: impl Fn(&Request) -> Verdict + Send + Sync + 'static) {
        *self.shared.policy.lock().unwrap() = Arc::new(policy);
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// The requests so far whose method is `method`.
    pub fn count(&self, method: &str) -> usize {
        self.seen().iter().filter(|seen| seen.method == method).count()
    }

    /// Requests held now.
    pub fn held(&self) -> usize {
        self.shared.held.lock().unwrap().waiting
    }

    /// The most requests ever held at once.
    pub fn most_held(&self) -> usize {
        self.shared.held.lock().unwrap().most
    }

    /// Waits until `count` requests are held at once. A guard against a hang, not a measure: after a
    /// minute without them, it panics with what it saw.
    pub fn wait_until_held(&self, count: usize) {
        let held = self.shared.held.lock().unwrap();
        let limit = std::time::Duration::from_secs(60);
        let (held, _) = self.shared.changed.wait_timeout_while(held, limit, |held| held.waiting < count).unwrap();
        let waiting = held.waiting;
        drop(held);
        assert!(waiting >= count, "{waiting} requests held, never {count}; seen: {:?}", self.seen());
    }

    /// Lets every request held now go on to the upstream server.
    pub fn release_all(&self) {
        let mut held = self.shared.held.lock().unwrap();
        held.released_below = held.next_ticket;
        self.shared.changed.notify_all();
    }

    /// From now on forwards everything, and lets what is held go.
    pub fn open(&self) {
        self.set_policy(|_| Verdict::Forward);
        self.release_all();
    }
}

/// Opens the proxy when dropped: a test that fails while its client waits on a held request ends rather
/// than waits for it for ever.
pub struct OpenOnDrop<'a>(pub &'a ForwardingProxy);

impl Drop for OpenOnDrop<'_> {
    fn drop(&mut self) {
        self.0.open();
    }
}

impl ProxyShared {
    fn serve(&self, stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        // One upstream connection per client connection, kept alive as the client's is.
        let mut upstream = None;
        while let Some(mut request) = read_head(&mut reader) {
            assert!(request.header("transfer-encoding").is_none(), "a chunked request body: {}", request.path);
            let range = request.header("range").map(str::to_owned);
            let seen = Seen { method: request.method.clone(), path: request.path.clone(), range };
            self.seen.lock().unwrap().push(seen);
            // Decided on the request line and headers, and a held request counted as soon as they arrive:
            // a large body still on its way does not hide that the request was sent.
            let policy = self.policy.lock().unwrap().clone();
            let verdict = policy(&request);
            let ticket = matches!(verdict, Verdict::Hold).then(|| self.take_ticket());
            if read_body(&mut reader, &mut request).is_none() {
                return;
            }
            if let Some(ticket) = ticket {
                self.wait_for_release(ticket);
            }
            let answer = match verdict {
                Verdict::Answer(bytes) => bytes,
                Verdict::Forward | Verdict::Hold => self.forward(&request, &mut upstream),
            };
            if writer.write_all(&answer).is_err() {
                return;
            }
        }
    }

    /// Counts a request as held; its ticket, in arrival order, for [`wait_for_release`](Self::wait_for_release).
    fn take_ticket(&self) -> u64 {
        let mut held = self.held.lock().unwrap();
        let ticket = held.next_ticket;
        held.next_ticket += 1;
        held.waiting += 1;
        held.most = held.most.max(held.waiting);
        self.changed.notify_all();
        ticket
    }

    /// Blocks until the test releases the request holding `ticket`.
    fn wait_for_release(&self, ticket: u64) {
        let held = self.held.lock().unwrap();
        let mut held = self.changed.wait_while(held, |held| ticket >= held.released_below).unwrap();
        held.waiting -= 1;
        self.changed.notify_all();
    }

    /// The upstream server's answer to `request`. A GET or HEAD goes on `upstream`, kept alive (connected
    /// first if it is not, and again if the server closed it while idle: those are safe to repeat); any
    /// other request on a connection of its own, sent once.
    fn forward(&self, request: &Request, upstream: &mut Option<BufReader<TcpStream>>) -> Vec<u8> {
        let repeatable = matches!(request.method.as_str(), "GET" | "HEAD");
        let mut head = format!("{} {} HTTP/1.1\r\n", request.method, request.path);
        for (name, value) in &request.headers {
            // No interim `100 Continue` to pass on: the body is already here.
            if name != "expect" && name != "connection" {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        head.push_str(if repeatable { "\r\n" } else { "connection: close\r\n\r\n" });
        let connect = || BufReader::new(TcpStream::connect(&self.upstream).expect("connect to the upstream server"));
        let mut once = None;
        let (connection, reused) = match (repeatable, upstream.is_some()) {
            (false, _) => (once.insert(connect()), false),
            (true, reused) => (upstream.get_or_insert_with(connect), reused),
        };
        let send = |connection: &mut BufReader<TcpStream>| {
            let sent = connection.get_mut().write_all(head.as_bytes());
            sent.and_then(|()| connection.get_mut().write_all(&request.body)).ok()?;
            read_response(connection, &request.method)
        };
        let answer = match send(connection) {
            None if reused => send(upstream.insert(connect())),
            answer => answer,
        };
        let Some((answer, keep_alive)) = answer else {
            panic!("no answer from the upstream server to {} {}", request.method, request.path);
        };
        if repeatable && !keep_alive {
            *upstream = None;
        }
        answer
    }
}

/// One whole response from `reader` (to a `method` request), verbatim, and whether the connection stays
/// open after it; `None` if the connection ended before a status line.
fn read_response(reader: &mut BufReader<TcpStream>, method: &str) -> Option<(Vec<u8>, bool)> {
    use std::io::Read as _;
    let mut answer = Vec::new();
    let mut line = String::new();
    reader.read_line(&mut line).ok().filter(|&n| n > 0)?;
    let status: u16 = line.split_whitespace().nth(1).and_then(|code| code.parse().ok()).expect("a status line");
    answer.extend_from_slice(line.as_bytes());
    let (mut length, mut chunked, mut close) = (None, false, false);
    loop {
        line.clear();
        reader.read_line(&mut line).expect("the response's headers");
        answer.extend_from_slice(line.as_bytes());
        let Some((name, value)) = line.trim_end().split_once(':') else { break };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_ascii_lowercase());
        match name.as_str() {
            "content-length" => length = value.parse::<usize>().ok(),
            "transfer-encoding" => chunked = value.contains("chunked"),
            "connection" => close = value == "close",
            _ => {}
        }
    }
    if method == "HEAD" || status / 100 == 1 || status == 204 || status == 304 {
        return Some((answer, !close));
    }
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).expect("a chunk's size");
            answer.extend_from_slice(line.as_bytes());
            let size = usize::from_str_radix(line.trim_end().split(';').next().unwrap(), 16).expect("a chunk size");
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).expect("a chunk");
            answer.extend_from_slice(&chunk);
            if size == 0 {
                return Some((answer, !close));
            }
        }
    }
    match length {
        Some(length) => {
            let mut body = vec![0; length];
            reader.read_exact(&mut body).expect("the response's body");
            answer.extend_from_slice(&body);
            Some((answer, !close))
        }
        None => {
            reader.read_to_end(&mut answer).expect("the response's body, to the connection's end");
            Some((answer, false))
        }
    }
}
