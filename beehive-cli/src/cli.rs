//! The command line: subcommands, flags and their help texts.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The exit codes, shared by the help texts.
macro_rules! exit_codes {
    () => {
        "Exit codes:
  0  success: every frame decoded, every conformance case passed
  1  malformed input found (decode), conformance failures, a connection
     that could not be relayed completely (record), or a connection lost or
     requests unanswered (listen, send)
  2  usage error, or an input/output error (file not found, unwritable output)"
    };
}

#[cfg(test)]
const EXIT_CODES: &str = exit_codes!();

const MAIN_AFTER_HELP: &str = concat!(
    "\
Examples:
  beehive encode --source edged --group meta --resource default/pod/nginx \\
      --operation update --content '{\"spec\":{\"replicas\":1}}' > msg.jsonl
  beehive decode msg.jsonl
  beehive decode --json --framing package capture.bin
  beehive conformance
  beehive record --listen /tmp/relay.sock --upstream /var/lib/kubeedge/beehive.sock --out rec/
  beehive record --listen /tmp/relay.sock --upstream /var/lib/kubeedge/beehive.sock --out rec/ \\
      --metrics 127.0.0.1:9184
  beehive listen --socket /tmp/beehive.sock --module probe --answer pong
  RUST_LOG=beehive_socket=debug beehive listen --socket /tmp/beehive.sock --module probe
  beehive --log info --log-format json listen --socket /tmp/beehive.sock --module probe
  beehive send --socket /tmp/beehive.sock --module probe --to hub --sync --content ping
  beehive send --transport tcp --socket 10.0.0.7:10550 --ca ca.pem --cert probe.pem --key probe.key \\
      --module probe --to hub --sync --content ping     # TLS, with a client certificate
  beehive send --config /etc/kubeedge/config/socket_module.yaml --module probe --to hub --content hi
  beehive completions bash > ~/.local/share/bash-completion/completions/beehive

Colour is used only on a terminal; NO_COLOR=1 or --color never turns it off.

Logs: events of beehive and its libraries go to stderr, never stdout, as
text or (--log-format json) one JSON object per line:
  {\"timestamp\":\"…\",\"level\":\"INFO\",\"fields\":{\"message\":\"connected\",…},\"target\":\"beehive_socket::asyncio::client\"}
Which events: --log FILTER, else the RUST_LOG environment variable, else
`warn`. FILTER is a level (error, warn, info, debug, trace, off) or
comma-separated directives such as `warn,beehive_socket=debug`
(tracing-subscriber's EnvFilter syntax). The command's own messages
(progress, summaries, `beehive: error: …`) stay plain text lines.

Metrics: `record` and `listen` take --metrics HOST:PORT to serve Prometheus
metrics at http://HOST:PORT/metrics (port 0 picks a free port); the address
is printed on stderr once it listens (`beehive: metrics: http://…/metrics`).

",
    exit_codes!()
);

/// Look at and make KubeEdge beehive messages and frames.
#[derive(Parser, Debug)]
#[command(name = "beehive", version, after_help = MAIN_AFTER_HELP)]
pub struct Cli {
    /// When to colour the output.
    #[arg(long, value_enum, default_value_t = ColorWhen::Auto, global = true)]
    pub color: ColorWhen,
    /// How log events are written to stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Which log events are written: a level (error, warn, info, debug, trace, off) or
    /// directives such as `warn,beehive_socket=debug`; overrides RUST_LOG [default: warn].
    #[arg(long, value_name = "FILTER", global = true, value_parser = crate::observe::parse_filter)]
    pub log: Option<String>,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print every frame of a Package or Raw stream, with its offset and length.
    Decode(DecodeArgs),
    /// Write one message in Go's exact bytes (Raw or Package framing) to stdout.
    Encode(Box<EncodeArgs>),
    /// Check beehive-rs against a capture set of the Go beehive.
    Conformance(ConformanceArgs),
    /// Relay a client to its server unchanged and record the traffic as a capture set.
    Record(RecordArgs),
    /// Join a hive as a remote module and print every message it receives.
    Listen(Box<ListenArgs>),
    /// Join a hive as a remote module and send messages (and time their responses).
    Send(Box<SendArgs>),
    /// Run a hive with its socket server from edgecore's socket module YAML file, printing what its remote modules send.
    Serve(Box<ServeArgs>),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
}

/// When to colour the output.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorWhen {
    /// On a terminal, unless NO_COLOR is set (CLICOLOR_FORCE forces it).
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

impl ColorWhen {
    /// Makes the choice the default of every output stream.
    pub fn apply(self) {
        let choice = match self {
            ColorWhen::Auto => anstream::ColorChoice::Auto,
            ColorWhen::Always => anstream::ColorChoice::Always,
            ColorWhen::Never => anstream::ColorChoice::Never,
        };
        choice.write_global();
    }
}

/// How log events are written.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One line per event: time, level, target, message and fields.
    Text,
    /// One JSON object per event: timestamp, level, fields (message included), target.
    Json,
}

/// How `decode` splits its input into frames.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeFraming {
    /// Package if the input starts with the magic `beeh`; a packet log if
    /// its first non-blank line is a JSON object with `dir` and `data_b64`,
    /// `text` or `text_b64` (and no `header` or `route`); Raw if it starts
    /// with `{` or JSON whitespace (space, tab, CR, LF) or is empty;
    /// anything else is reported as unrecognised.
    Auto,
    /// 12-byte headers (`beehv1rv` + big-endian i32 length), each followed by its payload.
    Package,
    /// One JSON message per line; blank lines are skipped.
    Raw,
    /// A packet log, one JSON object per packet or stream read: `beehive
    /// record`'s transcripts, the conformance capture sessions.
    Packets,
}

