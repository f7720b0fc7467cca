//! Per-instance state of a guest, and the capabilities it is built from.
//!
//! [`Capabilities`] is deny-by-default: a new value grants no environment variables, no
//! directories, no network (no bind, no connect, no name lookup), closed stdin, and output
//! discarded. The host adds exactly what a service's ecosystem entry declares.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::outgoing::OutgoingHooks;

/// Receives a guest's output, one line at a time (without the newline).
pub type LineSink = Arc<dyn Fn(&str) + Send + Sync>;

/// Reports what a guest tried and was refused (action, target), for the host's logs.
pub type DenialSink = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// A directory the guest may see: opened once, when granted, and every instance is given that
/// very directory, whatever its host path names by the time the instance is made (a service
/// that writes a parent directory cannot swap a link in its place).
#[derive(Debug, Clone)]
pub struct DirGrant {
    /// Host path, as granted.
    pub host: PathBuf,
    /// Path inside the guest.
    pub guest: String,
    /// Writable.
    pub write: bool,
    /// The directory, opened (`O_PATH`) through no link below `untrusted`.
    opened: Arc<OwnedFd>,
}

impl DirGrant {
    /// Grant the host's `host` (absolute) at `guest`, looked up with `lookup` (through no
    /// link below a directory sandboxed services can write; see [`crate::links`]).
    pub fn open(
        host: &Path,
        guest: String,
        write: bool,
        lookup: &crate::links::Lookup,
    ) -> std::io::Result<Self> {
        let real = lookup.resolve(host)?;
        Ok(Self {
            host: host.to_path_buf(),
            guest,
            write,
            opened: Arc::new(crate::links::open_beneath(&real)?),
        })
    }

    /// The path that opens the granted directory itself (its descriptor, through `/proc`).
    fn path(&self) -> PathBuf {
        crate::links::fd_path(Path::new("/"), &self.opened)
    }
}

/// Per-instance resource limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear memory per instance, in bytes.
    pub memory: usize,
    /// CPU time budget per request (http), measured in whole epoch ticks, rounded up; `None`
    /// for commands.
    pub cpu_time: Option<std::time::Duration>,
}

/// Network rules for a long-running command.
#[derive(Debug, Clone, Default)]
pub struct NetPolicy {
    /// The one port it may bind and listen on (any local address).
    pub bind_port: Option<u16>,
    /// Addresses it may connect to (port 0: any port of that address).
    pub connect: Vec<SocketAddr>,
}

/// What a guest may do.
#[derive(Clone)]
pub struct Capabilities {
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// Directories.
    pub dirs: Vec<DirGrant>,
    /// Sockets (commands only; HTTP guests reach other services through outgoing HTTP).
    pub net: NetPolicy,
    /// Where stdout and stderr lines go.
    pub output: Option<LineSink>,
    /// Where refusals are reported.
    pub denials: Option<DenialSink>,
    /// Limits.
    pub limits: Limits,
}

impl Capabilities {
    /// Nothing granted: no env, no dirs, no network, output discarded, 64 MiB of memory.
    pub fn new() -> Self {
        Self {
            env: Vec::new(),
            dirs: Vec::new(),
            net: NetPolicy::default(),
            output: None,
            denials: None,
            limits: Limits {
                memory: 64 << 20,
                cpu_time: None,
            },
        }
    }

