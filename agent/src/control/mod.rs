//! Control socket: a unix socket for the CLI verbs, root only (peer credentials are
//! checked on every connection). One JSON request line, one JSON answer line; both are
//! typed ([`Request`], [`reply::Reply`]).

pub mod reply;

use std::{os::unix::fs::PermissionsExt, path::Path, sync::Arc};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream, unix::OwnedReadHalf},
    sync::{Semaphore, mpsc, oneshot},
};
use tracing::{info, warn};

use self::reply::{Answer, DecodeError};
use crate::{metrics::Agent, quarantine::Target};

/// A control request: `{"verb": "...", ...}`. The quarantine engine's verbs are one
/// nested type, so the run loop hands them on whole.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status,
    /// Live IP -> MAC bindings, optionally of one interface.
    Bindings {
        interface: Option<String>,
    },
    /// Every reboot in the next `for_s` seconds is expected.
    AllowReboot {
        for_s: u64,
        reason: String,
    },
    #[serde(untagged)]
    Quarantine(QuarantineRequest),
}

/// The requests the quarantine engine answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "snake_case", deny_unknown_fields)]
pub enum QuarantineRequest {
    List,
    Add {
        target: Target,
        ttl_s: Option<u64>,
        reason: String,
    },
    Approve {
        id: u64,
    },
    Release {
        id: Option<u64>,
    },
}

/// A request with the identity of who sent it and where to answer.
pub struct Command {
    pub request: Request,
    /// "uid=0 pid=1234" of the peer, recorded in the audit journal.
    pub by: String,
    pub reply: oneshot::Sender<Answer>,
}

/// Bind the socket: parent directory 0700, stale socket replaced, socket 0600.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// At most this many control connections at once; more are answered "busy".
pub const MAX_CONNECTIONS: usize = 16;
/// A request line longer than this is refused (the largest real request is < 1 KiB).
pub const MAX_REQUEST_BYTES: u64 = 64 * 1024;
/// A client must send its request line within this time.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub async fn serve(listener: UnixListener, commands: mpsc::Sender<Command>, agent: Arc<Agent>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (commands, agent) = (commands.clone(), agent.clone());
        let slot = slots.clone().try_acquire_owned();
        tokio::spawn(async move {
            let Ok(_slot) = slot else {
                agent.record_refusal("control", "connection_limit");
                warn!(
                    limit = MAX_CONNECTIONS,
                    "control request refused: too many connections"
                );
                let (_, mut write) = stream.into_split();
                let busy = reply::encode(&Err("busy: too many control connections".into()));
                let _ = write.write_all(&busy).await;
                return;
            };
            if let Err(e) = handle(stream, commands, &agent).await {
                warn!(error = %e, "control connection failed");
            }
        });
    }
}

/// Why a request line was not read.
enum LineError {
    TooLarge,
    Timeout,
    Io(std::io::Error),
}

/// The request line: at most [`MAX_REQUEST_BYTES`], within [`REQUEST_TIMEOUT`]; `None`
/// when the peer closed without sending one.
async fn request_line(read: OwnedReadHalf) -> Result<Option<Vec<u8>>, LineError> {
    let mut line = Vec::new();
    let mut limited = BufReader::new(read.take(MAX_REQUEST_BYTES + 1));
    match tokio::time::timeout(REQUEST_TIMEOUT, limited.read_until(b'\n', &mut line)).await {
        Err(_) => Err(LineError::Timeout),
        Ok(Err(e)) => Err(LineError::Io(e)),
        Ok(Ok(0)) => Ok(None),
        Ok(Ok(_)) if line.len() as u64 > MAX_REQUEST_BYTES => Err(LineError::TooLarge),
        Ok(Ok(_)) => Ok(Some(line)),
    }
}