const DECODE_AFTER_HELP: &str = "\
Output: one line per frame, `OFFSET LENGTH SUMMARY`, where OFFSET is the byte
offset of the frame in the input, LENGTH its size (Package: the 12-byte header
and the payload; Raw: the line without its line feed) and SUMMARY the message
as Go's Message.String() prints it. Problems are lines `OFFSET LENGTH error: …`
naming the byte they refer to. A count of frames, errors and skipped bytes goes
to stderr at the end.

With --json, one JSON object per line instead:
  {\"offset\":0,\"length\":176,\"framing\":\"package\",\"message\":{…Go's JSON of the message…}}
  {\"offset\":176,\"length\":24,\"framing\":\"package\",\"error\":{\"kind\":\"invalid_message\",…}}
  {\"offset\":200,\"length\":7,\"framing\":\"package\",\"skipped\":7,\"resumed_at\":207}

A frame whose payload is not a valid message is reported and decoding goes
on. A broken Raw line (too long) is reported and decoding goes on at the next
line. A broken Package stream (bad magic or version, negative or oversized
length, truncated frame) stops decoding; with --resync it is reported, the
bytes up to the next valid header (`beehv1rv` and a length from 0 up to the
maximum) are skipped and counted, and decoding goes on there.

Packet logs (--framing packets) hold one JSON object per line, each the bytes
of one packet or one stream read: `beehive record`'s transcripts (conn, seq,
dir, t_ns, transport, len, data_b64) and the conformance capture sessions
(seq, dir, text or text_b64, bytes). A packet (transport unixpacket, or none)
holds one message as Go writes it: its JSON and a line feed. The reads of a
stream transport (unix, tcp) are joined per connection and direction, and
that stream is split as Package (when it starts with `beeh`) or Raw. Records
start with the log line and what it says of the packet:
  line 3 conn 1 #3 client_to_server 202 SUMMARY
      a packet of 202 bytes (conn, #seq and direction as the line has them)
  line 5 conn 2 #5 server_to_client @412 165 SUMMARY
      a stream frame at byte 412 of its direction's stream, which starts in
      the read of line 5
  line 7 error: …
      a line that holds no packet
With --json, records add line, conn, seq and dir (null when the line has
none), offset is where the frame starts in the bytes its direction carried,
and stream frames add \"stream\":\"raw\" or \"package\":
  {\"line\":3,\"conn\":1,\"seq\":3,\"dir\":\"client_to_server\",\"offset\":404,\"length\":202,\"framing\":\"packets\",\"message\":{…}}
A line that is not a JSON object, has no bytes, or whose len or bytes
disagrees with them is reported (kind bad_line) and decoding goes on at the
next line; so is a packet over --max-frame-len (packet_too_large). The
handshake answer, which Go writes from a struct (modules before groups), is
printed in Go's order. auto takes a packet log when its first non-blank line
is an object with dir and data_b64, text or text_b64, and without the header
and route of a message; --resync does not apply.

Examples:
  beehive decode capture.bin
  cat capture.bin | beehive decode -
  beehive decode --json --resync damaged.bin | jq .message.route
  beehive decode rec/recorded/conn-000001.jsonl

Exit codes:
  0  every frame held a valid message
  1  malformed input found (the input was still decoded as far as possible)
  2  usage error, or the input could not be read";

/// Arguments of `decode`.
#[derive(Args, Debug)]
#[command(after_help = DECODE_AFTER_HELP)]
pub struct DecodeArgs {
    /// The input file; `-` or nothing reads stdin.
    #[arg(value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// How the input is framed.
    #[arg(long, value_enum, default_value_t = DecodeFraming::Auto)]
    pub framing: DecodeFraming,
    /// One JSON object per frame (machine-readable).
    #[arg(long)]
    pub json: bool,
    /// After a broken Package frame, skip to the next valid header instead of stopping
    /// (not in packet logs).
    #[arg(long)]
    pub resync: bool,
    /// Largest frame accepted (Package: header included; Raw: line length; packets: packet length).
    #[arg(long, value_name = "BYTES", default_value_t = beehive_codec::DEFAULT_MAX_FRAME_LEN as u64,
          value_parser = clap::value_parser!(u64).range(12..=i32::MAX as u64 + 12))]
    pub max_frame_len: u64,
}

/// How `encode` frames its message.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeFraming {
    /// Go's JSON and a line feed (Go's raw `WriteJSON`, one line of a Raw stream).
    Raw,
    /// A 12-byte header and Go's JSON (Go's package `WriteJSON`).
    Package,
}

const ENCODE_AFTER_HELP: &str = "\
The message is built as Go's NewMessage(parent).BuildRouter(source, group,
resource, operation) would build it, with a fresh v4 UUID and the current time
unless --msg-id and --timestamp are given, and written with Go's json.Marshal
bytes.