    /// Build the WASI context of one instance.
    pub fn wasi_ctx(&self) -> anyhow::Result<WasiCtx> {
        let mut b = WasiCtxBuilder::new();
        b.envs(&self.env);
        if let Some(sink) = &self.output {
            b.stdout(LineWriter { sink: sink.clone() });
            b.stderr(LineWriter { sink: sink.clone() });
        }
        for d in &self.dirs {
            let perms = if d.write {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            b.preopened_dir(d.path(), &d.guest, perms)
                .map_err(|e| anyhow::anyhow!("cannot open `{}`: {e}", d.host.display()))?;
        }
        let net = self.net.clone();
        // TCP goes through the check below, so every refused attempt is reported; UDP and name
        // lookup are off.
        b.allow_tcp(true)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let denials = self.denials.clone();
        b.socket_addr_check(move |addr, usage| {
            let allowed = match usage {
                // Its own port; or port 0, the implicit bind of an outgoing connection (which
                // cannot listen, and whose connect is checked next, with its real target).
                SocketAddrUse::TcpBind => net.bind_port == Some(addr.port()) || addr.port() == 0,
                SocketAddrUse::TcpListen => net.bind_port == Some(addr.port()),
                SocketAddrUse::TcpAccept => net.bind_port.is_some(),
                SocketAddrUse::TcpConnect => net
                    .connect
                    .iter()
                    .any(|a| a.ip() == addr.ip() && (a.port() == addr.port() || a.port() == 0)),
                _ => false,
            };
            if !allowed && let Some(d) = &denials {
                let action = match usage {
                    SocketAddrUse::TcpBind => "tcp bind",
                    SocketAddrUse::TcpListen => "tcp listen",
                    SocketAddrUse::TcpAccept => "tcp accept",
                    SocketAddrUse::TcpConnect => "tcp connect",
                    SocketAddrUse::UdpBind => "udp bind",
                    SocketAddrUse::UdpSend => "udp send",
                    SocketAddrUse::UdpReceive => "udp receive",
                };
                d(action, &addr.to_string());
            }
            Box::pin(async move { allowed })
        });
        Ok(b.build())
    }

    /// Store limits for one instance.
    pub fn store_limits(&self) -> StoreLimits {
        StoreLimitsBuilder::new()
            .memory_size(self.limits.memory)
            .instances(64)
            .tables(64)
            .memories(16)
            .trap_on_grow_failure(true)
            .build()
    }
}

impl Default for Capabilities {
    fn default() -> Self {
        Self::new()
    }
}

/// The `T` of every `Store<T>`.
pub struct HostState {
    /// WASI.
    pub wasi: WasiCtx,
    /// wasi:http.
    pub http: WasiHttpCtx,
    /// Resources.
    pub table: ResourceTable,
    /// Memory and instance limits.
    pub limits: StoreLimits,
    /// Where outgoing HTTP goes.
    pub hooks: OutgoingHooks,
    /// Bodies of outgoing requests sent without them, until the guest finishes them.
    pub unsent: Vec<wasmtime_wasi_http::WasiBody>,
}

impl HostState {
    /// State for one instance.
    pub fn new(caps: &Capabilities, hooks: OutgoingHooks) -> anyhow::Result<Self> {
        let mut table = ResourceTable::new();
        table.set_max_capacity(100_000);
        Ok(Self {
            wasi: caps.wasi_ctx()?,
            http: WasiHttpCtx::new(),
            table,
            limits: caps.store_limits(),
            hooks,
            unsent: Vec::new(),
        })
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Guest stdout/stderr: bytes split into lines, each handed to the sink.
#[derive(Clone)]
struct LineWriter {
    sink: LineSink,
}

impl IsTerminal for LineWriter {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LineWriter {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LineStream {
            sink: self.sink.clone(),
            buf: Vec::new(),
        })
    }
}

struct LineStream {
    sink: LineSink,
    buf: Vec<u8>,
}

impl LineStream {
    fn emit(&mut self, final_flush: bool) {
        // Every complete line, then one shift of what is left (not one shift per line).
        let mut start = 0;
        while let Some(i) = self.buf[start..].iter().position(|b| *b == b'\n') {
            let text = String::from_utf8_lossy(&self.buf[start..start + i]);
            (self.sink)(text.trim_end_matches('\r'));
            start += i + 1;
        }
        self.buf.drain(..start);
        if final_flush && !self.buf.is_empty() || self.buf.len() > 64 * 1024 {
            let text = String::from_utf8_lossy(&self.buf).into_owned();
            self.buf.clear();
            (self.sink)(&text);
        }
    }
}

impl tokio::io::AsyncWrite for LineStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.buf.extend_from_slice(data);
        self.emit(false);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.emit(true);
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineStream {
    fn drop(&mut self) {
        self.emit(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn guest_output_is_split_into_lines_across_writes() {
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let s = seen.clone();
        let mut out = LineStream {
            sink: Arc::new(move |l: &str| s.lock().unwrap().push(l.to_string())),
            buf: Vec::new(),
        };
        out.write_all(b"one\ntwo\r\nthr").await.unwrap();
        assert_eq!(*seen.lock().unwrap(), ["one", "two"]);
        out.write_all(b"ee\n\nlast").await.unwrap();
        out.shutdown().await.unwrap();
        assert_eq!(*seen.lock().unwrap(), ["one", "two", "three", "", "last"]);
    }
}