async fn handle(
    stream: UnixStream,
    commands: mpsc::Sender<Command>,
    agent: &Agent,
) -> std::io::Result<()> {
    let cred = stream.peer_cred()?;
    let (read, mut write) = stream.into_split();
    let answer = |a: Answer| reply::encode(&a);
    if cred.uid() != 0 {
        agent.record_refusal("control", "not_root");
        warn!(uid = cred.uid(), pid = ?cred.pid(), "control request refused: not root");
        write
            .write_all(&answer(Err("permission denied: root only".into())))
            .await?;
        return Ok(());
    }
    let by = format!("uid={} pid={}", cred.uid(), cred.pid().unwrap_or(0));
    let line = match request_line(read).await {
        Ok(Some(line)) => line,
        Ok(None) => return Ok(()),
        Err(LineError::Io(e)) => return Err(e),
        Err(LineError::TooLarge) => {
            agent.record_refusal("control", "too_large");
            warn!(by = %by, limit = MAX_REQUEST_BYTES, "control request refused: too large");
            let msg = format!("request over {MAX_REQUEST_BYTES} bytes");
            return write.write_all(&answer(Err(msg))).await;
        }
        Err(LineError::Timeout) => {
            agent.record_refusal("control", "timeout");
            warn!(by = %by, timeout = ?REQUEST_TIMEOUT, "control request refused: not received in time");
            let msg = "request not received in time".to_string();
            return write.write_all(&answer(Err(msg))).await;
        }
    };
    let request: Request = match serde_json::from_slice(&line) {
        Ok(r) => r,
        Err(e) => {
            agent.record_refusal("control", "malformed");
            write
                .write_all(&answer(Err(format!("bad request: {e}"))))
                .await?;
            return Ok(());
        }
    };
    let line = String::from_utf8_lossy(&line);
    info!(by = %by, request = %line.trim_end(), "control request");
    let (tx, rx) = oneshot::channel();
    if commands
        .send(Command {
            request,
            by,
            reply: tx,
        })
        .await
        .is_err()
    {
        write
            .write_all(&answer(Err("agent is shutting down".into())))
            .await?;
        return Ok(());
    }
    let reply = rx.await.unwrap_or_else(|_| Err("no answer".into()));
    write.write_all(&answer(reply)).await
}

/// Why a control request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot reach the agent at {path} ({source}); is `nodeward run` running?")]
    Unreachable {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to the agent: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding the request: {0}")]
    Encode(#[source] serde_json::Error),
    #[error(transparent)]
    Answer(#[from] DecodeError),
}

/// Client side, for the CLI: send one request; the answer's body of type `T` (the
/// verb's reply), and the answer as JSON (for `--json`).
pub fn call<T: serde::de::DeserializeOwned>(
    path: &Path,
    request: &Request,
) -> Result<(T, serde_json::Value), ControlError> {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path).map_err(|source| {
        ControlError::Unreachable {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let mut line = serde_json::to_vec(request).map_err(ControlError::Encode)?;
    line.push(b'\n');
    s.write_all(&line)?;
    let mut resp = String::new();
    std::io::BufReader::new(s).read_line(&mut resp)?;
    Ok(reply::decode(&resp)?)
}

#[cfg(test)]
mod tests {
    use super::{QuarantineRequest, Request};

    #[test]
    fn requests_keep_their_flat_wire_form() {
        let list = Request::Quarantine(QuarantineRequest::List);
        assert_eq!(serde_json::to_string(&list).unwrap(), r#"{"verb":"list"}"#);
        let back: Request = serde_json::from_str(r#"{"verb":"release","id":4}"#).unwrap();
        assert_eq!(
            back,
            Request::Quarantine(QuarantineRequest::Release { id: Some(4) })
        );
        let status: Request = serde_json::from_str(r#"{"verb":"status"}"#).unwrap();
        assert_eq!(status, Request::Status);
        for bad in [
            r#"{"verb":"reboot"}"#,
            r#"{"verb":"allow_reboot","for_s":1,"reason":"x","x":1}"#,
            r#"{"verb":"approve","id":1,"x":1}"#,
            r#"{"verb":"approve"}"#,
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }
}