Content: --content takes JSON text (or @FILE, @- for stdin) and decodes it the
way Go's json.Unmarshal fills an interface{}: objects become maps written with
sorted keys, numbers become float64, a JSON string becomes a Go string.
--content-string takes the text as a plain Go string. Without either the
content is nil (`\"content\":null`).

Examples:
  beehive encode --source edged --group meta --resource default/pod/nginx \\
      --operation update --content @pod.json > msg.jsonl
  beehive encode --source edged --group meta --resource node/edge-1 --operation query \\
      --sync --framing package --msg-id 1 --timestamp 0 > msg.bin
  beehive encode … | beehive decode --json

Exit codes:
  0  the message was written
  2  usage error (such as --content that is not JSON), or an output error";

/// Arguments of `encode`.
#[derive(Args, Debug)]
#[command(after_help = ENCODE_AFTER_HELP)]
pub struct EncodeArgs {
    /// route.source: the sending module.
    #[arg(long)]
    pub source: String,
    /// route.group: the group the message goes to.
    #[arg(long)]
    pub group: String,
    /// route.resource.
    #[arg(long)]
    pub resource: String,
    /// route.operation (insert, update, delete, query, response, …).
    #[arg(long)]
    pub operation: String,
    /// route.destination: the receiving module.
    #[arg(long, default_value = "")]
    pub destination: String,
    /// Content as JSON text, or @FILE (@- reads stdin).
    #[arg(long, value_name = "JSON|@FILE", conflicts_with = "content_string")]
    pub content: Option<String>,
    /// Content as a plain string.
    #[arg(long, value_name = "TEXT")]
    pub content_string: Option<String>,
    /// header.parent_msg_id: the id of the message this one answers.
    #[arg(long, value_name = "ID", default_value = "")]
    pub parent: String,
    /// header.sync: the sender waits for a response.
    #[arg(long)]
    pub sync: bool,
    /// header.msg_id (default: a fresh v4 UUID).
    #[arg(long, value_name = "ID")]
    pub msg_id: Option<String>,
    /// header.timestamp in milliseconds since the Unix epoch (default: now).
    #[arg(long, value_name = "MS", allow_negative_numbers = true)]
    pub timestamp: Option<i64>,
    /// header.type: the context type (channel, unixpacket).
    #[arg(long = "type", value_name = "TYPE", default_value = "")]
    pub message_type: String,
    /// header.resourceversion.
    #[arg(long, value_name = "VERSION", default_value = "")]
    pub resource_version: String,
    /// How the message is framed.
    #[arg(long, value_enum, default_value_t = EncodeFraming::Raw)]
    pub framing: EncodeFraming,
}

