// libhdrlift_grpc.so: the plug-in's private gRPC client of hdrlift-serve (contract hdrlift.v1).
//
// Loaded by hdrlift.ofx with dlopen(RTLD_LOCAL | RTLD_DEEPBIND) from the bundle's lib/ folder,
// beside renamed copies of the gRPC, protobuf, absl, OpenSSL... libraries it links (see
// nodes/ofx/tools/bundle.py). Its only exported symbol is hdrlift_bridge_v1 (version script).
//
// Behaviour follows the Python client (plugin/client.py): several addresses share one channel
// balanced by round_robin, UNAVAILABLE is retried by gRPC's retry policy (service config), and
// UNAVAILABLE / RESOURCE_EXHAUSTED once more here with back-off; a frame that does not fit one
// message goes through ReconstructStream in 1 MiB chunks. Everything a server sends is checked
// (sizes against the frame sent) before it is copied out, and error details are reduced to one
// printable line.
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "bridge.h"
#include "hdrlift/v1/hdrlift.grpc.pb.h"

namespace {

namespace pb = hdrlift::v1;
using Clock = std::chrono::steady_clock;

constexpr size_t kChunkBytes = 1 << 20;       // as the Python client's default
constexpr int kMaxMessage = 64 << 20;         // send / receive limit, as the Python client
static_assert(sizeof(float) == 4, "float must be IEEE binary32");

std::string clean(const std::string &text, size_t limit = 1000) {
  std::string out;
  bool space = false;
  for (unsigned char c : text) {
    if (c < 0x20 || c == 0x7f || c == ' ') {  // control characters (and runs of them) -> one space
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(static_cast<char>(c));
  }
  if (out.size() > limit) out = out.substr(0, limit - 3) + "...";
  return out;
}

void put(char *dst, size_t n, const std::string &s) {
  if (!dst || n == 0) return;
  size_t k = std::min(n - 1, s.size());
  std::memcpy(dst, s.data(), k);
  dst[k] = '\0';
}

const char *code_name(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "ERROR";
  }
}

// A failure, worded like the Python client's RemoteError: "server ADDR: CODE: details".
struct Failure {
  std::string text;
};

std::string where(const std::string &servers) { return "server " + clean(servers, 200); }

Failure status_failure(const std::string &servers, const grpc::Status &st) {
  std::string d = clean(st.error_message());
  return {where(servers) + ": " + code_name(st.error_code()) + ": " + (d.empty() ? "no details" : d)};
}

bool retryable(const grpc::Status &st) {
  return st.error_code() == grpc::StatusCode::UNAVAILABLE || st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
}

// ---------------------------------------------------------------- addresses (as channel_target)
std::vector<std::string> split_addresses(const std::string &servers) {
  std::vector<std::string> out;
  std::stringstream ss(servers);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t a = item.find_first_not_of(" \t"), b = item.find_last_not_of(" \t");
    if (a != std::string::npos) out.push_back(item.substr(a, b - a + 1));
  }
  return out;
}

bool split_hostport(const std::string &addr, std::string *host, std::string *port) {
  if (!addr.empty() && addr[0] == '[') {
    size_t close = addr.find(']');
    if (close == std::string::npos) return false;
    *host = addr.substr(1, close - 1);
    std::string rest = addr.substr(close + 1);
    *port = rest.empty() ? "" : rest.substr(rest[0] == ':' ? 1 : 0);
  } else {
    size_t colon = addr.rfind(':');
    if (colon == std::string::npos) return false;
    *host = addr.substr(0, colon);
    *port = addr.substr(colon + 1);
  }
  if (host->empty() || port->empty()) return false;
  return std::all_of(port->begin(), port->end(), [](char c) { return c >= '0' && c <= '9'; });
}