const CONFORMANCE_AFTER_HELP: &str = "\
Checks every category of the capture set (encode, decode, frames, malformed,
sessions, floats; see conformance/CAPTURES.md), prints a table per category
and the first failures with an escaped diff. A category whose file is absent
is reported as skipped. A directory written by `beehive record` also runs
the category `recorded`: every recorded message must decode and re-encode to
exactly the bytes that went over the socket.

Examples:
  beehive conformance
  beehive conformance path/to/captures --json summary.json --show 3

Exit codes:
  0  every case passed
  1  some case failed
  2  usage error, or the capture set could not be read";

/// Arguments of `conformance`.
#[derive(Args, Debug)]
#[command(after_help = CONFORMANCE_AFTER_HELP)]
pub struct ConformanceArgs {
    /// Capture directory (format beehive-captures/1); defaults to the vendored captures.
    #[arg(value_name = "DIR")]
    pub captures: Option<PathBuf>,
    /// Also write the summary as JSON to this file (`-`: stdout, the table then goes to stderr).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// How many failures to show in detail.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub show: usize,
}

/// The socket type `record` listens on and connects with.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordTransport {
    /// Unix SOCK_SEQPACKET (Go beehive's default): packets are relayed one by one, boundaries kept.
    Unixpacket,
    /// Unix stream socket: bytes are relayed as they arrive.
    Unix,
    /// TCP (`--listen HOST:PORT --upstream HOST:PORT`): bytes are relayed as they arrive.
    Tcp,
}

impl RecordTransport {
    /// Go's name of the socket type, as written in the recording.
    pub fn name(self) -> &'static str {
        match self {
            RecordTransport::Unixpacket => "unixpacket",
            RecordTransport::Unix => "unix",
            RecordTransport::Tcp => "tcp",
        }
    }
}

const RECORD_AFTER_HELP: &str = "\
Every connection accepted on --listen is connected to --upstream, and every
packet (unixpacket) or every read (unix, tcp) is forwarded unchanged in both
directions, then written to DIR/recorded/conn-NNNNNN.jsonl, one JSON object per
line:
  {\"conn\":1,\"seq\":1,\"dir\":\"client_to_server\",\"t_ns\":48213,\"transport\":\"unixpacket\",\"len\":165,\"data_b64\":\"eyJoZWFkZXIi…\"}
conn: the connection (from 1, in accept order); seq: the line within the
connection's file (from 1); dir: client_to_server or server_to_client;
t_ns: nanoseconds from the start of the recording to the read; len and
data_b64: the bytes read (base64, standard alphabet, padded).
DIR/recorded/index.jsonl gets one line per connection (its file, times,
counts per direction, how each direction ended, and any relay error), and
DIR/MANIFEST.json makes DIR a capture set: `beehive conformance DIR` checks
that every recorded message is one Go could have written. Both are written
when the recording ends: Ctrl-C (SIGINT), SIGTERM or --duration. A second
Ctrl-C stops at once.

A packet larger than --max-packet is never cut: the connection is closed
and the error recorded. A stale socket file at --listen is replaced. When
accepting fails (out of file descriptors, say), accepting pauses, from
20 ms doubling up to 1 s, and each failure is said on stderr; a connection
ends its relay and lets go of its descriptors when both its sides close.

With --metrics HOST:PORT, Prometheus metrics are served at
http://HOST:PORT/metrics while recording (port 0: a free port; the address
is printed on stderr):
  beehive_record_connections_total         connections accepted
  beehive_record_connections_open          connections being relayed now
  beehive_record_relay_failures_total      connections not relayed completely
  beehive_record_packets_total{direction}  packets (unixpacket) or reads (unix,
                                           tcp) relayed and recorded
  beehive_record_bytes_total{direction}    the bytes of those
where direction is client_to_server or server_to_client.

Examples:
  beehive record --listen /tmp/relay.sock --upstream /tmp/beehive.sock --out rec/
  beehive record --transport unix --listen /tmp/relay.sock --upstream /tmp/beehive.sock \\
      --out rec/ --duration 30s
  beehive record --transport tcp --listen 127.0.0.1:10551 --upstream 127.0.0.1:10550 --out rec/
  beehive record --listen /tmp/relay.sock --upstream /tmp/beehive.sock --out rec/ \\
      --metrics 127.0.0.1:9184
  beehive conformance rec/

Exit codes:
  0  the recording was written
  1  it was written, but some connection could not be relayed completely
     (upstream unreachable, a packet over --max-packet) or was closed
     unrecorded (its recording file could not be created)
  2  usage error, or --listen, --out, --metrics or the recording could not be used";

/// Arguments of `record`.
#[derive(Args, Debug)]
#[command(after_help = RECORD_AFTER_HELP)]
pub struct RecordArgs {
    /// Where clients connect: a socket path (unixpacket, unix) or HOST:PORT (tcp).
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// The server each client is connected to: a socket path or HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    pub upstream: String,
    /// The directory the capture set is written to (created; must not hold a recording or MANIFEST.json).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The socket type.
    #[arg(long, value_enum, default_value_t = RecordTransport::Unixpacket)]
    pub transport: RecordTransport,
    /// End the recording after this long (`30s`, `500ms`, `5m`, `1h`; a bare number is seconds).
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// How long connecting a client's upstream may take (a unix server whose backlog is full, a TCP
    /// server that does not answer); the client is then closed and the connection reported.
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "10s")]
    pub connect_timeout: std::time::Duration,
    /// Largest packet relayed on unixpacket; a larger one closes its connection.
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20,
          value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    pub max_packet: u64,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (port 0: a free port).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics: Option<SocketAddr>,
}

/// How `listen` and `send` reach the hive's socket server.
#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// The server's socket: a path (unixpacket, unix) or HOST:PORT (tcp); overrides --config's address.
    #[arg(long, value_name = "PATH", required_unless_present_any = ["config", "tcp"])]
    pub socket: Option<String>,
    /// The same as --socket HOST:PORT --transport tcp.
    #[arg(long, value_name = "HOST:PORT", conflicts_with_all = ["socket", "transport"], value_parser = parse_host_port)]
    pub tcp: Option<String>,
    /// KubeEdge's socket_module.yaml: the address, socket type, buffer size and TLS files of
    /// --module's client entry (else of the first server entry); flags given override them.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The name this connection registers as (the server must allow it).
    #[arg(long, value_name = "NAME")]
    pub module: String,
    /// The socket type [default: unixpacket, or --config's sockettype].
    #[arg(long, value_enum)]
    pub transport: Option<RecordTransport>,
    /// How messages are framed on unix and tcp streams (unixpacket: one message per packet).
    #[arg(long, value_enum, default_value_t = EncodeFraming::Raw)]
    pub framing: EncodeFraming,
    /// TLS over tcp: verify the server with this CA (PEM); turns TLS on.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// TLS: the client certificate (PEM) to present, with --key (and a CA: --ca or the config's).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// TLS: the client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

/// `HOST:PORT`: a host (name, IPv4 or bracketed IPv6) and a port number.
fn parse_host_port(text: &str) -> Result<String, String> {
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(text.to_owned()),
        _ => Err(format!("{text:?} is not HOST:PORT (such as 127.0.0.1:10550)")),
    }
}