// One address as given (gRPC's resolver); several as one static ipv4:/ipv6: target, each name
// resolved once here. tls_name: the first host name, for certificate checks.
bool channel_target(const std::string &servers, std::string *target, std::string *tls_name, Failure *err) {
  std::vector<std::string> addrs = split_addresses(servers);
  if (addrs.empty()) {
    *err = {"no server address given"};
    return false;
  }
  std::string host, port;
  if (addrs.size() == 1) {
    if (!split_hostport(addrs[0], &host, &port)) {
      *err = {"server address '" + clean(addrs[0], 200) + "' must be host:port"};
      return false;
    }
    *target = addrs[0];
    return true;
  }
  std::vector<std::string> v4, v6;
  for (const std::string &a : addrs) {
    if (!split_hostport(a, &host, &port)) {
      *err = {"server address '" + clean(a, 200) + "' must be host:port"};
      return false;
    }
    unsigned char buf[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, host.c_str(), buf) == 1) {
      v4.push_back(host + ":" + port);
      continue;
    }
    if (inet_pton(AF_INET6, host.c_str(), buf) == 1) {
      v6.push_back("[" + host + "]:" + port);
      continue;
    }
    if (tls_name->empty()) *tls_name = host;
    struct addrinfo hints {};
    hints.ai_socktype = SOCK_STREAM;
    struct addrinfo *res = nullptr;
    int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
    if (rc != 0) {
      *err = {"cannot resolve server '" + clean(host, 200) + "': " + gai_strerror(rc)};
      return false;
    }
    std::string ip4, ip6;
    char text[INET6_ADDRSTRLEN];
    for (struct addrinfo *p = res; p; p = p->ai_next) {
      if (p->ai_family == AF_INET && ip4.empty() &&
          inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in *>(p->ai_addr)->sin_addr, text, sizeof text))
        ip4 = text;
      if (p->ai_family == AF_INET6 && ip6.empty() &&
          inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6 *>(p->ai_addr)->sin6_addr, text, sizeof text))
        ip6 = text;
    }
    freeaddrinfo(res);
    if (!ip4.empty())
      v4.push_back(ip4 + ":" + port);
    else if (!ip6.empty())
      v6.push_back("[" + ip6 + "]:" + port);
  }
  auto join = [](const std::vector<std::string> &v) {
    std::string s;
    for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + v[i];
    return s;
  };
  *target = !v4.empty() ? "ipv4:" + join(v4) : "ipv6:" + join(v6);  // one family; IPv4 wins
  return true;
}

std::string service_config(int retries) {
  int attempts = std::max(2, std::min(5, retries + 1));
  return "{\"loadBalancingConfig\": [{\"round_robin\": {}}], \"methodConfig\": [{\"name\": "
         "[{\"service\": \"hdrlift.v1.Hdrlift\"}], \"retryPolicy\": {\"maxAttempts\": " +
         std::to_string(attempts) +
         ", \"initialBackoff\": \"0.1s\", \"maxBackoff\": \"2s\", \"backoffMultiplier\": 2, "
         "\"retryableStatusCodes\": [\"UNAVAILABLE\"]}}]}";
}

bool read_file(const std::string &path, std::string *out, Failure *err, const char *what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    *err = {std::string("cannot read ") + what + " " + clean(path, 300) + ": " + std::strerror(errno)};
    return false;
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  return true;
}

// The bearer token: the token file's first line that is neither empty nor a '#' comment (as
// hdrlift.plugin.read_token_file), else $HDRLIFT_TOKEN, else none.
bool read_token(const char *token_file, std::string *token, Failure *err) {
  token->clear();
  if (token_file && *token_file) {
    std::string text;
    if (!read_file(token_file, &text, err, "token file")) return false;
    std::stringstream ss(text);
    std::string line;
    while (std::getline(ss, line)) {
      size_t a = line.find_first_not_of(" \t\r"), b = line.find_last_not_of(" \t\r");
      if (a == std::string::npos || line[a] == '#') continue;
      *token = line.substr(a, b - a + 1);
      return true;
    }
    *err = {"token file " + clean(token_file, 300) + " holds no token (only empty or # lines)"};
    return false;
  }
  const char *env = std::getenv("HDRLIFT_TOKEN");
  if (env) *token = env;
  return true;
}

// ---------------------------------------------------------------- channels (cached)
struct Channel {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::Hdrlift::Stub> stub;
};

std::mutex g_channels_mu;
std::map<std::string, std::shared_ptr<Channel>> g_channels;

std::shared_ptr<Channel> get_channel(const HdrliftConnection &c, Failure *err) {
  std::string servers = c.servers ? c.servers : "";
  std::string ca_file = c.ca_file ? c.ca_file : "";
  std::string ca;
  if (!ca_file.empty() && !read_file(ca_file, &ca, err, "CA file")) return nullptr;
  std::string key = servers + '\n' + ca + '\n' + std::to_string(c.retries);
  std::lock_guard<std::mutex> lock(g_channels_mu);
  auto it = g_channels.find(key);
  if (it != g_channels.end()) return it->second;
  std::string target, tls_name;
  if (!channel_target(servers, &target, &tls_name, err)) return nullptr;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessage);
  args.SetMaxSendMessageSize(kMaxMessage);
  args.SetServiceConfigJSON(service_config(c.retries));
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 1);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (!ca.empty()) {
    grpc::SslCredentialsOptions opts;
    opts.pem_root_certs = ca;
    creds = grpc::SslCredentials(opts);
    if (!tls_name.empty()) args.SetSslTargetNameOverride(tls_name);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  auto ch = std::make_shared<Channel>();
  ch->channel = grpc::CreateCustomChannel(target, creds, args);
  ch->stub = pb::Hdrlift::NewStub(ch->channel);
  if (g_channels.size() > 16) g_channels.clear();  // a user typing addresses: do not grow forever
  g_channels[key] = ch;
  return ch;
}

// ---------------------------------------------------------------- one call, cancellable
// Shared between the worker thread that makes the calls and the caller's thread that polls the
// host's abort: the caller cancels the call in flight (TryCancel is thread-safe).
struct Control {
  std::mutex mu;
  std::condition_variable cv;
  grpc::ClientContext *ctx = nullptr;
  bool aborted = false;
  bool done = false;

  void cancel() {
    std::lock_guard<std::mutex> lock(mu);
    aborted = true;
    if (ctx) ctx->TryCancel();
    cv.notify_all();
  }
  bool attach(grpc::ClientContext *c) {
    std::lock_guard<std::mutex> lock(mu);
    ctx = c;
    return !aborted;
  }
  void detach() {
    std::lock_guard<std::mutex> lock(mu);
    ctx = nullptr;
  }
  bool is_aborted() {
    std::lock_guard<std::mutex> lock(mu);
    return aborted;
  }
  // Back-off that an abort cuts short. False when aborted.
  bool sleep_for(double seconds) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, std::chrono::duration<double>(seconds), [this] { return aborted; });
    return !aborted;
  }
};

struct Call {
  const HdrliftConnection &conn;
  pb::Hdrlift::Stub *stub;
  std::string servers;
  Clock::time_point deadline;
  std::string token;
  Control &control;

  void prepare(grpc::ClientContext *ctx) const {
    // gRPC takes system_clock deadlines; the budget itself is kept on the steady clock
    auto left = std::max(Clock::duration::zero(), deadline - Clock::now());
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::duration_cast<std::chrono::system_clock::duration>(left));
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
  }
};

enum class Outcome { kOk, kError, kAborted };

// Runs `attempt` (one RPC; it returns the status) with retries on UNAVAILABLE and
// RESOURCE_EXHAUSTED, back-off 0.05 s doubling to 2 s, within the deadline.
template <class Fn>
Outcome with_retries(Call &call, Fn attempt, Failure *err) {
  double delay = 0.05;
  for (int n = 0;; ++n) {
    grpc::ClientContext ctx;
    call.prepare(&ctx);
    if (!call.control.attach(&ctx)) return Outcome::kAborted;
    Failure local;
    grpc::Status st = attempt(&ctx, &local);
    call.control.detach();
    if (call.control.is_aborted()) return Outcome::kAborted;
    if (!local.text.empty()) {  // the reply broke the contract
      *err = local;
      return Outcome::kError;
    }
    if (st.ok()) return Outcome::kOk;
    bool time_left = Clock::now() + std::chrono::duration<double>(delay) < call.deadline;
    if (retryable(st) && n < call.conn.retries && time_left) {
      if (!call.control.sleep_for(delay)) return Outcome::kAborted;
      delay = std::min(2.0, delay * 2);
      continue;
    }
    *err = status_failure(call.servers, st);
    return Outcome::kError;
  }
}

bool decode_reply(const pb::FrameHeader &h, const std::string &data, HdrliftFrame *f, const std::string &servers,
                  Failure *err) {
  if (h.width() != f->width || h.height() != f->height) {
    *err = {where(servers) + ": ERROR: reply is " + std::to_string(h.width()) + "x" + std::to_string(h.height()) +
            ", the frame sent was " + std::to_string(f->width) + "x" + std::to_string(f->height)};
    return false;
  }
  if (h.channels() != 3 && h.channels() != 4) {
    *err = {where(servers) + ": ERROR: reply has " + std::to_string(h.channels()) + " channels"};
    return false;
  }
  if (h.dtype() != pb::DTYPE_FLOAT) {
    *err = {where(servers) + ": ERROR: reply is not planar float (dtype " + std::to_string(h.dtype()) + ")"};
    return false;
  }
  const size_t plane = size_t(f->width) * size_t(f->height);
  if (data.size() != plane * size_t(h.channels()) * 4) {
    *err = {where(servers) + ": ERROR: malformed reply: payload has " + std::to_string(data.size()) + " bytes"};
    return false;
  }
  std::memcpy(f->out, data.data(), data.size());  // little-endian float, as this machine
  if (h.channels() == 3) std::fill(f->out + 3 * plane, f->out + 4 * plane, 0.0f);
  put(f->out_space, f->out_space_size, clean(h.output_space(), 200));
  return true;
}