/// How `listen` and `send` find their server, shared by their help texts.
macro_rules! connect_help {
    () => {
        "Where to connect: --socket PATH (unixpacket, or --transport unix), --tcp
HOST:PORT (the same as --socket HOST:PORT --transport tcp), or --config FILE:
KubeEdge's socket_module.yaml, the file `beehive serve --config` and Go's
beehive read. From the file come the address, the socket type (sockettype),
the largest message (buffersize) and the TLS files (ca, cert, key) of the
client entry (server: false) of --module, or, when the file has none, of its
first server entry (server: true) except its TLS files, which are the
server's own (a TLS server then needs --ca). Flags given on the command line
override the file's values: --socket or --tcp its address, --transport its
socket type, --ca, --cert and --key its TLS files.

"
    };
}

const LISTEN_AFTER_HELP: &str = concat!(
    "\
Connects to the hive's socket server as the remote module NAME and prints a
line once registered (the server's modules and their groups), then one line
per message addressed to NAME:
  TIME SOURCE → DESTINATION OPERATION RESOURCE SIZE CONTENT
TIME is the arrival time (UTC), SIZE the content's size in bytes and CONTENT
a preview of it; a sync request is marked `sync`. With --json, the
registration is one JSON object ({\"registered\":NAME,\"endpoint\":…,\"modules\":{…}})
and each message is Go's JSON of the message, one per line.

With --answer, every sync request is answered with a response holding TEXT
(Go's NewRespByMessage). Listening ends after --count messages, after
--timeout or on Ctrl-C. A lost connection is reported on stderr and joined
again (the registration line is printed again), with pauses from 100 ms up
to 5 s between attempts; with --once, listening ends there instead.
The connection closes once the last answer is written (at most 5 s).

With --metrics HOST:PORT, Prometheus metrics are served at
http://HOST:PORT/metrics (port 0: a free port; the address is printed on
stderr):
  beehive_listen_messages_total   messages received
  beehive_listen_answers_total    sync requests answered (--answer)
  beehive_listen_malformed_total  inputs skipped because they were not messages

",
    connect_help!(),
    "\
Examples:
  beehive listen --socket /tmp/beehive.sock --module probe
  beehive listen --socket /tmp/beehive.sock --module probe --answer pong --count 1
  beehive listen --tcp 127.0.0.1:10550 --module probe --json | jq .route
  beehive listen --config /etc/kubeedge/config/socket_module.yaml --module probe
  beehive listen --config socket_module.yaml --socket /tmp/test.sock --module probe   # the file's other settings
  beehive listen --socket /tmp/beehive.sock --module probe --metrics 127.0.0.1:9185

Exit codes:
  0  --count messages received, or ended by Ctrl-C (or --timeout without --count)
  1  the connection was lost (--once), or --timeout ran out, before --count messages
  2  usage error (among them a --config that cannot be read or has no entry to
     use), the server could not be reached or refused the module, or
     --metrics could not be served"
);

/// Arguments of `listen`.
#[derive(Args, Debug)]
#[command(after_help = LISTEN_AFTER_HELP)]
pub struct ListenArgs {
    /// Where and as whom to connect.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print Go's JSON of each message, one per line.
    #[arg(long)]
    pub json: bool,
    /// Answer every sync request with a response holding TEXT (@FILE: the file's text).
    #[arg(long, value_name = "TEXT|@FILE")]
    pub answer: Option<String>,
    /// Stop after this many messages.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Stop after this long (`30s`, `500ms`, `5m`; a bare number is seconds).
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// End (exit code 1) when the connection is lost instead of reconnecting.
    #[arg(long)]
    pub once: bool,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (port 0: a free port).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics: Option<SocketAddr>,
}

const SEND_AFTER_HELP: &str = concat!(
    "\
Connects to the hive's socket server as the remote module NAME and sends a
message to --to (a module of the server) built as Go's
NewMessage(\"\").BuildRouter(NAME, group, resource, operation).FillBody(content),
the content being the --content text as a Go string. Without --content and
--count, and with stdin not a terminal, one message is sent per stdin line.

With --sync each message waits for its response (up to --timeout), printed
with its round-trip time:
  response from SOURCE in 1.234ms: SOURCE → DESTINATION OPERATION RESOURCE SIZE CONTENT
(--json: {\"rtt_ms\":1.234,\"response\":{…Go's JSON…}}). With --count N, N
copies are sent one after the other and only a summary is printed:
messages per second and, for --sync, the round-trip p50 and p99 (--json:
one object with sent, failed, seconds, per_second, rtt_p50_ms, rtt_p99_ms). Messages
sent without --sync are queued on the connection, which closes once they
are all written (at most 5 s; a warning says when they were not).

",
    connect_help!(),
    "\
Examples:
  beehive send --socket /tmp/beehive.sock --module probe --to hub --content hello
  beehive send --socket /tmp/beehive.sock --module probe --to hub --sync --content ping
  beehive send --socket /tmp/beehive.sock --module probe --to hub --sync --count 1000
  printf 'a\\nb\\n' | beehive send --socket /tmp/beehive.sock --module probe --to hub
  beehive send --tcp 10.0.0.7:10550 --module probe --to hub --content hello
  beehive send --config /etc/kubeedge/config/socket_module.yaml --module probe --to hub --sync --content ping
  beehive send --config socket_module.yaml --tcp 127.0.0.1:10550 --module probe --to hub --content x

Exit codes:
  0  every message was sent (and, with --sync, answered)
  1  some message could not be sent or got no response in time, or the
     connection was lost
  2  usage error (among them a --config that cannot be read or has no entry to
     use), or the server could not be reached or refused the module"
);

/// Arguments of `send`.
#[derive(Args, Debug)]
#[command(after_help = SEND_AFTER_HELP)]
pub struct SendArgs {
    /// Where and as whom to connect.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The module the messages go to.
    #[arg(long, value_name = "MODULE")]
    pub to: String,
    /// Wait for each message's response and print it with its round-trip time.
    #[arg(long)]
    pub sync: bool,
    /// How long to wait for each response (--sync) and for the connection.
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "10s")]
    pub timeout: std::time::Duration,
    /// Send this many copies and print throughput (and latency with --sync).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// The content, as a Go string.
    #[arg(long, value_name = "TEXT")]
    pub content: Option<String>,
    /// route.group.
    #[arg(long, value_name = "G", default_value = "")]
    pub group: String,
    /// route.resource.
    #[arg(long, value_name = "R", default_value = "")]
    pub resource: String,
    /// route.operation.
    #[arg(long, value_name = "O", default_value = "update")]
    pub operation: String,
    /// Print responses as JSON (Go's JSON of the message), one per line.
    #[arg(long)]
    pub json: bool,
}

/// `30s`, `500ms`, `5m`, `1h`, `1.5s` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{text:?} is not a duration (such as 30s, 500ms, 5m)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {text:?} (ms, s, m, h)")),
    };
    std::time::Duration::try_from_secs_f64(secs).map_err(|e| format!("{text:?}: {e}"))
}

const SERVE_AFTER_HELP: &str = "\
Reads the socket module configuration (the YAML list of socket entries that
edgecore and Go's beehive read) and serves every entry with `server: true`
on its address (sockettype unixpacket, unix or tcp; buffersize is the largest
message; connmax the most connections). As in Go, only modules with a client
entry (`server: false`) may register. Registered modules reach each other and
the hive's own modules by name; the handshake answer lists the server module
and the hive's modules.

Every message a remote module sends is printed, one line each:
  12:34:56.789 SOURCE → DESTINATION OPERATION RESOURCE SIZE [sync] CONTENT
(--json: Go's JSON of each message, and one object per event with an
\"event\" key: listening, registered, disconnected, malformed, refused).
Registrations and disconnections go to stderr. With --echo, a module (named
by --echo-module, default echo, in a group of its name) answers every sync
request with the request's own content: a stand-in edgecore for developing a
module. Runs until Ctrl-C, SIGTERM or --timeout.

Examples:
  beehive serve --config /etc/kubeedge/config/socket_module.yaml
  beehive serve --config socket_module.yaml --echo
  beehive serve --config socket_module.yaml --echo --json --metrics 127.0.0.1:9101

Metrics (--metrics): the libraries' own, among them
  beehive_messages_sent_total, beehive_messages_received_total  per module
  beehive_sync_round_trip_seconds                               round trips inside the hive
  beehive_socket_undelivered_total                              messages from remote modules dropped

Exit codes:
  0  ended by Ctrl-C, SIGTERM or --timeout
  2  usage error, an unreadable configuration, no server entry, an address
     that cannot be served, or --metrics could not be served";

/// `beehive serve`.
#[derive(Args, Debug)]
#[command(after_help = SERVE_AFTER_HELP)]
pub struct ServeArgs {
    /// The socket module configuration (YAML).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Add a module that answers every sync request with its own content.
    #[arg(long)]
    pub echo: bool,
    /// The echo module's name (and group).
    #[arg(long, value_name = "NAME", default_value = "echo", requires = "echo")]
    pub echo_module: String,
    /// Framing on unix and TCP stream sockets (Go's wrapper: raw).
    #[arg(long, value_enum, default_value_t = EncodeFraming::Raw)]
    pub framing: EncodeFraming,
    /// Print Go's JSON of each message and JSON events, one per line.
    #[arg(long)]
    pub json: bool,
    /// Stop after this long (`30s`, `500ms`, `5m`; a bare number is seconds).
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (port 0: a free port).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics: Option<SocketAddr>,
}

/// Arguments of `completions`.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  beehive completions bash > ~/.local/share/bash-completion/completions/beehive\n  \
                        beehive completions zsh > ~/.zfunc/_beehive\n  \
                        beehive completions fish > ~/.config/fish/completions/beehive.fish"
)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_help_names_the_exit_codes() {
        let mut cmd = Cli::command();
        let text = cmd.render_long_help().to_string();
        assert!(text.contains(EXIT_CODES), "{text}");
        for sub in ["decode", "encode", "conformance", "record", "listen", "send"] {
            let text = cmd.find_subcommand_mut(sub).unwrap().render_long_help().to_string();
            assert!(text.contains("Exit codes:"), "{sub}: {text}");
        }
    }

    #[test]
    fn listen_and_send_help_documents_config_and_tcp() {
        let mut cmd = Cli::command();
        for sub in ["listen", "send"] {
            let text = cmd.find_subcommand_mut(sub).unwrap().render_long_help().to_string();
            for needle in [
                "--config <FILE>",
                "--tcp <HOST:PORT>",
                "socket_module.yaml",
                "override the file's values",
                &format!("beehive {sub} --config "),
                &format!("beehive {sub} --tcp "),
                "has no entry to\n     use",
            ] {
                assert!(text.contains(needle), "{sub}: {needle}: {text}");
            }
        }
    }

    #[test]
    fn tcp_takes_host_and_port() {
        for good in ["127.0.0.1:10550", "edge-1:1", "[::1]:10550"] {
            assert_eq!(parse_host_port(good).as_deref(), Ok(good));
        }
        for bad in ["127.0.0.1", ":10550", "host:port", "host:70000", "/tmp/beehive.sock"] {
            assert!(parse_host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn help_documents_logs_and_metrics() {
        let mut cmd = Cli::command();
        let text = cmd.render_long_help().to_string();
        for needle in ["--log-format", "--log <FILTER>", "RUST_LOG", "--metrics HOST:PORT"] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        let metrics = [
            ("record", &["beehive_record_packets_total{direction}", "beehive_record_connections_open"][..]),
            ("listen", &["beehive_listen_messages_total", "beehive_listen_answers_total"][..]),
        ];
        for (sub, names) in metrics {
            let text = cmd.find_subcommand_mut(sub).unwrap().render_long_help().to_string();
            assert!(text.contains("--metrics <HOST:PORT>"), "{sub}: {text}");
            assert!(text.contains("--metrics 127.0.0.1:"), "{sub} has an example: {text}");
            for name in names {
                assert!(text.contains(name), "{sub}: {name}: {text}");
            }
        }
    }
}