pb::FrameHeader frame_header(const HdrliftFrame &f) {
  pb::FrameHeader h;
  h.set_width(f.width);
  h.set_height(f.height);
  h.set_dtype(pb::DTYPE_FLOAT);
  h.set_channels(3);
  h.set_input_space(f.input_space ? f.input_space : "");
  h.set_output_space(f.output_space ? f.output_space : "");
  h.set_model(f.model ? f.model : "");
  h.mutable_options()->set_return_mask(f.return_mask != 0);
  h.mutable_options()->set_output_dtype(pb::DTYPE_FLOAT);
  h.mutable_options()->set_reply_chunk_bytes(kChunkBytes);
  return h;
}

Outcome reconstruct_unary(Call &call, HdrliftFrame *f, Failure *err) {
  const size_t bytes = size_t(f->width) * size_t(f->height) * 3 * 4;
  pb::ReconstructRequest req;
  *req.mutable_header() = frame_header(*f);
  req.set_data(reinterpret_cast<const char *>(f->rgb), bytes);
  return with_retries(
      call,
      [&](grpc::ClientContext *ctx, Failure *bad) {
        pb::ReconstructReply rep;
        grpc::Status st = call.stub->Reconstruct(ctx, req, &rep);
        if (st.ok()) decode_reply(rep.header(), rep.data(), f, call.servers, bad);
        return st;
      },
      err);
}

// A frame larger than one message: header, then the frame's chunks (chunk 0 carries its size);
// the reply comes back chunked the same way, checked chunk by chunk against the frame sent.
Outcome reconstruct_stream(Call &call, HdrliftFrame *f, Failure *err) {
  const size_t bytes = size_t(f->width) * size_t(f->height) * 3 * 4;
  const size_t max_reply = size_t(f->width) * size_t(f->height) * 4 * 4;
  const char *data = reinterpret_cast<const char *>(f->rgb);
  const uint32_t total = uint32_t((bytes + kChunkBytes - 1) / kChunkBytes);
  return with_retries(
      call,
      [&](grpc::ClientContext *ctx, Failure *bad) {
        auto stream = call.stub->ReconstructStream(ctx);
        pb::StreamRequest first;
        *first.mutable_header() = frame_header(*f);
        bool sending = stream->Write(first);
        for (uint32_t i = 0; sending && i < total; ++i) {
          pb::StreamRequest r;
          pb::Chunk *c = r.mutable_chunk();
          c->set_frame_id(1);
          c->set_index(i);
          c->set_total(total);
          size_t off = size_t(i) * kChunkBytes;
          c->set_payload(data + off, std::min(kChunkBytes, bytes - off));
          if (i == 0) *c->mutable_header() = frame_header(*f);
          sending = stream->Write(r);
        }
        if (sending) stream->WritesDone();
        pb::StreamReply rep;
        pb::FrameHeader header;
        std::string payload;
        uint32_t next = 0, want_total = 0;
        bool complete = false;
        while (stream->Read(&rep)) {
          const pb::Chunk &c = rep.chunk();
          std::string problem;
          if (complete)
            problem = "server sent more than the one frame asked for";
          else if (c.frame_id() != 1)
            problem = "server answered frame " + std::to_string(c.frame_id()) + ", which was not sent";
          else if (c.index() != next)
            problem = "reply chunk " + std::to_string(c.index()) + " out of order, expected " + std::to_string(next);
          else if (c.total() < 1 || (next > 0 && c.total() != want_total))
            problem = "reply chunk total " + std::to_string(c.total()) + " is inconsistent";
          else if (payload.size() + c.payload().size() > max_reply)
            problem = "reply exceeds four float planes of the frame sent";
          else if (next == 0 && !c.has_header())
            problem = "reply frame without a header";
          if (!problem.empty()) {
            *bad = {where(call.servers) + ": ERROR: malformed reply stream: " + problem};
            ctx->TryCancel();
            break;
          }
          if (next == 0) {
            header = c.header();
            want_total = c.total();
          }
          payload += c.payload();
          if (++next == want_total) complete = true;
        }
        grpc::Status st = stream->Finish();
        if (!bad->text.empty()) return st;
        if (st.ok() && !complete) {
          *bad = {where(call.servers) + ": ERROR: stream ended without a reply"};
          return st;
        }
        if (st.ok()) decode_reply(header, payload, f, call.servers, bad);
        return st;
      },
      err);
}

// Runs `work` on a worker thread while this (the host's render) thread polls `poll` every 20 ms;
// an abort cancels the call in flight. The worker is always joined: no call outlives this one.
template <class Fn>
int run_polled(HdrliftAbortPoll poll, void *user, double timeout_s, Fn work, char *errbuf, size_t errsize) {
  Control control;
  Failure err;
  Outcome outcome = Outcome::kError;
  std::thread worker([&] {
    Outcome o;
    try {
      o = work(control, &err);
    } catch (const std::exception &e) {
      err = {std::string("internal error: ") + clean(e.what(), 300)};
      o = Outcome::kError;
    }
    std::lock_guard<std::mutex> lock(control.mu);
    outcome = o;
    control.done = true;
    control.cv.notify_all();
  });
  const auto hard_stop = Clock::now() + std::chrono::duration<double>(timeout_s + 5.0);
  bool cancelled = false;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(control.mu);
      if (control.cv.wait_for(lock, std::chrono::milliseconds(20), [&] { return control.done; })) break;
    }
    // the gRPC deadline ends the call at timeout_s; this is a second line of defence
    if (!cancelled && ((poll && poll(user)) || Clock::now() > hard_stop)) {
      cancelled = true;
      control.cancel();
    }
  }
  worker.join();
  if (outcome == Outcome::kAborted || (cancelled && outcome != Outcome::kOk)) {
    put(errbuf, errsize, "aborted");
    return HDRLIFT_ABORTED;
  }
  if (outcome == Outcome::kError) {
    put(errbuf, errsize, err.text);
    return HDRLIFT_ERROR;
  }
  return HDRLIFT_OK;
}

Clock::time_point deadline_after(double timeout_s) {
  double t = timeout_s > 0 ? std::min(timeout_s, 86400.0) : 120.0;
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(t));
}

int bridge_list_models(const HdrliftConnection *conn, char *out, size_t out_size, char *errbuf, size_t errsize) {
  put(out, out_size, "");
  return run_polled(
      nullptr, nullptr, conn->timeout_s,
      [&](Control &control, Failure *err) {
        std::shared_ptr<Channel> ch = get_channel(*conn, err);
        if (!ch) return Outcome::kError;
        Call call{*conn, ch->stub.get(), conn->servers ? conn->servers : "", deadline_after(conn->timeout_s), "",
                  control};
        if (!read_token(conn->token_file, &call.token, err)) return Outcome::kError;
        pb::ListModelsReply rep;
        Outcome o = with_retries(
            call,
            [&](grpc::ClientContext *ctx, Failure *) { return call.stub->ListModels(ctx, pb::ListModelsRequest(), &rep); },
            err);
        if (o != Outcome::kOk) return o;
        std::string text;
        for (const pb::ModelDescription &m : rep.models()) {
          if (!m.runnable()) continue;
          std::string line = clean(m.name(), 200) + "\t" + (m.name() == rep.default_model() ? "1" : "0") + "\n";
          if (text.size() + line.size() + 1 > out_size) break;
          text += line;
        }
        put(out, out_size, text);
        return Outcome::kOk;
      },
      errbuf, errsize);
}

int bridge_reconstruct(const HdrliftConnection *conn, HdrliftFrame *frame, HdrliftAbortPoll poll, void *user,
                       char *errbuf, size_t errsize) {
  if (frame->width < 1 || frame->height < 1 || !frame->rgb || !frame->out) {
    put(errbuf, errsize, "empty frame");
    return HDRLIFT_ERROR;
  }
  return run_polled(
      poll, user, conn->timeout_s,
      [&](Control &control, Failure *err) {
        std::shared_ptr<Channel> ch = get_channel(*conn, err);
        if (!ch) return Outcome::kError;
        Call call{*conn, ch->stub.get(), conn->servers ? conn->servers : "", deadline_after(conn->timeout_s), "",
                  control};
        if (!read_token(conn->token_file, &call.token, err)) return Outcome::kError;
        const size_t in_bytes = size_t(frame->width) * size_t(frame->height) * 3 * 4;
        const size_t out_bytes = size_t(frame->width) * size_t(frame->height) * 4 * 4;
        if (in_bytes <= kChunkBytes && out_bytes <= kChunkBytes) return reconstruct_unary(call, frame, err);
        return reconstruct_stream(call, frame, err);
      },
      errbuf, errsize);
}

void bridge_release() {
  std::lock_guard<std::mutex> lock(g_channels_mu);
  g_channels.clear();
}

const HdrliftBridgeV1 kBridge = {HDRLIFT_BRIDGE_ABI, bridge_list_models, bridge_reconstruct, bridge_release};

}  // namespace

extern "C" __attribute__((visibility("default"))) const HdrliftBridgeV1 *hdrlift_bridge_v1(void) { return &kBridge; }
